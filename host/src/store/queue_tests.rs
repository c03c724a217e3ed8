use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::store::{
    Attempt, Completion, DeliveryStatus, Ingestor, NewEvent, NewSubscription, Recorded,
    SubscriptionEffect,
};

const LEASE: Duration = Duration::from_secs(300);

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
    let (ingestor, _) = Ingestor::start(
        store.clone(),
        store.waker(),
        4096,
        64 << 20,
        std::time::Duration::from_secs(86_400),
    );
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

    async fn events(&self, event_type: &str, n: usize) {
        let sends = (0..n).map(|_| {
            self.ingestor.ingest(NewEvent {
                tenant_id: crate::tenant::TenantId::default_tenant(),
                event_type: event_type.into(),
                data: "{}".into(),
                idempotency_key: None,
                only_subscription: None,
            })
        });
        for outcome in futures::future::join_all(sends).await {
            outcome.unwrap();
        }
    }

    async fn lease(&self, limit: usize, exclude: &[&str]) -> LeaseBatch {
        self.store
            .lease_due(LeaseRequest {
                limit,
                per_subscription: limit,
                held: HashMap::new(),
                exclude: exclude.iter().map(|s| (*s).to_owned()).collect(),
                per_tenant: limit,
                held_by_tenant: HashMap::new(),
                exclude_tenants: Vec::new(),
                lease: LEASE,
            })
            .await
            .unwrap()
    }

    async fn count(&self, sql: &'static str) -> i64 {
        self.store
            .read(move |conn| Ok(conn.query_row(sql, [], |r| r.get(0))?))
            .await
            .unwrap()
    }
}

fn completion(leased: &Leased, status: DeliveryStatus, next_attempt_at: i64) -> Completion {
    Completion {
        leased: leased.clone(),
        status,
        next_attempt_at,
        attempt: Some(Attempt {
            at: 0,
            outcome: if status == DeliveryStatus::Succeeded {
                "succeeded".into()
            } else {
                "failed".into()
            },
            status_code: Some(if status == DeliveryStatus::Succeeded {
                204
            } else {
                500
            }),
            latency_ms: Some(1),
            error: None,
            plugin_version: None,
            response_body: None,
        }),
        last_error: None,
        skip_reason: None,
        effect: SubscriptionEffect::None,
    }
}

/// The query plans: the due walk reads only the index of runnable queues, a queue's
/// deliveries come from its own index, and nothing scans the deliveries table.
#[tokio::test]
async fn the_lease_reads_only_runnable_queues_and_indexed_deliveries() {
    let f = fixture().await;
    f.subscription("*").await;
    let plans = f
        .store
        .read(|conn| {
            let mut out = Vec::new();
            for sql in [DUE_QUEUES, LEASE_QUEUE, SET_NEXT_DUE, EARLIEST_DUE] {
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let unbound = vec![rusqlite::types::Null; stmt.parameter_count()];
                let details = all_rows(&mut stmt, rusqlite::params_from_iter(unbound), |r| {
                    Ok(r.get::<_, String>(3)?)
                })?;
                out.push(details.join(" | "));
            }
            Ok(out)
        })
        .await
        .unwrap();
    let [due, lease, next_due, earliest] = plans.as_slice() else {
        panic!("{plans:?}");
    };
    eprintln!("{plans:#?}");
    let uses = |plan: &str, index: &str| {
        plan.contains(&format!("USING INDEX {index}"))
            || plan.contains(&format!("USING COVERING INDEX {index}"))
    };
    assert!(uses(due, "subscription_queues_due"), "{due}");
    assert!(uses(earliest, "subscription_queues_due"), "{earliest}");
    assert!(uses(lease, "deliveries_pending"), "{lease}");
    assert!(uses(next_due, "deliveries_pending"), "{next_due}");
    for plan in &plans {
        assert!(!plan.contains("SCAN deliveries"), "a full scan: {plan}");
        assert!(
            !plan.contains("SCAN subscription_queues"),
            "a full scan: {plan}"
        );
    }
}

