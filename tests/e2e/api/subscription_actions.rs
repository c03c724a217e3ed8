//! The actions on one subscription: rotating its secret (both sign for a while), sending it a
//! test event, and enabling it again after a `410` disabled it.

use reqwest::Method;
use serde_json::json;

use switchyard::api::models::{SubscriptionOut, SubscriptionStatusOut};

use crate::common::receiver::Answer;
use crate::common::{TestReceiver, TestServer};

use super::{WAIT, id_of, ids, with_signature};

#[tokio::test]
async fn rotation_signs_with_both_secrets() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    let sub = server
        .subscribe(json!({"url": receiver.url("/hook"), "events": ["*"]}))
        .await;
    let path = format!("/v1/subscriptions/{}", id_of(&sub));
    let old = sub["secret"].as_str().unwrap().to_owned();
    let old_hook = standardwebhooks::Webhook::new(&old).unwrap();

    server
        .send_event(json!({"type": "a.b", "data": {"n": 1}}))
        .await;
    let first = receiver.wait_for(1, WAIT).await.remove(0);
    let signature = first.header("webhook-signature").unwrap();
    assert_eq!(signature.split(' ').count(), 1, "{signature}");
    old_hook.verify(&first.body, &first.headers).unwrap();

    let rotated = server
        .expect(Method::POST, &format!("{path}/rotate-secret"), None, 200)
        .await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_"), "{new}");
    assert_ne!(new, old);
    assert_eq!(rotated.as_object().unwrap().len(), 1, "{rotated}");
    let got = server.expect(Method::GET, &path, None, 200).await;
    assert_eq!(got.get("secret"), None);
    let new_hook = standardwebhooks::Webhook::new(&new).unwrap();
    // The delivery before the rotation does not verify with the new secret.
    assert!(new_hook.verify(&first.body, &first.headers).is_err());

    server
        .send_event(json!({"type": "a.b", "data": {"n": 2}}))
        .await;
    let next = receiver.wait_for(2, WAIT).await.remove(1);
    let signature = next.header("webhook-signature").unwrap();
    let parts: Vec<&str> = signature.split(' ').collect();
    assert_eq!(parts.len(), 2, "{signature}");
    assert!(parts.iter().all(|p| p.starts_with("v1,")), "{signature}");
    // Each signature verifies on its own, with exactly one of the secrets.
    let newest = with_signature(&next, parts[0]);
    let previous = with_signature(&next, parts[1]);
    new_hook.verify(&next.body, &newest).unwrap();
    old_hook.verify(&next.body, &previous).unwrap();
    assert!(new_hook.verify(&next.body, &previous).is_err());
    assert!(old_hook.verify(&next.body, &newest).is_err());
    // A receiver holding either secret accepts the whole header.
    new_hook.verify(&next.body, &next.headers).unwrap();
    old_hook.verify(&next.body, &next.headers).unwrap();
    // And a tampered body fails with both.
    let mut tampered = next.body.to_vec();
    tampered.push(b' ');
    assert!(new_hook.verify(&tampered, &next.headers).is_err());
    assert!(old_hook.verify(&tampered, &next.headers).is_err());
}

