//! Well-formed JSON with values the API refuses: subscriptions (and their URLs) and events.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::plugins::bundled;

use super::{HOOK, assert_still_healthy, expect_error, json_request, send};

#[tokio::test]
async fn invalid_subscriptions_are_422() {
    let server = TestServer::start().await;
    server.upload_plugin("filter", bundled("filter")).await;
    let with = |extra: Value| {
        let mut body = json!({"url": HOOK, "events": ["*"]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let too_many_patterns: Vec<String> = (0..101).map(|i| format!("e{i}.x")).collect();
    let too_many_headers: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("x-h{i}"), json!("v"))).collect();
    let cases: Vec<(Value, &str)> = vec![
        // URLs.
        (with(json!({"url": "not a url"})), "invalid_url"),
        (with(json!({"url": ""})), "invalid_url"),
        (with(json!({"url": "   "})), "invalid_url"),
        (with(json!({"url": "http://"})), "invalid_url"),
        (with(json!({"url": "/relative/path"})), "invalid_url"),
        (with(json!({"url": "ftp://127.0.0.1/x"})), "invalid_url"),
        (with(json!({"url": "file:///etc/passwd"})), "invalid_url"),
        (with(json!({"url": "javascript:alert(1)"})), "invalid_url"),
        (with(json!({"url": "ws://127.0.0.1/x"})), "invalid_url"),
        (
            with(json!({"url": "http://user:pw@127.0.0.1/x"})),
            "invalid_url",
        ),
        (
            with(json!({"url": format!("http://127.0.0.1/{}", "a".repeat(10_000))})),
            "invalid_url",
        ),
        // Event patterns.
        (with(json!({"events": []})), "invalid_events"),
        (with(json!({"events": [""]})), "invalid_events"),
        (with(json!({"events": ["post.*.x"]})), "invalid_events"),
        (with(json!({"events": ["a..b"]})), "invalid_events"),
        (with(json!({"events": [".a"]})), "invalid_events"),
        (with(json!({"events": ["a."]})), "invalid_events"),
        (with(json!({"events": ["*.post"]})), "invalid_events"),
        (with(json!({"events": ["**"]})), "invalid_events"),
        (with(json!({"events": [".*"]})), "invalid_events"),
        (with(json!({"events": ["post*"]})), "invalid_events"),
        (with(json!({"events": ["has space"]})), "invalid_events"),
        (
            with(json!({"events": ["ok.type", "bad type"]})),
            "invalid_events",
        ),
        (with(json!({"events": ["x".repeat(200)]})), "invalid_events"),
        (with(json!({"events": too_many_patterns})), "invalid_events"),
        // Plugins.
        (with(json!({"plugin": "nope"})), "unknown_plugin"),
        (with(json!({"plugin": "Filter"})), "unknown_plugin"),
        (
            with(json!({"plugin_config": {"a": 1}})),
            "invalid_plugin_config",
        ),
        (with(json!({"plugin": "filter"})), "invalid_plugin_config"),
        (
            with(json!({"plugin": "filter", "plugin_config": {"match": {"x": {"$nope": 1}}}})),
            "invalid_plugin_config",
        ),
        (
            with(json!({"plugin": "filter", "plugin_config": {"match": 3}})),
            "invalid_plugin_config",
        ),
        (
            with(json!({"plugin": "filter", "plugin_config": {"match": {}, "extra": 1}})),
            "invalid_plugin_config",
        ),
        // Headers.
        (
            with(json!({"headers": {"webhook-signature": "v1,x"}})),
            "invalid_headers",
        ),
        (
            with(json!({"headers": {"Webhook-Id": "x"}})),
            "invalid_headers",
        ),
        (
            with(json!({"headers": {"webhook-timestamp": "1"}})),
            "invalid_headers",
        ),
        (
            with(json!({"headers": {"content-type": "text/plain"}})),
            "invalid_headers",
        ),
        (
            with(json!({"headers": {"Content-Length": "1"}})),
            "invalid_headers",
        ),
        (
            with(json!({"headers": {"host": "evil.example"}})),
            "invalid_headers",
        ),
        (
            with(json!({"headers": {"user-agent": "me"}})),
            "invalid_headers",
        ),
        (
            with(json!({"headers": {"transfer-encoding": "chunked"}})),
            "invalid_headers",
        ),
        (
            with(json!({"headers": {"switchyard-event-type": "x"}})),
            "invalid_headers",
        ),
        (
            with(json!({"headers": {"bad header": "x"}})),
            "invalid_headers",
        ),
        (with(json!({"headers": {"": "x"}})), "invalid_headers"),
        (with(json!({"headers": {"x:y": "x"}})), "invalid_headers"),
        (with(json!({"headers": {"ü": "x"}})), "invalid_headers"),
        (
            with(json!({"headers": {"x-ok": "line\nbreak"}})),
            "invalid_headers",
        ),
        (
            with(json!({"headers": {"x-ok": "nul\u{0}"}})),
            "invalid_headers",
        ),
        (
            with(json!({"headers": too_many_headers})),
            "invalid_headers",
        ),
        (
            with(json!({
                "signature": {"scheme": "hmac-sha256-hex", "header": "x-sig"},
                "headers": {"x-sig": "forged"}
            })),
            "invalid_headers",
        ),
        // Secrets.
        (with(json!({"secret": "nope"})), "invalid_secret"),
        (with(json!({"secret": ""})), "invalid_secret"),
        (with(json!({"secret": "whsec_"})), "invalid_secret"),
        (with(json!({"secret": "whsec_c2hvcnQ="})), "invalid_secret"),
        (
            with(json!({"secret": "whsec_!!!not-base64!!!"})),
            "invalid_secret",
        ),
        (
            with(
                json!({"secret": "short", "signature": {"scheme": "hmac-sha256-hex", "header": "x-sig"}}),
            ),
            "invalid_secret",
        ),
        (
            with(json!({
                "secret": "has spaces in the secret text",
                "signature": {"scheme": "hmac-sha256-hex", "header": "x-sig"}
            })),
            "invalid_secret",
        ),
        // Signature schemes.
        (
            with(json!({"signature": {"scheme": "hmac-sha256-hex", "header": "bad header"}})),
            "invalid_signature",
        ),
        (
            with(
                json!({"signature": {"scheme": "hmac-sha256-hex", "header": "webhook-signature"}}),
            ),
            "invalid_signature",
        ),
        (
            with(json!({"signature": {"scheme": "hmac-sha256-hex", "header": "content-type"}})),
            "invalid_signature",
        ),
        (
            with(json!({"signature": {
                "scheme": "hmac-sha256-hex", "header": "x-sig", "timestamp_header": "X-Sig"
            }})),
            "invalid_signature",
        ),
        (
            with(
                json!({"signature": {"scheme": "hmac-sha256-hex", "header": "x-sig", "prefix": "a\nb"}}),
            ),
            "invalid_signature",
        ),
        // Description.
        (
            with(json!({"description": "d".repeat(1001)})),
            "invalid_description",
        ),
    ];
    for (body, code) in &cases {
        expect_error(
            &server,
            Method::POST,
            "/v1/subscriptions",
            &body.to_string(),
            422,
            code,
        )
        .await;
    }
    let list = server
        .expect(Method::GET, "/v1/subscriptions", None, 200)
        .await;
    assert_eq!(list["data"], json!([]), "a refused subscription was saved");

    // PATCH runs the same checks on the merged result, and a refused patch changes nothing.
    let sub = server
        .subscribe(json!({"url": HOOK, "events": ["a.b"]}))
        .await;
    let path = format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap());
    let before = server.expect(Method::GET, &path, None, 200).await;
    // (Secrets are not patched: rotation replaces them.)
    for (body, code) in cases.iter().filter(|(b, _)| b.get("secret").is_none()) {
        expect_error(&server, Method::PATCH, &path, &body.to_string(), 422, code).await;
    }
    expect_error(
        &server,
        Method::PATCH,
        &path,
        r#"{"events": null}"#,
        422,
        "invalid_body",
    )
    .await;
    let after = server.expect(Method::GET, &path, None, 200).await;
    assert_eq!(after, before);
    assert_still_healthy(&server).await;
}