/// However large a disabled subscription's backlog, the due walk and the earliest-due query
/// take the same few steps: they never see it. Enabling it makes it leasable at once.
#[tokio::test]
async fn a_parked_backlog_costs_the_leaser_nothing_and_waits_for_enable() {
    let f = fixture().await;
    let parked = f.subscription("parked.*").await;
    let live = f.subscription("live.*").await;
    f.store
        .disable_subscription(&parked, "receiver answered 410 Gone")
        .await
        .unwrap();
    f.events("parked.x", 3_000).await;
    f.events("live.x", 3).await;
    assert_eq!(
        f.count("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
            .await,
        3_003,
        "events for a disabled subscription get their deliveries (parked)"
    );

    let steps = |sql: &'static str| {
        f.store.read(move |conn| {
            let mut stmt = conn.prepare(sql)?;
            let mut rows = stmt.query((i64::MAX, "[]", 1000, "[]"))?;
            while rows.next()?.is_some() {}
            drop(rows);
            Ok(stmt.get_status(rusqlite::StatementStatus::VmStep))
        })
    };
    let (due_steps, earliest_steps) = (
        steps(DUE_QUEUES).await.unwrap(),
        f.store
            .read(|conn| {
                let mut stmt = conn.prepare(EARLIEST_DUE)?;
                let mut rows = stmt.query(["[]"])?;
                while rows.next()?.is_some() {}
                drop(rows);
                Ok(stmt.get_status(rusqlite::StatementStatus::VmStep))
            })
            .await
            .unwrap(),
    );
    assert!(due_steps < 200, "the due walk took {due_steps} steps");
    assert!(
        earliest_steps < 200,
        "earliest due took {earliest_steps} steps"
    );

    let batch = f.lease(1_000, &[]).await;
    assert_eq!(batch.leased.len(), 3);
    assert!(batch.leased.iter().all(|l| l.subscription_id == live));
    assert_eq!(
        f.store.earliest_due(&[]).await.unwrap(),
        None,
        "nothing runnable left"
    );

    f.store
        .enable_subscription(&crate::tenant::Scope::Any, &parked)
        .await
        .unwrap();
    assert_eq!(
        f.store.earliest_due(&[]).await.unwrap(),
        Some(f.clock.now_ms())
    );
    let batch = f.lease(1_000, &[]).await;
    assert_eq!(batch.leased.len(), 1_000);
    assert!(batch.more, "more of the backlog is due");
    assert!(batch.leased.iter().all(|l| l.subscription_id == parked));
}

/// A lease is shared between the due subscriptions, and those the dispatcher has enough of
/// are left out (without walking their deliveries).
#[tokio::test]
async fn a_lease_is_shared_between_due_subscriptions_leaving_out_full_ones() {
    let f = fixture().await;
    let a = f.subscription("*").await;
    let b = f.subscription("*").await;
    let c = f.subscription("*").await;
    f.events("x.y", 100).await;
    let batch = f.lease(30, &[]).await;
    let mut per: HashMap<&str, usize> = HashMap::new();
    for l in &batch.leased {
        *per.entry(l.subscription_id.as_str()).or_default() += 1;
    }
    assert_eq!(per.len(), 3, "{per:?}");
    assert!(per.values().all(|n| *n == 10), "{per:?}");
    assert!(batch.more);
    assert_eq!(
        batch.events.len(),
        10,
        "each leased delivery's event comes along"
    );

    let batch = f.lease(30, &[&a, &b]).await;
    assert_eq!(batch.leased.len(), 30);
    assert!(batch.leased.iter().all(|l| l.subscription_id == c));
}

/// Item 1: time is the store's clock. A retry comes due when the clock says so, not before,
/// and nothing sleeps.
#[tokio::test]
async fn a_retry_comes_due_when_the_clock_says_so() {
    let f = fixture().await;
    f.subscription("*").await;
    f.events("x.y", 1).await;
    let leased = f.lease(10, &[]).await.leased.pop().unwrap();
    let due = f.clock.now_ms() + 5_000;
    let retry = completion(&leased, DeliveryStatus::Pending, due);
    f.store.record(Arc::from([retry])).await.unwrap();
    assert_eq!(f.store.earliest_due(&[]).await.unwrap(), Some(due));
    f.clock.advance(Duration::from_millis(4_999));
    assert!(f.lease(10, &[]).await.leased.is_empty(), "not due yet");
    f.clock.advance(Duration::from_millis(1));
    let again = f.lease(10, &[]).await.leased;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].lease_until, due + 300_000);
}

