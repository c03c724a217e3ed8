//! Every bad input gets its documented 4xx in the JSON error shape
//! `{"error": {"code": "<snake_case>", "message": "<non-empty>"}}`: never a 500, never a panic,
//! and the service keeps answering afterwards.
//!
//! One file per kind of bad input; the helpers they share (and the record of 5xx answers every
//! test checks at its end) are here.

mod json_bodies;
mod limits;
mod plugins;
mod routes;
mod validation;

use std::sync::{Mutex, PoisonError};

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::plugins::fixture;

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
