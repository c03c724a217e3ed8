//! Plugins: uploads that are not a usable component, and dry runs whose plugin fails.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::plugins::{bundled, fixture};

use super::{assert_error, assert_error_in, assert_still_healthy, json_request, send};

#[tokio::test]
async fn bad_plugin_uploads_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let good = server.upload_plugin("keep", fixture("hostile")).await;
    let upload = |name: &str, bytes: Vec<u8>| {
        server
            .request(Method::PUT, &format!("/v1/plugins/{name}"))
            .header("content-type", "application/wasm")
            .body(bytes)
    };
    let mut component_garbage = b"\0asm\x0d\0\x01\0".to_vec();
    component_garbage.extend_from_slice(&[0xAB; 64]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"this is not wasm at all".to_vec(),
            "not_a_component",
        ),
        ("short", b"\0as".to_vec(), "not_a_component"),
        ("core", b"\0asm\x01\0\0\0".to_vec(), "not_a_component"),
        ("empty", Vec::new(), "not_a_component"),
        ("broken", component_garbage, "compile"),
        ("wrong", fixture("wrong_world"), "wrong_world"),
    ];
    for (name, bytes, code) in cases {
        let body = assert_error_in(send(upload(name, bytes)).await, 422, code, name).await;
        // Nothing was installed under that name.
        assert_error(
            send(server.request(Method::GET, &format!("/v1/plugins/{name}"))).await,
            404,
            "not_found",
        )
        .await;
        assert!(body["error"]["message"].as_str().unwrap().len() > 10);
    }
    // A bad upload over a good plugin keeps the good version serving.
    for bytes in [
        b"junk".to_vec(),
        b"\0asm\x01\0\0\0".to_vec(),
        fixture("wrong_world"),
    ] {
        let response = send(upload("keep", bytes)).await;
        assert_eq!(response.status(), 422);
        let now = server
            .expect(Method::GET, "/v1/plugins/keep", None, 200)
            .await;
        assert_eq!(now["version"], good["version"]);
        assert_eq!(now["size"], good["size"]);
    }
    let dry = server
        .expect(
            Method::POST,
            "/v1/plugins/keep/dry-run",
            Some(json!({"event": {"type": "a.b", "data": {"k": 1}}})),
            200,
        )
        .await;
    assert_eq!(dry["outcome"], "deliver");
    assert_eq!(dry["body"], "{\"k\":1}");
    // Invalid names.
    for name in [
        "Slack",
        "-a",
        "_a",
        "a.b",
        "%C3%A4",
        "..%2Fescape",
        "a%20b",
        &"a".repeat(64),
    ] {
        let response = send(upload(name, fixture("hostile"))).await;
        assert_error_in(response, 400, "invalid_name", name).await;
        let response = send(server.request(Method::DELETE, &format!("/v1/plugins/{name}"))).await;
        assert_error_in(response, 400, "invalid_name", name).await;
    }
    let list = server.expect(Method::GET, "/v1/plugins", None, 200).await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep"]);
    assert_still_healthy(&server).await;

    // Over the component size limit.
    let server = TestServer::start_with(|config| config.plugin_limits.component_bytes = 1000).await;
    let response = send(
        server
            .request(Method::PUT, "/v1/plugins/slack")
            .header("content-type", "application/wasm")
            .body(bundled("slack")),
    )
    .await;
    assert_error(response, 413, "payload_too_large").await;
    assert_still_healthy(&server).await;
}

#[tokio::test]
async fn dry_run_failures_are_422_with_the_plugin_error() {
    let server = TestServer::start().await;
    server.upload_plugin("hostile", fixture("hostile")).await;
    server.upload_plugin("filter", bundled("filter")).await;
    let dry = |plugin: &str, config: Value| {
        json_request(
            &server,
            Method::POST,
            &format!("/v1/plugins/{plugin}/dry-run"),
            &json!({"event": {"type": "order.created", "data": {"total": 1}}, "config": config})
                .to_string(),
        )
    };
    let body = assert_error(
        send(dry("hostile", json!({"mode": "err"}))).await,
        422,
        "plugin_error",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refusing this event on purpose"),
        "{body}"
    );
    assert_eq!(body["logs"], json!([]));
    let body = assert_error(
        send(dry("hostile", json!({"mode": "panic"}))).await,
        422,
        "trap",
    )
    .await;
    assert!(body["logs"].is_array(), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("plugin panicked on purpose"),
        "the panic message reaches the caller: {body}"
    );
    let body = assert_error(
        send(dry("hostile", json!({"mode": "loop"}))).await,
        422,
        "timeout",
    )
    .await;
    assert!(body["logs"].is_array(), "{body}");
    // A config the plugin refuses.
    let body = assert_error(
        send(dry("filter", json!({"match": {"x": {"$nope": 1}}}))).await,
        422,
        "plugin_error",
    )
    .await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("$nope"),
        "{body}"
    );
    // An event type that could never be sent.
    let response = send(json_request(
        &server,
        Method::POST,
        "/v1/plugins/hostile/dry-run",
        &json!({"event": {"type": "a..b", "data": {}}}).to_string(),
    ))
    .await;
    assert_error(response, 422, "invalid_type").await;
    // After all that the plugin still runs.
    let ok = server
        .expect(
            Method::POST,
            "/v1/plugins/hostile/dry-run",
            Some(json!({"event": {"type": "a.b", "data": [1]}, "config": {"mode": "echo"}})),
            200,
        )
        .await;
    assert_eq!(ok["body"], "[1]");
    assert_still_healthy(&server).await;
}