/// Item 5: a lease that ran out is taken back and given anew; the first lease's late result
/// and release change nothing, and the new lease's result counts.
#[tokio::test]
async fn a_late_result_of_an_expired_lease_is_ignored() {
    let f = fixture().await;
    f.subscription("*").await;
    f.events("x.y", 1).await;
    let first = f.lease(10, &[]).await.leased.pop().unwrap();
    f.clock.advance(LEASE + Duration::from_secs(1));
    let requeued = f
        .store
        .requeue_expired_leases(f.clock.now_ms())
        .await
        .unwrap();
    assert_eq!(requeued, 1);
    let second = f.lease(10, &[]).await.leased.pop().unwrap();
    assert_eq!(second.id, first.id);
    assert_ne!(second.lease_token, first.lease_token);

    let late = completion(&first, DeliveryStatus::Pending, f.clock.now_ms());
    let recorded = f.store.record(Arc::from([late])).await.unwrap();
    assert_eq!(
        recorded,
        Recorded {
            applied: 0,
            stale: 1
        }
    );
    assert_eq!(
        f.store
            .release_leases(vec![LeaseRef::from(&first)])
            .await
            .unwrap(),
        0,
        "the old lease cannot give the new one back"
    );
    let (delivery, attempts) = f
        .store
        .delivery(&crate::tenant::Scope::Any, &first.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        delivery.status,
        DeliveryStatus::Delivering,
        "still the second lease's"
    );
    assert!(attempts.is_empty(), "the late attempt is not recorded");

    let done = completion(&second, DeliveryStatus::Succeeded, f.clock.now_ms());
    let recorded = f.store.record(Arc::from([done])).await.unwrap();
    assert_eq!(
        recorded,
        Recorded {
            applied: 1,
            stale: 0
        }
    );
    let (delivery, attempts) = f
        .store
        .delivery(&crate::tenant::Scope::Any, &first.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Succeeded);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, Some(204));
}

/// Given back, a lease's delivery is due again as it was; parked if its subscription is
/// disabled.
#[tokio::test]
async fn released_leases_are_due_again_unless_their_subscription_is_disabled() {
    let f = fixture().await;
    let sub = f.subscription("*").await;
    f.events("x.y", 4).await;
    let leased = f.lease(10, &[]).await.leased;
    let (back, keep) = leased.split_at(2);
    f.store
        .release_leases(back.iter().map(LeaseRef::from).collect())
        .await
        .unwrap();
    assert_eq!(f.lease(10, &[]).await.leased.len(), 2);
    f.store.disable_subscription(&sub, "gone").await.unwrap();
    f.store
        .release_leases(keep.iter().map(LeaseRef::from).collect())
        .await
        .unwrap();
    assert!(f.lease(10, &[]).await.leased.is_empty(), "parked");
    assert_eq!(f.store.earliest_due(&[]).await.unwrap(), None);
}

/// Deleting a subscription cancels its deliveries in flight too: their results no longer
/// count, and nothing of it stays queued.
#[tokio::test]
async fn deleting_a_subscription_cancels_its_leased_deliveries() {
    let f = fixture().await;
    let sub = f.subscription("*").await;
    f.events("x.y", 2).await;
    let leased = f.lease(10, &[]).await.leased;
    assert!(
        f.store
            .delete_subscription(&crate::tenant::Scope::Any, &sub)
            .await
            .unwrap()
    );
    let late = completion(&leased[0], DeliveryStatus::Pending, f.clock.now_ms());
    assert_eq!(f.store.record(Arc::from([late])).await.unwrap().stale, 1);
    assert_eq!(
        f.store
            .release_leases(vec![LeaseRef::from(&leased[1])])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        f.count("SELECT COUNT(*) FROM deliveries WHERE status = 'cancelled'")
            .await,
        2
    );
    assert_eq!(f.store.earliest_due(&[]).await.unwrap(), None);
}

