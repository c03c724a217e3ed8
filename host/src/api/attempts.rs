//! `GET /v1/attempts`: every attempt in the order it was recorded — the feed behind
//! `switchyard deliveries tail`. Without `after`, the latest `limit` attempts; with it, the ones
//! recorded since, oldest first. `next_cursor` is where to continue (the last attempt's id, or
//! the given `after` when nothing new came).

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::extract::ApiQuery;
use super::{ApiError, AppState, timestamp};
use crate::store::{FeedAttempt, FeedFilter};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    after: Option<String>,
    subscription_id: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/attempts?after=&subscription_id=&limit=`
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<FeedQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = super::page_limit(q.limit)?;
    let after = match q.after.as_deref() {
        None => None,
        Some(text) => Some(
            text.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        "after must be an attempt cursor (a next_cursor from this route)",
                    )
                })?,
        ),
    };
    let rows = state
        .store
        .attempt_feed(
            FeedFilter {
                after,
                subscription_id: q.subscription_id,
            },
            limit,
        )
        .await?;
    let next = rows.last().map(|a| a.id).or(after).map(|id| id.to_string());
    Ok(axum::Json(json!({
        "data": rows.iter().map(view).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

fn view(a: &FeedAttempt) -> serde_json::Value {
    json!({
        "id": a.id.to_string(),
        "delivery_id": a.delivery_id,
        "subscription_id": a.subscription_id,
        "event_id": a.event_id,
        "event_type": a.event_type,
        "at": timestamp(a.attempt.at),
        "outcome": a.attempt.outcome,
        "status_code": a.attempt.status_code,
        "latency_ms": a.attempt.latency_ms,
        "error": a.attempt.error,
        "plugin_version": a.attempt.plugin_version,
    })
}
