//! Subscriptions: what creates, changes and shows one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::common::{DeliveryId, EventId, NonNullPatch, Patch, SubscriptionId, Timestamp};
use crate::signing::Scheme;
use crate::store::{Subscription, SubscriptionStatus};

/// What `GET` and list show instead of a custom header's value (which is often a receiver's
/// credential) unless `?include_header_values=true`. It is refused as a real value, so a PATCH
/// that sends it back means "keep this header's current value".
pub const REDACTED: &str = "••••";

/// How deliveries are signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Signature {
    /// Standard Webhooks (the default): `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed by the
    /// base64 after `whsec_`.
    StandardWebhooks {},
    /// `<prefix><hex HMAC-SHA256>` in `header` (GitHub / SaaS style), keyed by the secret's
    /// text as-is, over the body, or over `"<timestamp>.<body>"` when `timestamp_header` is
    /// set (that header then carries the Unix timestamp).
    HmacSha256Hex {
        /// The header that carries the signature, e.g. `X-Hub-Signature-256` (stored lower-case).
        #[schema(example = "x-hub-signature-256")]
        header: String,
        /// Text before the hex digest.
        #[serde(default = "default_prefix")]
        #[schema(default = "sha256=")]
        prefix: String,
        /// When set, the timestamp is signed too and sent in this header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp_header: Option<String>,
    },
}

fn default_prefix() -> String {
    "sha256=".to_owned()
}

impl Default for Signature {
    fn default() -> Self {
        Self::StandardWebhooks {}
    }
}

impl From<Signature> for Scheme {
    fn from(signature: Signature) -> Self {
        match signature {
            Signature::StandardWebhooks {} => Scheme::StandardWebhooks,
            Signature::HmacSha256Hex {
                header,
                prefix,
                timestamp_header,
            } => Scheme::HmacSha256Hex {
                header,
                prefix,
                timestamp_header,
            },
        }
    }
}

impl From<&Scheme> for Signature {
    fn from(scheme: &Scheme) -> Self {
        match scheme.clone() {
            Scheme::StandardWebhooks => Signature::StandardWebhooks {},
            Scheme::HmacSha256Hex {
                header,
                prefix,
                timestamp_header,
            } => Signature::HmacSha256Hex {
                header,
                prefix,
                timestamp_header,
            },
        }
    }
}

/// `POST /v1/subscriptions`'s body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://hooks.example.com/switchyard",
    "events": ["post.*", "order.created"],
    "plugin": "slack",
    "plugin_config": {"title": "New post: {{data.title}}"},
    "description": "Posts to the team channel",
    "headers": {"x-team": "blue"}
}))]
pub struct SubscriptionIn {
    /// The tenant it belongs to (default `default`; a tenant-bound key's own tenant, which it
    /// need not name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<crate::tenant::TenantId>,
    /// Where deliveries are POSTed: `https` (or `http` when private networks are allowed).
    pub url: String,
    /// Event types (`post.published`) or patterns (`post.*`, `*`), 1 to 100.
    pub events: Vec<String>,
    /// A loaded plugin that transforms (or skips) each event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// The plugin's config (any JSON), checked by the plugin's `validate-config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_config: Option<Value>,
    /// Free text, up to 1000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Extra headers sent with every delivery (at most 32; 8 KiB a value, 16 KiB in all).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The signing scheme; absent or `null` means Standard Webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
    /// A secret of your own instead of a generated one (`whsec_` + base64 of 24-64 bytes for
    /// Standard Webhooks; 16-256 printable characters for the hex scheme).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl SubscriptionIn {
    /// A body with just the required fields.
    pub fn new(url: impl Into<String>, events: Vec<String>) -> Self {
        Self {
            tenant_id: None,
            url: url.into(),
            events,
            plugin: None,
            plugin_config: None,
            description: None,
            headers: BTreeMap::new(),
            signature: None,
            secret: None,
        }
    }
}

/// `PATCH /v1/subscriptions/{id}`'s body: fields left out keep their value, `null` clears an
/// optional one. The merged result is validated as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"description": "Posts to the ops channel", "plugin": null, "plugin_config": null}))]
pub struct SubscriptionPatch {
    /// A new URL.
    #[serde(default, skip_serializing_if = "NonNullPatch::is_absent")]
    #[schema(value_type = String)]
    pub url: NonNullPatch<String>,
    /// New event types or patterns.
    #[serde(default, skip_serializing_if = "NonNullPatch::is_absent")]
    #[schema(value_type = Vec<String>)]
    pub events: NonNullPatch<Vec<String>>,
    /// A new plugin, or `null` for none (then `plugin_config` must go too).
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    #[schema(value_type = Option<String>)]
    pub plugin: Patch<String>,
    /// A new plugin config, or `null` for none.
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    #[schema(value_type = Option<Value>)]
    pub plugin_config: Patch<Value>,
    /// A new description, or `null` for none.
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    /// The new set of custom headers (replaces them all). A value of `"••••"` (what `GET`
    /// shows) keeps that header's current value.
    #[serde(default, skip_serializing_if = "NonNullPatch::is_absent")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub headers: NonNullPatch<BTreeMap<String, String>>,
    /// A new signing scheme. If the current secret cannot sign with it (a hex-scheme secret
    /// for Standard Webhooks), send `secret` or `rotate_secret` too.
    #[serde(default, skip_serializing_if = "NonNullPatch::is_absent")]
    #[schema(value_type = Signature)]
    pub signature: NonNullPatch<Signature>,
    /// A new secret of your own, replacing the current one like a rotation (the old one keeps
    /// signing for the rotation grace period where the scheme has room for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `true`: generate a new secret (like `rotate-secret`); the answer shows it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotate_secret: bool,
}

