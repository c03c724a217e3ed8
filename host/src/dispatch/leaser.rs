//! The leaser: one task that owns the dispatch bookkeeping (no locks). It leases due
//! deliveries in batches into small per-subscription queues, starts attempts while the global
//! and per-subscription bounds allow, and learns of finished attempts from their join handles.
//!
//! Leasing is decoupled from starting: a batch is leased in one statement, then started as
//! slots free up, so the database is asked once per batch, not once per delivery. A
//! subscription whose queue already holds enough work is left out of the next lease, so one
//! slow receiver cannot fill the buffer and starve the others.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{DispatchContext, attempt};
use crate::store::{Completion, Event, Leased, StoreError, SubscriptionStatus, now_ms};

/// Deliveries leased per query at most.
const LEASE_BATCH: usize = 256;
/// The longest the leaser sleeps without being woken (a backstop for missed wake-ups).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often expired leases (from a crashed process) are put back.
const REQUEUE_EVERY: Duration = Duration::from_secs(5);
/// How long shutdown waits for attempts in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

struct Job {
    leased: Leased,
    event: Option<Arc<Event>>,
}

pub(super) struct Leaser {
    ctx: DispatchContext,
    wake: Arc<Notify>,
    done: mpsc::UnboundedSender<Completion>,
    /// Leased, not yet started, per subscription.
    queues: HashMap<String, VecDeque<Job>>,
    queued: usize,
    /// Attempts running, per subscription.
    running: HashMap<String, usize>,
    running_ids: HashSet<String>,
    tasks: JoinSet<(String, String)>,
    /// Whether more deliveries may be due now (a lease came back full, or something woke us).
    more_due: bool,
    next_check: Instant,
}

impl Leaser {
    pub(super) fn new(
        ctx: DispatchContext,
        wake: Arc<Notify>,
        done: mpsc::UnboundedSender<Completion>,
    ) -> Self {
        Self {
            ctx,
            wake,
            done,
            queues: HashMap::new(),
            queued: 0,
            running: HashMap::new(),
            running_ids: HashSet::new(),
            tasks: JoinSet::new(),
            more_due: true,
            next_check: Instant::now(),
        }
    }

