//! Events: how many subscriptions each one matches, its data kept exactly, idempotency keys.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestReceiver, TestServer};

use super::{WAIT, id_of};

#[tokio::test]
async fn events_count_the_matching_subscriptions() {
    let server = TestServer::start().await;
    let mut subs = std::collections::BTreeMap::new();
    for pattern in ["post.*", "post.published", "order.created"] {
        let sub = server
            .subscribe(json!({"url": "http://127.0.0.1:9/x", "events": [pattern]}))
            .await;
        subs.insert(pattern, id_of(&sub));
    }
    let matched = |event: &Value| {
        let id = id_of(event);
        let server = &server;
        async move {
            server
                .deliveries_of(&id)
                .await
                .iter()
                .map(|d| d["subscription_id"].as_str().unwrap().to_owned())
                .collect::<BTreeSet<String>>()
        }
    };
    let expect = |subs: &std::collections::BTreeMap<&str, String>, patterns: &[&str]| {
        patterns
            .iter()
            .map(|p| subs[p].clone())
            .collect::<BTreeSet<String>>()
    };
    for (event_type, patterns) in [
        ("user.deleted", vec![]),
        ("post", vec![]),
        ("posts.published", vec![]),
        ("post.published", vec!["post.*", "post.published"]),
        ("post.comment.created", vec!["post.*"]),
        ("order.created", vec!["order.created"]),
        ("order.created.v2", vec![]),
    ] {
        let event = server
            .send_event(json!({"type": event_type, "data": {}}))
            .await;
        assert!(id_of(&event).starts_with("evt_"), "{event}");
        assert_eq!(event["deliveries"], patterns.len(), "{event_type}");
        assert_eq!(
            matched(&event).await,
            expect(&subs, &patterns),
            "{event_type}"
        );
    }
    let all = server
        .subscribe(json!({"url": "http://127.0.0.1:9/x", "events": ["*"]}))
        .await;
    subs.insert("*", id_of(&all));
    // Several patterns of one subscription that match still make one delivery.
    let both = server
        .subscribe(json!({"url": "http://127.0.0.1:9/x", "events": ["user.*", "user.deleted"]}))
        .await;
    subs.insert("user", id_of(&both));
    for (event_type, patterns) in [
        ("user.deleted", vec!["*", "user"]),
        ("post.published", vec!["*", "post.*", "post.published"]),
        ("anything", vec!["*"]),
    ] {
        let event = server
            .send_event(json!({"type": event_type, "data": {}}))
            .await;
        assert_eq!(event["deliveries"], patterns.len(), "{event_type}");
        assert_eq!(
            matched(&event).await,
            expect(&subs, &patterns),
            "{event_type}"
        );
    }
}

#[tokio::test]
async fn events_keep_their_data_exactly() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    server
        .subscribe(json!({"url": receiver.url("/hook"), "events": ["*"]}))
        .await;
    // Sent as text, to control every byte: key order, spacing, number spellings.
    let data = r#"{"z": 1, "a": {"b": [1, 2.50, {"c": null}], "t": true},
        "big": 12345678901234567890, "bigger": 123456789012345678901234567890,
        "neg": -9223372036854775809, "tiny": 1e-400, "exp": 6.02E+23,
        "text": "héllo ✓ 日本語 🎉 \"quoted\" \\ \n \u00e9", "empty": {}, "list": []}"#;
    let body = format!(r#"{{"type": "order.created", "data": {data}}}"#);
    let response = server
        .request(Method::POST, "/v1/events")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let event_id = id_of(&accepted);

    // The receiver gets the data verbatim inside the envelope.
    let got = receiver.wait_for(1, WAIT).await.remove(0);
    let text = std::str::from_utf8(&got.body).unwrap();
    assert!(
        text.contains(&format!(r#""data":{data}}}"#)),
        "data not verbatim: {text}"
    );
    assert!(text.starts_with(&format!(r#"{{"id":"{event_id}","type":"order.created","#)));

    // GET returns the same data, numbers as sent.
    let response = server
        .request(Method::GET, &format!("/v1/events/{event_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let raw = response.text().await.unwrap();
    for spelling in [
        "12345678901234567890",
        "123456789012345678901234567890",
        "-9223372036854775809",
        "1e-400",
        "6.02E+23",
        "2.50",
    ] {
        assert!(raw.contains(spelling), "{spelling} lost in {raw}");
    }
    let event: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(event["id"], event_id.as_str());
    assert_eq!(event["type"], "order.created");
    assert_eq!(event["data"]["z"], 1);
    assert_eq!(event["data"]["a"]["b"][2], json!({"c": null}));
    assert_eq!(event["data"]["big"], json!(12_345_678_901_234_567_890_u64));
    assert_eq!(
        event["data"]["text"],
        "héllo ✓ 日本語 🎉 \"quoted\" \\ \n é"
    );
    assert_eq!(event["data"]["empty"], json!({}));
    assert_eq!(event["data"]["list"], json!([]));
    let deliveries = event["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["event_id"], event_id.as_str());

    // Numbers beyond any float are kept too (a JSON parser of the reader's choice may refuse
    // them, but the service does not lose them).
    for data in [r#"{"huge": 1e400}"#, r#"[-1E+999999]"#] {
        let response = server
            .request(Method::POST, "/v1/events")
            .header("content-type", "application/json")
            .body(format!(r#"{{"type": "a.b", "data": {data}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let accepted: Value = response.json().await.unwrap();
        let raw = server
            .request(Method::GET, &format!("/v1/events/{}", id_of(&accepted)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            raw.contains(&format!(r#""data":{data}"#)),
            "{data} lost in {raw}"
        );
    }

    // Scalars and arrays are data too.
    for data in [
        json!("just text"),
        json!(42),
        json!(null),
        json!([1, "two"]),
    ] {
        let accepted = server
            .send_event(json!({"type": "a.b", "data": data}))
            .await;
        let event = server
            .expect(
                Method::GET,
                &format!("/v1/events/{}", id_of(&accepted)),
                None,
                200,
            )
            .await;
        assert_eq!(event["data"], data);
    }
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_event() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    server
        .subscribe(json!({"url": receiver.url("/hook"), "events": ["*"]}))
        .await;
    let first = server
        .send_event(json!({"type": "order.created", "data": {"n": 1}, "id": "order-1"}))
        .await;
    assert_eq!(first["deliveries"], 1);
    let again = server
        .send_event(json!({"type": "order.created", "data": {"n": 2}, "id": "order-1"}))
        .await;
    assert_eq!(again, first);
    let other = server
        .send_event(json!({"type": "order.created", "data": {"n": 3}, "id": "order-2"}))
        .await;
    assert_ne!(other["id"], first["id"]);
    assert_eq!(server.deliveries_of(&id_of(&first)).await.len(), 1);
    let event = server
        .expect(
            Method::GET,
            &format!("/v1/events/{}", id_of(&first)),
            None,
            200,
        )
        .await;
    assert_eq!(event["data"], json!({"n": 1}), "the first one is kept");
    assert_eq!(event["idempotency_key"], "order-1");
    let all = server
        .expect(Method::GET, "/v1/deliveries", None, 200)
        .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
}
