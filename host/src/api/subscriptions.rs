//! `/v1/subscriptions`: register endpoints, rotate secrets, send test events, re-enable.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{ApiError, AppState, Page, paged, timestamp};
use crate::signing::{Scheme, generate_secret};
use crate::store::{
    NewEvent, NewSubscription, Subscription, SubscriptionPatch, SubscriptionStatus,
};

const MAX_PATTERNS: usize = 100;
const MAX_HEADERS: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    url: String,
    events: Vec<String>,
    plugin: Option<String>,
    plugin_config: Option<Value>,
    description: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "optional_scheme")]
    signature: Option<Scheme>,
    secret: Option<String>,
}

/// Distinguishes a field that is absent (`None`) from one set to `null` (`Some(None)`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A field that may be absent but not `null` (`"events": null` is not "leave as is").
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A `signature` object, refusing keys its scheme does not have: serde ignores extra keys next
/// to the tag of a unit variant (`standard-webhooks`) even with `deny_unknown_fields`.
fn scheme_from(value: Value) -> Result<Scheme, String> {
    let extra = value
        .as_object()
        .filter(|o| o.get("scheme").and_then(Value::as_str) == Some("standard-webhooks"))
        .and_then(|o| o.keys().find(|k| *k != "scheme"));
    if let Some(key) = extra {
        return Err(format!(
            "unknown field `{key}`: the standard-webhooks scheme takes no options"
        ));
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// `signature` on create: absent or `null` means the default scheme.
fn optional_scheme<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Scheme>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        value => scheme_from(value)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// `signature` on patch: absent leaves it, `null` is refused.
fn present_scheme<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Scheme>, D::Error> {
    scheme_from(Value::deserialize(d)?)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default, deserialize_with = "present")]
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    plugin: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    plugin_config: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "present_scheme")]
    signature: Option<Scheme>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TestBody {
    #[serde(rename = "type")]
    event_type: Option<String>,
}

/// The fields every subscription must satisfy together, checked on create and on patch.
struct Candidate {
    url: String,
    events: Vec<String>,
    plugin: Option<String>,
    plugin_config: Option<String>,
    description: Option<String>,
    headers: BTreeMap<String, String>,
    signature: Scheme,
}

/// `POST /v1/subscriptions`
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<impl IntoResponse, ApiError> {
    let signature = body.signature.unwrap_or_default();
    let candidate = Candidate {
        url: body.url,
        events: body.events,
        plugin: body.plugin,
        plugin_config: body.plugin_config.map(|v| v.to_string()),
        description: body.description,
        headers: body.headers,
        signature,
    };
    let candidate = validate(&state, candidate).await?;
    let secret = match body.secret {
        Some(secret) => {
            candidate
                .signature
                .check_secret(&secret)
                .map_err(|e| ApiError::invalid("invalid_secret", e.to_string()))?;
            secret
        }
        None => candidate.signature.generate_secret(),
    };
    let sub = state
        .store
        .create_subscription(NewSubscription {
            url: candidate.url,
            events: candidate.events,
            plugin: candidate.plugin,
            plugin_config: candidate.plugin_config,
            description: candidate.description,
            headers: candidate.headers,
            signature: candidate.signature,
            secret,
        })
        .await?;
    let mut view = view(&sub);
    view["secret"] = json!(sub.secret);
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// `GET /v1/subscriptions`
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = page.limit()?;
    let rows = state
        .store
        .list_subscriptions(page.cursor.as_deref(), limit + 1)
        .await?;
    Ok(axum::Json(paged(rows, limit, |s| s.id.clone(), view)))
}

