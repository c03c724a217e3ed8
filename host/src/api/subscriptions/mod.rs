//! `/v1/subscriptions`: register endpoints, change them, rotate secrets, send test events,
//! re-enable and recover.

mod validate;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use super::models::TenantQuery;
use super::models::{
    ListQuery, Page, RecoverIn, RecoverOut, SecretOut, SubscriptionId, SubscriptionIn,
    SubscriptionOut, SubscriptionPage, SubscriptionPatch, SubscriptionQuery, TestEventIn,
    TestEventOut,
};
use super::principal::{Permission, Principal};
use super::{ApiError, AppState, ErrorCode, page_limit, rows_for};
use crate::signing::{Scheme, generate_secret};
use crate::store::{
    NewEvent, NewSubscription, Subscription, SubscriptionStatus, SubscriptionUpdate, UpdateOutcome,
};
use crate::tenant::Scope;
use validate::{Candidate, check_secret, config_text, validate};

/// How often a PATCH is merged again when the subscription changed between its read and its
/// write, before it gives up with `409 concurrent_update`.
const MAX_MERGES: usize = 16;

fn not_found(id: &SubscriptionId) -> ApiError {
    ApiError::not_found("subscription", id.as_str())
}

/// The subscription `id` inside `scope`, or `404` (also for another tenant's).
async fn stored(
    state: &AppState,
    scope: &Scope,
    id: &SubscriptionId,
) -> Result<Subscription, ApiError> {
    state
        .store
        .subscription(scope, id.as_str())
        .await?
        .ok_or_else(|| not_found(id))
}

fn grace_ms(state: &AppState) -> i64 {
    i64::try_from(state.config.rotation_grace.as_millis()).unwrap_or(i64::MAX)
}

/// Creates a subscription; the answer is the only one that shows its secret (and its custom
/// header values without `?include_header_values=true`).
#[utoipa::path(
    post,
    path = "/subscriptions",
    operation_id = "v1.subscription.create",
    tag = "subscriptions",
    request_body = SubscriptionIn,
    responses((status = 201, description = "Created; `secret` is shown only now.", body = SubscriptionOut)),
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<SubscriptionIn>,
) -> Result<(StatusCode, Json<SubscriptionOut>), ApiError> {
    let tenant_id = principal.tenant_for_write(Permission::SubscriptionsWrite, body.tenant_id)?;
    let candidate = Candidate {
        url: body.url,
        events: body.events,
        plugin: body.plugin,
        plugin_config: config_text(body.plugin_config),
        description: body.description,
        headers: body.headers,
        signature: body.signature.map(Scheme::from).unwrap_or_default(),
    };
    let candidate = validate(&state, candidate).await?;
    let secret = match body.secret {
        Some(secret) => {
            check_secret(&candidate.signature, &secret)?;
            secret
        }
        None => candidate.signature.generate_secret(),
    };
    let sub = state
        .store
        .create_subscription(NewSubscription {
            tenant_id,
            url: candidate.url,
            events: candidate.events,
            plugin: candidate.plugin,
            plugin_config: candidate.plugin_config,
            description: candidate.description,
            headers: candidate.headers,
            signature: candidate.signature,
            secret,
        })
        .await?;
    let mut out = SubscriptionOut::new(&sub, true);
    out.secret = Some(sub.secret.clone());
    Ok((StatusCode::CREATED, Json(out)))
}

/// Lists subscriptions in creation order.
#[utoipa::path(
    get,
    path = "/subscriptions",
    operation_id = "v1.subscription.list",
    tag = "subscriptions",
    params(ListQuery, SubscriptionQuery, TenantQuery),
    responses((status = 200, description = "A page of subscriptions.", body = SubscriptionPage)),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<ListQuery>,
    ApiQuery(query): ApiQuery<SubscriptionQuery>,
    ApiQuery(tenant): ApiQuery<TenantQuery>,
) -> Result<Json<Page<SubscriptionOut>>, ApiError> {
    let scope = principal.scope_for_list(Permission::SubscriptionsRead, tenant.tenant_id)?;
    let limit = page_limit(page.limit)?;
    let rows = state
        .store
        .list_subscriptions(&scope, page.cursor.as_deref(), rows_for(limit))
        .await?;
    let values = query.include_header_values.unwrap_or(false);
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |s| s.id.clone(),
        |s| SubscriptionOut::new(&s, values),
    )))
}

