//! Tenants in the store: the upgrade of a database made before them, ingest that matches only
//! the event's tenant, idempotency per tenant, scoped reads, and deleting a tenant.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::*;
use crate::store::migrate_as_of;
use crate::store::{DeliveryFilter, IngestOutcome, Ingestor, NewEvent, NewSubscription};
use crate::tenant::{Scope, TenantId};

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

fn new_subscription(tenant_id: &TenantId, pattern: &str) -> NewSubscription {
    NewSubscription {
        tenant_id: tenant_id.clone(),
        ..NewSubscription::to_url("https://receiver.example/hook", pattern)
    }
}

fn event(tenant_id: &TenantId, event_type: &str, key: Option<&str>) -> NewEvent {
    NewEvent {
        tenant_id: tenant_id.clone(),
        event_type: event_type.into(),
        data: "{}".into(),
        idempotency_key: key.map(Into::into),
        only_subscription: None,
    }
}

/// A database made by the previous release (the migrations before tenants, filled by hand
/// with that schema's statements) opens with the new code: every row lands in `default`, the
/// old idempotency keys still deduplicate there, and another tenant may reuse them.
#[tokio::test]
async fn a_database_from_before_tenants_upgrades_in_place_into_default() {
    const BEFORE_TENANTS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let store = Store::open(&path).await.unwrap();
    store.close().await;
    // Rebuild it as the previous release left it: its schema, its rows.
    std::fs::remove_file(&path).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("db.sqlite{suffix}")));
    }
    let mut conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    migrate_as_of(&mut conn, BEFORE_TENANTS);
    // Plain-text secret: the store seals it at open, as it does for any old row.
    conn.execute_batch(
        r#"INSERT INTO subscriptions (id, url, events, signature, secret, created_at, updated_at)
           VALUES ('sub_OLD', 'https://receiver.example/hook', '["order.*"]',
                   '{"scheme":"standard-webhooks"}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 1, 1);
           INSERT INTO events (id, idempotency_key, type, data, created_at)
           VALUES ('evt_OLD', 'order-1', 'order.paid', '{"n":1}', 2);
           INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, next_attempt_at, created_at, updated_at)
           VALUES ('dlv_OLD', 'evt_OLD', 'sub_OLD', 'failed', 1, 2, 2, 3);
           INSERT INTO attempts (delivery_id, at, outcome, status_code) VALUES ('dlv_OLD', 3, 'failed', 500);"#,
    )
    .unwrap();
    drop(conn);

    let store = Store::open(&path).await.unwrap();
    let default = TenantId::default_tenant();
    let sub = store
        .subscription(&Scope::One(default.clone()), "sub_OLD")
        .await
        .unwrap()
        .expect("the old subscription is in default");
    assert_eq!(sub.tenant_id, default);
    let (old_event, deliveries) = store
        .event(&Scope::One(default.clone()), "evt_OLD", 10)
        .await
        .unwrap()
        .expect("the old event is in default");
    assert_eq!(old_event.tenant_id, default);
    assert_eq!(old_event.data, r#"{"n":1}"#);
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].tenant_id, default);
    let (_, attempts) = store
        .delivery(&Scope::One(default.clone()), "dlv_OLD")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert!(store.tenant(&default).await.unwrap().is_some());
    let other = tenant("ws_1");
    assert!(
        store
            .subscription(&Scope::One(other.clone()), "sub_OLD")
            .await
            .unwrap()
            .is_none()
    );

    // The old idempotency key deduplicates in default, and is free in another tenant.
    let (ingestor, _) = Ingestor::start(
        store.clone(),
        store.waker(),
        64,
        1 << 20,
        // The old event is years old: a TTL past it.
        std::time::Duration::from_secs(100 * 365 * 86_400),
    );
    let again = ingestor
        .ingest(event(&default, "order.paid", Some("order-1")))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.event_id, "evt_OLD");
    store.put_tenant(&other, None, "{}".into()).await.unwrap();
    let fresh = ingestor
        .ingest(event(&other, "order.paid", Some("order-1")))
        .await
        .unwrap();
    assert!(!fresh.duplicate);
    assert_eq!(fresh.deliveries, 0, "default's subscription is not ws_1's");
    // The foreign keys survived the rebuild of `events`.
    let broken: i64 = store
        .read(|c| {
            Ok(
                c.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
        .unwrap();
    assert_eq!(broken, 0);
    store.close().await;
}

/// An event reaches only its own tenant's subscriptions, through the matching index kept in
/// step with creates and deletes; an unknown tenant is refused alone.
#[tokio::test]
async fn ingest_matches_only_the_events_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
    let (a, b) = (tenant("a"), tenant("b"));
    store.put_tenant(&a, None, "{}".into()).await.unwrap();
    store.put_tenant(&b, None, "{}".into()).await.unwrap();
    let sub_a = store
        .create_subscription(new_subscription(&a, "*"))
        .await
        .unwrap();
    let sub_b = store
        .create_subscription(new_subscription(&b, "*"))
        .await
        .unwrap();
    let (ingestor, _) = Ingestor::start(
        store.clone(),
        store.waker(),
        64,
        1 << 20,
        std::time::Duration::from_secs(86_400),
    );

    let to_a = ingestor
        .ingest(event(&a, "post.published", None))
        .await
        .unwrap();
    assert_eq!(to_a.deliveries, 1);
    let deliveries = store
        .list_deliveries(&Scope::Any, &DeliveryFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].subscription_id, sub_a.id);
    assert_eq!(deliveries[0].tenant_id, a);
    assert!(
        store
            .list_deliveries(&Scope::One(b.clone()), &DeliveryFilter::default(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The same idempotency key in two tenants: two events.
    let ka = ingestor.ingest(event(&a, "x", Some("k"))).await.unwrap();
    let kb = ingestor.ingest(event(&b, "x", Some("k"))).await.unwrap();
    assert!(!ka.duplicate && !kb.duplicate);
    assert_ne!(ka.event_id, kb.event_id);
    // Another tenant's event is not found in a's scope.
    assert!(
        store
            .event(&Scope::One(a.clone()), &kb.event_id, 1)
            .await
            .unwrap()
            .is_none()
    );
    let missing = ingestor.ingest(event(&tenant("nobody"), "x", None)).await;
    assert!(
        matches!(missing, Err(StoreError::UnknownTenant(_))),
        "{missing:?}"
    );

    // Deleting b removes its subscription from matching and refuses its events.
    assert_eq!(
        store.delete_tenant(&b).await.unwrap(),
        TenantDeleted::Deleted
    );
    assert!(store.cached_subscription(&sub_b.id).is_none());
    let after = ingestor.ingest(event(&b, "x", None)).await;
    assert!(
        matches!(after, Err(StoreError::UnknownTenant(_))),
        "{after:?}"
    );
    assert_eq!(
        store
            .delete_tenant(&TenantId::default_tenant())
            .await
            .unwrap(),
        TenantDeleted::Default
    );
    store.close().await;
}

/// Ingest checks tenants in memory (no query per tenant): the set follows upserts and
/// deletes at once — an event right after a delete is refused, right after a re-create
/// accepted — and a reopened store reads it back from the database.
#[tokio::test]
async fn the_tenants_ingest_knows_follow_deletes_at_once_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let store = Store::open(&path).await.unwrap();
    let start = |store: &Store| {
        Ingestor::start(
            store.clone(),
            store.waker(),
            64,
            1 << 20,
            std::time::Duration::from_secs(86_400),
        )
        .0
    };
    let ingestor = start(&store);
    let (c, kept) = (tenant("c"), tenant("kept"));
    let refused = |outcome: &Result<IngestOutcome, StoreError>| matches!(outcome, Err(StoreError::UnknownTenant(id)) if id == "c");
    assert!(refused(&ingestor.ingest(event(&c, "x", None)).await));
    store.put_tenant(&c, None, "{}".into()).await.unwrap();
    store.put_tenant(&kept, None, "{}".into()).await.unwrap();
    assert!(ingestor.ingest(event(&c, "x", None)).await.is_ok());

    // Many events of c in flight while it is deleted: each is either committed before the
    // delete or refused; every one sent after the delete returned is refused.
    let racing: Vec<_> = (0..50)
        .map(|_| {
            let ingestor = ingestor.clone();
            let c = c.clone();
            tokio::spawn(async move { ingestor.ingest(event(&c, "x", None)).await })
        })
        .collect();
    assert_eq!(
        store.delete_tenant(&c).await.unwrap(),
        TenantDeleted::Deleted
    );
    let after = ingestor.ingest(event(&c, "x", None)).await;
    assert!(refused(&after), "{after:?}");
    for r in racing {
        let outcome = r.await.unwrap();
        assert!(outcome.is_ok() || refused(&outcome), "{outcome:?}");
    }
    store.put_tenant(&c, None, "{}".into()).await.unwrap();
    assert!(ingestor.ingest(event(&c, "x", None)).await.is_ok());
    assert_eq!(
        store.delete_tenant(&c).await.unwrap(),
        TenantDeleted::Deleted
    );
    drop(ingestor);
    store.close().await;

    let store = Store::open(&path).await.unwrap();
    let ingestor = start(&store);
    assert!(refused(&ingestor.ingest(event(&c, "x", None)).await));
    assert!(ingestor.ingest(event(&kept, "x", None)).await.is_ok());
    let default = TenantId::default_tenant();
    assert!(ingestor.ingest(event(&default, "x", None)).await.is_ok());
    store.close().await;
}

/// The matching index is changed in place by every kind of subscription change: an update of
/// the patterns, a disable (its events still make parked deliveries), a delete.
#[tokio::test]
async fn matching_follows_updates_disables_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
    let a = tenant("a");
    store.put_tenant(&a, None, "{}".into()).await.unwrap();
    let sub = store
        .create_subscription(new_subscription(&a, "post.*"))
        .await
        .unwrap();
    let (ingestor, _) = Ingestor::start(
        store.clone(),
        store.waker(),
        64,
        1 << 20,
        std::time::Duration::from_secs(86_400),
    );
    let deliveries = |event_type: &'static str| {
        let (ingestor, a) = (ingestor.clone(), a.clone());
        async move {
            ingestor
                .ingest(event(&a, event_type, None))
                .await
                .unwrap()
                .deliveries
        }
    };
    assert_eq!(deliveries("post.published").await, 1);
    assert_eq!(deliveries("user.created").await, 0);
    let update = crate::store::SubscriptionUpdate {
        url: sub.url.clone(),
        events: vec!["user.*".into()],
        plugin: None,
        plugin_config: None,
        description: None,
        headers: BTreeMap::new(),
        signature: sub.signature.clone(),
        secret: None,
        rotation_grace_ms: 0,
    };
    store
        .update_subscription(&Scope::Any, &sub, update)
        .await
        .unwrap();
    assert_eq!(deliveries("post.published").await, 0);
    assert_eq!(deliveries("user.created").await, 1);
    store.disable_subscription(&sub.id, "test").await.unwrap();
    assert_eq!(deliveries("user.created").await, 1, "parked, not dropped");
    assert!(
        store
            .delete_subscription(&Scope::Any, &sub.id)
            .await
            .unwrap()
    );
    assert_eq!(deliveries("user.created").await, 0);
    store.close().await;
}
