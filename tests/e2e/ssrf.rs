//! With the SSRF guard on (the default), every internal address form is refused — at
//! subscription time for IP literals, at connection time (after DNS) for names — and no
//! connection is ever made.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common::TestServer;

async fn guarded_server() -> TestServer {
    TestServer::start_with(|c| c.allow_private_networks = false).await
}

/// A raw TCP listener that only counts connections.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn internal_ip_literals_are_refused_when_subscribing() {
    let server = guarded_server().await;
    let (port, accepted) = counting_listener().await;
    let urls = [
        format!("http://127.0.0.1:{port}/"),
        format!("https://127.0.0.1:{port}/"),
        format!("https://[::1]:{port}/"),
        format!("https://[::ffff:127.0.0.1]:{port}/"),
        format!("https://[::ffff:7f00:1]:{port}/"),
        format!("https://2130706433:{port}/"),
        format!("https://0x7f.1:{port}/"),
        format!("https://0177.0.0.1:{port}/"),
        format!("https://127.1:{port}/"),
        "https://0.0.0.0/".into(),
        "https://10.0.0.1/".into(),
        "https://172.16.5.4/".into(),
        "https://192.168.1.1/".into(),
        "https://169.254.169.254/latest/meta-data".into(),
        "https://100.64.0.1/".into(),
        "https://192.0.2.10/".into(),
        "https://198.18.0.1/".into(),
        "https://224.0.0.1/".into(),
        "https://255.255.255.255/".into(),
        "https://[fe80::1]/".into(),
        "https://[fc00::1]/".into(),
        "https://[fd12:3456::1]/".into(),
        "https://[ff02::1]/".into(),
        "https://[::]/".into(),
        "https://[64:ff9b::a00:1]/".into(),
        "https://[2002:7f00:1::]/".into(),
        "https://[2001:db8::1]/".into(),
    ];
    for url in urls {
        let (status, body) = server
            .call(
                Method::POST,
                "/v1/subscriptions",
                Some(json!({"url": url, "events": ["*"]})),
            )
            .await;
        assert_eq!(status.as_u16(), 422, "{url} was accepted: {body}");
        assert_eq!(body["error"]["code"], "invalid_url", "{url}: {body}");
    }
    // Plain http is refused outright with the guard on, even to a public address.
    let (status, _) = server
        .call(
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"url": "http://93.184.216.34/", "events": ["*"]})),
        )
        .await;
    assert_eq!(status.as_u16(), 422);
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_without_connecting() {
    let server = guarded_server().await;
    let (port, accepted) = counting_listener().await;
    // A name passes the subscription check; the guard sits in DNS resolution, so a name that
    // resolves (or later rebinds) to an internal address is caught when connecting.
    let sub = server
        .subscribe(json!({"url": format!("https://localhost:{port}/hook"), "events": ["*"]}))
        .await;
    let event = server.send_event(json!({"type": "a.b", "data": {}})).await;
    let delivery = &server.deliveries_of(event["id"].as_str().unwrap()).await[0];
    let id = delivery["id"].as_str().unwrap();
    let failed = server
        .wait_delivery(id, "failed", Duration::from_secs(15))
        .await;
    let error = failed["attempts"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("forbidden_address"), "{error}");
    assert!(error.contains("loopback"), "{error}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a connection reached the internal listener"
    );
    assert_eq!(sub["status"], "enabled");
}
