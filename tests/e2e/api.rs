//! The REST API behaves as `shared/API.md` says: subscriptions, events, deliveries, plugins,
//! dry runs, metrics and health, against the real service.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::HeaderValue;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use switchyard::api::models::{
    AttemptOutcome, DeliveryDetailOut, DeliveryStatusOut, Page, PluginOut, Signature,
    SubscriptionOut, SubscriptionStatusOut,
};

use crate::common::plugins::{bundled, fixture};
use crate::common::receiver::{Answer, Received};
use crate::common::{TestReceiver, TestServer, wait_until};

const WAIT: Duration = Duration::from_secs(20);

fn id_of(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {value}"))
        .to_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The ids in a list page's `data`.
fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {page}"))
        .iter()
        .map(id_of)
        .collect()
}

/// Follows `next_cursor` from `first` (a path with `?limit=…`) until it is null; returns every
/// page's ids, page by page.
async fn all_pages(server: &TestServer, first: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut path = first.to_owned();
    loop {
        let page: Page<Value> = server.get(&path).await;
        pages.push(page.data.iter().map(id_of).collect());
        match page.next_cursor {
            Some(cursor) => path = format!("{first}&cursor={cursor}"),
            None => return pages,
        }
        assert!(pages.len() < 100, "pagination does not end");
    }
}

/// A value of `/metrics`, by exact series name; it must be there.
async fn metric(server: &TestServer, name: &str) -> f64 {
    server
        .metric(name)
        .await
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// `webhook-signature` replaced by just `signature`, for verifying one signature alone.
fn with_signature(received: &Received, signature: &str) -> axum::http::HeaderMap {
    let mut headers = received.headers.clone();
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(signature).unwrap(),
    );
    headers
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

#[tokio::test]
async fn create_returns_the_secret_once_and_echoes_every_field() {
    let server = TestServer::start().await;
    server.upload_plugin("slack", bundled("slack")).await;
    let receiver = TestReceiver::start().await;
    let url = receiver.url("/hook");
    let created = server
        .subscribe(json!({
            "url": url,
            "events": ["post.*", "order.created"],
            "plugin": "slack",
            "plugin_config": {"title": "New {{type}}", "skip_types": ["post.draft"]},
            "description": "Orders → Slack ✓",
            "headers": {"X-Team": "blue", "x-env": "test"},
        }))
        .await;
    let created: SubscriptionOut = crate::common::server::strict(created, "create");
    let id = created.id.to_string();
    assert!(id.starts_with("sub_"), "{id}");
    let secret = created.secret.clone().expect("create shows the secret");
    let key = secret.strip_prefix("whsec_").expect("secret starts whsec_");
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(created.url, url);
    assert_eq!(created.events, ["post.*", "order.created"]);
    assert_eq!(created.plugin.as_deref(), Some("slack"));
    assert_eq!(
        created.plugin_config,
        Some(json!({"title": "New {{type}}", "skip_types": ["post.draft"]}))
    );
    assert_eq!(created.description.as_deref(), Some("Orders → Slack ✓"));
    // The create's answer echoes the header values (names lower-cased) …
    assert_eq!(
        created.headers,
        [("x-env", "test"), ("x-team", "blue")]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .into()
    );
    assert_eq!(created.signature, Signature::StandardWebhooks {});
    assert_eq!(created.status, SubscriptionStatusOut::Enabled);
    assert_eq!(created.disabled_reason, None);
    assert_eq!(created.disabled_at, None);
    assert_eq!(created.created_at, created.updated_at);

    // … GET shows the same subscription without the secret, header values redacted …
    let got: SubscriptionOut = server.get(&format!("/v1/subscriptions/{id}")).await;
    let mut expected = created.clone();
    expected.secret = None;
    for value in expected.headers.values_mut() {
        *value = "••••".into();
    }
    assert_eq!(got, expected);
    let text = server
        .expect(Method::GET, &format!("/v1/subscriptions/{id}"), None, 200)
        .await
        .to_string();
    assert!(!text.contains(&secret) && !text.contains("blue"), "{text}");
    let list: Page<SubscriptionOut> = server.get("/v1/subscriptions").await;
    assert_eq!(list.data, [expected.clone()]);
    assert_eq!(list.next_cursor, None);
    // … and shows the values only when asked.
    let with_values: SubscriptionOut = server
        .get(&format!(
            "/v1/subscriptions/{id}?include_header_values=true"
        ))
        .await;
    assert_eq!(with_values.headers, created.headers);
    let list: Page<SubscriptionOut> = server
        .get("/v1/subscriptions?include_header_values=true")
        .await;
    assert_eq!(list.data[0].headers, created.headers);
    assert_eq!(list.data[0].secret, None);

    // Two subscriptions never share a secret; a caller-chosen secret is kept as given.
    let other: SubscriptionOut = crate::common::server::strict(
        server.subscribe(json!({"url": url, "events": ["*"]})).await,
        "create",
    );
    assert_ne!(other.secret, created.secret);
    assert_eq!(other.plugin, None);
    assert_eq!(other.plugin_config, None);
    assert_eq!(other.description, None);
    assert!(other.headers.is_empty());
    let mine = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 24])
    );
    let chosen = server
        .subscribe(json!({"url": url, "events": ["*"], "secret": mine}))
        .await;
    assert_eq!(chosen["secret"], mine.as_str());
}

