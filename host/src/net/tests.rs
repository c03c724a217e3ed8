//! Tests of the delivery client: real requests to loopback receivers (status, body,
//! redirects, truncation, timeouts, pooling, error kinds, `Retry-After`), and the helpers the
//! URL checks' tests (`url_tests.rs`) share.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{HeaderMap as AxumHeaders, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use bytes::Bytes;
use reqwest::header::HeaderMap;
use tokio::net::TcpListener;
use url::Url;

use super::*;

pub(super) fn config(allow_private_networks: bool) -> NetConfig {
    NetConfig {
        allow_private_networks,
        timeout: Duration::from_secs(5),
        user_agent: "switchyard-test/1".into(),
        max_response_bytes: 1000,
        max_idle_per_host: 8,
    }
}

pub(super) fn guarded() -> Client {
    Client::new(config(false)).unwrap()
}

pub(super) fn open() -> Client {
    Client::new(config(true)).unwrap()
}

/// Serves `app` on an ephemeral loopback port.
pub(super) async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A raw listener that counts accepted connections (and drops them at once).
pub(super) async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, accepted)
}

pub(super) async fn post_to(client: &Client, url: &str) -> Result<Response, NetError> {
    let url = Url::parse(url).unwrap();
    client.post(&url, HeaderMap::new(), Bytes::new()).await
}

#[tokio::test]
async fn posts_body_and_headers_and_returns_status_and_body() {
    async fn echo(headers: AxumHeaders, body: Bytes) -> impl IntoResponse {
        let agent = headers.get(header::USER_AGENT).cloned();
        let signature = headers.get("webhook-signature").cloned();
        let reply = format!("{agent:?} {signature:?} {}", String::from_utf8_lossy(&body));
        (StatusCode::ACCEPTED, reply)
    }
    let addr = serve(Router::new().route("/hook", post(echo))).await;
    let mut headers = HeaderMap::new();
    headers.insert("webhook-signature", "v1,abc".parse().unwrap());
    let url = Url::parse(&format!("http://{addr}/hook")).unwrap();
    let response = open()
        .post(&url, headers, Bytes::from_static(b"{\"a\":1}"))
        .await
        .unwrap();
    assert_eq!(response.status, 202);
    assert_eq!(response.retry_after, None);
    assert_eq!(
        String::from_utf8(response.body).unwrap(),
        r#"Some("switchyard-test/1") Some("v1,abc") {"a":1}"#
    );
}

#[tokio::test]
async fn redirects_are_returned_not_followed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let target = serve(Router::new().route(
        "/target",
        post(move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "reached"
        }),
    ))
    .await;
    let location = format!("http://{target}/target");
    let redirect = move || async move {
        (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
        )
    };
    let addr = serve(Router::new().route("/hook", post(redirect))).await;
    let response = post_to(&open(), &format!("http://{addr}/hook"))
        .await
        .unwrap();
    assert_eq!(response.status, 307);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_response_body_is_truncated() {
    let big = || async { vec![b'x'; 100_000] };
    let addr = serve(Router::new().route("/hook", post(big))).await;
    let response = post_to(&open(), &format!("http://{addr}/hook"))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), 1000);
}

#[tokio::test]
async fn a_slow_receiver_times_out() {
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        "late"
    };
    let addr = serve(Router::new().route("/hook", post(slow))).await;
    let client = Client::new(NetConfig {
        timeout: Duration::from_millis(300),
        ..config(true)
    })
    .unwrap();
    let result = post_to(&client, &format!("http://{addr}/hook")).await;
    assert!(matches!(result, Err(NetError::Timeout)), "{result:?}");
}

/// As many requests in flight to one host as the pool keeps idle: the second round reuses
/// every connection of the first instead of opening new ones.
#[tokio::test]
async fn a_busy_receiver_keeps_its_connections() {
    const IN_FLIGHT: usize = 80;
    let peers = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let seen = Arc::clone(&peers);
    let app = Router::new()
        .route(
            "/hook",
            post(
                async move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
                    SocketAddr,
                >| {
                    seen.lock().unwrap().insert(peer);
                    // Long enough that every request of a round holds its own connection.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                },
            ),
        )
        .into_make_service_with_connect_info::<SocketAddr>();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::new(NetConfig {
        max_idle_per_host: IN_FLIGHT,
        ..config(true)
    })
    .unwrap();
    let url = format!("http://{addr}/hook");
    for _round in 0..2 {
        let calls = (0..IN_FLIGHT).map(|_| post_to(&client, &url));
        for result in futures::future::join_all(calls).await {
            assert_eq!(result.unwrap().status, 200);
        }
    }
    let connections = peers.lock().unwrap().len();
    assert!(
        connections <= IN_FLIGHT,
        "{connections} connections for {IN_FLIGHT} in flight: the pool closed some"
    );
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let result = post_to(&open(), &format!("http://{addr}/hook")).await;
    assert!(matches!(result, Err(NetError::Connect(_))), "{result:?}");
}

#[tokio::test]
async fn an_unknown_name_is_a_dns_error() {
    let result = post_to(&guarded(), "https://no-such-host.invalid/hook").await;
    assert!(matches!(result, Err(NetError::Dns(_))), "{result:?}");
}

#[tokio::test]
async fn https_to_a_plain_tcp_listener_fails_the_tls_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let result = post_to(&open(), &format!("https://{addr}/hook")).await;
    match result {
        // rustls's words for plaintext where a TLS record was expected.
        Err(NetError::Connect(message)) => {
            assert!(message.contains("corrupt message"), "{message}");
        }
        other => panic!("expected Connect, got {other:?}"),
    }
}

#[tokio::test]
async fn retry_after_is_parsed_from_the_response() {
    let seconds = || async { (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")]) };
    let date = || async {
        let when = "Fri, 01 Jan 2100 00:00:00 GMT";
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, when)],
        )
    };
    let app = Router::new()
        .route("/seconds", post(seconds))
        .route("/date", post(date));
    let addr = serve(app).await;
    let client = open();
    let response = post_to(&client, &format!("http://{addr}/seconds"))
        .await
        .unwrap();
    assert_eq!(response.status, 429);
    assert_eq!(response.retry_after, Some(Duration::from_secs(7)));
    let response = post_to(&client, &format!("http://{addr}/date"))
        .await
        .unwrap();
    assert_eq!(response.status, 503);
    let expected = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    let expected = expected.duration_since(SystemTime::now()).unwrap();
    let got = response.retry_after.unwrap();
    assert!(
        got.abs_diff(expected) < Duration::from_secs(5),
        "{got:?} vs {expected:?}"
    );
}
