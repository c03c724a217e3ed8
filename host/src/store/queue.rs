//! The delivery queue as the dispatcher sees it: leasing due deliveries per subscription,
//! recording attempt results, giving leases back, and putting expired leases back.
//!
//! Leasing never walks past deliveries it may not take. Each subscription has a queue row
//! (`subscription_queues`, kept in step by triggers; see `migrations/0003_queue.sql`): whether
//! it may run, and a time no later than its earliest pending delivery. A lease walks the
//! runnable queues that are due, in due order, leaving out the few the dispatcher has no room
//! for, and takes each chosen subscription's due deliveries from its own index. A disabled
//! subscription's backlog, however large, is one row that is not in the index.
//!
//! Every lease carries a token (the delivery's `lease_token`, bumped by each lease). A result or
//! a release only changes a delivery that still holds that lease, so when a lease ran out and the
//! delivery was leased again, the late result of the first attempt changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Transaction;

use super::events::events_by_id;
use super::{Attempt, DeliveryStatus, Event, Store, StoreError, all_rows, json_list};
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

/// What one attempt did to its subscription's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionEffect {
    /// Nothing to note (skipped, cancelled, a plugin failure).
    None,
    /// A 2xx: the failing streak (if any) is over.
    Succeeded,
    /// A delivery failure: a failing streak starts (if none is running).
    Failed,
}

/// The result of one attempt, to record.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The leased delivery.
    pub leased: Leased,
    /// Its new status (`pending` again when a retry is scheduled).
    pub status: DeliveryStatus,
    /// When the retry is due (unix ms), for `pending`.
    pub next_attempt_at: i64,
    /// The attempt's row; `None` when nothing was attempted (e.g. a cancelled delivery).
    pub attempt: Option<Attempt>,
    /// The error to show on the delivery.
    pub last_error: Option<String>,
    /// The plugin's skip reason.
    pub skip_reason: Option<String>,
    /// Effect on the subscription's failing streak.
    pub effect: SubscriptionEffect,
}

/// What to lease.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    /// Deliveries in all at most.
    pub limit: usize,
    /// Deliveries per subscription at most, less what `queued` says it already holds.
    pub per_subscription: usize,
    /// Deliveries the dispatcher already holds per subscription (absent: none).
    pub queued: HashMap<String, usize>,
    /// Subscriptions not to lease for at all (the dispatcher has enough of theirs).
    pub exclude: Vec<String>,
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

/// What recording a batch of results did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Results written.
    pub applied: usize,
    /// Results ignored because their lease had been taken back (expired, or released).
    pub stale: usize,
}

impl Store {
    /// Leases due deliveries of runnable subscriptions — at most `request.limit`, shared evenly
    /// between the due queues (earliest due first), at most `per_subscription` less what is
    /// already `queued` per subscription — and reads their events, all in one transaction.
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

    /// Records a batch of attempt results in one transaction: delivery states, their attempt
    /// rows and the subscriptions' failing streaks — for the results whose lease still holds
    /// (a cancel in between also wins). Stale results are counted and otherwise ignored.
    ///
    /// # Errors
    /// Database errors; nothing of the batch is written then.
    pub async fn record(&self, completions: Arc<[Completion]>) -> Result<Recorded, StoreError> {
        if completions.is_empty() {
            return Ok(Recorded::default());
        }
        let clock = self.clock.clone();
        self.bookkeeping(move |tx| {
            let now = clock.now_ms();
            let (recorded, applied) = record_results(tx, &completions, now)?;
            record_streaks(tx, &applied, now)?;
            Ok(recorded)
        })
        .await
    }

    /// Makes a delivery a dead letter whose result could not be recorded (the recorder's poison
    /// row), saying why — if it still holds the lease. Returns whether it did.
    ///
    /// # Errors
    /// Database errors.
    pub async fn fail_unrecordable(
        &self,
        lease: LeaseRef,
        error: String,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        self.bookkeeping(move |tx| {
            Ok(tx
                .prepare_cached(
                    "UPDATE deliveries SET status = 'failed', lease_until = NULL, last_error = ?1, updated_at = ?2
                     WHERE id = ?3 AND status = 'delivering' AND lease_token = ?4",
                )?
                .execute((error, now, lease.id, lease.lease_token))?
                > 0)
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
                .prepare_cached(
                    "UPDATE deliveries SET status = 'pending', lease_until = NULL, next_attempt_at = ?1, updated_at = ?1
                     WHERE status = 'delivering' AND lease_until <= ?2",
                )?
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
            let mut stmt = tx.prepare_cached(
                "UPDATE deliveries SET status = 'pending', lease_until = NULL, updated_at = ?1
                 WHERE id = ?2 AND status = 'delivering' AND lease_token = ?3",
            )?;
            let mut released = 0;
            for lease in &leases {
                released += stmt.execute((now, &lease.id, lease.lease_token))?;
            }
            Ok(released)
        })
        .await
    }
}

