//! Rows as the rest of the service sees them.

use std::collections::BTreeMap;

use rusqlite::Row;
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::matching::{Routable, pattern_matches};
use super::secrets::Sealer;
use crate::signing::{Scheme, SigningError, SigningKey};
use crate::tenant::TenantId;

/// Rotated-out secrets kept at most, newest first: each keeps signing until its grace ends,
/// so rotating twice (or three times) inside the grace drops none of them early.
pub const MAX_PREVIOUS_SECRETS: usize = 3;

/// One rotated-out secret as stored (sealed) in `subscriptions.previous_secrets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredSecret {
    /// The sealed secret.
    pub secret: String,
    /// When it stops signing (unix ms).
    pub expires_at: i64,
}

/// Whether a subscription receives deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatus {
    /// Receives deliveries.
    Enabled,
    /// Disabled (410 Gone, or failing for too long); its deliveries wait until re-enabled.
    Disabled,
}

/// A subscription, secrets included (never serialised as such: the API builds its own view).
#[derive(Debug, Clone)]
pub struct Subscription {
    /// `sub_…`
    pub id: String,
    /// The tenant it belongs to: it receives only that tenant's events.
    pub tenant_id: TenantId,
    /// Where deliveries go.
    pub url: String,
    /// Event type patterns: `a.b`, `a.*`, `*`.
    pub events: Vec<String>,
    /// Plugin name, if any.
    pub plugin: Option<String>,
    /// The plugin's config as JSON text, if any.
    pub plugin_config: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Extra headers sent with every delivery.
    pub headers: BTreeMap<String, String>,
    /// Signing scheme.
    pub signature: Scheme,
    /// Current secret.
    pub secret: String,
    /// Rotated-out secrets still inside their grace and when each stops signing (unix ms),
    /// newest first, at most [`MAX_PREVIOUS_SECRETS`].
    pub previous_secrets: Vec<(String, i64)>,
    /// Enabled or disabled.
    pub status: SubscriptionStatus,
    /// Why and when it was disabled.
    pub disabled: Option<(String, i64)>,
    /// Created (unix ms).
    pub created_at: i64,
    /// Last changed (unix ms).
    pub updated_at: i64,
    /// `url` parsed when the row was read, so an attempt does not parse it again (`None` if it
    /// does not parse; the create-time check makes that a corrupt row, which the send reports).
    pub parsed_url: Option<url::Url>,
    /// The signing keys of `secret`, then of each of `previous_secrets` (in that order), made
    /// when the row was read: an attempt copies a key's HMAC state instead of decoding the
    /// secret and hashing the key again.
    pub signing_keys: Vec<Result<SigningKey, SigningError>>,
}

impl Routable for Subscription {
    fn route_id(&self) -> &str {
        &self.id
    }
    fn route_tenant(&self) -> &str {
        self.tenant_id.as_str()
    }
    fn route_patterns(&self) -> &[String] {
        &self.events
    }
}

impl Subscription {
    /// Whether an event of `event_type` goes to this subscription.
    pub fn matches(&self, event_type: &str) -> bool {
        self.events.iter().any(|p| pattern_matches(p, event_type))
    }

    /// The keys that sign a delivery at `now_ms`, newest first: the current secret's, then
    /// those of the rotated-out secrets still inside their grace.
    pub fn signing_keys(&self, now_ms: i64) -> Vec<&Result<SigningKey, SigningError>> {
        self.signing_keys
            .iter()
            .zip(self.signs_at(now_ms))
            .filter_map(|(key, signs)| signs.then_some(key))
            .collect()
    }

    /// The secrets behind [`Subscription::signing_keys`] at `now_ms`, in the same order: what
    /// the tests check the keys against.
    #[cfg(test)]
    pub(crate) fn signing_secrets(&self, now_ms: i64) -> Vec<&str> {
        std::iter::once(self.secret.as_str())
            .chain(self.previous_secrets.iter().map(|(s, _)| s.as_str()))
            .zip(self.signs_at(now_ms))
            .filter_map(|(secret, signs)| signs.then_some(secret))
            .collect()
    }

