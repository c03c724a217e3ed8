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

/// The envelope `transform` gets, as an example file holds it.
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
    match Config::try_from(Value::String(read(&dir.join("transform.js")))) {
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

/// Per-call cost natively (`cargo test --release -p switchyard-plugin-js -- --ignored
/// --nocapture per_call`): what the component pays on every event, before wasm overhead.
#[test]
#[ignore = "a measurement, not a test"]
fn per_call_cost() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("slack");
    let config = config(&dir);
    let event = event(&dir.join("event.json"));
    let n = 2000;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(crate::engine::check(&config.source).ok());
        }
        let check = started.elapsed() / n;
        let started = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(transform(&event, &config).ok());
        }
        let total = started.elapsed() / n;
        use rquickjs::context::intrinsic::{Date, Eval, Json, MapSet, RegExp, RegExpCompiler};
        let time = |f: &dyn Fn()| {
            let started = std::time::Instant::now();
            for _ in 0..n {
                f();
            }
            started.elapsed() / n
        };
        let runtime = time(&|| {
            std::hint::black_box(rquickjs::Runtime::new().is_ok());
        });
        let small = time(&|| {
            let rt = rquickjs::Runtime::new().unwrap_or_else(|_| panic!());
            std::hint::black_box(rquickjs::Context::custom::<(Eval, Json)>(&rt).is_ok());
        });
        let ours =
            time(&|| {
                let rt = rquickjs::Runtime::new().unwrap_or_else(|_| panic!());
                std::hint::black_box(
                rquickjs::Context::custom::<(Eval, Json, Date, RegExpCompiler, RegExp, MapSet)>(&rt)
                    .is_ok(),
            );
            });
        let full = time(&|| {
            let rt = rquickjs::Runtime::new().unwrap_or_else(|_| panic!());
            std::hint::black_box(rquickjs::Context::full(&rt).is_ok());
        });
        println!(
            "slack example: runtime + eval {check:?}, whole call {total:?}; Runtime::new {runtime:?}, \
             + Context (Eval, Json) {small:?}, + ours {ours:?}, + full {full:?}"
        );
    }
}
