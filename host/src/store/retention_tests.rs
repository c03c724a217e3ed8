//! Retention, idempotency-key expiry and expunge, on a manual clock.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::store::{
    Attempt, Completion, DeliveryStatus, Ingestor, LeaseRequest, Leased, NewEvent, NewSubscription,
    SubscriptionEffect,
};

const DAY: Duration = Duration::from_secs(24 * 3600);

struct Fixture {
    store: Store,
    clock: ManualClock,
    ingestor: Ingestor,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(1_700_000_000_000);
    let store = Store::open_with_clock(&dir.path().join("db.sqlite"), clock.clock())
        .await
        .unwrap();
    let ttl = RetentionPolicy::default().idempotency_ttl;
    let (ingestor, _) = Ingestor::start(store.clone(), store.waker(), 4096, 64 << 20, ttl);
    Fixture {
        store,
        clock,
        ingestor,
        _dir: dir,
    }
}

impl Fixture {
    async fn subscription(&self, pattern: &str) -> String {
        self.store
            .create_subscription(NewSubscription::to_url(
                "https://receiver.example/hook",
                pattern,
            ))
            .await
            .unwrap()
            .id
            .clone()
    }

    async fn event(&self, event_type: &str, key: Option<&str>) -> crate::store::IngestOutcome {
        self.ingestor
            .ingest(NewEvent {
                event_type: event_type.into(),
                data: r#"{"email":"ann@example.com"}"#.into(),
                idempotency_key: key.map(str::to_owned),
                only_subscription: None,
                tenant_id: crate::tenant::TenantId::default_tenant(),
            })
            .await
            .unwrap()
    }

    /// Leases every due delivery, with a lease that outlives the test's clock moves.
    async fn lease_all(&self) -> Vec<Leased> {
        self.store
            .lease_due(LeaseRequest {
                limit: 1000,
                per_subscription: 1000,
                held: HashMap::new(),
                exclude: Vec::new(),
                lease: 365 * DAY,
                per_tenant: 1000,
                held_by_tenant: HashMap::new(),
                exclude_tenants: Vec::new(),
            })
            .await
            .unwrap()
            .leased
    }

    async fn record(&self, leased: &Leased, status: DeliveryStatus, next_attempt_at: i64) {
        let completion = Completion {
            leased: leased.clone(),
            status,
            next_attempt_at,
            attempt: Some(Attempt {
                at: self.clock.now_ms(),
                outcome: "failed".into(),
                status_code: Some(500),
                latency_ms: Some(1),
                error: None,
                plugin_version: None,
                response_body: Some("the receiver echoed ann@example.com".into()),
            }),
            last_error: None,
            skip_reason: None,
            effect: SubscriptionEffect::None,
        };
        let recorded = self.store.record(vec![completion].into()).await.unwrap();
        assert_eq!(recorded.applied, 1);
    }

    async fn count(&self, sql: &'static str) -> i64 {
        self.store
            .read(move |conn| Ok(conn.query_row(sql, [], |r| r.get(0))?))
            .await
            .unwrap()
    }

    async fn statuses(&self) -> Vec<String> {
        self.store
            .read(|conn| {
                let mut stmt = conn.prepare("SELECT status FROM deliveries ORDER BY status")?;
                all_rows(&mut stmt, [], |r| Ok(r.get(0)?))
            })
            .await
            .unwrap()
    }

    async fn purge(&self) -> Purged {
        let mut total = Purged::default();
        let mut cursor = None;
        loop {
            let purged = self
                .store
                .purge_batch(RetentionPolicy::default(), 2, cursor.clone())
                .await
                .unwrap();
            total.deliveries += purged.deliveries;
            total.attempts += purged.attempts;
            total.events += purged.events;
            cursor = purged.events_cursor;
            if !purged.more {
                return total;
            }
        }
    }
}