#[tokio::test]
async fn test_endpoint_sends_a_sample_event() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    // The sample goes to this subscription even though its patterns do not match it.
    let sub = server
        .subscribe(json!({"url": receiver.url("/hook"), "events": ["post.published"]}))
        .await;
    let sub_id = id_of(&sub);
    let path = format!("/v1/subscriptions/{sub_id}/test");

    let accepted = server.expect(Method::POST, &path, None, 202).await;
    let delivery_id = accepted["delivery_id"].as_str().unwrap().to_owned();
    assert!(delivery_id.starts_with("dlv_"), "{accepted}");
    let delivery = server.wait_delivery(&delivery_id, "succeeded", WAIT).await;
    assert_eq!(delivery["subscription_id"], sub_id.as_str());
    let got = receiver.wait_for(1, WAIT).await.remove(0);
    let body = got.json();
    assert_eq!(body["type"], "switchyard.test");
    assert_eq!(body["data"]["subscription_id"], sub_id.as_str());
    assert_eq!(got.header("switchyard-event-type"), Some("switchyard.test"));
    assert_eq!(got.header("webhook-id"), body["id"].as_str());
    assert_eq!(got.header("content-type"), Some("application/json"));
    let agent = got.header("user-agent").unwrap().to_ascii_lowercase();
    assert!(agent.contains("switchyard"), "{agent}");
    let sent_at: i64 = got.header("webhook-timestamp").unwrap().parse().unwrap();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    assert!((now - sent_at).abs() < 300, "webhook-timestamp {sent_at}");
    assert_eq!(delivery["event_id"], body["id"]);
    standardwebhooks::Webhook::new(sub["secret"].as_str().unwrap())
        .unwrap()
        .verify(&got.body, &got.headers)
        .unwrap();
    // Logged like any other event.
    let event = server
        .expect(
            Method::GET,
            &format!("/v1/events/{}", body["id"].as_str().unwrap()),
            None,
            200,
        )
        .await;
    assert_eq!(event["type"], "switchyard.test");
    assert_eq!(ids(&json!({"data": event["deliveries"]})), [delivery_id]);

    // The type can be chosen.
    let accepted = server
        .expect(
            Method::POST,
            &path,
            Some(json!({"type": "order.created"})),
            202,
        )
        .await;
    server
        .wait_delivery(accepted["delivery_id"].as_str().unwrap(), "succeeded", WAIT)
        .await;
    let got = receiver.wait_for(2, WAIT).await.remove(1);
    assert_eq!(got.json()["type"], "order.created");
    assert_eq!(got.header("switchyard-event-type"), Some("order.created"));
    // Only the two samples were sent: other subscriptions' events are not involved.
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn a_410_disables_the_subscription_until_enabled() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    receiver.script([Answer::status(410)]);
    let sub = server
        .subscribe(json!({"url": receiver.url("/gone"), "events": ["a.*"]}))
        .await;
    let path = format!("/v1/subscriptions/{}", id_of(&sub));
    let event = server.send_event(json!({"type": "a.b", "data": {}})).await;
    assert_eq!(event["deliveries"], 1);
    let delivery = id_of(&server.deliveries_of(&id_of(&event)).await[0]);
    let failed = server.wait_delivery(&delivery, "failed", WAIT).await;
    assert_eq!(
        failed["attempts_made"], 1,
        "no retry after a 410: {failed:#}"
    );
    assert_eq!(failed["attempts"][0]["status_code"], 410);
    let got = server.expect(Method::GET, &path, None, 200).await;
    assert_eq!(got["status"], "disabled", "{got:#}");
    let reason = got["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("410"), "{reason}");
    assert!(got["disabled_at"].is_string(), "{got:#}");

    // New events wait for it: their deliveries are parked until it is enabled.
    let event = server.send_event(json!({"type": "a.c", "data": {}})).await;
    assert_eq!(event["deliveries"], 1);
    let parked = id_of(&server.deliveries_of(&id_of(&event)).await[0]);
    let waiting = server
        .expect(Method::GET, &format!("/v1/deliveries/{parked}"), None, 200)
        .await;
    assert_eq!(waiting["status"], "pending", "{waiting:#}");

    let enabled: SubscriptionOut = server
        .typed(Method::POST, &format!("{path}/enable"), None, 200)
        .await;
    assert_eq!(enabled.status, SubscriptionStatusOut::Enabled);
    assert_eq!(enabled.disabled_reason, None);
    assert_eq!(enabled.disabled_at, None);
    assert_eq!(server.get::<SubscriptionOut>(&path).await, enabled);
    // Enabling an enabled subscription is harmless.
    let again = server
        .expect(Method::POST, &format!("{path}/enable"), None, 200)
        .await;
    assert_eq!(again["status"], "enabled");

    let event = server.send_event(json!({"type": "a.d", "data": {}})).await;
    assert_eq!(event["deliveries"], 1);
    let delivery = id_of(&server.deliveries_of(&id_of(&event)).await[0]);
    server.wait_delivery(&delivery, "succeeded", WAIT).await;
    server.wait_delivery(&parked, "succeeded", WAIT).await;
    let got = receiver.wait_for(3, WAIT).await;
    let mut types: Vec<String> = got[1..]
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(types, ["a.c", "a.d"], "the parked one is sent after enable");
    assert_eq!(got.len(), 3);
}