#[tokio::test]
async fn list_pages_chain_through_next_cursor() {
    let server = TestServer::start().await;
    let mut created = Vec::new();
    for i in 0..5 {
        let sub = server
            .subscribe(json!({"url": format!("http://127.0.0.1:9/{i}"), "events": ["*"]}))
            .await;
        created.push(id_of(&sub));
    }
    let pages = all_pages(&server, "/v1/subscriptions?limit=2").await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 2, 1]);
    let listed: Vec<String> = pages.concat();
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "every id once, in id (creation) order");
    // A page size that divides the total ends with a null cursor, not an empty page.
    let pages = all_pages(&server, "/v1/subscriptions?limit=5").await;
    assert_eq!(pages, [sorted.clone()]);
    // Deleted subscriptions leave the list.
    server
        .expect(
            Method::DELETE,
            &format!("/v1/subscriptions/{}", created[2]),
            None,
            204,
        )
        .await;
    let listed: Vec<String> = all_pages(&server, "/v1/subscriptions?limit=2")
        .await
        .concat();
    let remaining: Vec<String> = sorted.into_iter().filter(|id| *id != created[2]).collect();
    assert_eq!(listed, remaining);
}

#[tokio::test]
async fn patch_changes_only_the_given_fields_and_validates_the_result() {
    let server = TestServer::start().await;
    let filter = server.upload_plugin("filter", bundled("filter")).await;
    server.upload_plugin("slack", bundled("slack")).await;
    let created = server
        .subscribe(json!({
            "url": "http://127.0.0.1:9/a",
            "events": ["a.b"],
            "description": "one",
            "headers": {"x-a": "1"},
        }))
        .await;
    let path = format!("/v1/subscriptions/{}", id_of(&created));
    let mut expected = created.clone();
    expected.as_object_mut().unwrap().remove("secret");
    expected["headers"] = json!({"x-a": "••••"});

    let patch = |body: Value| {
        let server = &server;
        let path = path.clone();
        async move { server.expect(Method::PATCH, &path, Some(body), 200).await }
    };
    // Each patch changes its fields and nothing else (but updated_at).
    let steps = [
        json!({"description": "two"}),
        json!({"events": ["c.*", "d.e"]}),
        json!({"url": "http://127.0.0.1:9/b"}),
        json!({"headers": {"X-B": "2"}}),
        json!({"description": null}),
        json!({}),
        json!({"plugin": "filter", "plugin_config": {"match": {"type": "c.x"}}}),
        json!({"plugin_config": {"match": {"type": "c.y"}}}),
        json!({"signature": {"scheme": "hmac-sha256-hex", "header": "X-Sig"}}),
    ];
    for step in steps {
        let got = patch(step.clone()).await;
        for (key, value) in step.as_object().unwrap() {
            expected[key] = value.clone();
        }
        if step.get("headers").is_some() {
            expected["headers"] = json!({"x-b": "••••"});
        }
        if step.get("signature").is_some() {
            expected["signature"] =
                json!({"scheme": "hmac-sha256-hex", "header": "x-sig", "prefix": "sha256="});
        }
        expected["updated_at"] = got["updated_at"].clone();
        assert_eq!(got, expected, "after {step}");
        let again = server.expect(Method::GET, &path, None, 200).await;
        assert_eq!(again, expected, "GET after {step}");
    }
    let expected: SubscriptionOut = crate::common::server::strict(expected, "expected");
    assert_eq!(expected.plugin.as_deref(), Some("filter"));
    assert_eq!(expected.description, None);
    assert_eq!(
        serde_json::to_value(expected.created_at).unwrap(),
        created["created_at"]
    );
    let expected = serde_json::to_value(&expected).unwrap();

    // The merged result is validated: the current plugin judges a new config …
    let (status, body) = server
        .call(
            Method::PATCH,
            &path,
            Some(json!({"plugin_config": {"match": {"x": {"$nope": 1}}}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_plugin_config");
    // … a new plugin judges the current config (filter's config is not slack's) …
    let (status, body) = server
        .call(Method::PATCH, &path, Some(json!({"plugin": "slack"})))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_plugin_config");
    // … and clearing the plugin alone would leave its config without a plugin.
    let (status, body) = server
        .call(Method::PATCH, &path, Some(json!({"plugin": null})))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_plugin_config");
    assert_eq!(server.expect(Method::GET, &path, None, 200).await, expected);

    // `"plugin": null` (with its config) clears the plugin.
    let got: SubscriptionOut = crate::common::server::strict(
        patch(json!({"plugin": null, "plugin_config": null})).await,
        "patch",
    );
    assert_eq!(got.plugin, None);
    assert_eq!(got.plugin_config, None);
    // A plugin without config, then `"plugin": null` alone.
    let got = patch(json!({"plugin": "slack"})).await;
    assert_eq!(got["plugin"], "slack");
    let got: SubscriptionOut =
        crate::common::server::strict(patch(json!({"plugin": null})).await, "patch");
    assert_eq!(got.plugin, None);
    assert_eq!(got.events, ["c.*", "d.e"]);
    // The filter is no longer in use.
    assert_eq!(filter["name"], "filter");
    server
        .expect(Method::DELETE, "/v1/plugins/filter", None, 204)
        .await;
}

#[tokio::test]
async fn delete_answers_204_then_404() {
    let server = TestServer::start().await;
    let sub = server
        .subscribe(json!({"url": "http://127.0.0.1:9/x", "events": ["*"]}))
        .await;
    let path = format!("/v1/subscriptions/{}", id_of(&sub));
    let response = server.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(response.text().await.unwrap(), "");
    for (method, sub_path) in [
        (Method::GET, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::PATCH, path.clone()),
        (Method::POST, format!("{path}/rotate-secret")),
        (Method::POST, format!("{path}/test")),
        (Method::POST, format!("{path}/enable")),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"description": "x"}));
        let got = server.expect(method, &sub_path, body, 404).await;
        assert_eq!(got["error"]["code"], "not_found");
    }
    // Events no longer go to it.
    let event = server.send_event(json!({"type": "a.b", "data": {}})).await;
    assert_eq!(event["deliveries"], 0);
}

#[tokio::test]
async fn delete_cancels_pending_deliveries() {
    let server =
        TestServer::start_with(|c| c.retry_schedule = vec![Duration::from_secs(3600)]).await;
    let receiver = TestReceiver::start().await;
    receiver.always(Answer::status(500));
    let sub = server
        .subscribe(json!({"url": receiver.url("/hook"), "events": ["*"]}))
        .await;
    let event = server.send_event(json!({"type": "a.b", "data": {}})).await;
    let deliveries = server.deliveries_of(&id_of(&event)).await;
    assert_eq!(deliveries.len(), 1);
    let delivery = format!("/v1/deliveries/{}", id_of(&deliveries[0]));
    receiver.wait_for(1, WAIT).await;
    // The failed first attempt is recorded and the retry is an hour away.
    let waited = wait_until(WAIT, || async {
        let d = server.expect(Method::GET, &delivery, None, 200).await;
        d["attempts_made"] == 1 && d["status"] == "pending"
    })
    .await;
    assert!(waited, "the first attempt was not recorded");
    server
        .expect(
            Method::DELETE,
            &format!("/v1/subscriptions/{}", id_of(&sub)),
            None,
            204,
        )
        .await;
    let got: DeliveryDetailOut = server.get(&delivery).await;
    assert_eq!(
        got.delivery.status,
        DeliveryStatusOut::Cancelled,
        "{got:#?}"
    );
    assert_eq!(got.delivery.next_attempt_at, None);
    assert_eq!(got.attempts.len(), 1);
    let listed = server
        .expect(Method::GET, "/v1/deliveries?status=cancelled", None, 200)
        .await;
    assert_eq!(ids(&listed), [id_of(&deliveries[0])]);
    assert_eq!(receiver.received().len(), 1);
}

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

// ---------------------------------------------------------------------------------------------
// Events

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

// ---------------------------------------------------------------------------------------------
// Deliveries

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

// ---------------------------------------------------------------------------------------------
// Plugins

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

// ---------------------------------------------------------------------------------------------
// Operations

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

// ---------------------------------------------------------------------------------------------
// Contract details: concurrent PATCHes, redacted header values, bounds, the served document

/// Four PATCHes of four different fields of one subscription, at once, ten times: each round
/// every field has its new value. (Merging in the handler and writing every field, as before,
/// lost some of them: the last writer wrote back the others' old values.)
#[tokio::test]
async fn concurrent_patches_keep_every_field() {
    let server = TestServer::start().await;
    server.upload_plugin("filter", bundled("filter")).await;
    let sub = server
        .subscribe(json!({
            "url": "http://127.0.0.1:9/r",
            "events": ["a.b"],
            "plugin": "filter",
            "plugin_config": {"match": {"type": "a.b"}},
        }))
        .await;
    let path = format!("/v1/subscriptions/{}", id_of(&sub));
    for round in 0..10 {
        let patches = [
            json!({"description": format!("round {round}")}),
            json!({"url": format!("http://127.0.0.1:9/r{round}")}),
            json!({"events": [format!("e{round}.*")]}),
            json!({"headers": {"x-round": round.to_string()}}),
            json!({"plugin_config": {"match": {"type": format!("e{round}.x")}}}),
        ];
        let sent = patches.iter().map(|body| {
            server.typed::<SubscriptionOut>(Method::PATCH, &path, Some(body.clone()), 200)
        });
        futures::future::join_all(sent).await;
        let got: SubscriptionOut = server
            .get(&format!("{path}?include_header_values=true"))
            .await;
        assert_eq!(got.description, Some(format!("round {round}")), "{got:#?}");
        assert_eq!(got.url, format!("http://127.0.0.1:9/r{round}"), "{got:#?}");
        assert_eq!(got.events, [format!("e{round}.*")], "{got:#?}");
        assert_eq!(
            got.headers.get("x-round").map(String::as_str),
            Some(round.to_string().as_str()),
            "{got:#?}"
        );
        assert_eq!(
            got.plugin_config,
            Some(json!({"match": {"type": format!("e{round}.x")}})),
            "{got:#?}"
        );
    }
}

/// GET and list show `••••` for header values; a PATCH that sends the placeholder back keeps
/// the stored value, and deliveries carry the real one.
#[tokio::test]
async fn header_values_are_redacted_and_survive_a_read_modify_write() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    let created = server
        .subscribe(json!({
            "url": receiver.url("/hook"),
            "events": ["*"],
            "headers": {"Authorization": "Bearer receiver-token", "x-env": "prod"},
        }))
        .await;
    let path = format!("/v1/subscriptions/{}", id_of(&created));
    let shown: SubscriptionOut = server.get(&path).await;
    assert_eq!(
        shown.headers,
        [("authorization", "••••"), ("x-env", "••••")]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .into()
    );
    // Write back what GET showed, changing one value and adding a header.
    let mut headers = shown.headers.clone();
    headers.insert("x-env".into(), "staging".into());
    headers.insert("x-new".into(), "1".into());
    let patched: SubscriptionOut = server
        .typed(Method::PATCH, &path, Some(json!({"headers": headers})), 200)
        .await;
    assert_eq!(patched.headers.get("authorization").unwrap(), "••••");
    let stored: SubscriptionOut = server
        .get(&format!("{path}?include_header_values=true"))
        .await;
    assert_eq!(
        stored.headers,
        [
            ("authorization", "Bearer receiver-token"),
            ("x-env", "staging"),
            ("x-new", "1")
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .into()
    );
    server.send_event(json!({"type": "a.b", "data": {}})).await;
    let got = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(got.header("authorization"), Some("Bearer receiver-token"));
    assert_eq!(got.header("x-env"), Some("staging"));
    // The placeholder is not a value: not on create, nor for a header that has none.
    for (method, target, body) in [
        (
            Method::POST,
            "/v1/subscriptions".to_owned(),
            json!({"url": receiver.url("/x"), "events": ["*"], "headers": {"x-a": "••••"}}),
        ),
        (
            Method::PATCH,
            path.clone(),
            json!({"headers": {"x-unknown": "••••"}}),
        ),
    ] {
        let (status, body) = server.call(method, &target, Some(body)).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "invalid_headers", "{body}");
    }
}

