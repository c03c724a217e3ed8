//! The leaser leases due deliveries in batches into small per-subscription queues; workers
//! take jobs from those queues. A worker that finishes an attempt takes the next job of the
//! same subscription itself, so a busy subscription never waits for a database round trip
//! between two attempts; the leaser only refills queues and starts workers for subscriptions
//! that have none running.
//!
//! Bounds: at most `max_in_flight` attempts in all and `max_in_flight_per_subscription` per
//! subscription. A subscription whose queue already holds enough work is left out of the next
//! lease, so one slow receiver cannot fill the buffer and starve the others.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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

/// Queues and counts shared by the leaser and the workers (short critical sections only).
#[derive(Default)]
struct Board {
    queues: HashMap<String, VecDeque<Job>>,
    queued: usize,
    running: HashMap<String, usize>,
    running_ids: HashSet<String>,
}

impl Board {
    fn running_total(&self) -> usize {
        self.running_ids.len()
    }

    /// Takes the next job of `sub` for a worker that just finished one (keeping its slot), or
    /// gives the slot back.
    fn next_for(&mut self, sub: &str, finished_id: &str) -> Option<Job> {
        self.running_ids.remove(finished_id);
        if let Some(job) = self.queues.get_mut(sub).and_then(VecDeque::pop_front) {
            self.queued -= 1;
            self.running_ids.insert(job.leased.id.clone());
            return Some(job);
        }
        self.queues.remove(sub);
        if let Some(n) = self.running.get_mut(sub) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running.remove(sub);
            }
        }
        None
    }
}

type SharedBoard = Arc<Mutex<Board>>;

