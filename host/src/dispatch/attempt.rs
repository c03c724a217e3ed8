//! One attempt at one delivery: may it start → plugin (a plugin slot) → body → signature →
//! send (a delivery slot) → a [`Completion`].
//!
//! An attempt starts only while its lease can hold it: at the start, and again after waiting
//! for each slot, the lease must have room for the rest of the attempt (plugin deadline and
//! delivery timeout) plus [`LEASE_MARGIN`]. Otherwise the job is given back unattempted and
//! leased again with a fresh lease — checked in memory, so no write per delivery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use super::board::Job;
use super::outcome::{attempt_row, finished, response_attempt, retry_or_fail};
use super::request::{Outgoing, headers, net_error, rfc3339};
use crate::clock::duration_ms;
use crate::config::LEASE_MARGIN;
use crate::plugins::{Decision, PluginEvent};
use crate::store::{
    Attempt, Completion, DeliveryStatus, Event, Leased, Subscription, SubscriptionEffect,
    SubscriptionStatus,
};

/// The error of an attempt at a delivery whose event's content was expunged.
pub(crate) const EXPUNGED: &str =
    "the event's content was expunged (DELETE /v1/events/{id}/content): nothing to deliver";

/// What became of a job.
pub(super) enum Attempted {
    /// A result to record.
    Done(Box<Completion>),
    /// Not attempted (the subscription is disabled, the lease could not hold the attempt, its
    /// plugin is still loading, or its subscription could not be read): the lease is to be
    /// given back.
    NotStarted,
}

/// Why an attempt does not go ahead.
enum Stop {
    /// The subscription is deleted.
    Cancelled,
    /// Not now: give the lease back.
    NotStarted,
}

/// Runs one attempt and says what to record. Every failure is a result.
pub(super) async fn run(shared: &Shared, job: Job) -> Attempted {
    let ctx = &shared.ctx;
    let Job { leased, event } = job;
    let sub = match may_start(shared, &leased, ctx.attempt_time()).await {
        Ok(sub) => sub,
        Err(stop) => return stopped(stop, leased, ctx),
    };
    let Some(event) = event else {
        return done(finished(
            ctx,
            leased,
            DeliveryStatus::Failed,
            None,
            Some("event row is missing".into()),
        ));
    };
    let started = ctx.clock.now_ms();
    if event.expunged_at.is_some() {
        // Nothing is left to send: a dead letter at once, not a retry on the schedule (a retry
        // by hand fails the same way).
        ctx.metrics.delivery_finished("failed");
        let attempt = attempt_row(started, "failed", None, None, Some(EXPUNGED.into()), None);
        return done(finished(
            ctx,
            leased,
            DeliveryStatus::Failed,
            Some(attempt),
            Some(EXPUNGED.into()),
        ));
    }
    // The subscription's id as the gates' key, made once for both of them.
    let key: Arc<str> = Arc::from(sub.id.as_str());
    let outgoing = match prepare(shared, &sub, &key, &event, &leased).await {
        Ok(Prepared::Send(outgoing)) => outgoing,
        Ok(Prepared::Skip { reason, version }) => {
            ctx.metrics.delivery_finished("skipped");
            let attempt = attempt_row(started, "skipped", None, None, None, version);
            let mut done = finished(ctx, leased, DeliveryStatus::Skipped, Some(attempt), None);
            done.skip_reason = Some(reason);
            return Attempted::Done(Box::new(done));
        }
        Ok(Prepared::Stopped(stop)) => return stopped(stop, leased, ctx),
        Err((error, version)) => {
            let attempt = attempt_row(started, "failed", None, None, Some(error.clone()), version);
            return done(retry_or_fail(
                ctx,
                leased,
                attempt,
                error,
                None,
                SubscriptionEffect::None,
            ));
        }
    };
    let _slot = shared.send_gate.acquire(&key, &key).await;
    // Waited for a slot: still enabled, and the lease still holds the request?
    let sub = match may_start(shared, &leased, ctx.delivery_timeout).await {
        Ok(sub) => sub,
        Err(stop) => return stopped(stop, leased, ctx),
    };
    done(send(shared, &sub, &event, leased, outgoing, started).await)
}