/// A header value of 900 kB used to be accepted, and then every delivery failed with 431.
#[tokio::test]
async fn custom_header_sizes_are_bounded() {
    let server = TestServer::start().await;
    let with = |headers: Value| json!({"url": "http://127.0.0.1:9/x", "events": ["*"], "headers": headers});
    for headers in [
        json!({"x-big": "v".repeat(900_000)}),
        json!({"x-big": "v".repeat(8 * 1024 + 1)}),
        // Three values of 6 KiB: each fits, together they pass 16 KiB.
        json!({"x-a": "v".repeat(6 * 1024), "x-b": "v".repeat(6 * 1024), "x-c": "v".repeat(6 * 1024)}),
    ] {
        let (status, body) = server
            .call(Method::POST, "/v1/subscriptions", Some(with(headers)))
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "invalid_headers", "{body}");
    }
    // Up to the limits is fine, and PATCH checks the same.
    let sub = server
        .subscribe(with(
            json!({"x-a": "v".repeat(8 * 1024), "x-b": "v".repeat(7 * 1024)}),
        ))
        .await;
    let path = format!("/v1/subscriptions/{}", id_of(&sub));
    let (status, body) = server
        .call(
            Method::PATCH,
            &path,
            Some(json!({"headers": {"x-big": "v".repeat(900_000)}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_headers", "{body}");
}

/// A hex-scheme secret cannot sign Standard Webhooks: switching the scheme needs a new secret
/// (given, or rotated) in the same PATCH; deliveries then verify with it.
#[tokio::test]
async fn changing_the_scheme_needs_a_secret_that_fits() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    let sub = server
        .subscribe(json!({
            "url": receiver.url("/hook"),
            "events": ["*"],
            "signature": {"scheme": "hmac-sha256-hex", "header": "x-sig"},
            "secret": "a-receiver-chosen-hex-secret",
        }))
        .await;
    let path = format!("/v1/subscriptions/{}", id_of(&sub));
    let standard = json!({"scheme": "standard-webhooks"});
    let (status, body) = server
        .call(Method::PATCH, &path, Some(json!({"signature": standard})))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_secret", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rotate_secret"),
        "{body}"
    );
    let unchanged: SubscriptionOut = server.get(&path).await;
    assert!(matches!(
        unchanged.signature,
        Signature::HmacSha256Hex { .. }
    ));
    // A secret that does not fit the new scheme is refused too; both at once are refused.
    for body in [
        json!({"signature": standard, "secret": "still-not-a-whsec-secret"}),
        json!({"signature": standard, "secret": "x", "rotate_secret": true}),
    ] {
        let (status, answer) = server.call(Method::PATCH, &path, Some(body)).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_secret", "{answer}");
    }
    // With a rotation the answer shows the new secret, and deliveries verify with it.
    let rotated: SubscriptionOut = server
        .typed(
            Method::PATCH,
            &path,
            Some(json!({"signature": standard, "rotate_secret": true})),
            200,
        )
        .await;
    assert_eq!(rotated.signature, Signature::StandardWebhooks {});
    let secret = rotated.secret.expect("the rotated secret is shown");
    server
        .send_event(json!({"type": "a.b", "data": {"n": 1}}))
        .await;
    let got = receiver.wait_for(1, WAIT).await.remove(0);
    standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&got.body, &got.headers)
        .unwrap();
    // Back to the hex scheme with a secret of one's own: deliveries carry its signature.
    let mine = "another-receiver-secret-0123";
    let back: SubscriptionOut = server
        .typed(
            Method::PATCH,
            &path,
            Some(json!({"signature": {"scheme": "hmac-sha256-hex", "header": "x-sig"}, "secret": mine})),
            200,
        )
        .await;
    assert_eq!(back.secret.as_deref(), Some(mine));
    server
        .send_event(json!({"type": "a.b", "data": {"n": 2}}))
        .await;
    let got = receiver.wait_for(2, WAIT).await.remove(1);
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(mine.as_bytes()).unwrap();
    mac.update(&got.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(got.header("x-sig"), Some(expected.as_str()));
}

