//! A webhook receiver on 127.0.0.1 that records every request (headers, body, time) and
//! answers with statuses the test chooses, changeable mid-test.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path requested.
    pub path: String,
    /// Header name (lower case) → value.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(&'static str, String)>,
    /// Delay before answering.
    pub delay: Duration,
}

impl Answer {
    /// Just a status.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    script: VecDeque<Answer>,
    default: Option<Answer>,
    body: Bytes,
}

/// The receiver; stops with the test's runtime.
#[derive(Clone)]
pub struct TestReceiver {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl TestReceiver {
    /// Starts a receiver answering 204 unless told otherwise.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, inner }
    }

    /// `http://127.0.0.1:<port>/<path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Answer every later request with this (after any scripted answers).
    pub fn always(&self, answer: Answer) {
        self.inner.lock().unwrap().default = Some(answer);
    }

    /// Answer the next requests with these, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inner.lock().unwrap().script.extend(answers);
    }

    /// Send this body with every later answer (empty by default).
    pub fn reply_body(&self, body: impl Into<Bytes>) {
        self.inner.lock().unwrap().body = body.into();
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Waits until at least `n` requests arrived; returns them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let ok = super::wait_until(timeout, || async { self.received().len() >= n }).await;
        let got = self.received();
        assert!(
            ok,
            "expected {n} requests within {timeout:?}, got {}",
            got.len()
        );
        got
    }
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (answer, reply) = {
        let mut inner = inner.lock().unwrap();
        inner.received.push(Received {
            path: uri.path().to_owned(),
            headers,
            body,
            at: Instant::now(),
        });
        let answer = inner
            .script
            .pop_front()
            .or_else(|| inner.default.clone())
            .unwrap_or(Answer::status(204));
        (answer, inner.body.clone())
    };
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let status = StatusCode::from_u16(answer.status).unwrap();
    let mut response = if reply.is_empty() {
        status.into_response()
    } else {
        (status, reply).into_response()
    };
    for (name, value) in answer.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}
