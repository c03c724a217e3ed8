//! Fair shares: subscriptions whose plugin always runs into its deadline must not delay a
//! subscription without a plugin, one with a fast plugin, or one using the same plugin in a
//! fast way.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::gated::GatedReceiver;
use crate::common::plugins::fixture;
use crate::common::{TestServer, wait_until};

/// Subscriptions through the slow plugin (the measurement used eight).
const SLOW: usize = 8;
/// Events sent at once before the probes: more slow deliveries (8 × 160) than the dispatcher
/// holds in memory (1,024), so the slow subscriptions could fill it.
const BURST: usize = 160;
/// Events whose delivery latency is measured, one every 100 ms.
const PROBES: usize = 20;

#[ignore = "heavy: ./test.sh runs it on its own, after the rest"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_plugin_does_not_delay_other_subscriptions() {
    // No retries: the slow subscriptions' load is exactly their events.
    let server = TestServer::start_with(|c| c.retry_schedule = Vec::new()).await;
    server.upload_plugin("hostile", fixture("hostile")).await;
    server.upload_plugin("echo", fixture("hostile")).await;
    let receiver = GatedReceiver::start().await;
    for i in 0..SLOW {
        server
            .subscribe(
                json!({"url": receiver.url(&format!("/slow{i}")), "events": ["*"],
                              "plugin": "hostile", "plugin_config": {"mode": "loop"}}),
            )
            .await;
    }
    let fast = [
        ("/plain", json!({})),
        (
            "/same-plugin",
            json!({"plugin": "hostile", "plugin_config": {"mode": "echo"}}),
        ),
        (
            "/other-plugin",
            json!({"plugin": "echo", "plugin_config": {"mode": "echo"}}),
        ),
    ];
    for (path, extra) in &fast {
        let mut body = json!({"url": receiver.url(path), "events": ["*"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        server.subscribe(body).await;
    }

    for i in 0..BURST {
        server
            .send_event(json!({"type": "burst.x", "data": {"i": i}}))
            .await;
    }
    let mut sent = HashMap::new();
    for i in 0..PROBES {
        let at = Instant::now();
        let event = server
            .send_event(json!({"type": "probe.x", "data": {"i": i}}))
            .await;
        sent.insert(event["id"].as_str().unwrap().to_owned(), at);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_probes = wait_until(Duration::from_secs(60), || async {
        let hits = receiver.hits();
        fast.iter().all(|(path, _)| {
            hits.iter()
                .filter(|h| h.path == *path && sent.contains_key(&h.id))
                .count()
                == PROBES
        })
    })
    .await;
    assert!(all_probes, "the probes did not all arrive");

    let hits = receiver.hits();
    let mut slow = Vec::new();
    for (path, _) in &fast {
        let mut latencies: Vec<Duration> = hits
            .iter()
            .filter(|h| h.path == *path)
            .filter_map(|h| sent.get(&h.id).map(|at| h.at - *at))
            .collect();
        latencies.sort();
        let p95 = latencies[latencies.len() * 95 / 100 - 1];
        eprintln!(
            "{path}: p50 {:?}, p95 {p95:?}, max {:?} beside {SLOW} slow-plugin subscriptions",
            latencies[latencies.len() / 2],
            latencies[latencies.len() - 1]
        );
        if p95 >= Duration::from_millis(500) {
            slow.push(format!("{path}: p95 {p95:?}"));
        }
    }
    assert!(slow.is_empty(), "delayed by the slow plugin: {slow:?}");
    // The slow plugin is not starved either: its subscriptions' attempts run (and fail on
    // their deadline; they never reach the receiver).
    let failed = server
        .metric("switchyard_deliveries_finished_total{outcome=\"failed\"}")
        .await
        .unwrap_or(0.0);
    assert!(
        failed >= SLOW as f64,
        "the slow subscriptions made no progress: {failed}"
    );
}
