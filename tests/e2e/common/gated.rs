//! A receiver for the queue's fault tests: it logs every request with the status it answered,
//! answers by a rule the test sets (per `webhook-id` and how many times that id came before),
//! and can hold requests until the test lets them go — so a test decides exactly which attempts
//! are in flight when it kills, disables or moves the clock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use tokio::sync::watch;

/// One request and what it was answered.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The path requested.
    pub path: String,
    /// Its `webhook-id` (the event id).
    pub id: String,
    /// The status answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
    /// The body.
    pub body: String,
}

/// Status and delay by (webhook-id, times that id arrived before).
type Rule = Box<dyn Fn(&str, usize) -> (u16, Duration) + Send + Sync>;

struct Inner {
    hits: Mutex<Vec<Hit>>,
    seen: Mutex<HashMap<String, usize>>,
    rule: Mutex<Rule>,
    arrived: Mutex<usize>,
}

/// The receiver; stops with the test's runtime.
#[derive(Clone)]
pub struct GatedReceiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
    open: Arc<watch::Sender<bool>>,
}

impl GatedReceiver {
    /// Starts a receiver that answers 204 to everything, gate open.
    pub async fn start() -> Self {
        let inner = Arc::new(Inner {
            hits: Mutex::new(Vec::new()),
            seen: Mutex::new(HashMap::new()),
            rule: Mutex::new(Box::new(|_, _| (204, Duration::ZERO))),
            arrived: Mutex::new(0),
        });
        let (open, _) = watch::channel(true);
        let open = Arc::new(open);
        let app = axum::Router::new()
            .fallback(receive)
            .with_state((inner.clone(), open.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, inner, open }
    }

    /// `http://127.0.0.1:<port>/<path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Answer by `rule(webhook_id, times this id arrived before)` from now on.
    pub fn answer(&self, rule: impl Fn(&str, usize) -> u16 + Send + Sync + 'static) {
        *self.inner.rule.lock().unwrap() = Box::new(move |id, nth| (rule(id, nth), Duration::ZERO));
    }

    /// Like [`Self::answer`], with a delay (after the gate opens) per request.
    pub fn answer_after(
        &self,
        rule: impl Fn(&str, usize) -> (u16, Duration) + Send + Sync + 'static,
    ) {
        *self.inner.rule.lock().unwrap() = Box::new(rule);
    }

    /// Hold every request that arrives (and those already waiting) until [`Self::release`].
    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    /// Let held requests (and later ones) through.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// Requests that arrived so far, answered or held.
    pub fn arrived(&self) -> usize {
        *self.inner.arrived.lock().unwrap()
    }

    /// Requests answered so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.inner.hits.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (answered or held).
    pub async fn wait_arrived(&self, n: usize, timeout: Duration) {
        let ok = super::wait_until(timeout, || async { self.arrived() >= n }).await;
        assert!(
            ok,
            "expected {n} requests within {timeout:?}, got {}",
            self.arrived()
        );
    }
}

type ReceiverState = (Arc<Inner>, Arc<watch::Sender<bool>>);

async fn receive(
    State((inner, open)): State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    *inner.arrived.lock().unwrap() += 1;
    // Counted on arrival, so the answer depends on the order requests came in.
    let nth = {
        let mut seen = inner.seen.lock().unwrap();
        let n = seen.entry(id.clone()).or_default();
        *n += 1;
        *n - 1
    };
    let mut gate = open.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    let (status, delay) = (inner.rule.lock().unwrap())(&id, nth);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    inner.hits.lock().unwrap().push(Hit {
        path: uri.path().to_owned(),
        id,
        status,
        at: Instant::now(),
        body,
    });
    StatusCode::from_u16(status).unwrap()
}
