//! The delivery queue as the dispatcher sees it: leasing due deliveries per subscription,
//! recording attempt results, giving leases back, and putting expired leases back.
//!
//! Leasing never walks past deliveries it may not take. Each subscription has a queue row
//! (`subscription_queues`, kept in step by triggers; see `migrations/0004_queue.sql`): whether
//! it may run, and a time no later than its earliest pending delivery. A lease walks the
//! runnable queues that are due, in due order, leaving out the few the dispatcher has no room
//! for, and takes each chosen subscription's due deliveries from its own index. A disabled
//! subscription's backlog, however large, is one row that is not in the index.
//!
//! Every lease carries a token (the delivery's `lease_token`, bumped by each lease). A result
//! (`results`) or a release only changes a delivery that still holds that lease, so when a lease
//! ran out and the delivery was leased again, the late result of the first attempt changes
//! nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Transaction;

use super::events::events_by_id;
use super::{Event, Store, StoreError, all_rows, json_list};
use crate::clock::duration_ms;

/// A delivery leased for one attempt.
#[derive(Debug, Clone)]
pub struct Leased {
    /// `dlv_…`
    pub id: String,
    /// Its event.
    pub event_id: String,
    /// Its subscription.
    pub subscription_id: String,
    /// Its tenant (the dispatcher shares slots between tenants).
    pub tenant_id: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// Created (unix ms).
    pub created_at: i64,
    /// The lease's token: results and releases must present it.
    pub lease_token: i64,
    /// When the lease runs out (unix ms); an attempt that cannot finish by then is not started.
    pub lease_until: i64,
}

/// A lease to give back: the delivery and the token it was leased with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseRef {
    /// `dlv_…`
    pub id: String,
    /// The token of the lease.
    pub lease_token: i64,
}

impl From<&Leased> for LeaseRef {
    fn from(leased: &Leased) -> Self {
        Self {
            id: leased.id.clone(),
            lease_token: leased.lease_token,
        }
    }
}

/// What to lease.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    /// Deliveries in all at most.
    pub limit: usize,
    /// Deliveries per subscription at most, less what `held` says it already holds.
    pub per_subscription: usize,
    /// Deliveries the dispatcher already holds per subscription, queued or being attempted
    /// (absent: none).
    pub held: HashMap<String, usize>,
    /// Subscriptions not to lease for at all (the dispatcher has enough of theirs).
    pub exclude: Vec<String>,
    /// Deliveries per tenant at most, less what `held_by_tenant` says it already holds.
    pub per_tenant: usize,
    /// Deliveries the dispatcher already holds per tenant (absent: none).
    pub held_by_tenant: HashMap<String, usize>,
    /// Tenants not to lease for at all (the dispatcher has enough of theirs).
    pub exclude_tenants: Vec<String>,
    /// How long the leases last.
    pub lease: Duration,
}

/// A leased batch: the deliveries, their events by id, and whether more may be due now.
#[derive(Debug, Default)]
pub struct LeaseBatch {
    /// The leased deliveries.
    pub leased: Vec<Leased>,
    /// Their events by id.
    pub events: HashMap<String, Arc<Event>>,
    /// A queue had more due than this batch took from it.
    pub more: bool,
}

impl Store {
    /// Leases due deliveries of runnable subscriptions — at most `request.limit`, shared evenly
    /// first between the tenants with due queues (turns across tenants: one tenant's many due
    /// queues or deep backlog takes only its share of a batch), then between each tenant's due
    /// queues (earliest due first); at most `per_tenant` and `per_subscription` less what is
    /// already held — and reads their events, all in one transaction.
    ///
    /// # Errors
    /// Database errors.
    pub async fn lease_due(&self, request: LeaseRequest) -> Result<LeaseBatch, StoreError> {
        let clock = self.clock.clone();
        self.bookkeeping(move |tx| {
            let now = clock.now_ms();
            let until = now.saturating_add(duration_ms(request.lease));
            lease_in(tx, &request, now, until)
        })
        .await
    }

