//! Delivery workers: lease due deliveries in batches, run each through its plugin, sign and
//! send it, and hand the result to a batching recorder. Fresh events wake the leaser at once
//! (in-process notify); retries come due on a timer.
//!
//! Concurrency is bounded twice: globally (`max_in_flight`) and per subscription
//! (`max_in_flight_per_subscription`), so one slow receiver cannot starve the rest — the leaser
//! simply does not lease deliveries of a subscription that is at its cap.

mod attempt;
mod recorder;
mod retry;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, watch};

pub use retry::RetryPolicy;

use crate::metrics::Metrics;
use crate::net;
use crate::plugins::Registry;
use crate::store::{Completion, Leased, Store, SubscriptionStatus, now_ms};

/// Deliveries leased per query at most.
const LEASE_BATCH: usize = 256;
/// The longest the leaser sleeps without being woken (a backstop for missed wake-ups).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often expired leases (from a crashed process) are put back.
const REQUEUE_EVERY: Duration = Duration::from_secs(5);

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
    wake: Arc<Notify>,
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
        let leaser = tokio::spawn(Leaser::new(ctx, wake.clone(), done_tx).run(stopped));
        Self {
            wake,
            stop,
            leaser,
            recorder,
        }
    }

    /// Wakes the leaser (new deliveries are due now).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Graceful stop: no new leases; attempts in flight get up to `grace` to finish, then
    /// whatever is still leased is released back to the queue.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace + Duration::from_secs(1), self.leaser)
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

/// Per-subscription in-flight counts.
#[derive(Default, Clone)]
struct InFlight(Arc<Mutex<HashMap<String, usize>>>);

impl InFlight {
    fn try_take(&self, sub: &str, cap: usize) -> bool {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(sub.to_owned()).or_default();
        if *n >= cap {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, sub: &str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(sub) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(sub);
            }
        }
    }

    fn at_cap(&self, cap: usize) -> Vec<String> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .filter(|(_, n)| **n >= cap)
            .map(|(s, _)| s.clone())
            .collect()
    }
}

struct Leaser {
    ctx: DispatchContext,
    wake: Arc<Notify>,
    done: mpsc::UnboundedSender<Completion>,
    permits: Arc<Semaphore>,
    in_flight: InFlight,
    tasks: tokio::task::JoinSet<()>,
    leased: Arc<Mutex<HashSet<String>>>,
}

impl Leaser {
    fn new(
        ctx: DispatchContext,
        wake: Arc<Notify>,
        done: mpsc::UnboundedSender<Completion>,
    ) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(ctx.max_in_flight)),
            ctx,
            wake,
            done,
            in_flight: InFlight::default(),
            tasks: tokio::task::JoinSet::new(),
            leased: Arc::default(),
        }
    }

    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        self.recover().await;
        let mut requeue = tokio::time::interval(REQUEUE_EVERY);
        while !*stopped.borrow() {
            while self.tasks.try_join_next().is_some() {}
            let sleep_for = match self.lease_and_spawn().await {
                Ok(0) => self.idle_time().await,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::error!(error = %e, "leasing deliveries failed");
                    IDLE_POLL
                }
            };
            if sleep_for.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep_for) => {}
                _ = requeue.tick() => self.requeue_expired().await,
                _ = stopped.changed() => {}
            }
        }
        self.drain().await;
    }

    /// At start every `delivering` row is from a process that is gone: queue it again.
    async fn recover(&self) {
        match self.ctx.store.requeue_expired_leases(i64::MAX).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deliveries = n,
                "re-queued deliveries left in flight by a previous run"
            ),
            Err(e) => tracing::error!(error = %e, "could not re-queue deliveries left in flight"),
        }
    }

    async fn requeue_expired(&self) {
        if let Err(e) = self.ctx.store.requeue_expired_leases(now_ms()).await {
            tracing::error!(error = %e, "could not re-queue expired leases");
        }
    }

    /// How long to sleep when nothing is due: until the earliest retry, at most [`IDLE_POLL`].
    async fn idle_time(&self) -> Duration {
        match self.ctx.store.earliest_due().await {
            Ok(Some(due)) => {
                let wait = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
                Duration::from_millis(wait.max(1)).min(IDLE_POLL)
            }
            Ok(None) => IDLE_POLL,
            Err(_) => IDLE_POLL,
        }
    }

    /// Leases what there is capacity for and starts an attempt for each; returns how many.
    async fn lease_and_spawn(&mut self) -> Result<usize, crate::store::StoreError> {
        let free = self.permits.available_permits().min(LEASE_BATCH);
        if free == 0 {
            return Ok(0);
        }
        let cap = self.ctx.max_in_flight_per_subscription;
        let mut exclude = self.in_flight.at_cap(cap);
        exclude.extend(
            self.ctx
                .store
                .subscriptions()
                .iter()
                .filter(|s| s.status == SubscriptionStatus::Disabled)
                .map(|s| s.id.clone()),
        );
        let now = now_ms();
        let lease_until =
            now.saturating_add(i64::try_from(self.ctx.lease.as_millis()).unwrap_or(i64::MAX));
        let leased = self
            .ctx
            .store
            .lease_due(now, lease_until, free, &exclude)
            .await?;
        if leased.is_empty() {
            return Ok(0);
        }
        let count = leased.len();
        let mut event_ids: Vec<String> = leased.iter().map(|l| l.event_id.clone()).collect();
        event_ids.sort_unstable();
        event_ids.dedup();
        let events = self.ctx.store.events_by_id(&event_ids).await?;
        let mut bounced = Vec::new();
        for delivery in leased {
            if !self.in_flight.try_take(&delivery.subscription_id, cap) {
                bounced.push(delivery.id);
                continue;
            }
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                self.in_flight.give_back(&delivery.subscription_id);
                bounced.push(delivery.id);
                continue;
            };
            let event = events.get(&delivery.event_id).cloned();
            self.spawn_attempt(delivery, event, permit);
        }
        if !bounced.is_empty() {
            self.ctx.store.release_leases(&bounced).await?;
        }
        Ok(count)
    }

    fn spawn_attempt(
        &mut self,
        delivery: Leased,
        event: Option<Arc<crate::store::Event>>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let ctx = self.ctx.clone();
        let done = self.done.clone();
        let in_flight = self.in_flight.clone();
        let wake = self.wake.clone();
        let leased = self.leased.clone();
        leased
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(delivery.id.clone());
        self.tasks.spawn(async move {
            let id = delivery.id.clone();
            let sub = delivery.subscription_id.clone();
            let completion = attempt::run(&ctx, delivery, event).await;
            leased
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            let _ = done.send(completion);
            in_flight.give_back(&sub);
            drop(permit);
            wake.notify_one();
        });
    }

    /// Shutdown: give attempts in flight a moment, then release what is still leased.
    async fn drain(mut self) {
        let grace = Duration::from_secs(5);
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        let remaining: Vec<String> = self
            .leased
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        if !remaining.is_empty() {
            tracing::info!(
                deliveries = remaining.len(),
                "releasing unfinished deliveries for the next start"
            );
            if let Err(e) = self.ctx.store.release_leases(&remaining).await {
                tracing::error!(error = %e, "could not release leases; they re-queue when they expire");
            }
        }
    }
}
