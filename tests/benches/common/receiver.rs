//! The receiver: answers 204 (or 503 while "down"), records the first receive time per
//! delivery (path and `webhook-id`) and how often each came.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

#[derive(Default)]
pub struct Seen {
    /// (path, webhook-id) → (times received, first receive).
    by_key: HashMap<(String, String), (usize, Instant)>,
    total: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    pub down: Arc<AtomicBool>,
}

impl Receiver {
    pub async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let down = Arc::new(AtomicBool::new(false));
        let state = (seen.clone(), down.clone());
        let app = axum::Router::new().fallback(receive).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, seen, down }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn total(&self) -> usize {
        self.seen.lock().map(|s| s.total).unwrap_or(0)
    }

    pub fn distinct(&self) -> usize {
        self.seen.lock().map(|s| s.by_key.len()).unwrap_or(0)
    }

    pub fn first_seen(&self, path: &str, id: &str) -> Option<Instant> {
        self.seen
            .lock()
            .ok()?
            .by_key
            .get(&(path.to_owned(), id.to_owned()))
            .map(|(_, at)| *at)
    }

    pub async fn wait_distinct(&self, n: usize, timeout: Duration) -> bool {
        let started = Instant::now();
        while self.distinct() < n {
            if started.elapsed() > timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

pub type ReceiverState = (Arc<Mutex<Seen>>, Arc<AtomicBool>);

pub async fn receive(
    State((seen, down)): State<ReceiverState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> StatusCode {
    if down.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let now = Instant::now();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if let Ok(mut seen) = seen.lock() {
        seen.total += 1;
        seen.by_key
            .entry((uri.path().to_owned(), id))
            .or_insert((0, now))
            .0 += 1;
    }
    StatusCode::NO_CONTENT
}
