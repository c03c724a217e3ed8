//! Operations: `/metrics` and the health endpoints.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::receiver::Answer;
use crate::common::{TestReceiver, TestServer, wait_until};

use super::{WAIT, metric};

#[tokio::test]
async fn metrics_and_health() {
    let server = TestServer::start().await;
    let response = server
        .anonymous(Method::GET, "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health, json!({"status": "ok"}));

    let response = server
        .anonymous(Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text")
            || content_type.starts_with("text/plain"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("# TYPE switchyard_events_ingested counter"),
        "{text}"
    );
    assert!(text.contains("switchyard_queue_pending "), "{text}");

    let before = metric(&server, "switchyard_events_ingested_total").await;
    for n in 0..3 {
        server
            .send_event(json!({"type": "a.b", "data": {"n": n}}))
            .await;
    }
    // A duplicate is not a new event; a refused one is not counted.
    server
        .send_event(json!({"type": "a.b", "data": {}, "id": "k1"}))
        .await;
    server
        .send_event(json!({"type": "a.b", "data": {}, "id": "k1"}))
        .await;
    server
        .expect(
            Method::POST,
            "/v1/events",
            Some(json!({"type": "a..b", "data": {}})),
            422,
        )
        .await;
    let after = metric(&server, "switchyard_events_ingested_total").await;
    assert_eq!(after - before, 4.0);

    // The pending gauge sees a delivery waiting for its retry.
    let server =
        TestServer::start_with(|c| c.retry_schedule = vec![Duration::from_secs(3600)]).await;
    let receiver = TestReceiver::start().await;
    receiver.always(Answer::status(500));
    server
        .subscribe(json!({"url": receiver.url("/hook"), "events": ["*"]}))
        .await;
    assert_eq!(metric(&server, "switchyard_queue_pending").await, 0.0);
    server.send_event(json!({"type": "a.b", "data": {}})).await;
    receiver.wait_for(1, WAIT).await;
    let waited = wait_until(WAIT, || async {
        metric(&server, "switchyard_queue_pending").await == 1.0
    })
    .await;
    assert!(
        waited,
        "switchyard_queue_pending never showed the waiting delivery"
    );
}
