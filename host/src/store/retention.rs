//! Retention and expunge: what the database forgets, so that it stops growing.
//!
//! - Finished deliveries (with their attempts) go once they are older than their retention —
//!   `succeeded`, `skipped` and `cancelled` after [`RetentionPolicy::finished`], `failed` (dead
//!   letters, which an operator may still want to retry) after [`RetentionPolicy::failed`] —
//!   and an event goes once none of its deliveries is left (an event that matched nothing,
//!   after [`RetentionPolicy::finished`]). "Older" is both created and last changed before the
//!   cutoff, so a dead letter retried by hand last week is not deleted for being created last
//!   month. `pending` and `delivering` rows are never touched: the scans read only the finished
//!   statuses' index entries.
//! - Each call deletes one small batch in one transaction ([`Store::purge_batch`]), so ingest's
//!   group commits interleave with it; the caller (`retention`'s job) paces the batches.
//! - Space: deleted pages go to SQLite's freelist and the next inserts reuse them, so a database
//!   whose intake and retention balance stays the same size (checked below). The file is not
//!   shrunk (that would need `auto_vacuum`, which an existing database only takes with a full
//!   `VACUUM`, a rewrite of the whole file under an exclusive lock).
//! - [`Store::expunge_event`] removes an event's payload and the receivers' stored response
//!   bodies for it, keeping every row (`DELETE /v1/events/{id}/content`).

use std::time::Duration;

use super::{Store, StoreError, all_rows, json_list};
use crate::clock::duration_ms;
use crate::tenant::Scope;

/// How long finished rows and idempotency keys are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// `succeeded`, `skipped` and `cancelled` deliveries (and events left without deliveries).
    pub finished: Duration,
    /// `failed` deliveries (dead letters).
    pub failed: Duration,
    /// An idempotency key answers with its first event for this long; after it, the same key
    /// creates a new event.
    pub idempotency_ttl: Duration,
}

