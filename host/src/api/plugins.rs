//! `/v1/plugins`: upload (validated and compiled before it replaces anything), list, inspect,
//! delete, and dry-run a plugin on a sample event.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;

use std::time::Duration;

use super::extract::{ApiJson, ApiPath, ApiQuery, media_type};
use super::models::{
    DeliverOutcome, DryRunDeliver, DryRunIn, DryRunOut, DryRunSkip, LogLineOut, Page, PluginOut,
    PluginPage, PluginUploadQuery, SkipOutcome, WasmComponent,
};
use super::principal::{Permission, Principal};
use super::{ApiError, AppState, ErrorCode};
use crate::plugins::{Decision, PluginError, PluginEvent, Upload, valid_name};
use crate::store::new_id;

fn not_found(name: &str) -> ApiError {
    ApiError::not_found("plugin", name)
}

/// Uploads a component under `name` (new: `201`, replaced: `200`), optionally with its own
/// memory and deadline. What is cheap to check is checked at once (`413`, `422`, `400`); then
/// the bytes are stored and compiled off the request: when that takes longer than
/// `plugin_upload_wait` (or with `?wait=false`) the answer is `202` with `status:
/// "compiling"`, and the plugin becomes `ready` (or `error`, with the reason) when done. The
/// serving version, if any, keeps serving meanwhile, and bytes that fail change nothing.
#[utoipa::path(
    put,
    path = "/plugins/{name}",
    operation_id = "v1.plugin.upload",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin's name: `[a-z0-9][a-z0-9_-]{0,62}`.", example = "my-slack"),
        PluginUploadQuery,
    ),
    request_body(
        description = "The component's bytes (a `wasm32-wasip2` component of the `switchyard:plugin` `transformer` world), at most `plugin_max_component_mb`.",
        content((WasmComponent = "application/wasm"), (WasmComponent = "application/octet-stream")),
    ),
    responses(
        (status = 201, description = "A new plugin, loaded.", body = PluginOut),
        (status = 200, description = "The plugin, replaced.", body = PluginOut),
        (status = 202, description = "Stored and compiling (`status: compiling`); the serving version, if any, serves until it is done.", body = PluginOut),
    ),
)]
pub async fn upload(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<PluginUploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<PluginOut>), ApiError> {
    // Plugins are the operator's: installed once, used by every tenant's subscriptions.
    principal.allow(Permission::Admin)?;
    check_name(&name)?;
    let media = media_type(&headers);
    if !matches!(
        media.as_str(),
        "application/wasm" | "application/octet-stream"
    ) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "upload the component with content-type: application/wasm (got {media:?})"
        )));
    }
    let limits = query.limits();
    state.plugins.runtime().limits().for_plugin(limits)?;
    // At most a few uploads are in progress at once; past that an upload is answered `429`
    // (with `Retry-After`) before its body is read, so uploads cannot pile up in memory. The
    // body is handed on as it is (no copies).
    let limit = state.plugins.runtime().limits().component_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(too_large(limit));
    }
    let Some(turn) = state.plugins.upload_turn()? else {
        return Err(ApiError::RateLimited(
            "too many plugin uploads are in progress; retry shortly".into(),
        ));
    };
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large(limit))?;
    if body.is_empty() {
        return Err(ApiError::invalid(
            ErrorCode::NotAComponent,
            "the body is empty: send the component's bytes",
        ));
    }
    let wait = match query.wait {
        Some(true) => None,
        Some(false) => Some(Duration::ZERO),
        None => Some(state.config.plugin_upload_wait),
    };
    match state
        .plugins
        .upload(&name, body, limits, wait, turn)
        .await?
    {
        Upload::Done { info, created } => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(PluginOut::from(&info))))
        }
        Upload::Compiling(info) => Ok((StatusCode::ACCEPTED, Json(PluginOut::from(&info)))),
    }
}

/// Lists the plugins, by name (one page: `next_cursor` is always `null`).
#[utoipa::path(
    get,
    path = "/plugins",
    operation_id = "v1.plugin.list",
    tag = "plugins",
    responses((status = 200, description = "Every plugin.", body = PluginPage)),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Page<PluginOut>>, ApiError> {
    principal.allow(Permission::PluginsRead)?;
    Ok(Json(Page {
        data: state.plugins.list().iter().map(PluginOut::from).collect(),
        next_cursor: None,
    }))
}

