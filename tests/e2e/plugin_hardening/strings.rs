//! Issue 8 item 9: text a plugin supplies (errors, trap messages with their stderr, skip
//! reasons, log lines) is bounded wherever it is stored or returned, however much the plugin
//! sends (the hostile fixture sends 8 MiB of each).

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::common::plugins::fixture;
use crate::common::{TestReceiver, TestServer};

/// The most any one stored or returned plugin string may take here: the host's bound
/// (`switchyard::plugins::MAX_PLUGIN_TEXT`, 2 KiB) plus the host's own short prefix.
const BOUND: usize = 3 << 10;

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorOut,
    #[serde(default)]
    logs: Vec<LogOut>,
}

#[derive(Debug, Deserialize)]
struct ErrorOut {
    code: String,
    message: String,
}

#[derive(Debug, Deserialize)]
struct LogOut {
    message: String,
}

#[derive(Debug, Deserialize)]
struct DryRunOut {
    outcome: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    logs: Vec<LogOut>,
}

#[derive(Debug, Deserialize)]
struct DeliveryOut {
    status: String,
    last_error: Option<String>,
    skip_reason: Option<String>,
    attempts: Vec<AttemptOut>,
}

#[derive(Debug, Deserialize)]
struct AttemptOut {
    error: Option<String>,
}

async fn dry_run(server: &TestServer, mode: &str) -> (u16, String) {
    let response = server
        .request(Method::POST, "/v1/plugins/hostile/dry-run")
        .json(&json!({"event": {"type": "t", "data": {}}, "config": {"mode": mode}}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_plugin_text_is_cut_in_dry_runs_and_config_checks() {
    let server = TestServer::start().await;
    server.upload_plugin("hostile", fixture("hostile")).await;
    for mode in ["huge-err", "huge-panic"] {
        let (status, text) = dry_run(&server, mode).await;
        assert_eq!(status, 422, "{mode}");
        assert!(
            text.len() < 2 * BOUND,
            "{mode}: a {} byte answer",
            text.len()
        );
        let body: ErrorBody = serde_json::from_str(&text).unwrap();
        assert!(
            body.error.message.len() <= BOUND,
            "{mode}: {}",
            body.error.message.len()
        );
        assert!(
            body.error.message.contains("eeee"),
            "{mode}: {}",
            body.error.message
        );
        assert!(body.logs.iter().all(|l| l.message.len() <= BOUND), "{mode}");
        eprintln!("{mode}: 422 of {} bytes ({})", text.len(), body.error.code);
    }
    for mode in ["huge-skip", "huge-log"] {
        let (status, text) = dry_run(&server, mode).await;
        assert_eq!(status, 200, "{mode}: {}", &text[..text.len().min(500)]);
        assert!(
            text.len() < 2 * BOUND,
            "{mode}: a {} byte answer",
            text.len()
        );
        let out: DryRunOut = serde_json::from_str(&text).unwrap();
        assert!(out.reason.as_deref().unwrap_or("").len() <= BOUND, "{mode}");
        assert!(out.logs.iter().all(|l| l.message.len() <= BOUND), "{mode}");
        assert!(!out.outcome.is_empty());
    }
    // A config the plugin refuses with 8 MiB of text.
    let receiver = TestReceiver::start().await;
    let response = server
        .request(Method::POST, "/v1/subscriptions")
        .json(
            &json!({"url": receiver.url("/"), "events": ["*"], "plugin": "hostile",
                      "plugin_config": {"mode": "huge-invalid"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let text = response.text().await.unwrap();
    assert!(text.len() < 2 * BOUND, "a {} byte answer", text.len());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_plugin_text_is_cut_on_stored_attempts() {
    let server = TestServer::start_with(|c| c.retry_schedule = Vec::new()).await;
    server.upload_plugin("hostile", fixture("hostile")).await;
    let receiver = TestReceiver::start().await;
    for (mode, status) in [
        ("huge-err", "failed"),
        ("huge-panic", "failed"),
        ("huge-skip", "skipped"),
    ] {
        let event_type = format!("t.{mode}");
        server
            .subscribe(
                json!({"url": receiver.url("/"), "events": [event_type], "plugin": "hostile",
                              "plugin_config": {"mode": mode}}),
            )
            .await;
        let sent = server
            .send_event(json!({"type": event_type, "data": {}}))
            .await;
        let deliveries = server.deliveries_of(sent["id"].as_str().unwrap()).await;
        let id = deliveries[0]["id"].as_str().unwrap().to_owned();
        server
            .wait_delivery(&id, status, Duration::from_secs(20))
            .await;
        let text = server
            .request(Method::GET, &format!("/v1/deliveries/{id}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.len() < 3 * BOUND,
            "{mode}: GET /v1/deliveries/{{id}} is {} bytes",
            text.len()
        );
        let delivery: DeliveryOut = serde_json::from_str(&text).unwrap();
        assert_eq!(delivery.status, status);
        for text in delivery
            .attempts
            .iter()
            .filter_map(|a| a.error.as_deref())
            .chain(delivery.last_error.as_deref())
            .chain(delivery.skip_reason.as_deref())
        {
            assert!(text.len() <= BOUND, "{mode}: {} bytes stored", text.len());
        }
        eprintln!("{mode}: delivery answer of {} bytes", text.len());
    }
    server.stop().await;
}
