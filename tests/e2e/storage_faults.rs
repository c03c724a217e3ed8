//! Storage failures are answered, not hidden: a full disk (a small tmpfs as the data folder,
//! which needs root to mount) gives `503 storage_full`, `/healthz` says so, nothing that was
//! acknowledged is lost, and the service recovers by itself once space frees; a database
//! deleted while running makes ingest refuse to acknowledge.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::common::server::test_config;
use crate::common::{TestReceiver, TestServer, wait_until};

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

#[derive(Debug, Deserialize)]
struct Accepted {
    id: String,
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts one of `size` on `dir`; `None` (with the reason printed) when not root or the
    /// mount fails.
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Self(dir.to_owned())),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: mount -t tmpfs failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 1] {
        let bytes = vec![0xa5u8; chunk];
        while file.write_all(&bytes).is_ok() {
            written += chunk as u64;
        }
    }
    let _ = file.sync_all();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_recovers_when_space_frees_losing_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(_mount) = Tmpfs::mount(&data, "24m") else {
        return;
    };
    let receiver = TestReceiver::start().await;
    let config = test_config(data.clone());
    let server = TestServer::start_config(config.clone()).await;
    server
        .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
        .await;
    let mut acknowledged = HashSet::new();
    for i in 0..5 {
        let a: Accepted = serde_json::from_value(
            server
                .send_event(json!({"type": "before.full", "data": {"i": i}}))
                .await,
        )
        .unwrap();
        acknowledged.insert(a.id);
    }
    let filler = data.join("filler");
    fill(&filler);

    // Events until the database cannot grow any more: then 503 storage_full, never a 500.
    let pad = "y".repeat(32 << 10);
    let mut full = None;
    for i in 0..400 {
        let response = server
            .request(Method::POST, "/v1/events")
            .json(&json!({"type": "while.full", "data": {"i": i, "pad": pad}}))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            202 => {
                let a: Accepted = response.json().await.unwrap();
                acknowledged.insert(a.id);
            }
            503 => {
                let retry_after = response.headers().get("retry-after").cloned();
                full = Some((retry_after, response.json::<ErrorBody>().await.unwrap()));
                break;
            }
            other => panic!(
                "with the disk full ingest answered {other}: {:?}",
                response.text().await
            ),
        }
    }
    let (retry_after, body) = full.expect("the disk never filled up");
    assert_eq!(body.error.code, "storage_full", "{}", body.error.message);
    assert!(retry_after.is_some(), "503 without Retry-After");

    let health = server
        .anonymous(Method::GET, "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let health: ErrorBody = health.json().await.unwrap();
    assert_eq!(health.error.code, "storage_full");

    // Space frees: the service recovers on its own, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let recovered = wait_until(Duration::from_secs(10), || async {
        server
            .anonymous(Method::GET, "/healthz")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(recovered, "/healthz did not recover after space freed");
    let a: Accepted = serde_json::from_value(
        server
            .send_event(json!({"type": "after.full", "data": {}}))
            .await,
    )
    .unwrap();
    acknowledged.insert(a.id);

    // Nothing acknowledged is lost, across a restart too; each is delivered.
    server.stop().await;
    let server = TestServer::start_config(config).await;
    for id in &acknowledged {
        server
            .expect(Method::GET, &format!("/v1/events/{id}"), None, 200)
            .await;
    }
    let delivered = wait_until(Duration::from_secs(60), || async {
        let ids: HashSet<String> = receiver
            .received()
            .iter()
            .filter_map(|r| r.header("webhook-id").map(str::to_owned))
            .collect();
        acknowledged.is_subset(&ids)
    })
    .await;
    assert!(delivered, "not every acknowledged event was delivered");
    server.stop().await;
}

#[tokio::test]
async fn a_database_deleted_while_running_is_noticed_and_nothing_more_is_acknowledged() {
    let server = TestServer::start().await;
    server
        .send_event(json!({"type": "before.delete", "data": {}}))
        .await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(server.data_dir.join(format!("switchyard.db{suffix}")));
    }
    for i in 0..10 {
        let (status, body) = server
            .call(
                Method::POST,
                "/v1/events",
                Some(json!({"type": "after.delete", "data": {"i": i}})),
            )
            .await;
        assert_eq!(status, 503, "event {i} after the deletion: {body}");
        let error: ErrorBody = serde_json::from_value(body).unwrap();
        assert_eq!(error.error.code, "storage_unavailable");
        assert!(
            error.error.message.contains("deleted or replaced"),
            "{}",
            error.error.message
        );
    }
    let health = server
        .anonymous(Method::GET, "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    assert!(health.headers().contains_key("retry-after"));
    let health: ErrorBody = health.json().await.unwrap();
    assert_eq!(health.error.code, "storage_unavailable");
    assert!(
        health.error.message.contains("deleted or replaced"),
        "{}",
        health.error.message
    );
}
