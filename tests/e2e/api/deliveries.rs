//! Deliveries: filtering and paging the list, the attempts of one, retrying a finished one.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::json;

use switchyard::api::models::{AttemptOutcome, DeliveryDetailOut};

use crate::common::plugins::bundled;
use crate::common::receiver::Answer;
use crate::common::{TestReceiver, TestServer, wait_until};

use super::{WAIT, all_pages, id_of, ids, sha256_hex};

#[tokio::test]
async fn deliveries_filter_and_paginate() {
    let server = TestServer::start().await;
    let ok = TestReceiver::start().await;
    let failing = TestReceiver::start().await;
    failing.always(Answer::status(500));
    let good = id_of(
        &server
            .subscribe(json!({"url": ok.url("/ok"), "events": ["a.*"]}))
            .await,
    );
    let bad = id_of(
        &server
            .subscribe(json!({"url": failing.url("/bad"), "events": ["*"]}))
            .await,
    );
    let mut events = Vec::new();
    for n in 0..3 {
        let event = server
            .send_event(json!({"type": "a.x", "data": {"n": n}}))
            .await;
        assert_eq!(event["deliveries"], 2);
        events.push(id_of(&event));
    }
    // Every delivery reaches its final status (3 attempts for the failing receiver).
    let settled = wait_until(WAIT, || async {
        let page = server
            .expect(Method::GET, "/v1/deliveries?limit=250", None, 200)
            .await;
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "succeeded" || d["status"] == "failed")
    })
    .await;
    assert!(settled, "deliveries did not settle");

    let list = |query: String| {
        let server = &server;
        async move {
            server
                .expect(Method::GET, &format!("/v1/deliveries?{query}"), None, 200)
                .await["data"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let all = list(String::new()).await;
    assert_eq!(all.len(), 6);
    let by_good = list(format!("subscription_id={good}")).await;
    assert_eq!(by_good.len(), 3);
    assert!(
        by_good
            .iter()
            .all(|d| d["subscription_id"] == good.as_str() && d["status"] == "succeeded")
    );
    let failed = list("status=failed".into()).await;
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().all(|d| d["subscription_id"] == bad.as_str()
        && d["attempts_made"] == 3
        && d["last_error"] == "receiver answered 500"));
    let succeeded = list("status=succeeded".into()).await;
    assert_eq!(
        ids(&json!({"data": succeeded})),
        ids(&json!({"data": by_good}))
    );
    let of_event = list(format!("event_id={}", events[1])).await;
    assert_eq!(of_event.len(), 2);
    assert!(of_event.iter().all(|d| d["event_id"] == events[1].as_str()));
    let subs: BTreeSet<&str> = of_event
        .iter()
        .map(|d| d["subscription_id"].as_str().unwrap())
        .collect();
    assert_eq!(subs, BTreeSet::from([good.as_str(), bad.as_str()]));
    let both = list(format!("event_id={}&subscription_id={bad}", events[2])).await;
    assert_eq!(both.len(), 1);
    assert_eq!(both[0]["status"], "failed");
    assert!(
        list(format!("subscription_id={good}&status=failed"))
            .await
            .is_empty()
    );
    assert!(list("status=pending".into()).await.is_empty());
    assert!(list("subscription_id=sub_unknown".into()).await.is_empty());

    // Pages of 4 and 2, newest first, each delivery exactly once.
    let pages = all_pages(&server, "/v1/deliveries?limit=4").await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [4, 2]);
    let paged = pages.concat();
    assert_eq!(paged, ids(&json!({"data": all})));
    let mut descending = paged.clone();
    descending.sort();
    descending.reverse();
    assert_eq!(paged, descending);
    // Filters and pagination combine.
    let pages = all_pages(
        &server,
        &format!("/v1/deliveries?limit=2&subscription_id={bad}"),
    )
    .await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 1]);
    assert_eq!(pages.concat(), ids(&json!({"data": failed})));
}

