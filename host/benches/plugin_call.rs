//! Prints what a plugin costs: compiling the bundled Slack component, loading it from the
//! compiled-artefact cache (a restart), and one Slack transform per event (fresh sandbox per
//! call): its cost inside the sandbox and as a caller sees it (median and p99), and calls/s
//! with many callers at once; then the same per-call figures for the bundled `jq` and `js`
//! transform plugins on their README's Slack example, and the example plugin in every
//! language (Rust, JavaScript, Python: `plugin_call/languages.rs`). A benchmark, not a test:
//! it asserts nothing.
//!
//! `cargo bench -p switchyard --bench plugin_call` (release build), or
//! `cargo bench -p switchyard --bench plugin_call --profile dev` for a quick look.

use std::time::{Duration, Instant};

use switchyard::plugins::{BUNDLED, Cache, Limits, MemoryDigests, PluginEvent, Runtime};

#[path = "plugin_call/languages.rs"]
mod languages;

const CALLS: usize = 20_000;
/// Callers at once in the throughput run.
const CONCURRENT: usize = 64;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

async fn bench() {
    // `PLUGIN_BENCH_ONLY=js,python` runs only those example plugins (e.g. under `perf record`).
    if std::env::var_os("PLUGIN_BENCH_ONLY").is_some() {
        languages::run().await;
        return;
    }
    let slack = BUNDLED
        .iter()
        .find(|(n, _)| *n == "slack")
        .map(|(_, b)| b.to_vec())
        .expect("slack is bundled");
    let cache = tempfile::tempdir().expect("temp dir");

    // The digests a restart trusts (the service keeps them in its database).
    let digests = std::sync::Arc::new(MemoryDigests::default());
    let cached = || Some(Cache::new(cache.path(), digests.clone()));
    let rt = Runtime::new(Limits::default(), cached()).expect("runtime");
    let started = Instant::now();
    let plugin = rt
        .load("slack", slack.clone())
        .await
        .expect("slack compiles");
    let compile = started.elapsed();

    let restarted = Runtime::new(Limits::default(), cached()).expect("runtime");
    let started = Instant::now();
    restarted
        .load("slack", slack.clone())
        .await
        .expect("slack loads from cache");
    let cached = started.elapsed();

    let config = r#"{"title": "New post: {{data.title}}", "text": "by {{data.author.name}}", "fields": ["data.title", "data.author.name", "data.tags"]}"#;
    let payload = serde_json::json!({
        "title": "Switchyard 1.0 is out",
        "author": {"name": "Ann", "id": 7},
        "tags": ["release", "webhooks"],
        "body": "x".repeat(700),
    })
    .to_string();
    let event = || PluginEvent {
        id: "evt_01BENCH".into(),
        event_type: "post.published".into(),
        timestamp: 1_700_000_000,
        subscription_id: "sub_01BENCH".into(),
        payload: payload.clone(),
    };
    for _ in 0..500 {
        rt.transform(&plugin, event(), config)
            .await
            .result
            .expect("warm-up call");
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(CALLS);
    let mut inside: Vec<Duration> = Vec::with_capacity(CALLS);
    let wall = Instant::now();
    for _ in 0..CALLS {
        let started = Instant::now();
        let report = rt.transform(&plugin, event(), config).await;
        samples.push(started.elapsed());
        report.result.expect("slack call");
        inside.push(report.duration);
    }
    let wall = wall.elapsed();
    let concurrent = {
        let started = Instant::now();
        let tasks: Vec<_> = (0..CONCURRENT)
            .map(|_| {
                let (rt, plugin, event) = (rt.clone(), plugin.clone(), event());
                tokio::spawn(async move {
                    for _ in 0..CALLS / CONCURRENT {
                        rt.transform(&plugin, event.clone(), config)
                            .await
                            .result
                            .expect("slack call");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("bench task");
        }
        (CALLS / CONCURRENT * CONCURRENT) as f64 / started.elapsed().as_secs_f64()
    };
    let pct = |samples: &mut Vec<Duration>, p: f64| {
        samples.sort_unstable();
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e6
    };
    println!(
        "plugin bench: slack component {} bytes, {} byte payload",
        slack.len(),
        payload.len()
    );
    println!(
        "  compile (no cache)        {:>10.1} ms",
        compile.as_secs_f64() * 1e3
    );
    println!(
        "  load from compiled cache  {:>10.2} ms",
        cached.as_secs_f64() * 1e3
    );
    println!(
        "  transform, in the sandbox  median {:.1} µs   p99 {:.1} µs   (instantiate + call)",
        pct(&mut inside, 0.5),
        pct(&mut inside, 0.99),
    );
    println!(
        "  transform, caller's view   median {:.1} µs   p99 {:.1} µs   ({CALLS} calls one after another: {:.0} calls/s, with the hand-off to a plugin thread)",
        pct(&mut samples, 0.5),
        pct(&mut samples, 0.99),
        CALLS as f64 / wall.as_secs_f64()
    );
    println!("  transform, {CONCURRENT} callers at once  {concurrent:.0} calls/s");

    transform_plugins().await;
    languages::run().await;
}

// ---- The bundled no-compile transform plugins (`jq`, `js`) -------------------------------
//
// Each runs its README's Slack example (`plugins/{jq,js}/examples/slack`) on that example's
// event: the program is compiled/evaluated on every call, inside a fresh sandbox, as in
// production.

/// Calls per transform plugin.
const TRANSFORM_CALLS: usize = 5_000;

/// A Slack-style jq program without the README's mrkdwn escaping (which is most of that
/// program's run time: four `esc` calls, twelve split/join pairs).
const PLAIN_SLACK_JQ: &str = r#"if .type | startswith("post.draft") then skip("drafts are not announced") else {text: "New post: \(.data.title)", blocks: [{type: "header", text: {type: "plain_text", text: "New post: \(.data.title)"}}, {type: "section", fields: [{type: "mrkdwn", text: "*Words*\n\(.data.words)"}, {type: "mrkdwn", text: "*Tags*\n\(.data.tags | join(", "))"}]}, {type: "context", elements: [{type: "mrkdwn", text: "`\(.type)` · \(.id) · \(.timestamp)"}]}]} end"#;

async fn transform_plugins() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins");
    for (name, source, label) in [
        ("jq", Some("program.jq"), "Slack README example"),
        ("jq", None, "Slack, no escaping"),
        ("js", Some("transform.js"), "Slack README example"),
    ] {
        let dir = format!("{examples}/{name}/examples/slack");
        let read =
            |file: &str| std::fs::read_to_string(format!("{dir}/{file}")).expect("example file");
        let program = source.map_or_else(|| PLAIN_SLACK_JQ.to_owned(), read);
        let config = serde_json::Value::String(program).to_string();
        let envelope: serde_json::Value =
            serde_json::from_str(&read("event.json")).expect("example envelope");
        let event = PluginEvent {
            id: "evt_01J".into(),
            event_type: "post.published".into(),
            timestamp: 1_795_446_245,
            subscription_id: "sub_01BENCH".into(),
            payload: envelope["data"].to_string(),
        };
        let bytes = BUNDLED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.to_vec())
            .expect("bundled");
        let rt = Runtime::new(Limits::default(), None).expect("runtime");
        let started = Instant::now();
        let plugin = rt.load(name, bytes.clone()).await.expect("compiles");
        let compile = started.elapsed();
        for _ in 0..200 {
            rt.transform(&plugin, event.clone(), &config)
                .await
                .result
                .expect("warm-up call");
        }
        let mut inside = Vec::with_capacity(TRANSFORM_CALLS);
        let mut outside = Vec::with_capacity(TRANSFORM_CALLS);
        // A call can hit the 100 ms deadline when the machine stalls the thread (a loaded
        // box); count those instead of ending the run.
        let mut failed = 0;
        for _ in 0..TRANSFORM_CALLS {
            let started = Instant::now();
            let report = rt.transform(&plugin, event.clone(), &config).await;
            outside.push(started.elapsed());
            if report.result.is_err() {
                failed += 1;
                continue;
            }
            inside.push(report.duration);
        }
        let pct = |samples: &mut Vec<Duration>, p: f64| {
            samples.sort_unstable();
            samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64()
                * 1e6
        };
        println!(
            "{name} plugin ({label}): component {} bytes, compile {:.0} ms",
            bytes.len(),
            compile.as_secs_f64() * 1e3
        );
        println!(
            "  transform, in the sandbox  median {:.1} µs   p99 {:.1} µs   (instantiate + compile the program + run)",
            pct(&mut inside, 0.5),
            pct(&mut inside, 0.99)
        );
        println!(
            "  transform, caller's view   median {:.1} µs   p99 {:.1} µs   ({failed} of {TRANSFORM_CALLS} calls failed)",
            pct(&mut outside, 0.5),
            pct(&mut outside, 0.99)
        );
    }
}
