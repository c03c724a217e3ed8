//! Issue 8 item 1: once started, an idle service reads no plugin file. Measured from outside
//! (an inotify watch of our own on the plugins folder sees every open) and from inside (the
//! registry's read counter, also on `/metrics`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use notify_debouncer_full::notify::event::AccessKind;
use notify_debouncer_full::notify::{self, EventKind, RecursiveMode, Watcher as _};
use reqwest::Method;

use switchyard::plugins::BUNDLED;

use crate::common::{TestServer, wait_until};

/// How long the service is watched while idle.
const IDLE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_service_reads_no_plugin_file() {
    let server = TestServer::start_with(|c| c.bundled_plugins = true).await;
    let bundled = BUNDLED.len();
    // The jq and js plugins carry an interpreter each: seconds to compile in a debug build.
    let ready = wait_until(Duration::from_secs(120), || async {
        let list = server.expect(Method::GET, "/v1/plugins", None, 200).await;
        list["data"]
            .as_array()
            .is_some_and(|all| all.len() == bundled && all.iter().all(|p| p["status"] == "ready"))
    })
    .await;
    assert!(ready, "the bundled plugins did not load");

    let opens = Arc::new(AtomicUsize::new(0));
    let counted = opens.clone();
    let mut watch = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && matches!(event.kind, EventKind::Access(AccessKind::Open(_)))
        {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    })
    .unwrap();
    let plugins_dir = server.data_dir.join("plugins");
    watch
        .watch(&plugins_dir, RecursiveMode::NonRecursive)
        .unwrap();
    // Let anything still settling from the start settle (the debounce is 100 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let opened_before = opens.load(Ordering::Relaxed);
    let reads_before = file_reads(&server).await;
    tokio::time::sleep(IDLE).await;
    let opened = opens.load(Ordering::Relaxed) - opened_before;
    let reads_after = file_reads(&server).await;
    eprintln!("idle for {IDLE:?}: {opened} opens of plugin files seen");
    assert_eq!(opened, 0, "plugin files were opened while idle");
    let (before, after) = (reads_before.unwrap(), reads_after.unwrap());
    assert!(
        before >= bundled as u64,
        "the start-up read each bundled plugin once: {before}"
    );
    assert_eq!(
        after, before,
        "the registry counted plugin file reads while idle"
    );
}

/// `switchyard_plugin_file_reads_total` from `/metrics`.
async fn file_reads(server: &TestServer) -> Option<u64> {
    server
        .metric("switchyard_plugin_file_reads_total")
        .await
        .map(|v| v as u64)
}

/// The process view over 10 s (the real binary, bundled plugins loaded): no plugin file read
/// and under 1% of a core. (A parked delivery backlog is the dispatcher's part of this check.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_service_process_uses_almost_no_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let service =
        super::process::Service::start(dir.path(), &[("SWITCHYARD_BUNDLED_PLUGINS", "true")]).await;
    // Every one, jq's and js's interpreters too: the start serves after 5 s, and a compile
    // still running would be counted as idle CPU.
    let loaded = wait_until(Duration::from_secs(120), || async {
        let mut all = true;
        for (name, _) in BUNDLED {
            all &= service.plugin(name).await["status"] == "ready";
        }
        all
    })
    .await;
    assert!(loaded, "the bundled plugins did not load");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reads = process_metric(&service, "switchyard_plugin_file_reads_total").await;
    let cpu = service.cpu_seconds();
    let switches = service.voluntary_switches();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let used = service.cpu_seconds() - cpu;
    // Per thread: threads that ended meanwhile (idle blocking-pool threads) take their counts
    // with them; those started meanwhile count from zero.
    let wakeups: u64 = service
        .voluntary_switches()
        .iter()
        .map(|(thread, n)| n.saturating_sub(switches.get(thread).copied().unwrap_or(0)))
        .sum();
    let reads_after = process_metric(&service, "switchyard_plugin_file_reads_total").await;
    eprintln!(
        "idle for 10 s: {used:.2} s of CPU ({:.1}% of a core), {wakeups} thread wake-ups, plugin file reads {reads} -> {reads_after}",
        used * 10.0
    );
    assert_eq!(reads_after, reads, "plugin files were read while idle");
    assert!(used < 0.1, "{used:.2} s of CPU in 10 s of idling");
    // About 90 here: the dispatcher's once-a-second look for due work, the tokio workers'
    // timers, the two /metrics reads of this test. The folder watcher's debouncer thread
    // alone woke 40 times a second (over 600 in all).
    assert!(
        wakeups < 400,
        "{wakeups} thread wake-ups in 10 s of idling (more than 40 a second)"
    );
}

async fn process_metric(service: &super::process::Service, name: &str) -> u64 {
    let text = service
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}
