//! The leaser leases due deliveries in batches into the per-subscription queues of the board
//! and starts workers for them; it also gives back the leases workers did not use, puts expired
//! leases back, and sleeps until the earliest runnable delivery is due.
//!
//! Bounds: the board holds at most a buffer of jobs (queued + being attempted), twice the
//! delivery slots and at least four batches, shared equally between the subscriptions holding
//! jobs. A subscription holding its share, or with enough queued, is left out of the next lease
//! (a handful of queue rows skipped, never its deliveries), so slow receivers or slow plugins
//! cannot fill the buffer and keep the others' deliveries waiting in the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Shared;
use super::board::Job;
use super::worker;
use crate::store::{Completion, Event, LeaseRequest, Leased, StoreError};

/// Deliveries leased per query at most.
pub(super) const LEASE_BATCH: usize = 256;
/// The longest the leaser sleeps without being woken (a backstop for missed wake-ups).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often expired leases are put back.
const REQUEUE_EVERY: Duration = Duration::from_secs(5);
/// How long shutdown waits for attempts in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub(super) struct Leaser {
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    done: mpsc::Sender<Completion>,
    workers: JoinSet<()>,
    /// Whether more deliveries may be due now (a lease came back full, or something woke us).
    more_due: bool,
    next_check: Instant,
}

impl Leaser {
    pub(super) fn new(
        shared: Arc<Shared>,
        wake: Arc<Notify>,
        done: mpsc::Sender<Completion>,
    ) -> Self {
        Self {
            shared,
            wake,
            done,
            workers: JoinSet::new(),
            more_due: true,
            next_check: Instant::now(),
        }
    }

