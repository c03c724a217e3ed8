//! Limits that fit real plugins (issue 12 item 2): the component size cap, memory and deadline
//! are operator settings, with a plugin's own memory and deadline chosen at upload, bounded by
//! the operator's maxima, shown on `GET` and kept across restarts; big components compile off
//! the request (`202 compiling`), the last good version serving meanwhile, and an upload
//! answered `202` survives a restart.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchyard::api::models::{DryRunOut, PluginLimitsOut, PluginOut, PluginStatusOut};

use crate::common::plugins::fixture;
use crate::common::server::{strict, test_config};
use crate::common::{TestServer, wait_until};
use crate::plugin_hardening::components::slow_to_compile;

/// Rounds of the huge function that make a working plugin take a few seconds to compile.
const SLOW: u32 = 6_000;

async fn put(server: &TestServer, path: &str, bytes: Vec<u8>) -> (u16, Value) {
    let response = server
        .request(Method::PUT, path)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn put_plugin(server: &TestServer, path: &str, bytes: Vec<u8>, want: u16) -> PluginOut {
    let (status, body) = put(server, path, bytes).await;
    assert_eq!(status, want, "PUT {path}: {body:#}");
    strict(body, path)
}

async fn dry_run(server: &TestServer, name: &str, config: Value) -> (u16, Value) {
    let (status, body) = server
        .call(
            Method::POST,
            &format!("/v1/plugins/{name}/dry-run"),
            Some(json!({"event": {"type": "a.b", "data": {}}, "config": config})),
        )
        .await;
    (status.as_u16(), body)
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn a_too_large_component_is_refused_naming_the_limit_and_the_setting() {
    let server = TestServer::start_with(|c| c.plugin_limits.component_bytes = 1 << 20).await;
    let mut big = fixture("hostile");
    big.resize(2 << 20, 0);
    let (status, body) = put(&server, "/v1/plugins/big", big.clone()).await;
    assert_eq!(status, 413, "{body:#}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("1048576 bytes") && message.contains("plugin_max_component_mb"),
        "{message}"
    );
    // The same file dropped into the plugins folder: refused, named the same way.
    std::fs::write(server.data_dir.join("plugins/big.wasm"), &big).unwrap();
    let shown = wait_until(Duration::from_secs(20), || async {
        let (_, info) = server.call(Method::GET, "/v1/plugins/big", None).await;
        info["error"]
            .as_str()
            .is_some_and(|e| e.contains("plugin_max_component_mb"))
    })
    .await;
    assert!(shown, "the folder's oversized file names the setting");
}

#[tokio::test]
async fn a_plugins_own_memory_and_deadline_are_honoured_shown_bounded_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path().to_owned());
    let server = TestServer::start_config(config.clone()).await;
    let hostile = fixture("hostile");
    let big = put_plugin(
        &server,
        "/v1/plugins/big?memory_mb=64&timeout_ms=1000",
        hostile.clone(),
        201,
    )
    .await;
    let own = PluginLimitsOut {
        memory_mb: 64,
        timeout_ms: 1000,
    };
    assert_eq!(big.limits, own);
    let small = put_plugin(&server, "/v1/plugins/small", hostile.clone(), 201).await;
    let defaults = PluginLimitsOut {
        memory_mb: 32,
        timeout_ms: 100,
    };
    assert_eq!(small.limits, defaults);

    // 40 MiB fits the plugin that asked for 64, not the one under the default 32.
    let hoard = json!({"mode": "alloc-mb", "mb": 40});
    let (status, body) = dry_run(&server, "big", hoard.clone()).await;
    assert_eq!(status, 200, "{body:#}");
    let (status, body) = dry_run(&server, "small", hoard.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("out_of_memory"))
    );
    // Each plugin's deadline is its own.
    let (_, body) = dry_run(&server, "small", json!({"mode": "loop"})).await;
    assert_eq!(body["error"]["message"], "plugin timed out after 100ms");
    let (_, body) = dry_run(&server, "big", json!({"mode": "loop"})).await;
    assert_eq!(body["error"]["message"], "plugin timed out after 1s");

    // Past the operator's maxima, or not a number: 400, naming the setting.
    for (query, setting) in [
        ("memory_mb=257", "plugin_max_memory_mb"),
        ("memory_mb=0", "plugin_max_memory_mb"),
        ("timeout_ms=1001", "plugin_max_timeout"),
        ("timeout_ms=0", "plugin_max_timeout"),
        ("memory_mb=lots", "memory_mb"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = put(
            &server,
            &format!("/v1/plugins/big?{query}"),
            hostile.clone(),
        )
        .await;
        assert_eq!(status, 400, "{query}: {body:#}");
        assert_eq!(body["error"]["code"], "invalid_query");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(setting), "{query}: {message}");
    }
    let shown: PluginOut = server.get("/v1/plugins/big").await;
    assert_eq!(shown.limits, own, "a refused upload changes nothing");

    // Kept across a restart.
    server.stop().await;
    let server = TestServer::start_config(config.clone()).await;
    let shown: PluginOut = server.get("/v1/plugins/big").await;
    assert_eq!(shown.limits, own);
    let (status, body) = dry_run(&server, "big", hoard.clone()).await;
    assert_eq!(status, 200, "{body:#}");
    // The next upload without them goes back to the defaults.
    let again = put_plugin(&server, "/v1/plugins/big", hostile, 200).await;
    assert_eq!(again.limits, defaults);
    let (status, _) = dry_run(&server, "big", hoard).await;
    assert_eq!(status, 422);
    server.stop().await;
}

