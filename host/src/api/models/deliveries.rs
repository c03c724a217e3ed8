//! Deliveries and their attempts.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::common::{DeliveryId, EventId, SubscriptionId, Timestamp};
use crate::store::{Attempt, Delivery, DeliveryStatus};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatusOut {
    /// Waiting for its next attempt.
    Pending,
    /// An attempt is in flight.
    Delivering,
    /// A 2xx was received.
    Succeeded,
    /// Gave up after the last attempt (or a 410): can be retried by hand.
    Failed,
    /// The plugin decided not to deliver it.
    Skipped,
    /// Its subscription was deleted before it was delivered.
    Cancelled,
}

impl From<DeliveryStatus> for DeliveryStatusOut {
    fn from(status: DeliveryStatus) -> Self {
        match status {
            DeliveryStatus::Pending => Self::Pending,
            DeliveryStatus::Delivering => Self::Delivering,
            DeliveryStatus::Succeeded => Self::Succeeded,
            DeliveryStatus::Failed => Self::Failed,
            DeliveryStatus::Skipped => Self::Skipped,
            DeliveryStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<DeliveryStatusOut> for DeliveryStatus {
    fn from(status: DeliveryStatusOut) -> Self {
        match status {
            DeliveryStatusOut::Pending => Self::Pending,
            DeliveryStatusOut::Delivering => Self::Delivering,
            DeliveryStatusOut::Succeeded => Self::Succeeded,
            DeliveryStatusOut::Failed => Self::Failed,
            DeliveryStatusOut::Skipped => Self::Skipped,
            DeliveryStatusOut::Cancelled => Self::Cancelled,
        }
    }
}

/// One event's delivery to one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryOut {
    /// Its id.
    pub id: DeliveryId,
    /// The tenant of its event and subscription.
    pub tenant_id: crate::tenant::TenantId,
    /// The event delivered.
    pub event_id: EventId,
    /// The subscription delivered to.
    pub subscription_id: SubscriptionId,
    /// Where it stands.
    pub status: DeliveryStatusOut,
    /// Attempts made so far.
    pub attempts_made: u64,
    /// When the next attempt is due (while `pending`).
    #[schema(required = true)]
    pub next_attempt_at: Option<Timestamp>,
    /// The last attempt's error.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// Why the plugin skipped it.
    #[schema(required = true)]
    pub skip_reason: Option<String>,
    /// When it was created (with its event).
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl From<&Delivery> for DeliveryOut {
    fn from(d: &Delivery) -> Self {
        Self {
            id: d.id.clone().into(),
            tenant_id: d.tenant_id.clone(),
            event_id: d.event_id.clone().into(),
            subscription_id: d.subscription_id.clone().into(),
            status: d.status.into(),
            attempts_made: u64::try_from(d.attempts).unwrap_or(0),
            next_attempt_at: d.next_attempt_at.map(Timestamp::from_unix_ms),
            last_error: d.last_error.clone(),
            skip_reason: d.skip_reason.clone(),
            created_at: Timestamp::from_unix_ms(d.created_at),
            updated_at: Timestamp::from_unix_ms(d.updated_at),
        }
    }
}

/// A delivery with its attempts, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryDetailOut {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: DeliveryOut,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptOut>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Succeeded,
    /// A non-2xx, a timeout, a connection error or a plugin failure.
    Failed,
    /// The plugin skipped the event.
    Skipped,
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptOut {
    /// When it started.
    pub at: Timestamp,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The receiver's status code, if it answered.
    #[schema(required = true)]
    pub status_code: Option<u16>,
    /// Time to the response (or the failure), in milliseconds.
    #[schema(required = true)]
    pub latency_ms: Option<u64>,
    /// What went wrong.
    #[schema(required = true)]
    pub error: Option<String>,
    /// sha256 of the plugin version that ran, if a plugin ran.
    #[schema(required = true)]
    pub plugin_version: Option<String>,
    /// The start of the receiver's response body (4 KiB at most).
    #[schema(required = true)]
    pub response_body: Option<String>,
}

impl From<&Attempt> for AttemptOut {
    fn from(a: &Attempt) -> Self {
        Self {
            at: Timestamp::from_unix_ms(a.at),
            outcome: match a.outcome.as_str() {
                "succeeded" => AttemptOutcome::Succeeded,
                "skipped" => AttemptOutcome::Skipped,
                _ => AttemptOutcome::Failed,
            },
            status_code: a.status_code.and_then(|c| u16::try_from(c).ok()),
            latency_ms: a.latency_ms.and_then(|ms| u64::try_from(ms).ok()),
            error: a.error.clone(),
            plugin_version: a.plugin_version.clone(),
            response_body: a.response_body.clone(),
        }
    }
}

/// `GET /v1/deliveries`' filters and page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryListQuery {
    /// Only this subscription's deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>)]
    pub subscription_id: Option<SubscriptionId>,
    /// Only this event's deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>)]
    pub event_id: Option<EventId>,
    /// Only deliveries in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub status: Option<DeliveryStatusOut>,
    /// Page size, 1 to 250.
    #[param(minimum = 1, maximum = 250, default = 50)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page (newest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `POST /v1/deliveries/{id}/retry`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetryOut {
    /// The delivery.
    pub id: DeliveryId,
    /// Always `pending`: it is queued, due now.
    pub status: DeliveryStatusOut,
}

/// One attempt in the feed (`GET /v1/attempts`): the attempt, and what identifies its delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptFeedOut {
    /// The attempt's position in the feed: pass the last one seen as `?after=`.
    #[schema(example = "1042")]
    pub id: String,
    /// Its delivery.
    pub delivery_id: DeliveryId,
    /// The delivery's subscription.
    pub subscription_id: SubscriptionId,
    /// The delivery's event.
    pub event_id: EventId,
    /// The event's type.
    #[schema(example = "post.published")]
    pub event_type: String,
    /// The attempt.
    #[serde(flatten)]
    pub attempt: AttemptOut,
}

/// `GET /v1/attempts`' filters and position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AttemptFeedQuery {
    /// Only this tenant's attempts (a tenant-bound key sees only its own either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>, pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub tenant_id: Option<crate::tenant::TenantId>,
    /// Only attempts recorded after this one (a `next_cursor` of this route), oldest first.
    /// Without it: the latest `limit` attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Only this subscription's attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>)]
    pub subscription_id: Option<SubscriptionId>,
    /// How many at most, 1 to 250.
    #[param(minimum = 1, maximum = 250, default = 50)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}
