//! Fair shares beside subscriptions whose plugin always runs into its deadline.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use super::common::KEY;
use super::common::generator::open_loop;
use super::common::receiver::Receiver;
use super::common::service::{Service, diagnostics};
use super::scale;
use super::scenarios::{e2e_latencies, subscribe};

/// The hostile test plugin (built by `cargo build -p switchyard` with the other plugins): its
/// `{"mode": "loop"}` config runs into the 100 ms deadline on every call.
pub fn hostile_plugin() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-plugins/wasm32-wasip2/plugin/hostile.wasm");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (built by `cargo build -p switchyard`)",
            path.display()
        )
    })
}

/// Fair shares (issue 8, item 5): a subscription without a plugin and one with the fast Slack
/// plugin, at a fixed 200 events/s for 5 s — first alone, then beside eight subscriptions whose
/// plugin runs into its 100 ms deadline on every call (same events, default settings). Latency
/// per delivery, first receipt minus scheduled send time.
/// Events per second offered in the fairness scenario.
pub const FAIR_RATE: f64 = 200.0;

pub async fn fairness() -> Vec<String> {
    const RATE: f64 = FAIR_RATE;
    const SLOW: usize = 8;
    let phase = Duration::from_secs(scale(5).max(2) as u64);
    let mut rows = Vec::new();
    for beside_slow in [false, true] {
        let mut service = Service::start(&[]).await;
        let receiver = Receiver::start().await;
        let http = reqwest::Client::new();
        subscribe(&service, &receiver, "/plain", None).await;
        subscribe(&service, &receiver, "/slack", Some("slack")).await;
        if beside_slow {
            let uploaded = http
                .put(format!("{}/v1/plugins/slow", service.base))
                .bearer_auth(KEY)
                .header("content-type", "application/wasm")
                .body(hostile_plugin())
                .send()
                .await
                .expect("upload");
            assert!(
                uploaded.status().is_success(),
                "upload: {}",
                uploaded.status()
            );
            for i in 0..SLOW {
                service
                    .call(
                        &http,
                        reqwest::Method::POST,
                        "/v1/subscriptions",
                        json!({"url": receiver.url(&format!("/slow{i}")), "events": ["post.*"],
                               "plugin": "slow", "plugin_config": {"mode": "loop"}}),
                    )
                    .await;
            }
        }
        service.mark();
        let (sent, _) = open_loop(&service.base, RATE, phase).await;
        for path in ["/plain", "/slack"] {
            let expected = sent.len();
            let started = Instant::now();
            while sent
                .iter()
                .filter(|(id, _)| receiver.first_seen(path, id).is_some())
                .count()
                < expected
                && started.elapsed() < Duration::from_secs(120)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let (_, cpu) = service.usage();
        let setting = if beside_slow {
            format!("{SLOW} slow-plugin subscriptions")
        } else {
            "nothing (alone)".to_owned()
        };
        for (path, what) in [("/plain", "no plugin"), ("/slack", "slack plugin")] {
            let mut latencies = e2e_latencies(&receiver, path, &sent);
            latencies.sort_unstable();
            let delivered = latencies.len();
            let at = |p: f64| {
                latencies
                    .get(
                        ((latencies.len() as f64 * p) as usize)
                            .min(latencies.len().saturating_sub(1)),
                    )
                    .map_or(0.0, |d| d.as_secs_f64() * 1e3)
            };
            let (p50, p95, p99, max) = (at(0.5), at(0.95), at(0.99), at(1.0));
            // The worst latency per second of sending, to tell a stall from a spread.
            if let Some(first) = sent.iter().map(|(_, at)| *at).min() {
                let mut worst = vec![0.0f64; phase.as_secs() as usize + 1];
                for (id, at) in &sent {
                    if let Some(seen) = receiver.first_seen(path, id) {
                        let second = at.duration_since(first).as_secs() as usize;
                        let ms = seen.saturating_duration_since(*at).as_secs_f64() * 1e3;
                        if let Some(w) = worst.get_mut(second) {
                            *w = w.max(ms);
                        }
                    }
                }
                eprintln!(
                    "fairness: {what} beside {setting}: worst per second of sending (ms): {worst:.0?}"
                );
            }
            eprintln!(
                "fairness: {what} beside {setting}: p50 {p50:.1} ms, p95 {p95:.1} ms, p99 {p99:.1} ms"
            );
            rows.push(format!(
                "| {what} | {setting} | {p50:.1} / {p95:.1} / {p99:.1} / {max:.1} | {delivered} of {} | {:.0}% |",
                sent.len(),
                cpu * 100.0
            ));
        }
        diagnostics(&format!("fairness {setting}"), &service).await;
    }
    rows
}