/// A delivery in each state, then time passes: finished rows go after their retention (failed
/// ones later), with their attempts and their events; pending and delivering rows, and the
/// events they need, stay however old they are. Batches of 2 make the walk take several.
#[tokio::test]
async fn old_finished_rows_go_and_unfinished_ones_stay() {
    let f = fixture().await;
    f.subscription("a.*").await;
    let doomed = f.subscription("b.*").await;
    for n in 0..6 {
        f.event(&format!("a.{n}"), None).await;
    }
    f.event("b.x", None).await;
    f.event("nobody.listens", None).await;
    let mut leased = f.lease_all().await;
    leased.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let ours: Vec<&Leased> = leased
        .iter()
        .filter(|l| l.subscription_id != doomed)
        .collect();
    let far = f.clock.now_ms() + i64::try_from((365 * DAY).as_millis()).unwrap();
    f.record(ours[0], DeliveryStatus::Succeeded, 0).await;
    f.record(ours[1], DeliveryStatus::Succeeded, 0).await;
    f.record(ours[2], DeliveryStatus::Skipped, 0).await;
    f.record(ours[3], DeliveryStatus::Failed, 0).await;
    f.record(ours[4], DeliveryStatus::Pending, far).await;
    // ours[5] stays delivering; the deleted subscription's delivery is cancelled.
    assert!(
        f.store
            .delete_subscription(&crate::tenant::Scope::Any, &doomed)
            .await
            .unwrap()
    );
    assert_eq!(
        f.statuses().await,
        [
            "cancelled",
            "delivering",
            "failed",
            "pending",
            "skipped",
            "succeeded",
            "succeeded"
        ]
    );

    f.clock.advance(6 * DAY);
    assert_eq!(f.purge().await, Purged::default(), "nothing is old enough");

    f.clock.advance(2 * DAY);
    let purged = f.purge().await;
    assert_eq!((purged.deliveries, purged.attempts), (4, 3));
    // Three `a.` events and `b.x` lost their only delivery; `nobody.listens` never had one,
    // nor the operational `switchyard.delivery.failed` the failed delivery emitted.
    assert_eq!(purged.events, 6);
    assert_eq!(f.statuses().await, ["delivering", "failed", "pending"]);
    assert_eq!(f.count("SELECT COUNT(*) FROM events").await, 3);
    assert_eq!(f.count("SELECT COUNT(*) FROM attempts").await, 2);

    f.clock.advance(30 * DAY);
    let purged = f.purge().await;
    assert_eq!(
        (purged.deliveries, purged.attempts, purged.events),
        (1, 1, 1)
    );
    assert_eq!(f.statuses().await, ["delivering", "pending"]);

    f.clock.advance(400 * DAY);
    assert_eq!(f.purge().await, Purged::default());
    assert_eq!(f.statuses().await, ["delivering", "pending"]);
    assert_eq!(f.count("SELECT COUNT(*) FROM events").await, 2);
    // What is left is consistent: every delivery has its event, every attempt its delivery.
    assert_eq!(
        f.count("SELECT COUNT(*) FROM deliveries WHERE event_id NOT IN (SELECT id FROM events)")
            .await,
        0
    );
    assert_eq!(
        f.count(
            "SELECT COUNT(*) FROM attempts WHERE delivery_id NOT IN (SELECT id FROM deliveries)"
        )
        .await,
        0
    );
}

/// A dead letter retried by hand is judged by when it last changed, not when it was created.
#[tokio::test]
async fn a_delivery_changed_lately_is_kept() {
    let f = fixture().await;
    f.subscription("a.*").await;
    f.event("a.x", None).await;
    let leased = f.lease_all().await;
    f.record(&leased[0], DeliveryStatus::Failed, 0).await;
    f.clock.advance(29 * DAY);
    assert_eq!(
        f.store
            .retry_delivery(&crate::tenant::Scope::Any, &leased[0].id)
            .await
            .unwrap(),
        Some(DeliveryStatus::Failed)
    );
    let leased = f.lease_all().await;
    f.record(&leased[0], DeliveryStatus::Failed, 0).await;
    f.clock.advance(2 * DAY);
    // Only the operational `switchyard.delivery.failed` of the first failure (31 days old, no
    // subscriber) goes; the delivery, changed lately, stays.
    assert_eq!(
        f.purge().await,
        Purged {
            events: 1,
            ..Purged::default()
        }
    );
    f.clock.advance(29 * DAY);
    assert_eq!(f.purge().await.deliveries, 1);
}

