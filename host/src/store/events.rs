//! Event ingest with group commit: concurrent `POST /v1/events` requests queue here, and one
//! writer commits whatever has queued — events and their delivery rows — in one transaction,
//! then answers each request. One fsync and a handful of statements per batch instead of per
//! event; an event is answered only after its commit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rusqlite::{OptionalExtension, Transaction};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::handoff::Handoff;
use super::matching::Index;
use super::{
    Delivery, Event, Leased, Store, StoreError, Subscription, SubscriptionStatus, all_rows,
    json_list, new_id_at, queue,
};
use crate::clock::duration_ms;
use crate::tenant::{Scope, TenantId};

/// Requests committed together at most.
const MAX_BATCH: usize = 512;

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The tenant it is published into: it matches only that tenant's subscriptions.
    pub tenant_id: TenantId,
    /// e.g. `post.published` (validated by the caller).
    pub event_type: String,
    /// The data as JSON text.
    pub data: String,
    /// The producer's idempotency key.
    pub idempotency_key: Option<String>,
    /// Deliver to this subscription only, whatever its filter (test events).
    pub only_subscription: Option<String>,
}

/// What ingest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    /// The event's id (the earlier one when the idempotency key was seen before).
    pub event_id: String,
    /// Deliveries created for it (or created back then).
    pub deliveries: usize,
    /// The first delivery's id, if any (used by test events).
    pub first_delivery: Option<String>,
    /// Whether the idempotency key matched an earlier event.
    pub duplicate: bool,
}

struct Request {
    event: NewEvent,
    reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

/// Handle to the group-commit writer.
#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<Request>,
    /// One permit per byte of the events waiting for their commit: the count bound alone let
    /// `max_pending` events of the largest size (4,096 × 1 MiB) wait at once.
    bytes: Arc<Semaphore>,
    /// All the semaphore's permits.
    capacity: u32,
}

impl Ingestor {
    /// Starts the writer task, with room for `max_pending` events and `max_pending_bytes`
    /// bytes of them waiting for their commit. `delivered` is notified after each commit that
    /// created deliveries, so dispatch starts at once rather than on its next timer. An
    /// idempotency key answers with its first event for `idempotency_ttl`; after that the same
    /// key makes a new event.
    pub fn start(
        store: Store,
        delivered: Arc<Notify>,
        max_pending: usize,
        max_pending_bytes: usize,
        idempotency_ttl: Duration,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(max_pending.max(1));
        let ttl_ms = crate::clock::duration_ms(idempotency_ttl);
        let task = tokio::spawn(writer(store, rx, delivered, ttl_ms));
        // `acquire_many` counts in u32: a budget past 4 GiB is 4 GiB.
        let capacity = u32::try_from(max_pending_bytes.min(Semaphore::MAX_PERMITS))
            .unwrap_or(u32::MAX)
            .max(1);
        let bytes = Arc::new(Semaphore::new(capacity as usize));
        (
            Self {
                tx,
                bytes,
                capacity,
            },
            task,
        )
    }