    pub(super) async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        self.recover().await;
        let mut requeue = tokio::time::interval(REQUEUE_EVERY);
        let store_wake = self.shared.ctx.store.waker();
        // A plugin that finishes loading lets its subscriptions' deliveries go.
        let mut plugins_changed = self.shared.ctx.plugins.changes();
        while !*stopped.borrow() {
            self.give_back().await;
            if self.more_due
                && self.has_room()
                && let Err(e) = self.lease().await
            {
                tracing::error!(error = %e, "leasing deliveries failed");
                self.more_due = false;
                self.next_check = Instant::now() + IDLE_POLL;
            }
            self.start_workers();
            self.shared
                .leaser_hungry
                .store(self.more_due, Ordering::Release);
            tokio::select! {
                Some(_) = self.workers.join_next(), if !self.workers.is_empty() => {}
                () = self.wake.notified() => self.woken(),
                () = store_wake.notified() => self.woken(),
                Ok(()) = plugins_changed.changed() => self.woken(),
                () = self.shared.freed.notified() => self.more_due |= self.shared.board().take_refill(),
                () = tokio::time::sleep_until(self.next_check), if !self.more_due => self.more_due = true,
                _ = requeue.tick() => self.requeue_expired().await,
                _ = stopped.changed() => {}
            }
        }
        self.drain().await;
    }

    fn buffer(&self) -> usize {
        self.shared.buffer()
    }

    /// Deliveries may have become due in the store: lease, and let fresh ones wait their turn.
    fn woken(&mut self) {
        self.more_due = true;
        self.shared.fresh.undrain();
    }

    /// Lease when a useful batch fits, or when nothing is queued at all.
    fn has_room(&self) -> bool {
        has_room(self.buffer(), self.shared.board().held())
    }

    /// Leases a batch into the per-subscription queues.
    async fn lease(&mut self) -> Result<(), StoreError> {
        let cap = self.shared.ctx.max_in_flight_per_subscription;
        let tenant_cap = self.shared.ctx.max_in_flight_per_tenant;
        let (limit, share, held, exclude, tenant_share, held_by_tenant, exclude_tenants) = {
            let board = self.shared.board();
            // Each subscription holding jobs gets an equal share of the buffer (`Board::share`).
            let share = board.share(self.buffer(), cap);
            let (held, exclude) = board.holdings(share);
            // The same between tenants: each tenant holding jobs gets an equal share of the
            // buffer (at least two rounds of its in-flight cap queued), so one tenant's backlog
            // cannot fill it while another's deliveries wait in the store. A tenant alone may
            // fill it (its subscriptions share it as above); a newcomer gets its turn in the
            // next batches, which take turns across tenants.
            let tenant_share = (self.buffer() / board.tenants_holding().max(1))
                .max(tenant_cap.min(self.buffer()).saturating_mul(2))
                .max(1);
            let (held_by_tenant, exclude_tenants) = board.tenant_holdings(tenant_share);
            let room = self.buffer().saturating_sub(board.held());
            (
                room.min(LEASE_BATCH),
                share,
                held,
                exclude,
                tenant_share,
                held_by_tenant,
                exclude_tenants,
            )
        };
        let mut exclude = exclude;
        exclude.extend(self.waiting_for_plugins());
        let generation = self.shared.fresh.generation();
        let everyone = exclude.is_empty() && exclude_tenants.is_empty();
        let batch = self
            .shared
            .ctx
            .store
            .lease_due(LeaseRequest {
                limit,
                per_subscription: share,
                held,
                exclude: exclude.clone(),
                per_tenant: tenant_share,
                held_by_tenant,
                exclude_tenants,
                lease: self.shared.ctx.lease,
            })
            .await?;
        tracing::debug!(
            limit,
            got = batch.leased.len(),
            excluded = exclude.len(),
            "leased"
        );
        self.more_due = batch.more;
        // Took everything due, leaving nobody out: fresh deliveries may skip the queue.
        self.shared
            .fresh
            .leased(generation, !batch.more && everyone);
        if !self.more_due {
            self.next_check = Instant::now() + self.idle_time(&exclude).await;
        }
        let jobs = jobs(batch.leased, &batch.events);
        self.shared.board().enqueue(jobs);
        Ok(())
    }

    /// Starts a worker for each subscription with queued jobs, up to its cap.
    fn start_workers(&mut self) {
        let starts = self
            .shared
            .board()
            .starts(self.shared.ctx.max_in_flight_per_subscription);
        for job in starts {
            self.workers
                .spawn(worker::run(self.shared.clone(), self.done.clone(), job));
        }
    }

    /// The subscriptions whose plugin is still loading (compiling after a start): left out of
    /// the lease, so their deliveries wait in the store instead of failing or filling the
    /// board. Usually no plugin is loading and this reads nothing.
    fn waiting_for_plugins(&self) -> Vec<String> {
        let loading = self.shared.ctx.plugins.loading_names();
        if loading.is_empty() {
            return Vec::new();
        }
        self.shared.ctx.store.subscriptions_using(&loading)
    }

    /// Gives back the leases the workers did not use (one write for all of them).
    async fn give_back(&mut self) {
        let leases = self.shared.board().take_releases();
        if leases.is_empty() {
            return;
        }
        match self.shared.ctx.store.release_leases(leases).await {
            Ok(_) => self.woken(),
            Err(e) => {
                tracing::error!(error = %e, "could not give leases back; they are queued again when they expire")
            }
        }
    }

    /// At start every `delivering` row is from a process that is gone (the data folder lock
    /// keeps a second one out): queue it again.
    async fn recover(&self) {
        match self.shared.ctx.store.requeue_expired_leases(i64::MAX).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deliveries = n,
                "re-queued deliveries left in flight by a previous run"
            ),
            Err(e) => tracing::error!(error = %e, "could not re-queue deliveries left in flight"),
        }
    }

    async fn requeue_expired(&mut self) {
        let now = self.shared.ctx.clock.now_ms();
        match self.shared.ctx.store.requeue_expired_leases(now).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    deliveries = n,
                    "leases ran out before their results came; queued again"
                );
                self.woken();
            }
            Err(e) => tracing::error!(error = %e, "could not re-queue expired leases"),
        }
    }

    /// How long to sleep when nothing is due: until the earliest runnable delivery (of the
    /// subscriptions there is room for), at most [`IDLE_POLL`].
    async fn idle_time(&self, exclude: &[String]) -> Duration {
        match self.shared.ctx.store.earliest_due(exclude).await {
            Ok(Some(due)) => {
                let wait =
                    u64::try_from(due.saturating_sub(self.shared.ctx.clock.now_ms())).unwrap_or(0);
                Duration::from_millis(wait.max(1)).min(IDLE_POLL)
            }
            Ok(None) | Err(_) => IDLE_POLL,
        }
    }

    /// Shutdown: queued jobs go back at once; attempts in flight get a grace period, then
    /// whatever is still leased goes back too.
    async fn drain(mut self) {
        self.shared.fresh.close();
        let queued = {
            let mut board = self.shared.board();
            let mut queued = board.take_releases();
            queued.extend(board.take_queued());
            queued
        };
        if let Err(e) = self.shared.ctx.store.release_leases(queued).await {
            tracing::error!(error = %e, "could not release leases; they re-queue when they expire");
        }
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.workers.join_next().await.is_some() {}
        })
        .await;
        self.workers.abort_all();
        while self.workers.join_next().await.is_some() {}
        let unfinished = self.shared.board().drain();
        if !unfinished.is_empty() {
            tracing::info!(
                deliveries = unfinished.len(),
                "releasing unfinished deliveries for the next start"
            );
            if let Err(e) = self.shared.ctx.store.release_leases(unfinished).await {
                tracing::error!(error = %e, "could not release leases; they re-queue when they expire");
            }
        }
    }
}

/// Whether a board holding `held` of `buffer` jobs has room for a lease: a useful batch fits,
/// or nothing is held at all.
fn has_room(buffer: usize, held: usize) -> bool {
    let room = buffer.saturating_sub(held);
    room >= LEASE_BATCH / 4 || (room > 0 && held == 0)
}

/// Whether `held` is where the board, going down one job at a time, starts to have room for a
/// lease ([`has_room`]): a worker that finishes an attempt there wakes the leaser.
pub(super) fn room_opened(buffer: usize, held: usize) -> bool {
    held == 0 || buffer.saturating_sub(held) == LEASE_BATCH / 4
}

fn jobs(leased: Vec<Leased>, events: &HashMap<String, Arc<Event>>) -> Vec<Job> {
    leased
        .into_iter()
        .map(|leased| {
            let event = events.get(&leased.event_id).cloned();
            Job { leased, event }
        })
        .collect()
}
