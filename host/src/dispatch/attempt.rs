//! One attempt at one delivery: plugin → body → signature → send → a [`Completion`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;

use super::DispatchContext;
use crate::net::{NetError, Response};
use crate::plugins::{Decision, PluginEvent};
use crate::store::{
    Attempt, Completion, DeliveryStatus, Event, Leased, Subscription, SubscriptionEffect, now_ms,
};

/// Response bytes kept on the attempt.
pub(super) const RESPONSE_KEPT: usize = 4096;

/// What goes on the wire.
struct Outgoing {
    body: Bytes,
    content_type: String,
    plugin_headers: Vec<(String, String)>,
    plugin_version: Option<String>,
}

/// Runs one attempt and says what to record. Never fails: every failure is a result.
pub(super) async fn run(
    ctx: &DispatchContext,
    leased: Leased,
    event: Option<Arc<Event>>,
) -> Completion {
    let started = now_ms();
    let Some(sub) = ctx.store.cached_subscription(&leased.subscription_id) else {
        return finished(
            leased,
            DeliveryStatus::Cancelled,
            None,
            Some("subscription was deleted".into()),
        );
    };
    let Some(event) = event else {
        return finished(
            leased,
            DeliveryStatus::Failed,
            None,
            Some("event row is missing".into()),
        );
    };
    let outgoing = match prepare(ctx, &sub, &event).await {
        Ok(Prepared::Send(outgoing)) => outgoing,
        Ok(Prepared::Skip { reason, version }) => {
            ctx.metrics.delivery_finished("skipped");
            let attempt = attempt_row(started, "skipped", None, None, None, version);
            let mut done = finished(leased, DeliveryStatus::Skipped, Some(attempt), None);
            done.skip_reason = Some(reason);
            return done;
        }
        Err((error, version)) => {
            let attempt = attempt_row(started, "failed", None, None, Some(error.clone()), version);
            return retry_or_fail(ctx, leased, attempt, error, None, SubscriptionEffect::None);
        }
    };
    send(ctx, &sub, &event, leased, outgoing, started).await
}

enum Prepared {
    Send(Outgoing),
    Skip {
        reason: String,
        version: Option<String>,
    },
}

/// The body to send: the plugin's output, or the standard envelope when there is no plugin.
async fn prepare(
    ctx: &DispatchContext,
    sub: &Subscription,
    event: &Event,
) -> Result<Prepared, (String, Option<String>)> {
    let Some(name) = &sub.plugin else {
        return Ok(Prepared::Send(Outgoing {
            body: Bytes::from(envelope(event)),
            content_type: "application/json".into(),
            plugin_headers: Vec::new(),
            plugin_version: None,
        }));
    };
    let plugin = ctx
        .plugins
        .get(name)
        .ok_or_else(|| (format!("plugin {name:?} is not loaded"), None))?;
    let version = Some(plugin.version.clone());
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
            body: Bytes::from(request.body),
            content_type: request.content_type,
            plugin_headers: request.headers,
            plugin_version: version,
        })),
        Ok(Decision::Skip(reason)) => Ok(Prepared::Skip { reason, version }),
        Err(err) => Err((format!("plugin {name}: {err}"), version)),
    }
}

/// `{"id","type","timestamp","data"}` without re-serialising the stored data.
pub(crate) fn envelope(event: &Event) -> Vec<u8> {
    let timestamp = rfc3339(event.created_at);
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    format!(
        r#"{{"id":{},"type":{},"timestamp":"{timestamp}","data":{}}}"#,
        quote(&event.id),
        quote(&event.event_type),
        event.data
    )
    .into_bytes()
}

