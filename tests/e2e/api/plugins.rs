//! Plugins through the API: upload, list and delete, dry runs, and a skip that sends nothing.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use switchyard::api::models::{AttemptOutcome, DeliveryDetailOut, PluginOut};

use crate::common::plugins::{bundled, fixture};
use crate::common::{TestReceiver, TestServer};

use super::{WAIT, id_of, ids, sha256_hex};

#[tokio::test]
async fn plugins_upload_list_and_delete() {
    let server = TestServer::start().await;
    let slack = bundled("slack");
    let filter = bundled("filter");
    let response = server
        .request(Method::PUT, "/v1/plugins/notify")
        .header("content-type", "application/wasm")
        .body(slack.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["name"], "notify");
    assert_eq!(created["version"], sha256_hex(&slack).as_str());
    assert_eq!(created["size"], slack.len());
    assert_eq!(created["status"], "ready");
    assert!(created["loaded_at"].is_string(), "{created}");
    assert_eq!(created.get("error"), None);

    // The same name again replaces it: 200.
    let response = server
        .request(Method::PUT, "/v1/plugins/notify")
        .header("content-type", "application/octet-stream")
        .body(slack.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let same: Value = response.json().await.unwrap();
    assert_eq!(same["version"], created["version"]);
    let response = server
        .request(Method::PUT, "/v1/plugins/notify")
        .header("content-type", "application/wasm")
        .body(filter.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let replaced: Value = response.json().await.unwrap();
    assert_eq!(replaced["version"], sha256_hex(&filter).as_str());
    assert_eq!(replaced["size"], filter.len());

    server.upload_plugin("a-first", bundled("slack")).await;
    let list = server.expect(Method::GET, "/v1/plugins", None, 200).await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a-first", "notify"]);
    let one = server
        .expect(Method::GET, "/v1/plugins/notify", None, 200)
        .await;
    assert_eq!(one, list["data"][1]);
    assert_eq!(one["version"], replaced["version"]);
    assert_eq!(one["status"], "ready");

    // In use: 409 until the subscription is gone.
    let sub = server
        .subscribe(json!({
            "url": "http://127.0.0.1:9/x",
            "events": ["*"],
            "plugin": "notify",
            "plugin_config": {"match": {"type": "a.b"}},
        }))
        .await;
    let (status, body) = server
        .call(Method::DELETE, "/v1/plugins/notify", None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "plugin_in_use");
    server
        .expect(Method::GET, "/v1/plugins/notify", None, 200)
        .await;
    server
        .expect(
            Method::DELETE,
            &format!("/v1/subscriptions/{}", id_of(&sub)),
            None,
            204,
        )
        .await;
    let response = server
        .request(Method::DELETE, "/v1/plugins/notify")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(response.text().await.unwrap(), "");
    let gone = server
        .expect(Method::GET, "/v1/plugins/notify", None, 404)
        .await;
    assert_eq!(gone["error"]["code"], "not_found");
    server
        .expect(Method::DELETE, "/v1/plugins/notify", None, 404)
        .await;
    let list = server.expect(Method::GET, "/v1/plugins", None, 200).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    // A deleted plugin cannot be subscribed to.
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"url": "http://127.0.0.1:9/x", "events": ["*"], "plugin": "notify"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unknown_plugin");
}

#[tokio::test]
async fn dry_runs_show_what_a_plugin_would_do() {
    let server = TestServer::start().await;
    let slack = server.upload_plugin("slack", bundled("slack")).await;
    server.upload_plugin("filter", bundled("filter")).await;
    server.upload_plugin("hostile", fixture("hostile")).await;

    let run = |plugin: &str, body: Value| {
        let server = &server;
        let path = format!("/v1/plugins/{plugin}/dry-run");
        async move { server.expect(Method::POST, &path, Some(body), 200).await }
    };
    // Slack: a Block Kit message.
    let out = run(
        "slack",
        json!({"event": {"type": "order.created", "data": {"total": 42, "customer": "Ada"}}}),
    )
    .await;
    assert_eq!(out["outcome"], "deliver", "{out:#}");
    assert!(
        out["content_type"]
            .as_str()
            .unwrap()
            .starts_with("application/json"),
        "{out:#}"
    );
    let message: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    let blocks = message["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty(), "{message:#}");
    assert!(message.to_string().contains("order.created"), "{message:#}");
    assert!(message.to_string().contains("Ada"), "{message:#}");
    assert!(out["logs"].is_array(), "{out:#}");
    assert!(out["duration_us"].is_u64(), "{out:#}");
    assert!(out["headers"].is_object(), "{out:#}");
    assert_eq!(out["plugin_version"], slack["version"]);

    // Filter: a skip, with the reason.
    let config = json!({"match": {"data.total": {"$gte": 100}}});
    let out = run(
        "filter",
        json!({"event": {"type": "order.created", "data": {"total": 42}}, "config": config}),
    )
    .await;
    assert_eq!(out["outcome"], "skip", "{out:#}");
    assert_eq!(
        out["reason"],
        "filter did not match: data.total $gte 100 (got 42)"
    );
    assert!(out["logs"].is_array(), "{out:#}");
    assert_eq!(out.get("body"), None);
    // … and a match delivers the envelope with the data verbatim.
    let out = run(
        "filter",
        json!({"event": {"type": "order.created", "data": {"total": 150}, "id": "evt_dry"},
               "config": config}),
    )
    .await;
    assert_eq!(out["outcome"], "deliver", "{out:#}");
    let envelope: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(envelope["id"], "evt_dry");
    assert_eq!(envelope["type"], "order.created");
    assert_eq!(envelope["data"], json!({"total": 150}));

    // What the plugin logs comes back, in order.
    let out = run(
        "hostile",
        json!({"event": {"type": "a.b", "data": {}, "id": "evt_logged"}, "config": {"mode": "log"}}),
    )
    .await;
    assert_eq!(out["outcome"], "deliver", "{out:#}");
    assert_eq!(out["body"], "logged");
    assert_eq!(out["content_type"], "text/plain");
    assert_eq!(
        out["logs"],
        json!([
            {"level": "info", "message": "first line"},
            {"level": "warn", "message": "event evt_logged"},
        ])
    );
    // Nothing was delivered or logged as a delivery.
    let deliveries = server
        .expect(Method::GET, "/v1/deliveries", None, 200)
        .await;
    assert_eq!(deliveries["data"], json!([]));
}

#[tokio::test]
async fn a_plugin_skip_is_final_and_sends_nothing() {
    let server = TestServer::start().await;
    let filter = server.upload_plugin("filter", bundled("filter")).await;
    let receiver = TestReceiver::start().await;
    server
        .subscribe(json!({
            "url": receiver.url("/hook"),
            "events": ["order.*"],
            "plugin": "filter",
            "plugin_config": {"match": {"data.total": {"$gte": 100}}},
        }))
        .await;
    let event = server
        .send_event(json!({"type": "order.created", "data": {"total": 42}}))
        .await;
    let skipped = id_of(&server.deliveries_of(&id_of(&event)).await[0]);
    let got: DeliveryDetailOut = crate::common::server::strict(
        server.wait_delivery(&skipped, "skipped", WAIT).await,
        "delivery",
    );
    assert_eq!(
        got.delivery.skip_reason.as_deref(),
        Some("filter did not match: data.total $gte 100 (got 42)")
    );
    assert_eq!(got.delivery.last_error, None);
    assert_eq!(got.attempts.len(), 1);
    assert_eq!(got.attempts[0].outcome, AttemptOutcome::Skipped);
    assert_eq!(got.attempts[0].status_code, None);
    let filter: PluginOut = crate::common::server::strict(filter, "upload");
    assert_eq!(got.attempts[0].plugin_version, filter.version);

    // A matching event goes through; afterwards, past the whole retry schedule (100ms, 100ms),
    // the skipped delivery still has its one attempt and the receiver only the match.
    let event = server
        .send_event(json!({"type": "order.created", "data": {"total": 150}}))
        .await;
    let matched = id_of(&server.deliveries_of(&id_of(&event)).await[0]);
    server.wait_delivery(&matched, "succeeded", WAIT).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got = server
        .expect(Method::GET, &format!("/v1/deliveries/{skipped}"), None, 200)
        .await;
    assert_eq!(got["status"], "skipped");
    assert_eq!(got["attempts"].as_array().unwrap().len(), 1);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].json()["data"], json!({"total": 150}));
    let listed = server
        .expect(Method::GET, "/v1/deliveries?status=skipped", None, 200)
        .await;
    assert_eq!(ids(&listed), [skipped]);
}