/// Shows a plugin: its serving version, or why its latest file failed to load.
#[utoipa::path(
    get,
    path = "/plugins/{name}",
    operation_id = "v1.plugin.get",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name.", example = "slack")),
    responses((status = 200, description = "The plugin.", body = PluginOut)),
)]
pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PluginOut>, ApiError> {
    principal.allow(Permission::PluginsRead)?;
    let info = state.plugins.info(&name).ok_or_else(|| not_found(&name))?;
    Ok(Json(PluginOut::from(&info)))
}

/// Unloads a plugin and removes its file; `409` while a subscription uses it.
#[utoipa::path(
    delete,
    path = "/plugins/{name}",
    operation_id = "v1.plugin.delete",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name.", example = "my-slack")),
    responses((status = 204, description = "Deleted.")),
)]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.allow(Permission::Admin)?;
    check_name(&name)?;
    if state.store.plugin_in_use(&name) {
        return Err(ApiError::conflict(
            ErrorCode::PluginInUse,
            format!(
                "plugin {name:?} is used by a subscription; change or delete those subscriptions first"
            ),
        ));
    }
    if state.plugins.remove(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}

/// Runs the plugin on a sample event and shows what it would deliver (or why it would skip):
/// nothing is sent or logged as a delivery. A plugin failure is a `422` with what it logged.
#[utoipa::path(
    post,
    path = "/plugins/{name}/dry-run",
    operation_id = "v1.plugin.dry-run",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name.", example = "slack")),
    request_body = DryRunIn,
    responses((status = 200, description = "What the plugin would do.", body = DryRunOut)),
)]
pub async fn dry_run(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<DryRunIn>,
) -> Result<Json<DryRunOut>, ApiError> {
    principal.allow(Permission::PluginsRead)?;
    // A plugin still compiling after a start is waited for, a while.
    let plugin = state
        .plugins
        .ready_within(&name, crate::plugins::LOADING_WAIT)
        .await?;
    super::events::check_event_type(&body.event.event_type)?;
    let config = body
        .config
        .map(|c| c.to_string())
        .unwrap_or_else(|| "null".to_owned());
    let runtime = state.plugins.runtime();
    if let Err(error) = runtime.validate_config(&plugin, &config).await {
        return Err(ApiError::PluginFailed {
            error,
            logs: Vec::new(),
        });
    }
    let event = PluginEvent {
        id: body.event.id.unwrap_or_else(|| new_id("evt")),
        event_type: body.event.event_type,
        timestamp: state.store.clock().now_ms().div_euclid(1000),
        subscription_id: "dry-run".into(),
        payload: body.event.data.to_string(),
    };
    let report = runtime.transform(&plugin, event, &config).await;
    let duration_us = u64::try_from(report.duration.as_micros()).unwrap_or(u64::MAX);
    let logs = report.logs.iter().map(LogLineOut::from).collect();
    let plugin_version = plugin.version.clone();
    match report.result {
        Ok(Decision::Deliver(request)) => {
            let (body, body_base64) = match String::from_utf8(request.body) {
                Ok(text) => (Some(text), None),
                Err(raw) => (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())),
                ),
            };
            Ok(Json(DryRunOut::Deliver(DryRunDeliver {
                outcome: DeliverOutcome::Deliver,
                content_type: request.content_type,
                headers: request.headers.into_iter().collect(),
                body,
                body_base64,
                logs,
                duration_us,
                plugin_version,
            })))
        }
        Ok(Decision::Skip(reason)) => Ok(Json(DryRunOut::Skip(DryRunSkip {
            outcome: SkipOutcome::Skip,
            reason,
            logs,
            duration_us,
            plugin_version,
        }))),
        Err(error) => Err(ApiError::PluginFailed {
            error,
            logs: report.logs,
        }),
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(PluginError::InvalidName(name.to_owned()).into())
    }
}

/// An upload over the size limit, or whose body could not be read whole.
fn too_large(limit: usize) -> ApiError {
    ApiError::TooLarge(format!(
        "the component is larger than the limit of {limit} bytes ({} MiB, plugin_max_component_mb), or its body could not be read whole",
        limit >> 20
    ))
}
