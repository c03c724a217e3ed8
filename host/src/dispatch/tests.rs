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

/// Results wait in a bounded queue for the recorder. When it falls behind (here it never
/// reads), workers wait with their results and the leaser stops: attempts stop at the queue's
/// room plus one per worker, instead of every due delivery being sent with its result piling
/// up in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_that_falls_behind_stops_the_attempts() {
    const QUEUE: usize = 3;
    const WORKERS: usize = 2;
    let f = fixture(WORKERS).await;
    f.ctx
        .store
        .create_subscription(NewSubscription {
            tenant_id: crate::tenant::TenantId::default_tenant(),
            url: f.url.clone(),
            events: vec!["*".into()],
            plugin: None,
            plugin_config: None,
            description: None,
            headers: Default::default(),
            signature: Default::default(),
            secret: crate::signing::generate_secret(),
        })
        .await
        .unwrap();
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
    let sub = f
        .ctx
        .store
        .create_subscription(NewSubscription {
            tenant_id: crate::tenant::TenantId::default_tenant(),
            url: f.url.clone(),
            events: vec!["*".into()],
            plugin: None,
            plugin_config: None,
            description: None,
            headers: Default::default(),
            signature: Default::default(),
            secret: crate::signing::generate_secret(),
        })
        .await
        .unwrap();
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
