//! Extractors whose rejections answer in our error shape, so even a malformed request gets
//! `{"error": {...}}` with the right status.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use super::{ApiError, ErrorCode};

/// `Json<T>` answering 400 (syntax), 422 (types, missing fields, not an object), 413, 415 in
/// our shape.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "expected content-type: application/json".into(),
            ));
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        parse_object(&body).map(Self)
    }
}

/// [`ApiJson`] for a body that may be left out: no body at all (or only whitespace, or `null`)
/// is `T::default()`; a body that is there must be JSON, with `content-type: application/json`.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let body = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        let trimmed = body.trim_ascii();
        if trimmed.is_empty() || trimmed == b"null" {
            return Ok(Self(T::default()));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType(
                "expected content-type: application/json".into(),
            ));
        }
        parse_object(&body).map(Self)
    }
}

/// Every JSON body of the API is an object. serde would also read a struct from an array
/// (`[]` is a struct whose fields all have defaults), so anything but an object is refused
/// once the text is known to be JSON.
fn parse_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value = axum::Json::<T>::from_bytes(body).map_err(json_rejection)?.0;
    if body.trim_ascii_start().first() == Some(&b'{') {
        Ok(value)
    } else {
        Err(ApiError::invalid(
            ErrorCode::InvalidBody,
            "the body must be a JSON object",
        ))
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::invalid(ErrorCode::InvalidBody, e.body_text()),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request(ErrorCode::MalformedJson, e.body_text())
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected content-type: application/json".into())
        }
        JsonRejection::BytesRejection(e) => bytes_rejection(e),
        other => ApiError::bad_request(ErrorCode::BadRequest, other.body_text()),
    }
}

/// Maps a body-read failure: over the size limit is a 413.
pub fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    let text = rejection.body_text();
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(format!("request body too large: {text}"))
    } else {
        ApiError::bad_request(ErrorCode::BadRequest, text)
    }
}

/// The request's media type (`content-type` without parameters, lower case; empty when
/// missing): the one parser of `content-type` in the API.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `application/json` or a `+json` type, as axum's `Json` accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let media = media_type(headers);
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// `Path<T>` answering 400 in our shape.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e: PathRejection| {
                ApiError::bad_request(ErrorCode::InvalidPath, e.body_text())
            })
    }
}

/// `Query<T>` answering 400 in our shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::bad_request(ErrorCode::InvalidQuery, e.body_text())
            })
    }
}
