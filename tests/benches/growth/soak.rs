//! The soak (issue 13, "soak mode"): `SOAK_MINUTES` of events at half the end-to-end maximum
//! measured first in the same run (`SOAK_LOAD` sets another share, e.g. `0.3`), to a receiver that fails 20% of requests (`500`) and goes
//! down (`503`) for 30 s every 5 minutes — both periods scaled by `SOAK_MINUTES / 30` below
//! 30 minutes, so a short soak sees several outages — with retention set short. Reported at the
//! start, middle and end: the service's RSS, the database's size, ingest and delivery p99.
//! Then the receiver heals and every accepted event must arrive: lost ones (accepted, never
//! answered `2xx`) and duplicates (a `2xx` beyond the first for one `webhook-id`) are counted,
//! apart from the re-sends at-least-once makes after a failed answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::common::generator::{closed_loop, event_body};
use super::common::service::Service;
use super::common::{KEY, OPEN_LOOP_CONNECTIONS};

/// The soak's length, if asked for (`SOAK_MINUTES`, may be fractional).
pub fn minutes() -> Option<f64> {
    std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|m| *m > 0.0)
}

/// The receiver: a share of requests fail, and all fail while it is down.
#[derive(Default)]
struct Receiver {
    /// Every `n`-th request fails (0: none).
    fail_every: AtomicU64,
    down: AtomicBool,
    requests: AtomicU64,
    failed: AtomicU64,
    /// `webhook-id` → (2xx answers, first 2xx).
    ok: Mutex<HashMap<String, (u32, Instant)>>,
}

