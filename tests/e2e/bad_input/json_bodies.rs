//! Bodies that are not the JSON a route takes: malformed, of the wrong types, with fields
//! missing or unknown, or sent with the wrong content type.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::plugins::fixture;

use super::{
    HOOK, assert_error, assert_error_in, assert_still_healthy, expect_error, json_routes, send,
    server_with_subscription, valid_body,
};

#[tokio::test]
async fn malformed_json_is_400() {
    let (server, sub) = server_with_subscription().await;
    for (method, path) in json_routes(&sub) {
        let valid = valid_body(&path);
        let open = &valid[..valid.len() - 1];
        let bodies = [
            "{".to_owned(),
            format!("{}: }}", &valid[..valid.find(':').unwrap()]),
            "not json".to_owned(),
            format!("{valid} trailing"),
            format!("{valid}{valid}"),
            format!("{open},}}"),
            open.to_owned(),
            valid.replace('"', "'"),
            format!("\u{feff}{valid}"),
            "{\"\\x\": 1}".to_owned(),
            "[".to_owned(),
        ];
        for body in &bodies {
            expect_error(&server, method.clone(), &path, body, 400, "malformed_json").await;
        }
        // Not UTF-8 at all.
        let response = send(
            server
                .request(method.clone(), &path)
                .header("content-type", "application/json")
                .body(vec![0xff, 0xfe, 0x00, 0x7b]),
        )
        .await;
        assert_error_in(response, 400, "malformed_json", &format!("{method} {path}")).await;
    }
    // An empty body is malformed where a body is required (the test route treats it as `{}`,
    // a tenant's PUT as no name and no metadata).
    for (method, path) in json_routes(&sub) {
        if path.ends_with("/test") || path.starts_with("/v1/tenants/") {
            continue;
        }
        expect_error(&server, method, &path, "", 400, "malformed_json").await;
    }
    // Nesting beyond the parser's depth limit is refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let body = format!("{{\"url\": \"{HOOK}\", \"events\": [\"*\"], \"plugin_config\": {deep}}}");
    expect_error(
        &server,
        Method::POST,
        "/v1/subscriptions",
        &body,
        400,
        "malformed_json",
    )
    .await;
    let body = format!("{{\"event\": {{\"type\": \"a.b\", \"data\": {deep}}}}}");
    expect_error(
        &server,
        Method::POST,
        "/v1/plugins/hostile/dry-run",
        &body,
        400,
        "malformed_json",
    )
    .await;
    assert_still_healthy(&server).await;
}

#[tokio::test]
async fn wrong_json_types_are_422() {
    let (server, sub) = server_with_subscription().await;
    let subs = "/v1/subscriptions";
    let one = format!("/v1/subscriptions/{sub}");
    let test = format!("/v1/subscriptions/{sub}/test");
    let dry = "/v1/plugins/hostile/dry-run";
    let cases: Vec<(Method, &str, Value)> = vec![
        (Method::POST, subs, json!({"url": 5, "events": ["*"]})),
        (Method::POST, subs, json!({"url": HOOK, "events": "*"})),
        (Method::POST, subs, json!({"url": HOOK, "events": [1]})),
        (
            Method::POST,
            subs,
            json!({"url": HOOK, "events": ["*"], "plugin": 3}),
        ),
        (
            Method::POST,
            subs,
            json!({"url": HOOK, "events": ["*"], "description": []}),
        ),
        (
            Method::POST,
            subs,
            json!({"url": HOOK, "events": ["*"], "headers": ["x-a"]}),
        ),
        (
            Method::POST,
            subs,
            json!({"url": HOOK, "events": ["*"], "headers": {"x-a": 1}}),
        ),
        (
            Method::POST,
            subs,
            json!({"url": HOOK, "events": ["*"], "signature": "hmac"}),
        ),
        (
            Method::POST,
            subs,
            json!({"url": HOOK, "events": ["*"], "signature": {"scheme": "md5"}}),
        ),
        (
            Method::POST,
            subs,
            json!({"url": HOOK, "events": ["*"], "secret": 42}),
        ),
        (Method::POST, subs, json!("a string")),
        (Method::POST, subs, json!(null)),
        (Method::POST, subs, json!([])),
        (Method::PATCH, &one, json!({"url": false})),
        (Method::PATCH, &one, json!({"events": {"a": 1}})),
        (Method::PATCH, &one, json!({"headers": null})),
        (Method::PATCH, &one, json!({"url": null})),
        (Method::PATCH, &one, json!({"events": null})),
        (Method::PATCH, &one, json!({"signature": null})),
        (
            Method::PATCH,
            &one,
            json!({"signature": {"scheme": "standard-webhooks", "header": "x"}}),
        ),
        (Method::PATCH, &one, json!(7)),
        (Method::PATCH, &one, json!([])),
        (Method::PATCH, &one, json!(["a"])),
        (Method::POST, &test, json!([null])),
        (Method::POST, &test, json!({"type": 5})),
        (Method::POST, &test, json!([])),
        (Method::POST, "/v1/events", json!({"type": 5, "data": {}})),
        (
            Method::POST,
            "/v1/events",
            json!({"type": ["a"], "data": {}}),
        ),
        (
            Method::POST,
            "/v1/events",
            json!({"type": "a.b", "data": {}, "id": 5}),
        ),
        (Method::POST, "/v1/events", json!(true)),
        (Method::POST, dry, json!({"event": "a.b"})),
        (Method::POST, dry, json!({"event": {"type": 1, "data": {}}})),
        (
            Method::POST,
            dry,
            json!({"event": {"type": "a.b", "data": {}, "id": 1}}),
        ),
    ];
    for (method, path, body) in cases {
        expect_error(
            &server,
            method,
            path,
            &body.to_string(),
            422,
            "invalid_body",
        )
        .await;
    }
    // A duplicated key is not silently resolved either way.
    let body = format!("{{\"url\": \"{HOOK}\", \"url\": \"{HOOK}\", \"events\": [\"*\"]}}");
    expect_error(&server, Method::POST, subs, &body, 422, "invalid_body").await;
    assert_still_healthy(&server).await;
}

