//! Issue 13 item 4 (1,000 plugins): a start with every artefact cached compiles nothing, and
//! a plugin's compiled code comes into memory only when it first runs — so memory follows the
//! plugins that run, not the plugins installed.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common::TestServer;
use crate::common::plugins::bundled;
use crate::common::server::test_config;

/// `base` with a custom section holding `tag`: the same code, a version of its own.
fn distinct(base: &[u8], tag: &str) -> Vec<u8> {
    let name = b"switchyard-test";
    let mut section = vec![u8::try_from(name.len()).unwrap()];
    section.extend_from_slice(name);
    section.extend_from_slice(tag.as_bytes());
    let mut out = base.to_vec();
    out.push(0);
    out.push(u8::try_from(section.len()).unwrap()); // < 128: one LEB128 byte
    out.extend_from_slice(&section);
    out
}

/// A counter or gauge of `/metrics`, as a count.
async fn metric(server: &TestServer, name: &str) -> Option<u64> {
    server.metric(name).await.map(|v| v as u64)
}

async fn dry_run(server: &TestServer, name: &str) {
    server
        .expect(
            Method::POST,
            &format!("/v1/plugins/{name}/dry-run"),
            Some(json!({"event": {"type": "t", "data": {"n": 1}}})),
            200,
        )
        .await;
}

/// Writes `count` distinct plugins into the plugins folder of `data`.
fn write_plugins(data: &Path, count: usize) {
    let plugins = data.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let base = bundled("reshape");
    for i in 0..count {
        let bytes = distinct(&base, &i.to_string());
        std::fs::write(plugins.join(format!("p{i}.wasm")), &bytes).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_start_compiles_nothing_and_loads_only_the_code_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_plugins(&data, 4);

    let cold = TestServer::start_config(test_config(data.clone())).await;
    assert_eq!(
        metric(&cold, "switchyard_plugin_compiles_total").await,
        Some(4)
    );
    cold.stop().await;

    let warm = TestServer::start_config(test_config(data.clone())).await;
    let list = warm.expect(Method::GET, "/v1/plugins", None, 200).await;
    let ready = list["data"].as_array().unwrap();
    assert_eq!(ready.len(), 4, "{list}");
    assert!(ready.iter().all(|p| p["status"] == "ready"), "{list}");
    assert_eq!(
        metric(&warm, "switchyard_plugin_compiles_total").await,
        Some(0),
        "a start with every artefact cached compiled"
    );
    // Four versions serve; none has its code in memory.
    assert_eq!(
        metric(&warm, "switchyard_plugin_code_loaded").await,
        Some(0)
    );

    dry_run(&warm, "p1").await;
    dry_run(&warm, "p1").await;
    assert_eq!(
        metric(&warm, "switchyard_plugin_code_loads_total").await,
        Some(1)
    );
    assert_eq!(
        metric(&warm, "switchyard_plugin_code_loaded").await,
        Some(1)
    );

    // A new upload is compiled and checked, then its code waits for its first call too.
    let fresh = distinct(&bundled("reshape"), "uploaded");
    warm.upload_plugin("p9", fresh).await;
    assert_eq!(
        metric(&warm, "switchyard_plugin_compiles_total").await,
        Some(1)
    );
    assert_eq!(
        metric(&warm, "switchyard_plugin_code_loaded").await,
        Some(1)
    );
    dry_run(&warm, "p9").await;
    assert_eq!(
        metric(&warm, "switchyard_plugin_code_loaded").await,
        Some(2)
    );
    warm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artefact_gone_before_the_first_call_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_plugins(&data, 1);
    let cache = data.join("plugin-cache");
    let cold = TestServer::start_config(test_config(data.clone())).await;
    cold.stop().await;

    let warm = TestServer::start_config(test_config(data.clone())).await;
    assert_eq!(
        metric(&warm, "switchyard_plugin_compiles_total").await,
        Some(0)
    );
    let artefacts = || {
        std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    for artefact in artefacts() {
        std::fs::remove_file(artefact).unwrap();
    }
    // The call still runs: the component is compiled again from its file, and cached again.
    dry_run(&warm, "p0").await;
    assert_eq!(
        metric(&warm, "switchyard_plugin_compiles_total").await,
        Some(1)
    );
    assert_eq!(artefacts().len(), 1);
    let settled = crate::common::wait_until(Duration::from_secs(5), || async {
        metric(&warm, "switchyard_plugin_code_loaded").await == Some(1)
    })
    .await;
    assert!(settled);
    warm.stop().await;
}
