//! Many plugins (issue 13, "1,000 distinct plugins loaded"): `GROWTH_PLUGINS` (default 1,000)
//! distinct components — the example Rust plugin, each with a custom section of its own, so
//! each has its own version and its own compiled artefact — written into the plugins folder
//! before the service starts. Measured: the cold start (every plugin compiled), the warm
//! start (the same folder again: every artefact cached), the service's memory idle with all
//! of them loaded and after 10 of them ran, and the time from replacing one file to its new
//! version serving.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::common::KEY;
use super::common::service::{Service, metric};

/// Plugins that run after the idle measurement.
const USED: usize = 10;

/// The example Rust plugin, built by `cargo build -p switchyard` with the other plugins.
fn example_plugin() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-plugins/wasm32-wasip2/plugin/example_rust.wasm");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `cargo build --release -p switchyard` first)",
            path.display()
        )
    })
}

/// `base` with a custom section `switchyard-bench` holding `tag` appended: a valid component
/// with the same code and a version (sha256) of its own.
pub fn distinct(base: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"switchyard-bench";
    let mut section = Vec::new();
    leb(name.len(), &mut section);
    section.extend_from_slice(name);
    section.extend_from_slice(tag.as_bytes());
    let mut out = base.to_vec();
    out.push(0); // custom section id
    leb(section.len(), &mut out);
    out.extend_from_slice(&section);
    out
}

fn name(i: usize) -> String {
    format!("p{i:04}")
}

/// Resident memory now, by kind (MiB): (VmRSS, RssAnon, RssFile, VmHWM).
fn memory(pid: u32) -> (f64, f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("VmHWM:"),
    )
}

async fn metrics(service: &Service) -> String {
    reqwest::get(format!("{}/metrics", service.base))
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default()
}

async fn compiles(service: &Service) -> f64 {
    metric(&metrics(service).await, "switchyard_plugin_compiles_total")
}

/// Every plugin listed and ready.
async fn all_ready(service: &Service, http: &reqwest::Client, count: usize) -> bool {
    let Ok(response) = http
        .get(format!("{}/v1/plugins", service.base))
        .bearer_auth(KEY)
        .send()
        .await
    else {
        return false;
    };
    let list: Value = response.json().await.unwrap_or(Value::Null);
    list["data"]
        .as_array()
        .is_some_and(|all| all.len() == count && all.iter().all(|p| p["status"] == "ready"))
}

/// One start on `data`.
struct Started {
    service: Service,
    /// Seconds until `/healthz` answered (the API serves).
    answering: f64,
    /// Seconds until every plugin was ready.
    ready: f64,
    /// Compiles it ran.
    compiles: f64,
}