    /// Stores an event and its deliveries; returns once they are committed.
    ///
    /// # Errors
    /// Database errors, [`StoreError::Overloaded`] when `max_pending` events or
    /// `max_pending_bytes` bytes already wait, or [`StoreError::Closed`] while shutting down.
    pub async fn ingest(&self, event: NewEvent) -> Result<IngestOutcome, StoreError> {
        // Held until the commit answers, whether the caller waits for it or not.
        let _bytes = self.reserve(&event)?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Request { event, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Room for the event's bytes among those waiting, or [`StoreError::Overloaded`].
    fn reserve(&self, event: &NewEvent) -> Result<OwnedSemaphorePermit, StoreError> {
        let size = event.data.len()
            + event.event_type.len()
            + event.idempotency_key.as_ref().map_or(0, String::len);
        // An event larger than the whole budget could never be taken: it counts as the whole
        // budget (the configuration keeps max_pending_bytes >= max_event_bytes anyway).
        let permits = u32::try_from(size)
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity);
        match self.bytes.clone().try_acquire_many_owned(permits) {
            Ok(permit) => Ok(permit),
            Err(tokio::sync::TryAcquireError::NoPermits) => Err(StoreError::Overloaded),
            Err(tokio::sync::TryAcquireError::Closed) => Err(StoreError::Closed),
        }
    }
}

async fn writer(
    store: Store,
    mut rx: mpsc::Receiver<Request>,
    delivered: Arc<Notify>,
    ttl_ms: i64,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, replies): (Vec<NewEvent>, Vec<_>) =
            batch.drain(..).map(|r| (r.event, r.reply)).unzip();
        let clock = store.clock().clone();
        let (tenants, index, by_id) = (
            store.tenants.clone(),
            store.subscription_index(),
            store.subscriptions.clone(),
        );
        let handoff = store.handoff();
        let in_tx = handoff.clone();
        let committed = store
            .transaction(move |tx| {
                let now = clock.now_ms();
                // Both read on the writer's thread, which changes them: exactly what is
                // committed before this batch.
                let live = tenants.lock();
                let routes = Routes {
                    index: &index.lock(),
                    by_id: &by_id.read().unwrap_or_else(PoisonError::into_inner),
                };
                let batch = Batch {
                    events: &events,
                    live: &live,
                    routes: &routes,
                    handoff: in_tx.as_deref(),
                    now,
                    keys_since: now.saturating_sub(ttl_ms),
                };
                commit_batch(tx, &batch)
            })
            .await;
        match committed {
            Ok(Committed {
                outcomes,
                handed,
                pending,
            }) => {
                if let Some(handoff) = &handoff
                    && !handed.is_empty()
                {
                    handoff.deliver(handed);
                }
                // Only deliveries left pending need the leaser; handed-off ones are queued.
                if pending {
                    delivered.notify_one();
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(err) => {
                if let Some(handoff) = &handoff {
                    handoff.abandon();
                }
                let err = store.refine(err);
                tracing::error!(error = %err, "event batch failed to commit");
                for reply in replies {
                    let _ = reply.send(Err(err.for_each_waiter()));
                }
            }
        }
    }
}

/// An ingested event.
pub(super) const INSERT_EVENT: &str = "INSERT INTO events (id, tenant_id, idempotency_key, type, data, created_at) VALUES (?, ?, ?, ?, ?, ?)";
/// A fresh delivery, due now.
pub(super) const INSERT_PENDING: &str =
    "INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, status, attempts, next_attempt_at, created_at, updated_at)
     VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?)";
/// A fresh delivery handed to the dispatcher, already leased.
pub(super) const INSERT_LEASED: &str =
    "INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, status, attempts, next_attempt_at, created_at, updated_at, lease_until, lease_token)
     VALUES (?, ?, ?, ?, 'delivering', 0, ?, ?, ?, ?, 1)";

/// One batch to commit, and what it is committed against.
struct Batch<'a> {
    events: &'a [NewEvent],
    /// The tenants that exist.
    live: &'a HashSet<String>,
    routes: &'a Routes<'a>,
    /// Where fresh deliveries go already leased, if the dispatcher takes them.
    handoff: Option<&'a dyn Handoff>,
    now: i64,
    /// Idempotency keys seen since then still answer with their event.
    keys_since: i64,
}

/// What a committed batch did.
struct Committed {
    /// Per event, in order.
    outcomes: Vec<Result<IngestOutcome, StoreError>>,
    /// Deliveries inserted already leased, for the dispatcher.
    handed: Vec<(Leased, Arc<Event>)>,
    /// Whether any delivery was inserted `pending` (for the leaser).
    pending: bool,
}

