//! Delivery workers: lease due deliveries in batches, run each through its plugin, sign and
//! send it, and hand the result to a batching recorder. Fresh events wake the leaser at once
//! (in-process notify); retries come due on a timer.
//!
//! Fair shares, so one slow receiver or one slow plugin delays nobody else:
//! - per subscription, at most `max_in_flight_per_subscription` attempts at once (`board`);
//! - per tenant, at most `max_in_flight_per_tenant` attempts at once over all its
//!   subscriptions (`board`), and each lease batch and the in-memory buffer are shared equally
//!   between the tenants with due deliveries (`leaser`, `store::queue`): one tenant's backlog
//!   or slow receivers cannot delay another tenant's deliveries;
//! - a plugin call takes a plugin slot, and sending takes a delivery slot (`max_in_flight`),
//!   each from a gate that gives a freed slot to whoever holds the fewest — per plugin, then per
//!   subscription for plugin slots; per subscription for delivery slots — and keeps a few slots
//!   for those holding none (`gate`). An attempt waiting for its plugin holds no delivery slot.
//!
//! Leases are fenced: each carries a token its result must present, and an attempt only starts
//! while its lease can still hold it (`attempt`); a late result of an expired lease is ignored.
//! A subscription being disabled (410 Gone, or failing for too long) stops at once: its queued
//! attempts go back to the queue, parked until it is enabled.

mod attempt;
mod board;
mod gate;
mod handoff;
mod leaser;
mod outcome;
mod recorder;
mod request;
mod retry;
mod worker;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

pub use retry::RetryPolicy;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::net;
use crate::plugins::Registry;
use crate::store::{Completion, Store};
use board::Board;
use gate::{Gate, Shape};

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
    /// Deliveries being sent at once at most.
    pub max_in_flight: usize,
    /// Attempts in progress per subscription at most.
    pub max_in_flight_per_subscription: usize,
    /// Deliveries in flight for one tenant at most, over all its subscriptions.
    pub max_in_flight_per_tenant: usize,
    /// Lease length.
    pub lease: Duration,
    /// Timeout of one delivery request (an attempt must still fit in its lease when it
    /// starts).
    pub delivery_timeout: Duration,
    /// Disable a subscription failing without success for this long.
    pub disable_after_failing_for: Duration,
    /// The wall clock: lease and retry times.
    pub clock: Clock,
}

impl DispatchContext {
    /// The longest one attempt takes: a plugin call and a request.
    fn attempt_time(&self) -> Duration {
        self.delivery_timeout
            .saturating_add(self.plugins.runtime().limits().deadline)
    }
}

/// What the leaser, the workers and the recorder share.
struct Shared {
    ctx: DispatchContext,
    board: Mutex<Board>,
    /// Plugin slots, by plugin, then by subscription.
    plugin_gate: Arc<Gate>,
    /// Delivery slots, by subscription.
    send_gate: Arc<Gate>,
    /// A job finished or a lease is to be given back: the leaser may have room or work.
    freed: Notify,
    /// The leaser has more due to lease than it could take: every finished attempt may make
    /// room for it, so workers wake it after each (`worker::leaser_wanted`).
    leaser_hungry: AtomicBool,
    /// Fresh deliveries handed over at ingest.
    fresh: handoff::Fresh,
}

impl Shared {
    fn new(ctx: DispatchContext) -> Arc<Self> {
        let plugin_slots = ctx.plugins.runtime().call_slots();
        Arc::new(Self {
            plugin_gate: Gate::new(Shape {
                capacity: plugin_slots,
                // The last quarter of the slots is kept for plugins with no call running, and
                // no plugin takes more than the rest: a fast plugin beside a slow one gets a
                // slot at once, while a plugin alone keeps enough calls queued on the plugin
                // threads to keep them busy between hand-offs.
                group_cap: plugin_slots - plugin_slots / 4,
                reserve: plugin_slots / 4,
            }),
            send_gate: Gate::new(Shape {
                capacity: ctx.max_in_flight,
                group_cap: ctx.max_in_flight_per_subscription,
                // An eighth of the delivery slots is kept for subscriptions sending nothing.
                reserve: ctx.max_in_flight / 8,
            }),
            // A subscription with two rounds of attempts queued is left out of leases.
            board: Mutex::new(Board::new(
                2 * ctx.max_in_flight_per_subscription,
                ctx.max_in_flight_per_tenant,
            )),
            freed: Notify::new(),
            leaser_hungry: AtomicBool::new(false),
            fresh: handoff::Fresh::default(),
            ctx,
        })
    }

    /// Jobs the board holds at most (queued and being attempted): twice the delivery slots,
    /// and at least four lease batches.
    fn buffer(&self) -> usize {
        (2 * self.ctx.max_in_flight).max(4 * leaser::LEASE_BATCH)
    }

    fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops everything of `subscription` that has not started, while it is being disabled.
    fn park(&self, subscription: &str) {
        self.board().park(subscription);
        self.freed.notify_one();
    }

    /// The disable is done (stored, and in the cache every attempt checks).
    fn unpark(&self, subscription: &str) {
        self.board().unpark(subscription);
    }

    /// Disables a subscription for `reason`: first in memory, so not one more of its queued
    /// attempts starts, then in the store; its deliveries wait, parked, until it is enabled.
    async fn disable(&self, subscription: &str, reason: &str) {
        self.park(subscription);
        if let Err(e) = self
            .ctx
            .store
            .disable_subscription(subscription, reason)
            .await
        {
            tracing::error!(error = %e, subscription, "could not disable subscription");
        }
        self.unpark(subscription);
    }
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
        let (done_tx, done_rx) = mpsc::channel::<Completion>(recorder::QUEUE);
        let shared = Shared::new(ctx);
        shared
            .ctx
            .store
            .set_handoff(Arc::new(handoff::Taker(Arc::downgrade(&shared))));
        let recorder = tokio::spawn(recorder::run(shared.clone(), done_rx));
        let leaser = tokio::spawn(leaser::Leaser::new(shared, wake, done_tx).run(stopped));
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

#[cfg(test)]
mod tests;
