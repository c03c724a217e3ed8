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

/// Per-call cost natively, with where it goes (`cargo test --release -p
/// switchyard-plugin-jq -- --ignored --nocapture per_call`): what the component pays on every
/// event, before wasm overhead.
#[test]
#[ignore = "a measurement, not a test"]
fn per_call_cost() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("slack");
    let config = config(&dir);
    let event = event(&dir.join("event.json"));
    let code = config.program.as_str();
    let n = 5000;
    let time = |f: &dyn Fn()| {
        let started = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        started.elapsed() / n
    };
    let mut names = Vec::new();
    if let Ok(tokens) = jaq_core::load::lex::Lexer::new(code).lex() {
        crate::calls::words(&tokens, &mut names);
    }
    let program = crate::program::compile(code).unwrap_or_default();
    let input = super::envelope(&event).unwrap_or_default();
    for _ in 0..3 {
        let total = time(&|| {
            std::hint::black_box(transform(&event, &config).ok());
        });
        let compile = time(&|| {
            std::hint::black_box(crate::program::compile(code).is_ok());
        });
        let lex = time(&|| {
            std::hint::black_box(jaq_core::load::lex::Lexer::new(code).lex().is_ok());
        });
        let parse = time(&|| {
            std::hint::black_box(jaq_core::load::parse(code, |p| p.term()).is_some());
        });
        let prelude = time(&|| {
            std::hint::black_box(crate::prelude::needed(|n, a| names.contains(&(n, a))).len());
        });
        let natives = time(&|| {
            std::hint::black_box(crate::natives::natives().count());
        });
        let run = time(&|| {
            let input = jaq_json::read::parse_single(input.as_bytes()).unwrap_or_default();
            std::hint::black_box(crate::output::run(&program, input, jaq_json::Val::Null).ok());
        });
        println!(
            "slack example: whole call {total:?} = compile {compile:?} (lex {lex:?}, parse {parse:?}, \
             parse {} prelude defs {prelude:?}, natives list {natives:?}, rest is jaq's compiler) \
             + run {run:?} (parse the envelope, run, print and check the body)",
            crate::prelude::needed(|n, a| names.contains(&(n, a))).len()
        );
    }
}

/// Where a call's time goes natively, by phase, for each README example: compiling the
/// program (what a pre-initialised snapshot would save per call) against running it. A
/// measurement, not a check of speed: it prints figures and asserts only that every timed run
/// produced the golden body. Release build, so the figures mean something:
/// `cargo test --release -p switchyard-plugin-jq -- --ignored --nocapture phases`.
#[test]
#[ignore = "a measurement: run it in release with --nocapture"]
fn phases() {
    const CALLS: usize = 3_000;
    let median = |mut micros: Vec<f64>| {
        micros.sort_by(f64::total_cmp);
        micros[micros.len() / 2]
    };
    let time = |f: &mut dyn FnMut()| {
        let started = std::time::Instant::now();
        f();
        started.elapsed().as_secs_f64() * 1e6
    };
    for dir in examples() {
        let config = config(&dir);
        let event = event(&dir.join("event.json"));
        let golden = read(&dir.join("body.json"));
        let envelope = switchyard_plugin_sdk::envelope::envelope_text(&event)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let program = crate::program::compile(&config.program).expect("compiles");
        let (mut compile, mut parse, mut run, mut whole) = (vec![], vec![], vec![], vec![]);
        for _ in 0..CALLS {
            compile.push(time(&mut || {
                std::hint::black_box(crate::program::compile(&config.program).ok());
            }));
            let mut input = None;
            parse.push(time(&mut || {
                input = jaq_json::read::parse_single(envelope.as_bytes()).ok();
            }));
            let input = input.expect("the envelope parses");
            let args = jaq_json::read::parse_single(b"{}").expect("parses");
            let mut outcome = None;
            run.push(time(&mut || {
                outcome = Some(crate::output::run(&program, input.clone(), args.clone()));
            }));
            let mut full = None;
            whole.push(time(&mut || {
                full = Some(transform(&event, &config).map_err(|e| e.message().to_owned()));
            }));
            for outcome in [outcome, full] {
                let Some(Ok(Outcome::Deliver(d))) = outcome else {
                    panic!("{}: {outcome:?}", dir.display());
                };
                assert_eq!(String::from_utf8_lossy(&d.body), golden.trim_end());
            }
        }
        println!(
            "{}: compile {:.1} µs, parse the envelope {:.1} µs, run {:.1} µs, whole transform {:.1} µs (medians of {CALLS})",
            dir.file_name().unwrap_or_default().to_string_lossy(),
            median(compile),
            median(parse),
            median(run),
            median(whole),
        );
    }
}
