//! A worker runs one subscription's jobs, one attempt at a time, as long as its queue has
//! jobs. It holds no global slot of its own: each attempt takes plugin and delivery slots from
//! the gates when it needs them and gives them back at once.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Shared;
use super::attempt::{self, Attempted};
use super::board::Job;
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
        let next = shared.board().next_for(&subscription, &lease);
        shared.freed.notify_one();
        match next {
            Some(next) => job = next,
            None => return,
        }
    }
}
