//! The prelude definitions a program can reach, parsed from the table `build.rs` generates.

use jaq_core::load::parse::Def;

/// One prelude definition: its source and the definitions it may call.
pub(crate) struct PreludeDef {
    /// e.g. `map`.
    pub name: &'static str,
    /// Number of arguments (`map(f)` has 1).
    pub arity: usize,
    /// `def map(f): …;` as printed by the build script.
    pub source: &'static str,
    /// Indices into [`DEFS`] of the definitions this one may call (earlier ones and itself).
    pub deps: &'static [usize],
}

include!(concat!(env!("OUT_DIR"), "/prelude.rs"));

/// The definitions needed by a program that may call what `called(name, arity)` accepts, in
/// prelude order (a definition only sees the ones before it), parsed.
///
/// Everything a reachable definition may call is included, so the program compiles exactly
/// as it would against the whole prelude; what it does not reach is neither parsed nor
/// compiled.
pub(crate) fn needed(called: impl Fn(&str, usize) -> bool) -> Vec<Def<&'static str>> {
    let mut wanted = vec![false; DEFS.len()];
    let mut todo: Vec<usize> = DEFS
        .iter()
        .enumerate()
        .filter(|(_, d)| called(d.name, d.arity))
        .map(|(i, _)| i)
        .collect();
    while let Some(i) = todo.pop() {
        if let Some(seen) = wanted.get_mut(i)
            && !*seen
        {
            *seen = true;
            todo.extend(DEFS[i].deps.iter().copied());
        }
    }
    DEFS.iter()
        .zip(wanted)
        .filter(|(_, wanted)| *wanted)
        .flat_map(|(d, _)| jaq_core::load::parse(d.source, |p| p.defs()).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needed(calls: &[(&str, usize)]) -> Vec<Def<&'static str>> {
        super::needed(|name, arity| calls.contains(&(name, arity)))
    }

    fn names(defs: &[Def<&str>]) -> Vec<String> {
        defs.iter()
            .map(|d| format!("{}/{}", d.name, d.args.len()))
            .collect()
    }

    #[test]
    fn every_definition_parses_on_its_own() {
        for d in DEFS {
            let parsed = jaq_core::load::parse(d.source, |p| p.defs());
            assert_eq!(parsed.map(|p| p.len()), Some(1), "{}", d.source);
        }
    }

    #[test]
    fn includes_what_is_reachable_in_prelude_order() {
        // `join` is native (see build.rs); `with_entries(f)` needs `to_entries`, `map` and
        // `from_entries`.
        assert!(needed(&[("join", 1)]).is_empty());
        assert_eq!(
            names(&needed(&[("with_entries", 1)])),
            ["map/1", "to_entries/0", "from_entries/0", "with_entries/1"]
        );
        // `map(f)` needs nothing; `select` needs `empty`.
        assert_eq!(
            names(&needed(&[("select", 1), ("map", 1)])),
            ["empty/0", "select/1", "map/1"]
        );
        assert!(needed(&[("no_such_filter", 0)]).is_empty());
        // Arity matters: `range/1` calls `range/2`, which calls the native `range/3`.
        assert_eq!(names(&needed(&[("range", 1)])), ["range/2", "range/1"]);
    }

    #[test]
    fn leaves_out_halt() {
        assert!(
            DEFS.iter()
                .all(|d| d.name != "halt" && d.name != "halt_error")
        );
        assert!(DEFS.iter().any(|d| d.name == "skip" && d.arity == 1));
    }
}