#[tokio::test]
async fn missing_required_fields_are_422() {
    let (server, _) = server_with_subscription().await;
    let dry = "/v1/plugins/hostile/dry-run";
    let cases: Vec<(&str, Value)> = vec![
        ("/v1/subscriptions", json!({"events": ["*"]})),
        ("/v1/subscriptions", json!({"url": HOOK})),
        ("/v1/subscriptions", json!({})),
        (
            "/v1/subscriptions",
            json!({"url": HOOK, "events": ["*"], "signature": {"scheme": "hmac-sha256-hex"}}),
        ),
        (
            "/v1/subscriptions",
            json!({"url": HOOK, "events": ["*"], "signature": {}}),
        ),
        ("/v1/events", json!({"data": {}})),
        ("/v1/events", json!({"type": "order.created"})),
        ("/v1/events", json!({})),
        (dry, json!({})),
        (dry, json!({"config": {"mode": "echo"}})),
        (dry, json!({"event": {"data": {}}})),
    ];
    for (path, body) in cases {
        expect_error(
            &server,
            Method::POST,
            path,
            &body.to_string(),
            422,
            "invalid_body",
        )
        .await;
    }
    assert_still_healthy(&server).await;
}

#[tokio::test]
async fn unknown_fields_are_422() {
    let (server, sub) = server_with_subscription().await;
    let cases: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/v1/subscriptions".into(),
            json!({"url": HOOK, "events": ["*"], "filter": "x"}),
        ),
        (
            Method::POST,
            "/v1/subscriptions".into(),
            json!({"url": HOOK, "events": ["*"], "signature": {"scheme": "standard-webhooks", "key": "x"}}),
        ),
        (
            Method::POST,
            "/v1/subscriptions".into(),
            json!({"url": HOOK, "events": ["*"], "status": "disabled"}),
        ),
        (
            Method::PATCH,
            format!("/v1/subscriptions/{sub}"),
            json!({"previous_secret": "whsec_x"}),
        ),
        (
            Method::PATCH,
            format!("/v1/subscriptions/{sub}"),
            json!({"status": "disabled"}),
        ),
        (
            Method::POST,
            format!("/v1/subscriptions/{sub}/test"),
            json!({"kind": "a.b"}),
        ),
        (
            Method::POST,
            "/v1/events".into(),
            json!({"type": "a.b", "data": {}, "timestamp": 1}),
        ),
        (
            Method::POST,
            "/v1/plugins/hostile/dry-run".into(),
            json!({"event": {"type": "a.b", "data": {}}, "cfg": {}}),
        ),
        (
            Method::POST,
            "/v1/plugins/hostile/dry-run".into(),
            json!({"event": {"type": "a.b", "data": {}, "extra": 1}}),
        ),
    ];
    for (method, path, body) in cases {
        expect_error(
            &server,
            method,
            &path,
            &body.to_string(),
            422,
            "invalid_body",
        )
        .await;
    }
    // Nothing was changed by the refused patches.
    let got = server
        .expect(Method::GET, &format!("/v1/subscriptions/{sub}"), None, 200)
        .await;
    assert_eq!(got["status"], "enabled");
    assert_eq!(got.get("secret"), None);
    assert_still_healthy(&server).await;
}

#[tokio::test]
async fn wrong_or_missing_content_type_is_415() {
    let (server, sub) = server_with_subscription().await;
    for (method, path) in json_routes(&sub) {
        let body = valid_body(&path);
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/xml"),
            Some("multipart/form-data; boundary=x"),
            Some("application/wasm"),
            None,
        ] {
            let mut request = server.request(method.clone(), &path).body(body.clone());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let note = format!("{method} {path} as {content_type:?}");
            assert_error_in(send(request).await, 415, "unsupported_media_type", &note).await;
        }
    }
    // The refused requests did nothing.
    let list = server
        .expect(Method::GET, "/v1/subscriptions", None, 200)
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let deliveries = server
        .expect(Method::GET, "/v1/deliveries", None, 200)
        .await;
    assert_eq!(deliveries["data"], json!([]));
    // A charset parameter is fine.
    let response = send(
        server
            .request(Method::POST, "/v1/events")
            .header("content-type", "application/json; charset=utf-8")
            .body(json!({"type": "a.b", "data": {}}).to_string()),
    )
    .await;
    assert_eq!(response.status(), 202);
    // Plugin uploads want application/wasm (or octet-stream).
    for content_type in [Some("application/json"), Some("text/plain"), None] {
        let mut request = server
            .request(Method::PUT, "/v1/plugins/other")
            .body(fixture("hostile"));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let note = format!("upload as {content_type:?}");
        assert_error_in(send(request).await, 415, "unsupported_media_type", &note).await;
    }
    assert_error(
        send(server.request(Method::GET, "/v1/plugins/other")).await,
        404,
        "not_found",
    )
    .await;
    assert_still_healthy(&server).await;
}
