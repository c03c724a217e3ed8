//! The load generator: closed-loop workers (as fast as answers come) and an open loop (a fixed
//! rate, latency counted from the scheduled send time), and percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{CONCURRENCY, KEY, OPEN_LOOP_CONNECTIONS};

/// A 1 KB event body.
pub fn event_body(i: usize) -> Value {
    json!({
        "type": "post.published",
        "data": {
            "title": format!("Post number {i}"),
            "author": {"name": "Ann Example", "id": i},
            "tags": ["release", "webhooks", "benchmark"],
            "body": "x".repeat(820),
        }
    })
}

/// An event body by sequence number.
pub type BodyOf = Arc<dyn Fn(usize) -> Value + Send + Sync>;

/// Sends `count` events (or until `deadline`) from 64 closed-loop workers. Returns
/// (event id, send start) per accepted event, and per-request latencies.
#[allow(dead_code)] // not every bench binary that includes this module sends plain events
pub async fn closed_loop(
    base: &str,
    count: Option<usize>,
    deadline: Option<Duration>,
) -> (Vec<(String, Instant)>, Vec<Duration>, Duration) {
    closed_loop_of(base, count, deadline, Arc::new(event_body)).await
}

/// [`closed_loop`] with bodies from `body`.
pub async fn closed_loop_of(
    base: &str,
    count: Option<usize>,
    deadline: Option<Duration>,
    body: BodyOf,
) -> (Vec<(String, Instant)>, Vec<Duration>, Duration) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (http, next, base) = (http.clone(), next.clone(), base.to_owned());
            let body = body.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if count.is_some_and(|c| i >= c)
                        || deadline.is_some_and(|d| started.elapsed() >= d)
                    {
                        break;
                    }
                    let at = Instant::now();
                    let Ok(response) = http
                        .post(format!("{base}/v1/events"))
                        .bearer_auth(KEY)
                        .json(&body(i))
                        .send()
                        .await
                    else {
                        continue;
                    };
                    if response.status() != 202 {
                        continue;
                    }
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    latencies.push(at.elapsed());
                    if let Some(id) = body["id"].as_str() {
                        sent.push((id.to_owned(), at));
                    }
                }
                (sent, latencies)
            })
        })
        .collect();
    let mut sent = Vec::new();
    let mut latencies = Vec::new();
    for w in workers {
        if let Ok((s, l)) = w.await {
            sent.extend(s);
            latencies.extend(l);
        }
    }
    (sent, latencies, started.elapsed())
}

/// Sends at a fixed rate for `duration` (open loop: latency counts from the scheduled send
/// time, so queueing is not hidden).
pub async fn open_loop(
    base: &str,
    rate: f64,
    duration: Duration,
) -> (Vec<(String, Instant)>, Vec<Duration>) {
    open_loop_of(base, rate, duration, Arc::new(event_body)).await
}

/// [`open_loop`] with bodies from `body`.
pub async fn open_loop_of(
    base: &str,
    rate: f64,
    duration: Duration,
    body: BodyOf,
) -> (Vec<(String, Instant)>, Vec<Duration>) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(OPEN_LOOP_CONNECTIONS)
        .build()
        .expect("client");
    // At most this many requests (and so connections) at once; a request past them waits in
    // the generator, and its latency still counts from its scheduled time.
    let connections = Arc::new(tokio::sync::Semaphore::new(OPEN_LOOP_CONNECTIONS));
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut i = 0usize;
    while started.elapsed() < duration {
        let scheduled = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let (http, base) = (http.clone(), base.to_owned());
        let connections = connections.clone();
        let event = body(i);
        tasks.push(tokio::spawn(async move {
            let _connection = connections.acquire().await.ok()?;
            let response = http
                .post(format!("{base}/v1/events"))
                .bearer_auth(KEY)
                .json(&event)
                .send()
                .await
                .ok()?;
            let body: Value = response.json().await.ok()?;
            Some((
                body["id"].as_str()?.to_owned(),
                scheduled,
                scheduled.elapsed(),
            ))
        }));
        i += 1;
    }
    let mut sent = Vec::new();
    let mut latencies = Vec::new();
    let scheduled = tasks.len();
    for t in tasks {
        if let Ok(Some((id, at, latency))) = t.await {
            sent.push((id, at));
            latencies.push(latency);
        }
    }
    if sent.len() < scheduled {
        // Refused (429 past `max_pending_events`) or failed: not accepted, so not counted.
        eprintln!(
            "open loop: {} of {scheduled} events not accepted",
            scheduled - sent.len()
        );
    }
    (sent, latencies)
}

pub fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    samples.sort_unstable();
    let at = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e3
    };
    (
        at(0.5),
        at(0.99),
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    )
}
