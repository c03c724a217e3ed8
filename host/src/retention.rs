//! The retention job: deletes what [`RetentionPolicy`] no longer keeps, in small batches, at
//! start and then every [`RETENTION_EVERY`] (see `store::retention` for what goes and why
//! pending and delivering rows never do).
//!
//! A batch is one short write transaction on the same connection as ingest, which queues its
//! group commits fairly behind it: a batch of [`BATCH`] deliveries holds the writer for a few
//! milliseconds. After each batch the job rests three times as long as the batch took (and at
//! least [`REST`]), so it takes at most a quarter of the writer while a backlog is deleted (the
//! first run on a database that kept everything). Resting only as long as the batch (half the
//! writer) left ingest near its limit unable to keep up: the growth benchmark measured a p99 of
//! seconds at 77% of the filled database's maximum rate.

use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::store::{RetentionPolicy, Store, StoreError};

/// How often the job looks for rows past their retention.
pub const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// Deliveries (and events) deleted per transaction at most.
pub const BATCH: usize = 500;
/// The least rest between two batches.
const REST: Duration = Duration::from_millis(10);

/// Runs the job until the store closes; every batch is counted in `metrics`
/// (`switchyard_retention_deleted_total{kind}`, `switchyard_retention_batch_duration_seconds`).
pub async fn run(store: Store, policy: RetentionPolicy, metrics: Metrics) {
    let mut every = tokio::time::interval(RETENTION_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = None;
    loop {
        every.tick().await;
        match purge_all(&store, policy, &mut cursor, &metrics).await {
            Ok(_) => {}
            Err(StoreError::Closed) => return,
            Err(e) => tracing::warn!(error = %e, "retention: deleting old rows failed"),
        }
    }
}

/// Deletes batches until none is full, resting between them, each counted in `metrics`.
/// `cursor` is where the scan for events without deliveries got to (kept between runs).
/// Returns the deliveries deleted.
///
/// # Errors
/// The first failing batch's error.
pub async fn purge_all(
    store: &Store,
    policy: RetentionPolicy,
    cursor: &mut Option<String>,
    metrics: &Metrics,
) -> Result<usize, StoreError> {
    let (mut deliveries, mut attempts, mut events) = (0, 0, 0);
    loop {
        let started = Instant::now();
        let purged = store.purge_batch(policy, BATCH, cursor.clone()).await?;
        metrics.retention_batch(
            purged.deliveries,
            purged.attempts,
            purged.events,
            started.elapsed().as_secs_f64(),
        );
        deliveries += purged.deliveries;
        attempts += purged.attempts;
        events += purged.events;
        *cursor = purged.events_cursor;
        if !purged.more {
            break;
        }
        tokio::time::sleep(started.elapsed().saturating_mul(3).max(REST)).await;
    }
    if deliveries + events > 0 {
        tracing::info!(
            deliveries,
            attempts,
            events,
            "retention: deleted rows past their retention"
        );
    }
    Ok(deliveries)
}