/// Leasing takes turns across tenants: a tenant with many due queues and a deep backlog gets
/// only its share of a batch, the other tenant's due deliveries come in the same batch, and a
/// tenant past its room (or excluded) gets nothing.
#[tokio::test]
async fn leases_take_turns_across_tenants() {
    use crate::tenant::TenantId;
    let f = fixture().await;
    let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
    for t in [&a, &b] {
        f.store.put_tenant(t, None, "{}".into()).await.unwrap();
    }
    let subscribe = |tenant: TenantId, pattern: &'static str| {
        let store = f.store.clone();
        async move {
            store
                .create_subscription(NewSubscription {
                    tenant_id: tenant,
                    ..NewSubscription::to_url("https://receiver.example/hook", pattern)
                })
                .await
                .unwrap()
        }
    };
    for _ in 0..5 {
        subscribe(a.clone(), "*").await;
    }
    subscribe(b.clone(), "*").await;
    let publish = |tenant: &TenantId, n: usize| {
        let sends = (0..n).map(|_| {
            f.ingestor.ingest(NewEvent {
                tenant_id: tenant.clone(),
                event_type: "x".into(),
                data: "{}".into(),
                idempotency_key: None,
                only_subscription: None,
            })
        });
        futures::future::join_all(sends)
    };
    // A's backlog is older (due first): without turns it would fill the whole batch.
    for o in publish(&a, 40).await {
        o.unwrap();
    }
    f.clock.advance(Duration::from_millis(10));
    for o in publish(&b, 40).await {
        o.unwrap();
    }
    let request =
        |per_tenant: usize, held_by_tenant: HashMap<String, usize>, exclude: Vec<String>| {
            LeaseRequest {
                limit: 20,
                per_subscription: 20,
                held: HashMap::new(),
                exclude: Vec::new(),
                per_tenant,
                held_by_tenant,
                exclude_tenants: exclude,
                lease: LEASE,
            }
        };
    let batch = f
        .store
        .lease_due(request(20, HashMap::new(), Vec::new()))
        .await
        .unwrap();
    let of = |batch: &LeaseBatch, t: &str| batch.leased.iter().filter(|l| l.tenant_id == t).count();
    assert_eq!((of(&batch, "a"), of(&batch, "b")), (10, 10), "half each");
    // A holding its share already: only B's.
    let held = HashMap::from([("a".to_owned(), 20)]);
    let batch = f
        .store
        .lease_due(request(20, held, Vec::new()))
        .await
        .unwrap();
    assert_eq!((of(&batch, "a"), of(&batch, "b")), (0, 10));
    let batch = f
        .store
        .lease_due(request(20, HashMap::new(), vec!["b".to_owned()]))
        .await
        .unwrap();
    assert_eq!(
        (of(&batch, "a"), of(&batch, "b")),
        (20, 0),
        "b excluded: a may use it all"
    );
}

/// A failing streak starts at a subscription's first failed attempt, keeps that start through
/// later failures, and ends with a success — per subscription, several in one batch.
#[tokio::test]
async fn results_start_keep_and_end_each_subscriptions_failing_streak() {
    let f = fixture().await;
    let (a, b) = (f.subscription("*").await, f.subscription("*").await);
    let streak = |id: String| {
        let store = f.store.clone();
        async move {
            store
                .read(move |conn| {
                    Ok(conn.query_row(
                        "SELECT first_failure_at FROM subscriptions WHERE id = ?1",
                        [id],
                        |r| r.get::<_, Option<i64>>(0),
                    )?)
                })
                .await
                .unwrap()
        }
    };
    let with = |leased: &Leased, effect| Completion {
        effect,
        ..completion(leased, DeliveryStatus::Pending, 0)
    };
    f.events("x.y", 3).await;
    let leased = f.lease(10, &[]).await.leased;
    let of = |sub: &str| -> Vec<&Leased> {
        leased.iter().filter(|l| l.subscription_id == sub).collect()
    };
    let (of_a, of_b) = (of(&a), of(&b));
    assert_eq!((of_a.len(), of_b.len()), (3, 3));

    let started = f.clock.now_ms();
    let batch = [
        with(of_a[0], SubscriptionEffect::Failed),
        with(of_b[0], SubscriptionEffect::Failed),
    ];
    f.store.record(Arc::from(batch)).await.unwrap();
    assert_eq!(streak(a.clone()).await, Some(started));
    assert_eq!(streak(b.clone()).await, Some(started));

    f.clock.advance(Duration::from_secs(60));
    let batch = [
        with(of_a[1], SubscriptionEffect::Failed),
        with(of_b[1], SubscriptionEffect::Succeeded),
    ];
    f.store.record(Arc::from(batch)).await.unwrap();
    assert_eq!(
        streak(a.clone()).await,
        Some(started),
        "a later failure keeps the start"
    );
    assert_eq!(streak(b.clone()).await, None, "a success ends the streak");

    f.store
        .record(Arc::from([with(of_a[2], SubscriptionEffect::Succeeded)]))
        .await
        .unwrap();
    assert_eq!(streak(a).await, None);
}