/// Within its TTL a key answers with its event; after it, the same key makes a new event (and
/// is then that event's key), while the old event keeps everything but the key.
#[tokio::test]
async fn an_expired_idempotency_key_makes_a_new_event() {
    let f = fixture().await;
    f.subscription("a.*").await;
    let first = f.event("a.x", Some("order-1")).await;
    assert!(!first.duplicate);
    f.clock.advance(23 * Duration::from_secs(3600));
    let again = f.event("a.x", Some("order-1")).await;
    assert!(again.duplicate);
    assert_eq!(again.event_id, first.event_id);

    f.clock.advance(2 * Duration::from_secs(3600));
    let later = f.event("a.x", Some("order-1")).await;
    assert!(!later.duplicate, "the key expired");
    assert_ne!(later.event_id, first.event_id);
    assert_eq!(later.deliveries, 1);
    let again = f.event("a.x", Some("order-1")).await;
    assert!(again.duplicate);
    assert_eq!(again.event_id, later.event_id);

    let (old, deliveries) = f
        .store
        .event(&crate::tenant::Scope::Any, &first.event_id, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.idempotency_key, None);
    assert_eq!(deliveries.len(), 1);
    let (new, _) = f
        .store
        .event(&crate::tenant::Scope::Any, &later.event_id, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new.idempotency_key.as_deref(), Some("order-1"));
}

/// Expunging keeps every row but drops the payload and the stored response bodies; the next
/// lease hands the dispatcher an expunged event, and a result recorded after the expunge (an
/// attempt that was in flight) keeps no response body either.
#[tokio::test]
async fn expunge_removes_the_content_and_keeps_the_rows() {
    let f = fixture().await;
    f.subscription("a.*").await;
    let kept = f.event("a.y", None).await;
    let event = f.event("a.x", None).await;
    let leased = f.lease_all().await;
    let ours: Vec<&Leased> = leased
        .iter()
        .filter(|l| l.event_id == event.event_id)
        .collect();
    f.record(ours[0], DeliveryStatus::Pending, f.clock.now_ms())
        .await;
    assert!(
        f.store
            .expunge_event(&crate::tenant::Scope::Any, &event.event_id)
            .await
            .unwrap()
    );
    assert!(
        f.store
            .expunge_event(&crate::tenant::Scope::Any, &event.event_id)
            .await
            .unwrap(),
        "twice is once"
    );
    assert!(
        !f.store
            .expunge_event(&crate::tenant::Scope::Any, "evt_nope")
            .await
            .unwrap()
    );

    let (stored, deliveries) = f
        .store
        .event(&crate::tenant::Scope::Any, &event.event_id, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.data, "");
    assert_eq!(stored.expunged_at, Some(f.clock.now_ms()));
    let (delivery, attempts) = f
        .store
        .delivery(&crate::tenant::Scope::Any, &deliveries[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.attempts, 1);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, Some(500));
    assert_eq!(attempts[0].response_body, None);

    let batch = f
        .store
        .lease_due(LeaseRequest {
            limit: 10,
            per_subscription: 10,
            held: HashMap::new(),
            exclude: Vec::new(),
            lease: DAY,
            per_tenant: 10,
            held_by_tenant: HashMap::new(),
            exclude_tenants: Vec::new(),
        })
        .await
        .unwrap();
    let again = &batch.leased[0];
    assert_eq!(
        batch.events[&again.event_id].expunged_at,
        stored.expunged_at
    );
    assert_eq!(batch.events[&again.event_id].data, "");
    f.record(again, DeliveryStatus::Failed, 0).await;
    let (_, attempts) = f
        .store
        .delivery(&crate::tenant::Scope::Any, &again.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| &a.response_body)
            .collect::<Vec<_>>(),
        [&None, &None]
    );

    // Another event's content is untouched.
    let other = leased.iter().find(|l| l.event_id == kept.event_id).unwrap();
    f.record(other, DeliveryStatus::Succeeded, 0).await;
    let (other_event, _) = f
        .store
        .event(&crate::tenant::Scope::Any, &kept.event_id, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other_event.data, r#"{"email":"ann@example.com"}"#);
    assert_eq!(other_event.expunged_at, None);
    let (_, attempts) = f
        .store
        .delivery(&crate::tenant::Scope::Any, &other.id)
        .await
        .unwrap()
        .unwrap();
    assert!(attempts[0].response_body.is_some());
}

