//! Issue 9 item 6: the compile cache is not trusted blindly. An artefact whose bytes are not
//! the ones the service recorded is not loaded (the component is compiled again), and a data
//! folder others can write refuses the start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::TestServer;
use crate::common::plugins::{bundled, fixture};
use crate::common::server::test_config;

fn version(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The cached artefact of `version` in `cache`.
fn artefact(cache: &Path, version: &str) -> PathBuf {
    std::fs::read_dir(cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(version)
        })
        .unwrap_or_else(|| panic!("no artefact of {version} in {}", cache.display()))
}

async fn dry_run(server: &TestServer, name: &str) -> Value {
    server
        .expect(
            Method::POST,
            &format!("/v1/plugins/{name}/dry-run"),
            Some(json!({"event": {"type": "t", "id": "evt_1", "data": {"n": 1}}})),
            200,
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_artefact_is_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (reshape, hostile) = (bundled("reshape"), fixture("hostile"));
    let server = TestServer::start_config(test_config(data.clone())).await;
    server.upload_plugin("reshape", reshape.clone()).await;
    server.upload_plugin("echo", hostile.clone()).await;
    let honest = dry_run(&server, "reshape").await;
    server.stop().await;

    // Another valid artefact (the echo plugin's code) put where reshape's belongs.
    let cache = data.join("plugin-cache");
    std::fs::copy(
        artefact(&cache, &version(&hostile)),
        artefact(&cache, &version(&reshape)),
    )
    .unwrap();

    let server = TestServer::start_config(test_config(data.clone())).await;
    let after = dry_run(&server, "reshape").await;
    // Reshape wraps the data in an envelope; the echo plugin returns the data as it is.
    let envelope = |answer: &Value| {
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        (body["type"].clone(), body["data"].clone())
    };
    assert_eq!(envelope(&honest), (json!("t"), json!({"n": 1})));
    assert_eq!(
        envelope(&after),
        envelope(&honest),
        "reshape ran someone else's code: {after}"
    );
    assert_eq!(
        after["plugin_version"].as_str(),
        Some(version(&reshape).as_str())
    );
    // It was compiled again and the cache holds the honest artefact once more.
    let again = std::fs::read(artefact(&cache, &version(&reshape))).unwrap();
    let echo = std::fs::read(artefact(&cache, &version(&hostile))).unwrap();
    assert_ne!(again, echo, "the tampered artefact is still in the cache");
    server.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_folder_others_can_write_refuses_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (what, writable) in [("data folder", ""), ("plugin cache", "plugin-cache")] {
        let data = dir.path().join(format!("data-{}", writable.len()));
        std::fs::create_dir_all(data.join("plugin-cache")).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let open = if writable.is_empty() {
            data.clone()
        } else {
            data.join(writable)
        };
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let run = switchyard::run(listener, test_config(data.clone()), std::future::pending());
        let result = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .unwrap_or_else(|_| panic!("the service started on a {what} anyone can write"));
        let message = result.expect_err("refused").to_string();
        assert!(message.contains("others can write"), "{what}: {message}");
        assert!(
            message.contains(&open.display().to_string()),
            "{what}: {message}"
        );
        let mode = std::fs::metadata(&open).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777, "the {what} was changed instead of refused");
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_folder_owned_by_another_user_refuses_the_start() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to give a folder to another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = switchyard::run(listener, test_config(data.clone()), std::future::pending());
    let result = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the service started on a folder of another user");
    let message = result.expect_err("refused").to_string();
    assert!(message.contains("owned by"), "{message}");
}