    /// When the earliest delivery the dispatcher could lease is due (unix ms): the earliest
    /// runnable queue, leaving out `exclude`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn earliest_due(&self, exclude: &[String]) -> Result<Option<i64>, StoreError> {
        let exclude = json_list(exclude);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(EARLIEST_DUE)?;
            Ok(all_rows(&mut stmt, [exclude], |r| Ok(r.get(0)?))?.pop())
        })
        .await
    }

    /// Puts deliveries whose lease ran out by `cutoff` (their worker died, or stalled) back in
    /// the queue, due now.
    ///
    /// # Errors
    /// Database errors.
    pub async fn requeue_expired_leases(&self, cutoff: i64) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(REQUEUE_EXPIRED)?
                .execute((now, cutoff))?)
        })
        .await
    }

    /// Gives leases back at once (shutdown, surplus, parked subscriptions, attempts that would
    /// not fit in their lease): the deliveries are pending again, as due as they were. A lease
    /// that was already taken back is left alone.
    ///
    /// # Errors
    /// Database errors.
    pub async fn release_leases(&self, leases: Vec<LeaseRef>) -> Result<usize, StoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now_ms();
        self.bookkeeping(move |tx| {
            let mut stmt = tx.prepare_cached(GIVE_BACK)?;
            let mut released = 0;
            for lease in &leases {
                released += stmt.execute((now, &lease.id, lease.lease_token))?;
            }
            Ok(released)
        })
        .await
    }
}

/// Puts the deliveries whose lease ran out by `?2` back in the queue, due `?1` (the
/// `deliveries_leased` index holds only the leased ones).
pub(super) const REQUEUE_EXPIRED: &str = "UPDATE deliveries
     SET status = 'pending', lease_until = NULL, next_attempt_at = ?1, updated_at = ?1
     WHERE status = 'delivering' AND lease_until <= ?2";

/// The runnable queues due by `?1`, earliest first, leaving out those in the JSON array `?2`.
pub(super) const DUE_QUEUES: &str =
    "SELECT q.subscription_id, s.tenant_id FROM subscription_queues q
     JOIN subscriptions s ON s.id = q.subscription_id
     WHERE q.runnable = 1 AND q.next_due IS NOT NULL AND q.next_due <= ?1
       AND q.subscription_id NOT IN (SELECT value FROM json_each(?2))
       AND s.tenant_id NOT IN (SELECT value FROM json_each(?4))
     ORDER BY q.next_due LIMIT ?3";

/// Leases up to `?4` due deliveries of subscription `?3`, earliest first.
pub(super) const LEASE_QUEUE: &str = "UPDATE deliveries
     SET status = 'delivering', lease_until = ?1, lease_token = lease_token + 1, updated_at = ?2
     WHERE id IN (SELECT id FROM deliveries
                  WHERE subscription_id = ?3 AND status = 'pending' AND next_attempt_at <= ?2
                  ORDER BY next_attempt_at LIMIT ?4)
     RETURNING id, event_id, subscription_id, attempts, created_at, lease_token, tenant_id";

/// A lease given back unused (`?2`, token `?3`): pending again, due when it was. Setting
/// `next_attempt_at` (to itself) is what runs the queue's `delivery_requeued` trigger, which
/// watches that column.
pub(super) const GIVE_BACK: &str =
    "UPDATE deliveries SET status = 'pending', next_attempt_at = next_attempt_at, lease_until = NULL, updated_at = ?1
     WHERE id = ?2 AND status = 'delivering' AND lease_token = ?3";

/// Lowers subscription `?1`'s `next_due` to `?2` (when later or unset): deliveries of it became
/// pending, due `?2`. What the `delivery_queued` trigger did for every inserted delivery before
/// `migrations/0007_cheaper_delivery_writes.sql`; now the code that inserts pending
/// deliveries runs it, once per subscription and transaction.
const QUEUE_DUE: &str = "UPDATE subscription_queues SET next_due = ?2
     WHERE subscription_id = ?1 AND (next_due IS NULL OR next_due > ?2)";

