//! `/v1/events`: ingest (answered once durably committed) and lookup.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::deliveries::view as delivery_view;
use super::extract::{ApiJson, ApiPath};
use super::{ApiError, AppState, timestamp};
use crate::store::NewEvent;

const MAX_TYPE_LEN: usize = 128;
const MAX_KEY_LEN: usize = 255;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    #[serde(rename = "type")]
    event_type: String,
    /// Kept as the exact JSON text received: stored and delivered without re-serialising.
    data: Box<RawValue>,
    /// The producer's idempotency key.
    id: Option<String>,
}

/// `POST /v1/events`: `202 {"id", "deliveries"}` once the event and its deliveries are committed.
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<impl IntoResponse, ApiError> {
    check_event_type(&body.event_type)?;
    if let Some(key) = &body.id
        && (key.is_empty() || key.len() > MAX_KEY_LEN)
    {
        return Err(ApiError::invalid(
            "invalid_id",
            format!("id (the idempotency key) must be 1 to {MAX_KEY_LEN} characters"),
        ));
    }
    let outcome = state
        .ingestor
        .ingest(NewEvent {
            event_type: body.event_type,
            data: body.data.get().to_owned(),
            idempotency_key: body.id,
            only_subscription: None,
        })
        .await?;
    if !outcome.duplicate {
        state.metrics.event_ingested(1);
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "id": outcome.event_id, "deliveries": outcome.deliveries })),
    ))
}

/// `GET /v1/events/{id}`: the event and its deliveries.
pub async fn get_one(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (event, deliveries) = state
        .store
        .event(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("event {id:?}")))?;
    // The data goes out as the exact text stored: parsing it into a `Value` would round big
    // numbers, drop out-of-range ones (the whole `data` became null) and refuse deep nesting.
    let data = RawValue::from_string(event.data)
        .map_err(|e| ApiError::Internal(format!("event {id}: stored data is not JSON: {e}")))?;
    Ok(axum::Json(EventView {
        id: event.id,
        event_type: event.event_type,
        timestamp: timestamp(event.created_at),
        idempotency_key: event.idempotency_key,
        data,
        deliveries: deliveries.iter().map(delivery_view).collect(),
    }))
}

/// `GET /v1/events/{id}`'s answer.
#[derive(serde::Serialize)]
struct EventView {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    timestamp: String,
    idempotency_key: Option<String>,
    data: Box<RawValue>,
    deliveries: Vec<Value>,
}

/// Event types are dot-separated segments of letters, digits, `_` and `-`.
pub(super) fn check_event_type(event_type: &str) -> Result<(), ApiError> {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if event_type.len() <= MAX_TYPE_LEN && event_type.split('.').all(segment_ok) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_type",
            format!(
                "{event_type:?} is not an event type: use up to {MAX_TYPE_LEN} characters of dot-separated segments of letters, digits, '_' and '-', e.g. \"post.published\""
            ),
        ))
    }
}
