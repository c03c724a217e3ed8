//! Every bad input gets its documented 4xx in the JSON error shape
//! `{"error": {"code": "<snake_case>", "message": "<non-empty>"}}`: never a 500, never a panic,
//! and the service keeps answering afterwards.

use std::sync::{Mutex, PoisonError};

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::plugins::{bundled, fixture};
use crate::common::server::KEY;

/// Every 5xx any request of this module got, as `(server, "<url> -> <status>")`: each test
/// checks only its own servers' (tests run in parallel, each with servers of its own).
static SERVER_ERRORS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// A loopback URL nothing listens on: subscriptions are only validated here, never delivered.
const HOOK: &str = "http://127.0.0.1:9/hook";

fn track(response: &Response) {
    if response.status().is_server_error() {
        let url = response.url();
        let origin = url.origin().ascii_serialization();
        SERVER_ERRORS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((origin, format!("{url} -> {}", response.status())));
    }
}

/// Sends a request, recording any 5xx.
async fn send(request: RequestBuilder) -> Response {
    let response = request
        .send()
        .await
        .expect("no response: did the service crash?");
    track(&response);
    response
}

/// Asserts the status, the error shape and the code; returns the whole body.
async fn assert_error(response: Response, status: u16, code: &str) -> Value {
    assert_error_in(response, status, code, "").await
}

/// [`assert_error`] with a note (the body sent, …) for the failure message.
async fn assert_error_in(response: Response, status: u16, code: &str, note: &str) -> Value {
    track(&response);
    let got = response.status().as_u16();
    let url = response.url().to_string();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("response body");
    assert_eq!(got, status, "{url} {note}: answered {got}: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "{url} {note}: error content-type {content_type:?}: {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{url} {note}: error body is not JSON ({e}): {text}"));
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{url} {note}: no error object: {body}"));
    assert_eq!(
        error.get("code").and_then(Value::as_str),
        Some(code),
        "{url} {note}: wrong code: {body}"
    );
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    assert!(
        !message.trim().is_empty(),
        "{url} {note}: empty message: {body}"
    );
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message"], "{url} {note}: {body}");
    body
}

/// A request with this exact text as an `application/json` body.
fn json_request(server: &TestServer, method: Method, path: &str, body: &str) -> RequestBuilder {
    server
        .request(method, path)
        .header("content-type", "application/json")
        .body(body.to_owned())
}

/// Sends `body` as JSON text and asserts the error.
async fn expect_error(
    server: &TestServer,
    method: Method,
    path: &str,
    body: &str,
    status: u16,
    code: &str,
) -> Value {
    let note = format!("{method} {path} with {}", shorten(body));
    let response = send(json_request(server, method, path, body)).await;
    assert_error_in(response, status, code, &note).await
}

fn shorten(text: &str) -> String {
    if text.len() > 200 {
        format!(
            "{}… ({} bytes)",
            &text[..text.floor_char_boundary(200)],
            text.len()
        )
    } else {
        text.to_owned()
    }
}

/// The end of every test: the service still answers, and no request to it got a 5xx.
async fn assert_still_healthy(server: &TestServer) {
    let response = send(server.anonymous(Method::GET, "/healthz")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok"}));
    let errors: Vec<String> = SERVER_ERRORS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(origin, _)| *origin == server.base)
        .map(|(_, error)| error.clone())
        .collect();
    assert!(
        errors.is_empty(),
        "requests answered with a 5xx: {errors:#?}"
    );
}

/// A server with the hostile fixture loaded and one subscription; returns the subscription id.
async fn server_with_subscription() -> (TestServer, String) {
    let server = TestServer::start().await;
    server.upload_plugin("hostile", fixture("hostile")).await;
    let sub = server
        .subscribe(json!({"url": HOOK, "events": ["*"]}))
        .await;
    let id = sub["id"].as_str().unwrap().to_owned();
    (server, id)
}

/// `(method, path template, operation)` of every operation in the OpenAPI document, which
/// is built from the router's own registrations: a new route cannot be left out here.
fn operations() -> Vec<(Method, String, Value)> {
    let doc: Value = serde_json::from_str(&switchyard::api::openapi_json()).unwrap();
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            all.push((method, path.clone(), operation.clone()));
        }
    }
    assert!(all.len() >= 22, "{} operations", all.len());
    all
}

