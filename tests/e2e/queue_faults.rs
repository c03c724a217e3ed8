//! Fault injection on the delivery queue: two processes on one data folder, a subscription
//! another writer created, a result that cannot be recorded, and `kill -9` again and again
//! under load. Every acknowledged event must be delivered, and no delivery's recorded state may
//! contradict what the receiver saw.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::common::gated::{GatedReceiver, Hit};
use crate::common::process::Process;
use crate::common::server::KEY;
use crate::common::{TestServer, wait_until};

const WAIT: Duration = Duration::from_secs(30);

/// A delivery as `GET /v1/deliveries/{id}` shows it (what these tests read of it).
#[derive(Debug, Deserialize)]
struct DeliveryOut {
    id: String,
    event_id: String,
    status: String,
    attempts_made: i64,
    last_error: Option<String>,
    #[serde(default)]
    attempts: Vec<AttemptOut>,
}

#[derive(Debug, Deserialize)]
struct AttemptOut {
    status_code: Option<u16>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page<T> {
    data: Vec<T>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Accepted {
    id: String,
}

async fn get<T: serde::de::DeserializeOwned>(http: &reqwest::Client, base: &str, path: &str) -> T {
    let response = http
        .get(format!("{base}{path}"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

async fn post(http: &reqwest::Client, base: &str, path: &str, body: serde_json::Value) -> u16 {
    http.post(format!("{base}{path}"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_data_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Process::start(&data, &[]).await;

    let mut second = Process::spawn(&data, &[]);
    let status = second.wait_exit(WAIT).await;
    let stderr = second.stderr_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "a second process on the same data folder kept running ({status:?}): {stderr}"
    );
    assert!(
        stderr.contains("in use by another switchyard process"),
        "the refusal does not say why: {stderr}"
    );
    let healthy = reqwest::get(format!("{}/healthz", first.base))
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200, "the first process was disturbed");

    // The lock dies with its process, even a killed one: the folder is usable again at once.
    first.kill();
    Process::start(&data, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_processes_started_together_on_one_folder_exactly_one_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut all: Vec<Process> = (0..3).map(|_| Process::spawn(&data, &[])).collect();
    let mut serving = 0;
    let mut refused = 0;
    for process in &mut all {
        // Each one either serves or exits (refused), whichever shows first.
        if process.wait_healthy(WAIT).await {
            serving += 1;
            continue;
        }
        let status = process.wait_exit(WAIT).await;
        let stderr = process.stderr_text();
        assert!(status.is_some_and(|s| !s.success()), "{status:?}: {stderr}");
        assert!(
            stderr.contains("in use by another switchyard process"),
            "{stderr}"
        );
        refused += 1;
    }
    assert_eq!((serving, refused), (1, 2), "one folder, one service");
}

/// A delivery whose subscription the service's in-memory copy does not know (created by
/// another writer on the same database) is sent after reading the database again — never
/// cancelled as if the subscription were deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_missing_from_the_cache_is_read_again_not_cancelled() {
    let server = TestServer::start().await;
    let receiver = GatedReceiver::start().await;
    // Another writer on the same database: the store library, not this server.
    let other = switchyard::store::Store::open(&server.data_dir.join("switchyard.db"))
        .await
        .unwrap();
    let sub = other
        .create_subscription(switchyard::store::NewSubscription {
            tenant_id: switchyard::tenant::TenantId::default_tenant(),
            url: receiver.url("/other"),
            events: vec!["*".into()],
            plugin: None,
            plugin_config: None,
            description: None,
            headers: Default::default(),
            signature: Default::default(),
            secret: switchyard::signing::generate_secret(),
        })
        .await
        .unwrap();
    let wake = Arc::new(tokio::sync::Notify::new());
    let (ingestor, _task) = switchyard::store::Ingestor::start(
        other.clone(),
        wake,
        16,
        64 << 20,
        std::time::Duration::from_secs(86_400),
    );
    let outcome = ingestor
        .ingest(switchyard::store::NewEvent {
            tenant_id: switchyard::tenant::TenantId::default_tenant(),
            event_type: "a.b".into(),
            data: "{}".into(),
            idempotency_key: None,
            only_subscription: Some(sub.id.clone()),
        })
        .await
        .unwrap();
    let delivery = outcome.first_delivery.expect("a delivery was created");

    let done = wait_until(WAIT, || async {
        let d: DeliveryOut = get(
            &reqwest::Client::new(),
            &server.base,
            &format!("/v1/deliveries/{delivery}"),
        )
        .await;
        d.status != "pending" && d.status != "delivering"
    })
    .await;
    assert!(done, "the delivery was never attempted");
    let d: DeliveryOut = get(
        &reqwest::Client::new(),
        &server.base,
        &format!("/v1/deliveries/{delivery}"),
    )
    .await;
    assert_eq!(d.status, "succeeded", "{d:?}");
    assert_eq!(receiver.hits().len(), 1);
}

/// One result the database refuses (here a trigger aborts its write, as a corrupt or
/// hand-edited row would) must not keep every later result from being recorded; it is made a
/// dead letter that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_cannot_be_recorded_does_not_hold_up_the_others() {
    let server = TestServer::start().await;
    let receiver = GatedReceiver::start().await;
    server
        .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
        .await;
    receiver.hold();
    let poison = server.send_event(json!({"type": "a.b", "data": {}})).await;
    receiver.wait_arrived(1, WAIT).await;
    let poison_delivery = server.deliveries_of(poison["id"].as_str().unwrap()).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = rusqlite::Connection::open(server.data_dir.join("switchyard.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch(&format!(
        "CREATE TRIGGER poison BEFORE UPDATE ON deliveries
         WHEN OLD.id = '{poison_delivery}' AND NEW.status = 'succeeded'
         BEGIN SELECT RAISE(ABORT, 'this row cannot be written'); END;"
    ))
    .unwrap();
    receiver.release();
    wait_until(WAIT, || async { receiver.hits().len() == 1 }).await;

    // Later deliveries are recorded as usual.
    let later = server.send_event(json!({"type": "a.b", "data": {}})).await;
    let later_delivery = server.deliveries_of(later["id"].as_str().unwrap()).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .wait_delivery(&later_delivery, "succeeded", WAIT)
        .await;
    let poisoned = server.wait_delivery(&poison_delivery, "failed", WAIT).await;
    let error = poisoned["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("could not be recorded") && error.contains("this row cannot be written"),
        "{poisoned:#}"
    );
    assert_eq!(
        server.metric("switchyard_results_unrecorded_total").await,
        Some(1.0)
    );
}

/// A lease that runs out while its attempt is still waiting for the receiver: the delivery is
/// leased and attempted again, the first attempt's late answer (arriving while the second is in
/// flight) is ignored, and the delivery ends in the state of the attempt that held the lease —
/// with only that attempt recorded.
/// Time is the service's manual clock: moving it past the lease is what expires it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_runs_out_mid_attempt_ignores_the_late_result() {
    let manual = switchyard::Clock::manual(time::OffsetDateTime::now_utc().unix_timestamp() * 1000);
    let lease = Duration::from_secs(300);
    let clock = manual.clock();
    let server = TestServer::start_with(move |c| {
        c.clock = clock;
        c.lease = lease;
        // Longer than the test holds the first request: its late answer, not a timeout, is
        // what comes back after the lease ran out.
        c.delivery_timeout = Duration::from_secs(60);
    })
    .await;
    let receiver = GatedReceiver::start().await;
    // The first request's late answer (a 500) comes while the second attempt is still in
    // flight, half a second before the second succeeds: it must not make the delivery pending
    // (and send it a third time), nor be recorded.
    receiver.answer_after(|_, nth| match nth {
        0 => (500, Duration::ZERO),
        _ => (204, Duration::from_millis(500)),
    });
    receiver.hold();
    server
        .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
        .await;
    let event = server.send_event(json!({"type": "a.b", "data": {}})).await;
    receiver.wait_arrived(1, WAIT).await;
    manual.advance(lease + Duration::from_secs(1));
    // The lease is taken back (within one requeue round) and the delivery sent again.
    receiver.wait_arrived(2, WAIT).await;
    receiver.release();

    let delivery = server.deliveries_of(event["id"].as_str().unwrap()).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.wait_delivery(&delivery, "succeeded", WAIT).await;
    let ignored = wait_until(WAIT, || async {
        let metrics = server
            .anonymous(Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metrics.contains("switchyard_results_stale_total 1")
    })
    .await;
    assert!(ignored, "the late result was not seen and ignored");
    let d: DeliveryOut = get(
        &reqwest::Client::new(),
        &server.base,
        &format!("/v1/deliveries/{delivery}"),
    )
    .await;
    assert_eq!(d.status, "succeeded", "{d:?}");
    assert_eq!(
        d.attempts.len(),
        1,
        "only the attempt that held the lease: {d:?}"
    );
    assert_eq!(d.attempts[0].status_code, Some(204), "{d:?}");
    assert_eq!(d.attempts_made, 1);
    assert_eq!(receiver.hits().len(), 2, "both were answered");
    assert_eq!(receiver.arrived(), 2, "and nothing was sent a third time");
}

/// `kill -9` ten times at random moments while producers send events to a subscription with a
/// plugin and a receiver that fails the first try of every third event (so retries are in the
/// queue at every kill). Afterwards every event answered `202` was delivered with a 2xx, every
/// delivery succeeded, and each one's recorded attempts are attempts the receiver really
/// answered, with the last one a success it answered.
#[ignore = "heavy: ./test.sh runs it on its own, after the rest"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_again_and_again_under_load_every_accepted_event_is_delivered() {
    const KILLS: usize = 10;
    const EVENTS: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [
        ("SWITCHYARD_BUNDLED_PLUGINS", "true"),
        ("SWITCHYARD_RETRY_SCHEDULE", "200ms,200ms,200ms,200ms,200ms"),
        ("RUST_LOG", "error"),
    ];
    let receiver = GatedReceiver::start().await;
    // The first try of every third event fails (by its id, so it holds across restarts).
    receiver.answer(|id, nth| {
        let third = id.bytes().map(u32::from).sum::<u32>() % 3 == 0;
        if third && nth == 0 { 500 } else { 204 }
    });
    let service = Process::start(&data, &env).await;
    let http = reqwest::Client::new();
    let created = post(
        &http,
        &service.base,
        "/v1/subscriptions",
        json!({"url": receiver.url("/hook"), "events": ["*"], "plugin": "reshape",
               "plugin_config": {"set": {"via": "reshape"}}}),
    )
    .await;
    assert_eq!(created, 201);

    let base = Arc::new(Mutex::new(service.base.clone()));
    let accepted = Arc::new(Mutex::new(HashSet::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let (http, base, accepted, stop) =
                (http.clone(), base.clone(), accepted.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let url = format!("{}/v1/events", base.lock().unwrap());
                    let sent = http
                        .post(url)
                        .bearer_auth(KEY)
                        .json(&json!({"type": "load.test", "data": {"p": p, "i": i}}))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    i += 1;
                    match sent {
                        Ok(r) if r.status() == 202 => {
                            if let Ok(body) = r.json::<Accepted>().await {
                                accepted.lock().unwrap().insert(body.id);
                            }
                        }
                        // Down (between a kill and the restart): try again shortly.
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
        .collect();

    let mut service = Some(service);
    for kill in 0..KILLS {
        // Spread the kills over the load: each at a random moment of its tenth of it.
        let tenth = EVENTS / (KILLS + 1);
        let at = kill * tenth + rand::rng().random_range(tenth / 4..tenth);
        assert!(
            wait_until(Duration::from_secs(120), || async {
                accepted.lock().unwrap().len() >= at
            })
            .await,
            "the load stalled before kill {kill}"
        );
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(0..150))).await;
        service.take().unwrap().kill();
        let restarted = Process::start(&data, &env).await;
        *base.lock().unwrap() = restarted.base.clone();
        service = Some(restarted);
    }
    assert!(
        wait_until(Duration::from_secs(120), || async {
            accepted.lock().unwrap().len() >= EVENTS
        })
        .await,
        "the load stalled after the last kill"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in producers {
        p.await.unwrap();
    }
    let service = service.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= EVENTS, "only {} accepted", accepted.len());

    // Every accepted event reaches the receiver with a 2xx.
    let delivered = |hits: &[Hit]| -> HashSet<String> {
        hits.iter()
            .filter(|h| (200..300).contains(&h.status))
            .map(|h| h.id.clone())
            .collect()
    };
    let all = wait_until(Duration::from_secs(120), || async {
        accepted.is_subset(&delivered(&receiver.hits()))
    })
    .await;
    let missing = accepted.difference(&delivered(&receiver.hits())).count();
    assert!(
        all,
        "{missing} of {} accepted events never delivered",
        accepted.len()
    );
    // And the queue settles: nothing pending or in flight.
    let settled = wait_until(Duration::from_secs(60), || async {
        for status in ["pending", "delivering"] {
            let page: Page<DeliveryOut> = get(
                &http,
                &service.base,
                &format!("/v1/deliveries?status={status}&limit=1"),
            )
            .await;
            if !page.data.is_empty() {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        settled,
        "deliveries still queued after the receiver got everything"
    );

    // What the receiver answered, per event.
    let hits = receiver.hits();
    let mut answered: HashMap<&str, Vec<u16>> = HashMap::new();
    for hit in &hits {
        answered
            .entry(hit.id.as_str())
            .or_default()
            .push(hit.status);
        assert!(
            hit.body.contains(r#""via":"reshape""#),
            "the plugin did not run: {}",
            hit.body
        );
    }
    // Every delivery, with its attempts.
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/deliveries?limit=100&cursor={c}"),
            None => "/v1/deliveries?limit=100".to_owned(),
        };
        let page: Page<DeliveryOut> = get(&http, &service.base, &path).await;
        ids.extend(page.data.into_iter().map(|d| d.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let deliveries: Vec<DeliveryOut> = futures::future::join_all(ids.chunks(16).map(|chunk| {
        let (http, base) = (http.clone(), service.base.clone());
        let chunk = chunk.to_vec();
        async move {
            let mut out = Vec::new();
            for id in chunk {
                out.push(get::<DeliveryOut>(&http, &base, &format!("/v1/deliveries/{id}")).await);
            }
            out
        }
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    let events: HashSet<&str> = deliveries.iter().map(|d| d.event_id.as_str()).collect();
    assert!(
        accepted.iter().all(|e| events.contains(e.as_str())),
        "an accepted event has no delivery"
    );
    let mut network_errors = Vec::new();
    for d in &deliveries {
        assert_eq!(d.status, "succeeded", "{d:?}");
        assert_eq!(d.attempts_made as usize, d.attempts.len(), "{d:?}");
        let seen = answered
            .get(d.event_id.as_str())
            .cloned()
            .unwrap_or_default();
        // Each recorded attempt with a status is one the receiver answered, with that status;
        // one without a status failed on the way (connection, timeout) and claims no answer.
        let mut unclaimed = seen.clone();
        for attempt in &d.attempts {
            let Some(code) = attempt.status_code else {
                network_errors.push(attempt.error.clone().unwrap_or_default());
                continue;
            };
            let at = unclaimed.iter().position(|s| *s == code);
            assert!(
                at.is_some(),
                "{} records an attempt answered {code} the receiver never gave (it answered {seen:?}): {d:?}",
                d.id
            );
            unclaimed.remove(at.unwrap());
        }
        let last = d.attempts.last().and_then(|a| a.status_code).unwrap_or(0);
        assert!(
            (200..300).contains(&last),
            "{d:?} (receiver answered {seen:?})"
        );
        assert!(d.last_error.is_none() || d.status == "succeeded", "{d:?}");
    }
    eprintln!(
        "kill loop: {} events accepted, {} requests received ({} beyond one per event), {KILLS} kills, \
         {} attempts failed on the way, e.g. {:?}",
        accepted.len(),
        hits.len(),
        hits.len() - accepted.len(),
        network_errors.len(),
        network_errors.first()
    );
}