/// RFC 3339 in UTC, second precision, from unix milliseconds.
pub(crate) fn rfc3339(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn send(
    ctx: &DispatchContext,
    sub: &Subscription,
    event: &Event,
    leased: Leased,
    out: Outgoing,
    started: i64,
) -> Completion {
    let version = out.plugin_version.clone();
    let headers = match headers(sub, event, &out) {
        Ok(h) => h,
        Err(error) => {
            let attempt = attempt_row(started, "failed", None, None, Some(error.clone()), version);
            return retry_or_fail(ctx, leased, attempt, error, None, SubscriptionEffect::None);
        }
    };
    let clock = Instant::now();
    let result = match ctx.client.check_url(&sub.url) {
        Ok(url) => ctx.client.post(&url, headers, out.body).await,
        Err(e) => Err(e),
    };
    let latency = clock.elapsed();
    let latency_ms = Some(i64::try_from(latency.as_millis()).unwrap_or(i64::MAX));
    match result {
        Ok(response) if (200..300).contains(&response.status) => {
            ctx.metrics
                .attempt("succeeded", Some(latency.as_secs_f64()));
            ctx.metrics.delivery_finished("succeeded");
            let attempt =
                response_attempt(started, "succeeded", &response, latency_ms, None, version);
            let mut done = finished(leased, DeliveryStatus::Succeeded, Some(attempt), None);
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
                return gone(ctx, leased, attempt, sub).await;
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

fn net_error(err: &NetError) -> String {
    format!("{}: {err}", err.kind())
}

/// 410 Gone: the receiver says the endpoint is gone for good. Disable the subscription
/// (Standard Webhooks' rule) and stop retrying.
async fn gone(
    ctx: &DispatchContext,
    leased: Leased,
    attempt: Attempt,
    sub: &Subscription,
) -> Completion {
    let reason = format!("receiver answered 410 Gone at {}", rfc3339(now_ms()));
    if let Err(e) = ctx.store.disable_subscription(&sub.id, &reason).await {
        tracing::error!(error = %e, subscription = %sub.id, "could not disable subscription after 410");
    }
    tracing::warn!(subscription = %sub.id, "disabled: receiver answered 410 Gone");
    ctx.metrics.delivery_finished("failed");
    finished(
        leased,
        DeliveryStatus::Failed,
        Some(attempt),
        Some("receiver answered 410 Gone; subscription disabled".into()),
    )
}

fn retry_or_fail(
    ctx: &DispatchContext,
    leased: Leased,
    attempt: Attempt,
    error: String,
    retry_after: Option<Duration>,
    effect: SubscriptionEffect,
) -> Completion {
    let made = usize::try_from(leased.attempts + 1).unwrap_or(usize::MAX);
    let mut done = match ctx.retry.next_delay(made, retry_after) {
        Some(delay) => {
            let mut c = finished(leased, DeliveryStatus::Pending, Some(attempt), Some(error));
            c.next_attempt_at =
                now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            c
        }
        None => {
            ctx.metrics.delivery_finished("failed");
            finished(leased, DeliveryStatus::Failed, Some(attempt), Some(error))
        }
    };
    done.effect = effect;
    done
}

/// The request headers: content type, event type, the subscription's headers, the plugin's
/// headers (which win over the subscription's), then the signature, which nothing overrides.
fn headers(sub: &Subscription, event: &Event, out: &Outgoing) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    put(&mut map, "content-type", &out.content_type)?;
    put(&mut map, "switchyard-event-type", &event.event_type)?;
    for (name, value) in sub
        .headers
        .iter()
        .chain(out.plugin_headers.iter().map(|(n, v)| (n, v)))
    {
        put(&mut map, name, value)?;
    }
    let owned = sub.signature.header_names();
    if let Some((name, _)) = out
        .plugin_headers
        .iter()
        .find(|(n, _)| owned.contains(&n.as_str()))
    {
        return Err(format!("plugin tried to set the signature header {name:?}"));
    }
    let timestamp = now_ms().div_euclid(1000);
    let secrets = sub.signing_secrets(now_ms());
    // Never sent unsigned: a secret that cannot sign fails the attempt like any other
    // preparation error (recorded, retried on the schedule).
    let signed = sub
        .signature
        .sign(&secrets, &event.id, timestamp, &out.body)
        .map_err(|e| e.to_string())?;
    for (name, value) in signed {
        put(&mut map, &name, &value)?;
    }
    Ok(map)
}

fn put(map: &mut HeaderMap, name: &str, value: &str) -> Result<(), String> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("invalid header name {name:?}"))?;
    let value =
        HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
    map.insert(name, value);
    Ok(())
}

fn finished(
    leased: Leased,
    status: DeliveryStatus,
    attempt: Option<Attempt>,
    last_error: Option<String>,
) -> Completion {
    Completion {
        leased,
        status,
        next_attempt_at: now_ms(),
        attempt,
        last_error,
        skip_reason: None,
        effect: SubscriptionEffect::None,
    }
}

fn attempt_row(
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

fn response_attempt(
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
