//! The delivery queue: leasing due deliveries in batches, recording attempt results in
//! batches, crash recovery of expired leases, and the read side for the API.

use sqlx::{QueryBuilder, Row, Sqlite};

use super::{Attempt, Delivery, DeliveryStatus, Store, StoreError, now_ms};

const ROWS_PER_STATEMENT: usize = 500;

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

impl Store {
    /// Moves up to `limit` due deliveries to `delivering` with a lease until `lease_until`,
    /// skipping subscriptions in `exclude` (at their in-flight cap, or disabled).
    ///
    /// # Errors
    /// Database errors.
    pub async fn lease_due(
        &self,
        now: i64,
        lease_until: i64,
        limit: usize,
        exclude: &[String],
    ) -> Result<Vec<Leased>, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new(
            "UPDATE deliveries SET status = 'delivering', lease_until = ",
        );
        query
            .push_bind(lease_until)
            .push(", updated_at = ")
            .push_bind(now);
        query.push(" WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ").push_bind(now);
        if !exclude.is_empty() {
            query.push(" AND subscription_id NOT IN (");
            let mut list = query.separated(", ");
            for id in exclude {
                list.push_bind(id.clone());
            }
            query.push(")");
        }
        query
            .push(" ORDER BY next_attempt_at LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        query.push(") RETURNING id, event_id, subscription_id, attempts, created_at");
        let rows = query.build().fetch_all(self.writer()).await?;
        rows.iter()
            .map(|r| {
                Ok(Leased {
                    id: r.try_get("id")?,
                    event_id: r.try_get("event_id")?,
                    subscription_id: r.try_get("subscription_id")?,
                    attempts: r.try_get("attempts")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// When the earliest pending delivery is due (unix ms).
    ///
    /// # Errors
    /// Database errors.
    pub async fn earliest_due(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) AS due FROM deliveries WHERE status = 'pending'",
        )
        .fetch_one(self.reader())
        .await?;
        Ok(row.try_get("due")?)
    }

    /// Records a batch of attempt results in one transaction: attempt rows, delivery states
    /// (only for deliveries still `delivering`: a cancel in between wins) and subscription
    /// failing streaks.
    ///
    /// # Errors
    /// Database errors.
    pub async fn record(&self, completions: &[Completion]) -> Result<(), StoreError> {
        if completions.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        for chunk in completions.chunks(ROWS_PER_STATEMENT) {
            insert_attempts(&mut tx, chunk).await?;
            upsert_deliveries(&mut tx, chunk, now).await?;
        }
        let ok: Vec<&str> = completions
            .iter()
            .filter(|c| c.effect == SubscriptionEffect::Succeeded)
            .map(|c| c.leased.subscription_id.as_str())
            .collect();
        let failed: Vec<&str> = completions
            .iter()
            .filter(|c| c.effect == SubscriptionEffect::Failed)
            .map(|c| c.leased.subscription_id.as_str())
            .collect();
        update_streaks(
            &mut tx,
            &ok,
            "first_failure_at = NULL",
            "first_failure_at IS NOT NULL",
            None,
        )
        .await?;
        update_streaks(
            &mut tx,
            &failed,
            "first_failure_at = ",
            "first_failure_at IS NULL",
            Some(now),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Puts deliveries whose lease ran out by `cutoff` (their worker died) back in the queue,
    /// due now.
    ///
    /// # Errors
    /// Database errors.
    pub async fn requeue_expired_leases(&self, cutoff: i64) -> Result<u64, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', lease_until = NULL, next_attempt_at = ?, updated_at = ?
             WHERE status = 'delivering' AND lease_until <= ?",
        )
        .bind(now)
        .bind(now)
        .bind(cutoff)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected())
    }

    /// Puts leased deliveries back in the queue at once (graceful shutdown, bounced leases).
    ///
    /// # Errors
    /// Database errors.
    pub async fn release_leases(&self, ids: &[String]) -> Result<(), StoreError> {
        let now = now_ms();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::<Sqlite>::new(
                "UPDATE deliveries SET status = 'pending', lease_until = NULL, updated_at = ",
            );
            query
                .push_bind(now)
                .push(" WHERE status = 'delivering' AND id IN (");
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(id.clone());
            }
            query.push(")");
            query
                .build()
                .persistent(false)
                .execute(self.writer())
                .await?;
        }
        Ok(())
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
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT id, event_id, subscription_id, status, attempts, next_attempt_at, last_error, skip_reason, created_at, updated_at
             FROM deliveries WHERE 1 = 1",
        );
        if let Some(id) = &filter.subscription_id {
            query.push(" AND subscription_id = ").push_bind(id.clone());
        }
        if let Some(id) = &filter.event_id {
            query.push(" AND event_id = ").push_bind(id.clone());
        }
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(before) = &filter.before {
            query.push(" AND id < ").push_bind(before.clone());
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        let rows = query.build().fetch_all(self.reader()).await?;
        rows.iter().map(Delivery::from_row).collect()
    }

    /// A delivery with its attempts, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delivery(&self, id: &str) -> Result<Option<(Delivery, Vec<Attempt>)>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT id, event_id, subscription_id, status, attempts, next_attempt_at, last_error, skip_reason, created_at, updated_at
             FROM deliveries WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(self.reader())
        .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT at, outcome, status_code, latency_ms, error, plugin_version, response_body FROM attempts
             WHERE delivery_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.reader())
        .await?;
        let attempts = attempts
            .iter()
            .map(Attempt::from_row)
            .collect::<Result<_, _>>()?;
        Ok(Some((Delivery::from_row(&row)?, attempts)))
    }

    /// Queues a finished delivery again, due now. Returns its previous status, or `None` if
    /// there is no such delivery; only finished ones (not pending or delivering) change.
    ///
    /// # Errors
    /// Database errors.
    pub async fn retry_delivery(&self, id: &str) -> Result<Option<DeliveryStatus>, StoreError> {
        let Some(row) = sqlx::query("SELECT status FROM deliveries WHERE id = ?")
            .bind(id)
            .fetch_optional(self.writer())
            .await?
        else {
            return Ok(None);
        };
        let status: String = row.try_get("status")?;
        let status = DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status:?}")))?;
        if !matches!(status, DeliveryStatus::Pending | DeliveryStatus::Delivering) {
            let now = now_ms();
            sqlx::query(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ?, skip_reason = NULL
                 WHERE id = ? AND status NOT IN ('pending', 'delivering')",
            )
            .bind(now)
            .bind(now)
            .bind(id)
            .execute(self.writer())
            .await?;
        }
        Ok(Some(status))
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
    ) -> Result<u64, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ?
             WHERE subscription_id = ? AND status = 'failed' AND created_at BETWEEN ? AND ?",
        )
        .bind(now)
        .bind(now)
        .bind(subscription_id)
        .bind(since)
        .bind(until)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected())
    }

    /// Deliveries by status, for the queue-depth gauge.
    ///
    /// # Errors
    /// Database errors.
    pub async fn queue_depth(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM deliveries WHERE status = 'pending') AS pending,
                    (SELECT COUNT(*) FROM deliveries WHERE status = 'delivering') AS delivering",
        )
        .fetch_one(self.reader())
        .await?;
        Ok((row.try_get("pending")?, row.try_get("delivering")?))
    }
}

