//! `/v1/deliveries`: the delivery log, attempts, and manual retry.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::extract::{ApiPath, ApiQuery};
use super::models::TenantQuery;
use super::models::{
    AttemptOut, DeliveryDetailOut, DeliveryId, DeliveryListQuery, DeliveryOut, DeliveryPage,
    DeliveryStatusOut, Page, RetryOut,
};
use super::principal::{Permission, Principal};
use super::{ApiError, AppState, ErrorCode, page_limit, rows_for};
use crate::store::{DeliveryFilter, DeliveryStatus, SubscriptionStatus};

fn not_found(id: &DeliveryId) -> ApiError {
    ApiError::not_found("delivery", id.as_str())
}

/// Lists deliveries, newest first, optionally of one subscription, one event, one status.
#[utoipa::path(
    get,
    path = "/deliveries",
    operation_id = "v1.delivery.list",
    tag = "deliveries",
    params(DeliveryListQuery, TenantQuery),
    responses((status = 200, description = "A page of deliveries.", body = DeliveryPage)),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<DeliveryListQuery>,
    ApiQuery(tenant): ApiQuery<TenantQuery>,
) -> Result<Json<Page<DeliveryOut>>, ApiError> {
    let scope = principal.scope_for_list(Permission::DeliveriesRead, tenant.tenant_id)?;
    let limit = page_limit(q.limit)?;
    let filter = DeliveryFilter {
        subscription_id: q.subscription_id.map(String::from),
        event_id: q.event_id.map(String::from),
        status: q.status.map(DeliveryStatus::from),
        before: q.cursor,
    };
    let rows = state
        .store
        .list_deliveries(&scope, &filter, rows_for(limit))
        .await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |d| d.id.clone(),
        |d| DeliveryOut::from(&d),
    )))
}

/// Shows a delivery with every attempt, oldest first.
#[utoipa::path(
    get,
    path = "/deliveries/{id}",
    operation_id = "v1.delivery.get",
    tag = "deliveries",
    params(("id" = DeliveryId, Path, description = "The delivery's id.")),
    responses((status = 200, description = "The delivery and its attempts.", body = DeliveryDetailOut)),
)]
pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<DeliveryId>,
) -> Result<Json<DeliveryDetailOut>, ApiError> {
    let scope = principal.allow(Permission::DeliveriesRead)?;
    let (delivery, attempts) = state
        .store
        .delivery(&scope, id.as_str())
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(DeliveryDetailOut {
        delivery: DeliveryOut::from(&delivery),
        attempts: attempts.iter().map(AttemptOut::from).collect(),
    }))
}

/// Queues a finished delivery (failed, succeeded, skipped or cancelled) again, due now.
#[utoipa::path(
    post,
    path = "/deliveries/{id}/retry",
    operation_id = "v1.delivery.retry",
    tag = "deliveries",
    params(("id" = DeliveryId, Path, description = "The delivery's id.")),
    responses((status = 202, description = "Queued again.", body = RetryOut)),
)]
pub async fn retry(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<DeliveryId>,
) -> Result<(StatusCode, Json<RetryOut>), ApiError> {
    let scope = principal.allow(Permission::DeliveriesWrite)?;
    let Some((delivery, _)) = state.store.delivery(&scope, id.as_str()).await? else {
        return Err(not_found(&id));
    };
    match state.store.cached_subscription(&delivery.subscription_id) {
        Some(sub) if sub.status == SubscriptionStatus::Disabled => {
            return Err(ApiError::conflict(
                ErrorCode::SubscriptionDisabled,
                format!(
                    "subscription {} is disabled; enable it first (POST /v1/subscriptions/{}/enable)",
                    sub.id, sub.id
                ),
            ));
        }
        Some(_) => {}
        None => {
            return Err(ApiError::conflict(
                ErrorCode::SubscriptionDeleted,
                "the delivery's subscription was deleted",
            ));
        }
    }
    match state.store.retry_delivery(&scope, id.as_str()).await? {
        None => Err(not_found(&id)),
        Some(DeliveryStatus::Pending | DeliveryStatus::Delivering) => Err(ApiError::conflict(
            ErrorCode::AlreadyQueued,
            format!("delivery {id} is already queued"),
        )),
        Some(_) => {
            state.wake.notify_one();
            Ok((
                StatusCode::ACCEPTED,
                Json(RetryOut {
                    id,
                    status: DeliveryStatusOut::Pending,
                }),
            ))
        }
    }
}