#[tokio::test]
async fn a_delivery_shows_its_attempts() {
    let server = TestServer::start().await;
    let slack = server.upload_plugin("slack", bundled("slack")).await;
    let receiver = TestReceiver::start().await;
    receiver.always(Answer::status(200));
    receiver.reply_body("ok from the receiver ✓");
    let plain = server
        .subscribe(json!({"url": receiver.url("/plain"), "events": ["plain.*"]}))
        .await;
    server
        .subscribe(json!({"url": receiver.url("/slack"), "events": ["slack.*"], "plugin": "slack"}))
        .await;

    let event = server
        .send_event(json!({"type": "plain.sent", "data": {"a": 1}}))
        .await;
    let id = id_of(&server.deliveries_of(&id_of(&event)).await[0]);
    let got: DeliveryDetailOut = crate::common::server::strict(
        server.wait_delivery(&id, "succeeded", WAIT).await,
        "delivery",
    );
    assert_eq!(got.delivery.id, id.as_str());
    assert!(id.starts_with("dlv_"));
    assert_eq!(got.delivery.event_id, event["id"].as_str().unwrap());
    assert_eq!(got.delivery.subscription_id, plain["id"].as_str().unwrap());
    assert_eq!(got.delivery.attempts_made, 1);
    assert_eq!(got.delivery.next_attempt_at, None);
    assert_eq!(got.delivery.last_error, None);
    assert_eq!(got.delivery.skip_reason, None);
    assert_eq!(got.attempts.len(), 1);
    let attempt = &got.attempts[0];
    assert!(attempt.at >= got.delivery.created_at, "{attempt:?}");
    assert_eq!(attempt.outcome, AttemptOutcome::Succeeded);
    assert_eq!(attempt.status_code, Some(200));
    assert!(attempt.latency_ms.is_some(), "{attempt:?}");
    assert_eq!(attempt.error, None);
    assert_eq!(
        attempt.response_body.as_deref(),
        Some("ok from the receiver ✓")
    );
    assert_eq!(attempt.plugin_version, None, "no plugin ran");

    // With a plugin, the attempt names the plugin version that ran.
    let event = server
        .send_event(json!({"type": "slack.sent", "data": {"a": 1}}))
        .await;
    let id = id_of(&server.deliveries_of(&id_of(&event)).await[0]);
    let got = server.wait_delivery(&id, "succeeded", WAIT).await;
    assert_eq!(got["attempts"][0]["plugin_version"], slack["version"]);
    assert_eq!(
        slack["version"].as_str().unwrap(),
        sha256_hex(&bundled("slack"))
    );
    let sent = receiver.wait_for(2, WAIT).await;
    let to_slack = sent.iter().find(|r| r.path == "/slack").unwrap();
    assert!(to_slack.json()["blocks"].is_array());

    // A long response body is kept truncated; failures keep theirs too.
    let long = "x".repeat(10_000);
    receiver.reply_body(long.clone());
    receiver.always(Answer::status(500));
    let event = server
        .send_event(json!({"type": "plain.failing", "data": {}}))
        .await;
    let id = id_of(&server.deliveries_of(&id_of(&event)).await[0]);
    let got = server.wait_delivery(&id, "failed", WAIT).await;
    let attempts = got["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "1 + the 2 retries of the schedule");
    for attempt in attempts {
        assert_eq!(attempt["status_code"], 500);
        assert_eq!(attempt["error"], "receiver answered 500");
        let kept = attempt["response_body"].as_str().unwrap();
        assert_eq!(kept.len(), 4096, "truncated to 4 KiB");
        assert!(long.starts_with(kept));
    }
    assert_eq!(got["last_error"], "receiver answered 500");
}

#[tokio::test]
async fn a_finished_delivery_can_be_retried() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Answer::status(503));
    server
        .subscribe(json!({"url": receiver.url("/hook"), "events": ["*"]}))
        .await;
    let event = server.send_event(json!({"type": "a.b", "data": {}})).await;
    let id = id_of(&server.deliveries_of(&id_of(&event)).await[0]);
    server.wait_delivery(&id, "failed", WAIT).await;
    receiver.always(Answer::status(204));
    let retried = server
        .expect(
            Method::POST,
            &format!("/v1/deliveries/{id}/retry"),
            None,
            202,
        )
        .await;
    assert_eq!(retried, json!({"id": id, "status": "pending"}));
    let got = server.wait_delivery(&id, "succeeded", WAIT).await;
    assert_eq!(got["attempts"].as_array().unwrap().len(), 4);
    assert_eq!(got["attempts"][3]["status_code"], 204);
    let sent = receiver.wait_for(4, WAIT).await;
    // The same event id on every attempt, retries included.
    let ids: BTreeSet<&str> = sent
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from([event["id"].as_str().unwrap()]));
    // A succeeded delivery can be sent again too.
    server
        .expect(
            Method::POST,
            &format!("/v1/deliveries/{id}/retry"),
            None,
            202,
        )
        .await;
    receiver.wait_for(5, WAIT).await;
    let got = server.wait_delivery(&id, "succeeded", WAIT).await;
    let waited = wait_until(WAIT, || async {
        server
            .expect(Method::GET, &format!("/v1/deliveries/{id}"), None, 200)
            .await["attempts"]
            .as_array()
            .unwrap()
            .len()
            == 5
    })
    .await;
    assert!(waited, "{got:#}");
}
