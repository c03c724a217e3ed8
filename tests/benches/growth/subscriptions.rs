//! Ingest with 1 vs 10,000 subscriptions (issue 13): matching an event must not be a scan of
//! every pattern. `GROWTH_ONLY=subscriptions` runs only this part; `GROWTH_SUBSCRIPTIONS`
//! changes the 10,000.
//!
//! Each subscription has one random pattern, a third each of the three kinds the matcher
//! indexes: exact (`s17.e4`), `a.*` (`s17.*`) and `a.b.*` (`s17.e4.*`), with a random first
//! segment (of 2^32) and second one (of 100). 99 events in 100 have a type no pattern matches
//! (`n17.e4`: the matcher still looks up the exact type and both prefixes); 1 in 100 is made to
//! match one subscription's pattern (cycling over all of them), so both runs make a delivery
//! for 1% of the events, sent to a real receiver. The generator is the load benchmark's: 64 closed-loop
//! connections, 2 s of warm-up, then 10 s measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use switchyard::store::matching::pattern_matches;

use crate::common::generator::{BodyOf, closed_loop_of, event_body, percentiles};
use crate::common::receiver::Receiver;
use crate::common::service::Service;

/// One in this many events matches a subscription.
const MATCH_EVERY: usize = 100;

/// What one run measured.
struct Run {
    subscriptions: usize,
    setup: Duration,
    rate: f64,
    p50: f64,
    p99: f64,
    cpu: f64,
    delivered: usize,
    matching: usize,
}

/// A pattern of one of the three kinds, from a deterministic random number. The first
/// segment is one of 2^32, so two subscriptions' patterns (almost) never overlap: a matching
/// event makes one delivery, as in the 1-subscription run.
fn pattern(random: u64) -> String {
    let (a, b) = (random & 0xFFFF_FFFF, (random >> 32) % 100);
    match (random >> 48) % 3 {
        0 => format!("s{a}.e{b}"),
        1 => format!("s{a}.*"),
        _ => format!("s{a}.e{b}.*"),
    }
}

/// An event type that `pattern` matches.
fn matching_type(pattern: &str, i: usize) -> String {
    match pattern.strip_suffix('*') {
        Some(prefix) => format!("{prefix}x{i}"),
        None => pattern.to_owned(),
    }
}

/// SplitMix64: reproducible patterns without a dependency.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs 1 and `GROWTH_SUBSCRIPTIONS` (10,000) subscriptions; their table.
pub async fn run(env: &[(&str, &str)], many: usize) -> String {
    let one = measure(env, 1).await;
    let all = measure(env, many).await;
    let share = if one.rate > 0.0 {
        all.rate / one.rate * 100.0
    } else {
        0.0
    };
    let row = |r: &Run| {
        format!(
            "| {} subscription(s) | {:.0} events/s | {:.1} / {:.1} ms | {:.0}% | {} of {} | {:.1} s |",
            r.subscriptions,
            r.rate,
            r.p50,
            r.p99,
            r.cpu * 100.0,
            r.delivered,
            r.matching,
            r.setup.as_secs_f64()
        )
    };
    format!(
        "| ingest, 1% of events matching (64 conns, 10 s) | throughput | p50 / p99 | mean CPU | deliveries received / matching events sent | creating the subscriptions |\n\
         |---|---|---|---|---|---|\n{}\n{}\n\n{} subscriptions: {share:.0}% of the 1-subscription throughput (goal: at least 50%).",
        row(&one),
        row(&all),
        all.subscriptions
    )
}

async fn measure(env: &[(&str, &str)], count: usize) -> Run {
    let mut service = Service::start(env).await;
    let receiver = Receiver::start().await;
    let http = reqwest::Client::new();
    let patterns: Arc<Vec<String>> =
        Arc::new((0..count as u64).map(|n| pattern(splitmix(n))).collect());
    for (i, p) in patterns.iter().enumerate() {
        // What the figures rest on: the 1% match, the 99% do not.
        assert!(pattern_matches(p, &matching_type(p, i)), "{p}");
        assert!(!pattern_matches(p, "n17.e4"), "{p}");
    }
    let started = Instant::now();
    futures::stream::iter(patterns.iter().cloned())
        .for_each_concurrent(32, |p| {
            let (service, http, url) = (&service, &http, receiver.url("/hook"));
            async move {
                service
                    .call(
                        http,
                        reqwest::Method::POST,
                        "/v1/subscriptions",
                        json!({"url": url, "events": [p]}),
                    )
                    .await;
            }
        })
        .await;
    let setup = started.elapsed();
    eprintln!("growth subscriptions: {count} created in {setup:.1?}");
    let body: BodyOf = {
        let patterns = patterns.clone();
        Arc::new(move |i| {
            let mut body = event_body(i);
            body["type"] = Value::String(if i % MATCH_EVERY == 0 {
                matching_type(&patterns[(i / MATCH_EVERY) % patterns.len()], i)
            } else {
                format!("n{}.e{}", i % 1000, (i / 1000) % 100)
            });
            body
        })
    };
    closed_loop_of(
        &service.base,
        None,
        Some(Duration::from_secs(2)),
        body.clone(),
    )
    .await;
    let before = receiver.total();
    service.mark();
    let (sent, latencies, elapsed) =
        closed_loop_of(&service.base, None, Some(Duration::from_secs(10)), body).await;
    let (_, cpu) = service.usage();
    let rate = sent.len() as f64 / elapsed.as_secs_f64();
    let (p50, p99, _) = percentiles(latencies);
    // Each matching event makes at least one delivery (more where patterns overlap); give
    // them time to arrive, then count what the receiver got.
    let matching = sent.len().div_ceil(MATCH_EVERY);
    let waited = Instant::now();
    while receiver.total() < before + matching && waited.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = receiver.total() - before;
    eprintln!("growth subscriptions: {count}: {rate:.0} events/s, p99 {p99:.1} ms");
    Run {
        subscriptions: count,
        setup,
        rate,
        p50,
        p99,
        cpu,
        delivered,
        matching,
    }
}
