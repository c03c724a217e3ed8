//! `GET /v1/attempts`: every attempt in the order it was recorded — the feed behind
//! `switchyard deliveries tail`. Without `after`, the latest `limit` attempts; with it, the ones
//! recorded since, oldest first. `next_cursor` is where to continue: the last attempt's id, or
//! the given `after` when nothing new came (so a follower keeps polling with it).

use axum::Json;
use axum::extract::State;

use super::extract::ApiQuery;
use super::models::{AttemptFeedOut, AttemptFeedPage, AttemptFeedQuery, AttemptOut, Page};
use super::principal::{Permission, Principal};
use super::{ApiError, AppState, ErrorCode, page_limit};
use crate::store::{FeedAttempt, FeedFilter};

/// Lists attempts in the order they were recorded: the latest ones, or those after a cursor.
#[utoipa::path(
    get,
    path = "/attempts",
    operation_id = "v1.attempt.list",
    tag = "deliveries",
    params(AttemptFeedQuery),
    responses((status = 200, description = "Attempts, oldest first; `next_cursor` is the `after` of the next call.", body = AttemptFeedPage)),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<AttemptFeedQuery>,
) -> Result<Json<Page<AttemptFeedOut>>, ApiError> {
    let scope = principal.scope_for_list(Permission::DeliveriesRead, q.tenant_id.clone())?;
    let limit = page_limit(q.limit)?;
    let after = match q.after.as_deref() {
        None => None,
        Some(text) => Some(
            text.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        ErrorCode::InvalidQuery,
                        "after must be an attempt cursor (a next_cursor of this route)",
                    )
                })?,
        ),
    };
    let rows = state
        .store
        .attempt_feed(
            &scope,
            FeedFilter {
                after,
                subscription_id: q.subscription_id.map(String::from),
            },
            i64::try_from(limit).unwrap_or(250),
        )
        .await?;
    let next_cursor = rows.last().map(|a| a.id).or(after).map(|id| id.to_string());
    Ok(Json(Page {
        data: rows.iter().map(view).collect(),
        next_cursor,
    }))
}

fn view(a: &FeedAttempt) -> AttemptFeedOut {
    AttemptFeedOut {
        id: a.id.to_string(),
        delivery_id: a.delivery_id.clone().into(),
        subscription_id: a.subscription_id.clone().into(),
        event_id: a.event_id.clone().into(),
        event_type: a.event_type.clone(),
        attempt: AttemptOut::from(&a.attempt),
    }
}