/// Shows a subscription (never its secret).
#[utoipa::path(
    get,
    path = "/subscriptions/{id}",
    operation_id = "v1.subscription.get",
    tag = "subscriptions",
    params(("id" = SubscriptionId, Path, description = "The subscription's id."), SubscriptionQuery),
    responses((status = 200, description = "The subscription.", body = SubscriptionOut)),
)]
pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<SubscriptionId>,
    ApiQuery(query): ApiQuery<SubscriptionQuery>,
) -> Result<Json<SubscriptionOut>, ApiError> {
    let scope = principal.allow(Permission::SubscriptionsRead)?;
    let sub = stored(&state, &scope, &id).await?;
    Ok(Json(SubscriptionOut::new(
        &sub,
        query.include_header_values.unwrap_or(false),
    )))
}

/// Changes the given fields. The PATCH is merged into the stored subscription and the result
/// validated as a whole; it is written only if the subscription did not change meanwhile
/// (otherwise it is merged again), so concurrent PATCHes never lose each other's fields.
#[utoipa::path(
    patch,
    path = "/subscriptions/{id}",
    operation_id = "v1.subscription.update",
    tag = "subscriptions",
    params(("id" = SubscriptionId, Path, description = "The subscription's id.")),
    request_body = SubscriptionPatch,
    responses((status = 200, description = "The changed subscription (`secret` only when the PATCH set or rotated it).", body = SubscriptionOut)),
)]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<SubscriptionId>,
    ApiJson(patch): ApiJson<SubscriptionPatch>,
) -> Result<Json<SubscriptionOut>, ApiError> {
    let scope = principal.allow(Permission::SubscriptionsWrite)?;
    if patch.secret.is_some() && patch.rotate_secret {
        return Err(ApiError::invalid(
            ErrorCode::InvalidSecret,
            "send either a new secret or rotate_secret, not both",
        ));
    }
    for _ in 0..MAX_MERGES {
        let current = stored(&state, &scope, &id).await?;
        let candidate = validate(&state, Candidate::merged(&current, patch.clone())?).await?;
        let secret = match (&patch.secret, patch.rotate_secret) {
            (Some(secret), _) => {
                check_secret(&candidate.signature, secret)?;
                Some(secret.clone())
            }
            (None, true) => Some(candidate.signature.generate_secret()),
            (None, false) => {
                if candidate.signature.check_secret(&current.secret).is_err() {
                    return Err(ApiError::invalid(
                        ErrorCode::InvalidSecret,
                        "the subscription's secret cannot sign with this signature scheme: send a new \"secret\" that fits it, or \"rotate_secret\": true, in the same request",
                    ));
                }
                None
            }
        };
        let update = SubscriptionUpdate {
            url: candidate.url,
            events: candidate.events,
            plugin: candidate.plugin,
            plugin_config: candidate.plugin_config,
            description: candidate.description,
            headers: candidate.headers,
            signature: candidate.signature,
            secret: secret.clone(),
            rotation_grace_ms: grace_ms(&state),
        };
        match state
            .store
            .update_subscription(&scope, &current, update)
            .await?
        {
            UpdateOutcome::Updated(sub) => {
                let mut out = SubscriptionOut::new(&sub, false);
                out.secret = secret;
                return Ok(Json(out));
            }
            UpdateOutcome::NotFound => return Err(not_found(&id)),
            UpdateOutcome::Changed => continue,
        }
    }
    Err(ApiError::conflict(
        ErrorCode::ConcurrentUpdate,
        format!("subscription {id} kept changing while this PATCH was merged; send it again"),
    ))
}

/// Deletes a subscription and cancels its pending deliveries (their history stays).
#[utoipa::path(
    delete,
    path = "/subscriptions/{id}",
    operation_id = "v1.subscription.delete",
    tag = "subscriptions",
    params(("id" = SubscriptionId, Path, description = "The subscription's id.")),
    responses((status = 204, description = "Deleted.")),
)]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<SubscriptionId>,
) -> Result<StatusCode, ApiError> {
    let scope = principal.allow(Permission::SubscriptionsWrite)?;
    if state.store.delete_subscription(&scope, id.as_str()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&id))
    }
}

