//! What every subscription must satisfy, checked on create and on the merged result of a
//! PATCH: the URL (SSRF policy), event patterns, description, headers (names, values, sizes),
//! the signing scheme, and the plugin with its config (the plugin's own `validate-config`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::models::{REDACTED, SubscriptionPatch};
use super::super::{ApiError, AppState, ErrorCode};
use crate::signing::Scheme;
use crate::store::Subscription;

/// Event types or patterns per subscription, at most.
const MAX_PATTERNS: usize = 100;
/// Custom headers per subscription, at most (as many as a plugin may add).
const MAX_HEADERS: usize = 32;
/// One custom header value, at most: the same bound as a plugin's header values.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;
/// All custom headers together (`name: value\r\n` each), at most. Common servers refuse a
/// request whose headers pass 8–16 KiB in all (Node.js: 16 KiB) with 431, which would fail
/// every delivery; Switchyard's own headers come on top.
pub const MAX_HEADERS_BYTES: usize = 16 * 1024;
/// Description length, in characters.
const MAX_DESCRIPTION_CHARS: usize = 1000;

/// The fields every subscription must satisfy together.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub url: String,
    pub events: Vec<String>,
    pub plugin: Option<String>,
    /// The plugin config as JSON text.
    pub plugin_config: Option<String>,
    pub description: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub signature: Scheme,
}

impl Candidate {
    /// A PATCH applied to the stored subscription (the one merge of a PATCH). A header value
    /// sent back as the redaction placeholder keeps that header's stored value.
    ///
    /// # Errors
    /// `invalid_headers` for a placeholder with no stored value under that name.
    pub fn merged(current: &Subscription, patch: SubscriptionPatch) -> Result<Self, ApiError> {
        let headers = match patch.headers.into_option() {
            None => current.headers.clone(),
            Some(given) => {
                let mut headers = BTreeMap::new();
                for (name, value) in given {
                    let value = if value == REDACTED {
                        current
                            .headers
                            .get(&name.to_ascii_lowercase())
                            .cloned()
                            .ok_or_else(|| {
                                ApiError::invalid(
                                    ErrorCode::InvalidHeaders,
                                    format!(
                                        "header {name:?}: {REDACTED:?} stands for a stored value, and this header has none"
                                    ),
                                )
                            })?
                    } else {
                        value
                    };
                    headers.insert(name, value);
                }
                headers
            }
        };
        Ok(Self {
            url: patch.url.apply(current.url.clone()),
            events: patch.events.apply(current.events.clone()),
            plugin: patch.plugin.apply(current.plugin.clone()),
            plugin_config: patch
                .plugin_config
                .map_value(|v| v.to_string())
                .apply(current.plugin_config.clone()),
            description: patch.description.apply(current.description.clone()),
            headers,
            signature: patch
                .signature
                .into_option()
                .map_or_else(|| current.signature.clone(), Scheme::from),
        })
    }
}

/// Checks everything about a subscription that can be checked before saving it; returns it
/// normalised (trimmed URL, lower-case header names).
///
/// # Errors
/// A 422 naming the first field that is not valid.
pub async fn validate(state: &AppState, mut c: Candidate) -> Result<Candidate, ApiError> {
    c.url = state
        .client
        .check_url(c.url.trim())
        .map_err(|e| ApiError::invalid(ErrorCode::InvalidUrl, e.to_string()))?
        .to_string();
    check_patterns(&c.events)?;
    if c.description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(ApiError::invalid(
            ErrorCode::InvalidDescription,
            format!("description is limited to {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    c.signature = c
        .signature
        .validated()
        .map_err(|e| ApiError::invalid(ErrorCode::InvalidSignature, e.to_string()))?;
    c.headers = check_headers(c.headers, &c.signature)?;
    check_plugin(state, c.plugin.as_deref(), c.plugin_config.as_deref()).await?;
    Ok(c)
}

/// A secret the caller gave must fit the scheme.
///
/// # Errors
/// `invalid_secret` with the scheme's rule.
pub fn check_secret(scheme: &Scheme, secret: &str) -> Result<(), ApiError> {
    scheme
        .check_secret(secret)
        .map_err(|e| ApiError::invalid(ErrorCode::InvalidSecret, e.to_string()))
}

fn check_patterns(patterns: &[String]) -> Result<(), ApiError> {
    if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
        return Err(ApiError::invalid(
            ErrorCode::InvalidEvents,
            format!("events must list 1 to {MAX_PATTERNS} event types or patterns"),
        ));
    }
    for pattern in patterns {
        let body = pattern.strip_suffix(".*").unwrap_or(pattern);
        let ok =
            pattern == "*" || (body != "*" && super::super::events::check_event_type(body).is_ok());
        if !ok {
            return Err(ApiError::invalid(
                ErrorCode::InvalidEvents,
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
            ErrorCode::InvalidHeaders,
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    let signed = scheme.header_names();
    let mut clean = BTreeMap::new();
    let mut total = 0usize;
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let bad = |why: &str| {
            ApiError::invalid(ErrorCode::InvalidHeaders, format!("header {name:?}: {why}"))
        };
        if axum::http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(bad("not a valid header name"));
        }
        if value.len() > MAX_HEADER_VALUE_BYTES {
            return Err(bad(&format!(
                "the value is {} bytes, more than the limit of {MAX_HEADER_VALUE_BYTES}",
                value.len()
            )));
        }
        if axum::http::HeaderValue::from_str(&value).is_err() {
            return Err(bad("not a valid header value"));
        }
        if value == REDACTED {
            return Err(bad(&format!(
                "{REDACTED:?} is the placeholder GET shows for a stored value, not a value"
            )));
        }
        if crate::net::is_host_header(&lower) || signed.contains(&lower.as_str()) {
            return Err(bad("set by Switchyard itself"));
        }
        // `name: value\r\n` on the wire.
        total = total.saturating_add(lower.len() + value.len() + 4);
        clean.insert(lower, value);
    }
    if total > MAX_HEADERS_BYTES {
        return Err(ApiError::invalid(
            ErrorCode::InvalidHeaders,
            format!(
                "the headers are {total} bytes in all, more than the limit of {MAX_HEADERS_BYTES}"
            ),
        ));
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
                ErrorCode::InvalidPluginConfig,
                "plugin_config needs a plugin",
            )),
            None => Ok(()),
        };
    };
    // A plugin still compiling after a start is waited for, a while.
    let loaded = match state
        .plugins
        .ready_within(name, crate::plugins::LOADING_WAIT)
        .await
    {
        Ok(loaded) => loaded,
        Err(crate::plugins::PluginError::NotFound(_)) => {
            return Err(ApiError::invalid(
                ErrorCode::UnknownPlugin,
                format!("plugin {name:?} is not loaded (GET /v1/plugins lists them)"),
            ));
        }
        Err(other) => return Err(other.into()),
    };
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
                ErrorCode::InvalidPluginConfig,
                format!("plugin {name} refused the config: {reason}"),
            )
        })
}

/// A plugin config as the API shows it (stored as JSON text).
pub fn config_text(config: Option<Value>) -> Option<String> {
    config.map(|v| v.to_string())
}
