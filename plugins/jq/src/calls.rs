//! Which named filters a jq term may call: `(name, arity)` of every call in it, including the
//! implicit call of a format such as `@base64 "…"`.
//!
//! Shared by the build script (what each prelude definition calls) and the plugin (what a
//! user's program calls), so the plugin compiles only the prelude definitions a program can
//! reach instead of the whole standard library on every event. Local definitions and filter
//! arguments are counted too: including a definition that is never reached is harmless, and
//! missing one is not.

// The build script uses `calls`, the plugin `words`: each leaves the other unused.
#![allow(dead_code)]

use jaq_core::load::lex::{StrPart, Tok, Token};
use jaq_core::load::parse::{BinaryOp, Pattern, Term};
use jaq_core::path::Part;

/// Appends `(name, arity)` of every filter `term` calls to `out` (with repeats).
pub fn calls<'s>(term: &Term<&'s str>, out: &mut Vec<(&'s str, usize)>) {
    match term {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Var(_) | Term::Break(_) => {}
        Term::Str(format, parts) => {
            if let Some(format) = format {
                out.push((format, 0));
            }
            for part in parts {
                if let StrPart::Term(t) = part {
                    calls(t, out);
                }
            }
        }
        Term::Arr(t) => {
            if let Some(t) = t {
                calls(t, out);
            }
        }
        Term::Obj(entries) => {
            for (key, value) in entries {
                calls(key, out);
                if let Some(value) = value {
                    calls(value, out);
                }
            }
        }
        Term::Neg(t) | Term::Label(_, t) => calls(t, out),
        Term::BinOp(l, op, r) => {
            calls(l, out);
            if let BinaryOp::Pipe(Some(pattern)) = op {
                pattern_calls(pattern, out);
            }
            calls(r, out);
        }
        Term::Fold(_, xs, pattern, args) => {
            calls(xs, out);
            pattern_calls(pattern, out);
            args.iter().for_each(|a| calls(a, out));
        }
        Term::TryCatch(t, catch) => {
            calls(t, out);
            if let Some(catch) = catch {
                calls(catch, out);
            }
        }
        Term::IfThenElse(branches, otherwise) => {
            for (cond, then) in branches {
                calls(cond, out);
                calls(then, out);
            }
            if let Some(otherwise) = otherwise {
                calls(otherwise, out);
            }
        }
        Term::Def(defs, t) => {
            defs.iter().for_each(|d| calls(&d.body, out));
            calls(t, out);
        }
        Term::Call(name, args) => {
            out.push((name, args.len()));
            args.iter().for_each(|a| calls(a, out));
        }
        Term::Path(t, path) => {
            calls(t, out);
            for (part, _opt) in &path.0 {
                match part {
                    Part::Index(i) => calls(i, out),
                    Part::Range(from, upto) => {
                        from.iter().chain(upto).for_each(|b| calls(b, out));
                    }
                }
            }
        }
    }
}

/// Object patterns (`. as {(f): $x}`) hold terms too.
fn pattern_calls<'s>(pattern: &Pattern<&'s str>, out: &mut Vec<(&'s str, usize)>) {
    match pattern {
        Pattern::Var(_) => {}
        Pattern::Arr(items) => items.iter().for_each(|p| pattern_calls(p, out)),
        Pattern::Obj(entries) => {
            for (key, p) in entries {
                calls(key, out);
                pattern_calls(p, out);
            }
        }
    }
}

/// `(name, arity)` of what a lexed program may call: every identifier and format (`map`,
/// `@base64`) with the number of `;`-separated arguments in the parentheses after it.
/// Cheaper than parsing the program once more only to walk its terms (the loader parses it
/// anyway). Keywords and local names come along, which costs at most a definition that is
/// never reached. An object key (`{type: 1}`) and a definition's name (`def esc: …`) call
/// nothing; a slice bound (`.[n:]`) does.
pub fn words<'s>(tokens: &[Token<&'s str>], out: &mut Vec<(&'s str, usize)>) {
    words_in(tokens, false, out);
}

fn words_in<'s>(tokens: &[Token<&'s str>], in_object: bool, out: &mut Vec<(&'s str, usize)>) {
    for (i, Token(text, tok)) in tokens.iter().enumerate() {
        let after_def = i > 0 && tokens.get(i - 1).is_some_and(|Token(t, _)| *t == "def");
        match tok {
            Tok::Word | Tok::Fmt if after_def => {}
            Tok::Word | Tok::Fmt => match tokens.get(i + 1) {
                Some(Token(":", _)) if in_object => {}
                Some(Token(open, Tok::Block(args))) if open.starts_with('(') => {
                    let semicolons = args.iter().filter(|Token(t, _)| *t == ";").count();
                    out.push((text, semicolons + 1));
                }
                _ => out.push((text, 0)),
            },
            Tok::Block(inner) => words_in(inner, text.starts_with('{'), out),
            Tok::Str(parts) => {
                for part in parts {
                    if let StrPart::Term(t) = part {
                        words_in(std::slice::from_ref(t), false, out);
                    }
                }
            }
            Tok::Var | Tok::Num | Tok::Sym => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use jaq_core::load::lex::Lexer;

    use super::*;

    /// What `words` finds covers what the parsed program calls.
    #[test]
    fn words_cover_the_calls() {
        for code in [
            r#"def esc: split("&") | join("&amp;"); {type: .type | esc, n: (range(1; 3) | tostring)}"#,
            r#"@base64 "\(.a | ascii_downcase)" | test("x"; "g") | if . then map(not) else {} end"#,
            r#"reduce .[] as {a: $x} (0; . + $x) | [limit(2; repeat(1))] | .[first(.[])]"#,
            r#"label $out | foreach .[] as $x (0; . + $x; if . > 3 then ., break $out else . end) | tojson"#,
            r#"def n: 1; .[n:] + .[:length] + .[first(1):last(2)] | {(keys[0]): values, $__loc__, a}"#,
        ] {
            let tokens = Lexer::new(code).lex().unwrap_or_default();
            let mut found = Vec::new();
            words(&tokens, &mut found);
            let term = jaq_core::load::parse(code, |p| p.term()).unwrap_or_default();
            let mut called = Vec::new();
            calls(&term, &mut called);
            assert!(!called.is_empty(), "{code}");
            for call in called {
                assert!(found.contains(&call), "{code}: {call:?} not in {found:?}");
            }
        }
    }
}
