//! Issue 8 item 7: the plugins folder is not trusted. A FIFO, a sparse file far over the size
//! limit and a symlink to `/dev/zero` neither stop the start nor block uploads; each shows
//! why it was refused on `GET /v1/plugins/{name}`.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;

use crate::common::TestServer;
use crate::common::plugins::bundled;
use crate::common::server::test_config;

#[derive(Debug, Deserialize)]
struct PluginOut {
    status: String,
    error: Option<String>,
    version: Option<String>,
}

async fn plugin(server: &TestServer, name: &str) -> PluginOut {
    let json = server
        .expect(Method::GET, &format!("/v1/plugins/{name}"), None, 200)
        .await;
    serde_json::from_value(json).unwrap()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_in_the_plugins_folder_neither_block_nor_exhaust_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let mkfifo = std::process::Command::new("mkfifo")
        .arg(plugins.join("fifo.wasm"))
        .status()
        .unwrap();
    assert!(mkfifo.success());
    std::fs::File::create(plugins.join("sparse.wasm"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    std::os::unix::fs::symlink("/dev/zero", plugins.join("zero.wasm")).unwrap();
    std::fs::write(plugins.join("good.wasm"), bundled("reshape")).unwrap();
    // A link that stays inside the folder is fine.
    std::os::unix::fs::symlink("good.wasm", plugins.join("alias.wasm")).unwrap();

    let mut config = test_config(dir.path().join("data"));
    config.plugins_dir = plugins.clone();
    let started = Instant::now();
    let server = tokio::time::timeout(Duration::from_secs(60), TestServer::start_config(config))
        .await
        .expect("the service did not start");
    eprintln!(
        "started in {:?} beside a FIFO, a 1 GiB sparse file and a link to /dev/zero",
        started.elapsed()
    );

    let fifo = plugin(&server, "fifo").await;
    assert_eq!(fifo.status, "error");
    assert!(
        fifo.error
            .as_deref()
            .unwrap()
            .contains("not a regular file"),
        "{fifo:?}"
    );
    let sparse = plugin(&server, "sparse").await;
    assert_eq!(sparse.status, "error");
    assert!(
        sparse
            .error
            .as_deref()
            .unwrap()
            .contains("more than the limit"),
        "{sparse:?}"
    );
    let zero = plugin(&server, "zero").await;
    assert_eq!(zero.status, "error");
    assert!(
        zero.error.as_deref().unwrap().contains("symbolic link"),
        "{zero:?}"
    );
    assert_eq!(plugin(&server, "good").await.status, "ready");
    assert_eq!(plugin(&server, "alias").await.status, "ready");

    // Uploads still work, and so does a rescan with the bad entries still there.
    let started = Instant::now();
    server.upload_plugin("fresh", bundled("filter")).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "upload took {:?}",
        started.elapsed()
    );
    assert_eq!(plugin(&server, "fresh").await.status, "ready");
    assert!(plugin(&server, "fifo").await.version.is_none());
    server.stop().await;
}
