//! The service's wall clock, read through one handle that the store and the dispatcher hold.
//!
//! Leases, retry times, failing streaks, secret grace periods and event timestamps are all
//! unix milliseconds from this clock. The real one reads the system time; a manual one stands
//! still until a test moves it, so time-dependent behaviour (a lease running out in the middle
//! of an attempt, a retry coming due) is tested by moving time rather than waiting for it.
//! Timers that only pace the service's own loops (the leaser's idle poll) stay on Tokio time,
//! which tests can pause and advance on their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A wall clock in unix milliseconds. Cheap to clone; clones of a manual clock move together.
#[derive(Debug, Clone, Default)]
pub struct Clock(Source);

#[derive(Debug, Clone, Default)]
enum Source {
    #[default]
    System,
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// The system clock (what the service runs with).
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// A clock that reads `start_ms` until moved with [`ManualClock`]'s methods.
    pub fn manual(start_ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(start_ms)))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Source::System => system_ms(),
            Source::Manual(ms) => ms.load(Ordering::SeqCst),
        }
    }

    /// `now + after`, saturating (a far-off duration gives a far-off time, never a panic).
    pub fn after(&self, after: Duration) -> i64 {
        self.now_ms().saturating_add(duration_ms(after))
    }
}

/// The handle that moves a manual clock (tests). Every [`Clock`] made from it reads the same
/// time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A [`Clock`] reading this time, for the store and the dispatcher.
    pub fn clock(&self) -> Clock {
        Clock(Source::Manual(self.0.clone()))
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(duration_ms(by), Ordering::SeqCst);
    }

    /// The current time in unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A duration in whole milliseconds, saturating at `i64::MAX`.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn system_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos.div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_moved_and_its_clones_move_together() {
        let manual = Clock::manual(1_000);
        let (a, b) = (manual.clock(), manual.clock().clone());
        assert_eq!(a.now_ms(), 1_000);
        manual.advance(Duration::from_millis(1_500));
        assert_eq!((a.now_ms(), b.now_ms()), (2_500, 2_500));
        assert_eq!(a.after(Duration::from_secs(1)), 3_500);
        assert_eq!(a.after(Duration::MAX), i64::MAX, "saturates, never panics");
    }

    #[test]
    fn the_system_clock_reads_the_time() {
        let before = system_ms();
        let now = Clock::system().now_ms();
        assert!(now >= before && now < before + 60_000, "{before} {now}");
        // 2020-01-01 as a sanity floor.
        assert!(now > 1_577_836_800_000);
    }
}
