//! The README's examples are the files in `examples/`: each one runs here and must produce
//! its `body.json` (and `skip-reason.txt`) byte for byte, and each file must appear verbatim
//! as a code block of README.md. The end-to-end suite runs the same files through the
//! compiled component.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use switchyard_plugin_sdk::envelope::rfc3339;
use switchyard_plugin_sdk::{Event, Outcome};

use crate::{Config, transform};

/// Every example's envelope carries this time.
const TIMESTAMP: i64 = 1_795_446_245;

/// The envelope a program sees, as an example file holds it.
#[derive(Deserialize)]
struct Envelope<'a> {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    timestamp: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 3, "slack, discord and filter-reshape");
    dirs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn event(path: &Path) -> Event {
    let text = read(path);
    let envelope: Envelope =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(envelope.timestamp, rfc3339(TIMESTAMP), "{}", path.display());
    Event {
        id: envelope.id,
        event_type: envelope.event_type,
        timestamp: TIMESTAMP,
        subscription_id: "sub_1".into(),
        payload: envelope.data.get().to_owned(),
    }
}

fn config(dir: &Path) -> Config {
    match Config::try_from(Value::String(read(&dir.join("program.jq")))) {
        Ok(config) => config,
        Err(e) => panic!("{}: {e}", dir.display()),
    }
}

#[test]
fn examples_produce_their_golden_files() {
    for dir in examples() {
        let config = config(&dir);
        let outcome = transform(&event(&dir.join("event.json")), &config);
        let Ok(Outcome::Deliver(delivery)) = outcome else {
            panic!("{}: {outcome:?}", dir.display());
        };
        assert_eq!(delivery.content_type, "application/json");
        let body = String::from_utf8(delivery.body).unwrap_or_default();
        assert_eq!(
            body,
            read(&dir.join("body.json")).trim_end(),
            "{}",
            dir.display()
        );
        let skipped = dir.join("skipped-event.json");
        if skipped.exists() {
            let outcome = transform(&event(&skipped), &config);
            let Ok(Outcome::Skip(reason)) = outcome else {
                panic!("{}: {outcome:?}", skipped.display());
            };
            assert_eq!(reason, read(&dir.join("skip-reason.txt")).trim_end());
        }
    }
}

/// The contents of every fenced code block of `markdown`.
fn code_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        match (&mut current, line.starts_with("```")) {
            (None, true) => current = Some(Vec::new()),
            (Some(lines), true) => {
                blocks.push(lines.join("\n"));
                current = None;
            }
            (Some(lines), false) => lines.push(line),
            (None, false) => {}
        }
    }
    blocks
}

#[test]
fn readme_shows_every_example_file_verbatim() {
    let readme = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    let blocks = code_blocks(&readme);
    for dir in examples() {
        for file in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let text = read(&file.path());
            assert!(
                blocks.iter().any(|b| b == text.trim_end()),
                "README.md has no code block with the contents of {}",
                file.path().display()
            );
        }
    }
}

/// Per-call cost natively, by phase, for each README example (`cargo test --release -p
/// switchyard-plugin-jq -- --ignored --nocapture per_call`): what the component pays on every
/// event before wasm overhead. Compiling is what a pre-initialised snapshot would save per
/// call; parsing the envelope and running are what it would not. A measurement: it prints
/// medians and checks only that the timed calls produce the golden body.
#[test]
#[ignore = "a measurement: run it in release with --nocapture"]
fn per_call_cost() {
    for dir in examples() {
        let config = config(&dir);
        let event = event(&dir.join("event.json"));
        let golden = read(&dir.join("body.json"));
        let code = config.program.as_str();
        let mut names = Vec::new();
        if let Ok(tokens) = jaq_core::load::lex::Lexer::new(code).lex() {
            crate::calls::words(&tokens, &mut names);
        }
        let program = crate::program::compile(code).expect("compiles");
        let envelope = super::envelope(&event).expect("the envelope");
        let input = jaq_json::read::parse_single(envelope.as_bytes()).expect("the envelope parses");
        let args = jaq_json::read::parse_single(config.args.as_bytes()).expect("the args parse");
        let body = |outcome: Result<Outcome, String>| match outcome {
            Ok(Outcome::Deliver(d)) => String::from_utf8_lossy(&d.body).into_owned(),
            other => panic!("{}: {other:?}", dir.display()),
        };
        let whole = transform(&event, &config).map_err(|e| e.message().to_owned());
        assert_eq!(body(whole), golden.trim_end());
        let run = || crate::output::run(&program, input.clone(), args.clone());
        assert_eq!(body(run()), golden.trim_end());
        let prelude = crate::prelude::needed(|n, a| names.contains(&(n, a))).len();
        println!(
            "{}: whole call {:.1} µs = compile {:.1} µs (lex {:.1}, parse {:.1}, {prelude} prelude defs {:.1}, \
             natives list {:.1}, the rest jaq's compiler) + parse the envelope {:.1} µs + run {:.1} µs \
             (medians of {CALLS} each)",
            dir.file_name().unwrap_or_default().to_string_lossy(),
            median_micros(|| transform(&event, &config)),
            median_micros(|| crate::program::compile(code)),
            median_micros(|| jaq_core::load::lex::Lexer::new(code).lex()),
            median_micros(|| jaq_core::load::parse(code, |p| p.term())),
            median_micros(|| crate::prelude::needed(|n, a| names.contains(&(n, a)))),
            median_micros(|| crate::natives::natives().count()),
            median_micros(|| jaq_json::read::parse_single(envelope.as_bytes())),
            median_micros(run),
        );
    }
}

/// Calls a measured step runs.
const CALLS: usize = 3_000;

/// The median time of `CALLS` runs of `step`, in microseconds (its result is kept opaque to
/// the optimiser, so the work is not left out).
fn median_micros<T>(mut step: impl FnMut() -> T) -> f64 {
    let mut micros: Vec<f64> = (0..CALLS)
        .map(|_| {
            let started = std::time::Instant::now();
            drop(std::hint::black_box(step()));
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    micros.sort_by(f64::total_cmp);
    micros[CALLS / 2]
}