async fn insert_attempts(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    chunk: &[Completion],
) -> Result<(), StoreError> {
    let rows: Vec<(&str, &Attempt)> = chunk
        .iter()
        .filter_map(|c| c.attempt.as_ref().map(|a| (c.leased.id.as_str(), a)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let mut query = QueryBuilder::<Sqlite>::new(
        "INSERT INTO attempts (delivery_id, at, outcome, status_code, latency_ms, error, plugin_version, response_body) ",
    );
    query.push_values(rows, |mut row, (delivery_id, a)| {
        row.push_bind(delivery_id.to_owned())
            .push_bind(a.at)
            .push_bind(a.outcome.clone())
            .push_bind(a.status_code)
            .push_bind(a.latency_ms)
            .push_bind(a.error.clone())
            .push_bind(a.plugin_version.clone())
            .push_bind(a.response_body.clone());
    });
    query.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}

/// One multi-row upsert instead of one UPDATE per delivery; the `WHERE` keeps a cancel that
/// happened during the attempt.
async fn upsert_deliveries(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    chunk: &[Completion],
    now: i64,
) -> Result<(), StoreError> {
    let mut query = QueryBuilder::<Sqlite>::new(
        "INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, next_attempt_at, lease_until, last_error,
         skip_reason, created_at, updated_at) ",
    );
    query.push_values(chunk, |mut row, c| {
        let attempts = c.leased.attempts + i64::from(c.attempt.is_some());
        row.push_bind(c.leased.id.clone())
            .push_bind(c.leased.event_id.clone())
            .push_bind(c.leased.subscription_id.clone())
            .push_bind(c.status.as_str())
            .push_bind(attempts)
            .push_bind(c.next_attempt_at)
            .push_bind(None::<i64>)
            .push_bind(c.last_error.clone())
            .push_bind(c.skip_reason.clone())
            .push_bind(c.leased.created_at)
            .push_bind(now);
    });
    query.push(
        " ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
          next_attempt_at = excluded.next_attempt_at, lease_until = NULL, last_error = excluded.last_error,
          skip_reason = excluded.skip_reason, updated_at = excluded.updated_at
          WHERE deliveries.status = 'delivering'",
    );
    query.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}

async fn update_streaks(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    ids: &[&str],
    set: &str,
    only_if: &str,
    value: Option<i64>,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut unique: Vec<&str> = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let mut query = QueryBuilder::<Sqlite>::new("UPDATE subscriptions SET ");
    query.push(set);
    if let Some(v) = value {
        query.push_bind(v);
    }
    query.push(" WHERE ").push(only_if).push(" AND id IN (");
    let mut list = query.separated(", ");
    for id in unique {
        list.push_bind(id.to_owned());
    }
    query.push(")");
    query.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}
