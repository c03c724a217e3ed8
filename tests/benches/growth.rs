//! The growth benchmark (`docs/PERFORMANCE.md`, "Growth"): the same measurements on an empty
//! database and on one holding a long history, side by side, plus ingest while the retention
//! job deletes that history. Not a test: it measures.
//!
//! ```sh
//! cargo build --release -p switchyard && cargo bench -p switchyard-tests --bench growth
//! ```
//! `GROWTH_ROWS` finished deliveries (default 1,000,000; the issue's figure is 10,000,000) and
//! `GROWTH_PENDING` pending ones due in a year (default 100,000), each with its event and an
//! attempt, are written once with direct SQL and cached in `target/growth/`; every run copies
//! the cache. `SWITCHYARD_BIN` overrides the binary.
//!
//! Empty and filled alternate `GROWTH_ROUNDS` times (default 3), each on a fresh start of its
//! service, so the machine's drift during the run falls on both. Per database: ingest
//! throughput and p99 (64 closed-loop connections, no subscription
//! matching), ingest at a fixed rate, the API's filtered lists (p50/p99 of 200 sequential
//! calls), and end-to-end throughput to one receiver. Then, on the filled copy, the service is
//! restarted with a one-hour retention and ingest is measured at a fixed rate while the job
//! deletes the history, with the database's pages before and after.
//!
//! `GROWTH_ONLY=history,subscriptions,plugins` runs only the parts named: `history` (all of the
//! above), `subscriptions` (ingest with 1 vs `GROWTH_SUBSCRIPTIONS` = 10,000 subscriptions,
//! `growth/subscriptions.rs`).
//! Then `GROWTH_PLUGINS` (default 1,000) distinct plugins: cold and warm start, memory idle
//! and after a few ran, hot reload (`growth/plugins.rs`); `GROWTH_ONLY=plugins` runs that
//! phase alone.
//!
//! `SOAK_MINUTES=30` runs the soak instead (`growth/soak.rs`): half the end-to-end maximum for
//! that long, to a receiver that fails 20% of requests and goes down every few minutes, with
//! retention set short.

#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;
#[path = "growth/fill.rs"]
mod fill;
#[path = "growth/plugins.rs"]
mod plugins;
#[path = "growth/soak.rs"]
mod soak;
#[path = "growth/subscriptions.rs"]
mod subscriptions;

use std::time::{Duration, Instant};

use serde_json::json;

use common::KEY;
use common::generator::{closed_loop, open_loop, percentiles};
use common::null_router::{self, Ceiling};
use common::receiver::Receiver;
use common::service::Service;

/// Retention long enough that nothing is deleted while measuring (the fill may be days old).
const KEEP: [(&str, &str); 3] = [
    ("SWITCHYARD_RETENTION_FINISHED", "3650d"),
    ("SWITCHYARD_RETENTION_FAILED", "3650d"),
    ("SWITCHYARD_BUNDLED_PLUGINS", "false"),
];