async fn start(data: &Path, count: usize, http: &reqwest::Client) -> Started {
    let env = [
        ("SWITCHYARD_BUNDLED_PLUGINS", "false"),
        ("SWITCHYARD_RETENTION_FINISHED", "3650d"),
        ("SWITCHYARD_RETENTION_FAILED", "3650d"),
        // The default: the API answers after 5 s, whatever is left to compile.
        ("SWITCHYARD_PLUGIN_STARTUP_WAIT", "5s"),
    ];
    let started = Instant::now();
    let service = Service::start_in(data, &env).await;
    let answering = started.elapsed().as_secs_f64();
    while !all_ready(&service, http, count).await {
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "the plugins did not load within an hour"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = started.elapsed().as_secs_f64();
    let compiles = compiles(&service).await;
    Started {
        service,
        answering,
        ready,
        compiles,
    }
}

/// Idle memory: after a few quiet seconds (the start's scratch freed).
async fn settle_then_memory(service: &Service) -> (f64, f64, f64, f64) {
    tokio::time::sleep(Duration::from_secs(3)).await;
    memory(service.pid)
}

/// Runs `USED` plugins once each (a dry run: instantiate + transform).
async fn use_some(service: &Service, http: &reqwest::Client) {
    for i in 0..USED {
        let response = http
            .post(format!("{}/v1/plugins/{}/dry-run", service.base, name(i)))
            .bearer_auth(KEY)
            .json(&json!({"event": {"type": "post.published", "data": {"title": "hi"}}}))
            .send()
            .await
            .expect("dry run");
        assert_eq!(response.status(), 200, "dry run of {}", name(i));
    }
}

/// Replaces one plugin's file with a new version; seconds until that version serves.
async fn hot_reload(
    service: &Service,
    http: &reqwest::Client,
    plugins: &Path,
    base: &[u8],
    round: usize,
) -> f64 {
    let target = name(USED / 2);
    let bytes = distinct(base, &format!("reloaded {round}"));
    let version = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let staged = plugins.join(format!(".staged-{round}"));
    std::fs::write(&staged, &bytes).expect("stage the new version");
    let started = Instant::now();
    std::fs::rename(&staged, plugins.join(format!("{target}.wasm"))).expect("replace");
    loop {
        let answer: Value = http
            .get(format!("{}/v1/plugins/{target}", service.base))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("plugin")
            .json()
            .await
            .unwrap_or(Value::Null);
        if answer["version"] == version.as_str() && answer["status"] == "ready" {
            return started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the new version did not serve: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The phase: returns a paragraph and table of results.
pub async fn run(count: usize) -> String {
    let base = example_plugin();
    let dir = tempfile::tempdir_in(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .expect("run folder");
    let data = dir.path().join("data");
    let plugins = data.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins folder");
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700));
    }
    for i in 0..count {
        std::fs::write(
            plugins.join(format!("{}.wasm", name(i))),
            distinct(&base, &i.to_string()),
        )
        .expect("write a plugin");
    }
    let http = reqwest::Client::new();

    let Started {
        service,
        answering: cold_answering,
        ready: cold,
        compiles: cold_compiles,
    } = start(&data, count, &http).await;
    let cold_peak = memory(service.pid).3;
    eprintln!(
        "growth plugins: cold start answering after {cold_answering:.1} s, all ready after {cold:.1} s, {cold_compiles} compiles"
    );
    drop(service);
    let cache = dir_size(&data.join("plugin-cache"));

    let Started {
        service,
        ready: warm,
        compiles: warm_compiles,
        ..
    } = start(&data, count, &http).await;
    let warm_peak = memory(service.pid).3;
    let idle = settle_then_memory(&service).await;
    eprintln!("growth plugins: warm start {warm:.2} s, {warm_compiles} compiles, idle {idle:?}");
    use_some(&service, &http).await;
    let used = settle_then_memory(&service).await;
    eprintln!("growth plugins: after {USED} ran: {used:?}");
    let mut reloads = Vec::new();
    for round in 0..3 {
        reloads.push(hot_reload(&service, &http, &plugins, &base, round).await);
    }
    eprintln!("growth plugins: hot reloads {reloads:?} s");
    drop(service);

    // An empty folder, for scale.
    let empty = tempfile::tempdir().expect("empty folder");
    let service = start(empty.path(), 0, &http).await.service;
    let bare = settle_then_memory(&service).await;
    drop(service);

    let reload = reloads.iter().copied().fold(f64::INFINITY, f64::min);
    let reload_max = reloads.iter().copied().fold(0.0, f64::max);
    format!(
        "{count} distinct plugins (the example Rust plugin, {} KiB, each with its own custom section) in the plugins folder; \
         the compile cache holds {:.0} MiB.\n\n\
         | | figure |\n|---|---|\n\
         | cold start (every plugin compiled): API answering / all ready | {cold_answering:.1} s / {cold:.1} s, {cold_compiles:.0} compiles, peak RSS {cold_peak:.0} MiB |\n\
         | warm start (every artefact cached) until all are ready | {warm:.2} s, {warm_compiles:.0} compiles, peak RSS {warm_peak:.0} MiB |\n\
         | RSS idle, {count} loaded (anon / file-backed) | {:.0} MiB ({:.0} / {:.0}) |\n\
         | RSS after {USED} of them ran once (anon / file-backed) | {:.0} MiB ({:.0} / {:.0}) |\n\
         | RSS idle with no plugin (anon / file-backed) | {:.0} MiB ({:.0} / {:.0}) |\n\
         | hot reload of one (file replaced → new version serving), best / worst of 3 | {:.0} / {:.0} ms |",
        base.len() / 1024,
        cache as f64 / f64::from(1 << 20),
        idle.0,
        idle.1,
        idle.2,
        used.0,
        used.1,
        used.2,
        bare.0,
        bare.1,
        bare.2,
        reload * 1e3,
        reload_max * 1e3,
    )
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