impl Default for RetentionPolicy {
    /// 7 days, 30 days for dead letters, keys for 24 hours (Svix and Stripe keep keys a day).
    fn default() -> Self {
        Self {
            finished: Duration::from_secs(7 * 24 * 3600),
            failed: Duration::from_secs(30 * 24 * 3600),
            idempotency_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// What one batch deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// Deliveries deleted.
    pub deliveries: usize,
    /// Their attempts deleted.
    pub attempts: usize,
    /// Events deleted.
    pub events: usize,
    /// Where the scan for events without deliveries got to: pass it to the next batch.
    pub events_cursor: Option<String>,
    /// The batch was full: more may be due now.
    pub more: bool,
}

/// The statuses retention deletes, each with the retention that applies.
const FINISHED: [&str; 3] = ["succeeded", "skipped", "cancelled"];

/// The oldest deliveries of status `?1` created before the id `?2` and last changed before
/// `?3`, oldest first (the `deliveries_by_status` index, from its start).
pub(super) const OLD_DELIVERIES: &str = "SELECT id, event_id FROM deliveries
     WHERE status = ?1 AND status <> 'delivering' AND id < ?2 AND updated_at < ?3 ORDER BY id LIMIT ?4";

/// The attempts of the deliveries in the JSON array `?1`.
pub(super) const DELETE_ATTEMPTS: &str =
    "DELETE FROM attempts WHERE delivery_id IN (SELECT value FROM json_each(?1))";

/// The deliveries in the JSON array `?1`.
pub(super) const DELETE_DELIVERIES: &str =
    "DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?1))";

/// Removes an event's payload (`?2`) at `?1`.
pub(super) const EXPUNGE_EVENT: &str =
    "UPDATE events SET data = '', expunged_at = COALESCE(expunged_at, ?1)
     WHERE id = ?2 AND (?3 IS NULL OR tenant_id = ?3)";

/// Removes the response bodies stored with the attempts of event `?1`'s deliveries.
pub(super) const EXPUNGE_RESPONSES: &str = "UPDATE attempts SET response_body = NULL
     WHERE delivery_id IN (SELECT d.id FROM deliveries d WHERE d.event_id = ?1)
       AND response_body IS NOT NULL";

/// Events created before the id `?2`, after the cursor `?1`, in id order.
pub(super) const OLD_EVENTS: &str =
    "SELECT id FROM events WHERE id > ?1 AND id < ?2 ORDER BY id LIMIT ?3";

/// Of the events in the JSON array `?1`, deletes those no delivery refers to.
pub(super) const DELETE_UNREFERENCED_EVENTS: &str = "DELETE FROM events
     WHERE id IN (SELECT value FROM json_each(?1))
       AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)";

/// The smallest id with `prefix` created at `ms` or later: every id below it is older.
pub(super) fn id_at(prefix: &str, ms: i64) -> String {
    let ms = u64::try_from(ms.max(0)).unwrap_or(0);
    format!("{prefix}_{}", ulid::Ulid::from_parts(ms, 0))
}

impl Store {
    /// Deletes up to `limit` finished deliveries older than `policy` allows (with their
    /// attempts, and their events once no delivery of them is left), and up to `limit` of the
    /// old events after `events_cursor` that no delivery refers to, in one transaction.
    ///
    /// # Errors
    /// Database errors; nothing of the batch is deleted then.
    pub async fn purge_batch(
        &self,
        policy: RetentionPolicy,
        limit: usize,
        events_cursor: Option<String>,
    ) -> Result<Purged, StoreError> {
        let now = self.clock.now_ms();
        let finished_cutoff = now.saturating_sub(duration_ms(policy.finished));
        let failed_cutoff = now.saturating_sub(duration_ms(policy.failed));
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        // Deleting is not a promise to anyone: a power loss that forgets it means it is done
        // again, so it commits without an fsync of its own.
        self.bookkeeping(move |tx| {
            let mut purged = Purged::default();
            let mut old = tx.prepare_cached(OLD_DELIVERIES)?;
            let mut victims: Vec<(String, String)> = Vec::new();
            let rules = FINISHED
                .iter()
                .map(|s| (*s, finished_cutoff))
                .chain([("failed", failed_cutoff)]);
            for (status, cutoff) in rules {
                let room = limit.saturating_sub(victims.len());
                if room == 0 {
                    break;
                }
                let room = i64::try_from(room).unwrap_or(i64::MAX);
                victims.extend(all_rows(
                    &mut old,
                    (status, id_at("dlv", cutoff), cutoff, room),
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?);
            }
            purged.more = victims.len() >= limit;
            if !victims.is_empty() {
                let ids: Vec<&str> = victims.iter().map(|(id, _)| id.as_str()).collect();
                let ids = json_list(&ids);
                purged.attempts = tx.prepare_cached(DELETE_ATTEMPTS)?.execute([&ids])?;
                purged.deliveries = tx.prepare_cached(DELETE_DELIVERIES)?.execute([&ids])?;
                let mut events: Vec<&str> = victims.iter().map(|(_, e)| e.as_str()).collect();
                events.sort_unstable();
                events.dedup();
                purged.events = tx
                    .prepare_cached(DELETE_UNREFERENCED_EVENTS)?
                    .execute([json_list(&events)])?;
            }
            // Events that never had a delivery (nothing matched them) are found by walking the
            // old events once, from a cursor; those that still have deliveries are deleted
            // above, with their last delivery.
            let mut scan = tx.prepare_cached(OLD_EVENTS)?;
            let scanned: Vec<String> = all_rows(
                &mut scan,
                (
                    events_cursor.as_deref().unwrap_or(""),
                    id_at("evt", finished_cutoff),
                    limit_sql,
                ),
                |r| Ok(r.get(0)?),
            )?;
            purged.events_cursor = scanned.last().cloned().or(events_cursor);
            if !scanned.is_empty() {
                purged.events += tx
                    .prepare_cached(DELETE_UNREFERENCED_EVENTS)?
                    .execute([json_list(&scanned)])?;
            }
            purged.more |= scanned.len() >= limit;
            Ok(purged)
        })
        .await
    }

    /// Removes an event's payload and the response bodies stored with its attempts; the event,
    /// its deliveries and the attempts' other fields stay. Attempts still to come fail
    /// (see `dispatch`), and a result recorded later keeps no response body. Returns whether
    /// the event exists (expunging twice is the same as once).
    ///
    /// # Errors
    /// Database errors.
    pub async fn expunge_event(&self, scope: &Scope, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let now = self.clock.now_ms();
        let tenant = scope.filter();
        self.transaction(move |tx| {
            let found = tx
                .prepare_cached(EXPUNGE_EVENT)?
                .execute((now, &id, tenant))?;
            if found == 0 {
                return Ok(false);
            }
            tx.prepare_cached(EXPUNGE_RESPONSES)?.execute([&id])?;
            Ok(true)
        })
        .await
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
