//! The one place errors become HTTP: every variant maps to an [`ErrorCode`], which has one
//! status, answered as `{"error": {"code", "message"}}` ([`ErrorBody`]). Internal errors are
//! answered with a bare 500 that leaks nothing; their detail travels to [`log_server_errors`]
//! in a response extension, so the conversion itself has no side effects.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use super::models::ErrorCode;
use super::models::{ErrorBody, ErrorDetail, LogLineOut};
use crate::plugins::{LogLine, PluginError};
use crate::store::StoreError;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed request (bad JSON syntax, bad query or path).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: ErrorCode,
        /// Human text.
        message: String,
    },
    /// 401: no or wrong API key.
    #[error("missing or invalid API key: send Authorization: Bearer <key>")]
    Unauthorized,
    /// 403: the key may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: unknown id or route; the text names what was not found.
    #[error("{0} not found")]
    NotFound(String),
    /// 405: the route exists with other methods.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 409: the request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: ErrorCode,
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
        code: ErrorCode,
        /// Human text.
        message: String,
    },
    /// A plugin failed during a dry run; the logs it wrote come along.
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

/// The detail of a 500, for [`log_server_errors`] (never sent).
#[derive(Debug, Clone)]
struct InternalDetail(String);

impl ApiError {
    /// A 422 with this code and message.
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    /// A 400 with this code and message.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A 409 with this code and message.
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// A 404 naming what was not found: `not_found("subscription", id)`.
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::NotFound(format!("{kind} {id:?}"))
    }

    /// The code, which decides the status.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest { code, .. }
            | Self::Conflict { code, .. }
            | Self::Invalid { code, .. } => *code,
            Self::Unauthorized => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::TooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Self::PluginFailed { error, .. } => plugin_code(error),
            Self::RateLimited(_) | Self::AuthLimited { .. } => ErrorCode::RateLimited,
            Self::RequestTimeout => ErrorCode::RequestTimeout,
            Self::StorageFull => ErrorCode::StorageFull,
            Self::StorageUnavailable(_) => ErrorCode::StorageUnavailable,
            Self::Unavailable => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// The code of each plugin failure (the same words as [`PluginError::kind`]).
fn plugin_code(error: &PluginError) -> ErrorCode {
    match error {
        PluginError::InvalidName(_) => ErrorCode::InvalidName,
        PluginError::NotFound(_) => ErrorCode::NotFound,
        PluginError::Loading(_) => ErrorCode::PluginLoading,
        PluginError::NotAComponent(_) => ErrorCode::NotAComponent,
        PluginError::WrongWorld(_) => ErrorCode::WrongWorld,
        PluginError::Compile(_) => ErrorCode::Compile,
        PluginError::CompileBudget(_) => ErrorCode::CompileBudgetExceeded,
        PluginError::InstanceTooLarge(_) => ErrorCode::InstanceTooLarge,
        PluginError::InvalidLimit(_) => ErrorCode::InvalidQuery,
        PluginError::Busy(_) => ErrorCode::Busy,
        PluginError::ShuttingDown => ErrorCode::Unavailable,
        PluginError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
        PluginError::InputTooLarge { .. } => ErrorCode::InputTooLarge,
        PluginError::Timeout(_) => ErrorCode::Timeout,
        PluginError::OutOfMemory { .. } => ErrorCode::OutOfMemory,
        PluginError::StackOverflow => ErrorCode::StackOverflow,
        PluginError::Trap { .. } => ErrorCode::Trap,
        PluginError::Guest(_) => ErrorCode::PluginError,
        PluginError::OutputTooLarge { .. } => ErrorCode::OutputTooLarge,
        PluginError::InvalidHeader(_) => ErrorCode::InvalidHeader,
        PluginError::Io(_) => ErrorCode::Internal,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let logs = match &self {
            Self::PluginFailed { logs, .. } => Some(logs.iter().map(LogLineOut::from).collect()),
            _ => None,
        };
        let message = match code {
            // Whatever carried it, an internal failure's detail is only logged.
            ErrorCode::Internal => "internal error".to_owned(),
            _ => self.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail { code, message },
            logs,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        let detail = match self {
            Self::Internal(detail) => Some(detail),
            Self::PluginFailed {
                error: PluginError::Io(detail),
                ..
            } => Some(detail),
            _ => None,
        };
        if let Some(detail) = detail {
            response.extensions_mut().insert(InternalDetail(detail));
        }
        response
    }
}

/// Logs the detail of every internal error, with the request it answered.
pub async fn log_server_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if let Some(InternalDetail(detail)) = response.extensions().get::<InternalDetail>() {
        tracing::error!(%method, %path, %detail, "internal error");
    }
    response
}

