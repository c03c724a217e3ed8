//! `/v1/tenants`: the provider's customers (admin keys only). `PUT` is an idempotent upsert
//! under the provider's own id; `DELETE` removes the tenant's subscriptions and keys and
//! cancels its pending deliveries.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::extract::{ApiPath, ApiQuery, OptionalJson};
use super::models::{ListQuery, Page, TenantIn, TenantOut, TenantPage};
use super::principal::{Permission, Principal};
use super::{ApiError, AppState, ErrorCode, page_limit, rows_for};
use crate::store::TenantDeleted;
use crate::tenant::TenantId;

const MAX_NAME: usize = 200;
const MAX_METADATA: usize = 16 * 1024;

fn tenant_id(id: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(id).map_err(|e| ApiError::bad_request(ErrorCode::InvalidTenant, e.to_string()))
}

fn view(t: &crate::store::Tenant) -> Result<TenantOut, ApiError> {
    TenantOut::try_from(t)
        .map_err(|e| ApiError::Internal(format!("tenant {}: stored metadata: {e}", t.id)))
}

/// Creates the tenant, or changes its name and metadata: `201` when created, `200` when it
/// existed. Needs `admin`.
#[utoipa::path(
    put,
    path = "/tenants/{id}",
    operation_id = "v1.tenant.put",
    tag = "tenants",
    params(("id" = TenantId, Path, description = "The tenant's id: the provider's own, `[A-Za-z0-9_.:-]{1,128}`.")),
    request_body(content = Option<TenantIn>, description = "Optional: no body is a tenant with no name and `{}`."),
    responses(
        (status = 200, description = "Changed.", body = TenantOut),
        (status = 201, description = "Created.", body = TenantOut),
    ),
)]
pub async fn put(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<TenantIn>,
) -> Result<(StatusCode, Json<TenantOut>), ApiError> {
    principal.allow(Permission::Admin)?;
    let id = tenant_id(&id)?;
    if body
        .name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NAME)
    {
        return Err(ApiError::invalid(
            ErrorCode::InvalidMetadata,
            format!("name must be at most {MAX_NAME} characters"),
        ));
    }
    let metadata = match body.metadata {
        None => "{}".to_owned(),
        Some(raw) => {
            let text = raw.get();
            if !text.trim_start().starts_with('{') || text.len() > MAX_METADATA {
                return Err(ApiError::invalid(
                    ErrorCode::InvalidMetadata,
                    format!("metadata must be a JSON object of at most {MAX_METADATA} bytes"),
                ));
            }
            text.to_owned()
        }
    };
    let (tenant, created) = state.store.put_tenant(&id, body.name, metadata).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&tenant)?)))
}

/// Lists tenants by id. Needs `admin`.
#[utoipa::path(
    get,
    path = "/tenants",
    operation_id = "v1.tenant.list",
    tag = "tenants",
    params(ListQuery),
    responses((status = 200, description = "A page of tenants.", body = TenantPage)),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<ListQuery>,
) -> Result<Json<Page<TenantOut>>, ApiError> {
    principal.allow(Permission::Admin)?;
    let limit = page_limit(page.limit)?;
    let rows = state
        .store
        .list_tenants(page.cursor.as_deref(), rows_for(limit))
        .await?;
    let more = rows.len() > limit;
    let mut data = Vec::with_capacity(limit);
    for t in rows.iter().take(limit) {
        data.push(view(t)?);
    }
    let next_cursor = more
        .then(|| data.last().map(|t| t.id.as_str().to_owned()))
        .flatten();
    Ok(Json(Page { data, next_cursor }))
}

/// Shows a tenant. Needs `admin`.
#[utoipa::path(
    get,
    path = "/tenants/{id}",
    operation_id = "v1.tenant.get",
    tag = "tenants",
    params(("id" = TenantId, Path, description = "The tenant's id.")),
    responses((status = 200, description = "The tenant.", body = TenantOut)),
)]
pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TenantOut>, ApiError> {
    principal.allow(Permission::Admin)?;
    let id = tenant_id(&id)?;
    let tenant = state
        .store
        .tenant(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant", id.as_str()))?;
    Ok(Json(view(&tenant)?))
}

/// Deletes a tenant: its subscriptions are deleted, their pending deliveries cancelled, its
/// keys revoked; its events and deliveries stay for their history. Needs `admin`; the
/// `default` tenant cannot be deleted.
#[utoipa::path(
    delete,
    path = "/tenants/{id}",
    operation_id = "v1.tenant.delete",
    tag = "tenants",
    params(("id" = TenantId, Path, description = "The tenant's id.")),
    responses((status = 204, description = "Deleted.")),
)]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.allow(Permission::Admin)?;
    let id = tenant_id(&id)?;
    match state.store.delete_tenant(&id).await? {
        TenantDeleted::Deleted => Ok(StatusCode::NO_CONTENT),
        TenantDeleted::NotFound => Err(ApiError::not_found("tenant", id.as_str())),
        TenantDeleted::Default => Err(ApiError::conflict(
            ErrorCode::DefaultTenant,
            "the default tenant cannot be deleted",
        )),
    }
}
