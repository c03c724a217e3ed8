//! What an attempt's outcome becomes on the delivery: a retry on the schedule, a final state,
//! and the attempt's row.

use std::time::Duration;

use super::DispatchContext;
use crate::net::Response;
use crate::store::{Attempt, Completion, DeliveryStatus, Leased, SubscriptionEffect};

/// Response bytes kept on the attempt.
pub(super) const RESPONSE_KEPT: usize = 4096;

pub(super) fn retry_or_fail(
    ctx: &DispatchContext,
    leased: Leased,
    attempt: Attempt,
    error: String,
    retry_after: Option<Duration>,
    effect: SubscriptionEffect,
) -> Completion {
    let made = usize::try_from(leased.attempts.saturating_add(1)).unwrap_or(usize::MAX);
    let mut done = match ctx.retry.next_delay(made, retry_after) {
        Some(delay) => {
            let mut c = finished(
                ctx,
                leased,
                DeliveryStatus::Pending,
                Some(attempt),
                Some(error),
            );
            c.next_attempt_at = ctx.clock.after(delay);
            c
        }
        None => {
            ctx.metrics.delivery_finished("failed");
            finished(
                ctx,
                leased,
                DeliveryStatus::Failed,
                Some(attempt),
                Some(error),
            )
        }
    };
    done.effect = effect;
    done
}

pub(super) fn finished(
    ctx: &DispatchContext,
    leased: Leased,
    status: DeliveryStatus,
    attempt: Option<Attempt>,
    last_error: Option<String>,
) -> Completion {
    Completion {
        leased,
        status,
        next_attempt_at: ctx.clock.now_ms(),
        attempt,
        last_error,
        skip_reason: None,
        effect: SubscriptionEffect::None,
    }
}

pub(super) fn attempt_row(
    at: i64,
    outcome: &str,
    status: Option<i64>,
    latency_ms: Option<i64>,
    error: Option<String>,
    version: Option<String>,
) -> Attempt {
    Attempt {
        at,
        outcome: outcome.to_owned(),
        status_code: status,
        latency_ms,
        error,
        plugin_version: version,
        response_body: None,
    }
}

pub(super) fn response_attempt(
    at: i64,
    outcome: &str,
    response: &Response,
    latency_ms: Option<i64>,
    error: Option<String>,
    version: Option<String>,
) -> Attempt {
    let mut attempt = attempt_row(
        at,
        outcome,
        Some(i64::from(response.status)),
        latency_ms,
        error,
        version,
    );
    let kept = &response.body[..response.body.len().min(RESPONSE_KEPT)];
    attempt.response_body = Some(String::from_utf8_lossy(kept).into_owned());
    attempt
}
