//! A worker runs one subscription's jobs, one attempt at a time, as long as its queue has
//! jobs. It holds no global slot of its own: each attempt takes plugin and delivery slots from
//! the gates when it needs them and gives them back at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::Shared;
use super::attempt::{self, Attempted};
use super::board::{Board, Job};
use super::leaser;
use crate::store::{Completion, LeaseRef};

pub(super) async fn run(shared: Arc<Shared>, done: mpsc::Sender<Completion>, mut job: Job) {
    loop {
        let subscription = job.leased.subscription_id.clone();
        let lease = LeaseRef::from(&job.leased);
        match attempt::run(&shared, job).await {
            Attempted::Done(completion) => {
                // Bounded: when the recorder falls behind, workers wait here, holding their
                // jobs, so the leaser stops leasing instead of results piling up in memory.
                if done.send(*completion).await.is_err() {
                    return; // shutting down; the lease is released by the drain
                }
            }
            Attempted::NotStarted => shared.board().release(lease.clone()),
        }
        let (next, leaser_wanted) = {
            let mut board = shared.board();
            let next = board.next_for(&subscription, &lease);
            (next, leaser_wanted(&shared, &board))
        };
        if leaser_wanted {
            shared.freed.notify_one();
        }
        match next {
            Some(next) => job = next,
            None => return,
        }
    }
}

/// Whether the leaser has something to do after an attempt: it has more due than it could
/// lease (any freed room may be its turn), a lease waits to be given back, a full queue went
/// below full, or the board now has room for a lease. Otherwise — the usual case while fresh
/// deliveries are handed over at ingest — waking it after every attempt cost a task wake-up and
/// a pass over the board per delivery for nothing. A worker that ends wakes it anyway (its task
/// finishing).
fn leaser_wanted(shared: &Shared, board: &Board) -> bool {
    shared.leaser_hungry.load(Ordering::Acquire)
        || board.has_releases()
        || board.refill_asked()
        || leaser::room_opened(shared.buffer(), board.held())
}