/// Replaces the secret; the previous one keeps signing (a second signature) for the rotation
/// grace period.
#[utoipa::path(
    post,
    path = "/subscriptions/{id}/rotate-secret",
    operation_id = "v1.subscription.rotate-secret",
    tag = "subscriptions",
    params(("id" = SubscriptionId, Path, description = "The subscription's id.")),
    responses((status = 200, description = "The new secret (shown only now).", body = SecretOut)),
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<SubscriptionId>,
) -> Result<Json<SecretOut>, ApiError> {
    let scope = principal.allow(Permission::SubscriptionsWrite)?;
    let secret = generate_secret();
    if !state
        .store
        .rotate_secret(&scope, id.as_str(), &secret, grace_ms(&state))
        .await?
    {
        return Err(not_found(&id));
    }
    Ok(Json(SecretOut { secret }))
}

/// Sends a sample event to this subscription only (whatever its patterns), through its
/// plugin, signing and delivery, logged like any other.
#[utoipa::path(
    post,
    path = "/subscriptions/{id}/test",
    operation_id = "v1.subscription.test",
    tag = "subscriptions",
    params(("id" = SubscriptionId, Path, description = "The subscription's id.")),
    request_body(content = Option<TestEventIn>, description = "Optional: no body sends a `switchyard.test` event."),
    responses((status = 202, description = "The sample is stored and queued.", body = TestEventOut)),
)]
pub async fn send_test(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<SubscriptionId>,
    OptionalJson(body): OptionalJson<TestEventIn>,
) -> Result<(StatusCode, Json<TestEventOut>), ApiError> {
    let scope = principal.allow(Permission::SubscriptionsWrite)?;
    let sub = stored(&state, &scope, &id).await?;
    let event_type = body
        .event_type
        .unwrap_or_else(|| "switchyard.test".to_owned());
    super::events::check_event_type(&event_type)?;
    let data = serde_json::json!({
        "message": "This is a test event sent by Switchyard.",
        "subscription_id": sub.id,
    });
    let outcome = state
        .ingestor
        .ingest(NewEvent {
            tenant_id: sub.tenant_id.clone(),
            event_type,
            data: data.to_string(),
            idempotency_key: None,
            only_subscription: Some(sub.id.clone()),
        })
        .await?;
    state.metrics.event_ingested(1);
    Ok((
        StatusCode::ACCEPTED,
        Json(TestEventOut {
            delivery_id: outcome.first_delivery.map(Into::into),
            event_id: outcome.event_id.into(),
        }),
    ))
}

/// Re-enables a subscription disabled for failing (or a 410), and forgets its failing streak.
#[utoipa::path(
    post,
    path = "/subscriptions/{id}/enable",
    operation_id = "v1.subscription.enable",
    tag = "subscriptions",
    params(("id" = SubscriptionId, Path, description = "The subscription's id.")),
    responses((status = 200, description = "The subscription, enabled.", body = SubscriptionOut)),
)]
pub async fn enable(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<SubscriptionId>,
) -> Result<Json<SubscriptionOut>, ApiError> {
    let scope = principal.allow(Permission::SubscriptionsWrite)?;
    let sub = state
        .store
        .enable_subscription(&scope, id.as_str())
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(SubscriptionOut::new(&sub, false)))
}

/// Queues again every `failed` delivery of the subscription created in the window: the
/// replay after a receiver's outage.
#[utoipa::path(
    post,
    path = "/subscriptions/{id}/recover",
    operation_id = "v1.subscription.recover",
    tag = "subscriptions",
    params(("id" = SubscriptionId, Path, description = "The subscription's id.")),
    request_body = RecoverIn,
    responses((status = 202, description = "The failed deliveries are queued again.", body = RecoverOut)),
)]
pub async fn recover(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<SubscriptionId>,
    ApiJson(body): ApiJson<RecoverIn>,
) -> Result<(StatusCode, Json<RecoverOut>), ApiError> {
    let scope = principal.allow(Permission::DeliveriesWrite)?;
    let sub = stored(&state, &scope, &id).await?;
    if sub.status == SubscriptionStatus::Disabled {
        return Err(ApiError::conflict(
            ErrorCode::SubscriptionDisabled,
            format!("subscription {id} is disabled; enable it first"),
        ));
    }
    let until = body.until.map_or(i64::MAX, |t| t.unix_ms());
    let recovered = state
        .store
        .recover_failed(&scope, id.as_str(), body.since.unix_ms(), until)
        .await?;
    state.wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(RecoverOut {
            recovered: u64::try_from(recovered).unwrap_or(u64::MAX),
        }),
    ))
}
