//! `/v1/plugins`: upload (validated and compiled before it replaces anything), list, inspect,
//! delete, and dry-run a plugin on a sample event.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ApiJson, ApiPath, bytes_rejection};
use super::{ApiError, AppState};
use crate::plugins::{Decision, PluginEvent, PluginInfo, valid_name};
use crate::store::new_id;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunBody {
    event: DryRunEvent,
    config: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunEvent {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: Value,
    id: Option<String>,
}

/// `PUT /v1/plugins/{name}` with the component's bytes.
pub async fn upload(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    check_name(&name)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(essence, "application/wasm" | "application/octet-stream") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "upload the component with content-type: application/wasm (got {content_type:?})"
        )));
    }
    let body = body.map_err(bytes_rejection)?;
    if body.is_empty() {
        return Err(ApiError::invalid(
            "not_a_component",
            "the body is empty: send the component's bytes",
        ));
    }
    let (info, created) = state.plugins.install(&name, body.to_vec()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(view(&info))))
}

/// `GET /v1/plugins`
pub async fn list(State(state): State<AppState>) -> impl IntoResponse {
    let all: Vec<Value> = state.plugins.list().iter().map(view).collect();
    axum::Json(json!({ "data": all, "next_cursor": null }))
}

/// `GET /v1/plugins/{name}`
pub async fn get_one(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let info = state.plugins.info(&name).ok_or_else(|| not_found(&name))?;
    Ok(axum::Json(view(&info)))
}

/// `DELETE /v1/plugins/{name}`: 409 while a subscription uses it.
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_name(&name)?;
    if state.store.plugin_in_use(&name) {
        return Err(ApiError::Conflict {
            code: "plugin_in_use",
            message: format!(
                "plugin {name:?} is used by a subscription; change or delete those subscriptions first"
            ),
        });
    }
    if state.plugins.remove(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}

/// `POST /v1/plugins/{name}/dry-run`: run the plugin on a sample event; nothing is delivered.
pub async fn dry_run(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<DryRunBody>,
) -> Result<impl IntoResponse, ApiError> {
    let plugin = state.plugins.get(&name).ok_or_else(|| not_found(&name))?;
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
    match report.result {
        Ok(Decision::Deliver(request)) => {
            let mut out = json!({
                "outcome": "deliver",
                "content_type": request.content_type,
                "headers": request.headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                "logs": report.logs,
                "duration_us": duration_us,
                "plugin_version": plugin.version,
            });
            match String::from_utf8(request.body) {
                Ok(text) => out["body"] = json!(text),
                Err(raw) => {
                    out["body_base64"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(raw.as_bytes()))
                }
            }
            Ok(axum::Json(out))
        }
        Ok(Decision::Skip(reason)) => Ok(axum::Json(json!({
            "outcome": "skip",
            "reason": reason,
            "logs": report.logs,
            "duration_us": duration_us,
            "plugin_version": plugin.version,
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
        Err(crate::plugins::PluginError::InvalidName(name.to_owned()).into())
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("plugin {name:?}"))
}

fn view(info: &PluginInfo) -> Value {
    let mut v = json!(info);
    if let Some(size) = info.size {
        v["size"] = json!(size);
    }
    v
}
