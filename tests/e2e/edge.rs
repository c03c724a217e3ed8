//! The HTTP edge under hostile or careless clients: header, body and idle timeouts, the
//! connection cap (also at a low open-files limit, against the real binary), the shutdown
//! deadline, the limit on wrong API keys, the byte bound of ingest, reserved headers and the
//! admin key file.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::TestServer;
use crate::common::server::KEY;

/// The JSON error shape.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// How a raw connection ended.
#[derive(Debug)]
struct Ended {
    /// Time from connecting to the server closing the connection.
    after: Duration,
    /// Everything the server sent.
    received: Vec<u8>,
}

/// Connects, sends `head`, then one byte of `drip` every 200 ms (as a slowloris client
/// does), until the server closes the connection or `give_up` passes.
async fn drip(base: String, head: Vec<u8>, drip: Vec<u8>, give_up: Duration) -> Ended {
    let addr = base.trim_start_matches("http://");
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut received = Vec::new();
    if stream.write_all(&head).await.is_err() {
        return Ended {
            after: start.elapsed(),
            received,
        };
    }
    let mut bytes = drip.into_iter().cycle();
    let mut buf = [0u8; 4096];
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while start.elapsed() < give_up {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick() => {
                if let Some(byte) = bytes.next()
                    && stream.write_all(&[byte]).await.is_err()
                {
                    break;
                }
            }
        }
    }
    Ended {
        after: start.elapsed(),
        received,
    }
}