fn main() {
    null_router::serve_if_asked();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(run());
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// What one database measured.
#[derive(Debug, Default)]
struct Figures {
    ingest: f64,
    ingest_p99: f64,
    fixed_p50: f64,
    fixed_p99: f64,
    fixed_rate: f64,
    e2e: f64,
    lists: Vec<(String, f64, f64)>,
}

impl Figures {
    /// The mean of several rounds' figures (the fixed rate is the same in all of them).
    fn mean(all: &[Figures]) -> Figures {
        let n = all.len().max(1) as f64;
        let mean = |get: fn(&Figures) -> f64| all.iter().map(get).sum::<f64>() / n;
        let lists = all.first().map_or_else(Vec::new, |first| {
            (0..first.lists.len())
                .map(|i| {
                    let name = first.lists[i].0.clone();
                    let p50 = all.iter().map(|f| f.lists[i].1).sum::<f64>() / n;
                    let p99 = all.iter().map(|f| f.lists[i].2).sum::<f64>() / n;
                    (name, p50, p99)
                })
                .collect()
        });
        Figures {
            ingest: mean(|f| f.ingest),
            ingest_p99: mean(|f| f.ingest_p99),
            fixed_p50: mean(|f| f.fixed_p50),
            fixed_p99: mean(|f| f.fixed_p99),
            fixed_rate: mean(|f| f.fixed_rate),
            e2e: mean(|f| f.e2e),
            lists,
        }
    }
}

/// Whether `GROWTH_ONLY` (a comma-separated list; unset: everything) names `part`.
fn selected(part: &str) -> bool {
    std::env::var("GROWTH_ONLY").map_or(true, |only| only.split(',').any(|p| p.trim() == part))
}

async fn run() {
    switchyard::net::install_crypto_provider();
    // `SOAK_MINUTES=N` runs the soak instead of everything else.
    if let Some(minutes) = soak::minutes() {
        println!("{}", soak::run(minutes).await);
        return;
    }
    let plugin_count = env_usize("GROWTH_PLUGINS", 1_000);
    if selected("subscriptions") {
        let many = env_usize("GROWTH_SUBSCRIPTIONS", 10_000);
        println!("\n{}\n", subscriptions::run(&KEEP, many).await);
    }
    if !selected("history") {
        if selected("plugins") {
            println!("{}", plugins::run(plugin_count).await);
        }
        return;
    }
    let history = env_usize("GROWTH_ROWS", 1_000_000);
    let pending = env_usize("GROWTH_PENDING", 100_000);
    let fill = fill::cached(history, pending).await;
    let ceiling = Ceiling::measure(10, 20_000).await;

    // Empty and filled alternate, `GROWTH_ROUNDS` times each, so a drift of the machine's
    // speed during the run falls on both alike; the tables show the mean and each round's ratio.
    let rounds = env_usize("GROWTH_ROUNDS", 3).max(1);
    let empty_dir = tempfile::tempdir().expect("empty data folder");
    let empty_subscriptions = {
        let service = Service::start_in(empty_dir.path(), &KEEP).await;
        fill::create_subscriptions(&service).await
    };
    let work = tempfile::tempdir_in(fill.dir.parent().unwrap_or(&fill.dir)).expect("run folder");
    let data = work.path().join("data");
    let copied = Instant::now();
    fill::copy(&fill, &data);
    eprintln!("growth: copied the fill in {:.0?}", copied.elapsed());
    let db = data.join("switchyard.db");
    let (mut empties, mut fulls) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let mut service = Service::start_in(empty_dir.path(), &KEEP).await;
        let rate = empties.first().map(|e: &Figures| e.fixed_rate);
        let name = format!("empty, round {round}");
        empties.push(measure(&name, &mut service, &empty_subscriptions[3], rate).await);
        drop(service);
        let mut service = Service::start_in(&data, &KEEP).await;
        let rate = empties.first().map(|e| e.fixed_rate);
        let name = format!("filled, round {round}");
        fulls.push(measure(&name, &mut service, &fill.subscriptions[3], rate).await);
    }
    let ratios = |get: fn(&Figures) -> f64| -> String {
        empties
            .iter()
            .zip(&fulls)
            .map(|(e, f)| format!("{:.0}%", get(f) / get(e).max(f64::MIN_POSITIVE) * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (ingest_rounds, e2e_rounds) = (ratios(|f| f.ingest), ratios(|f| f.e2e));
    let empty = Figures::mean(&empties);
    let full = Figures::mean(&fulls);
    let before = fill::old_plans(&db, &fill.subscriptions[3]);
    let retention = retention_phase(&data, &db, empty.fixed_rate).await;

    println!();
    println!(
        "null router (same run): {:.0} events/s accepted, {:.0} deliveries/s forwarded",
        ceiling.ingest, ceiling.deliveries
    );
    println!();
    println!(
        "| {history} finished + {pending} pending deliveries, mean of {rounds} alternating rounds | empty database | filled | filled / empty |"
    );
    println!("|---|---|---|---|");
    let share = |a: f64, b: f64| {
        if a > 0.0 {
            format!("{:.0}%", b / a * 100.0)
        } else {
            "-".into()
        }
    };
    println!(
        "| ingest (64 conns) | {:.0} events/s ({} of null router) | {:.0} events/s ({}) | {} (rounds: {ingest_rounds}) |",
        empty.ingest,
        share(ceiling.ingest, empty.ingest),
        full.ingest,
        share(ceiling.ingest, full.ingest),
        share(empty.ingest, full.ingest)
    );
    println!(
        "| ingest p99 (64 conns) | {:.1} ms | {:.1} ms | |",
        empty.ingest_p99, full.ingest_p99
    );
    println!(
        "| ingest at {:.0}/s, p50 / p99 | {:.1} / {:.1} ms | {:.1} / {:.1} ms | |",
        empty.fixed_rate, empty.fixed_p50, empty.fixed_p99, full.fixed_p50, full.fixed_p99
    );
    println!(
        "| e2e (1 subscription) | {:.0} deliveries/s ({} of null router) | {:.0} deliveries/s ({}) | {} (rounds: {e2e_rounds}) |",
        empty.e2e,
        share(ceiling.deliveries, empty.e2e),
        full.e2e,
        share(ceiling.deliveries, full.e2e),
        share(empty.e2e, full.e2e)
    );
    for ((name, e50, e99), (_, f50, f99)) in empty.lists.iter().zip(&full.lists) {
        println!("| `{name}` p50 / p99 | {e50:.1} / {e99:.1} ms | {f50:.1} / {f99:.1} ms | |");
    }
    println!();
    println!(
        "| the same filter in SQL on the filled database | p50 with the new indexes | p50 with the plan before them |"
    );
    println!("|---|---|---|");
    for (name, new, old) in before {
        println!("| {name} | {new:.2} ms | {old:.2} ms |");
    }
    println!();
    println!("{retention}");
    if selected("plugins") {
        println!();
        println!("{}", plugins::run(plugin_count).await);
    }
}

/// Ingest, lists and end to end on a running service.
async fn measure(
    name: &str,
    service: &mut Service,
    history_subscription: &str,
    fixed_rate: Option<f64>,
) -> Figures {
    let mut figures = Figures::default();
    closed_loop(&service.base, None, Some(Duration::from_secs(2))).await; // warm-up
    let (sent, latencies, elapsed) =
        closed_loop(&service.base, None, Some(Duration::from_secs(10))).await;
    figures.ingest = sent.len() as f64 / elapsed.as_secs_f64();
    figures.ingest_p99 = percentiles(latencies).1;
    figures.fixed_rate = fixed_rate.unwrap_or(figures.ingest * 0.5);
    let (_, fixed) = open_loop(&service.base, figures.fixed_rate, Duration::from_secs(10)).await;
    (figures.fixed_p50, figures.fixed_p99, _) = percentiles(fixed);
    let http = reqwest::Client::new();
    let s = history_subscription;
    let lists = [
        format!("/v1/deliveries?status=failed&subscription_id={s}&limit=50"),
        format!("/v1/deliveries?status=cancelled&subscription_id={s}&limit=50"),
        "/v1/deliveries?status=failed&limit=50".to_owned(),
        format!("/v1/deliveries?subscription_id={s}&limit=50"),
        format!("/v1/deliveries?status=pending&subscription_id={s}&limit=50"),
        "/v1/deliveries?limit=50".to_owned(),
        format!("/v1/attempts?subscription_id={s}&limit=50"),
    ];
    for path in lists {
        let mut samples = Vec::new();
        for _ in 0..200 {
            let at = Instant::now();
            let response = http
                .get(format!("{}{path}", service.base))
                .bearer_auth(KEY)
                .send()
                .await
                .expect("list");
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            let _ = response.bytes().await;
            samples.push(at.elapsed());
        }
        let (p50, p99, _) = percentiles(samples);
        let shown = path.replace(s, "<sub>");
        eprintln!("growth {name}: {shown}: p50 {p50:.2} ms, p99 {p99:.2} ms");
        figures.lists.push((shown, p50, p99));
    }
    let receiver = Receiver::start().await;
    let subscription = service
        .call(
            &http,
            reqwest::Method::POST,
            "/v1/subscriptions",
            json!({"url": receiver.url("/hook"), "events": ["post.*"]}),
        )
        .await;
    let started = Instant::now();
    let (sent, _, _) = closed_loop(&service.base, Some(20_000), None).await;
    receiver
        .wait_distinct(sent.len(), Duration::from_secs(300))
        .await;
    figures.e2e = receiver.distinct() as f64 / started.elapsed().as_secs_f64();
    // The next round on this folder creates its own (to its own receiver).
    if let Some(id) = subscription["id"].as_str() {
        let deleted = http
            .delete(format!("{}/v1/subscriptions/{id}", service.base))
            .bearer_auth(KEY)
            .send()
            .await
            .map(|r| r.status());
        assert!(
            deleted.as_ref().is_ok_and(|s| s.is_success()),
            "deleting the e2e subscription: {deleted:?}"
        );
    }
    eprintln!("growth {name}: {figures:?}");
    figures
}

/// Restarts the filled service with a one-hour retention: the job deletes the history while
/// events arrive at `rate`. Returns a paragraph of results.
async fn retention_phase(data: &std::path::Path, db: &std::path::Path, rate: f64) -> String {
    let before_rows = fill::rows(db, "deliveries");
    let before_pages = fill::pages(db);
    let env = [
        ("SWITCHYARD_RETENTION_FINISHED", "1h"),
        ("SWITCHYARD_RETENTION_FAILED", "1h"),
        ("SWITCHYARD_IDEMPOTENCY_KEY_TTL", "1h"),
        ("SWITCHYARD_BUNDLED_PLUGINS", "false"),
    ];
    let service = Service::start_in(data, &env).await;
    let started = Instant::now();
    let (sent, fixed) = open_loop(&service.base, rate, Duration::from_secs(20)).await;
    let (p50, p99, max) = percentiles(fixed);
    let seconds = started.elapsed().as_secs_f64();
    let after_rows = fill::rows(db, "deliveries");
    let after_pages = fill::pages(db);
    drop(service);
    // One subscription (the e2e phase's) matches the new events: each added a delivery.
    let deleted = before_rows + sent.len() as i64 - after_rows;
    format!(
        "Retention running (1 h retention on the filled copy): ingest at {rate:.0}/s for 20 s: p50 {p50:.1} ms, \
         p99 {p99:.1} ms, max {max:.1} ms, {} events accepted; the job deleted {deleted} deliveries in {seconds:.0} s \
         ({:.0}/s). Pages (4 KiB) before: {} ({} free), after: {} ({} free).",
        sent.len(),
        deleted as f64 / seconds,
        before_pages.0,
        before_pages.1,
        after_pages.0,
        after_pages.1
    )
}
