//! Unauthenticated operational routes, and the JSON fallbacks.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::models::HealthOut;
use super::{ApiError, AppState};

/// `GET /healthz`: 200 when the store can keep what it acknowledges — the database file is
/// the one opened, the disk has room, a small durable write commits (probed at most once a
/// second) — else 503 `storage_full` or `storage_unavailable` with the reason.
pub async fn healthz(State(state): State<AppState>) -> Result<axum::Json<HealthOut>, ApiError> {
    state.store.health().await?;
    Ok(axum::Json(HealthOut {
        status: "ok".into(),
    }))
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let (pending, delivering) = state.store.queue_depth().await?;
    let body = state.metrics.render(pending, delivering);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    ))
}

/// Unknown route.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("route".into())
}

/// Known route, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
