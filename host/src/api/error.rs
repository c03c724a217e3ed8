//! The one place errors become HTTP: every variant maps to a status and a stable snake_case
//! `code`, answered as `{"error": {"code", "message"}}`. Internal errors are logged and
//! answered with a bare 500 that leaks nothing.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::plugins::{LogLine, PluginError};
use crate::store::StoreError;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed request (bad JSON syntax, bad query or path).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// 401: no or wrong API key.
    #[error("missing or invalid API key: send Authorization: Bearer <key>")]
    Unauthorized,
    /// 404: unknown id or route.
    #[error("{0} not found")]
    NotFound(String),
    /// 405: the route exists with other methods.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 409: the request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// 413: body too large.
    #[error("{0}")]
    TooLarge(String),
    /// 415: wrong content type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but invalid.
    #[error("{message}")]
    Invalid {
        /// Stable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// 422: a plugin failed during a dry run; the logs it wrote come along.
    #[error("{error}")]
    PluginFailed {
        /// What failed.
        error: PluginError,
        /// Lines the plugin logged before failing.
        logs: Vec<LogLine>,
    },
    /// 429: too much load right now; retry after a second.
    #[error("{0}")]
    RateLimited(String),
    /// 408: the request body did not arrive within the body timeout.
    #[error("the request was not received in time")]
    RequestTimeout,
    /// 429: this client sent too many wrong API keys; its keys are not checked for a while.
    #[error("too many failed authentications from this address; retry after {retry_after} s")]
    AuthLimited {
        /// Seconds until the next attempt is looked at.
        retry_after: u64,
    },
    /// 503: the disk holding the database is full; nothing was stored.
    #[error("the disk holding the database is full: nothing was stored; retry later")]
    StorageFull,
    /// 503: the database cannot be written; nothing was stored.
    #[error("the database cannot be written ({0}): nothing was stored; retry later")]
    StorageUnavailable(String),
    /// 503: shutting down.
    #[error("the service is shutting down")]
    Unavailable,
    /// 500: a bug or an infrastructure failure; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 422 with this code and message.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    /// A 400 with this code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::Invalid { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::PluginFailed { error, .. } => (StatusCode::UNPROCESSABLE_ENTITY, error.kind()),
            Self::RateLimited(_) | Self::AuthLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            }
            Self::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::StorageFull => (StatusCode::SERVICE_UNAVAILABLE, "storage_full"),
            Self::StorageUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let mut body = json!({ "error": { "code": code, "message": self.to_string() } });
        if let Self::PluginFailed { logs, .. } = &self {
            body["logs"] = json!(logs);
        }
        let retry_after = self.retry_after();
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl ApiError {
    /// The `Retry-After` seconds of an answer the client should repeat later.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited(_) => Some(1),
            Self::AuthLimited { retry_after } => Some(*retry_after),
            // Storage needs the operator (or a cleanup job): not worth a retry every second.
            Self::StorageFull | Self::StorageUnavailable(_) => Some(STORAGE_RETRY_AFTER),
            _ => None,
        }
    }
}

/// `Retry-After` of the storage failures.
const STORAGE_RETRY_AFTER: u64 = 5;

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Closed => Self::Unavailable,
            StoreError::Overloaded => Self::RateLimited(err.to_string()),
            StoreError::Full => Self::StorageFull,
            StoreError::Unavailable(why) => Self::StorageUnavailable(why),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<PluginError> for ApiError {
    fn from(err: PluginError) -> Self {
        match err {
            PluginError::InvalidName(_) => Self::bad_request("invalid_name", err.to_string()),
            PluginError::NotFound(name) => Self::NotFound(format!("plugin {name:?}")),
            PluginError::TooLarge { .. } => Self::TooLarge(err.to_string()),
            PluginError::Io(detail) => Self::Internal(detail),
            other => Self::invalid(other.kind(), other.to_string()),
        }
    }
}
