//! The real `switchyard` binary as a child process, configured through `SWITCHYARD_*`
//! variables as an operator would: for the tests that kill it, run two of it, or measure it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::server::KEY;
use super::wait_until;

/// A `switchyard serve` process; killed (SIGKILL) when dropped.
pub struct Process {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// Where its stderr goes.
    pub stderr: PathBuf,
}

/// A port nobody listens on right now (the child binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

impl Process {
    /// Starts `switchyard serve` on `data_dir` with the test defaults (the test key, loopback
    /// receivers allowed, no bundled plugins, quick retries) and `env` on top. Does not wait.
    pub fn spawn(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        // The test's own HTTP clients need it, as in-process servers install it.
        switchyard::net::install_crypto_provider();
        let port = free_port();
        let stderr = data_dir.with_extension(format!("{port}.stderr"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SWITCHYARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHYARD_DATA_DIR", data_dir)
            .env("SWITCHYARD_API_KEY", KEY)
            .env("SWITCHYARD_ALLOW_PRIVATE_NETWORKS", "true")
            .env("SWITCHYARD_BUNDLED_PLUGINS", "false")
            .env("SWITCHYARD_RETRY_SCHEDULE", "100ms,100ms")
            .env("RUST_LOG", "warn,switchyard=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().unwrap(),
            base: format!("http://127.0.0.1:{port}"),
            stderr,
        }
    }

    /// [`Process::spawn`], then waits until it answers `/healthz`.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut process = Self::spawn(data_dir, env);
        let healthy = process.wait_healthy(Duration::from_secs(60)).await;
        assert!(
            healthy,
            "switchyard did not become healthy: {}",
            process.stderr_text()
        );
        process
    }

    /// Waits until it answers `/healthz` (false if it exits or the time runs out first).
    pub async fn wait_healthy(&mut self, timeout: Duration) -> bool {
        let http = reqwest::Client::new();
        let url = format!("{}/healthz", self.base);
        let mut exited = false;
        let healthy = wait_until(timeout, || {
            exited |= self.child.try_wait().ok().flatten().is_some();
            let request = http.get(&url).timeout(Duration::from_secs(2)).send();
            let done = exited;
            async move { done || request.await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        healthy && !exited
    }

    /// Waits for it to exit on its own.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) it has used so far, from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which may contain spaces) in parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // In clock ticks of USER_HZ, which is 100 on Linux.
        Duration::from_millis(ticks * 10)
    }

    /// What it wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGKILL, and reap it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
