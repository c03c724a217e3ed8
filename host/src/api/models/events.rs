//! Events: what a producer sends, and what the API shows of one.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::common::{EventId, Timestamp};
use super::deliveries::DeliveryOut;

/// `POST /v1/events`'s body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"type": "post.published", "data": {"title": "Hello", "author": "Ann"}, "id": "post-42-published"}))]
pub struct EventIn {
    /// The event type: up to 128 characters of dot-separated segments of letters, digits, `_`
    /// and `-`.
    #[serde(rename = "type")]
    #[schema(example = "post.published")]
    pub event_type: String,
    /// The tenant it is published into (default `default`; a tenant-bound key's own tenant,
    /// which it need not name). It goes only to that tenant's subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<crate::tenant::TenantId>,
    /// Any JSON. Kept as the exact text received: stored and delivered byte for byte (big
    /// numbers, key order and spacing included).
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
    /// An idempotency key (1-255 characters): posting the same key again answers with the
    /// first event and creates no deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `POST /v1/events`'s answer (`202`, once the event and its deliveries are committed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventAccepted {
    /// The event's id (the first event's, when the idempotency key was seen before).
    pub id: EventId,
    /// How many subscriptions matched (deliveries created).
    pub deliveries: u64,
}

/// An event and the first page of its deliveries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventOut {
    /// Its id.
    pub id: EventId,
    /// The tenant it was published into.
    pub tenant_id: crate::tenant::TenantId,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it was accepted.
    pub timestamp: Timestamp,
    /// The producer's idempotency key, if it sent one.
    #[schema(required = true)]
    pub idempotency_key: Option<String>,
    /// The data, exactly as received; `null` once expunged.
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
    /// When its content was expunged (`DELETE /v1/events/{id}/content`); otherwise `null`.
    #[serde(default)]
    #[schema(required = true)]
    pub expunged_at: Option<Timestamp>,
    /// Its deliveries, newest first: the first 1000.
    pub deliveries: Vec<DeliveryOut>,
    /// When there are more than 1000 deliveries: the `cursor` of the next page of
    /// `GET /v1/deliveries?event_id=<id>&cursor=…`; otherwise `null`.
    #[serde(default)]
    #[schema(required = true)]
    pub deliveries_next_cursor: Option<String>,
}