/// Polls the plugin until `done` holds for it (three minutes at most).
async fn wait_for(server: &TestServer, name: &str, done: impl Fn(&PluginOut) -> bool) -> PluginOut {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let info: PluginOut = server.get(&format!("/v1/plugins/{name}")).await;
        if done(&info) {
            return info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never got there: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_slow_compile_answers_202_while_the_last_good_version_serves() {
    let server = TestServer::start().await;
    let first = fixture("hostile");
    let v1 = put_plugin(&server, "/v1/plugins/p?wait=true", first.clone(), 201).await;
    let second = slow_to_compile(&first, SLOW);
    let answered = std::time::Instant::now();
    let accepted = put_plugin(&server, "/v1/plugins/p?wait=false", second.clone(), 202).await;
    assert!(
        answered.elapsed() < Duration::from_secs(2),
        "{:?}",
        answered.elapsed()
    );
    assert_eq!(accepted.status, PluginStatusOut::Compiling);
    assert_eq!(accepted.version, v1.version, "the last good version serves");
    assert_eq!(accepted.pending_version, Some(sha(&second)));
    // Meanwhile calls run on the version that serves.
    let (status, body) = dry_run(&server, "p", json!({})).await;
    assert_eq!(status, 200, "{body:#}");
    let run: DryRunOut = serde_json::from_value(body).unwrap();
    let DryRunOut::Deliver(run) = run else {
        panic!("delivers")
    };
    assert_eq!(Some(run.plugin_version), v1.version);
    let ready = wait_for(&server, "p", |p| p.status != PluginStatusOut::Compiling).await;
    assert_eq!(ready.status, PluginStatusOut::Ready, "{ready:?}");
    assert_eq!(ready.version, Some(sha(&second)));
    assert_eq!(ready.pending_version, None);
    // With the default wait of the setting (here zero), an upload answers at once too.
    server.stop().await;
    let server = TestServer::start_with(|c| c.plugin_upload_wait = Duration::ZERO).await;
    let first_upload = put_plugin(
        &server,
        "/v1/plugins/q",
        slow_to_compile(&first, SLOW + 1),
        202,
    )
    .await;
    assert_eq!(first_upload.version, None, "nothing serves yet");
    let ready = wait_for(&server, "q", |p| p.status != PluginStatusOut::Compiling).await;
    assert_eq!(ready.status, PluginStatusOut::Ready, "{ready:?}");
}

#[tokio::test]
async fn an_upload_that_fails_after_202_shows_the_reason_and_changes_nothing() {
    let server = TestServer::start().await;
    let v1 = put_plugin(&server, "/v1/plugins/p?wait=true", fixture("hostile"), 201).await;
    let accepted = put_plugin(
        &server,
        "/v1/plugins/p?wait=false",
        fixture("wrong_world"),
        202,
    )
    .await;
    assert_eq!(accepted.version, v1.version);
    let failed = wait_for(&server, "p", |p| p.status != PluginStatusOut::Compiling).await;
    assert_eq!(failed.status, PluginStatusOut::Error, "{failed:?}");
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("transformer world")),
        "{failed:?}"
    );
    assert_eq!(
        failed.version, v1.version,
        "the last good version still serves"
    );
    let (status, _) = dry_run(&server, "p", json!({})).await;
    assert_eq!(status, 200);
    // A refused first upload that was answered 202 shows too.
    let accepted = put_plugin(
        &server,
        "/v1/plugins/new?wait=false",
        fixture("wrong_world"),
        202,
    )
    .await;
    assert_eq!(accepted.status, PluginStatusOut::Compiling);
    let failed = wait_for(&server, "new", |p| p.status != PluginStatusOut::Compiling).await;
    assert_eq!(
        (failed.status, failed.version),
        (PluginStatusOut::Error, None)
    );
    // A refused upload that was waited for answers with the refusal and leaves no plugin.
    let (status, body) = put(
        &server,
        "/v1/plugins/other?wait=true",
        fixture("wrong_world"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("wrong_world"))
    );
    server
        .expect(Method::GET, "/v1/plugins/other", None, 404)
        .await;
}

#[tokio::test]
async fn an_upload_answered_202_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path().to_owned());
    let server = TestServer::start_config(config.clone()).await;
    let bytes = slow_to_compile(&fixture("hostile"), SLOW + 2);
    let accepted = put_plugin(
        &server,
        "/v1/plugins/p?wait=false&memory_mb=48",
        bytes.clone(),
        202,
    )
    .await;
    assert_eq!(accepted.status, PluginStatusOut::Compiling);
    // Stopped while it compiles (a stop kills compiles): the upload stays staged.
    server.stop().await;
    let staged: Vec<_> = std::fs::read_dir(dir.path().join("plugin-uploads"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        staged,
        [format!("p.{}.upload", sha(&bytes))],
        "staged durably"
    );
    let server = TestServer::start_config(config).await;
    let ready = wait_for(&server, "p", |p| p.status == PluginStatusOut::Ready).await;
    assert_eq!(ready.version, Some(sha(&bytes)));
    assert_eq!(
        ready.limits.memory_mb, 48,
        "with the limits it was uploaded with"
    );
    assert!(
        std::fs::read_dir(dir.path().join("plugin-uploads"))
            .unwrap()
            .next()
            .is_none(),
        "nothing left staged"
    );
    server.stop().await;
}
