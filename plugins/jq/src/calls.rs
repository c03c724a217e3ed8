//! Which named filters a jq term may call: `(name, arity)` of every call in it, including the
//! implicit call of a format such as `@base64 "…"`.
//!
//! Shared by the build script (what each prelude definition calls) and the plugin (what a
//! user's program calls), so the plugin compiles only the prelude definitions a program can
//! reach instead of the whole standard library on every event. Local definitions and filter
//! arguments are counted too: including a definition that is never reached is harmless, and
//! missing one is not.

use jaq_core::load::lex::StrPart;
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
