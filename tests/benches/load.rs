//! The load benchmark (`docs/PERFORMANCE.md`): starts the real `switchyard serve` (release
//! build) on a fresh data folder per scenario, a fast loopback receiver and a load generator,
//! and prints a table. Not a test: it asserts nothing, it measures.
//!
//! ```sh
//! cargo build --release -p switchyard && cargo bench -p switchyard-tests --bench load
//! ```
//! `SWITCHYARD_BIN` overrides the binary; `LOAD_SCALE=0.1` runs every scenario at a tenth of
//! its size for a quick look; `LOAD_ONLY=fan-out,drain` runs only the scenarios named
//! (`ingest`, `e2e`, `slack`, `fan-out`, `drain`, `fairness`, `tenant-fairness`,
//! `tenant-ingest`), e.g. while profiling one.

#[path = "load/tenants.rs"]
mod tenants;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

const KEY: &str = "bench-key-0123456789abcdef";
const CONCURRENCY: usize = 64;
/// Connections the open-loop (fixed-rate) phases use at most.
const OPEN_LOOP_CONNECTIONS: usize = 256;

fn main() {
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
    if !rows.is_empty() {
        println!();
        println!(
            "| scenario | throughput | latency p50 / p99 / max (ms) | at 50% load p50 / p99 (ms) | peak RSS | mean CPU | lost / dup |"
        );
        println!("|---|---|---|---|---|---|---|");
        for r in rows {
            println!("{r}");
        }
    }
    if !tenant_lines.is_empty() {
        println!();
        for line in tenant_lines {
            println!("{line}");
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
}

/// Whether `LOAD_ONLY` (a comma-separated list; unset means all) names the scenario.
fn selected(scenario: &str) -> bool {
    std::env::var("LOAD_ONLY").map_or(true, |only| only.split(',').any(|s| s.trim() == scenario))
}

/// One line of the table.
struct Row {
    name: String,
    throughput: String,
    latency: String,
    fixed_rate: String,
    rss_mib: f64,
    cpu: f64,
    lost: usize,
    dup: usize,
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "| {} | {} | {} | {} | {:.1} MiB | {:.0}% | {} / {} |",
            self.name,
            self.throughput,
            self.latency,
            self.fixed_rate,
            self.rss_mib,
            self.cpu * 100.0,
            self.lost,
            self.dup
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The service process.

struct Service {
    child: Child,
    base: String,
    pid: u32,
    _dir: tempfile::TempDir,
    cpu_start: (f64, Instant),
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    if let Ok(bin) = std::env::var("SWITCHYARD_BIN") {
        return PathBuf::from(bin);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target").join("release").join("switchyard")
}

impl Service {
    async fn start(extra_env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let bin = binary();
        assert!(
            bin.exists(),
            "{} not found: run `cargo build --release -p switchyard` first",
            bin.display()
        );
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .env("SWITCHYARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHYARD_DATA_DIR", dir.path())
            .env("SWITCHYARD_API_KEY", KEY)
            .env("SWITCHYARD_ALLOW_PRIVATE_NETWORKS", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start switchyard");
        let pid = child.id();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if http
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "switchyard did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            base,
            pid,
            _dir: dir,
            cpu_start: (cpu_seconds(pid), Instant::now()),
        }
    }

    fn mark(&mut self) {
        self.cpu_start = (cpu_seconds(self.pid), Instant::now());
    }

    /// Peak RSS (MiB) and mean CPU (fraction of one core) since the last mark.
    fn usage(&self) -> (f64, f64) {
        let cpu =
            (cpu_seconds(self.pid) - self.cpu_start.0) / self.cpu_start.1.elapsed().as_secs_f64();
        (peak_rss_mib(self.pid), cpu)
    }

    async fn call(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Value {
        let response = http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path} answered {status}: {value}");
        value
    }
}

fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// The receiver: answers 204 (or 503 while "down"), records first receive time per delivery.

#[derive(Default)]
struct Seen {
    /// (path, webhook-id) → (times received, first receive).
    by_key: HashMap<(String, String), (usize, Instant)>,
    total: usize,
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    down: Arc<AtomicBool>,
}

impl Receiver {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let down = Arc::new(AtomicBool::new(false));
        let state = (seen.clone(), down.clone());
        let app = axum::Router::new().fallback(receive).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, seen, down }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn total(&self) -> usize {
        self.seen.lock().map(|s| s.total).unwrap_or(0)
    }

    fn distinct(&self) -> usize {
        self.seen.lock().map(|s| s.by_key.len()).unwrap_or(0)
    }

    fn first_seen(&self, path: &str, id: &str) -> Option<Instant> {
        self.seen
            .lock()
            .ok()?
            .by_key
            .get(&(path.to_owned(), id.to_owned()))
            .map(|(_, at)| *at)
    }

    async fn wait_distinct(&self, n: usize, timeout: Duration) -> bool {
        let started = Instant::now();
        while self.distinct() < n {
            if started.elapsed() > timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

type ReceiverState = (Arc<Mutex<Seen>>, Arc<AtomicBool>);

async fn receive(
    State((seen, down)): State<ReceiverState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> StatusCode {
    if down.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let now = Instant::now();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if let Ok(mut seen) = seen.lock() {
        seen.total += 1;
        seen.by_key
            .entry((uri.path().to_owned(), id))
            .or_insert((0, now))
            .0 += 1;
    }
    StatusCode::NO_CONTENT
}

// ---------------------------------------------------------------------------------------------
// The load generator.

/// A 1 KB event body.
fn event_body(i: usize) -> Value {
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
type BodyOf = Arc<dyn Fn(usize) -> Value + Send + Sync>;

/// Sends `count` events (or until `deadline`) from 64 closed-loop workers. Returns
/// (event id, send start) per accepted event, and per-request latencies.
async fn closed_loop(
    base: &str,
    count: Option<usize>,
    deadline: Option<Duration>,
) -> (Vec<(String, Instant)>, Vec<Duration>, Duration) {
    closed_loop_of(base, count, deadline, Arc::new(event_body)).await
}

/// [`closed_loop`] with bodies from `body`.
async fn closed_loop_of(
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
async fn open_loop(
    base: &str,
    rate: f64,
    duration: Duration,
) -> (Vec<(String, Instant)>, Vec<Duration>) {
    open_loop_of(base, rate, duration, Arc::new(event_body)).await
}

/// [`open_loop`] with bodies from `body`.
async fn open_loop_of(
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

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
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

// ---------------------------------------------------------------------------------------------
// Scenarios.

async fn ingest() -> Row {
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
        throughput: format!("{rate:.0} events/s"),
        latency: format!("{p50:.1} / {p99:.1} / {max:.1}"),
        fixed_rate: format!("{f50:.1} / {f99:.1} @ {:.0}/s", rate * 0.5),
        rss_mib: rss.max(peak_rss_mib(service.pid)),
        cpu,
        lost: 0,
        dup: 0,
    }
}

async fn subscribe(service: &Service, receiver: &Receiver, path: &str, plugin: Option<&str>) {
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
fn e2e_latencies(receiver: &Receiver, path: &str, sent: &[(String, Instant)]) -> Vec<Duration> {
    sent.iter()
        .filter_map(|(id, at)| {
            receiver
                .first_seen(path, id)
                .map(|seen| seen.saturating_duration_since(*at))
        })
        .collect()
}

async fn end_to_end(name: &str, plugin: Option<&str>) -> Row {
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
        throughput: format!("{rate:.0} deliveries/s"),
        latency: format!("{p50:.1} / {p99:.1} / {max:.1}"),
        fixed_rate: format!("{f50:.1} / {f99:.1} @ {:.0}/s", rate * 0.5),
        rss_mib: rss.max(peak_rss_mib(service.pid)),
        cpu,
        lost,
        dup,
    }
}

async fn fan_out() -> Row {
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
        throughput: format!(
            "{:.0} deliveries/s",
            receiver.distinct() as f64 / elapsed.as_secs_f64()
        ),
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
async fn drain() -> Row {
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
        throughput: format!(
            "{:.0} deliveries/s",
            receiver.distinct() as f64 / elapsed.as_secs_f64()
        ),
        latency: "-".into(),
        fixed_rate: "-".into(),
        rss_mib: rss.max(peak_rss_mib(service.pid)),
        cpu,
        lost: sent.len().saturating_sub(receiver.distinct()),
        dup: receiver.total().saturating_sub(receiver.distinct()),
    }
}

/// The hostile test plugin (built by `cargo build -p switchyard` with the other plugins): its
/// `{"mode": "loop"}` config runs into the 100 ms deadline on every call.
fn hostile_plugin() -> Vec<u8> {
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
const FAIR_RATE: f64 = 200.0;

async fn fairness() -> Vec<String> {
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

/// Prints the service's own view: mean attempt latency and mean plugin time, and where its
/// memory is (anonymous vs file-backed).
async fn diagnostics(name: &str, service: &Service) {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", service.pid)).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    eprintln!(
        "{name}: memory now: RssAnon {} RssFile {} RssShmem {} VmHWM {} Threads {}",
        field("RssAnon:"),
        field("RssFile:"),
        field("RssShmem:"),
        field("VmHWM:"),
        field("Threads:")
    );
    let page = reqwest::get(format!("{}/metrics", service.base))
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    let mean = |base: &str| {
        let count = metric(&page, &format!("{base}_count"));
        if count > 0.0 {
            metric(&page, &format!("{base}_sum")) / count * 1e3
        } else {
            0.0
        }
    };
    eprintln!(
        "{name}: service-side mean attempt latency {:.2} ms, mean plugin call {:.3} ms",
        mean("switchyard_attempt_latency_seconds"),
        mean("switchyard_plugin_duration_seconds")
    );
}

fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
