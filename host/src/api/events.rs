//! `/v1/events`: ingest (answered once durably committed) and lookup.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::value::RawValue;

use super::extract::{ApiJson, ApiPath};
use super::models::{DeliveryOut, EventAccepted, EventId, EventIn, EventOut, Page, Timestamp};
use super::principal::{Permission, Principal};
use super::{ApiError, AppState, ErrorCode};
use crate::store::NewEvent;
use crate::store::matching::OPERATIONAL_PREFIX;

const MAX_TYPE_LEN: usize = 128;
const MAX_KEY_LEN: usize = 255;
/// Deliveries shown with an event; the rest are paged through `GET /v1/deliveries?event_id=`.
pub const EVENT_DELIVERIES: usize = 1000;

/// Accepts an event: `202` once it and one delivery per matching subscription are durably
/// committed. The same idempotency key (`id`) again answers with the first event and
/// creates nothing.
#[utoipa::path(
    post,
    path = "/events",
    operation_id = "v1.event.create",
    tag = "events",
    request_body = EventIn,
    responses((status = 202, description = "Stored (or a duplicate of an earlier event).", body = EventAccepted)),
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<EventIn>,
) -> Result<(StatusCode, Json<EventAccepted>), ApiError> {
    let tenant_id = principal.tenant_for_write(Permission::EventsWrite, body.tenant_id)?;
    check_event_type(&body.event_type)?;
    if body.event_type.starts_with(OPERATIONAL_PREFIX) {
        return Err(ApiError::invalid(
            ErrorCode::ReservedType,
            format!(
                "{:?}: types starting with {OPERATIONAL_PREFIX:?} are Switchyard's own operational events",
                body.event_type
            ),
        ));
    }
    if let Some(key) = &body.id
        && (key.is_empty() || key.len() > MAX_KEY_LEN)
    {
        return Err(ApiError::invalid(
            ErrorCode::InvalidId,
            format!("id (the idempotency key) must be 1 to {MAX_KEY_LEN} characters"),
        ));
    }
    let outcome = state
        .ingestor
        .ingest(NewEvent {
            tenant_id,
            event_type: body.event_type,
            // The exact JSON text received: stored and delivered without re-serialising.
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
        Json(EventAccepted {
            id: outcome.event_id.into(),
            deliveries: u64::try_from(outcome.deliveries).unwrap_or(u64::MAX),
        }),
    ))
}

/// Shows an event, its data exactly as received, and its newest 1000 deliveries; past those,
/// `deliveries_next_cursor` continues in `GET /v1/deliveries?event_id=`.
#[utoipa::path(
    get,
    path = "/events/{id}",
    operation_id = "v1.event.get",
    tag = "events",
    params(("id" = EventId, Path, description = "The event's id.")),
    responses((status = 200, description = "The event.", body = EventOut)),
)]
pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<EventId>,
) -> Result<Json<EventOut>, ApiError> {
    let scope = principal.allow(Permission::DeliveriesRead)?;
    let rows = i64::try_from(EVENT_DELIVERIES + 1).unwrap_or(i64::MAX);
    let (event, deliveries) = state
        .store
        .event(&scope, id.as_str(), rows)
        .await?
        .ok_or_else(|| ApiError::not_found("event", id.as_str()))?;
    // The data goes out as the exact text stored: parsing it into a `Value` would round big
    // numbers, drop out-of-range ones (the whole `data` became null) and refuse deep nesting.
    // An expunged event's data is `null`.
    let text = match event.expunged_at {
        Some(_) => "null".to_owned(),
        None => event.data,
    };
    let data = RawValue::from_string(text)
        .map_err(|e| ApiError::Internal(format!("event {id}: stored data is not JSON: {e}")))?;
    let page = Page::from_rows(
        deliveries,
        EVENT_DELIVERIES,
        |d| d.id.clone(),
        |d| DeliveryOut::from(&d),
    );
    Ok(Json(EventOut {
        id: event.id.into(),
        tenant_id: event.tenant_id,
        event_type: event.event_type,
        timestamp: Timestamp::from_unix_ms(event.created_at),
        idempotency_key: event.idempotency_key,
        data,
        expunged_at: event.expunged_at.map(Timestamp::from_unix_ms),
        deliveries: page.data,
        deliveries_next_cursor: page.next_cursor,
    }))
}

/// Expunges an event's content (e.g. to honour an erasure request): its `data` and the
/// response bodies stored with its attempts are deleted; the event, its deliveries and the
/// attempts' other fields stay. Its deliveries not yet attempted fail at their next attempt
/// (`last_error` says why) instead of being sent; an attempt already in flight may still send
/// the data, but its response body is not kept. Expunging again answers `204` too.
#[utoipa::path(
    delete,
    path = "/events/{id}/content",
    operation_id = "v1.event.expunge",
    tag = "events",
    params(("id" = EventId, Path, description = "The event's id.")),
    responses((status = 204, description = "Expunged (or already was).")),
)]
pub async fn expunge(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<EventId>,
) -> Result<StatusCode, ApiError> {
    // The producer that published the data may erase it: the same scope as publishing.
    let scope = principal.allow(Permission::EventsWrite)?;
    if state.store.expunge_event(&scope, id.as_str()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("event", id.as_str()))
    }
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
            ErrorCode::InvalidType,
            format!(
                "{event_type:?} is not an event type: use up to {MAX_TYPE_LEN} characters of dot-separated segments of letters, digits, '_' and '-', e.g. \"post.published\""
            ),
        ))
    }
}
