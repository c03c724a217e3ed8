//! Deliveries as the API sees them: lists, one delivery with its attempts, queueing finished
//! ones again (retry, recover), and the queue depth. The dispatcher's side is `queue`.

use rusqlite::OptionalExtension;

use super::{Attempt, Delivery, DeliveryStatus, Store, StoreError, all_rows};
use crate::tenant::Scope;

/// The columns [`Delivery::from_row`] reads.
const DELIVERY_COLUMNS: &str = "id, tenant_id, event_id, subscription_id, status, attempts, next_attempt_at, last_error, \
    skip_reason, created_at, updated_at";

/// Queues again, due `?1`, the failed deliveries of subscription `?2` created in `[?3, ?4]`
/// (from that subscription's failed ones in `deliveries_by_subscription_status`).
pub(super) const RECOVER_FAILED: &str =
    "UPDATE deliveries SET status = 'pending', next_attempt_at = ?1, updated_at = ?1
     WHERE subscription_id = ?2 AND status = 'failed' AND status <> 'delivering'
     AND created_at BETWEEN ?3 AND ?4
     AND (?5 IS NULL OR tenant_id = ?5)";

/// Queues finished delivery `?2` again, due `?1` (`POST /v1/deliveries/{id}/retry`).
pub(super) const RETRY_BY_HAND: &str =
    "UPDATE deliveries SET status = 'pending', next_attempt_at = ?1, updated_at = ?1, skip_reason = NULL
     WHERE id = ?2";

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

/// The statement of a page of deliveries, newest first, and its parameters. Each combination
/// of filters has one shape (so one cached statement), served by its own index
/// (`migrations/0006_retention.sql`; the plans are checked in `plans_tests`).
pub(super) fn list_query(
    tenant: Option<String>,
    filter: &DeliveryFilter,
    limit: i64,
) -> (String, Vec<rusqlite::types::Value>) {
    let in_flight = filter.status == Some(DeliveryStatus::Delivering);
    let from = if in_flight {
        "deliveries INDEXED BY deliveries_leased"
    } else {
        "deliveries"
    };
    let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM {from} WHERE 1 = 1");
    let mut params: Vec<rusqlite::types::Value> = Vec::new();
    let conditions = [
        ("tenant_id", tenant),
        ("subscription_id", filter.subscription_id.clone()),
        ("event_id", filter.event_id.clone()),
    ];
    for (column, value) in conditions {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            params.push(value.into());
        }
    }
    // The status indexes leave deliveries in flight out
    // (`migrations/0007_cheaper_delivery_writes.sql`). Those are read from
    // `deliveries_leased`, which holds only them (as many as the dispatcher holds at most); a
    // partial index is used only where the query's own terms imply its condition, hence the
    // literals.
    match filter.status {
        None => {}
        Some(DeliveryStatus::Delivering) => sql.push_str(" AND status = 'delivering'"),
        Some(status) => {
            sql.push_str(" AND status = ?");
            params.push(status.as_str().to_owned().into());
            // An event's few deliveries are read from `deliveries_by_event` instead.
            if filter.event_id.is_none() {
                sql.push_str(" AND status <> 'delivering'");
            }
        }
    }
    if let Some(before) = &filter.before {
        sql.push_str(" AND id < ?");
        params.push(before.clone().into());
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    params.push(limit.into());
    (sql, params)
}

impl Store {
    /// A page of deliveries, newest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_deliveries(
        &self,
        scope: &Scope,
        filter: &DeliveryFilter,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let (sql, params) = list_query(scope.filter(), filter, limit);
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
    pub async fn delivery(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<Option<(Delivery, Vec<Attempt>)>, StoreError> {
        let id = id.to_owned();
        let tenant = scope.filter();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)"
            ))?;
            let Some(delivery) = all_rows(&mut stmt, (&id, &tenant), Delivery::from_row)?.pop()
            else {
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
    pub async fn retry_delivery(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<Option<DeliveryStatus>, StoreError> {
        let id = id.to_owned();
        let tenant = scope.filter();
        let now = self.clock.now_ms();
        self.transaction(move |tx| {
            let status: Option<String> = tx
                .prepare_cached(
                    "SELECT status FROM deliveries WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                )?
                .query_row((&id, &tenant), |r| r.get(0))
                .optional()?;
            let Some(status) = status else {
                return Ok(None);
            };
            let status = DeliveryStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status:?}")))?;
            if !matches!(status, DeliveryStatus::Pending | DeliveryStatus::Delivering) {
                tx.prepare_cached(RETRY_BY_HAND)?.execute((now, &id))?;
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
        scope: &Scope,
        subscription_id: &str,
        since: i64,
        until: i64,
    ) -> Result<usize, StoreError> {
        let subscription_id = subscription_id.to_owned();
        let tenant = scope.filter();
        let now = self.clock.now_ms();
        self.write(move |conn| {
            Ok(conn.prepare_cached(RECOVER_FAILED)?.execute((
                now,
                subscription_id,
                since,
                until,
                tenant,
            ))?)
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
