//! The real `switchyard` binary as a child process, for what only a process shows: its peak
//! memory, its CPU time, its children (plugin compilers), and how fast SIGTERM ends it.
//! `SWITCHYARD_BIN=/abs/path` runs another build (e.g. the release binary for the figures in
//! `docs/PERFORMANCE.md`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::common::server::KEY;
use crate::common::wait_until;

/// A running service process; killed when dropped.
pub struct Service {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    http: reqwest::Client,
}

impl Service {
    /// Starts `switchyard serve` on `data_dir` (plugins in `<data_dir>/plugins`, no bundled
    /// plugins, loopback receivers allowed) with these extra environment variables, and waits
    /// until it is healthy.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        switchyard::net::install_crypto_provider();
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let binary = std::env::var("SWITCHYARD_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchyard").to_owned());
        let mut command = Command::new(binary);
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .env("SWITCHYARD_API_KEY", KEY)
            .env("SWITCHYARD_ALLOW_PRIVATE_NETWORKS", "true")
            .env("SWITCHYARD_BUNDLED_PLUGINS", "false")
            .env("SWITCHYARD_CONFIG", data_dir.join("none.toml"))
            .env("RUST_LOG", "warn,switchyard=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().unwrap();
        let service = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let healthy = wait_until(Duration::from_secs(60), || async {
            service
                .http
                .get(format!("{}/healthz", service.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(healthy, "the service process did not become healthy");
        service
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A request with the admin key.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(KEY)
    }

    /// Uploads `bytes` as plugin `name` and waits for the compile's result (`?wait=true`: a
    /// bomb takes longer than `plugin_upload_wait`); returns the status, the JSON answer and
    /// how long it took.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> (u16, Value, Duration) {
        let started = Instant::now();
        let response = self
            .request(Method::PUT, &format!("/v1/plugins/{name}?wait=true"))
            .header("content-type", "application/wasm")
            .timeout(Duration::from_secs(300))
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let json = response.json().await.unwrap_or(Value::Null);
        (status, json, started.elapsed())
    }

    /// [`Service::upload`] that returns a failed request instead of panicking.
    pub async fn try_upload(&self, name: &str, bytes: Vec<u8>) -> reqwest::Result<(u16, Value)> {
        let response = self
            .request(Method::PUT, &format!("/v1/plugins/{name}?wait=true"))
            .header("content-type", "application/wasm")
            .timeout(Duration::from_secs(300))
            .body(bytes)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// `GET /v1/plugins/{name}`.
    pub async fn plugin(&self, name: &str) -> Value {
        self.request(Method::GET, &format!("/v1/plugins/{name}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        status_kib(self.pid(), "VmHWM:") as f64 / 1024.0
    }

    /// CPU time used by the service and its waited-for children, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which may contain spaces) end with ')'.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // utime, stime, cutime, cstime are fields 14-17 (1-based): 11-14 after the name.
        let ticks: u64 = fields[11..15]
            .iter()
            .map(|f| f.parse::<u64>().unwrap())
            .sum();
        ticks as f64 / 100.0
    }

    /// Times each of the service's threads went to sleep of its own accord so far (its
    /// `voluntary_ctxt_switches`), by thread id: each is a wake-up to come. Preemptions by
    /// other processes (`nonvoluntary_…`) are not counted, so a busy machine does not change it.
    pub fn voluntary_switches(&self) -> std::collections::HashMap<String, u64> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid())).unwrap();
        tasks
            .filter_map(|task| {
                let task = task.ok()?;
                let status = std::fs::read_to_string(task.path().join("status")).ok()?;
                let switches = status
                    .lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
                    .trim()
                    .parse()
                    .ok()?;
                Some((task.file_name().to_string_lossy().into_owned(), switches))
            })
            .collect()
    }

    /// The ids of the service's child processes (its plugin compilers).
    pub fn children(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `timeout` for the process to exit; returns how long it took, or `None`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if self.child.try_wait().unwrap().is_some() {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `/proc/<pid>/status` line's value in KiB.
fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The children of every thread of `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    children
}

/// Whether a process with this id is still alive (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat[stat.rfind(')').unwrap() + 2..].chars().next();
            state != Some('Z') && state != Some('X')
        })
        .unwrap_or(false)
}
