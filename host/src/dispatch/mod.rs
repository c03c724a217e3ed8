//! Delivery workers: lease due deliveries in batches, run each through its plugin, sign and
//! send it, and hand the result to a batching recorder. Fresh events wake the leaser at once
//! (in-process notify); retries come due on a timer.
//!
//! Concurrency is bounded twice: globally (`max_in_flight`) and per subscription
//! (`max_in_flight_per_subscription`), so one slow receiver cannot starve the rest (see
//! `leaser`).

mod attempt;
mod leaser;
mod recorder;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

pub use retry::RetryPolicy;

use crate::metrics::Metrics;
use crate::net;
use crate::plugins::Registry;
use crate::store::{Completion, Store};

/// What the dispatcher needs from the rest of the service.
#[derive(Clone)]
pub struct DispatchContext {
    /// The queue.
    pub store: Store,
    /// Plugins by name.
    pub plugins: Arc<Registry>,
    /// The outbound client (with the SSRF guard).
    pub client: net::Client,
    /// Metrics.
    pub metrics: Metrics,
    /// Retry schedule.
    pub retry: RetryPolicy,
    /// Deliveries in flight at most.
    pub max_in_flight: usize,
    /// Deliveries in flight per subscription at most.
    pub max_in_flight_per_subscription: usize,
    /// Lease length.
    pub lease: Duration,
    /// Disable a subscription failing without success for this long.
    pub disable_after_failing_for: Duration,
}

/// A running dispatcher. [`Dispatcher::shutdown`] stops leasing, lets in-flight attempts
/// finish (or releases them), and flushes the recorder.
pub struct Dispatcher {
    stop: watch::Sender<bool>,
    leaser: tokio::task::JoinHandle<()>,
    recorder: tokio::task::JoinHandle<()>,
}

impl Dispatcher {
    /// Starts the leaser and the recorder. `wake` is the notify the ingestor signals.
    pub fn start(ctx: DispatchContext, wake: Arc<Notify>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Completion>();
        let recorder = tokio::spawn(recorder::run(ctx.clone(), done_rx));
        let leaser = tokio::spawn(leaser::Leaser::new(ctx, wake, done_tx).run(stopped));
        Self {
            stop,
            leaser,
            recorder,
        }
    }

    /// Graceful stop: no new leases; attempts in flight get a grace period (5 s) to finish,
    /// then whatever is still leased is released back to the queue. Waits at most `wait`.
    pub async fn shutdown(self, wait: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(wait + Duration::from_secs(1), self.leaser)
            .await
            .is_err()
        {
            tracing::warn!("dispatcher did not stop in time");
        }
        // The leaser owned the last completion sender; the recorder drains and exits.
        if tokio::time::timeout(Duration::from_secs(10), self.recorder)
            .await
            .is_err()
        {
            tracing::warn!("recorder did not flush in time");
        }
    }
}
