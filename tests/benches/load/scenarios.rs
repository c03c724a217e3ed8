//! The throughput scenarios: ingest alone, end to end (with and without a plugin), fan-out, and
//! draining a backlog.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::common::generator::{closed_loop, open_loop, percentiles};
use super::common::receiver::Receiver;
use super::common::service::{Service, diagnostics, metric, peak_rss_mib};
use super::{Counts, Row, scale};

pub async fn ingest() -> Row {
    let mut service = Service::start(&[("SWITCHYARD_BUNDLED_PLUGINS", "false")]).await;
    let seconds = Duration::from_secs(scale(10).max(2) as u64);
    closed_loop(&service.base, None, Some(Duration::from_secs(2))).await; // warm-up
    service.mark();
    let (sent, latencies, elapsed) = closed_loop(&service.base, None, Some(seconds)).await;
    let (rss, cpu) = service.usage();
    let rate = sent.len() as f64 / elapsed.as_secs_f64();
    let (p50, p99, max) = percentiles(latencies);
    let (_, fixed) = open_loop(&service.base, rate * 0.5, Duration::from_secs(5)).await;
    let (f50, f99, _) = percentiles(fixed);
    eprintln!("ingest: {} events in {elapsed:?}", sent.len());
    Row {
        name: "ingest (64 conns, no subscription)".into(),
        rate,
        counts: Counts::Events,
        latency: format!("{p50:.1} / {p99:.1} / {max:.1}"),
        fixed_rate: format!("{f50:.1} / {f99:.1} @ {:.0}/s", rate * 0.5),
        rss_mib: rss.max(peak_rss_mib(service.pid)),
        cpu,
        lost: 0,
        dup: 0,
    }
}

pub async fn subscribe(service: &Service, receiver: &Receiver, path: &str, plugin: Option<&str>) {
    let http = reqwest::Client::new();
    let mut body = json!({"url": receiver.url(path), "events": ["post.*"]});
    if let Some(plugin) = plugin {
        body["plugin"] = json!(plugin);
        body["plugin_config"] = json!({"title": "New post: {{data.title}}", "text": "by {{data.author.name}}", "fields": ["data.title", "data.tags"]});
    }
    service
        .call(&http, reqwest::Method::POST, "/v1/subscriptions", body)
        .await;
}

/// End-to-end latency per event: first receive minus send start.
pub fn e2e_latencies(receiver: &Receiver, path: &str, sent: &[(String, Instant)]) -> Vec<Duration> {
    sent.iter()
        .filter_map(|(id, at)| {
            receiver
                .first_seen(path, id)
                .map(|seen| seen.saturating_duration_since(*at))
        })
        .collect()
}

pub async fn end_to_end(name: &str, plugin: Option<&str>) -> Row {
    let mut service = Service::start(&[]).await;
    let receiver = Receiver::start().await;
    subscribe(&service, &receiver, "/hook", plugin).await;
    let n = scale(20_000);
    service.mark();
    let started = Instant::now();
    let (sent, _, _) = closed_loop(&service.base, Some(n), None).await;
    let complete = receiver
        .wait_distinct(sent.len(), Duration::from_secs(300))
        .await;
    let elapsed = started.elapsed();
    let (rss, cpu) = service.usage();
    let rate = receiver.distinct() as f64 / elapsed.as_secs_f64();
    let (p50, p99, max) = percentiles(e2e_latencies(&receiver, "/hook", &sent));
    let lost = sent.len().saturating_sub(receiver.distinct());
    let dup = receiver.total().saturating_sub(receiver.distinct());
    // The same at half the measured rate, open loop.
    let before = receiver.distinct();
    let (fixed_sent, _) = open_loop(&service.base, rate * 0.5, Duration::from_secs(5)).await;
    receiver
        .wait_distinct(before + fixed_sent.len(), Duration::from_secs(60))
        .await;
    let (f50, f99, _) = percentiles(e2e_latencies(&receiver, "/hook", &fixed_sent));
    eprintln!(
        "{name}: {} events, complete={complete}, {elapsed:?}",
        sent.len()
    );
    diagnostics(name, &service).await;
    Row {
        name: format!("{name} ({n} events, 1 subscription)"),
        rate,
        counts: Counts::Deliveries,
        latency: format!("{p50:.1} / {p99:.1} / {max:.1}"),
        fixed_rate: format!("{f50:.1} / {f99:.1} @ {:.0}/s", rate * 0.5),
        rss_mib: rss.max(peak_rss_mib(service.pid)),
        cpu,
        lost,
        dup,
    }
}