impl ApiError {
    /// The `Retry-After` seconds of an answer the client should repeat later.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited(_)
            | Self::Invalid {
                code: ErrorCode::Busy,
                ..
            }
            | Self::PluginFailed {
                error: PluginError::Busy(_),
                ..
            } => Some(1),
            Self::Invalid {
                code: ErrorCode::PluginLoading,
                ..
            } => Some(PLUGIN_LOADING_RETRY_AFTER),
            Self::AuthLimited { retry_after } => Some(*retry_after),
            // Storage needs the operator (or a cleanup job): not worth a retry every second.
            Self::StorageFull | Self::StorageUnavailable(_) => Some(STORAGE_RETRY_AFTER),
            _ => None,
        }
    }
}

/// `Retry-After` of the storage failures.
const STORAGE_RETRY_AFTER: u64 = 5;
/// `Retry-After` of a request that waited for a plugin still compiling after a start.
const PLUGIN_LOADING_RETRY_AFTER: u64 = 5;

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Closed => Self::Unavailable,
            StoreError::Overloaded => Self::RateLimited(err.to_string()),
            StoreError::Full => Self::StorageFull,
            StoreError::Unavailable(why) => Self::StorageUnavailable(why),
            StoreError::UnknownTenant(id) => Self::not_found("tenant", &id),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<PluginError> for ApiError {
    fn from(err: PluginError) -> Self {
        match err {
            PluginError::InvalidName(_) => {
                Self::bad_request(ErrorCode::InvalidName, err.to_string())
            }
            PluginError::NotFound(name) => Self::not_found("plugin", &name),
            PluginError::InvalidLimit(_) => {
                Self::bad_request(ErrorCode::InvalidQuery, err.to_string())
            }
            PluginError::TooLarge { .. } => Self::TooLarge(err.to_string()),
            PluginError::ShuttingDown => Self::Unavailable,
            PluginError::Io(detail) => Self::Internal(detail),
            other => Self::invalid(plugin_code(&other), other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plugin failure's code is the word its kind is recorded under on attempts.
    #[test]
    fn plugin_codes_are_the_plugin_error_kinds() {
        let errors = [
            PluginError::InvalidName("x".into()),
            PluginError::NotFound("x".into()),
            PluginError::Loading("x".into()),
            PluginError::NotAComponent("x".into()),
            PluginError::WrongWorld("x".into()),
            PluginError::Compile("x".into()),
            PluginError::InputTooLarge { size: 2, limit: 1 },
            PluginError::Timeout(std::time::Duration::from_millis(1)),
            PluginError::OutOfMemory {
                limit: 1,
                stderr: String::new(),
            },
            PluginError::StackOverflow,
            PluginError::Trap {
                message: "x".into(),
                stderr: String::new(),
            },
            PluginError::Guest("x".into()),
            PluginError::OutputTooLarge { size: 2, limit: 1 },
            PluginError::InvalidHeader("x".into()),
            PluginError::InvalidLimit("x".into()),
        ];
        for error in errors {
            assert_eq!(plugin_code(&error).as_str(), error.kind(), "{error:?}");
        }
    }

    #[tokio::test]
    async fn internal_detail_is_kept_off_the_wire() {
        let response = ApiError::Internal("disk on fire at /secret/path".into()).into_response();
        assert_eq!(response.status(), 500);
        assert!(response.extensions().get::<InternalDetail>().is_some());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body.error.code, ErrorCode::Internal);
        assert_eq!(body.error.message, "internal error");
    }
}
