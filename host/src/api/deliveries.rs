//! `/v1/deliveries`: the delivery log, attempts, and manual retry.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ApiPath, ApiQuery};
use super::{ApiError, AppState, paged, timestamp};
use crate::store::{Attempt, Delivery, DeliveryFilter, DeliveryStatus, SubscriptionStatus};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    subscription_id: Option<String>,
    event_id: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /v1/deliveries`, newest first.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("status {s:?} is not one of pending, delivering, succeeded, failed, skipped, cancelled"))
        })?),
    };
    let limit = super::page_limit(q.limit)?;
    let filter = DeliveryFilter {
        subscription_id: q.subscription_id,
        event_id: q.event_id,
        status,
        before: q.cursor,
    };
    let rows = state.store.list_deliveries(&filter, limit + 1).await?;
    Ok(axum::Json(paged(rows, limit, |d| d.id.clone(), view)))
}

/// `GET /v1/deliveries/{id}`, with its attempts.
pub async fn get_one(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (delivery, attempts) = state
        .store
        .delivery(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let mut body = view(&delivery);
    body["attempts"] = attempts.iter().map(attempt_view).collect();
    Ok(axum::Json(body))
}

/// `POST /v1/deliveries/{id}/retry`: queue a finished delivery again.
pub async fn retry(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let Some((delivery, _)) = state.store.delivery(&id).await? else {
        return Err(not_found(&id));
    };
    if let Some(sub) = state.store.cached_subscription(&delivery.subscription_id) {
        if sub.status == SubscriptionStatus::Disabled {
            return Err(ApiError::Conflict {
                code: "subscription_disabled",
                message: format!(
                    "subscription {} is disabled; enable it first (POST /v1/subscriptions/{}/enable)",
                    sub.id, sub.id
                ),
            });
        }
    } else {
        return Err(ApiError::Conflict {
            code: "subscription_deleted",
            message: "the delivery's subscription was deleted".into(),
        });
    }
    match state.store.retry_delivery(&id).await? {
        None => Err(not_found(&id)),
        Some(DeliveryStatus::Pending | DeliveryStatus::Delivering) => Err(ApiError::Conflict {
            code: "already_queued",
            message: format!("delivery {id} is already queued"),
        }),
        Some(_) => {
            state.wake.notify_one();
            Ok((
                StatusCode::ACCEPTED,
                axum::Json(json!({ "id": id, "status": "pending" })),
            ))
        }
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("delivery {id:?}"))
}

/// The delivery as the API shows it.
pub(super) fn view(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "event_id": d.event_id,
        "subscription_id": d.subscription_id,
        "status": d.status,
        "attempts_made": d.attempts,
        "next_attempt_at": d.next_attempt_at.map(timestamp),
        "last_error": d.last_error,
        "skip_reason": d.skip_reason,
        "created_at": timestamp(d.created_at),
        "updated_at": timestamp(d.updated_at),
    })
}

fn attempt_view(a: &Attempt) -> Value {
    json!({
        "at": timestamp(a.at),
        "outcome": a.outcome,
        "status_code": a.status_code,
        "latency_ms": a.latency_ms,
        "error": a.error,
        "plugin_version": a.plugin_version,
        "response_body": a.response_body,
    })
}