fn done(completion: Completion) -> Attempted {
    Attempted::Done(Box::new(completion))
}

fn stopped(stop: Stop, leased: Leased, ctx: &super::DispatchContext) -> Attempted {
    match stop {
        Stop::Cancelled => done(finished(
            ctx,
            leased,
            DeliveryStatus::Cancelled,
            None,
            Some("subscription was deleted".into()),
        )),
        Stop::NotStarted => {
            ctx.metrics.lease_returned();
            Attempted::NotStarted
        }
    }
}

/// The delivery's subscription, if an attempt needing `need` may start now: the
/// subscription is enabled and not being disabled, and the lease has room for `need` plus
/// [`LEASE_MARGIN`]. When the in-memory copy does not know the subscription, the database is
/// read again: only a subscription deleted there cancels the delivery.
async fn may_start(
    shared: &Shared,
    leased: &Leased,
    need: Duration,
) -> Result<Arc<Subscription>, Stop> {
    let ctx = &shared.ctx;
    let sub = match ctx.store.cached_subscription(&leased.subscription_id) {
        Some(sub) => sub,
        None => match ctx
            .store
            .refresh_subscription(&leased.subscription_id)
            .await
        {
            Ok(Some(sub)) => {
                tracing::warn!(subscription = %sub.id, "subscription was missing from the cache; read it again");
                sub
            }
            Ok(None) => return Err(Stop::Cancelled),
            Err(e) => {
                tracing::error!(error = %e, subscription = %leased.subscription_id, "could not read subscription; delivery goes back to the queue");
                return Err(Stop::NotStarted);
            }
        },
    };
    if sub.status == SubscriptionStatus::Disabled || shared.board().parking(&sub.id) {
        return Err(Stop::NotStarted);
    }
    let left = leased.lease_until.saturating_sub(ctx.clock.now_ms());
    if left < duration_ms(need.saturating_add(LEASE_MARGIN)) {
        tracing::debug!(delivery = %leased.id, left_ms = left, "lease too short for the attempt; giving it back");
        return Err(Stop::NotStarted);
    }
    Ok(sub)
}

enum Prepared {
    Send(Outgoing),
    Skip {
        reason: String,
        version: Option<String>,
    },
    Stopped(Stop),
}

/// The body to send: the plugin's output (called with a plugin slot), or the standard envelope
/// when there is no plugin.
async fn prepare(
    shared: &Shared,
    sub: &Subscription,
    key: &Arc<str>,
    event: &Event,
    leased: &Leased,
) -> Result<Prepared, (String, Option<String>)> {
    let ctx = &shared.ctx;
    let Some(name) = &sub.plugin else {
        return Ok(Prepared::Send(Outgoing::envelope(event)));
    };
    let Some(plugin) = ctx.plugins.get(name) else {
        if ctx.plugins.is_loading(name) {
            // Still compiling after a start: not a failure of this delivery. The leaser leaves
            // the subscription out until the plugin is ready.
            return Ok(Prepared::Stopped(Stop::NotStarted));
        }
        return Err((format!("plugin {name:?} is not loaded"), None));
    };
    let version = Some(plugin.version.clone());
    let group: Arc<str> = Arc::from(name.as_str());
    let _slot = shared.plugin_gate.acquire(&group, key).await;
    // Waited for a slot: the attempt must still fit in its lease.
    let sub = match may_start(shared, leased, ctx.attempt_time()).await {
        Ok(sub) => sub,
        Err(stop) => return Ok(Prepared::Stopped(stop)),
    };
    let input = PluginEvent {
        id: event.id.clone(),
        event_type: event.event_type.clone(),
        timestamp: event.created_at.div_euclid(1000),
        subscription_id: sub.id.clone(),
        payload: event.data.clone(),
    };
    let config = sub.plugin_config.as_deref().unwrap_or("null");
    let report = ctx
        .plugins
        .runtime()
        .transform(&plugin, input, config)
        .await;
    ctx.metrics.plugin_call(report.duration.as_secs_f64());
    match report.result {
        Ok(Decision::Deliver(request)) => Ok(Prepared::Send(Outgoing {
            body: bytes::Bytes::from(request.body),
            content_type: request.content_type,
            plugin_headers: request.headers,
            plugin_version: version,
        })),
        Ok(Decision::Skip(reason)) => Ok(Prepared::Skip { reason, version }),
        Err(err) => Err((format!("plugin {name}: {err}"), version)),
    }
}

