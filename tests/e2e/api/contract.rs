//! Contract details: concurrent PATCHes, redacted header values, bounds, the served document.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use switchyard::api::models::{Page, Signature, SubscriptionOut};

use crate::common::plugins::bundled;
use crate::common::{TestReceiver, TestServer};

use super::{WAIT, id_of};

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
