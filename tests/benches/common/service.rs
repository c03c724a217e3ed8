//! The service under test: the real `switchyard serve` (release build) as a child process, its
//! CPU and memory read from `/proc`, and its own metrics.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::KEY;

/// A running `switchyard serve`, killed when dropped.
pub struct Service {
    pub child: Child,
    pub base: String,
    pub pid: u32,
    /// The temporary folder holding it, if the service made it.
    _dir: Option<tempfile::TempDir>,
    pub cpu_start: (f64, Instant),
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn binary() -> PathBuf {
    if let Ok(bin) = std::env::var("SWITCHYARD_BIN") {
        return PathBuf::from(bin);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target").join("release").join("switchyard")
}

impl Service {
    /// Starts the service on a fresh data folder.
    pub async fn start(extra_env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut service = Self::start_in(dir.path(), extra_env).await;
        service._dir = Some(dir);
        service
    }

    /// Starts the service on the data folder `data_dir` (kept afterwards).
    pub async fn start_in(data_dir: &std::path::Path, extra_env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let bin = binary();
        assert!(
            bin.exists(),
            "{} not found: run `cargo build --release -p switchyard` first",
            bin.display()
        );
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .env("SWITCHYARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHYARD_DATA_DIR", data_dir)
            .env("SWITCHYARD_API_KEY", KEY)
            .env("SWITCHYARD_ALLOW_PRIVATE_NETWORKS", "true")
            .env("RUST_LOG", "warn")
            // Measure a loaded service: the start waits for every plugin's compile (the
            // bundled jq and js take seconds) instead of serving after 5 s while they compile
            // beside the measurement. `extra_env` may set it back.
            .env("SWITCHYARD_PLUGIN_STARTUP_WAIT", "1h")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start switchyard");
        let pid = child.id();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if http
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                break;
            }
            // A start compiles every plugin not cached first: 1,000 of them take minutes.
            assert!(
                started.elapsed() < Duration::from_secs(1800),
                "switchyard did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            base,
            pid,
            _dir: None,
            cpu_start: (cpu_seconds(pid), Instant::now()),
        }
    }

    pub fn mark(&mut self) {
        self.cpu_start = (cpu_seconds(self.pid), Instant::now());
    }

    /// Peak RSS (MiB) and mean CPU (fraction of one core) since the last mark.
    pub fn usage(&self) -> (f64, f64) {
        let cpu =
            (cpu_seconds(self.pid) - self.cpu_start.0) / self.cpu_start.1.elapsed().as_secs_f64();
        (peak_rss_mib(self.pid), cpu)
    }

    pub async fn call(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Value {
        let response = http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path} answered {status}: {value}");
        value
    }
}

pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Prints the service's own view: mean attempt latency and mean plugin time, and where its
/// memory is (anonymous vs file-backed).
pub async fn diagnostics(name: &str, service: &Service) {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", service.pid)).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    eprintln!(
        "{name}: memory now: RssAnon {} RssFile {} RssShmem {} VmHWM {} Threads {}",
        field("RssAnon:"),
        field("RssFile:"),
        field("RssShmem:"),
        field("VmHWM:"),
        field("Threads:")
    );
    let page = reqwest::get(format!("{}/metrics", service.base))
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    let mean = |base: &str| {
        let count = metric(&page, &format!("{base}_count"));
        if count > 0.0 {
            metric(&page, &format!("{base}_sum")) / count * 1e3
        } else {
            0.0
        }
    };
    eprintln!(
        "{name}: service-side mean attempt latency {:.2} ms, mean plugin call {:.3} ms, {:.0} of {:.0} attempts handed over at ingest",
        mean("switchyard_attempt_latency_seconds"),
        mean("switchyard_plugin_duration_seconds"),
        metric(&page, "switchyard_deliveries_handed_off_total"),
        metric(&page, "switchyard_attempt_latency_seconds_count"),
    );
}

pub fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
