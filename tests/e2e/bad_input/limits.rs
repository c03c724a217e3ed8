//! Too much at once or too big: an overloaded ingest queue (`429`) and oversized bodies (`413`).

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::plugins::fixture;

use super::{HOOK, assert_error, assert_still_healthy, expect_error, json_request, send};

/// With room for one waiting event, a burst overflows the commit queue: the overflow is told
/// to come back (429, `Retry-After`), and every event that was answered 202 is stored.
#[tokio::test]
async fn an_ingest_overload_is_429_and_loses_nothing_accepted() {
    let server = TestServer::start_with(|config| config.max_pending_events = 1).await;
    let body = json!({"type": "load.test", "data": {"n": 1}}).to_string();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _round in 0..20 {
        let burst =
            (0..200).map(|_| send(json_request(&server, Method::POST, "/v1/events", &body)));
        for response in futures::future::join_all(burst).await {
            if response.status() == 429 {
                assert_eq!(
                    response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    Some("1")
                );
                assert_error(response, 429, "rate_limited").await;
                refused += 1;
            } else {
                assert_eq!(response.status(), 202);
                let answer: Value = response.json().await.expect("json");
                accepted.push(answer["id"].as_str().expect("event id").to_owned());
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "no burst overflowed a one-event queue");
    assert!(!accepted.is_empty(), "nothing was accepted");
    for id in &accepted {
        let response = send(server.request(Method::GET, &format!("/v1/events/{id}"))).await;
        assert_eq!(response.status(), 200, "accepted event {id} was not stored");
    }
    let after = send(json_request(&server, Method::POST, "/v1/events", &body)).await;
    assert_eq!(
        after.status(),
        202,
        "the service recovers once the burst is over"
    );
    assert_still_healthy(&server).await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let server = TestServer::start_with(|config| config.max_event_bytes = 1024).await;
    // An event body of exactly `size` bytes.
    let event = |size: usize| {
        let empty = json!({"type": "a.b", "data": {"pad": ""}}).to_string();
        let body = json!({"type": "a.b", "data": {"pad": "p".repeat(size - empty.len())}});
        let body = body.to_string();
        assert_eq!(body.len(), size);
        body
    };
    let response = send(json_request(
        &server,
        Method::POST,
        "/v1/events",
        &event(1024),
    ))
    .await;
    assert_eq!(response.status(), 202, "exactly the limit is accepted");
    for size in [1025, 4096, 200_000] {
        expect_error(
            &server,
            Method::POST,
            "/v1/events",
            &event(size),
            413,
            "payload_too_large",
        )
        .await;
    }
    let big = json!({"url": HOOK, "events": ["*"], "description": "d".repeat(2000)}).to_string();
    expect_error(
        &server,
        Method::POST,
        "/v1/subscriptions",
        &big,
        413,
        "payload_too_large",
    )
    .await;
    let sub = server
        .subscribe(json!({"url": HOOK, "events": ["*"]}))
        .await;
    let test = format!("/v1/subscriptions/{}/test", sub["id"].as_str().unwrap());
    let big = json!({"type": "t".repeat(2000)}).to_string();
    expect_error(&server, Method::POST, &test, &big, 413, "payload_too_large").await;
    // Plugin uploads have their own, larger limit.
    let uploaded = server.upload_plugin("hostile", fixture("hostile")).await;
    assert_eq!(uploaded["status"], "ready");
    let big = json!({"event": {"type": "a.b", "data": "d".repeat(2000)}}).to_string();
    expect_error(
        &server,
        Method::POST,
        "/v1/plugins/hostile/dry-run",
        &big,
        413,
        "payload_too_large",
    )
    .await;
    // The refused test event created no delivery.
    let deliveries = server
        .expect(Method::GET, "/v1/deliveries", None, 200)
        .await;
    assert_eq!(deliveries["data"].as_array().unwrap().len(), 0);
    assert_still_healthy(&server).await;

    // The default limit is 1 MiB.
    let server = TestServer::start().await;
    let body = event((1 << 20) + 1);
    expect_error(
        &server,
        Method::POST,
        "/v1/events",
        &body,
        413,
        "payload_too_large",
    )
    .await;
    let response = send(json_request(
        &server,
        Method::POST,
        "/v1/events",
        &event(1 << 20),
    ))
    .await;
    assert_eq!(response.status(), 202, "exactly 1 MiB is accepted");
    assert_still_healthy(&server).await;
}