/// The runnable queues due by `?1`, earliest first, leaving out those in the JSON array `?2`.
const DUE_QUEUES: &str = "SELECT subscription_id FROM subscription_queues
     WHERE runnable = 1 AND next_due IS NOT NULL AND next_due <= ?1
       AND subscription_id NOT IN (SELECT value FROM json_each(?2))
     ORDER BY next_due LIMIT ?3";

/// Leases up to `?4` due deliveries of subscription `?3`, earliest first.
const LEASE_QUEUE: &str = "UPDATE deliveries
     SET status = 'delivering', lease_until = ?1, lease_token = lease_token + 1, updated_at = ?2
     WHERE id IN (SELECT id FROM deliveries
                  WHERE subscription_id = ?3 AND status = 'pending' AND next_attempt_at <= ?2
                  ORDER BY next_attempt_at LIMIT ?4)
     RETURNING id, event_id, subscription_id, attempts, created_at, lease_token";

/// Sets a queue's `next_due` exactly: its earliest pending delivery.
const SET_NEXT_DUE: &str = "UPDATE subscription_queues SET next_due =
         (SELECT MIN(next_attempt_at) FROM deliveries WHERE subscription_id = ?1 AND status = 'pending')
     WHERE subscription_id = ?1";

/// The earliest runnable queue, leaving out those in the JSON array `?1`.
const EARLIEST_DUE: &str = "SELECT next_due FROM subscription_queues
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
    let queues: Vec<String> = all_rows(
        &mut due,
        (
            now,
            json_list(&request.exclude),
            i64::try_from(limit).unwrap_or(i64::MAX),
        ),
        |r| Ok(r.get(0)?),
    )?;
    let mut batch = LeaseBatch::default();
    let share = limit.div_ceil(queues.len().max(1));
    let mut lease = tx.prepare_cached(LEASE_QUEUE)?;
    let mut set_next_due = tx.prepare_cached(SET_NEXT_DUE)?;
    for queue in &queues {
        let held = request.queued.get(queue).copied().unwrap_or(0);
        let room = request
            .per_subscription
            .saturating_sub(held)
            .min(share)
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
                    lease_until: until,
                })
            },
        )?;
        batch.more |= taken.len() == room;
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

/// Delivery states and attempt rows, for results whose lease still holds. Returns the counts
/// and the results that were applied.
fn record_results<'a>(
    tx: &Transaction<'_>,
    completions: &'a [Completion],
    now: i64,
) -> Result<(Recorded, Vec<&'a Completion>), StoreError> {
    let mut update_delivery = tx.prepare_cached(
        "UPDATE deliveries SET status = ?1, attempts = ?2, next_attempt_at = ?3, lease_until = NULL, last_error = ?4,
         skip_reason = ?5, updated_at = ?6 WHERE id = ?7 AND status = 'delivering' AND lease_token = ?8",
    )?;
    let mut insert_attempt = tx.prepare_cached(
        "INSERT INTO attempts (delivery_id, at, outcome, status_code, latency_ms, error, plugin_version, response_body)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    let mut recorded = Recorded::default();
    let mut applied = Vec::with_capacity(completions.len());
    for c in completions {
        let attempts = c.leased.attempts + i64::from(c.attempt.is_some());
        let changed = update_delivery.execute((
            c.status.as_str(),
            attempts,
            c.next_attempt_at,
            &c.last_error,
            &c.skip_reason,
            now,
            &c.leased.id,
            c.leased.lease_token,
        ))?;
        if changed == 0 {
            recorded.stale += 1;
            continue;
        }
        if let Some(a) = &c.attempt {
            insert_attempt.execute((
                &c.leased.id,
                a.at,
                &a.outcome,
                a.status_code,
                a.latency_ms,
                &a.error,
                &a.plugin_version,
                &a.response_body,
            ))?;
        }
        recorded.applied += 1;
        applied.push(c);
    }
    Ok((recorded, applied))
}

/// A success ends a subscription's failing streak; a failure starts one if none is running.
fn record_streaks(
    tx: &Transaction<'_>,
    completions: &[&Completion],
    now: i64,
) -> Result<(), StoreError> {
    let subscriptions_with = |effect: SubscriptionEffect| {
        let mut ids: Vec<&str> = completions
            .iter()
            .filter(|c| c.effect == effect)
            .map(|c| c.leased.subscription_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let succeeded = subscriptions_with(SubscriptionEffect::Succeeded);
    if !succeeded.is_empty() {
        tx.prepare_cached(
            "UPDATE subscriptions SET first_failure_at = NULL
             WHERE first_failure_at IS NOT NULL AND id IN (SELECT value FROM json_each(?))",
        )?
        .execute([json_list(&succeeded)])?;
    }
    let failed = subscriptions_with(SubscriptionEffect::Failed);
    if !failed.is_empty() {
        tx.prepare_cached(
            "UPDATE subscriptions SET first_failure_at = ?1
             WHERE first_failure_at IS NULL AND id IN (SELECT value FROM json_each(?2))",
        )?
        .execute((now, json_list(&failed)))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
