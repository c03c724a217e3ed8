//! The delivery queue: leasing due deliveries in batches, recording attempt results in
//! batches, crash recovery of expired leases, and the read side for the API.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{OptionalExtension, Transaction};

use super::events::events_by_id;
use super::{
    Attempt, Delivery, DeliveryStatus, Event, Store, StoreError, all_rows, json_list, now_ms,
};

/// The columns [`Delivery::from_row`] reads.
const DELIVERY_COLUMNS: &str = "id, event_id, subscription_id, status, attempts, next_attempt_at, last_error, \
    skip_reason, created_at, updated_at";

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
    /// Created (unix ms), kept for the result's upsert.
    pub created_at: i64,
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

/// Filters of `GET /v1/deliveries`.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this subscription's.
    pub subscription_id: Option<String>,
    /// Only this event's.
    pub event_id: Option<String>,
    /// Only in this status.
    pub status: Option<DeliveryStatus>,
    /// Only older than this id (newest first paging).
    pub before: Option<String>,
}

/// A leased batch: the deliveries, and their events by id.
pub type LeaseBatch = (Vec<Leased>, HashMap<String, Arc<Event>>);

impl Store {
    /// Moves up to `limit` due deliveries to `delivering` with a lease until `lease_until`,
    /// skipping subscriptions in `exclude` (at their in-flight cap, or disabled), and reads
    /// their events — one round trip to the writer.
    ///
    /// # Errors
    /// Database errors.
    pub async fn lease_due(
        &self,
        now: i64,
        lease_until: i64,
        limit: usize,
        exclude: &[String],
    ) -> Result<LeaseBatch, StoreError> {
        let exclude = json_list(exclude);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.bookkeeping(move |tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE deliveries SET status = 'delivering', lease_until = ?1, updated_at = ?2
                 WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?2
                   AND subscription_id NOT IN (SELECT value FROM json_each(?3))
                   ORDER BY next_attempt_at LIMIT ?4)
                 RETURNING id, event_id, subscription_id, attempts, created_at",
            )?;
            let leased = all_rows(&mut stmt, (lease_until, now, exclude, limit), |r| {
                Ok(Leased {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    subscription_id: r.get(2)?,
                    attempts: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?;
            let mut event_ids: Vec<&str> = leased.iter().map(|l| l.event_id.as_str()).collect();
            event_ids.sort_unstable();
            event_ids.dedup();
            let events = events_by_id(tx, &event_ids)?;
            Ok((leased, events))
        })
        .await
    }

    /// When the earliest pending delivery is due (unix ms).
    ///
    /// # Errors
    /// Database errors.
    pub async fn earliest_due(&self) -> Result<Option<i64>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'",
                )?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }

    /// Records a batch of attempt results in one transaction: attempt rows, delivery states
    /// (only for deliveries still `delivering`: a cancel in between wins) and subscription
    /// failing streaks.
    ///
    /// # Errors
    /// Database errors.
    pub async fn record(&self, completions: Arc<[Completion]>) -> Result<(), StoreError> {
        if completions.is_empty() {
            return Ok(());
        }
        self.bookkeeping(move |tx| {
            let now = now_ms();
            record_results(tx, &completions, now)?;
            record_streaks(tx, &completions, now)
        })
        .await
    }

    /// Puts deliveries whose lease ran out by `cutoff` (their worker died) back in the queue,
    /// due now.
    ///
    /// # Errors
    /// Database errors.
    pub async fn requeue_expired_leases(&self, cutoff: i64) -> Result<usize, StoreError> {
        self.write(move |conn| {
            let now = now_ms();
            Ok(conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 'pending', lease_until = NULL, next_attempt_at = ?1, updated_at = ?1
                     WHERE status = 'delivering' AND lease_until <= ?2",
                )?
                .execute((now, cutoff))?)
        })
        .await
    }

    /// Puts leased deliveries back in the queue at once (graceful shutdown, bounced leases).
    ///
    /// # Errors
    /// Database errors.
    pub async fn release_leases(&self, ids: &[String]) -> Result<(), StoreError> {
        let ids = json_list(ids);
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE deliveries SET status = 'pending', lease_until = NULL, updated_at = ?1
                 WHERE status = 'delivering' AND id IN (SELECT value FROM json_each(?2))",
            )?
            .execute((now_ms(), ids))?;
            Ok(())
        })
        .await
    }

    /// A page of deliveries, newest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE 1 = 1");
        let mut params: Vec<rusqlite::types::Value> = Vec::new();
        let conditions = [
            ("subscription_id", filter.subscription_id.clone()),
            ("event_id", filter.event_id.clone()),
            ("status", filter.status.map(|s| s.as_str().to_owned())),
        ];
        for (column, value) in conditions {
            if let Some(value) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                params.push(value.into());
            }
        }
        if let Some(before) = &filter.before {
            sql.push_str(" AND id < ?");
            params.push(before.clone().into());
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        params.push(limit.into());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            all_rows(
                &mut stmt,
                rusqlite::params_from_iter(params),
                Delivery::from_row,
            )
        })
        .await
    }

    /// A delivery with its attempts, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delivery(&self, id: &str) -> Result<Option<(Delivery, Vec<Attempt>)>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?"
            ))?;
            let Some(delivery) = all_rows(&mut stmt, [&id], Delivery::from_row)?.pop() else {
                return Ok(None);
            };
            let mut stmt = conn.prepare_cached(
                "SELECT at, outcome, status_code, latency_ms, error, plugin_version, response_body FROM attempts
                 WHERE delivery_id = ? ORDER BY id",
            )?;
            let attempts = all_rows(&mut stmt, [&id], Attempt::from_row)?;
            Ok(Some((delivery, attempts)))
        })
        .await
    }

    /// Queues a finished delivery again, due now. Returns its previous status, or `None` if
    /// there is no such delivery; only finished ones (not pending or delivering) change.
    ///
    /// # Errors
    /// Database errors.
    pub async fn retry_delivery(&self, id: &str) -> Result<Option<DeliveryStatus>, StoreError> {
        let id = id.to_owned();
        self.transaction(move |tx| {
            let status: Option<String> = tx
                .prepare_cached("SELECT status FROM deliveries WHERE id = ?")?
                .query_row([&id], |r| r.get(0))
                .optional()?;
            let Some(status) = status else {
                return Ok(None);
            };
            let status = DeliveryStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status:?}")))?;
            if !matches!(status, DeliveryStatus::Pending | DeliveryStatus::Delivering) {
                tx.prepare_cached(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = ?1, updated_at = ?1, skip_reason = NULL
                     WHERE id = ?2",
                )?
                .execute((now_ms(), &id))?;
            }
            Ok(Some(status))
        })
        .await
    }

    /// Queues again, due now, the `failed` deliveries of a subscription created in
    /// `[since, until]` (unix ms): the replay after a receiver's outage. Returns how many.
    ///
    /// # Errors
    /// Database errors.
    pub async fn recover_failed(
        &self,
        subscription_id: &str,
        since: i64,
        until: i64,
    ) -> Result<usize, StoreError> {
        let subscription_id = subscription_id.to_owned();
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = ?1, updated_at = ?1
                     WHERE subscription_id = ?2 AND status = 'failed' AND created_at BETWEEN ?3 AND ?4",
                )?
                .execute((now_ms(), subscription_id, since, until))?)
        })
        .await
    }

    /// Deliveries by status, for the queue-depth gauge.
    ///
    /// # Errors
    /// Database errors.
    pub async fn queue_depth(&self) -> Result<(i64, i64), StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT (SELECT COUNT(*) FROM deliveries WHERE status = 'pending'),
                            (SELECT COUNT(*) FROM deliveries WHERE status = 'delivering')",
                )?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?)
        })
        .await
    }
}

/// Attempt rows and delivery states. The `WHERE` keeps a cancel that happened during the
/// attempt.
fn record_results(
    tx: &Transaction<'_>,
    completions: &[Completion],
    now: i64,
) -> Result<(), StoreError> {
    let mut insert_attempt = tx.prepare_cached(
        "INSERT INTO attempts (delivery_id, at, outcome, status_code, latency_ms, error, plugin_version, response_body)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    let mut update_delivery = tx.prepare_cached(
        "UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, lease_until = NULL, last_error = ?,
         skip_reason = ?, updated_at = ? WHERE id = ? AND status = 'delivering'",
    )?;
    for c in completions {
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
        let attempts = c.leased.attempts + i64::from(c.attempt.is_some());
        update_delivery.execute((
            c.status.as_str(),
            attempts,
            c.next_attempt_at,
            &c.last_error,
            &c.skip_reason,
            now,
            &c.leased.id,
        ))?;
    }
    Ok(())
}

/// A success ends a subscription's failing streak; a failure starts one if none is running.
fn record_streaks(
    tx: &Transaction<'_>,
    completions: &[Completion],
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
