//! Writes attempt results in batches (one transaction on the writer: one round trip for up to
//! [`BATCH`] results), then applies their consequences: subscriptions failing for too long are
//! disabled.
//!
//! A batch the database refuses is not retried forever. A transient failure (busy, disk full,
//! I/O) is retried with backoff, holding the batch: a result is only as durable as its row, and
//! meanwhile the bounded queue in front of the recorder stops the workers. A refusal that would
//! repeat (a constraint, a value it cannot store) is narrowed down to the results causing it:
//! the rest are recorded, and each result that cannot be is made a dead letter saying why, and
//! counted (`switchyard_results_unrecorded_total`).

use std::sync::Arc;
use std::time::Duration;

use rusqlite::ErrorCode;
use tokio::sync::mpsc;

use super::Shared;
use crate::store::{Completion, LeaseRef, StoreError, SubscriptionEffect};

/// Results written per transaction at most.
const BATCH: usize = 512;
/// Results waiting for the recorder at most; a worker with a result beyond it waits.
pub(super) const QUEUE: usize = 2 * BATCH;

pub(super) async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Completion>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let results: Arc<[Completion]> = batch.drain(..).collect();
        record(&shared, &results).await;
        if results
            .iter()
            .any(|c| c.effect == SubscriptionEffect::Failed)
        {
            disable_long_failing(&shared).await;
        }
    }
}

/// What to do after a failed write.
enum Failure {
    /// It would fail again the same way: find the culprits.
    Refused,
    /// It may succeed later: wait and retry.
    Transient,
    /// The store is closing: stop (unrecorded leases are released at the next start).
    Closed,
}

fn classify(err: &StoreError) -> Failure {
    match err {
        StoreError::Closed => Failure::Closed,
        StoreError::Corrupt(_) => Failure::Refused,
        StoreError::Database(e) => match e.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch) => {
                Failure::Refused
            }
            Some(_) => Failure::Transient,
            // Not from SQLite itself: a value rusqlite could not bind or read.
            None => Failure::Refused,
        },
        StoreError::Batch(_)
        | StoreError::Overloaded
        | StoreError::Full
        | StoreError::Unavailable(_) => Failure::Transient,
        StoreError::SecretKey(_) | StoreError::UnknownTenant(_) => Failure::Refused,
    }
}

/// Records `results`, retrying transient failures and isolating refused results.
async fn record(shared: &Shared, results: &Arc<[Completion]>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match shared.ctx.store.record(results.clone()).await {
            Ok(recorded) => {
                shared.ctx.metrics.results_stale(recorded.stale);
                return;
            }
            Err(e) => match classify(&e) {
                Failure::Refused if results.len() > 1 => {
                    tracing::warn!(error = %e, results = results.len(), "a batch of results was refused; recording them one by one");
                    for one in results.iter() {
                        Box::pin(record(shared, &Arc::from([one.clone()]))).await;
                    }
                    return;
                }
                Failure::Refused => return unrecordable(shared, &results[0], &e).await,
                Failure::Closed => return,
                Failure::Transient => {
                    tracing::error!(error = %e, results = results.len(), "recording delivery results failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            },
        }
    }
}

/// A result the database refuses: the delivery becomes a dead letter that says so (it can be
/// retried by hand once the cause is fixed), rather than holding up every later result.
async fn unrecordable(shared: &Shared, result: &Completion, err: &StoreError) {
    let ctx = &shared.ctx;
    ctx.metrics.result_unrecorded();
    tracing::error!(error = %err, delivery = %result.leased.id, "an attempt's result could not be recorded; failing the delivery");
    let reason = format!("the attempt's result could not be recorded: {err}");
    match ctx
        .store
        .fail_unrecordable(LeaseRef::from(&result.leased), reason)
        .await
    {
        Ok(_) => {}
        Err(e) => tracing::error!(
            error = %e,
            delivery = %result.leased.id,
            "could not fail the delivery either; it is attempted again when its lease runs out"
        ),
    }
}

/// Disables subscriptions that have failed without a single success for too long (Svix's
/// rule), saying why and since when.
async fn disable_long_failing(shared: &Shared) {
    let ctx = &shared.ctx;
    let window = crate::clock::duration_ms(ctx.disable_after_failing_for);
    let cutoff = ctx.clock.now_ms().saturating_sub(window);
    let ids = match ctx.store.failing_since_before(cutoff).await {
        Ok(ids) => ids,
        Err(e) => return tracing::error!(error = %e, "checking failing subscriptions failed"),
    };
    for id in ids {
        let reason = format!(
            "every delivery failed for more than {}",
            humantime::format_duration(ctx.disable_after_failing_for)
        );
        tracing::warn!(subscription = %id, %reason, "disabling subscription");
        shared.disable(&id, &reason).await;
    }
}
