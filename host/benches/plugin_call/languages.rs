//! The example plugin in each language (`examples/plugins`: Rust, JavaScript with
//! componentize-js and with componentize-qjs, Python with componentize-py), all the same
//! Slack-style transform: compile time (in a child process, as the service compiles), load
//! from the compiled cache, and the cost of one call in a fresh sandbox (median and p99),
//! then calls/s with 32 callers at once. The JavaScript and Python components are built with
//! `examples/plugins/build.sh` (a language whose toolchain is missing is left out, with a
//! note).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::plugins::{
    Cache, CompileBudget, Compiler, Limits, LoadedPlugin, MemoryDigests, PluginEvent, Runtime,
};

/// Callers at once in the throughput run.
const CONCURRENT: usize = 32;

/// Each example: name, sequential calls measured.
const EXAMPLES: [(&str, usize); 4] = [
    ("rust", 20_000),
    ("js-qjs", 4_000),
    ("js", 4_000),
    ("python", 2_000),
];

/// Runs every example that can be built here.
pub async fn run() {
    println!(
        "\nexample plugins (examples/plugins), the same Slack-style transform in each language:"
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned();
    let only = std::env::var("PLUGIN_BENCH_ONLY").unwrap_or_default();
    for (name, calls) in EXAMPLES {
        if !only.is_empty() && !only.split(',').any(|o| o == name) {
            continue;
        }
        let bytes = match component(&root, name) {
            Ok(bytes) => bytes,
            Err(why) => {
                println!("  {name:<7} left out: {why}");
                continue;
            }
        };
        one(name, bytes, calls).await;
    }
}

/// The example's component: the Rust one from the build, the others from `build.sh`.
fn component(root: &std::path::Path, name: &str) -> Result<Vec<u8>, String> {
    let path = if name == "rust" {
        PathBuf::from(concat!(
            env!("SWITCHYARD_FIXTURE_PLUGINS_DIR"),
            "/example_rust.wasm"
        ))
    } else {
        let out = Command::new("bash")
            .arg(root.join("examples/plugins/build.sh"))
            .arg(name)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Keep-resident sizes compared, MiB: 1.5 (the value before it was a setting), 2 (the
/// default), 16 and 64.
const KEEP_RESIDENT: [usize; 4] = [3 << 19, 2 << 20, 16 << 20, 64 << 20];

fn runtime(cache: &std::path::Path, digests: &Arc<MemoryDigests>) -> Runtime {
    runtime_keeping(cache, digests, Limits::default().keep_resident_bytes)
}

fn runtime_keeping(cache: &std::path::Path, digests: &Arc<MemoryDigests>, keep: usize) -> Runtime {
    let limits = Limits {
        keep_resident_bytes: keep,
        ..Limits::default()
    };
    Runtime::new(limits, Some(Cache::new(cache, digests.clone())))
        .expect("runtime")
        .with_compiler(Compiler::Child {
            program: env!("CARGO_BIN_EXE_switchyard").into(),
            budget: CompileBudget::default(),
        })
}

fn event() -> PluginEvent {
    PluginEvent {
        id: "evt_01BENCH".into(),
        event_type: "post.published".into(),
        timestamp: 1_795_446_245,
        subscription_id: "sub_01BENCH".into(),
        payload: serde_json::json!({
            "title": "Ships & Boats", "url": "https://blog.example/ships", "words": 1200,
            "tags": ["sea", "travel"], "author": {"name": "Ann"}
        })
        .to_string(),
    }
}

const CONFIG: &str = r#"{"title": "New post: {{data.title}}", "text": "*{{data.author.name}}* wrote <{{data.url}}|{{data.title}}>", "fields": ["data.author.name", "data.words", "data.tags"], "skip_types": ["post.draft*"]}"#;

async fn one(name: &str, bytes: Vec<u8>, calls: usize) {
    let cache = tempfile::tempdir().expect("temp dir");
    let digests = Arc::new(MemoryDigests::default());
    let rt = runtime(cache.path(), &digests);
    let started = Instant::now();
    let plugin = match rt.load(name, bytes.clone()).await {
        Ok(plugin) => plugin,
        Err(e) => {
            println!("  {name:<7} does not load: {e}");
            return;
        }
    };
    let compile = started.elapsed();
    let restarted = runtime(cache.path(), &digests);
    let started = Instant::now();
    restarted
        .load(name, bytes.clone())
        .await
        .expect("loads from the cache");
    let cached = started.elapsed();
    drop(restarted);

    // One window: the same calls under each keep-resident size, each from the cache.
    let mut by_keep = Vec::new();
    for keep in KEEP_RESIDENT {
        let rt = runtime_keeping(cache.path(), &digests, keep);
        let plugin = rt
            .load(name, bytes.clone())
            .await
            .expect("loads from the cache");
        let (mut inside, _) = sequential(&rt, &plugin, calls).await;
        by_keep.push(format!(
            "{:.1} MiB: {:.1} µs",
            keep as f64 / f64::from(1 << 20),
            percentile(&mut inside, 0.5)
        ));
    }
    let (mut inside, mut caller) = sequential(&rt, &plugin, calls).await;
    let (per_second, failed, mut under_load) = concurrently(&rt, &plugin, calls).await;
    println!(
        "  {name:<7} {:>5.1} MB  compile {:>6.2} s  cached load {:>6.1} ms  call median {:>7.1} µs  p99 {:>7.1} µs  (caller {:>7.1} µs)  {CONCURRENT} callers {:>6.0} calls/s, p99 {:>7.1} µs{}",
        bytes.len() as f64 / 1e6,
        compile.as_secs_f64(),
        cached.as_secs_f64() * 1e3,
        percentile(&mut inside, 0.5),
        percentile(&mut inside, 0.99),
        percentile(&mut caller, 0.5),
        per_second,
        percentile(&mut under_load, 0.99),
        if failed == 0 {
            String::new()
        } else {
            format!(", {failed} FAILED")
        }
    );
    println!(
        "          call median by keep-resident size: {}",
        by_keep.join(", ")
    );
}

/// `calls` sequential calls after a warm-up: each call's time in the sandbox and as the
/// caller sees it.
async fn sequential(
    rt: &Runtime,
    plugin: &Arc<LoadedPlugin>,
    calls: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    for _ in 0..calls / 10 {
        rt.transform(plugin, event(), CONFIG)
            .await
            .result
            .expect("warm-up call");
    }
    let mut inside = Vec::with_capacity(calls);
    let mut caller = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let report = rt.transform(plugin, event(), CONFIG).await;
        caller.push(started.elapsed());
        report.result.expect("call");
        inside.push(report.duration);
    }
    (inside, caller)
}

/// Calls/s with [`CONCURRENT`] callers, how many calls failed, and each call's time in the
/// sandbox.
async fn concurrently(
    rt: &Runtime,
    plugin: &Arc<LoadedPlugin>,
    calls: usize,
) -> (f64, usize, Vec<Duration>) {
    let started = Instant::now();
    let each = calls / CONCURRENT;
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let (rt, plugin) = (rt.clone(), plugin.clone());
            tokio::spawn(async move {
                let mut failed = 0;
                let mut times = Vec::with_capacity(each);
                for _ in 0..each {
                    let report = rt.transform(&plugin, event(), CONFIG).await;
                    times.push(report.duration);
                    if let Err(e) = report.result {
                        if failed == 0 {
                            eprintln!("    a call failed: {e}");
                        }
                        failed += 1;
                    }
                }
                (failed, times)
            })
        })
        .collect();
    let (mut failed, mut all) = (0, Vec::with_capacity(calls));
    for task in tasks {
        let (f, times) = task.await.expect("bench task");
        failed += f;
        all.extend(times);
    }
    (
        (each * CONCURRENT) as f64 / started.elapsed().as_secs_f64(),
        failed,
        all,
    )
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort_unstable();
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e6
}
