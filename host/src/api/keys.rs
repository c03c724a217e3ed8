//! `/v1/keys`: API keys with scopes, optionally bound to one tenant and short-lived (admin
//! keys only). The key is shown once, at creation; a revoke counts from the next request.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::models::{KeyCreated, KeyIn, KeyOut, KeyPage, ListQuery, Page, TenantQuery};
use super::principal::{Permission, Principal};
use super::{ApiError, AppState, ErrorCode, page_limit, rows_for};
use crate::store::NewKey;

const MAX_DESCRIPTION: usize = 1000;

/// Creates a key: `201` with the key itself, shown only now. Needs `admin`.
#[utoipa::path(
    post,
    path = "/keys",
    operation_id = "v1.key.create",
    tag = "keys",
    request_body = KeyIn,
    responses((status = 201, description = "Created; `key` is shown only now.", body = KeyCreated)),
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<KeyIn>,
) -> Result<(StatusCode, Json<KeyCreated>), ApiError> {
    principal.allow(Permission::Admin)?;
    let mut scopes = body.scopes;
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(ApiError::invalid(
            ErrorCode::InvalidScopes,
            "scopes must name at least one scope",
        ));
    }
    if body.tenant_id.is_some() && scopes.contains(&Permission::Admin) {
        return Err(ApiError::invalid(
            ErrorCode::InvalidScopes,
            "admin acts in every tenant: a key bound to a tenant cannot have it",
        ));
    }
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
    {
        return Err(ApiError::invalid(
            ErrorCode::InvalidDescription,
            format!("description must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    let expires_at = body.expires_at.map(|t| t.unix_ms());
    if expires_at.is_some_and(|at| at <= state.store.clock().now_ms()) {
        return Err(ApiError::invalid(
            ErrorCode::InvalidExpiry,
            "expires_at must be in the future",
        ));
    }
    let tenant = body.tenant_id.clone();
    let (stored, key) = state
        .store
        .create_key(NewKey {
            tenant_id: body.tenant_id,
            scopes: scopes.iter().map(|p| p.as_str().to_owned()).collect(),
            description: body.description,
            expires_at,
        })
        .await?
        .ok_or_else(|| ApiError::not_found("tenant", tenant.as_ref().map_or("", |t| t.as_str())))?;
    Ok((
        StatusCode::CREATED,
        Json(KeyCreated {
            key,
            record: KeyOut::from(&stored),
        }),
    ))
}

/// Lists keys that are not revoked (never the keys themselves). Needs `admin`.
#[utoipa::path(
    get,
    path = "/keys",
    operation_id = "v1.key.list",
    tag = "keys",
    params(ListQuery, TenantQuery),
    responses((status = 200, description = "A page of keys.", body = KeyPage)),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<ListQuery>,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<Json<Page<KeyOut>>, ApiError> {
    principal.allow(Permission::Admin)?;
    let limit = page_limit(page.limit)?;
    let rows = state
        .store
        .list_keys(
            q.tenant_id.as_ref(),
            page.cursor.as_deref(),
            rows_for(limit),
        )
        .await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |k| k.id.clone(),
        |k| KeyOut::from(&k),
    )))
}

/// Revokes a key: requests with it answer `401` from now on. Needs `admin`.
#[utoipa::path(
    delete,
    path = "/keys/{id}",
    operation_id = "v1.key.delete",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id (`key_…`).")),
    responses((status = 204, description = "Revoked.")),
)]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.allow(Permission::Admin)?;
    if state.store.revoke_key(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("key", &id))
    }
}