/// A path template with its parameters filled in.
fn fill(path: &str, sub: &str) -> String {
    path.replace("{id}", sub).replace("{name}", "hostile")
}

/// `(method, path)` of every route taking a JSON body, with `sub` for `{id}` (and each route
/// with an id in its path answers for a subscription id: the test route, PATCH; others 404).
fn json_routes(sub: &str) -> Vec<(Method, String)> {
    let routes: Vec<(Method, String)> = operations()
        .into_iter()
        .filter(|(_, _, op)| {
            op["requestBody"]["content"]
                .get("application/json")
                .is_some()
        })
        .map(|(method, path, _)| (method, fill(&path, sub)))
        .collect();
    let recover = format!("/v1/subscriptions/{sub}/recover");
    assert!(routes.iter().any(|(_, p)| *p == recover), "{routes:?}");
    routes
}

/// A body the route accepts.
fn valid_body(path: &str) -> String {
    if path.ends_with("/dry-run") {
        json!({"event": {"type": "a.b", "data": {}}}).to_string()
    } else if path.ends_with("/test") {
        json!({"type": "a.b"}).to_string()
    } else if path.ends_with("/recover") {
        json!({"since": "2026-01-01T00:00:00Z"}).to_string()
    } else if path == "/v1/events" {
        json!({"type": "a.b", "data": {}}).to_string()
    } else if path == "/v1/keys" {
        json!({"scopes": ["events:write"]}).to_string()
    } else if path.starts_with("/v1/tenants/") {
        json!({"name": "a tenant"}).to_string()
    } else {
        json!({"url": HOOK, "events": ["*"]}).to_string()
    }
}

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

#[tokio::test]
async fn unknown_ids_are_404() {
    let server = TestServer::start().await;
    let sub_body = json!({"url": HOOK, "events": ["*"]}).to_string();
    let long = "x".repeat(3000);
    for id in [
        "sub_01HZZZZZZZZZZZZZZZZZZZZZZZ",
        "nope",
        "%C3%A4",
        long.as_str(),
    ] {
        let sub = format!("/v1/subscriptions/{id}");
        let cases: Vec<(Method, String, String)> = vec![
            (Method::GET, sub.clone(), String::new()),
            (
                Method::PATCH,
                sub.clone(),
                json!({"description": "x"}).to_string(),
            ),
            (Method::PATCH, sub.clone(), "{}".into()),
            (Method::PATCH, sub.clone(), sub_body.clone()),
            (Method::DELETE, sub.clone(), String::new()),
            (Method::POST, format!("{sub}/rotate-secret"), String::new()),
            (Method::POST, format!("{sub}/test"), String::new()),
            (
                Method::POST,
                format!("{sub}/test"),
                json!({"type": "a.b"}).to_string(),
            ),
            (Method::POST, format!("{sub}/enable"), String::new()),
            (
                Method::POST,
                format!("{sub}/recover"),
                json!({"since": "2026-01-01T00:00:00Z"}).to_string(),
            ),
            (Method::GET, format!("/v1/events/{id}"), String::new()),
            (Method::GET, format!("/v1/deliveries/{id}"), String::new()),
            (
                Method::POST,
                format!("/v1/deliveries/{id}/retry"),
                String::new(),
            ),
        ];
        for (method, path, body) in cases {
            let mut request = server.request(method.clone(), &path);
            if !body.is_empty() {
                request = request
                    .header("content-type", "application/json")
                    .body(body);
            }
            assert_error_in(send(request).await, 404, "not_found", &format!("{method}")).await;
        }
    }
    for name in ["missing", "a", "x1_-"] {
        let path = format!("/v1/plugins/{name}");
        assert_error(
            send(server.request(Method::GET, &path)).await,
            404,
            "not_found",
        )
        .await;
        assert_error(
            send(server.request(Method::DELETE, &path)).await,
            404,
            "not_found",
        )
        .await;
        let body = json!({"event": {"type": "a.b", "data": {}}}).to_string();
        expect_error(
            &server,
            Method::POST,
            &format!("{path}/dry-run"),
            &body,
            404,
            "not_found",
        )
        .await;
    }
    // Real ids of the wrong kind are unknown too.
    let sub = server
        .subscribe(json!({"url": HOOK, "events": ["*"]}))
        .await;
    let sub_id = sub["id"].as_str().unwrap();
    let event = server.send_event(json!({"type": "a.b", "data": {}})).await;
    let event_id = event["id"].as_str().unwrap();
    for path in [
        format!("/v1/events/{sub_id}"),
        format!("/v1/deliveries/{event_id}"),
        format!("/v1/subscriptions/{event_id}"),
    ] {
        assert_error(
            send(server.request(Method::GET, &path)).await,
            404,
            "not_found",
        )
        .await;
    }
    assert_still_healthy(&server).await;
}

