//! Issue 8 item 3: compiles run under a budget of time and memory (in a child process), are
//! refused with a clear 422 past it, never grow the service, never hold up other uploads, are
//! not repeated for a hash that failed, and never hold up a shutdown.
//!
//! These run the real binary (see `process.rs`); with `SWITCHYARD_BIN` set to the release
//! build and `--nocapture` they print the figures quoted in `docs/PERFORMANCE.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::components::{huge_function, huge_function_then_invalid, many_functions};
use super::process::{Service, alive};
use crate::common::plugins::bundled;
use crate::common::wait_until;

/// An error answer (also read by the other upload tests of this folder).
#[derive(Debug, Deserialize)]
pub(super) struct ErrorBody {
    pub(super) error: ErrorOut,
}

#[derive(Debug, Deserialize)]
pub(super) struct ErrorOut {
    pub(super) code: String,
    pub(super) message: String,
}

/// The budget the tests set: far below the defaults, so a bomb hits it quickly.
const TIMEOUT: Duration = Duration::from_secs(5);
const MEMORY_MB: &str = "512";

fn budget() -> [(&'static str, &'static str); 2] {
    [
        ("SWITCHYARD_PLUGIN_COMPILE_TIMEOUT", "5s"),
        ("SWITCHYARD_PLUGIN_COMPILE_MEMORY_MB", MEMORY_MB),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_bombs_are_refused_within_the_budget_without_growing_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(Service::start(dir.path(), &budget()).await);
    let baseline = service.peak_rss_mib();
    for (what, bomb) in [
        ("400,000 functions", many_functions(400_000)),
        ("one huge function", huge_function(100_000)),
    ] {
        let size = bomb.len();
        let upload = {
            let service = service.clone();
            tokio::spawn(async move { service.upload("bomb", bomb).await })
        };
        // A small upload meanwhile goes through at once.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, json, small_took) = service.upload("small", bundled("reshape")).await;
        assert!(status == 200 || status == 201, "{json}");
        let (status, json, took) = upload.await.unwrap();
        assert_eq!(status, 422, "{what}: {json}");
        let body: ErrorBody = serde_json::from_value(json).unwrap();
        assert_eq!(
            body.error.code, "compile_budget_exceeded",
            "{what}: {body:?}"
        );
        assert!(
            body.error.message.contains("plugin_compile_timeout")
                || body.error.message.contains("plugin_compile_memory_mb"),
            "the message names the setting: {}",
            body.error.message
        );
        let peak = service.peak_rss_mib();
        eprintln!(
            "{what} ({:.1} MB): refused after {took:.2?} ({}); a small upload meanwhile took {small_took:.2?}; service peak RSS {peak:.0} MiB (at start {baseline:.0} MiB)",
            size as f64 / 1e6,
            body.error.message
        );
        assert!(
            took < TIMEOUT + Duration::from_secs(5),
            "{what}: refused after {took:?}"
        );
        assert!(
            small_took < Duration::from_secs(4),
            "the small upload waited {small_took:?}"
        );
        assert!(
            peak - baseline < 100.0,
            "{what} grew the service by {:.0} MiB",
            peak - baseline
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_that_failed_is_not_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &budget()).await;
    let file = dir.path().join("plugins").join("bomb.wasm");
    // Seconds of compiling, then a compile error (so nothing is cached): refused either by
    // the 5 s budget (a debug build) or by the error (a release build); a service that does
    // not remember failures does the work again on a touch.
    std::fs::write(&file, huge_function_then_invalid(30_000)).unwrap();
    let refused = wait_until(Duration::from_secs(30), || async {
        service.plugin("bomb").await["status"] == "error"
    })
    .await;
    assert!(
        refused,
        "the bomb was not refused: {}",
        service.plugin("bomb").await
    );
    let error = service.plugin("bomb").await["error"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    eprintln!("refused: {error}");

    // Touch the file (a watcher event) and wait past the debounce: no compiler is started.
    let cpu = service.cpu_seconds();
    let mut spawned = Vec::new();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        spawned.extend(service.children());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let used = service.cpu_seconds() - cpu;
    eprintln!(
        "after touching the refused bomb: {used:.2} s of CPU, compilers started: {spawned:?}"
    );
    assert!(spawned.is_empty(), "the refused hash was compiled again");
    assert!(used < 1.0, "{used:.2} s of CPU after the touch");
    assert_eq!(
        service.plugin("bomb").await["error"].as_str(),
        Some(error.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_compile() {
    let dir = tempfile::tempdir().unwrap();
    // The default budget (60 s): the shutdown must not wait for it.
    let mut service = Service::start(dir.path(), &[]).await;
    let bomb = huge_function(100_000);
    let request = service.request(reqwest::Method::PUT, "/v1/plugins/bomb");
    let upload = tokio::spawn(async move {
        request
            .header("content-type", "application/wasm")
            .body(bomb)
            .send()
            .await
    });
    let compiling = wait_until(Duration::from_secs(10), || async {
        !service.children().is_empty()
    })
    .await;
    let compilers = service.children();
    service.terminate();
    let took = service.wait_exit(Duration::from_secs(10)).await;
    eprintln!("SIGTERM during a compile: exited after {took:?} (compiler running: {compiling})");
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(5)),
        "shutdown waited {took:?}"
    );
    assert!(compiling, "no compiler process was seen");
    let gone = wait_until(Duration::from_secs(5), || async {
        compilers.iter().all(|pid| !alive(*pid))
    })
    .await;
    assert!(gone, "the compiler outlived the service");
    let _ = upload.await;
}