async fn send(
    shared: &Shared,
    sub: &Subscription,
    event: &Event,
    leased: Leased,
    out: Outgoing,
    started: i64,
) -> Completion {
    let ctx = &shared.ctx;
    let version = out.plugin_version.clone();
    let headers = match headers(sub, event, &out, ctx.clock.now_ms()) {
        Ok(h) => h,
        Err(error) => {
            let attempt = attempt_row(started, "failed", None, None, Some(error.clone()), version);
            return retry_or_fail(ctx, leased, attempt, error, None, SubscriptionEffect::None);
        }
    };
    let timer = Instant::now();
    let parsed = match &sub.parsed_url {
        Some(url) => Ok(std::borrow::Cow::Borrowed(url)),
        None => ctx.client.check_url(&sub.url).map(std::borrow::Cow::Owned),
    };
    let result = match parsed {
        Ok(url) => ctx.client.post(&url, headers, out.body).await,
        Err(e) => Err(e),
    };
    let latency = timer.elapsed();
    let latency_ms = Some(i64::try_from(latency.as_millis()).unwrap_or(i64::MAX));
    match result {
        Ok(response) if (200..300).contains(&response.status) => {
            ctx.metrics
                .attempt("succeeded", Some(latency.as_secs_f64()));
            ctx.metrics.delivery_finished("succeeded");
            let attempt =
                response_attempt(started, "succeeded", &response, latency_ms, None, version);
            let mut done = finished(ctx, leased, DeliveryStatus::Succeeded, Some(attempt), None);
            done.effect = SubscriptionEffect::Succeeded;
            done
        }
        Ok(response) => {
            ctx.metrics.attempt("failed", Some(latency.as_secs_f64()));
            let error = format!("receiver answered {}", response.status);
            let attempt = response_attempt(
                started,
                "failed",
                &response,
                latency_ms,
                Some(error.clone()),
                version,
            );
            if response.status == 410 {
                return gone(shared, leased, attempt, sub).await;
            }
            let retry_after = matches!(response.status, 429 | 503)
                .then_some(response.retry_after)
                .flatten();
            retry_or_fail(
                ctx,
                leased,
                attempt,
                error,
                retry_after,
                SubscriptionEffect::Failed,
            )
        }
        Err(err) => {
            ctx.metrics.attempt("failed", Some(latency.as_secs_f64()));
            let error = net_error(&err);
            let attempt = attempt_row(
                started,
                "failed",
                None,
                latency_ms,
                Some(error.clone()),
                version,
            );
            retry_or_fail(
                ctx,
                leased,
                attempt,
                error,
                None,
                SubscriptionEffect::Failed,
            )
        }
    }
}

/// 410 Gone: the receiver says the endpoint is gone for good. Disable the subscription
/// (Standard Webhooks' rule) — at once, so nothing queued behind this attempt is sent — and
/// stop retrying this delivery.
async fn gone(shared: &Shared, leased: Leased, attempt: Attempt, sub: &Subscription) -> Completion {
    let ctx = &shared.ctx;
    let reason = format!(
        "receiver answered 410 Gone at {}",
        rfc3339(ctx.clock.now_ms())
    );
    tracing::warn!(subscription = %sub.id, "disabling: receiver answered 410 Gone");
    shared.disable(&sub.id, &reason).await;
    ctx.metrics.delivery_finished("failed");
    finished(
        ctx,
        leased,
        DeliveryStatus::Failed,
        Some(attempt),
        Some("receiver answered 410 Gone; subscription disabled".into()),
    )
}
