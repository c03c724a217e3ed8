//! The native filters a program may call: jaq's, minus what has no place in a sandbox, plus
//! `debug` and `stderr` writing to the plugin's log instead of the process's stderr.

use jaq_core::box_iter::BoxIter;
use jaq_core::data::JustLut;
use jaq_core::native::{Fun, bome, run, v};
use jaq_core::{Cv, Error, ValR, ValX};
use jaq_json::Val;
use switchyard_plugin_sdk::Level;

/// The data a program runs with: just the look-up table of the compiled program.
pub(crate) type Data = JustLut<Val>;

/// Natives the sandbox leaves out. `env` and `now` would only ever see an empty environment
/// and a clock stuck at 1970: a program refers to `.timestamp` instead, and is refused at
/// subscription time rather than quietly getting `{}` or 0. `halt` would end the
/// interpreter. `debug_empty` and `stderr_empty` are replaced below.
pub(crate) const LEFT_OUT: &[&str] = &["env", "now", "halt", "debug_empty", "stderr_empty"];

/// Every native filter, as the compiler wants them.
pub(crate) fn natives() -> impl Iterator<Item = Fun<Data>> {
    jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(|(name, ..)| !LEFT_OUT.contains(name))
        .chain([
            run(("debug_empty", v(0), |cv| log_input(cv, Level::Debug))),
            run(("stderr_empty", v(0), |cv| log_input(cv, Level::Info))),
            run(("join", v(1), |mut cv| {
                let separator = cv.0.pop_var();
                bome(join(&cv.1, &separator))
            })),
        ])
}

/// `join($s)` as jaq's prelude defines it (`.[] |= tostring | .[:-1][] += $s | add`-like):
/// every element as `tostring` gives it (strings as they are, anything else as JSON),
/// separated by `$s`. The prelude's version builds the result through path updates, which made
/// it the most expensive part of a Slack-style program (see build.rs).
fn join(input: &Val, separator: &Val) -> ValR<Val> {
    let Val::Arr(items) = input else {
        return Err(Error::str(format_args!(
            "cannot join {input}: not an array"
        )));
    };
    let Val::TStr(separator) = separator else {
        return Err(Error::str(format_args!(
            "cannot join with {separator}: not a string"
        )));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(separator);
        }
        match item {
            Val::TStr(s) => out.extend_from_slice(s),
            other => out.extend_from_slice(other.to_string().as_bytes()),
        }
    }
    Ok(Val::utf8_str(out))
}

/// `debug` and `stderr` pass their input on; the value also goes to the plugin's log (shown
/// in dry runs and on the delivery attempt) as compact JSON, or as text for a string, at
/// `debug` and `info` level.
fn log_input<'a>(cv: Cv<'a, Data>, level: Level) -> BoxIter<'a, ValX<'a, Val>> {
    let text = match &cv.1 {
        Val::TStr(s) => String::from_utf8_lossy(s).into_owned(),
        other => other.to_string(),
    };
    crate::log_line(level, &text);
    Box::new(core::iter::empty())
}