    pub(super) async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        self.recover().await;
        let mut requeue = tokio::time::interval(REQUEUE_EVERY);
        while !*stopped.borrow() {
            if self.more_due && self.has_room() {
                if let Err(e) = self.lease().await {
                    tracing::error!(error = %e, "leasing deliveries failed");
                    self.more_due = false;
                    self.next_check = Instant::now() + IDLE_POLL;
                }
            }
            self.start_what_fits();
            tokio::select! {
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => self.finished(done),
                () = self.wake.notified() => self.more_due = true,
                () = tokio::time::sleep_until(self.next_check), if !self.more_due => self.more_due = true,
                _ = requeue.tick() => self.requeue_expired().await,
                _ = stopped.changed() => {}
            }
        }
        self.drain().await;
    }

    /// Room to lease: the buffer (queued + running) holds at most twice the in-flight bound;
    /// lease when a useful batch fits, or when nothing is buffered at all.
    fn has_room(&self) -> bool {
        let room = self.room();
        room >= LEASE_BATCH / 4 || (room > 0 && self.queued == 0)
    }

    fn room(&self) -> usize {
        (2 * self.ctx.max_in_flight).saturating_sub(self.queued + self.running_ids.len())
    }

    /// Leases a batch into the per-subscription queues. Subscriptions with a full queue and
    /// disabled ones are left out; what a batch brings beyond a subscription's share goes back.
    async fn lease(&mut self) -> Result<(), StoreError> {
        let want = self.room().min(LEASE_BATCH);
        let cap = self.ctx.max_in_flight_per_subscription;
        let mut exclude: Vec<String> = self
            .queues
            .iter()
            .filter(|(_, q)| q.len() >= cap)
            .map(|(s, _)| s.clone())
            .collect();
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
            .lease_due(now, lease_until, want, &exclude)
            .await?;
        self.more_due = leased.len() == want;
        if !self.more_due {
            self.next_check = Instant::now() + self.idle_time().await;
        }
        if leased.is_empty() {
            return Ok(());
        }
        let mut event_ids: Vec<String> = leased.iter().map(|l| l.event_id.clone()).collect();
        event_ids.sort_unstable();
        event_ids.dedup();
        let events = self.ctx.store.events_by_id(&event_ids).await?;
        let mut surplus = Vec::new();
        for leased in leased {
            let queue = self
                .queues
                .entry(leased.subscription_id.clone())
                .or_default();
            if queue.len() >= 2 * cap {
                surplus.push(leased.id);
                continue;
            }
            let event = events.get(&leased.event_id).cloned();
            queue.push_back(Job { leased, event });
            self.queued += 1;
        }
        if !surplus.is_empty() {
            self.ctx.store.release_leases(&surplus).await?;
        }
        Ok(())
    }

    /// Starts queued jobs while the global and per-subscription bounds allow.
    fn start_what_fits(&mut self) {
        let cap = self.ctx.max_in_flight_per_subscription;
        let mut ready: Vec<String> = Vec::new();
        for (sub, queue) in &self.queues {
            if !queue.is_empty() && self.running.get(sub).copied().unwrap_or(0) < cap {
                ready.push(sub.clone());
            }
        }
        // Round-robin over subscriptions, one job each per round, so they share fairly.
        while !ready.is_empty() && self.running_ids.len() < self.ctx.max_in_flight {
            ready.retain(|sub| {
                if self.running_ids.len() >= self.ctx.max_in_flight {
                    return false;
                }
                let running = self.running.get(sub).copied().unwrap_or(0);
                let Some(job) = self.queues.get_mut(sub).and_then(VecDeque::pop_front) else {
                    return false;
                };
                self.queued -= 1;
                self.spawn(job);
                running + 1 < cap && self.queues.get(sub).is_some_and(|q| !q.is_empty())
            });
        }
        self.queues.retain(|_, q| !q.is_empty());
    }

    fn spawn(&mut self, job: Job) {
        let sub = job.leased.subscription_id.clone();
        let id = job.leased.id.clone();
        *self.running.entry(sub.clone()).or_default() += 1;
        self.running_ids.insert(id.clone());
        let ctx = self.ctx.clone();
        let done = self.done.clone();
        self.tasks.spawn(async move {
            let completion = attempt::run(&ctx, job.leased, job.event).await;
            let _ = done.send(completion);
            (sub, id)
        });
    }

    fn finished(&mut self, done: Result<(String, String), tokio::task::JoinError>) {
        let Ok((sub, id)) = done else {
            tracing::error!("a delivery attempt panicked; its lease expires and it is retried");
            return;
        };
        self.running_ids.remove(&id);
        if let Some(n) = self.running.get_mut(&sub) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running.remove(&sub);
            }
        }
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

    async fn requeue_expired(&mut self) {
        match self.ctx.store.requeue_expired_leases(now_ms()).await {
            Ok(0) => {}
            Ok(_) => self.more_due = true,
            Err(e) => tracing::error!(error = %e, "could not re-queue expired leases"),
        }
    }

    /// How long to sleep when nothing is due: until the earliest retry, at most [`IDLE_POLL`].
    async fn idle_time(&self) -> Duration {
        match self.ctx.store.earliest_due().await {
            Ok(Some(due)) => {
                let wait = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
                Duration::from_millis(wait.max(1)).min(IDLE_POLL)
            }
            Ok(None) | Err(_) => IDLE_POLL,
        }
    }

    /// Shutdown: queued jobs go back at once; attempts in flight get a grace period, then
    /// whatever is still leased goes back too.
    async fn drain(mut self) {
        let mut unfinished: Vec<String> = self
            .queues
            .drain()
            .flat_map(|(_, q)| q.into_iter().map(|j| j.leased.id))
            .collect();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(done) = self.tasks.join_next().await {
                self.finished(done);
            }
        })
        .await;
        self.tasks.abort_all();
        unfinished.extend(self.running_ids.drain());
        if !unfinished.is_empty() {
            tracing::info!(
                deliveries = unfinished.len(),
                "releasing unfinished deliveries for the next start"
            );
            if let Err(e) = self.ctx.store.release_leases(&unfinished).await {
                tracing::error!(error = %e, "could not release leases; they re-queue when they expire");
            }
        }
    }
}
