//! Requests refused by their path or query: unknown and undecodable ids, a missing key,
//! unknown routes and wrong methods, bad list queries.

use reqwest::Method;
use serde_json::json;

use crate::common::TestServer;
use crate::common::server::KEY;

use super::{
    HOOK, assert_error, assert_error_in, assert_still_healthy, expect_error, fill, operations, send,
};

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

/// A query parameter the route does not take is refused, on every route, naming it: a typo such
/// as `?subscription=` must not answer the unfiltered list. (The contract fuzzer found
/// `?cursor=&=null` accepted with a 200.)
#[tokio::test]
async fn unknown_query_parameters_are_400() {
    let server = TestServer::start().await;
    for path in [
        "/v1/deliveries?subscription=sub_x",
        "/v1/deliveries?cursor=&=null",
        "/v1/keys?cursor=&%C3%BAE=",
        "/v1/subscriptions?limit=5&colour=red",
        "/v1/attempts?nope=1",
        "/v1/tenants?x=",
        "/v1/events/evt_01HZZZZZZZZZZZZZZZZZZZZZZZ?x=1",
    ] {
        let body = assert_error_in(
            send(server.request(Method::GET, path)).await,
            400,
            "invalid_query",
            path,
        )
        .await;
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("unknown query parameter")),
            "{path}: {body}"
        );
    }
    // What a route declares still works, and an empty query is no parameter.
    for path in [
        "/v1/deliveries?status=failed&limit=5&tenant_id=default",
        "/v1/deliveries?&&",
        "/v1/subscriptions?limit=2",
    ] {
        let status = send(server.request(Method::GET, path)).await.status();
        assert_eq!(status, 200, "{path}");
    }
    assert_still_healthy(&server).await;
}