/// Intake and retention in balance: after the first cycle the file holds as many pages as it
/// needs, and further cycles reuse the freed pages (SQLite's freelist) instead of growing it
/// (by a page or two of index at most, where the random part of the ids lands; without reuse
/// each cycle would add its 300-odd pages).
#[tokio::test]
async fn deleted_pages_are_reused_and_the_file_stops_growing() {
    let f = fixture().await;
    f.subscription("a.*").await;
    let payload = format!(r#"{{"pad":"{}"}}"#, "x".repeat(3000));
    let mut pages = Vec::new();
    for _ in 0..5 {
        let sends = (0..300).map(|_| {
            f.ingestor.ingest(NewEvent {
                event_type: "a.x".into(),
                data: payload.clone(),
                idempotency_key: None,
                only_subscription: None,
                tenant_id: crate::tenant::TenantId::default_tenant(),
            })
        });
        for outcome in futures::future::join_all(sends).await {
            outcome.unwrap();
        }
        f.store
            .write(|conn| Ok(conn.execute("UPDATE deliveries SET status = 'succeeded'", [])?))
            .await
            .unwrap();
        f.clock.advance(8 * DAY);
        assert_eq!(f.purge().await.deliveries, 300);
        pages.push(f.count("PRAGMA page_count").await);
    }
    assert!(
        pages[0] > 300,
        "each event takes a page of its own: {pages:?}"
    );
    assert!(
        pages[4] <= pages[1] + pages[1] / 50,
        "the file grew though as much was deleted as added: {pages:?}"
    );
    assert!(f.count("PRAGMA freelist_count").await > 300);
}

/// The job's loop deletes a backlog larger than a batch in several batches, resting between
/// them (on paused time here), and stops once a batch is not full.
#[tokio::test(start_paused = true)]
async fn the_job_deletes_a_backlog_batch_by_batch() {
    let f = fixture().await;
    f.subscription("a.*").await;
    let n = crate::retention::BATCH * 2 + 100;
    let sends = (0..n).map(|_| {
        f.ingestor.ingest(NewEvent {
            event_type: "a.x".into(),
            data: "{}".into(),
            idempotency_key: None,
            only_subscription: None,
            tenant_id: crate::tenant::TenantId::default_tenant(),
        })
    });
    for outcome in futures::future::join_all(sends).await {
        outcome.unwrap();
    }
    f.store
        .write(|conn| Ok(conn.execute("UPDATE deliveries SET status = 'succeeded'", [])?))
        .await
        .unwrap();
    f.clock.advance(8 * DAY);
    let started = tokio::time::Instant::now();
    let mut cursor = None;
    let metrics = crate::metrics::Metrics::new();
    let deleted =
        crate::retention::purge_all(&f.store, RetentionPolicy::default(), &mut cursor, &metrics)
            .await
            .unwrap();
    assert_eq!(deleted, n);
    assert!(
        started.elapsed() >= Duration::from_millis(20),
        "it rested between its three batches"
    );
    assert_eq!(f.count("SELECT COUNT(*) FROM deliveries").await, 0);
    assert_eq!(f.count("SELECT COUNT(*) FROM events").await, 0);
    assert!(cursor.is_some());
}