/// `GET /v1/events/{id}` used to stop at 1,000 deliveries without saying so; now it points to
/// the rest, which `GET /v1/deliveries?event_id=` pages through.
#[tokio::test]
async fn an_event_points_to_the_deliveries_it_does_not_show() {
    let server = TestServer::start().await;
    let total = 1003;
    for i in 0..total {
        server
            .subscribe(json!({"url": format!("http://127.0.0.1:9/{i}"), "events": ["fan.out"]}))
            .await;
    }
    let event = server
        .send_event(json!({"type": "fan.out", "data": {}}))
        .await;
    assert_eq!(event["deliveries"], total);
    let id = id_of(&event);
    let shown: switchyard::api::models::EventOut = serde_json::from_value(
        server
            .expect(Method::GET, &format!("/v1/events/{id}"), None, 200)
            .await,
    )
    .unwrap();
    assert_eq!(shown.deliveries.len(), 1000);
    let cursor = shown
        .deliveries_next_cursor
        .expect("more deliveries than shown: a cursor to the rest");
    let mut seen: BTreeSet<String> = shown.deliveries.iter().map(|d| d.id.to_string()).collect();
    let mut next = Some(cursor);
    while let Some(cursor) = next {
        let page: Page<switchyard::api::models::DeliveryOut> = server
            .get(&format!(
                "/v1/deliveries?event_id={id}&limit=250&cursor={cursor}"
            ))
            .await;
        seen.extend(page.data.iter().map(|d| d.id.to_string()));
        next = page.next_cursor;
    }
    assert_eq!(seen.len(), total, "every delivery once");
    // An event whose deliveries all fit says so.
    let small = server
        .send_event(json!({"type": "other", "data": {}}))
        .await;
    let shown: switchyard::api::models::EventOut = serde_json::from_value(
        server
            .expect(
                Method::GET,
                &format!("/v1/events/{}", id_of(&small)),
                None,
                200,
            )
            .await,
    )
    .unwrap();
    assert_eq!(shown.deliveries_next_cursor, None);
}