fn lock(board: &SharedBoard) -> MutexGuard<'_, Board> {
    board.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) struct Leaser {
    ctx: DispatchContext,
    wake: Arc<Notify>,
    freed: Arc<Notify>,
    done: mpsc::UnboundedSender<Completion>,
    board: SharedBoard,
    workers: JoinSet<()>,
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
            freed: Arc::new(Notify::new()),
            done,
            board: SharedBoard::default(),
            workers: JoinSet::new(),
            more_due: true,
            next_check: Instant::now(),
        }
    }

    pub(super) async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        self.recover().await;
        let mut requeue = tokio::time::interval(REQUEUE_EVERY);
        while !*stopped.borrow() {
            if self.more_due
                && self.has_room()
                && let Err(e) = self.lease().await
            {
                tracing::error!(error = %e, "leasing deliveries failed");
                self.more_due = false;
                self.next_check = Instant::now() + IDLE_POLL;
            }
            self.start_workers();
            tokio::select! {
                Some(_) = self.workers.join_next(), if !self.workers.is_empty() => {}
                () = self.wake.notified() => self.more_due = true,
                () = self.freed.notified() => {}
                () = tokio::time::sleep_until(self.next_check), if !self.more_due => self.more_due = true,
                _ = requeue.tick() => self.requeue_expired().await,
                _ = stopped.changed() => {}
            }
        }
        self.drain().await;
    }

    /// The buffer (queued + running) holds twice the in-flight bound (at least 4 batches); lease when a
    /// useful batch fits, or when nothing is queued at all.
    fn has_room(&self) -> bool {
        let board = lock(&self.board);
        let room = self.room(&board);
        room >= LEASE_BATCH / 4 || (room > 0 && board.queued == 0)
    }

    fn room(&self, board: &Board) -> usize {
        let buffer = (2 * self.ctx.max_in_flight).max(4 * LEASE_BATCH);
        buffer.saturating_sub(board.queued + board.running_total())
    }

    /// Leases a batch into the per-subscription queues. Subscriptions with a full queue and
    /// disabled ones are left out; what a batch brings beyond a subscription's share goes back.
    async fn lease(&mut self) -> Result<(), StoreError> {
        let cap = self.ctx.max_in_flight_per_subscription;
        let (want, mut exclude) = {
            let board = lock(&self.board);
            let full: Vec<String> = board
                .queues
                .iter()
                .filter(|(_, q)| q.len() >= 2 * cap)
                .map(|(s, _)| s.clone())
                .collect();
            (self.room(&board).min(LEASE_BATCH), full)
        };
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
        let (leased, events) = self
            .ctx
            .store
            .lease_due(now, lease_until, want, &exclude)
            .await?;
        tracing::debug!(want, got = leased.len(), excluded = exclude.len(), "leased");
        self.more_due = leased.len() == want;
        if !self.more_due {
            self.next_check = Instant::now() + self.idle_time().await;
        }
        if leased.is_empty() {
            return Ok(());
        }
        let surplus = self.enqueue(leased, &events, LEASE_BATCH.max(4 * cap));
        if !surplus.is_empty() {
            self.ctx.store.release_leases(&surplus).await?;
        }
        Ok(())
    }

    /// Adds leased jobs to their queues; returns the ids beyond a queue's `limit`.
    fn enqueue(
        &self,
        leased: Vec<Leased>,
        events: &HashMap<String, Arc<Event>>,
        limit: usize,
    ) -> Vec<String> {
        let mut board = lock(&self.board);
        let mut surplus = Vec::new();
        for leased in leased {
            let queue = board
                .queues
                .entry(leased.subscription_id.clone())
                .or_default();
            if queue.len() >= limit {
                surplus.push(leased.id);
                continue;
            }
            let event = events.get(&leased.event_id).cloned();
            queue.push_back(Job { leased, event });
            board.queued += 1;
        }
        surplus
    }

    /// Starts a worker for each subscription with queued jobs and a free slot, round-robin,
    /// while the global bound allows.
    fn start_workers(&mut self) {
        let cap = self.ctx.max_in_flight_per_subscription;
        let max = self.ctx.max_in_flight;
        let mut starts = Vec::new();
        {
            let mut board = lock(&self.board);
            let mut ready: Vec<String> = board
                .queues
                .iter()
                .filter(|(sub, q)| {
                    !q.is_empty() && board.running.get(*sub).copied().unwrap_or(0) < cap
                })
                .map(|(s, _)| s.clone())
                .collect();
            while !ready.is_empty() && board.running_total() < max {
                ready.retain(|sub| {
                    if board.running_total() >= max {
                        return false;
                    }
                    let Some(job) = board.queues.get_mut(sub).and_then(VecDeque::pop_front) else {
                        return false;
                    };
                    board.queued -= 1;
                    board.running_ids.insert(job.leased.id.clone());
                    let running = board.running.entry(sub.clone()).or_default();
                    *running += 1;
                    let more = *running < cap;
                    starts.push(job);
                    more && board.queues.get(sub).is_some_and(|q| !q.is_empty())
                });
            }
            board.queues.retain(|_, q| !q.is_empty());
        }
        for job in starts {
            self.workers.spawn(worker(
                self.ctx.clone(),
                self.board.clone(),
                self.done.clone(),
                self.freed.clone(),
                job,
            ));
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
        let mut unfinished: Vec<String> = {
            let mut board = lock(&self.board);
            board.queued = 0;
            board
                .queues
                .drain()
                .flat_map(|(_, q)| q.into_iter().map(|j| j.leased.id))
                .collect()
        };
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.workers.join_next().await.is_some() {}
        })
        .await;
        self.workers.abort_all();
        unfinished.extend(lock(&self.board).running_ids.drain());
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

/// Runs attempts for one subscription, one at a time, as long as its queue has jobs.
async fn worker(
    ctx: DispatchContext,
    board: SharedBoard,
    done: mpsc::UnboundedSender<Completion>,
    freed: Arc<Notify>,
    mut job: Job,
) {
    loop {
        let sub = job.leased.subscription_id.clone();
        let id = job.leased.id.clone();
        let completion = attempt::run(&ctx, job.leased, job.event).await;
        let _ = done.send(completion);
        let next = lock(&board).next_for(&sub, &id);
        freed.notify_one();
        match next {
            Some(next) => job = next,
            None => return,
        }
    }
}