async fn receive(State(receiver): State<Arc<Receiver>>, headers: HeaderMap) -> StatusCode {
    let n = receiver.requests.fetch_add(1, Ordering::Relaxed);
    if receiver.down.load(Ordering::Relaxed) {
        receiver.failed.fetch_add(1, Ordering::Relaxed);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let every = receiver.fail_every.load(Ordering::Relaxed);
    if every > 0 && n % every == 0 {
        receiver.failed.fetch_add(1, Ordering::Relaxed);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if let Ok(mut ok) = receiver.ok.lock() {
        ok.entry(id).or_insert((0, Instant::now())).0 += 1;
    }
    StatusCode::NO_CONTENT
}

async fn start_receiver() -> (Arc<Receiver>, SocketAddr) {
    let receiver = Arc::new(Receiver::default());
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, addr)
}

impl Receiver {
    fn distinct(&self) -> usize {
        self.ok.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// One sample of the service and its database.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at: f64,
    rss_mib: f64,
    /// The heap's part of the RSS (`RssAnon`); the rest is mapped files: the binary, and
    /// SQLite's shared-memory WAL index.
    anon_mib: f64,
    db_mib: f64,
}

/// CPU ticks (user + system, `/proc/<pid>/task/<tid>/stat`) of each thread of `pid`, with its
/// name: where the service's CPU goes over the soak, thread by thread.
fn thread_ticks(pid: u32) -> std::collections::HashMap<u32, (String, u64)> {
    let mut all = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return all;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        // After the name: state, ppid, … utime is field 14 and stime 15 of the whole line.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let tid = task.file_name().to_string_lossy().parse().unwrap_or(0);
        all.insert(tid, (name, ticks(11) + ticks(12)));
    }
    all
}

/// Between two [`thread_ticks`] samples `seconds` apart: the process's CPU (in cores) and
/// its three busiest threads (name, id and share of one core).
fn cpu_between(
    before: &std::collections::HashMap<u32, (String, u64)>,
    after: &std::collections::HashMap<u32, (String, u64)>,
    seconds: f64,
) -> (f64, String) {
    // Linux reports ticks of 1/100 s (USER_HZ) on every common configuration.
    let per_second = 100.0 * seconds.max(1e-3);
    let mut used: Vec<(f64, String)> = after
        .iter()
        .map(|(tid, (name, ticks))| {
            let was = before.get(tid).map_or(0, |(_, t)| *t);
            (
                ticks.saturating_sub(was) as f64 / per_second,
                format!("{name}/{tid}"),
            )
        })
        .collect();
    let total = used.iter().map(|(u, _)| u).sum();
    used.sort_by(|a, b| b.0.total_cmp(&a.0));
    let busiest: Vec<String> = used
        .iter()
        .take(3)
        .map(|(u, name)| format!("{name} {:.0}%", u * 100.0))
        .collect();
    (total, busiest.join(", "))
}

fn db_mib(data: &Path) -> f64 {
    let size = |name: &str| std::fs::metadata(data.join(name)).map_or(0, |m| m.len());
    (size("switchyard.db") + size("switchyard.db-wal")) as f64 / f64::from(1 << 20)
}

fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

fn anon_mib(pid: u32) -> f64 {
    status_mib(pid, "RssAnon:")
}

/// A `/proc/<pid>/status` field given in kB, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// An accepted event: when it was scheduled (seconds into the soak) and its ingest latency.
struct Accepted {
    id: String,
    scheduled: Instant,
    at: f64,
    latency: Duration,
}

/// Sends at `rate` for `duration`; results stream to the returned list as they come.
async fn send(base: &str, rate: f64, duration: Duration, started: Instant) -> (Vec<Accepted>, u64) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(OPEN_LOOP_CONNECTIONS)
        .build()
        .expect("client");
    let connections = Arc::new(tokio::sync::Semaphore::new(OPEN_LOOP_CONNECTIONS));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<Accepted>>();
    let collector = tokio::spawn(async move {
        let (mut accepted, mut refused) = (Vec::new(), 0_u64);
        while let Some(result) = rx.recv().await {
            match result {
                Some(a) => accepted.push(a),
                None => refused += 1,
            }
        }
        (accepted, refused)
    });
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let mut i = 0usize;
    while started.elapsed() < duration {
        let scheduled = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let (http, url, tx) = (http.clone(), format!("{base}/v1/events"), tx.clone());
        let connections = connections.clone();
        let event = event_body(i);
        tokio::spawn(async move {
            let accepted = async {
                let _connection = connections.acquire().await.ok()?;
                let response = http
                    .post(url)
                    .bearer_auth(KEY)
                    .json(&event)
                    .send()
                    .await
                    .ok()?;
                if response.status() != 202 {
                    return None;
                }
                let body: Value = response.json().await.ok()?;
                Some(Accepted {
                    id: body["id"].as_str()?.to_owned(),
                    scheduled,
                    at: scheduled.duration_since(started).as_secs_f64(),
                    latency: scheduled.elapsed(),
                })
            }
            .await;
            let _ = tx.send(accepted);
        });
        i += 1;
    }
    drop(tx);
    collector.await.unwrap_or_default()
}

fn p99(mut samples: Vec<f64>) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() as f64 * 0.99) as usize).min(samples.len() - 1)]
}