/// Inserts a batch of events and their deliveries (pending, due `now`, or already leased when
/// the dispatcher takes them, see `handoff`; a disabled subscription's are parked with the rest
/// of its queue, see `queue`); an idempotency key seen since `keys_since` in the event's tenant
/// (or earlier in the batch) answers with the earlier event instead; an older one is taken off
/// its event (which keeps everything else) and goes to the new event. An event for a tenant
/// not in `live` (the tenants that exist) is refused alone ([`StoreError::UnknownTenant`]); the
/// rest of the batch commits.
fn commit_batch(tx: &Transaction<'_>, batch: &Batch<'_>) -> Result<Committed, StoreError> {
    let now = batch.now;
    let lease_until = batch
        .handoff
        .map_or(now, |h| now.saturating_add(duration_ms(h.lease())));
    let mut known: HashMap<(&str, &str), IngestOutcome> = HashMap::new();
    let mut done = Committed {
        outcomes: Vec::with_capacity(batch.events.len()),
        handed: Vec::new(),
        pending: false,
    };
    let mut insert_event = tx.prepare_cached(INSERT_EVENT)?;
    let mut insert_delivery = tx.prepare_cached(INSERT_PENDING)?;
    let mut insert_leased = tx.prepare_cached(INSERT_LEASED)?;
    // The subscriptions given pending deliveries, whose queues then say so (`queue::queued`).
    let mut queued: Vec<String> = Vec::new();
    for event in batch.events {
        let tenant = event.tenant_id.as_str();
        if !batch.live.contains(tenant) {
            done.outcomes
                .push(Err(StoreError::UnknownTenant(tenant.to_owned())));
            continue;
        }
        if let Some(key) = event.idempotency_key.as_deref() {
            let earlier = match known.get(&(tenant, key)) {
                Some(earlier) => Some(earlier.clone()),
                None => earlier_event(tx, tenant, key, batch.keys_since)?,
            };
            if let Some(earlier) = earlier {
                done.outcomes.push(Ok(IngestOutcome {
                    duplicate: true,
                    ..earlier
                }));
                continue;
            }
        }
        let event_id = new_id_at("evt", now);
        insert_event.execute((
            &event_id,
            tenant,
            &event.idempotency_key,
            &event.event_type,
            &event.data,
            now,
        ))?;
        let mut first_delivery = None;
        let targets = batch.routes.targets(event);
        // The event as the dispatcher reads it, made once for all its handed-off deliveries.
        let mut stored: Option<Arc<Event>> = None;
        for sub in &targets {
            let id = new_id_at("dlv", now);
            let handoff = batch.handoff.filter(|h| {
                sub.status == SubscriptionStatus::Enabled && h.reserve(tenant, &sub.id)
            });
            if handoff.is_some() {
                insert_leased.execute((
                    &id,
                    tenant,
                    &event_id,
                    &sub.id,
                    now,
                    now,
                    now,
                    lease_until,
                ))?;
                let event = stored
                    .get_or_insert_with(|| Arc::new(stored_event(&event_id, event, now)))
                    .clone();
                done.handed.push((
                    Leased {
                        id: id.clone(),
                        event_id: event_id.clone(),
                        subscription_id: sub.id.clone(),
                        tenant_id: tenant.to_owned(),
                        attempts: 0,
                        created_at: now,
                        lease_token: 1,
                        lease_until,
                    },
                    event,
                ));
            } else {
                insert_delivery.execute((&id, tenant, &event_id, &sub.id, now, now, now))?;
                queued.push(sub.id.clone());
            }
            first_delivery.get_or_insert(id);
        }
        let outcome = IngestOutcome {
            event_id,
            deliveries: targets.len(),
            first_delivery,
            duplicate: false,
        };
        if let Some(key) = event.idempotency_key.as_deref() {
            known.insert((tenant, key), outcome.clone());
        }
        done.outcomes.push(Ok(outcome));
    }
    done.pending = !queued.is_empty();
    queue::queued(tx, queued.iter().map(String::as_str), now)?;
    Ok(done)
}

