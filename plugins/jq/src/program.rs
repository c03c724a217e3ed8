//! Compiling a subscription's jq program, with errors that point at `line:column`.

use jaq_core::load::{self, Arena, File, Loader, lex};
use jaq_core::{Compiler, Filter, compile};

use crate::natives::{Data, LEFT_OUT, natives};
use crate::{calls, prelude};

/// A compiled program.
pub(crate) type Program = Filter<Data>;

/// The one global variable every program sees: the config's `args` (`{}` without).
pub(crate) const ARGS: &str = "$args";

/// Compiles `code` against the prelude definitions it reaches and the sandbox's natives.
///
/// # Errors
/// Every lex, parse and undefined-name error, each as `line:column: what`, joined by `; `.
pub(crate) fn compile(code: &str) -> Result<Program, String> {
    // The names in the program decide which prelude definitions are parsed and compiled.
    // When it does not lex, the loader below reports why with a position.
    let mut names = Vec::new();
    if let Ok(tokens) = lex::Lexer::new(code).lex() {
        calls::words(&tokens, &mut names);
    }
    let arena = Arena::default();
    let loader = Loader::new(prelude::needed(|name, arity| {
        names.contains(&(name, arity))
    }));
    let modules = loader
        .load(&arena, File { code, path: () })
        .map_err(|errors| load_errors(code, errors))?;
    Compiler::default()
        .with_funs(natives())
        .with_global_vars([ARGS])
        .compile(modules)
        .map_err(|errors| compile_errors(code, errors))
}

fn load_errors(code: &str, errors: load::Errors<&str, ()>) -> String {
    let mut out = Vec::new();
    for (_file, error) in errors {
        match error {
            load::Error::Lex(errs) => {
                for (expected, at) in errs {
                    out.push(format!(
                        "{}: expected {}",
                        position(code, at),
                        lex_expected(&expected)
                    ));
                }
            }
            load::Error::Parse(errs) => {
                for (expected, at) in errs {
                    out.push(format!(
                        "{}: expected {}{}",
                        position(code, at),
                        expected.as_str(),
                        found(at)
                    ));
                }
            }
            load::Error::Io(errs) => {
                for (path, _why) in errs {
                    out.push(format!(
                        "{}: modules cannot be loaded here (`{path}`): write the definitions into the program",
                        position(code, path)
                    ));
                }
            }
        }
    }
    joined(out)
}

fn compile_errors(code: &str, errors: compile::Errors<&str, ()>) -> String {
    let mut out = Vec::new();
    for (_file, errs) in errors {
        for (name, undefined) in errs {
            let what = match undefined {
                compile::Undefined::Filter(arity) => {
                    let bare = name.split("::").last().unwrap_or(name);
                    let hint = if LEFT_OUT.contains(&bare)
                        || bare == "halt_error"
                        || bare == "input"
                        || bare == "inputs"
                    {
                        " (not available in the sandbox: a program sees only the event; use .timestamp for the time)"
                    } else {
                        ""
                    };
                    format!("undefined filter `{name}/{arity}`{hint}")
                }
                other => format!("undefined {} `{name}`", other.as_str()),
            };
            out.push(format!("{}: {what}", position(code, name)));
        }
    }
    joined(out)
}

fn joined(errors: Vec<String>) -> String {
    if errors.is_empty() {
        "the jq program does not compile".into()
    } else {
        format!("jq program: {}", errors.join("; "))
    }
}

/// What the lexer expected. `lex::Expect::as_str` panics on delimiters it does not know,
/// so name them here.
fn lex_expected(expected: &lex::Expect<&str>) -> &'static str {
    match expected {
        lex::Expect::Digit => "digit",
        lex::Expect::Ident => "identifier",
        lex::Expect::Delim("(") => "closing parenthesis",
        lex::Expect::Delim("[") => "closing bracket",
        lex::Expect::Delim("{") => "closing brace",
        lex::Expect::Delim("\"") => "closing quote",
        lex::Expect::Delim(_) => "closing delimiter",
        lex::Expect::Escape => {
            "string escape sequence (\\n, \\t, \\\", \\\\, \\/, \\b, \\f, \\r, \\uXXXX or \\(…))"
        }
        lex::Expect::Unicode => "4 hexadecimal digits after \\u",
        lex::Expect::Token => "a jq token",
        _ => "something else",
    }
}

/// `, found "…"` for a parse error with a token (an empty slice is the end of the program).
fn found(at: &str) -> String {
    let token: String = at.chars().take(20).collect();
    if token.is_empty() {
        ", found the end of the program".into()
    } else {
        format!(", found `{token}`")
    }
}

/// `line:column` (1-based, columns in characters) of `part`, a slice of `code`. A slice from
/// elsewhere (the prelude) has no position in the program.
fn position(code: &str, part: &str) -> String {
    let (base, start) = (code.as_ptr() as usize, part.as_ptr() as usize);
    let Some(offset) = start
        .checked_sub(base)
        .filter(|o| *o <= code.len() && code.is_char_boundary(*o))
    else {
        return "in the prelude".into();
    };
    let before = &code[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{column}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str) -> String {
        match compile(code) {
            Ok(_) => panic!("{code:?} compiled"),
            Err(e) => e,
        }
    }

    #[test]
    fn errors_point_at_line_and_column() {
        assert_eq!(
            error(".data | {a: }"),
            "jq program: 1:13: expected term, found `}`"
        );
        assert_eq!(
            error(".a +\n  | .b"),
            "jq program: 2:3: expected term, found `|`"
        );
        assert_eq!(
            error(".x | nosuchfn(1)"),
            "jq program: 1:6: undefined filter `nosuchfn/1`"
        );
        assert_eq!(error("\"abc"), "jq program: 1:5: expected closing quote");
        assert_eq!(
            error("$nope"),
            "jq program: 1:1: undefined variable `$nope`"
        );
        assert_eq!(
            error("if . then 1"),
            "jq program: 1:12: expected else or end, found the end of the program"
        );
    }

    #[test]
    fn sandbox_functions_are_refused_with_a_hint() {
        for code in ["now", "env", "halt", "halt_error(1)", "input", "$ENV"] {
            let e = error(code);
            assert!(e.starts_with("jq program: 1:1: undefined"), "{code}: {e}");
        }
        assert!(error("now").contains("use .timestamp"));
    }

    #[test]
    fn imports_are_refused() {
        let e = error("include \"x\"; .");
        assert!(e.contains("modules cannot be loaded here"), "{e}");
    }

    /// Inputs that could reach panics in jaq's error reporting (`lex::Expect::as_str` on an
    /// unknown delimiter) or stack-heavy paths must give errors.
    #[test]
    fn odd_programs_give_errors_not_panics() {
        for code in [
            "",
            "(",
            "[",
            "{",
            ")",
            "]",
            "}",
            "\"\\q\"",
            "\"\\u12\"",
            "1e",
            "@",
            "$",
            "§",
            ".[",
            "{(1)}",
            "reduce . as $x (1)",
            "def f: ;",
        ] {
            assert!(compile(code).is_err(), "{code:?} compiled");
        }
    }

    #[test]
    fn uses_the_prelude_and_the_args_variable() {
        assert!(compile(".data.tags | map(ascii_upcase) | join(\", \")").is_ok());
        assert!(compile("$args.channel // \"#general\"").is_ok());
        assert!(compile("@base64 \"x\\(.id)\" | @json").is_ok());
        assert!(compile("def f: def g: 3; g; f | todate").is_ok());
    }
}