    /// Whether each secret signs at `now_ms`, in key order (current, then previous): the
    /// current one always, a rotated-out one until its grace ends.
    fn signs_at(&self, now_ms: i64) -> impl Iterator<Item = bool> + '_ {
        std::iter::once(true).chain(
            self.previous_secrets
                .iter()
                .map(move |(_, until)| *until > now_ms),
        )
    }

    /// Reads a row, opening its sealed secrets; rotated-out secrets past their grace are
    /// left out (the periodic sweep then removes them from the row).
    pub(super) fn from_row(row: &Row<'_>, sealer: &Sealer) -> Result<Self, StoreError> {
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("subscription {what}: {e}"))
        };
        let id: String = row.get("id")?;
        let status: String = row.get("status")?;
        let previous: Vec<StoredSecret> =
            serde_json::from_str(&row.get::<_, String>("previous_secrets")?)
                .map_err(|e| corrupt("previous_secrets", e))?;
        // Past their grace by the system clock; signing filters again by the service's clock.
        let now = crate::clock::Clock::system().now_ms();
        let previous_secrets = previous
            .into_iter()
            .filter(|p| p.expires_at > now)
            .map(|p| Ok((sealer.open(&id, &p.secret)?, p.expires_at)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let secret = sealer.open(&id, &row.get::<_, String>("secret")?)?;
        let reason: Option<String> = row.get("disabled_reason")?;
        let disabled_at: Option<i64> = row.get("disabled_at")?;
        let url: String = row.get("url")?;
        let signature: Scheme = serde_json::from_str(&row.get::<_, String>("signature")?)
            .map_err(|e| corrupt("signature", e))?;
        let signing_keys = std::iter::once(secret.as_str())
            .chain(previous_secrets.iter().map(|(s, _)| s.as_str()))
            .map(|s| signature.key(s))
            .collect();
        Ok(Self {
            id,
            tenant_id: TenantId::from_stored(row.get("tenant_id")?),
            parsed_url: url::Url::parse(&url).ok(),
            url,
            events: serde_json::from_str(&row.get::<_, String>("events")?)
                .map_err(|e| corrupt("events", e))?,
            plugin: row.get("plugin")?,
            plugin_config: row.get("plugin_config")?,
            description: row.get("description")?,
            headers: serde_json::from_str(&row.get::<_, String>("headers")?)
                .map_err(|e| corrupt("headers", e))?,
            signature,
            secret,
            signing_keys,
            previous_secrets,
            status: if status == "enabled" {
                SubscriptionStatus::Enabled
            } else {
                SubscriptionStatus::Disabled
            },
            disabled: reason.zip(disabled_at),
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }
}

/// A stored event.
#[derive(Debug, Clone)]
pub struct Event {
    /// `evt_…`
    pub id: String,
    /// The tenant it was published into.
    pub tenant_id: TenantId,
    /// The producer's idempotency key, if it gave one.
    pub idempotency_key: Option<String>,
    /// e.g. `post.published`.
    pub event_type: String,
    /// The event data as JSON text, as received; empty once expunged.
    pub data: String,
    /// Accepted at (unix ms).
    pub created_at: i64,
    /// When its payload was expunged (unix ms), if it was.
    pub expunged_at: Option<i64>,
}

impl Event {
    pub(super) fn from_row(row: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.get("id")?,
            tenant_id: TenantId::from_stored(row.get("tenant_id")?),
            idempotency_key: row.get("idempotency_key")?,
            event_type: row.get("type")?,
            data: row.get("data")?,
            created_at: row.get("created_at")?,
            expunged_at: row.get("expunged_at")?,
        })
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Leased by a worker, attempt in flight.
    Delivering,
    /// A 2xx was received.
    Succeeded,
    /// Gave up (dead letter); can be retried by hand.
    Failed,
    /// The plugin decided not to deliver.
    Skipped,
    /// Its subscription was deleted.
    Cancelled,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Delivering,
        Self::Succeeded,
        Self::Failed,
        Self::Skipped,
        Self::Cancelled,
    ];

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivering => "delivering",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the stored word.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A delivery of one event to one subscription.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// `dlv_…`
    pub id: String,
    /// The tenant of its event and subscription.
    pub tenant_id: TenantId,
    /// The event delivered.
    pub event_id: String,
    /// The subscription delivered to.
    pub subscription_id: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i64,
    /// When the next attempt is due (unix ms), while pending.
    pub next_attempt_at: Option<i64>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// Why the plugin skipped it.
    pub skip_reason: Option<String>,
    /// Created (unix ms).
    pub created_at: i64,
    /// Last changed (unix ms).
    pub updated_at: i64,
}

impl Delivery {
    pub(super) fn from_row(row: &Row<'_>) -> Result<Self, StoreError> {
        let status: String = row.get("status")?;
        let status = DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status:?}")))?;
        let next: i64 = row.get("next_attempt_at")?;
        Ok(Self {
            id: row.get("id")?,
            tenant_id: TenantId::from_stored(row.get("tenant_id")?),
            event_id: row.get("event_id")?,
            subscription_id: row.get("subscription_id")?,
            status,
            attempts: row.get("attempts")?,
            next_attempt_at: (status == DeliveryStatus::Pending).then_some(next),
            last_error: row.get("last_error")?,
            skip_reason: row.get("skip_reason")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }
}

/// One attempt at a delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// When it started (unix ms).
    pub at: i64,
    /// `succeeded`, `failed` or `skipped`.
    pub outcome: String,
    /// The receiver's status code, if it answered.
    pub status_code: Option<i64>,
    /// Time to the response (or failure).
    pub latency_ms: Option<i64>,
    /// What went wrong.
    pub error: Option<String>,
    /// sha256 of the plugin version that ran.
    pub plugin_version: Option<String>,
    /// The start of the receiver's response body.
    pub response_body: Option<String>,
}

impl Attempt {
    pub(super) fn from_row(row: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            at: row.get("at")?,
            outcome: row.get("outcome")?,
            status_code: row.get("status_code")?,
            latency_ms: row.get("latency_ms")?,
            error: row.get("error")?,
            plugin_version: row.get("plugin_version")?,
            response_body: row.get("response_body")?,
        })
    }
}