/// The soak; returns its report.
pub async fn run(minutes: f64) -> String {
    let total = Duration::from_secs_f64(minutes * 60.0);
    let scale = (minutes / 30.0).min(1.0);
    let period = Duration::from_secs_f64(300.0 * scale);
    let outage = Duration::from_secs_f64(30.0 * scale);
    // Short enough that rows are deleted several times during the soak (the job runs every
    // minute), and at least that minute.
    let retention = format!("{}s", ((minutes * 60.0 / 6.0) as u64).max(60));
    let env = [
        ("SWITCHYARD_BUNDLED_PLUGINS", "false"),
        ("SWITCHYARD_RETENTION_FINISHED", retention.as_str()),
        ("SWITCHYARD_RETENTION_FAILED", retention.as_str()),
        ("SWITCHYARD_IDEMPOTENCY_KEY_TTL", retention.as_str()),
        // Outlasts an outage many times over: nothing runs out of attempts.
        (
            "SWITCHYARD_RETRY_SCHEDULE",
            "1s,2s,5s,10s,20s,30s,30s,30s,30s,30s,30s,30s",
        ),
    ];
    let data_dir = tempfile::tempdir_in(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
    )
    .expect("soak folder");
    let data = data_dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data folder");
    let service = Service::start_in(&data, &env).await;
    let (receiver, addr) = start_receiver().await;
    let http = reqwest::Client::new();
    service
        .call(
            &http,
            reqwest::Method::POST,
            "/v1/subscriptions",
            json!({"url": format!("http://{addr}/hook"), "events": ["post.*"]}),
        )
        .await;

    // The maximum: end to end to the healthy receiver, in this run.
    let measured = Instant::now();
    let ticks_before = thread_ticks(service.pid);
    let (sent, _, _) = closed_loop(&service.base, Some(20_000), None).await;
    while receiver.distinct() < sent.len() && measured.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let max = receiver.distinct() as f64 / measured.elapsed().as_secs_f64();
    // The same CPU figures as the soak's, for the maximum: what one delivery costs when
    // nothing fails.
    let (max_cores, max_busiest) = cpu_between(
        &ticks_before,
        &thread_ticks(service.pid),
        measured.elapsed().as_secs_f64(),
    );
    let max_cpu = format!("{max_cores:.2} cores ({max_busiest})");
    eprintln!("soak: CPU at the maximum: {max_cpu}");
    // `SOAK_LOAD`: the share of that maximum to soak at (default the half).
    let load = std::env::var("SOAK_LOAD")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|l| *l > 0.0 && *l <= 1.0)
        .unwrap_or(0.5);
    let rate = max * load;
    eprintln!("soak: maximum {max:.0} deliveries/s; soaking at {rate:.0}/s for {minutes} min");
    let warm_up = receiver.distinct();

    receiver.fail_every.store(5, Ordering::Relaxed);
    let started = Instant::now();
    let outages = {
        let receiver = receiver.clone();
        tokio::spawn(async move {
            let mut at = period.saturating_sub(outage);
            loop {
                tokio::time::sleep_until((started + at).into()).await;
                receiver.down.store(true, Ordering::Relaxed);
                tokio::time::sleep(outage).await;
                receiver.down.store(false, Ordering::Relaxed);
                at += period;
            }
        })
    };
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    type Ticks = std::collections::HashMap<u32, (String, u64)>;
    let ticks = Arc::new(Mutex::new(Vec::<(f64, Ticks)>::new()));
    let sampler = {
        let (samples, data, pid) = (samples.clone(), data.clone(), service.pid);
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(mut all) = ticks.lock() {
                    all.push((started.elapsed().as_secs_f64(), thread_ticks(pid)));
                }
                let sample = Sample {
                    at: started.elapsed().as_secs_f64(),
                    rss_mib: rss_mib(pid),
                    anon_mib: anon_mib(pid),
                    db_mib: db_mib(&data),
                };
                if let Ok(mut all) = samples.lock() {
                    all.push(sample);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let (accepted, refused) = send(&service.base, rate, total, started).await;
    let sent_for = started.elapsed();
    outages.abort();
    receiver.down.store(false, Ordering::Relaxed);
    receiver.fail_every.store(0, Ordering::Relaxed);
    let at_end = (rss_mib(service.pid), db_mib(&data));
    sampler.abort();
    eprintln!(
        "soak: {} accepted, {refused} not accepted; draining",
        accepted.len()
    );
    let drained = Instant::now();
    let expected = warm_up + accepted.len();
    while receiver.distinct() < expected && drained.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = drained.elapsed();

    // Lost: accepted and never answered 2xx. Duplicates: 2xx answers beyond the first.
    let ok = receiver.ok.lock().map(|m| m.clone()).unwrap_or_default();
    let lost = accepted.iter().filter(|a| !ok.contains_key(&a.id)).count();
    let duplicates: u64 = ok
        .values()
        .map(|(n, _)| u64::from(n.saturating_sub(1)))
        .sum();
    let failed_answers = receiver.failed.load(Ordering::Relaxed);
    let requests = receiver.requests.load(Ordering::Relaxed);

    // Start, middle, end: the first, middle and last tenth of the soak.
    let length = sent_for.as_secs_f64();
    let windows = [
        ("start", 0.0, 0.1),
        ("middle", 0.45, 0.55),
        ("end", 0.9, 1.0),
    ];
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let mut rows = Vec::new();
    for (name, from, to) in windows {
        let (from, to) = (from * length, to * length);
        let inside: Vec<&Accepted> = accepted
            .iter()
            .filter(|a| a.at >= from && a.at < to)
            .collect();
        let ingest = p99(inside
            .iter()
            .map(|a| a.latency.as_secs_f64() * 1e3)
            .collect());
        let delivery = p99(inside
            .iter()
            .filter_map(|a| {
                let (_, first) = ok.get(&a.id)?;
                Some(first.duration_since(a.scheduled).as_secs_f64() * 1e3)
            })
            .collect());
        let sample = samples
            .iter()
            .rev()
            .find(|s| s.at <= to)
            .copied()
            .unwrap_or_default();
        let (rss, db) = if name == "end" {
            at_end
        } else {
            (sample.rss_mib, sample.db_mib)
        };
        rows.push(format!(
            "| {name} ({:.0}–{:.0} s) | {rss:.0} MiB | {db:.1} MiB | {ingest:.1} ms | {:.0} ms |",
            from, to, delivery
        ));
    }
    // The series, one sample per tenth of the soak.
    let series: Vec<String> = (1..=10)
        .filter_map(|tenth| {
            let until = length * f64::from(tenth) / 10.0;
            let s = samples.iter().rev().find(|s| s.at <= until)?;
            Some(format!(
                "{:.0} s: {:.0} ({:.0}) / {:.0}",
                s.at, s.rss_mib, s.anon_mib, s.db_mib
            ))
        })
        .collect();
    // CPU by tenth: the whole service (cores) and its busiest threads (share of one core).
    let ticks = ticks.lock().map(|t| t.clone()).unwrap_or_default();
    let cpu: Vec<String> = (1..=10)
        .filter_map(|tenth| {
            let from = length * f64::from(tenth - 1) / 10.0;
            let until = length * f64::from(tenth) / 10.0;
            let a = ticks.iter().find(|(at, _)| *at >= from)?;
            let b = ticks.iter().rev().find(|(at, _)| *at <= until)?;
            let (total, busiest) = cpu_between(&a.1, &b.1, b.0 - a.0);
            Some(format!("{:.0} s: {total:.2} cores ({busiest})", b.0))
        })
        .collect();
    eprintln!("soak: CPU by tenth: {}", cpu.join("; "));
    let peak_rss = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let peak_db = samples.iter().map(|s| s.db_mib).fold(0.0, f64::max);
    drop(service);
    format!(
        "Soak: {minutes} min at {rate:.0} events/s ({:.0}% of the {max:.0} deliveries/s measured first, same run), \
         receiver failing every 5th request and down for {:.0} s every {:.0} s, retention {retention}.\n\n\
         | window | RSS | database (+WAL) | ingest p99 | delivery p99 (accepted → first 2xx) |\n|---|---|---|---|---|\n{}\n\n\
         Peak RSS {peak_rss:.0} MiB, peak database {peak_db:.1} MiB. {} events accepted ({refused} not accepted); \
         the rest arrived within {:.0} s of the receiver healing: **{lost} lost**, **{duplicates} duplicated** \
         (a 2xx beyond the first for one webhook-id). The receiver answered {requests} requests, {failed_answers} of \
         them with 500/503: those deliveries were sent again, as at-least-once does.\n\n\
         RSS (of it heap, RssAnon) / database MiB by tenth: {}.\n\n\
         CPU by tenth (the service's, in cores; its three busiest threads', in % of one core): {}; \
         at the maximum measured first: {max_cpu}.",
        load * 100.0,
        outage.as_secs_f64(),
        period.as_secs_f64(),
        rows.join("\n"),
        accepted.len(),
        drain.as_secs_f64(),
        series.join(", "),
        cpu.join("; "),
    )
}