pub async fn fan_out() -> Row {
    let mut service = Service::start(&[]).await;
    let receiver = Receiver::start().await;
    for s in 0..10 {
        subscribe(&service, &receiver, &format!("/s{s}"), Some("slack")).await;
    }
    let n = scale(2_000);
    service.mark();
    let started = Instant::now();
    let (sent, _, _) = closed_loop(&service.base, Some(n), None).await;
    let expected = sent.len() * 10;
    receiver
        .wait_distinct(expected, Duration::from_secs(300))
        .await;
    let elapsed = started.elapsed();
    let (rss, cpu) = service.usage();
    let mut latencies = Vec::new();
    for s in 0..10 {
        latencies.extend(e2e_latencies(&receiver, &format!("/s{s}"), &sent));
    }
    let (p50, p99, max) = percentiles(latencies);
    Row {
        name: format!("fan-out ({n} events x 10 subscriptions, slack plugin)"),
        rate: receiver.distinct() as f64 / elapsed.as_secs_f64(),
        counts: Counts::Deliveries,
        latency: format!("{p50:.1} / {p99:.1} / {max:.1}"),
        fixed_rate: "-".into(),
        rss_mib: rss.max(peak_rss_mib(service.pid)),
        cpu,
        lost: expected.saturating_sub(receiver.distinct()),
        dup: receiver.total().saturating_sub(receiver.distinct()),
    }
}

/// A backlog built while the receiver is down (every first attempt fails; a one-attempt
/// schedule makes them dead letters at once), then released with one `recover` call.
pub async fn drain() -> Row {
    let mut service = Service::start(&[
        ("SWITCHYARD_RETRY_SCHEDULE", "none"),
        ("SWITCHYARD_BUNDLED_PLUGINS", "false"),
    ])
    .await;
    let receiver = Receiver::start().await;
    receiver.down.store(true, Ordering::Relaxed);
    subscribe(&service, &receiver, "/hook", None).await;
    let http = reqwest::Client::new();
    let subs = service
        .call(
            &http,
            reqwest::Method::GET,
            "/v1/subscriptions",
            Value::Null,
        )
        .await;
    let sub_id = subs["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let n = scale(20_000);
    let since = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let (sent, _, _) = closed_loop(&service.base, Some(n), None).await;
    // Wait until every first attempt has failed.
    let started = Instant::now();
    loop {
        let page = http
            .get(format!("{}/metrics", service.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        let pending = metric(&page, "switchyard_queue_pending")
            + metric(&page, "switchyard_queue_delivering");
        if pending == 0.0 || started.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver.down.store(false, Ordering::Relaxed);
    service.mark();
    let started = Instant::now();
    let since = since
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    service
        .call(
            &http,
            reqwest::Method::POST,
            &format!("/v1/subscriptions/{sub_id}/recover"),
            json!({"since": since}),
        )
        .await;
    receiver
        .wait_distinct(sent.len(), Duration::from_secs(300))
        .await;
    let elapsed = started.elapsed();
    let (rss, cpu) = service.usage();
    diagnostics("drain", &service).await;
    Row {
        name: format!("drain ({n} queued deliveries released at once)"),
        rate: receiver.distinct() as f64 / elapsed.as_secs_f64(),
        counts: Counts::Deliveries,
        latency: "-".into(),
        fixed_rate: "-".into(),
        rss_mib: rss.max(peak_rss_mib(service.pid)),
        cpu,
        lost: sent.len().saturating_sub(receiver.distinct()),
        dup: receiver.total().saturating_sub(receiver.distinct()),
    }
}
