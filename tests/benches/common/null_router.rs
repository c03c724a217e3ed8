//! The null router: the ceiling every scenario is also reported against. It accepts an event
//! the way the service does (`POST /v1/events`, bearer key, JSON parsed, `202` with an id) and,
//! when it has a target, forwards it once with the same HTTP client the service uses (reqwest,
//! at most 128 requests in flight) — no storage, no signing, no plugin, no retry. Whatever the
//! service reaches, as a share of this, is what its durability and features cost on this
//! machine today; the share, unlike the absolute figure, can be compared across runs (this
//! VM's speed drifts by 2x between days).
//!
//! It runs as a child process (the benchmark binary itself, with `NULL_ROUTER_LISTEN` set), as
//! the service does, so it does not share the generator's runtime.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::KEY;

/// Deliveries in flight at once (the service's default `max_in_flight`).
const IN_FLIGHT: usize = 128;

struct Router {
    target: Option<String>,
    client: reqwest::Client,
    slots: Arc<tokio::sync::Semaphore>,
    next: AtomicU64,
}

/// If this process was started as the null router, serves until killed and never returns.
pub fn serve_if_asked() {
    let Ok(listen) = std::env::var("NULL_ROUTER_LISTEN") else {
        return;
    };
    let target = std::env::var("NULL_ROUTER_TARGET").ok();
    switchyard::net::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(async move {
        let router = Arc::new(Router {
            target,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(IN_FLIGHT)
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            slots: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
            next: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/v1/events", axum::routing::post(accept))
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .with_state(router);
        let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
    std::process::exit(0);
}

async fn accept(
    State(router): State<Arc<Router>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.strip_prefix("Bearer ") == Some(KEY));
    let event: Option<Value> = serde_json::from_slice(&body).ok();
    let (true, Some(event)) = (authorized, event) else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": {}})));
    };
    let id = format!("evt_null_{}", router.next.fetch_add(1, Ordering::Relaxed));
    if let Some(target) = router.target.clone() {
        let envelope = json!({"id": id, "type": event["type"], "data": event["data"]});
        let Ok(slot) = router.slots.clone().acquire_owned().await else {
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({})));
        };
        let (client, webhook_id) = (router.client.clone(), id.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _ = client
                .post(target)
                .header("webhook-id", webhook_id)
                .json(&envelope)
                .send()
                .await;
        });
    }
    let deliveries = u64::from(router.target.is_some());
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"id": id, "deliveries": deliveries})),
    )
}

/// The null router as a child process, killed when dropped.
pub struct NullRouter {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
}

impl Drop for NullRouter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NullRouter {
    /// Starts one forwarding each event to `target` (or to nobody).
    pub async fn start(target: Option<&str>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut cmd = Command::new(std::env::current_exe().expect("own binary"));
        cmd.env("NULL_ROUTER_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(target) = target {
            cmd.env("NULL_ROUTER_TARGET", target);
        }
        let child = cmd.spawn().expect("start the null router");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while !reqwest::get(format!("{base}/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "null router did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, base }
    }
}

/// The null router's figures of this run: events/s accepted, deliveries/s forwarded.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ceiling {
    /// Events accepted per second, nothing forwarded (64 closed-loop connections).
    pub ingest: f64,
    /// Deliveries per second reaching the receiver, each event forwarded once.
    pub deliveries: f64,
}

impl Ceiling {
    /// Measures both: accepting for `seconds`, then forwarding `events` events.
    pub async fn measure(seconds: usize, events: usize) -> Self {
        use super::generator::closed_loop;
        let router = NullRouter::start(None).await;
        closed_loop(&router.base, None, Some(Duration::from_secs(2))).await; // warm-up
        let (sent, _, elapsed) = closed_loop(
            &router.base,
            None,
            Some(Duration::from_secs(seconds as u64)),
        )
        .await;
        let ingest = sent.len() as f64 / elapsed.as_secs_f64();
        drop(router);
        let receiver = super::receiver::Receiver::start().await;
        let router = NullRouter::start(Some(&receiver.url("/hook"))).await;
        let started = Instant::now();
        let (sent, _, _) = closed_loop(&router.base, Some(events), None).await;
        receiver
            .wait_distinct(sent.len(), Duration::from_secs(120))
            .await;
        let deliveries = receiver.distinct() as f64 / started.elapsed().as_secs_f64();
        eprintln!("null router: {ingest:.0} events/s accepted, {deliveries:.0} deliveries/s");
        Self { ingest, deliveries }
    }
}
