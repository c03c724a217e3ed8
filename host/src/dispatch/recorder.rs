//! Writes attempt results in batches (one transaction on the writer: one round trip for up to
//! [`BATCH`] results), then applies their consequences: subscriptions failing for too long are
//! disabled.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::DispatchContext;
use crate::store::{Completion, SubscriptionEffect, now_ms};

/// Results written per transaction at most.
const BATCH: usize = 512;

pub(super) async fn run(ctx: DispatchContext, mut rx: mpsc::UnboundedReceiver<Completion>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let results: Arc<[Completion]> = batch.drain(..).collect();
        let mut backoff = Duration::from_millis(50);
        // Keep the batch until it is written: a result is only as durable as its row. If the
        // process dies first, the lease expires and the delivery is attempted again.
        while let Err(e) = ctx.store.record(results.clone()).await {
            tracing::error!(error = %e, results = results.len(), "recording delivery results failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        if results
            .iter()
            .any(|c| c.effect == SubscriptionEffect::Failed)
        {
            disable_long_failing(&ctx).await;
        }
    }
}

/// Disables subscriptions that have failed without a single success for too long (Svix's
/// rule), saying why and since when.
async fn disable_long_failing(ctx: &DispatchContext) {
    let window = i64::try_from(ctx.disable_after_failing_for.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms().saturating_sub(window);
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
        if let Err(e) = ctx.store.disable_subscription(&id, &reason).await {
            tracing::error!(error = %e, subscription = %id, "could not disable subscription");
        }
    }
}
