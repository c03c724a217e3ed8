//! The real `switchyard` binary as a user runs it: `serve` in a child process (through `sh -c`,
//! so a test can set e.g. `ulimit -n` first), configured by environment, its log read until it
//! says where it listens. Killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A running service.
pub struct RealService {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// What it logged before serving.
    pub log: Vec<String>,
}

impl Drop for RealService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `BIN args` after `shell_prefix` (e.g. `"ulimit -n 256 &&"`) with test settings:
/// loopback receivers allowed, no bundled plugins, `max_in_flight` 8, long header and idle
/// timeouts.
pub fn start(data_dir: &std::path::Path, shell_prefix: &str, args: &[&str]) -> RealService {
    switchyard::net::install_crypto_provider();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{shell_prefix} exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env("SWITCHYARD_LISTEN", "127.0.0.1:0")
        .env("SWITCHYARD_DATA_DIR", data_dir)
        .env("SWITCHYARD_BUNDLED_PLUGINS", "false")
        .env("SWITCHYARD_ALLOW_PRIVATE_NETWORKS", "true")
        .env("SWITCHYARD_MAX_IN_FLIGHT", "8")
        .env("SWITCHYARD_HEADER_TIMEOUT", "120s")
        .env("SWITCHYARD_IDLE_TIMEOUT", "120s")
        .env_remove("SWITCHYARD_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The service logs to stdout.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut service = RealService {
        child,
        base: String::new(),
        log: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("the service exited: {status}");
            }
            continue;
        };
        service.log.push(line.clone());
        if let Some(rest) = line.split("listen=").nth(1) {
            let addr = rest.split_whitespace().next().unwrap();
            service.base = format!("http://{addr}");
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return service;
        }
    }
    panic!("the service did not say where it listens");
}
