//! The dispatcher against a real store and a loopback receiver.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::net::NetConfig;
use crate::plugins::{Limits, Runtime};
use crate::store::{Ingestor, NewEvent, NewSubscription};

struct Fixture {
    ctx: DispatchContext,
    ingestor: Ingestor,
    received: Arc<AtomicUsize>,
    url: String,
    _dir: tempfile::TempDir,
}

async fn fixture(per_subscription: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).unwrap();
    let runtime = Runtime::new(Limits::default(), None).unwrap();
    let plugins = Arc::new(Registry::new(runtime, &plugins_dir).unwrap());
    crate::net::install_crypto_provider();
    let client = net::Client::new(NetConfig {
        allow_private_networks: true,
        timeout: Duration::from_secs(5),
        user_agent: "test".into(),
        max_response_bytes: 1024,
        max_idle_per_host: 16,
    })
    .unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    let app = axum::Router::new().fallback(move || {
        count.fetch_add(1, Ordering::SeqCst);
        async { axum::http::StatusCode::NO_CONTENT }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (ingestor, _) = Ingestor::start(
        store.clone(),
        store.waker(),
        4096,
        64 << 20,
        Duration::from_secs(86_400),
    );
    Fixture {
        ctx: DispatchContext {
            store,
            plugins,
            client,
            metrics: Metrics::new(),
            retry: RetryPolicy::new(Vec::new()),
            max_in_flight: 64,
            max_in_flight_per_subscription: per_subscription,
            max_in_flight_per_tenant: usize::MAX,
            lease: Duration::from_secs(300),
            delivery_timeout: Duration::from_secs(5),
            disable_after_failing_for: Duration::from_secs(3600),
            clock: Clock::system(),
        },
        ingestor,
        received,
        url,
        _dir: dir,
    }
}

impl Fixture {
    /// A subscription to every event type, delivered to the fixture's receiver.
    async fn subscribe(&self) -> Arc<crate::store::Subscription> {
        self.ctx
            .store
            .create_subscription(NewSubscription::to_url(&self.url, "*"))
            .await
            .unwrap()
    }
}

/// Results wait in a bounded queue for the recorder. When it falls behind (here it never
/// reads), workers wait with their results and the leaser stops: attempts stop at the queue's
/// room plus one per worker, instead of every due delivery being sent with its result piling
/// up in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_that_falls_behind_stops_the_attempts() {
    const QUEUE: usize = 3;
    const WORKERS: usize = 2;
    let f = fixture(WORKERS).await;
    f.subscribe().await;
    let sends = (0..200).map(|_| {
        f.ingestor.ingest(NewEvent {
            tenant_id: crate::tenant::TenantId::default_tenant(),
            event_type: "a.b".into(),
            data: "{}".into(),
            idempotency_key: None,
            only_subscription: None,
        })
    });
    for sent in futures::future::join_all(sends).await {
        sent.unwrap();
    }
    let (done, _stalled_recorder) = mpsc::channel::<Completion>(QUEUE);
    let (_stop, stopped) = watch::channel(false);
    let wake = f.ctx.store.waker();
    let shared = Shared::new(f.ctx.clone());
    tokio::spawn(leaser::Leaser::new(shared, wake, done).run(stopped));
    let limit = QUEUE + WORKERS;
    let reached = tokio::time::timeout(Duration::from_secs(10), async {
        while f.received.load(Ordering::SeqCst) < limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "attempts did not start");
    // Would more go out? Give them every chance.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(f.received.load(Ordering::SeqCst), limit);
}

/// An attempt starts only while its lease can hold it: with less left than the plugin deadline
/// plus the delivery timeout plus the margin, the job is given back unattempted (to be leased
/// again with a fresh lease), and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_would_outlive_its_lease_is_not_started() {
    let f = fixture(4).await;
    let sub = f.subscribe().await;
    let shared = Shared::new(f.ctx.clone());
    let now = f.ctx.clock.now_ms();
    let event = Arc::new(crate::store::Event {
        tenant_id: crate::tenant::TenantId::default_tenant(),
        id: "evt_1".into(),
        idempotency_key: None,
        event_type: "a.b".into(),
        data: "{}".into(),
        created_at: now,
        expunged_at: None,
    });
    let job = |lease_left: Duration| board::Job {
        leased: crate::store::Leased {
            id: "dlv_1".into(),
            event_id: event.id.clone(),
            subscription_id: sub.id.clone(),
            tenant_id: "default".into(),
            attempts: 0,
            created_at: now,
            lease_token: 1,
            lease_until: now + crate::clock::duration_ms(lease_left),
        },
        event: Some(event.clone()),
    };
    // 5 s timeout + 100 ms plugin deadline + 5 s margin do not fit in 10 s.
    let short = attempt::run(&shared, job(Duration::from_secs(10))).await;
    assert!(matches!(short, attempt::Attempted::NotStarted));
    assert_eq!(f.received.load(Ordering::SeqCst), 0, "nothing was sent");
    let long = attempt::run(&shared, job(Duration::from_secs(11))).await;
    let attempt::Attempted::Done(done) = long else {
        panic!("an attempt that fits was not started");
    };
    assert_eq!(done.status, crate::store::DeliveryStatus::Succeeded);
    assert_eq!(f.received.load(Ordering::SeqCst), 1);
}

