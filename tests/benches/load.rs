//! The load benchmark (`docs/PERFORMANCE.md`): starts the real `switchyard serve` (release
//! build) on a fresh data folder per scenario, a fast loopback receiver and a load generator,
//! and prints a table. Not a test: it asserts nothing, it measures.
//!
//! ```sh
//! cargo build --release -p switchyard && cargo bench -p switchyard-tests --bench load
//! ```
//! `SWITCHYARD_BIN` overrides the binary; `LOAD_SCALE=0.1` runs every scenario at a tenth of
//! its size for a quick look; `LOAD_ONLY=fan-out,drain` runs only the scenarios named
//! (`ceiling`, `ingest`, `e2e`, `slack`, `fan-out`, `drain`, `fairness`, `tenant-fairness`,
//! `tenant-ingest`), e.g. while profiling one.
//!
//! Every run first measures the null router (`common::null_router`: accept, forward once, no
//! storage, signing or plugin) with the same generator and receiver, and reports each scenario
//! also as a share of it: this VM's speed drifts by 2x between days, so compare releases by
//! those shares, not by the absolute figures.

#[path = "common/mod.rs"]
mod common;
#[path = "load/fairness.rs"]
mod fairness;
#[path = "load/scenarios.rs"]
mod scenarios;
#[path = "load/tenants.rs"]
mod tenants;

use common::null_router::{self, Ceiling};
use fairness::{FAIR_RATE, fairness};
use scenarios::{drain, end_to_end, fan_out, ingest};

fn main() {
    null_router::serve_if_asked();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(run_all());
}

fn scale(n: usize) -> usize {
    let factor: f64 = std::env::var("LOAD_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * factor) as usize).max(10)
}

async fn run_all() {
    switchyard::net::install_crypto_provider();
    let ceiling = if selected("ceiling") || !only_some() {
        Some(Ceiling::measure(scale(10).max(2), scale(20_000)).await)
    } else {
        None
    };
    let mut rows = Vec::new();
    if selected("ingest") {
        rows.push(ingest().await);
    }
    if selected("e2e") {
        rows.push(end_to_end("e2e", None).await);
    }
    if selected("slack") {
        rows.push(end_to_end("e2e + slack plugin", Some("slack")).await);
    }
    if selected("fan-out") {
        rows.push(fan_out().await);
    }
    if selected("drain") {
        rows.push(drain().await);
    }
    let fair = if selected("fairness") {
        fairness().await
    } else {
        Vec::new()
    };
    let tenant_lines = tenants::run().await;
    if let Some(c) = ceiling {
        println!();
        println!("| null router (the ceiling) | throughput |");
        println!("|---|---|");
        println!(
            "| ingest (64 conns, nothing forwarded) | {:.0} events/s |",
            c.ingest
        );
        println!(
            "| e2e (forward once, 1 target) | {:.0} deliveries/s |",
            c.deliveries
        );
    }
    if !rows.is_empty() {
        println!();
        println!(
            "| scenario | throughput | % of null router | latency p50 / p99 / max (ms) | at 50% load p50 / p99 (ms) | peak RSS | mean CPU | lost / dup |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for r in rows {
            println!("{}", r.line(ceiling));
        }
    }
    if !fair.is_empty() {
        println!();
        println!(
            "| fairness ({FAIR_RATE:.0} events/s, open loop) | beside | latency p50 / p95 / p99 / max (ms) | delivered | mean CPU |"
        );
        println!("|---|---|---|---|---|");
        for line in fair {
            println!("{line}");
        }
    }
    if !tenant_lines.is_empty() {
        println!();
        for line in tenant_lines {
            println!("{line}");
        }
    }
}

/// Whether `LOAD_ONLY` is set.
fn only_some() -> bool {
    std::env::var("LOAD_ONLY").is_ok()
}

/// Whether `LOAD_ONLY` (a comma-separated list; unset means all) names the scenario.
fn selected(scenario: &str) -> bool {
    std::env::var("LOAD_ONLY").map_or(true, |only| only.split(',').any(|s| s.trim() == scenario))
}

/// What a scenario's throughput counts, and so which ceiling it is a share of.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counts {
    /// Events accepted per second.
    Events,
    /// Deliveries received per second.
    Deliveries,
}

/// One line of the table.
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) rate: f64,
    pub(crate) counts: Counts,
    pub(crate) latency: String,
    pub(crate) fixed_rate: String,
    pub(crate) rss_mib: f64,
    pub(crate) cpu: f64,
    pub(crate) lost: usize,
    pub(crate) dup: usize,
}

impl Row {
    fn line(&self, ceiling: Option<Ceiling>) -> String {
        let (unit, of) = match self.counts {
            Counts::Events => ("events/s", ceiling.map(|c| c.ingest)),
            Counts::Deliveries => ("deliveries/s", ceiling.map(|c| c.deliveries)),
        };
        let share = of
            .filter(|c| *c > 0.0)
            .map_or("-".to_owned(), |c| format!("{:.0}%", self.rate / c * 100.0));
        format!(
            "| {} | {:.0} {unit} | {share} | {} | {} | {:.1} MiB | {:.0}% | {} / {} |",
            self.name,
            self.rate,
            self.latency,
            self.fixed_rate,
            self.rss_mib,
            self.cpu * 100.0,
            self.lost,
            self.dup
        )
    }
}
