//! Fresh deliveries handed to the dispatcher at ingest, already leased.
//!
//! Without a hand-off, every delivery is written three times on its way: inserted `pending` by
//! ingest, leased (`delivering`, with its event read back) by the leaser a moment later, and
//! finished by the recorder. When the dispatcher has room and nothing older is waiting in the
//! store, ingest inserts the delivery already leased instead — `delivering`, lease token 1,
//! its lease running from the commit — in the same transaction as its event, and after the
//! commit gives the job (with the event it already holds) to the dispatcher in memory: one
//! write and one database round trip less per delivery, and no wait for the leaser.
//!
//! Nothing changes for durability: the `202` still follows the commit, and a handed-off row is
//! an ordinary lease. If the process dies before the attempt's result is recorded, the row is
//! `delivering` with a lease like any other, and is queued again at the next start (or when
//! its lease runs out). Fencing holds: the result must present the token the row was inserted
//! with.

use std::sync::Arc;
use std::time::Duration;

use super::{Event, Leased};

/// The dispatcher's side of the hand-off. The ingest writer calls [`Handoff::reserve`] for
/// each delivery while its transaction is open (one batch at a time), then
/// [`Handoff::deliver`] with the reserved jobs after the commit, or [`Handoff::abandon`] if
/// the transaction failed.
pub trait Handoff: Send + Sync {
    /// How long a handed-off delivery's lease lasts.
    fn lease(&self) -> Duration;
    /// Whether the dispatcher takes a fresh delivery of `subscription` (of `tenant`) now;
    /// `true` holds room for it until `deliver` or `abandon`. `false` leaves the delivery
    /// `pending`, for the leaser.
    fn reserve(&self, tenant: &str, subscription: &str) -> bool;
    /// The reserved deliveries, committed as leased, with their events.
    fn deliver(&self, jobs: Vec<(Leased, Arc<Event>)>);
    /// The transaction holding the reservations failed: release them all.
    fn abandon(&self);
}

#[cfg(test)]
#[path = "handoff_tests.rs"]
mod tests;