#[tokio::test]
async fn https_only_without_private_networks() {
    let server = TestServer::start_with(|config| config.allow_private_networks = false).await;
    for url in [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://10.0.0.1/hook",
    ] {
        let body = json!({"url": url, "events": ["*"]}).to_string();
        expect_error(
            &server,
            Method::POST,
            "/v1/subscriptions",
            &body,
            422,
            "invalid_url",
        )
        .await;
    }
    server
        .subscribe(json!({"url": "https://example.com/hook", "events": ["*"]}))
        .await;
    assert_still_healthy(&server).await;
}

#[tokio::test]
async fn invalid_events_are_422() {
    let server = TestServer::start().await;
    let sub = server
        .subscribe(json!({"url": HOOK, "events": ["*"]}))
        .await;
    let test = format!("/v1/subscriptions/{}/test", sub["id"].as_str().unwrap());
    for event_type in [
        "",
        "a..b",
        "has space",
        ".a",
        "a.",
        ".",
        "a/b",
        "ünï.code",
        "a.*",
        "*",
        "tab\there",
        &"t".repeat(129),
        &"t".repeat(200),
    ] {
        let body = json!({"type": event_type, "data": {}}).to_string();
        expect_error(
            &server,
            Method::POST,
            "/v1/events",
            &body,
            422,
            "invalid_type",
        )
        .await;
        let body = json!({"type": event_type}).to_string();
        expect_error(&server, Method::POST, &test, &body, 422, "invalid_type").await;
    }
    for key in [String::new(), "k".repeat(256), "k".repeat(10_000)] {
        let body = json!({"type": "a.b", "data": {}, "id": key}).to_string();
        expect_error(
            &server,
            Method::POST,
            "/v1/events",
            &body,
            422,
            "invalid_id",
        )
        .await;
    }
    // Nothing got in.
    let deliveries = server
        .expect(Method::GET, "/v1/deliveries", None, 200)
        .await;
    assert_eq!(deliveries["data"], json!([]));
    // The limits themselves are fine.
    let at_limit = server
        .send_event(json!({"type": "t".repeat(128), "data": {}, "id": "k".repeat(255)}))
        .await;
    assert_eq!(at_limit["deliveries"], 1);
    // Data nested deeper than a recursive parser allows is stored and shown verbatim.
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let body = format!("{{\"type\": \"a.b\", \"data\": {deep}}}");
    let response = send(json_request(&server, Method::POST, "/v1/events", &body)).await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let path = format!("/v1/events/{}", accepted["id"].as_str().unwrap());
    let response = send(server.request(Method::GET, &path)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains(&format!("\"data\":{deep}")), "deep data lost");
    assert_still_healthy(&server).await;
}
