//! Register → ingest → deliver: what the receiver gets (body, headers, a signature verified by
//! the independent `standardwebhooks` crate), retries, idempotency, 410 and Retry-After.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common::plugins::bundled;
use crate::common::receiver::{Answer, Received};
use crate::common::{TestReceiver, TestServer};

const WAIT: Duration = Duration::from_secs(15);

/// Verifies a received request with the Standard Webhooks reference crate (not our code).
fn verify(secret: &str, got: &Received) {
    let webhook = standardwebhooks::Webhook::new(secret).unwrap();
    webhook
        .verify(&got.body, &got.headers)
        .unwrap_or_else(|e| panic!("signature did not verify: {e:?}; headers {:?}", got.headers));
}

#[test]
fn the_reference_crate_agrees_with_the_spec_test_vector() {
    // The published Standard Webhooks vector, checked with the reference implementation, so the
    // verifier used by these tests is itself known to be right.
    let webhook = standardwebhooks::Webhook::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    let signature = webhook
        .sign(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        )
        .unwrap();
    assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
}

#[tokio::test]
async fn receiver_gets_the_signed_envelope() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    let sub = server
        .subscribe(json!({"url": receiver.url("/hook"), "events": ["post.*"], "headers": {"X-Tenant": "acme"}}))
        .await;
    let data = json!({"title": "Hello", "n": 42, "nested": {"ü": [1, 2.5, null]}});
    let event = server
        .send_event(json!({"type": "post.published", "data": data}))
        .await;
    assert_eq!(event["deliveries"], 1);
    let got = receiver.wait_for(1, WAIT).await;
    let got = &got[0];
    assert_eq!(got.path, "/hook");
    let body = got.json();
    assert_eq!(body["id"], event["id"]);
    assert_eq!(body["type"], "post.published");
    assert_eq!(body["data"], data);
    let ts = body["timestamp"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok(),
        "{ts}"
    );
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("webhook-id"), event["id"].as_str());
    assert_eq!(got.header("switchyard-event-type"), Some("post.published"));
    assert_eq!(got.header("x-tenant"), Some("acme"));
    assert!(got.header("user-agent").unwrap().starts_with("Switchyard/"));
    let ts: i64 = got.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!((ts - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 60);
    verify(sub["secret"].as_str().unwrap(), got);
    // Signed over the exact bytes sent: one changed byte no longer verifies.
    let mut tampered = got.clone();
    let mut bytes = tampered.body.to_vec();
    bytes[1] ^= 1;
    tampered.body = bytes.into();
    assert!(
        standardwebhooks::Webhook::new(sub["secret"].as_str().unwrap())
            .unwrap()
            .verify(&tampered.body, &tampered.headers)
            .is_err()
    );
    let delivery = &server.deliveries_of(event["id"].as_str().unwrap()).await[0];
    let delivery = server
        .wait_delivery(delivery["id"].as_str().unwrap(), "succeeded", WAIT)
        .await;
    assert_eq!(delivery["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(delivery["attempts"][0]["status_code"], 204);
}

#[tokio::test]
async fn a_plugin_subscription_delivers_the_plugins_slack_body_signed() {
    let server = TestServer::start().await;
    let uploaded = server.upload_plugin("slack", bundled("slack")).await;
    let receiver = TestReceiver::start().await;
    let sub = server
        .subscribe(json!({
            "url": receiver.url("/slack"),
            "events": ["post.published"],
            "plugin": "slack",
            "plugin_config": {"title": "New post: {{data.title}}", "fields": ["data.author"]}
        }))
        .await;
    let event = server
        .send_event(
            json!({"type": "post.published", "data": {"title": "Hi <there>", "author": "Ann"}}),
        )
        .await;
    let got = receiver.wait_for(1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["blocks"][0]["type"], "header");
    assert_eq!(body["blocks"][0]["text"]["text"], "New post: Hi <there>");
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("New post: Hi"), "{text}");
    let fields = body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|b| b.get("fields"))
        .unwrap();
    assert_eq!(fields[0]["text"], "*author*\nAnn");
    verify(sub["secret"].as_str().unwrap(), &got[0]);
    let delivery = &server.deliveries_of(event["id"].as_str().unwrap()).await[0];
    let delivery = server
        .wait_delivery(delivery["id"].as_str().unwrap(), "succeeded", WAIT)
        .await;
    assert_eq!(
        delivery["attempts"][0]["plugin_version"],
        uploaded["version"]
    );
}

#[tokio::test]
async fn failures_are_retried_with_one_stable_webhook_id() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    receiver.script([
        Answer::status(500),
        Answer::status(503),
        Answer::status(204),
    ]);
    let sub = server
        .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
        .await;
    let event = server.send_event(json!({"type": "a.b", "data": {}})).await;
    let got = receiver.wait_for(3, WAIT).await;
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![event["id"].as_str().unwrap().to_owned(); 3]);
    for request in &got {
        verify(sub["secret"].as_str().unwrap(), request);
    }
    let delivery = &server.deliveries_of(event["id"].as_str().unwrap()).await[0];
    let delivery = server
        .wait_delivery(delivery["id"].as_str().unwrap(), "succeeded", WAIT)
        .await;
    let codes: Vec<_> = delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, [json!(500), json!(503), json!(204)]);
    assert_eq!(delivery["attempts_made"], 3);
}