#[tokio::test]
async fn undecodable_path_ids_are_400() {
    let server = TestServer::start().await;
    for path in [
        "/v1/subscriptions/%FF",
        "/v1/events/%C3%28",
        "/v1/deliveries/%FF%FE",
    ] {
        assert_error(
            send(server.request(Method::GET, path)).await,
            400,
            "invalid_path",
        )
        .await;
    }
    assert_still_healthy(&server).await;
}

/// With room for one waiting event, a burst overflows the commit queue: the overflow is told
/// to come back (429, `Retry-After`), and every event that was answered 202 is stored.
#[tokio::test]
async fn an_ingest_overload_is_429_and_loses_nothing_accepted() {
    let server = TestServer::start_with(|config| config.max_pending_events = 1).await;
    let body = json!({"type": "load.test", "data": {"n": 1}}).to_string();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _round in 0..20 {
        let burst =
            (0..200).map(|_| send(json_request(&server, Method::POST, "/v1/events", &body)));
        for response in futures::future::join_all(burst).await {
            if response.status() == 429 {
                assert_eq!(
                    response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    Some("1")
                );
                assert_error(response, 429, "rate_limited").await;
                refused += 1;
            } else {
                assert_eq!(response.status(), 202);
                let answer: Value = response.json().await.expect("json");
                accepted.push(answer["id"].as_str().expect("event id").to_owned());
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "no burst overflowed a one-event queue");
    assert!(!accepted.is_empty(), "nothing was accepted");
    for id in &accepted {
        let response = send(server.request(Method::GET, &format!("/v1/events/{id}"))).await;
        assert_eq!(response.status(), 200, "accepted event {id} was not stored");
    }
    let after = send(json_request(&server, Method::POST, "/v1/events", &body)).await;
    assert_eq!(
        after.status(),
        202,
        "the service recovers once the burst is over"
    );
    assert_still_healthy(&server).await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let server = TestServer::start_with(|config| config.max_event_bytes = 1024).await;
    // An event body of exactly `size` bytes.
    let event = |size: usize| {
        let empty = json!({"type": "a.b", "data": {"pad": ""}}).to_string();
        let body = json!({"type": "a.b", "data": {"pad": "p".repeat(size - empty.len())}});
        let body = body.to_string();
        assert_eq!(body.len(), size);
        body
    };
    let response = send(json_request(
        &server,
        Method::POST,
        "/v1/events",
        &event(1024),
    ))
    .await;
    assert_eq!(response.status(), 202, "exactly the limit is accepted");
    for size in [1025, 4096, 200_000] {
        expect_error(
            &server,
            Method::POST,
            "/v1/events",
            &event(size),
            413,
            "payload_too_large",
        )
        .await;
    }
    let big = json!({"url": HOOK, "events": ["*"], "description": "d".repeat(2000)}).to_string();
    expect_error(
        &server,
        Method::POST,
        "/v1/subscriptions",
        &big,
        413,
        "payload_too_large",
    )
    .await;
    let sub = server
        .subscribe(json!({"url": HOOK, "events": ["*"]}))
        .await;
    let test = format!("/v1/subscriptions/{}/test", sub["id"].as_str().unwrap());
    let big = json!({"type": "t".repeat(2000)}).to_string();
    expect_error(&server, Method::POST, &test, &big, 413, "payload_too_large").await;
    // Plugin uploads have their own, larger limit.
    let uploaded = server.upload_plugin("hostile", fixture("hostile")).await;
    assert_eq!(uploaded["status"], "ready");
    let big = json!({"event": {"type": "a.b", "data": "d".repeat(2000)}}).to_string();
    expect_error(
        &server,
        Method::POST,
        "/v1/plugins/hostile/dry-run",
        &big,
        413,
        "payload_too_large",
    )
    .await;
    // The refused test event created no delivery.
    let deliveries = server
        .expect(Method::GET, "/v1/deliveries", None, 200)
        .await;
    assert_eq!(deliveries["data"].as_array().unwrap().len(), 0);
    assert_still_healthy(&server).await;

    // The default limit is 1 MiB.
    let server = TestServer::start().await;
    let body = event((1 << 20) + 1);
    expect_error(
        &server,
        Method::POST,
        "/v1/events",
        &body,
        413,
        "payload_too_large",
    )
    .await;
    let response = send(json_request(
        &server,
        Method::POST,
        "/v1/events",
        &event(1 << 20),
    ))
    .await;
    assert_eq!(response.status(), 202, "exactly 1 MiB is accepted");
    assert_still_healthy(&server).await;
}

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
async fn every_v1_route_needs_the_key() {
    let server = TestServer::start().await;
    let routes: Vec<(Method, String)> = operations()
        .into_iter()
        .filter(|(_, path, _)| path.starts_with("/v1/"))
        .map(|(method, path, _)| (method, fill(&path, "sub_x").replace("hostile", "slack")))
        .collect();
    assert!(
        routes
            .iter()
            .any(|(_, p)| p == "/v1/subscriptions/sub_x/recover"),
        "{routes:?}"
    );
    let wrong: Vec<Option<String>> = vec![
        None,
        Some("Bearer wrong-key-0123456789abcdef".into()),
        Some(format!("Bearer {KEY}x")),
        Some(format!("Bearer {}", &KEY[..KEY.len() - 1])),
        Some(format!("Bearer {}", KEY.to_uppercase())),
        Some(format!("Basic {KEY}")),
        Some(format!("Token {KEY}")),
        Some(KEY.to_owned()),
        Some(format!("Bearer{KEY}")),
        Some("Bearer".into()),
        Some(String::new()),
    ];
    for (method, path) in &routes {
        let path = path.as_str();
        for auth in &wrong {
            let mut request = server
                .anonymous(method.clone(), path)
                .header("content-type", "application/json")
                .header("x-api-key", KEY)
                .body(json!({"url": HOOK, "events": ["*"], "type": "a.b", "data": {}}).to_string());
            if let Some(auth) = auth {
                request = request.header("authorization", auth.as_str());
            }
            let note = format!("{method} {path} with authorization {auth:?}");
            assert_error_in(send(request).await, 401, "unauthorized", &note).await;
        }
        let request = server
            .anonymous(method.clone(), &format!("{path}?api_key={KEY}"))
            .header("content-type", "application/json");
        assert_error_in(send(request).await, 401, "unauthorized", "key in the query").await;
    }
    // Nothing was created by the refused requests.
    let list = server
        .expect(Method::GET, "/v1/subscriptions", None, 200)
        .await;
    assert_eq!(list["data"], json!([]));
    let list = server
        .expect(Method::GET, "/v1/deliveries", None, 200)
        .await;
    assert_eq!(list["data"], json!([]));
    // The scheme is case-insensitive enough for the usual spelling; the key is not.
    let response = send(
        server
            .anonymous(Method::GET, "/v1/subscriptions")
            .header("authorization", format!("bearer {KEY}")),
    )
    .await;
    assert_eq!(response.status(), 200);
    // The operational routes stay open, with or without (bad) credentials.
    let open: Vec<String> = operations()
        .into_iter()
        .filter(|(_, path, _)| !path.starts_with("/v1/"))
        .map(|(_, path, _)| path)
        .collect();
    assert_eq!(open.len(), 3, "{open:?}");
    for path in open.iter().map(String::as_str) {
        let response = send(server.anonymous(Method::GET, path)).await;
        assert_eq!(response.status(), 200, "{path}");
        let response = send(
            server
                .anonymous(Method::GET, path)
                .header("authorization", "Bearer wrong"),
        )
        .await;
        assert_eq!(response.status(), 200, "{path} with a wrong key");
    }
    assert_still_healthy(&server).await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_in_json() {
    let server = TestServer::start().await;
    for path in [
        "/",
        "/nope",
        "/v1",
        "/v1/",
        "/v1/nope",
        "/v2/subscriptions",
        "/v1/subscriptions/sub_x/nope",
        "/v1/plugins/a/b/c",
        "/healthz/x",
        "/v1/events/evt_x/deliveries/extra",
    ] {
        for request in [
            server.request(Method::GET, path),
            server.anonymous(Method::POST, path),
        ] {
            assert_error_in(send(request).await, 404, "not_found", path).await;
        }
    }
    for (method, path) in [
        (Method::DELETE, "/v1/events"),
        (Method::PUT, "/v1/subscriptions"),
        (Method::DELETE, "/v1/subscriptions"),
        (Method::POST, "/v1/subscriptions/sub_x"),
        (Method::GET, "/v1/subscriptions/sub_x/rotate-secret"),
        (Method::GET, "/v1/subscriptions/sub_x/test"),
        (Method::PATCH, "/v1/events/evt_x"),
        (Method::POST, "/v1/deliveries"),
        (Method::PATCH, "/v1/deliveries/dlv_x"),
        (Method::GET, "/v1/deliveries/dlv_x/retry"),
        (Method::POST, "/v1/plugins"),
        (Method::POST, "/v1/plugins/slack"),
        (Method::GET, "/v1/plugins/slack/dry-run"),
        (Method::POST, "/healthz"),
        (Method::DELETE, "/metrics"),
    ] {
        let note = format!("{method} {path}");
        let response = send(server.request(method, path)).await;
        assert_error_in(response, 405, "method_not_allowed", &note).await;
    }
    assert_still_healthy(&server).await;
}

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

#[tokio::test]
async fn bad_list_queries_are_400() {
    let server = TestServer::start().await;
    for query in [
        "status=bogus",
        "status=",
        "status=SUCCEEDED",
        "limit=0",
        "limit=251",
        "limit=1000",
        "limit=-1",
        "limit=abc",
        "limit=1.5",
        "limit=99999999999999999999999",
        "limit=",
    ] {
        let path = format!("/v1/deliveries?{query}");
        let response = send(server.request(Method::GET, &path)).await;
        assert_error_in(response, 400, "invalid_query", &path).await;
    }
    for query in ["limit=0", "limit=1000", "limit=-5", "limit=x"] {
        let path = format!("/v1/subscriptions?{query}");
        let response = send(server.request(Method::GET, &path)).await;
        assert_error_in(response, 400, "invalid_query", &path).await;
    }
    for path in [
        "/v1/deliveries?limit=1",
        "/v1/deliveries?limit=250",
        "/v1/subscriptions?limit=250",
    ] {
        let response = send(server.request(Method::GET, path)).await;
        assert_eq!(response.status(), 200, "{path}");
    }
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
