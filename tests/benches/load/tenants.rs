//! Tenant scenarios of the load benchmark (issue 11):
//! - `tenant-fairness`: tenant B sends 1,000 events/s (open loop, 5 s) to a fast receiver,
//!   first alone, then while tenant A has 100,000 pending deliveries to a receiver that answers
//!   in 200 ms; B's delivery latency p50 / p99 (first receipt minus scheduled send time).
//! - `tenant-ingest`: closed-loop ingest (64 connections) with one tenant and one subscription,
//!   then with 10,000 tenants of one subscription each (events spread over the tenants); every
//!   event makes one (parked) delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use futures::StreamExt;
use serde_json::{Value, json};

use super::common::generator::{BodyOf, closed_loop_of, event_body, open_loop_of, percentiles};
use super::common::receiver::Receiver;
use super::common::service::Service;
use super::scenarios::e2e_latencies;
use super::{scale, selected};

/// B's offered rate.
const B_RATE: f64 = 1000.0;
/// A's receiver's answer time.
const SLOW: Duration = Duration::from_millis(200);

/// Runs the selected tenant scenarios; their table lines.
pub async fn run() -> Vec<String> {
    let mut lines = Vec::new();
    if selected("tenant-fairness") {
        lines.push(format!(
            "| tenants: B at {B_RATE:.0} events/s (open loop, 5 s) | beside | B's latency p50 / p99 (ms) | B delivered | A delivered meanwhile |"
        ));
        lines.push("|---|---|---|---|---|".into());
        lines.push(fairness(None).await);
        lines.push(fairness(Some(scale(100_000))).await);
    }
    if selected("tenant-ingest") {
        lines.push(String::new());
        lines.push(
            "| tenants: ingest (64 conns, 1 parked subscription per tenant) | throughput | latency p50 / p99 (ms) | mean CPU |"
                .into(),
        );
        lines.push("|---|---|---|---|".into());
        lines.push(ingest(1).await);
        lines.push(ingest(scale(10_000)).await);
    }
    lines
}

fn body_for(tenant: String) -> BodyOf {
    Arc::new(move |i| {
        let mut body = event_body(i);
        body["tenant_id"] = json!(tenant);
        body
    })
}

/// Creates `tenant` and a subscription of it to `url`.
async fn tenant_with_subscription(
    service: &Service,
    http: &reqwest::Client,
    tenant: &str,
    url: &str,
) {
    service
        .call(
            http,
            reqwest::Method::PUT,
            &format!("/v1/tenants/{tenant}"),
            json!({}),
        )
        .await;
    service
        .call(
            http,
            reqwest::Method::POST,
            "/v1/subscriptions",
            json!({"tenant_id": tenant, "url": url, "events": ["*"]}),
        )
        .await;
}

/// A receiver that answers `status` after `delay`; counts what it answered.
async fn counting_receiver(status: StatusCode, delay: Duration) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            tokio::time::sleep(delay).await;
            seen.fetch_add(1, Ordering::Relaxed);
            status
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), count)
}

/// B alone (`backlog` None), or beside A's `backlog` pending deliveries to a slow receiver.
async fn fairness(backlog: Option<usize>) -> String {
    let service = Service::start(&[("SWITCHYARD_BUNDLED_PLUGINS", "false")]).await;
    let http = reqwest::Client::new();
    let fast = Receiver::start().await;
    tenant_with_subscription(&service, &http, "b", &fast.url("/b")).await;
    let mut a_delivered = None;
    if let Some(n) = backlog {
        let (slow_url, count) = counting_receiver(StatusCode::NO_CONTENT, SLOW).await;
        tenant_with_subscription(&service, &http, "a", &slow_url).await;
        let started = Instant::now();
        let (sent, _, _) = closed_loop_of(&service.base, Some(n), None, body_for("a".into())).await;
        eprintln!(
            "tenant-fairness: {} events of A in {:?}",
            sent.len(),
            started.elapsed()
        );
        a_delivered = Some(count);
    }
    let a_before = a_delivered
        .as_ref()
        .map_or(0, |c| c.load(Ordering::Relaxed));
    let (sent, _) = open_loop_of(
        &service.base,
        B_RATE,
        Duration::from_secs(5),
        body_for("b".into()),
    )
    .await;
    fast.wait_distinct(sent.len(), Duration::from_secs(60))
        .await;
    let a_after = a_delivered
        .as_ref()
        .map_or(0, |c| c.load(Ordering::Relaxed));
    let (p50, p99, _) = percentiles(e2e_latencies(&fast, "/b", &sent));
    let beside = backlog.map_or("alone".to_owned(), |n| {
        format!("A: {n} pending to a {} ms receiver", SLOW.as_millis())
    });
    format!(
        "| B | {beside} | {p50:.1} / {p99:.1} | {} of {} | {} |",
        fast.distinct(),
        sent.len(),
        a_after - a_before
    )
}

/// Ingest with `tenants` tenants of one subscription each; events go to every tenant in turn.
/// Each event makes one delivery, to its tenant's subscription — parked: the receiver answers
/// the first delivery of each subscription `410`, which disables it, before the measurement.
/// So both runs insert the same rows per event and neither measures the dispatcher (which,
/// with 10,000 subscriptions, would send over 10,000 queues rather than one).
async fn ingest(tenants: usize) -> String {
    let mut service = Service::start(&[("SWITCHYARD_BUNDLED_PLUGINS", "false")]).await;
    let (url, gone) = counting_receiver(StatusCode::GONE, Duration::ZERO).await;
    let http = reqwest::Client::new();
    let started = Instant::now();
    futures::stream::iter(0..tenants)
        .for_each_concurrent(32, |t| {
            let (service, http, url) = (&service, &http, url.clone());
            async move { tenant_with_subscription(service, http, &format!("t{t}"), &url).await }
        })
        .await;
    eprintln!(
        "tenant-ingest: {tenants} tenants in {:?}",
        started.elapsed()
    );
    let body: BodyOf = Arc::new(move |i| {
        let mut body = event_body(i);
        body["tenant_id"] = Value::String(format!("t{}", i % tenants));
        body
    });
    // One event per tenant: every subscription meets its 410 and is disabled.
    closed_loop_of(&service.base, Some(tenants), None, body.clone()).await;
    let waited = Instant::now();
    while gone.load(Ordering::Relaxed) < tenants && waited.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    closed_loop_of(
        &service.base,
        None,
        Some(Duration::from_secs(2)),
        body.clone(),
    )
    .await;
    service.mark();
    let seconds = Duration::from_secs(scale(10).max(2) as u64);
    let (sent, latencies, elapsed) = closed_loop_of(&service.base, None, Some(seconds), body).await;
    let rate = sent.len() as f64 / elapsed.as_secs_f64();
    let (p50, p99, _) = percentiles(latencies);
    let (_, cpu) = service.usage();
    format!(
        "| {tenants} tenant(s) | {rate:.0} events/s | {p50:.1} / {p99:.1} | {:.0}% |",
        cpu * 100.0
    )
}
