//! The REST API v1 (see `shared/API.md`): axum routes over the store, the plugin registry and
//! the ingestor. Handlers validate, call one store or registry function, and shape JSON.

mod attempts;
mod auth;
mod deliveries;
mod error;
mod events;
mod extract;
mod ops;
mod plugins;
mod subscriptions;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use serde::Deserialize;
use tower_http::trace::TraceLayer;

pub use auth::ApiKey;
pub use error::ApiError;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::net;
use crate::plugins::Registry;
use crate::store::{Ingestor, Store};

/// Everything a handler may use, behind one `Arc`: axum clones the state for every
/// extraction, and one reference count is cheaper than one per field.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Shares `services` with every handler.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services handlers use.
pub struct Services {
    /// Durable state.
    pub store: Store,
    /// Group-commit event writer.
    pub ingestor: Ingestor,
    /// Loaded plugins.
    pub plugins: Arc<Registry>,
    /// Outbound client (validates subscription URLs with the SSRF policy).
    pub client: net::Client,
    /// Metrics.
    pub metrics: Metrics,
    /// Configuration.
    pub config: Arc<Config>,
    /// The admin key's hash.
    pub api_key: Arc<ApiKey>,
    /// Wakes the dispatcher when deliveries are queued outside ingest (retry, recover).
    pub wake: Arc<tokio::sync::Notify>,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let component_limit = state.plugins.runtime().limits().component_bytes;
    let v1 = Router::new()
        .route(
            "/subscriptions",
            post(subscriptions::create).get(subscriptions::list),
        )
        .route(
            "/subscriptions/{id}",
            get(subscriptions::get_one)
                .patch(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route(
            "/subscriptions/{id}/rotate-secret",
            post(subscriptions::rotate_secret),
        )
        .route("/subscriptions/{id}/test", post(subscriptions::send_test))
        .route("/subscriptions/{id}/enable", post(subscriptions::enable))
        .route("/subscriptions/{id}/recover", post(subscriptions::recover))
        .route("/events", post(events::create))
        .route("/events/{id}", get(events::get_one))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{id}", get(deliveries::get_one))
        .route("/deliveries/{id}/retry", post(deliveries::retry))
        .route("/attempts", get(attempts::list))
        .route("/plugins", get(plugins::list))
        .route(
            "/plugins/{name}",
            get(plugins::get_one)
                .put(plugins::upload)
                .layer(DefaultBodyLimit::max(component_limit))
                .delete(plugins::delete),
        )
        .route("/plugins/{name}/dry-run", post(plugins::dry_run))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .nest("/v1", v1)
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_event_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// `?limit=&cursor=` of list routes.
#[derive(Debug, Deserialize)]
struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
}

impl Page {
    /// The page size, 1–250, default 50.
    fn limit(&self) -> Result<i64, ApiError> {
        page_limit(self.limit)
    }
}

/// A list's `?limit=`: 1–250, default 50.
fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=250).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 250",
        )),
    }
}

/// `{"data": [...], "next_cursor": ...}` from `limit + 1` rows: the extra row says whether
/// there is a next page.
fn paged<T, V: serde::Serialize>(
    mut rows: Vec<T>,
    limit: i64,
    id: impl Fn(&T) -> String,
    view: impl Fn(&T) -> V,
) -> serde_json::Value {
    let limit = usize::try_from(limit).unwrap_or(0);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more { rows.last().map(&id) } else { None };
    serde_json::json!({ "data": rows.iter().map(view).collect::<Vec<_>>(), "next_cursor": next })
}

/// Unix milliseconds as RFC 3339.
fn timestamp(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