/// After inserting pending deliveries, due `due`, of these subscriptions (repeats allowed):
/// their queues say so, so the leaser finds them.
///
/// # Errors
/// Database errors.
pub(super) fn queued<'a>(
    tx: &Transaction<'_>,
    subscriptions: impl IntoIterator<Item = &'a str>,
    due: i64,
) -> Result<(), StoreError> {
    let mut ids: Vec<&str> = subscriptions.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut stmt = tx.prepare_cached(QUEUE_DUE)?;
    for id in ids {
        stmt.execute((id, due))?;
    }
    Ok(())
}

/// Sets a queue's `next_due` exactly: its earliest pending delivery.
pub(super) const SET_NEXT_DUE: &str = "UPDATE subscription_queues SET next_due =
         (SELECT MIN(next_attempt_at) FROM deliveries WHERE subscription_id = ?1 AND status = 'pending')
     WHERE subscription_id = ?1";

/// The earliest runnable queue, leaving out those in the JSON array `?1`.
pub(super) const EARLIEST_DUE: &str = "SELECT next_due FROM subscription_queues
     WHERE runnable = 1 AND next_due IS NOT NULL
       AND subscription_id NOT IN (SELECT value FROM json_each(?1))
     ORDER BY next_due LIMIT 1";

fn lease_in(
    tx: &Transaction<'_>,
    request: &LeaseRequest,
    now: i64,
    until: i64,
) -> Result<LeaseBatch, StoreError> {
    let limit = request.limit;
    if limit == 0 {
        return Ok(LeaseBatch::default());
    }
    let mut due = tx.prepare_cached(DUE_QUEUES)?;
    let queues: Vec<(String, String)> = all_rows(
        &mut due,
        (
            now,
            json_list(&request.exclude),
            i64::try_from(limit).unwrap_or(i64::MAX),
            json_list(&request.exclude_tenants),
        ),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut batch = LeaseBatch::default();
    // Turns across tenants: each tenant with due queues gets an equal share of the batch (and
    // no more than its room), split between its own due queues.
    let mut queues_of: HashMap<&str, usize> = HashMap::new();
    for (_, tenant) in &queues {
        *queues_of.entry(tenant.as_str()).or_default() += 1;
    }
    let tenant_share = limit.div_ceil(queues_of.len().max(1));
    let mut room_of: HashMap<&str, usize> = queues_of
        .keys()
        .map(|t| {
            let held = request.held_by_tenant.get(*t).copied().unwrap_or(0);
            (
                *t,
                request.per_tenant.saturating_sub(held).min(tenant_share),
            )
        })
        .collect();
    let mut lease = tx.prepare_cached(LEASE_QUEUE)?;
    let mut set_next_due = tx.prepare_cached(SET_NEXT_DUE)?;
    for (queue, tenant) in &queues {
        let held = request.held.get(queue).copied().unwrap_or(0);
        let tenant_room = room_of.get(tenant.as_str()).copied().unwrap_or(0);
        let share = tenant_share.div_ceil(queues_of.get(tenant.as_str()).copied().unwrap_or(1));
        let room = request
            .per_subscription
            .saturating_sub(held)
            .min(share)
            .min(tenant_room)
            .min(limit - batch.leased.len());
        if room == 0 {
            batch.more = true;
            continue;
        }
        let taken = all_rows(
            &mut lease,
            (until, now, queue, i64::try_from(room).unwrap_or(i64::MAX)),
            |r| {
                Ok(Leased {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    subscription_id: r.get(2)?,
                    attempts: r.get(3)?,
                    created_at: r.get(4)?,
                    lease_token: r.get(5)?,
                    tenant_id: r.get(6)?,
                    lease_until: until,
                })
            },
        )?;
        batch.more |= taken.len() == room;
        if let Some(left) = room_of.get_mut(tenant.as_str()) {
            *left = left.saturating_sub(taken.len());
        }
        batch.leased.extend(taken);
        set_next_due.execute([queue])?;
    }
    // As many due queues as the limit: there may be more behind them.
    batch.more |= queues.len() == limit;
    let mut event_ids: Vec<&str> = batch.leased.iter().map(|l| l.event_id.as_str()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    batch.events = events_by_id(tx, &event_ids)?;
    Ok(batch)
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