#[tokio::test]
async fn an_always_failing_receiver_ends_failed_and_a_manual_retry_succeeds() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Answer::status(500));
    server
        .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
        .await;
    let event = server
        .send_event(json!({"type": "a.b", "data": {"x": 1}}))
        .await;
    let id = server.deliveries_of(event["id"].as_str().unwrap()).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = server.wait_delivery(&id, "failed", WAIT).await;
    // 1 attempt + the 2 retries of the test schedule.
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(failed["last_error"], "receiver answered 500");
    assert_eq!(receiver.received().len(), 3);
    receiver.always(Answer::status(200));
    server
        .expect(
            Method::POST,
            &format!("/v1/deliveries/{id}/retry"),
            None,
            202,
        )
        .await;
    let done = server.wait_delivery(&id, "succeeded", WAIT).await;
    assert_eq!(done["attempts"].as_array().unwrap().len(), 4);
    let got = receiver.received();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].body, got[0].body, "a retry sends the same body");
    // A queued or finished-successfully state: retrying a succeeded delivery queues it again.
    server
        .expect(Method::POST, "/v1/deliveries/dlv_nope/retry", None, 404)
        .await;
}

#[tokio::test]
async fn gone_disables_the_subscription() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Answer::status(410));
    let sub = server
        .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
        .await;
    let sub_id = sub["id"].as_str().unwrap();
    let event = server.send_event(json!({"type": "a.b", "data": {}})).await;
    let id = server.deliveries_of(event["id"].as_str().unwrap()).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.wait_delivery(&id, "failed", WAIT).await;
    let now = server
        .expect(
            Method::GET,
            &format!("/v1/subscriptions/{sub_id}"),
            None,
            200,
        )
        .await;
    assert_eq!(now["status"], "disabled");
    assert!(
        now["disabled_reason"].as_str().unwrap().contains("410"),
        "{now}"
    );
    assert!(now["disabled_at"].is_string());
    assert_eq!(receiver.received().len(), 1, "no retry after 410");
    let later = server.send_event(json!({"type": "a.b", "data": {}})).await;
    assert_eq!(
        later["deliveries"], 1,
        "a disabled subscription's new deliveries wait for it"
    );
    let parked = &server.deliveries_of(later["id"].as_str().unwrap()).await[0];
    assert_eq!(parked["status"], "pending", "{parked:#}");
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing is sent while disabled"
    );
}

#[tokio::test]
async fn retry_after_pushes_the_next_attempt_later() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    receiver.script([Answer {
        status: 429,
        headers: vec![("retry-after", "2".into())],
        delay: Duration::ZERO,
    }]);
    server
        .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
        .await;
    server.send_event(json!({"type": "a.b", "data": {}})).await;
    let got = receiver.wait_for(2, WAIT).await;
    let gap = got[1].at - got[0].at;
    // The schedule says ~100 ms; the receiver asked for 2 s.
    assert!(
        gap >= Duration::from_millis(1900),
        "retried after {gap:?}, before the Retry-After"
    );
}

#[tokio::test]
async fn the_same_idempotency_key_makes_one_event_and_one_delivery() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    server
        .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
        .await;
    let body = json!({"type": "order.paid", "data": {"order": 7}, "id": "order-7-paid"});
    let first = server.send_event(body.clone()).await;
    let second = server.send_event(body.clone()).await;
    assert_eq!(first, second);
    // Concurrent duplicates land in the same group commit: still one event.
    let concurrent = futures::future::join_all(
        (0..10).map(|_| server.send_event(json!({"type": "x.y", "data": {}, "id": "same-key"}))),
    )
    .await;
    assert!(
        concurrent.iter().all(|r| r["id"] == concurrent[0]["id"]),
        "{concurrent:?}"
    );
    receiver.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        2,
        "one delivery per idempotency key"
    );
    assert_eq!(
        server
            .deliveries_of(first["id"].as_str().unwrap())
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_hex_signature_scheme_verifies_like_github_and_saas_receivers() {
    use hmac::{Hmac, KeyInit, Mac};
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    let secret = "my-github-style-shared-secret";
    server
        .subscribe(json!({
            "url": receiver.url("/gh"), "events": ["*"], "secret": secret,
            "signature": {"scheme": "hmac-sha256-hex", "header": "X-Hub-Signature-256"}
        }))
        .await;
    server
        .subscribe(json!({
            "url": receiver.url("/saas"), "events": ["*"], "secret": secret,
            "signature": {"scheme": "hmac-sha256-hex", "header": "X-Signature", "prefix": "", "timestamp_header": "X-Timestamp"}
        }))
        .await;
    server
        .send_event(json!({"type": "a.b", "data": {"k": "v"}}))
        .await;
    let got = receiver.wait_for(2, WAIT).await;
    let hex_hmac = |msg: &[u8]| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(msg);
        hex::encode(mac.finalize().into_bytes())
    };
    let gh = got.iter().find(|r| r.path == "/gh").unwrap();
    assert_eq!(
        gh.header("x-hub-signature-256").unwrap(),
        format!("sha256={}", hex_hmac(&gh.body))
    );
    let saas = got.iter().find(|r| r.path == "/saas").unwrap();
    let ts = saas.header("x-timestamp").unwrap();
    let signed = [ts.as_bytes(), b".", &saas.body].concat();
    assert_eq!(saas.header("x-signature").unwrap(), hex_hmac(&signed));
}