/// The stored form of a fresh event, as [`Event::from_row`] would read it back.
fn stored_event(id: &str, event: &NewEvent, now: i64) -> Event {
    Event {
        id: id.to_owned(),
        tenant_id: event.tenant_id.clone(),
        idempotency_key: event.idempotency_key.clone(),
        event_type: event.event_type.clone(),
        data: event.data.clone(),
        created_at: now,
        expunged_at: None,
    }
}

/// The tenant's earlier event with this idempotency key, with its delivery count, if it was
/// accepted at `since` or later. A key older than that is expired: it is cleared from its event
/// (the key is unique per tenant), so the caller stores a new event with it.
fn earlier_event(
    tx: &Transaction<'_>,
    tenant: &str,
    key: &str,
    since: i64,
) -> Result<Option<IngestOutcome>, StoreError> {
    let found = tx
        .prepare_cached(
            "SELECT e.id, (SELECT COUNT(*) FROM deliveries d WHERE d.event_id = e.id),
             (SELECT MIN(d.id) FROM deliveries d WHERE d.event_id = e.id), e.created_at
             FROM events e WHERE e.tenant_id = ? AND e.idempotency_key = ?",
        )?
        .query_row([tenant, key], |r| {
            Ok((
                IngestOutcome {
                    event_id: r.get(0)?,
                    deliveries: usize::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    first_delivery: r.get(2)?,
                    duplicate: true,
                },
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    match found {
        Some((earlier, at)) if at >= since => Ok(Some(earlier)),
        Some((earlier, _)) => {
            tx.prepare_cached("UPDATE events SET idempotency_key = NULL WHERE id = ?")?
                .execute([&earlier.event_id])?;
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Subscriptions an event goes to: its tenant's whose patterns match (from the index: only
/// that tenant's patterns are looked at), or the one named if it is of the event's tenant.
/// Disabled ones included: their deliveries wait, parked, until the subscription is enabled
/// (what the README promises), rather than being silently never created.
struct Routes<'a> {
    /// The subscriptions by tenant and pattern.
    index: &'a Index<Subscription>,
    /// The subscriptions by id.
    by_id: &'a HashMap<String, Arc<Subscription>>,
}

impl Routes<'_> {
    fn targets(&self, event: &NewEvent) -> Vec<Arc<Subscription>> {
        let tenant = event.tenant_id.as_str();
        match &event.only_subscription {
            Some(id) => self
                .by_id
                .get(id)
                .filter(|s| s.tenant_id.as_str() == tenant)
                .cloned()
                .into_iter()
                .collect(),
            None => self.index.matching(tenant, &event.event_type),
        }
    }
}

/// The columns [`Event::from_row`] reads.
pub(super) const EVENT_COLUMNS: &str =
    "id, tenant_id, idempotency_key, type, data, created_at, expunged_at";

impl Store {
    /// An event by id, with its newest `deliveries` deliveries.
    ///
    /// # Errors
    /// Database errors.
    pub async fn event(
        &self,
        scope: &Scope,
        id: &str,
        deliveries: i64,
    ) -> Result<Option<(Event, Vec<Delivery>)>, StoreError> {
        let key = id.to_owned();
        let tenant = scope.filter();
        let event = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)"
                ))?;
                Ok(all_rows(&mut stmt, (key, tenant), Event::from_row)?.pop())
            })
            .await?;
        let Some(event) = event else {
            return Ok(None);
        };
        let deliveries = self
            .list_deliveries(
                scope,
                &super::DeliveryFilter {
                    event_id: Some(id.to_owned()),
                    ..Default::default()
                },
                deliveries,
            )
            .await?;
        Ok(Some((event, deliveries)))
    }
}

/// Events by id (for a leased batch), read inside the lease's transaction.
pub(super) fn events_by_id(
    tx: &Transaction<'_>,
    ids: &[&str],
) -> Result<HashMap<String, Arc<Event>>, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE id IN (SELECT value FROM json_each(?))"
    ))?;
    let events = all_rows(&mut stmt, [json_list(ids)], Event::from_row)?;
    Ok(events
        .into_iter()
        .map(|e| (e.id.clone(), Arc::new(e)))
        .collect())
}
