//! When to try again: the configured schedule with ±20% jitter, pushed later (never
//! earlier) by a receiver's `Retry-After`, within a cap.

use std::time::Duration;

use rand::Rng;

/// How far jitter moves a delay either way.
const JITTER: f64 = 0.2;
/// The most a `Retry-After` may push an attempt back.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(6 * 3600);

/// The retry schedule.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
}

impl RetryPolicy {
    /// A policy with these delays between attempts (attempts = 1 + delays).
    pub fn new(schedule: Vec<Duration>) -> Self {
        Self { schedule }
    }

    /// Attempts a delivery gets in all.
    pub fn max_attempts(&self) -> usize {
        self.schedule.len() + 1
    }

    /// The delay before the next attempt after `attempts_made` attempts failed, or `None`
    /// when that was the last one. `retry_after` (only passed for 429/503) can push the
    /// delay later, up to `RETRY_AFTER_CAP` (6 h), never earlier.
    pub fn next_delay(
        &self,
        attempts_made: usize,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let base = *self.schedule.get(attempts_made.checked_sub(1)?)?;
        let jittered = jitter(base, rand::rng().random_range(-JITTER..=JITTER));
        Some(match retry_after {
            Some(wanted) => jittered.max(wanted.min(RETRY_AFTER_CAP)),
            None => jittered,
        })
    }
}

/// `base` scaled by `1 + factor`, saturating: `Duration::mul_f64` panics on overflow, and a
/// panic here stalled a worker and its subscription (config validation bounds the schedule
/// too; this never panics whatever it is given).
fn jitter(base: Duration, factor: f64) -> Duration {
    let scaled = base.as_secs_f64() * (1.0 + factor).max(0.0);
    Duration::try_from_secs_f64(scaled).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(vec![Duration::from_secs(5), Duration::from_secs(300)])
    }

    #[test]
    fn follows_the_schedule_within_jitter_then_stops() {
        let p = policy();
        assert_eq!(p.max_attempts(), 3);
        for _ in 0..200 {
            let d = p.next_delay(1, None).unwrap();
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(6),
                "{d:?}"
            );
            let d = p.next_delay(2, None).unwrap();
            assert!(
                d >= Duration::from_secs(240) && d <= Duration::from_secs(360),
                "{d:?}"
            );
        }
        assert_eq!(p.next_delay(3, None), None);
        assert_eq!(p.next_delay(0, None), None);
    }

    #[test]
    fn retry_after_only_pushes_later_and_is_capped() {
        let p = policy();
        let d = p.next_delay(1, Some(Duration::from_secs(60))).unwrap();
        assert_eq!(d, Duration::from_secs(60));
        let d = p.next_delay(1, Some(Duration::from_secs(1))).unwrap();
        assert!(d >= Duration::from_secs(4), "{d:?}");
        let d = p
            .next_delay(1, Some(Duration::from_secs(30 * 24 * 3600)))
            .unwrap();
        assert_eq!(d, RETRY_AFTER_CAP);
    }

    /// The largest schedule entry a `Duration` holds, jittered upwards, must not panic the
    /// worker that computes it (`Duration::mul_f64` overflows).
    #[test]
    fn huge_delays_saturate_instead_of_panicking() {
        let p = RetryPolicy::new(vec![Duration::MAX, Duration::from_secs(u64::MAX / 2)]);
        for _ in 0..200 {
            assert!(p.next_delay(1, None).unwrap() >= Duration::from_secs(u64::MAX / 2));
            assert!(p.next_delay(2, Some(Duration::MAX)).is_some());
        }
        assert_eq!(jitter(Duration::MAX, 0.2), Duration::MAX);
    }

    #[test]
    fn jitter_is_proportional() {
        assert_eq!(
            jitter(Duration::from_secs(10), 0.2),
            Duration::from_secs(12)
        );
        assert_eq!(
            jitter(Duration::from_secs(10), -0.2),
            Duration::from_secs(8)
        );
    }
}
