//! The ingest hand-off against a real database: what is inserted leased, what stays pending,
//! and that a handed-off delivery whose process died is queued again like any lease.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::store::{DeliveryStatus, Ingestor, LeaseRequest, NewEvent, NewSubscription, Store};
use crate::tenant::{Scope, TenantId};

const LEASE: Duration = Duration::from_secs(300);

/// Takes the first `take` deliveries offered, and keeps what it is given.
#[derive(Default)]
struct Stub {
    take: usize,
    offered: Mutex<usize>,
    reserved: Mutex<usize>,
    delivered: Mutex<Vec<(Leased, Arc<Event>)>>,
}

impl Handoff for Stub {
    fn lease(&self) -> Duration {
        LEASE
    }
    fn reserve(&self, _tenant: &str, _subscription: &str) -> bool {
        let mut offered = self.offered.lock().unwrap();
        *offered += 1;
        let take = *offered <= self.take;
        *self.reserved.lock().unwrap() += usize::from(take);
        take
    }
    fn deliver(&self, jobs: Vec<(Leased, Arc<Event>)>) {
        *self.reserved.lock().unwrap() -= jobs.len();
        self.delivered.lock().unwrap().extend(jobs);
    }
    fn abandon(&self) {
        *self.reserved.lock().unwrap() = 0;
    }
}

struct Fixture {
    store: Store,
    clock: ManualClock,
    ingestor: Ingestor,
    stub: Arc<Stub>,
    _dir: tempfile::TempDir,
}

async fn fixture(take: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(1_700_000_000_000);
    let store = Store::open_with_clock(&dir.path().join("db.sqlite"), clock.clock())
        .await
        .unwrap();
    let stub = Arc::new(Stub {
        take,
        ..Stub::default()
    });
    store.set_handoff(stub.clone());
    let (ingestor, _) = Ingestor::start(
        store.clone(),
        store.waker(),
        4096,
        64 << 20,
        Duration::from_secs(86_400),
    );
    Fixture {
        store,
        clock,
        ingestor,
        stub,
        _dir: dir,
    }
}

impl Fixture {
    async fn subscription(&self) -> String {
        self.store
            .create_subscription(NewSubscription::to_url(
                "https://receiver.example/hook",
                "*",
            ))
            .await
            .unwrap()
            .id
            .clone()
    }

    async fn event(&self, data: &str) -> String {
        self.ingestor
            .ingest(NewEvent {
                tenant_id: TenantId::default_tenant(),
                event_type: "a.b".into(),
                data: data.into(),
                idempotency_key: None,
                only_subscription: None,
            })
            .await
            .unwrap()
            .first_delivery
            .unwrap()
    }

    async fn status(&self, delivery: &str) -> DeliveryStatus {
        let (delivery, _) = self
            .store
            .delivery(&Scope::Any, delivery)
            .await
            .unwrap()
            .unwrap();
        delivery.status
    }

    async fn lease_all(&self) -> Vec<Leased> {
        self.store
            .lease_due(LeaseRequest {
                limit: 100,
                per_subscription: 100,
                held: HashMap::new(),
                exclude: Vec::new(),
                per_tenant: 100,
                held_by_tenant: HashMap::new(),
                exclude_tenants: Vec::new(),
                lease: LEASE,
            })
            .await
            .unwrap()
            .leased
    }
}

/// A delivery the dispatcher takes is committed leased (token 1, the lease running from the
/// commit) and handed over with its event as stored; one it does not take stays pending for
/// the leaser, which leases only that one.
#[tokio::test]
async fn a_taken_delivery_is_inserted_leased_and_the_rest_stays_pending() {
    let f = fixture(1).await;
    let sub = f.subscription().await;
    let taken = f.event(r#"{"n":1}"#).await;
    let left = f.event(r#"{"n":2}"#).await;

    assert_eq!(f.status(&taken).await, DeliveryStatus::Delivering);
    assert_eq!(f.status(&left).await, DeliveryStatus::Pending);
    let delivered = f.stub.delivered.lock().unwrap().clone();
    let [(leased, event)] = delivered.as_slice() else {
        panic!("expected one handed-off delivery, got {}", delivered.len());
    };
    assert_eq!(leased.id, taken);
    assert_eq!(leased.subscription_id, sub);
    assert_eq!(leased.lease_token, 1);
    assert_eq!(leased.attempts, 0);
    let now = f.clock.clock().now_ms();
    assert_eq!(leased.lease_until, now + crate::clock::duration_ms(LEASE));
    assert_eq!(event.data, r#"{"n":1}"#);
    assert_eq!(event.id, leased.event_id);
    assert_eq!(
        *f.stub.reserved.lock().unwrap(),
        0,
        "every reservation was delivered"
    );

    let leased: Vec<String> = f.lease_all().await.into_iter().map(|l| l.id).collect();
    assert_eq!(leased, vec![left], "the leaser takes only the pending one");
}

/// A handed-off delivery whose process died before its result was recorded is an ordinary
/// expired lease: it is queued again (as at start) and leased with a new token, and a late
/// result of the first lease changes nothing.
#[tokio::test]
async fn a_handed_off_delivery_is_queued_again_after_a_crash() {
    let f = fixture(usize::MAX).await;
    f.subscription().await;
    let id = f.event("{}").await;
    assert_eq!(f.status(&id).await, DeliveryStatus::Delivering);
    assert!(f.lease_all().await.is_empty(), "it is leased already");

    // What `recover` does at the next start.
    assert_eq!(f.store.requeue_expired_leases(i64::MAX).await.unwrap(), 1);
    let again = f.lease_all().await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, id);
    assert_eq!(
        again[0].lease_token, 2,
        "a new lease, fenced from the first"
    );
}

/// Without a dispatcher taking deliveries, ingest leaves every one pending (as before the
/// hand-off existed).
#[tokio::test]
async fn nothing_is_inserted_leased_when_nothing_is_taken() {
    let f = fixture(0).await;
    f.subscription().await;
    let id = f.event("{}").await;
    assert_eq!(f.status(&id).await, DeliveryStatus::Pending);
    assert_eq!(*f.stub.offered.lock().unwrap(), 1);
    assert!(f.stub.delivered.lock().unwrap().is_empty());
}