/// `GET /v1/subscriptions/{id}`
pub async fn get_one(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let sub = state
        .store
        .subscription(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(axum::Json(view(&sub)))
}

/// `PATCH /v1/subscriptions/{id}`
pub async fn update(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> Result<impl IntoResponse, ApiError> {
    let current = state
        .store
        .subscription(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let candidate = Candidate {
        url: body.url.clone().unwrap_or(current.url),
        events: body.events.clone().unwrap_or(current.events),
        plugin: body.plugin.clone().unwrap_or(current.plugin),
        plugin_config: match &body.plugin_config {
            Some(v) => v.as_ref().map(Value::to_string),
            None => current.plugin_config,
        },
        description: body.description.clone().unwrap_or(current.description),
        headers: body.headers.clone().unwrap_or(current.headers),
        signature: body.signature.clone().unwrap_or(current.signature),
    };
    let candidate = validate(&state, candidate).await?;
    let patch = SubscriptionPatch {
        url: Some(candidate.url),
        events: Some(candidate.events),
        plugin: Some(candidate.plugin),
        plugin_config: Some(candidate.plugin_config),
        description: Some(candidate.description),
        headers: Some(candidate.headers),
        signature: Some(candidate.signature),
    };
    let sub = state
        .store
        .update_subscription(&id, patch)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(axum::Json(view(&sub)))
}

/// `DELETE /v1/subscriptions/{id}`: also cancels its pending deliveries.
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    if state.store.delete_subscription(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&id))
    }
}

/// `POST /v1/subscriptions/{id}/rotate-secret`: the old secret keeps signing for the grace period.
pub async fn rotate_secret(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let secret = generate_secret();
    let grace = i64::try_from(state.config.rotation_grace.as_millis()).unwrap_or(i64::MAX);
    if !state.store.rotate_secret(&id, &secret, grace).await? {
        return Err(not_found(&id));
    }
    Ok(axum::Json(json!({ "secret": secret })))
}

/// `POST /v1/subscriptions/{id}/test`: a sample event through plugin, signing and delivery.
pub async fn send_test(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body.map_err(super::extract::bytes_rejection)?;
    // The body is optional: none at all means the defaults; one that is there must be JSON.
    let body: TestBody = if body.iter().all(u8::is_ascii_whitespace) {
        TestBody::default()
    } else {
        let content_type = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !(essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")) {
            return Err(ApiError::UnsupportedMediaType(
                "expected content-type: application/json".into(),
            ));
        }
        serde_json::from_slice(&body).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                ApiError::bad_request("malformed_json", e.to_string())
            } else {
                ApiError::invalid("invalid_body", e.to_string())
            }
        })?
    };
    let sub = state
        .store
        .subscription(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let event_type = body
        .event_type
        .unwrap_or_else(|| "switchyard.test".to_owned());
    super::events::check_event_type(&event_type)?;
    let data = json!({
        "message": "This is a test event sent by Switchyard.",
        "subscription_id": sub.id,
    });
    let outcome = state
        .ingestor
        .ingest(NewEvent {
            event_type,
            data: data.to_string(),
            idempotency_key: None,
            only_subscription: Some(sub.id.clone()),
        })
        .await?;
    state.metrics.event_ingested(1);
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "delivery_id": outcome.first_delivery, "event_id": outcome.event_id })),
    ))
}

/// `POST /v1/subscriptions/{id}/enable`
pub async fn enable(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let sub = state
        .store
        .enable_subscription(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(axum::Json(view(&sub)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverBody {
    #[serde(with = "time::serde::rfc3339")]
    since: time::OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    until: Option<time::OffsetDateTime>,
}

/// `POST /v1/subscriptions/{id}/recover` `{"since", "until"?}`: queue again every `failed`
/// delivery of the subscription created in the window (the replay after an outage).
pub async fn recover(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RecoverBody>,
) -> Result<impl IntoResponse, ApiError> {
    let sub = state
        .store
        .subscription(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    if sub.status == SubscriptionStatus::Disabled {
        return Err(ApiError::Conflict {
            code: "subscription_disabled",
            message: format!("subscription {id} is disabled; enable it first"),
        });
    }
    let ms = |t: time::OffsetDateTime| {
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    };
    let until = body.until.map_or(i64::MAX, ms);
    let recovered = state
        .store
        .recover_failed(&id, ms(body.since), until)
        .await?;
    state.wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "recovered": recovered })),
    ))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("subscription {id:?}"))
}

