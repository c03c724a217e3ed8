//! The dispatcher's side of the ingest hand-off (`store::Handoff`): which fresh deliveries it
//! takes already leased, and queuing them when their commit is done.
//!
//! A fresh delivery is taken only when that cannot put it ahead of older work or crowd out
//! anything the leaser would lease:
//! - the store holds nothing due that the leaser could take: the leaser's last lease took
//!   everything due and left no subscription or tenant out, and nothing has become due since
//!   (a delivery left pending, a lease given back or expired, a wake-up from the store). So a
//!   backlog, a retry that came due or a recovered subscription always goes first, through
//!   the leaser;
//! - the board keeps a whole lease batch of room for the leaser besides what it holds;
//! - the subscription holds less than its share of the board, the share the leaser gives it;
//! - the subscription is not being disabled, and the dispatcher is not shutting down.
//!
//! The tenant's cap on attempts in flight applies as for leased jobs: the board starts
//! workers by the same rules whatever way a job came in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use super::Shared;
use super::board::Job;
use super::leaser::LEASE_BATCH;
use crate::store::{Event, Handoff, Leased};

/// Whether the dispatcher takes fresh deliveries now, and what the open ingest transaction has
/// reserved.
#[derive(Debug, Default)]
pub(super) struct Fresh {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The store held nothing due the leaser could take, as of its last lease.
    drained: bool,
    /// Bumped whenever something may have become due: a lease that started before it cannot
    /// say the store is drained.
    generation: u64,
    /// Shutting down: nothing more is taken.
    closed: bool,
    /// Reserved by the open ingest transaction, in all and per subscription.
    reserved: usize,
    reserved_of: HashMap<String, usize>,
}

impl State {
    /// Something may have become due: not drained, and a lease running now cannot say so.
    fn undrain(&mut self) {
        self.drained = false;
        self.generation = self.generation.wrapping_add(1);
    }
}

impl Fresh {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Before a lease: the generation its result may speak for.
    pub(super) fn generation(&self) -> u64 {
        self.state().generation
    }

    /// After a lease started at `generation`: whether it left nothing due behind.
    pub(super) fn leased(&self, generation: u64, drained: bool) {
        let mut state = self.state();
        if state.generation == generation {
            state.drained = drained;
        }
    }

    /// Something may have become due in the store: fresh deliveries wait their turn there
    /// until the leaser has taken it.
    pub(super) fn undrain(&self) {
        self.state().undrain();
    }

    /// Shutdown: nothing more is taken.
    pub(super) fn close(&self) {
        self.state().closed = true;
    }
}

/// What the store calls at ingest: the dispatcher, if it still runs.
pub(super) struct Taker(pub(super) Weak<Shared>);

impl Handoff for Taker {
    fn lease(&self) -> Duration {
        self.0
            .upgrade()
            .map_or(Duration::ZERO, |shared| shared.ctx.lease)
    }

    fn reserve(&self, _tenant: &str, subscription: &str) -> bool {
        let Some(shared) = self.0.upgrade() else {
            return false;
        };
        let mut state = shared.fresh.state();
        if state.closed || !state.drained {
            return false;
        }
        let buffer = shared.buffer();
        let board = shared.board();
        let share = board.share(buffer, shared.ctx.max_in_flight_per_subscription);
        let mine = state.reserved_of.get(subscription).copied().unwrap_or(0);
        let room = board.held() + state.reserved + LEASE_BATCH < buffer;
        if !room || board.parking(subscription) || board.held_by(subscription) + mine >= share {
            // This delivery stays pending: the store is no longer drained.
            state.undrain();
            return false;
        }
        state.reserved += 1;
        *state
            .reserved_of
            .entry(subscription.to_owned())
            .or_default() += 1;
        true
    }

    fn deliver(&self, jobs: Vec<(Leased, Arc<Event>)>) {
        let Some(shared) = self.0.upgrade() else {
            return; // stopped: the rows are leased, and queued again at the next start
        };
        let closed = {
            let mut state = shared.fresh.state();
            state.reserved = state.reserved.saturating_sub(jobs.len());
            for (leased, _) in &jobs {
                if let Some(n) = state.reserved_of.get_mut(&leased.subscription_id) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        state.reserved_of.remove(&leased.subscription_id);
                    }
                }
            }
            state.closed
        };
        if closed {
            return; // shutting down: as above
        }
        shared.ctx.metrics.handed_off(jobs.len());
        shared
            .board()
            .enqueue(jobs.into_iter().map(|(leased, event)| Job {
                leased,
                event: Some(event),
            }));
        shared.freed.notify_one();
    }

    fn abandon(&self) {
        if let Some(shared) = self.0.upgrade() {
            let mut state = shared.fresh.state();
            state.reserved = 0;
            state.reserved_of.clear();
        }
    }
}