fn post_head(content_length: usize) -> Vec<u8> {
    format!(
        "POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {content_length}\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_slow_bodies_and_silent_sockets_are_closed_within_their_timeouts() {
    let server = TestServer::start_with(|c| {
        c.http.header_timeout = Duration::from_secs(1);
        c.http.body_timeout = Duration::from_secs(1);
        c.http.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let give_up = Duration::from_secs(10);
    let mut clients = Vec::new();
    for _ in 0..20 {
        // Headers that never end.
        let head = b"POST /v1/events HTTP/1.1\r\nhost: x\r\n".to_vec();
        clients.push((
            "slow headers",
            tokio::spawn(drip(
                server.base.clone(),
                head,
                b"x-padding: aaaa\r\n".to_vec(),
                give_up,
            )),
        ));
    }
    for _ in 0..10 {
        // A whole head, then a body one byte at a time.
        clients.push((
            "slow body",
            tokio::spawn(drip(
                server.base.clone(),
                post_head(10_000),
                b" ".to_vec(),
                give_up,
            )),
        ));
    }
    for _ in 0..5 {
        // Connects and says nothing.
        clients.push((
            "silent",
            tokio::spawn(drip(server.base.clone(), Vec::new(), Vec::new(), give_up)),
        ));
    }
    for (kind, client) in clients {
        let ended = client.await.unwrap();
        assert!(
            ended.after < Duration::from_secs(4),
            "a {kind} connection was still open after {:?} (timeouts are 1 s)",
            ended.after
        );
        if kind == "slow body" {
            let text = String::from_utf8_lossy(&ended.received);
            assert!(text.starts_with("HTTP/1.1 408"), "{text}");
            let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
            let error: ErrorBody = serde_json::from_str(body).unwrap();
            assert_eq!(error.error.code, "request_timeout");
        }
    }
    // The service itself is fine.
    server
        .expect(Method::GET, "/v1/subscriptions", None, 200)
        .await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let server = TestServer::start_with(|c| {
        c.http.header_timeout = Duration::from_secs(30);
        c.http.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection stayed open: {closed:?}"
    );
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(3),
        "closed after {idle:?} with a 1 s idle timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_completes_by_its_deadline_with_half_sent_requests_open() {
    let server = TestServer::start_with(|c| {
        c.http.header_timeout = Duration::from_secs(120);
        c.http.body_timeout = Duration::from_secs(120);
        c.http.shutdown_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut half_body = TcpStream::connect(&addr).await.unwrap();
    half_body.write_all(&post_head(100)).await.unwrap();
    half_body.write_all(b"{\"type\":").await.unwrap();
    let mut half_head = TcpStream::connect(&addr).await.unwrap();
    half_head
        .write_all(b"POST /v1/events HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // The body's request has reached its handler once the service answers anything else.
    server
        .expect(Method::GET, "/v1/subscriptions", None, 200)
        .await;
    let start = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(15), server.stop()).await;
    assert!(
        stopped.is_ok(),
        "shutdown waited on the half-sent requests for 15 s (deadline 1 s)"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        start.elapsed()
    );
    let mut buf = [0u8; 64];
    for stream in [&mut half_body, &mut half_head] {
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a connection survived shutdown: {read:?}"
        );
    }
}

/// The real binary (under a shell, e.g. for `ulimit`), its log read for the port it serves on.
struct LowLimitService {
    child: Child,
    base: String,
    /// What it logged before serving.
    log: Vec<String>,
}

impl Drop for LowLimitService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_binary(data_dir: &std::path::Path, shell_prefix: &str, args: &[&str]) -> LowLimitService {
    switchyard::net::install_crypto_provider();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{shell_prefix} exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env("SWITCHYARD_LISTEN", "127.0.0.1:0")
        .env("SWITCHYARD_DATA_DIR", data_dir)
        .env("SWITCHYARD_BUNDLED_PLUGINS", "false")
        .env("SWITCHYARD_ALLOW_PRIVATE_NETWORKS", "true")
        .env("SWITCHYARD_MAX_IN_FLIGHT", "8")
        .env("SWITCHYARD_HEADER_TIMEOUT", "120s")
        .env("SWITCHYARD_IDLE_TIMEOUT", "120s")
        .env_remove("SWITCHYARD_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The service logs to stdout.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut service = LowLimitService {
        child,
        base: String::new(),
        log: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("the service exited: {status}");
            }
            continue;
        };
        service.log.push(line.clone());
        if let Some(rest) = line.split("listen=").nth(1) {
            let addr = rest.split_whitespace().next().unwrap();
            service.base = format!("http://{addr}");
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return service;
        }
    }
    panic!("the service did not say where it listens");
}

/// 1,100 idle sockets at the common 1,024 open-files limit used to lock everyone out; here
/// 300 at a limit of 256. The cap (fitted to the limit) closes idle sockets for new clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_more_idle_sockets_than_the_cap_healthz_and_ingest_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_binary(dir.path(), "ulimit -n 256 &&", &["serve", "--api-key", KEY]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let healthy = crate::common::wait_until(Duration::from_secs(30), || async {
        http.get(format!("{}/healthz", service.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(healthy, "the service never became healthy");
    let addr = service.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    // New connections, not the one kept alive from the readiness check.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let health = http.get(format!("{}/healthz", service.base)).send().await;
    assert!(
        health.as_ref().is_ok_and(|r| r.status() == 200),
        "/healthz with 300 idle sockets open: {health:?}"
    );
    let ingest = http
        .post(format!("{}/v1/events", service.base))
        .bearer_auth(KEY)
        .json(&json!({"type": "a.b", "data": {}}))
        .send()
        .await;
    assert!(
        ingest.as_ref().is_ok_and(|r| r.status() == 202),
        "ingest with 300 idle sockets open: {ingest:?}"
    );
    drop(idle);
}

fn client_from(ip: &str) -> reqwest::Client {
    switchyard::net::install_crypto_provider();
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn wrong_api_keys_are_limited_per_client_and_valid_keys_elsewhere_are_not() {
    let server = TestServer::start_with(|c| c.max_auth_failures = 5).await;
    let url = format!("{}/v1/subscriptions", server.base);
    let attacker = client_from("127.0.0.2");
    for n in 0..5 {
        let r = attacker
            .get(&url)
            .bearer_auth(format!("guess-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "guess {n}");
    }
    let r = attacker
        .get(&url)
        .bearer_auth("guess-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.error.code, "rate_limited");
    assert!(
        body.error.message.contains("failed authentications"),
        "{}",
        body.error.message
    );
    // While blocked its key is not looked at, so guessing does not go faster.
    let r = attacker.get(&url).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 429);
    // A client with the valid key, from another address, is not affected, however often.
    let user = client_from("127.0.0.3");
    for _ in 0..20 {
        let r = user.get(&url).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Unauthenticated routes stay open to everyone.
    let r = attacker
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Events waiting for their commit are bounded by bytes: with the database locked by another
/// process, only `max_pending_bytes` worth wait; the rest is answered 429 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_waiting_for_their_commit_are_bounded() {
    let server = TestServer::start_with(|c| {
        c.max_event_bytes = 256 << 10;
        c.max_pending_bytes = 512 << 10;
    })
    .await;
    let lock = rusqlite::Connection::open(server.data_dir.join("switchyard.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let pad = "x".repeat(200 << 10);
    let sends: Vec<_> = (0..8)
        .map(|i| {
            let request = server
                .request(Method::POST, "/v1/events")
                .json(&json!({"type": "big.event", "data": {"i": i, "pad": pad}}));
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    // The refusals come at once, while the database is still locked.
    let refused = crate::common::wait_until(Duration::from_secs(5), || async {
        sends.iter().filter(|s| s.is_finished()).count() >= 6
    })
    .await;
    lock.execute_batch("ROLLBACK").unwrap();
    assert!(
        refused,
        "more than 2 events of 200 KiB waited with a 512 KiB bound"
    );
    let (mut accepted, mut limited) = (0, 0);
    for send in sends {
        let response = send.await.unwrap();
        match response.status().as_u16() {
            202 => accepted += 1,
            429 => {
                assert!(response.headers().contains_key("retry-after"));
                let body: ErrorBody = response.json().await.unwrap();
                assert_eq!(body.error.code, "rate_limited");
                limited += 1;
            }
            other => panic!("unexpected {other}: {:?}", response.text().await),
        }
    }
    assert!(accepted <= 2, "{accepted} accepted");
    assert_eq!(accepted + limited, 8);
    // Nothing is held once the commits answered.
    for _ in 0..4 {
        server
            .expect(
                Method::POST,
                "/v1/events",
                Some(json!({"type": "big.event", "data": {"pad": "x".repeat(200 << 10)}})),
                202,
            )
            .await;
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_refused_on_subscriptions() {
    let server = TestServer::start().await;
    for name in [
        "te",
        "upgrade",
        "keep-alive",
        "trailer",
        "expect",
        "proxy-authorization",
    ] {
        let (status, body) = server
            .call(
                Method::POST,
                "/v1/subscriptions",
                Some(json!({
                    "url": "http://127.0.0.1:9/hook",
                    "events": ["*"],
                    "headers": {name: "x"},
                })),
            )
            .await;
        assert_eq!(status, 422, "{name}: {body}");
        let error: ErrorBody = serde_json::from_value(body).unwrap();
        assert_eq!(error.error.code, "invalid_headers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_key_can_come_from_a_file_and_the_flag_warns() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("api.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let data = dir.path().join("data");
    let service = start_binary(
        &data,
        "",
        &["serve", "--api-key-file", key_file.to_str().unwrap()],
    );
    let http = reqwest::Client::new();
    let ok = crate::common::wait_until(Duration::from_secs(30), || async {
        http.get(format!("{}/v1/subscriptions", service.base))
            .bearer_auth(KEY)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ok, "the key from the file was not accepted");
    assert!(
        !service.log.iter().any(|line| line.contains("WARN")),
        "{:?}",
        service.log
    );
    drop(service);
    let service = start_binary(&data, "", &["serve", "--api-key", KEY]);
    let warned = service
        .log
        .iter()
        .any(|line| line.contains("WARN") && line.contains("--api-key") && line.contains("ps"));
    assert!(warned, "no warning about --api-key: {:?}", service.log);
    drop(service);
    let help = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--api-key-file"), "{help}");
    assert!(help.contains("SWITCHYARD_API_KEY_FILE"), "{help}");
    assert!(
        help.contains("Prefer the SWITCHYARD_API_KEY variable"),
        "{help}"
    );
}
