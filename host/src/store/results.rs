//! Recording attempt results: delivery states, attempt rows and failing streaks in one
//! transaction per batch, for the results whose lease still holds; and the dead letter for a
//! result the database refuses.

use std::sync::Arc;

use rusqlite::ToSql;
use rusqlite::Transaction;

use super::{Attempt, DeliveryStatus, LeaseRef, Leased, Store, StoreError};

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

/// What recording a batch of results did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Results written.
    pub applied: usize,
    /// Results ignored because their lease had been taken back (expired, or released).
    pub stale: usize,
}

impl Store {
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
        let index = self.subscription_index();
        let (recorded, emitted) = self
            .bookkeeping(move |tx| {
                let now = clock.now_ms();
                let (recorded, applied) = record_results(tx, &completions, now)?;
                record_streaks(tx, &applied, now)?;
                // Each delivery that failed for good, reported into its tenant (with the
                // result, so exactly once).
                let mut emitted = false;
                for c in applied
                    .iter()
                    .filter(|c| c.status == DeliveryStatus::Failed)
                {
                    let attempts = c.leased.attempts + i64::from(c.attempt.is_some());
                    emitted |= super::operational::delivery_failed(
                        tx,
                        &index.lock(),
                        &c.leased.id,
                        attempts,
                        c.last_error.as_deref(),
                        now,
                    )?;
                }
                Ok((recorded, emitted))
            })
            .await?;
        if emitted {
            self.waker.notify_one();
        }
        Ok(recorded)
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
}

/// A leased delivery's outcome after its attempt, if its lease still holds: finished (status
/// `?1`). It leaves `next_attempt_at` alone (it means nothing once finished; the API shows it
/// only while pending), so the queue's trigger, which watches that column, does not run.
pub(super) const UPDATE_RESULT: &str =
    "UPDATE deliveries SET status = ?1, attempts = ?2, lease_until = NULL, last_error = ?3,
     skip_reason = ?4, updated_at = ?5 WHERE id = ?6 AND status = 'delivering' AND lease_token = ?7";
/// The same for an attempt to be made again at `?1`: pending, and its queue says so (the
/// `delivery_requeued` trigger, which runs when `next_attempt_at` is set).
pub(super) const UPDATE_RETRY: &str =
    "UPDATE deliveries SET status = 'pending', next_attempt_at = ?1, attempts = ?2, lease_until = NULL, last_error = ?3,
     skip_reason = ?4, updated_at = ?5 WHERE id = ?6 AND status = 'delivering' AND lease_token = ?7";
/// An attempt. The response body is kept only while the event's content is (an expunge while
/// the attempt was in flight wins), and the attempt carries its subscription for the feed.
pub(super) const INSERT_ATTEMPT: &str =
    "INSERT INTO attempts (delivery_id, subscription_id, at, outcome, status_code, latency_ms, error, plugin_version,
     response_body)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,
             CASE WHEN ?9 IS NOT NULL AND (SELECT expunged_at FROM events WHERE id = ?10) IS NULL THEN ?9 END)";

/// Delivery states and attempt rows, for results whose lease still holds. Returns the counts
/// and the results that were applied.
fn record_results<'a>(
    tx: &Transaction<'_>,
    completions: &'a [Completion],
    now: i64,
) -> Result<(Recorded, Vec<&'a Completion>), StoreError> {
    let mut finished = tx.prepare_cached(UPDATE_RESULT)?;
    let mut retry = tx.prepare_cached(UPDATE_RETRY)?;
    let mut insert_attempt = tx.prepare_cached(INSERT_ATTEMPT)?;
    let mut recorded = Recorded::default();
    let mut applied = Vec::with_capacity(completions.len());
    for c in completions {
        let attempts = c.leased.attempts + i64::from(c.attempt.is_some());
        let status = c.status.as_str();
        // `?1` is a retry's due time, or the finished status.
        let (update, first): (_, &dyn ToSql) = if c.status == DeliveryStatus::Pending {
            (&mut retry, &c.next_attempt_at)
        } else {
            (&mut finished, &status)
        };
        let changed = update.execute(rusqlite::params![
            first,
            attempts,
            c.last_error,
            c.skip_reason,
            now,
            c.leased.id,
            c.leased.lease_token,
        ])?;
        if changed == 0 {
            recorded.stale += 1;
            continue;
        }
        if let Some(a) = &c.attempt {
            insert_attempt.execute((
                &c.leased.id,
                &c.leased.subscription_id,
                a.at,
                &a.outcome,
                a.status_code,
                a.latency_ms,
                &a.error,
                &a.plugin_version,
                &a.response_body,
                &c.leased.event_id,
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
    // One primary-key update per subscription of the batch (usually one or a few), rather than
    // one statement over a JSON list of them: that built the list, parsed it back and made a
    // temporary b-tree of it for every batch (5% of the writer's samples in e2e).
    let mut ended = tx.prepare_cached(
        "UPDATE subscriptions SET first_failure_at = NULL
         WHERE id = ?1 AND first_failure_at IS NOT NULL",
    )?;
    for id in subscriptions_with(completions, SubscriptionEffect::Succeeded) {
        ended.execute([id])?;
    }
    let mut started = tx.prepare_cached(
        "UPDATE subscriptions SET first_failure_at = ?1
         WHERE id = ?2 AND first_failure_at IS NULL",
    )?;
    for id in subscriptions_with(completions, SubscriptionEffect::Failed) {
        started.execute((now, id))?;
    }
    Ok(())
}

/// The distinct subscriptions of the `completions` that had `effect`.
fn subscriptions_with<'a>(
    completions: &[&'a Completion],
    effect: SubscriptionEffect,
) -> Vec<&'a str> {
    let mut ids = Vec::with_capacity(completions.len());
    ids.extend(
        completions
            .iter()
            .filter(|c| c.effect == effect)
            .map(|c| c.leased.subscription_id.as_str()),
    );
    ids.sort_unstable();
    ids.dedup();
    ids
}