fn leased(sub: &str, id: &str) -> (crate::store::Leased, Arc<crate::store::Event>) {
    let event = Arc::new(crate::store::Event {
        tenant_id: crate::tenant::TenantId::default_tenant(),
        id: format!("evt_{id}"),
        idempotency_key: None,
        event_type: "a.b".into(),
        data: "{}".into(),
        created_at: 0,
        expunged_at: None,
    });
    let leased = crate::store::Leased {
        id: id.into(),
        event_id: event.id.clone(),
        subscription_id: sub.into(),
        tenant_id: "default".into(),
        attempts: 0,
        created_at: 0,
        lease_token: 1,
        lease_until: i64::MAX,
    };
    (leased, event)
}

/// Fresh deliveries are taken only once a lease found the store drained (and no wake-up came
/// between that lease's start and its end), up to the subscription's share of the board, never
/// for a subscription being disabled, and never after shutdown. A refusal stops taking until
/// the next lease: the refused delivery is pending, and goes first.
#[tokio::test]
async fn fresh_deliveries_are_taken_only_when_nothing_older_waits() {
    use crate::store::Handoff as _;
    let f = fixture(4).await;
    let shared = Shared::new(f.ctx.clone());
    let taker = handoff::Taker(Arc::downgrade(&shared));
    assert!(!taker.reserve("default", "sub_a"), "before any lease");

    // A wake-up during the lease: it cannot vouch for the store being drained.
    let generation = shared.fresh.generation();
    shared.fresh.undrain();
    shared.fresh.leased(generation, true);
    assert!(!taker.reserve("default", "sub_a"), "woken during the lease");

    let generation = shared.fresh.generation();
    shared.fresh.leased(generation, true);
    // Alone, a subscription is bounded by the room kept for the leaser: a lease batch of the
    // buffer (1,024 jobs here) stays free.
    let taken = (0..)
        .take_while(|_| taker.reserve("default", "sub_a"))
        .count();
    assert_eq!(taken, shared.buffer() - leaser::LEASE_BATCH);
    assert!(
        !taker.reserve("default", "sub_b"),
        "the refused one is pending now: nothing is taken until the next lease"
    );

    // Beside another subscription holding jobs, by its share: half the buffer.
    taker.abandon();
    shared.board().enqueue([board::Job {
        leased: leased("sub_b", "dlv_b").0,
        event: None,
    }]);
    let generation = shared.fresh.generation();
    shared.fresh.leased(generation, true);
    let taken = (0..)
        .take_while(|_| taker.reserve("default", "sub_a"))
        .count();
    assert_eq!(taken, shared.buffer() / 2);
    taker.abandon();
    let generation = shared.fresh.generation();
    shared.fresh.leased(generation, true);
    shared.board().park("sub_a");
    assert!(!taker.reserve("default", "sub_a"), "being disabled");
    shared.board().unpark("sub_a");

    let generation = shared.fresh.generation();
    shared.fresh.leased(generation, true);
    assert!(taker.reserve("default", "sub_a"));
    taker.deliver(vec![leased("sub_a", "dlv_1")]);
    assert_eq!(
        shared.board().held_by("sub_a"),
        1,
        "delivered into the board"
    );
    assert_eq!(
        f.ctx
            .metrics
            .render(0, 0)
            .lines()
            .filter(|l| l.starts_with("switchyard_deliveries_handed_off_total 1"))
            .count(),
        1
    );

    shared.fresh.close();
    assert!(!taker.reserve("default", "sub_a"), "shutting down");
}

/// Through the running dispatcher: once the queue is drained, fresh events are sent without a
/// lease from the queue, and each is recorded (nothing is left pending or leased).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_dispatcher_sends_fresh_deliveries_handed_over_at_ingest() {
    let f = fixture(4).await;
    f.subscribe().await;
    let dispatcher = Dispatcher::start(f.ctx.clone(), f.ctx.store.waker());
    for n in 1..=20 {
        f.ingestor
            .ingest(NewEvent {
                tenant_id: crate::tenant::TenantId::default_tenant(),
                event_type: "a.b".into(),
                data: "{}".into(),
                idempotency_key: None,
                only_subscription: None,
            })
            .await
            .unwrap();
        let sent = tokio::time::timeout(Duration::from_secs(10), async {
            while f.received.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(sent.is_ok(), "event {n} was not delivered");
    }
    let handed: u64 = f
        .ctx
        .metrics
        .render(0, 0)
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_deliveries_handed_off_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(handed >= 10, "only {handed} of 20 were handed over");
    dispatcher.shutdown(Duration::from_secs(5)).await;
    let counts = f.ctx.store.queue_depth().await.unwrap();
    assert_eq!(counts, (0, 0), "nothing pending or leased is left");
}
