//! The attempt feed: every attempt in the order it was recorded, for following deliveries live
//! (`GET /v1/attempts`, `switchyard deliveries tail`). Attempt ids are SQLite rowids, so "after
//! this id" is a stable cursor and "the latest n" walks the primary key backwards.

use super::{Store, StoreError, all_rows};
use crate::tenant::Scope;

/// One attempt with what identifies its delivery.
#[derive(Debug, Clone)]
pub struct FeedAttempt {
    /// The attempt's id (its row id): the feed's cursor.
    pub id: i64,
    /// `dlv_…`
    pub delivery_id: String,
    /// `sub_…`
    pub subscription_id: String,
    /// `evt_…`
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The attempt itself.
    pub attempt: super::Attempt,
}

/// Which attempts to read.
#[derive(Debug, Clone, Default)]
pub struct FeedFilter {
    /// Only after this attempt id, oldest first; `None`: the latest ones.
    pub after: Option<i64>,
    /// Only this subscription's.
    pub subscription_id: Option<String>,
}

impl Store {
    /// Up to `limit` attempts, oldest first: the ones after `filter.after`, or the latest.
    ///
    /// # Errors
    /// Database errors.
    pub async fn attempt_feed(
        &self,
        scope: &Scope,
        filter: FeedFilter,
        limit: i64,
    ) -> Result<Vec<FeedAttempt>, StoreError> {
        let tenant = scope.filter();
        self.read(move |conn| {
            // Four fixed statements rather than `?2 IS NULL OR …`, which no index can serve: a
            // subscription's attempts are read from its own index, not found among everyone's.
            let sql = match (filter.after, filter.subscription_id.is_some()) {
                (Some(_), false) => FEED_AFTER,
                (None, false) => FEED_LATEST,
                (Some(_), true) => FEED_AFTER_OF,
                (None, true) => FEED_LATEST_OF,
            };
            let mut stmt = conn.prepare_cached(sql)?;
            let mut rows = all_rows(
                &mut stmt,
                (
                    filter.after.unwrap_or(0),
                    &filter.subscription_id,
                    limit,
                    &tenant,
                ),
                |r| {
                    Ok(FeedAttempt {
                        id: r.get("id")?,
                        delivery_id: r.get("delivery_id")?,
                        subscription_id: r.get("subscription_id")?,
                        event_id: r.get("event_id")?,
                        event_type: r.get("type")?,
                        attempt: super::Attempt::from_row(r)?,
                    })
                },
            )?;
            if filter.after.is_none() {
                rows.reverse();
            }
            Ok(rows)
        })
        .await
    }
}

/// What the feed shows of an attempt, its delivery and its event.
macro_rules! feed {
    ($tail:literal) => {
        concat!(
            "SELECT a.id, a.delivery_id, d.subscription_id, d.event_id, e.type, a.at, a.outcome,
             a.status_code, a.latency_ms, a.error, a.plugin_version, a.response_body
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN events e ON e.id = d.event_id ",
            $tail
        )
    };
}

/// Attempts after a cursor, oldest first. `?2` (no subscription) is bound for the same
/// parameter shape as the filtered statements.
pub(super) const FEED_AFTER: &str = feed!(
    "WHERE a.id > ?1 AND ?2 IS NULL AND (?4 IS NULL OR d.tenant_id = ?4) ORDER BY a.id LIMIT ?3"
);

/// The latest attempts, newest first (reversed by the caller). `?1` is bound for the same
/// parameter shape as [`FEED_AFTER`].
pub(super) const FEED_LATEST: &str = feed!(
    "WHERE ?1 >= 0 AND ?2 IS NULL AND (?4 IS NULL OR d.tenant_id = ?4) ORDER BY a.id DESC LIMIT ?3"
);

/// One subscription's attempts after a cursor, oldest first.
pub(super) const FEED_AFTER_OF: &str = feed!(
    "WHERE a.subscription_id = ?2 AND a.id > ?1 AND (?4 IS NULL OR d.tenant_id = ?4) ORDER BY a.id LIMIT ?3"
);

/// One subscription's latest attempts, newest first.
pub(super) const FEED_LATEST_OF: &str = feed!(
    "WHERE ?1 >= 0 AND a.subscription_id = ?2 AND (?4 IS NULL OR d.tenant_id = ?4) ORDER BY a.id DESC LIMIT ?3"
);