#[tokio::test]
async fn a_slow_receiver_does_not_starve_other_subscriptions() {
    let server = TestServer::start_with(|c| c.max_in_flight_per_subscription = 2).await;
    let slow = TestReceiver::start().await;
    slow.always(Answer {
        status: 204,
        headers: vec![],
        delay: Duration::from_secs(6),
    });
    let fast = TestReceiver::start().await;
    server
        .subscribe(json!({"url": slow.url("/"), "events": ["slow.*"]}))
        .await;
    server
        .subscribe(json!({"url": fast.url("/"), "events": ["fast.*"]}))
        .await;
    for i in 0..20 {
        server
            .send_event(json!({"type": "slow.x", "data": {"i": i}}))
            .await;
    }
    for i in 0..5 {
        server
            .send_event(json!({"type": "fast.x", "data": {"i": i}}))
            .await;
    }
    // All five fast deliveries arrive while the slow receiver still holds its first two.
    fast.wait_for(5, Duration::from_secs(4)).await;
    assert!(
        slow.received().len() <= 2,
        "per-subscription cap exceeded: {}",
        slow.received().len()
    );
}

#[tokio::test]
async fn failed_deliveries_are_replayed_by_time_range() {
    let server = TestServer::start_with(|c| c.retry_schedule = Vec::new()).await;
    let receiver = TestReceiver::start().await;
    receiver.always(Answer::status(503));
    let sub = server
        .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
        .await;
    let sub_id = sub["id"].as_str().unwrap();
    let since = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
    let mut ids = Vec::new();
    for i in 0..5 {
        let event = server
            .send_event(json!({"type": "a.b", "data": {"i": i}}))
            .await;
        ids.push(
            server.deliveries_of(event["id"].as_str().unwrap()).await[0]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        server.wait_delivery(id, "failed", WAIT).await;
    }
    receiver.always(Answer::status(204));
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    // A window that ended before the deliveries were created recovers nothing.
    let none = server
        .expect(
            Method::POST,
            &format!("/v1/subscriptions/{sub_id}/recover"),
            Some(json!({"since": rfc(since), "until": rfc(since)})),
            202,
        )
        .await;
    assert_eq!(none["recovered"], 0);
    let all = server
        .expect(
            Method::POST,
            &format!("/v1/subscriptions/{sub_id}/recover"),
            Some(json!({"since": rfc(since)})),
            202,
        )
        .await;
    assert_eq!(all["recovered"], 5);
    for id in &ids {
        let done = server.wait_delivery(id, "succeeded", WAIT).await;
        assert_eq!(done["attempts"].as_array().unwrap().len(), 2);
    }
    server
        .expect(
            Method::POST,
            &format!("/v1/subscriptions/{sub_id}/recover"),
            Some(json!({"since": "yesterday"})),
            422,
        )
        .await;
}

#[tokio::test]
async fn a_subscription_failing_for_too_long_is_disabled_with_a_reason() {
    let server = TestServer::start_with(|c| {
        c.disable_after_failing_for = Duration::from_millis(500);
        c.retry_schedule = vec![Duration::from_millis(200); 20];
    })
    .await;
    let receiver = TestReceiver::start().await;
    receiver.always(Answer::status(500));
    let sub = server
        .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
        .await;
    let sub_id = sub["id"].as_str().unwrap().to_owned();
    server.send_event(json!({"type": "a.b", "data": {}})).await;
    let disabled = crate::common::wait_until(WAIT, || async {
        server
            .expect(
                Method::GET,
                &format!("/v1/subscriptions/{sub_id}"),
                None,
                200,
            )
            .await["status"]
            == "disabled"
    })
    .await;
    assert!(disabled, "still enabled after failing past the window");
    let now = server
        .expect(
            Method::GET,
            &format!("/v1/subscriptions/{sub_id}"),
            None,
            200,
        )
        .await;
    assert!(
        now["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("every delivery failed for more than"),
        "{now}"
    );
    // Re-enabling starts a fresh streak: a success now keeps it enabled.
    receiver.always(Answer::status(204));
    server
        .expect(
            Method::POST,
            &format!("/v1/subscriptions/{sub_id}/enable"),
            None,
            200,
        )
        .await;
    server.send_event(json!({"type": "a.b", "data": {}})).await;
    receiver.wait_for(1, WAIT).await;
    let after = server
        .expect(
            Method::GET,
            &format!("/v1/subscriptions/{sub_id}"),
            None,
            200,
        )
        .await;
    assert_eq!(after["status"], "enabled");
}