/// The subscription as the API shows it: never the secrets.
pub(super) fn view(sub: &Subscription) -> Value {
    let config: Option<Value> = sub
        .plugin_config
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok());
    json!({
        "id": sub.id,
        "url": sub.url,
        "events": sub.events,
        "plugin": sub.plugin,
        "plugin_config": config,
        "description": sub.description,
        "headers": sub.headers,
        "signature": sub.signature,
        "status": match sub.status { SubscriptionStatus::Enabled => "enabled", SubscriptionStatus::Disabled => "disabled" },
        "disabled_reason": sub.disabled.as_ref().map(|(r, _)| r),
        "disabled_at": sub.disabled.as_ref().map(|(_, at)| timestamp(*at)),
        "created_at": timestamp(sub.created_at),
        "updated_at": timestamp(sub.updated_at),
    })
}

/// Checks everything about a subscription that can be checked before saving it.
async fn validate(state: &AppState, mut c: Candidate) -> Result<Candidate, ApiError> {
    c.url = state
        .client
        .check_url(c.url.trim())
        .map_err(|e| ApiError::invalid("invalid_url", e.to_string()))?
        .to_string();
    check_patterns(&c.events)?;
    if c.description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1000)
    {
        return Err(ApiError::invalid(
            "invalid_description",
            "description is limited to 1000 characters",
        ));
    }
    c.signature = c
        .signature
        .validated()
        .map_err(|e| ApiError::invalid("invalid_signature", e.to_string()))?;
    c.headers = check_headers(c.headers, &c.signature)?;
    check_plugin(state, c.plugin.as_deref(), c.plugin_config.as_deref()).await?;
    Ok(c)
}

fn check_patterns(patterns: &[String]) -> Result<(), ApiError> {
    if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
        return Err(ApiError::invalid(
            "invalid_events",
            format!("events must list 1 to {MAX_PATTERNS} event types or patterns"),
        ));
    }
    for pattern in patterns {
        let body = pattern.strip_suffix(".*").unwrap_or(pattern);
        let ok = pattern == "*" || (body != "*" && super::events::check_event_type(body).is_ok());
        if !ok {
            return Err(ApiError::invalid(
                "invalid_events",
                format!(
                    "{pattern:?} is not an event type or pattern (use e.g. \"post.published\", \"post.*\" or \"*\")"
                ),
            ));
        }
    }
    Ok(())
}

fn check_headers(
    headers: BTreeMap<String, String>,
    scheme: &Scheme,
) -> Result<BTreeMap<String, String>, ApiError> {
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::invalid(
            "invalid_headers",
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    let signed = scheme.header_names();
    let mut clean = BTreeMap::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let bad =
            |why: &str| ApiError::invalid("invalid_headers", format!("header {name:?}: {why}"));
        if axum::http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(bad("not a valid header name"));
        }
        if axum::http::HeaderValue::from_str(&value).is_err() {
            return Err(bad("not a valid header value"));
        }
        if crate::net::is_host_header(&lower) || signed.contains(&lower.as_str()) {
            return Err(bad("set by Switchyard itself"));
        }
        clean.insert(lower, value);
    }
    Ok(clean)
}

/// The plugin must be loaded, and must accept the config (its `validate-config` export).
async fn check_plugin(
    state: &AppState,
    plugin: Option<&str>,
    config: Option<&str>,
) -> Result<(), ApiError> {
    let Some(name) = plugin else {
        return match config {
            Some(_) => Err(ApiError::invalid(
                "invalid_plugin_config",
                "plugin_config needs a plugin",
            )),
            None => Ok(()),
        };
    };
    let loaded = state.plugins.get(name).ok_or_else(|| {
        ApiError::invalid(
            "unknown_plugin",
            format!("plugin {name:?} is not loaded (GET /v1/plugins lists them)"),
        )
    })?;
    state
        .plugins
        .runtime()
        .validate_config(&loaded, config.unwrap_or("null"))
        .await
        .map_err(|e| {
            // The plugin's own words when it said no; the failure itself when it broke.
            let reason = match e {
                crate::plugins::PluginError::Guest(message) => message,
                other => other.to_string(),
            };
            ApiError::invalid(
                "invalid_plugin_config",
                format!("plugin {name} refused the config: {reason}"),
            )
        })
}