/// `?include_header_values=` of `GET /v1/subscriptions` and `GET /v1/subscriptions/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionQuery {
    /// `true` shows custom header values; by default they are shown as `"••••"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_header_values: Option<bool>,
}

/// Whether a subscription receives deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatusOut {
    /// Receives deliveries.
    Enabled,
    /// Disabled (410 Gone, or failing for too long): its deliveries wait until it is enabled.
    Disabled,
}

/// A subscription. Its secret appears only in the answer that created it (or rotated it
/// through PATCH's `rotate_secret`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionOut {
    /// Its id.
    pub id: SubscriptionId,
    /// The tenant it belongs to: it receives only that tenant's events.
    pub tenant_id: crate::tenant::TenantId,
    /// Where deliveries go.
    pub url: String,
    /// Event types and patterns.
    pub events: Vec<String>,
    /// The plugin, if any.
    #[schema(required = true)]
    pub plugin: Option<String>,
    /// The plugin's config, if any.
    #[schema(value_type = Option<Value>, required = true)]
    pub plugin_config: Option<Value>,
    /// Free text.
    #[schema(required = true)]
    pub description: Option<String>,
    /// Custom headers; values are `"••••"` unless the answer is to the create (or
    /// `?include_header_values=true`).
    pub headers: BTreeMap<String, String>,
    /// How deliveries are signed.
    pub signature: Signature,
    /// `enabled` or `disabled`.
    pub status: SubscriptionStatusOut,
    /// Why it was disabled.
    #[schema(required = true)]
    pub disabled_reason: Option<String>,
    /// When it was disabled.
    #[schema(required = true)]
    pub disabled_at: Option<Timestamp>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// The signing secret: only on create (and a PATCH that set or rotated it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: Option<String>,
}

impl SubscriptionOut {
    /// The subscription as the API shows it: no secret, header values redacted unless
    /// `header_values`.
    pub fn new(sub: &Subscription, header_values: bool) -> Self {
        let plugin_config = sub
            .plugin_config
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok());
        let headers = sub
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if header_values {
                    value.as_str()
                } else {
                    REDACTED
                };
                (name.clone(), shown.to_owned())
            })
            .collect();
        Self {
            tenant_id: sub.tenant_id.clone(),
            id: sub.id.clone().into(),
            url: sub.url.clone(),
            events: sub.events.clone(),
            plugin: sub.plugin.clone(),
            plugin_config,
            description: sub.description.clone(),
            headers,
            signature: Signature::from(&sub.signature),
            status: match sub.status {
                SubscriptionStatus::Enabled => SubscriptionStatusOut::Enabled,
                SubscriptionStatus::Disabled => SubscriptionStatusOut::Disabled,
            },
            disabled_reason: sub.disabled.as_ref().map(|(reason, _)| reason.clone()),
            disabled_at: sub
                .disabled
                .as_ref()
                .map(|(_, at)| Timestamp::from_unix_ms(*at)),
            created_at: Timestamp::from_unix_ms(sub.created_at),
            updated_at: Timestamp::from_unix_ms(sub.updated_at),
            secret: None,
        }
    }
}

/// `POST /v1/subscriptions/{id}/rotate-secret`'s answer: the new secret (shown only now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretOut {
    /// The new secret; the previous one keeps signing for the rotation grace period.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

/// `POST /v1/subscriptions/{id}/test`'s optional body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestEventIn {
    /// The sample event's type; default `switchyard.test`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(example = "post.published")]
    pub event_type: Option<String>,
}

/// `POST /v1/subscriptions/{id}/test`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TestEventOut {
    /// The sample's delivery (`null` only if the subscription was deleted meanwhile).
    #[schema(required = true)]
    pub delivery_id: Option<DeliveryId>,
    /// The sample event.
    pub event_id: EventId,
}

/// `POST /v1/subscriptions/{id}/recover`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverIn {
    /// Failed deliveries created at or after this time are queued again.
    pub since: Timestamp,
    /// … and at or before this one (default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

/// `POST /v1/subscriptions/{id}/recover`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecoverOut {
    /// How many failed deliveries were queued again.
    pub recovered: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_read_and_write_the_documented_shapes() {
        let standard: Signature =
            serde_json::from_str(r#"{"scheme": "standard-webhooks"}"#).unwrap();
        assert_eq!(standard, Signature::StandardWebhooks {});
        assert_eq!(
            serde_json::to_string(&standard).unwrap(),
            r#"{"scheme":"standard-webhooks"}"#
        );
        // Extra keys are refused, on the unit-like scheme too.
        for text in [
            r#"{"scheme": "standard-webhooks", "header": "x"}"#,
            r#"{"scheme": "hmac-sha256-hex", "header": "x", "key": "y"}"#,
            r#"{"scheme": "hmac-sha256-hex"}"#,
            r#"{"scheme": "md5"}"#,
            r#"{}"#,
        ] {
            assert!(serde_json::from_str::<Signature>(text).is_err(), "{text}");
        }
        let hex: Signature =
            serde_json::from_str(r#"{"scheme": "hmac-sha256-hex", "header": "x-sig"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&hex).unwrap(),
            r#"{"scheme":"hmac-sha256-hex","header":"x-sig","prefix":"sha256="}"#
        );
        // The same words as the signing module's own serialisation (what the store keeps).
        for signature in [standard, hex] {
            let scheme = Scheme::from(signature.clone());
            assert_eq!(
                serde_json::to_value(&scheme).unwrap(),
                serde_json::to_value(&signature).unwrap()
            );
            assert_eq!(Signature::from(&scheme), signature);
        }
    }
}