/// The OpenAPI document is served without a key, and is the one the code generates (which the
/// drift test compares with docs/openapi.json).
#[tokio::test]
async fn the_openapi_document_is_served_without_a_key() {
    let server = TestServer::start().await;
    let response = server
        .anonymous(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.unwrap();
    assert_eq!(text, switchyard::api::openapi_json());
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["paths"]["/v1/subscriptions"]["post"]["operationId"],
        "v1.subscription.create"
    );
}

/// A PATCH or an enable racing a DELETE of the same subscription answers 200 or 404, never a
/// 500 (the fuzzer found the answer read back from a cache the DELETE had just emptied).
#[tokio::test]
async fn changes_racing_a_delete_never_answer_500() {
    let server = TestServer::start().await;
    for i in 0..60 {
        let sub = server
            .subscribe(json!({"url": format!("http://127.0.0.1:9/{i}"), "events": ["*"]}))
            .await;
        let path = format!("/v1/subscriptions/{}", id_of(&sub));
        let enable = format!("{path}/enable");
        let (patched, enabled, deleted) = tokio::join!(
            server.call(Method::PATCH, &path, Some(json!({"description": "x"}))),
            server.call(Method::POST, &enable, None),
            server.call(Method::DELETE, &path, None),
        );
        assert_eq!(deleted.0, 204, "{}", deleted.1);
        for (status, body) in [patched, enabled] {
            assert!(status == 200 || status == 404, "{status}: {body}");
        }
    }
}
