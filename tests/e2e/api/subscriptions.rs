//! Subscriptions: creating one (its secret shown once), listing them page by page, PATCH and
//! DELETE (which cancels what is still pending).

use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use switchyard::api::models::{
    DeliveryDetailOut, DeliveryStatusOut, Page, Signature, SubscriptionOut, SubscriptionStatusOut,
};

use crate::common::plugins::bundled;
use crate::common::receiver::Answer;
use crate::common::{TestReceiver, TestServer, wait_until};

use super::{WAIT, all_pages, id_of, ids};

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
