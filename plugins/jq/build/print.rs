//! Prints a parsed jq definition back as jq source, every sub-term in parentheses.
//!
//! jaq's prelude only exists as parsed definitions (its `.jq` files are private to the
//! crates), and the plugin wants the source of each definition on its own so it can parse
//! just the few a program calls. The build script checks every printed definition by parsing
//! it again and comparing the two trees, so a mistake here fails the build instead of
//! changing what a definition means.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::path::{Opt, Part, Path};

/// `def name(args): body;`
pub fn def(d: &Def<&str>) -> String {
    let mut out = format!("def {}", d.name);
    if !d.args.is_empty() {
        out.push('(');
        out.push_str(&d.args.join("; "));
        out.push(')');
    }
    out.push_str(": ");
    out.push_str(&term(&d.body));
    out.push(';');
    out
}

/// A term, parenthesised so no operator precedence is involved.
fn atom(t: &Term<&str>) -> String {
    format!("({})", term(t))
}

fn term(t: &Term<&str>) -> String {
    match t {
        Term::Id => ".".into(),
        Term::Recurse => "..".into(),
        Term::Num(n) => (*n).into(),
        Term::Str(format, parts) => string(*format, parts),
        Term::Arr(None) => "[]".into(),
        Term::Arr(Some(t)) => format!("[{}]", term(t)),
        Term::Obj(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(key, value)| match (key, value) {
                    (key, Some(value)) => format!("{}: {}", atom(key), atom(value)),
                    // `{$x}`, `{a}`, `{"a"}`: the key alone stands for `key: .key`.
                    (Term::Var(x), None) => (*x).into(),
                    (key, None) => term(key),
                })
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        Term::Neg(t) => format!("-{}", atom(t)),
        Term::BinOp(l, op, r) => format!("{} {} {}", atom(l), binop(op), atom(r)),
        Term::Label(x, t) => format!("label {x} | {}", atom(t)),
        Term::Break(x) => format!("break {x}"),
        Term::Fold(name, xs, pat, args) => {
            let args: Vec<String> = args.iter().map(atom).collect();
            format!(
                "{name} {} as {}({})",
                atom(xs),
                pattern(pat),
                args.join("; ")
            )
        }
        Term::TryCatch(t, None) => format!("try {}", atom(t)),
        Term::TryCatch(t, Some(c)) => format!("try {} catch {}", atom(t), atom(c)),
        Term::IfThenElse(branches, otherwise) => {
            let mut out = String::new();
            for (i, (cond, then)) in branches.iter().enumerate() {
                let keyword = if i == 0 { "if" } else { " elif" };
                out.push_str(&format!("{keyword} {} then {}", atom(cond), atom(then)));
            }
            if let Some(otherwise) = otherwise {
                out.push_str(&format!(" else {}", atom(otherwise)));
            }
            out.push_str(" end");
            out
        }
        Term::Def(defs, t) => {
            let defs: Vec<String> = defs.iter().map(def).collect();
            format!("{} {}", defs.join(" "), atom(t))
        }
        Term::Call(name, args) if args.is_empty() => (*name).into(),
        Term::Call(name, args) => {
            let args: Vec<String> = args.iter().map(atom).collect();
            format!("{name}({})", args.join("; "))
        }
        Term::Var(x) => (*x).into(),
        Term::Path(t, p) => format!("{}{}", atom(t), path(p)),
    }
}

fn path(p: &Path<Term<&str>>) -> String {
    let mut out = String::new();
    for (part, opt) in &p.0 {
        match part {
            Part::Index(i) => out.push_str(&format!("[{}]", atom(i))),
            Part::Range(from, upto) => {
                let bound = |b: &Option<Term<&str>>| b.as_ref().map(atom).unwrap_or_default();
                match (from, upto) {
                    (None, None) => out.push_str("[]"),
                    (from, upto) => out.push_str(&format!("[{}:{}]", bound(from), bound(upto))),
                }
            }
        }
        if matches!(opt, Opt::Optional) {
            out.push('?');
        }
    }
    out
}

fn pattern(p: &Pattern<&str>) -> String {
    match p {
        Pattern::Var(x) => (*x).into(),
        Pattern::Arr(items) => {
            let items: Vec<String> = items.iter().map(pattern).collect();
            format!("[{}]", items.join(", "))
        }
        Pattern::Obj(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(key, p)| format!("{}: {}", atom(key), pattern(p)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

fn binop(op: &BinaryOp<&str>) -> String {
    match op {
        BinaryOp::Pipe(None) => "|".into(),
        BinaryOp::Pipe(Some(p)) => format!("as {} |", pattern(p)),
        BinaryOp::Comma => ",".into(),
        BinaryOp::Alt => "//".into(),
        BinaryOp::Or => "or".into(),
        BinaryOp::And => "and".into(),
        BinaryOp::Math(m) => m.as_str().into(),
        BinaryOp::Cmp(c) => c.as_str().into(),
        BinaryOp::Assign => "=".into(),
        BinaryOp::Update => "|=".into(),
        BinaryOp::UpdateMath(m) => format!("{}=", m.as_str()),
        BinaryOp::UpdateAlt => "//=".into(),
    }
}

/// A string literal. Plain parts are raw source text (they hold no `"` or `\`); escaped
/// characters are written back as the escape the lexer read them from.
fn string(format: Option<&str>, parts: &[StrPart<&str, Term<&str>>]) -> String {
    let mut out = String::new();
    if let Some(format) = format {
        out.push_str(format);
        out.push(' ');
    }
    out.push('"');
    for part in parts {
        match part {
            StrPart::Str(s) => out.push_str(s),
            StrPart::Term(t) => out.push_str(&format!("\\{}", atom(t))),
            StrPart::Char(c) => out.push_str(&match c {
                '\\' => "\\\\".into(),
                '/' => "\\/".into(),
                '"' => "\\\"".into(),
                '\x08' => "\\b".into(),
                '\x0C' => "\\f".into(),
                '\n' => "\\n".into(),
                '\r' => "\\r".into(),
                '\t' => "\\t".into(),
                c => format!("\\u{:04x}", u32::from(*c)),
            }),
        }
    }
    out.push('"');
    out
}
