//! Issue 13 item 4 (1,000 plugins): a start with every artefact cached compiles nothing, and
//! a plugin's compiled code comes into memory only when it first runs — so memory follows the
//! plugins that run, not the plugins installed. A start that must compile (no cached
//! artefacts) serves at once, and deliveries through a plugin still compiling wait for it.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use switchyard::api::models::{
    AttemptOutcome, DeliveryDetailOut, DeliveryOut, DeliveryStatusOut, Page, PluginOut,
    PluginStatusOut,
};

use crate::common::plugins::bundled;
use crate::common::server::test_config;
use crate::common::{TestReceiver, TestServer, wait_until};

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

async fn plugin(server: &TestServer, name: &str) -> PluginOut {
    server.get(&format!("/v1/plugins/{name}")).await
}

/// Issue 13: a start without cached artefacts compiled every plugin before it answered
/// anything (1,000 plugins: 2.5–3 minutes), and a delivery through a plugin not loaded yet
/// failed an attempt. Now the start serves after `plugin_startup_wait` (here 0), the plugins
/// not loaded yet show `compiling`, a dry run waits for its plugin, and a delivery waits
/// (left in the store, no attempt) until its plugin is ready: one attempt, succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_must_compile_serves_at_once_and_deliveries_wait_for_their_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = TestReceiver::start().await;
    // First start: only `zz`, and a subscription through it.
    let folder = data.join("plugins");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("zz.wasm"), bundled("reshape")).unwrap();
    let first = TestServer::start_config(test_config(data.clone())).await;
    let sub = first
        .subscribe(
            json!({"url": receiver.url("/hook"), "events": ["*"], "plugin": "zz",
                          "plugin_config": {"root": "data", "pick": ["n"]}}),
        )
        .await;
    first.stop().await;
    // Nothing cached any more, and sixteen more plugins ahead of `zz` (names sort first).
    std::fs::remove_dir_all(data.join("plugin-cache")).unwrap();
    write_plugins(&data, 16);

    let mut config = test_config(data.clone());
    config.plugin_startup_wait = Duration::ZERO;
    let server = TestServer::start_config(config).await;
    let listed: Page<PluginOut> = server.get("/v1/plugins").await;
    assert_eq!(listed.data.len(), 17, "every file is listed at once");
    assert!(
        listed
            .data
            .iter()
            .any(|p| p.status == PluginStatusOut::Compiling && p.version.is_none()),
        "the service answered only once every plugin was loaded: {listed:?}"
    );
    let accepted = server
        .send_event(json!({"type": "t.x", "data": {"n": 7, "drop": true}}))
        .await;
    let zz = plugin(&server, "zz").await;
    assert_eq!(
        zz.status,
        PluginStatusOut::Compiling,
        "zz was ready before the event was accepted; the test proves nothing: {zz:?}"
    );

    // A dry run waits for its plugin rather than answering 404.
    dry_run(&server, "p3").await;

    let got = receiver.wait_for(1, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json(), json!({"n": 7}));
    let event_id = accepted["id"].as_str().unwrap();
    let deliveries: Page<DeliveryOut> = server
        .get(&format!("/v1/deliveries?event_id={event_id}"))
        .await;
    assert_eq!(deliveries.data.len(), 1);
    // The receiver has the body before the service has recorded its answer: wait for that.
    let id = deliveries.data[0].id.to_string();
    server
        .wait_delivery(&id, "succeeded", Duration::from_secs(10))
        .await;
    let detail: DeliveryDetailOut = server.get(&format!("/v1/deliveries/{id}")).await;
    assert_eq!(detail.delivery.status, DeliveryStatusOut::Succeeded);
    let outcomes: Vec<AttemptOutcome> = detail.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![AttemptOutcome::Succeeded],
        "the delivery failed while its plugin compiled: {:?}",
        detail.attempts
    );
    assert_eq!(detail.delivery.subscription_id.to_string(), sub["id"]);
    let all_ready = wait_until(Duration::from_secs(60), || async {
        let listed: Page<PluginOut> = server.get("/v1/plugins").await;
        listed
            .data
            .iter()
            .all(|p| p.status == PluginStatusOut::Ready)
    })
    .await;
    assert!(all_ready);
    server.stop().await;
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
