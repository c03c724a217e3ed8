//! The REST API v1 (the contract: `docs/API.md`, `docs/openapi.json`): axum routes over the
//! store, the plugin registry and the ingestor. Handlers validate, call one store or registry
//! function, and answer with the typed [`models`].
//!
//! Routes are registered with `utoipa_axum::routes!`, which adds each handler to the router
//! and its `#[utoipa::path]` operation to the OpenAPI document in the same call: a route cannot
//! be served without being documented, or documented without being served.

mod attempts;
mod auth;
mod deliveries;
mod error;
mod events;
mod extract;
mod keys;
mod known_query;
pub mod models;
mod openapi;
mod ops;
mod plugins;
mod principal;
mod subscriptions;
mod tenants;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

pub use auth::ApiKey;
pub use error::{ApiError, ErrorCode};
pub use openapi::{OPENAPI_PATH, openapi, openapi_json};
pub use principal::{Permission, Principal};

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

/// The `/v1` routes (without the key check), each registered with its OpenAPI operation.
/// `component_limit` bounds plugin uploads, which are larger than every other body.
fn v1_routes(component_limit: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(subscriptions::create, subscriptions::list))
        .routes(routes!(
            subscriptions::get_one,
            subscriptions::update,
            subscriptions::delete
        ))
        .routes(routes!(subscriptions::rotate_secret))
        .routes(routes!(subscriptions::send_test))
        .routes(routes!(subscriptions::enable))
        .routes(routes!(subscriptions::recover))
        .routes(routes!(events::create))
        .routes(routes!(events::get_one))
        .routes(routes!(events::expunge))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::get_one))
        .routes(routes!(deliveries::retry))
        .routes(routes!(attempts::list))
        .routes(routes!(plugins::list))
        .routes(routes!(plugins::get_one, plugins::delete))
        .routes(routes!(plugins::upload).layer(DefaultBodyLimit::max(component_limit)))
        .routes(routes!(plugins::dry_run))
        .routes(routes!(tenants::list))
        .routes(routes!(tenants::put, tenants::get_one, tenants::delete))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::delete))
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let component_limit = state.plugins.runtime().limits().component_bytes;
    let v1: Router<AppState> = v1_routes(component_limit)
        // Inside the key check: a caller without a key learns nothing about the routes.
        .route_layer(axum::middleware::from_fn(known_query::refuse_unknown))
        .route_layer(axum::middleware::from_fn_with_state(
            auth::Guard::new(state.clone()),
            auth::require_key,
        ))
        .into();
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route(OPENAPI_PATH, get(openapi::serve))
        .nest("/v1", v1)
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_event_bytes))
        .layer(axum::middleware::from_fn(error::log_server_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A list's `?limit=`: 1–250, default 50.
fn page_limit(limit: Option<i64>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(50),
        Some(n @ 1..=250) => Ok(usize::try_from(n).unwrap_or(50)),
        Some(_) => Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "limit must be between 1 and 250",
        )),
    }
}

/// `limit + 1` rows are read: the extra one tells whether there is a next page.
fn rows_for(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(250).saturating_add(1)
}
