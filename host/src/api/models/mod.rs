//! The API's wire types: every request body, query and answer of `/v1` as a named Rust type.
//!
//! These are the contract (docs/API.md, docs/openapi.json): the OpenAPI document is derived
//! from them, the handlers take and return them, and clients (the tests, the CLI) deserialize
//! into them. They are public and both `Serialize` and `Deserialize` so a client can build
//! requests and read answers with the same types the server uses. They hold wire shapes only;
//! the store's rows are converted at the edge (`From` impls next to each type).

mod common;
mod deliveries;
mod errors;
mod events;
mod plugins;
mod subscriptions;
mod tenants;

pub use common::{
    DeliveryId, EventId, HealthOut, ListQuery, NonNullPatch, Page, Patch, SubscriptionId, Timestamp,
};
pub use deliveries::{
    AttemptFeedOut, AttemptFeedQuery, AttemptOut, AttemptOutcome, DeliveryDetailOut,
    DeliveryListQuery, DeliveryOut, DeliveryStatusOut, RetryOut,
};
pub use errors::{ErrorBody, ErrorCode, ErrorDetail};
pub use events::{EventAccepted, EventIn, EventOut};
pub use plugins::{
    DeliverOutcome, DryRunDeliver, DryRunEvent, DryRunIn, DryRunOut, DryRunSkip, LogLineOut,
    PluginLimitsOut, PluginOut, PluginStatusOut, PluginUploadQuery, SkipOutcome, WasmComponent,
};
pub use subscriptions::{
    REDACTED, RecoverIn, RecoverOut, SecretOut, Signature, SubscriptionIn, SubscriptionOut,
    SubscriptionPatch, SubscriptionQuery, SubscriptionStatusOut, TestEventIn, TestEventOut,
};

pub use tenants::{KeyCreated, KeyIn, KeyOut, TenantIn, TenantOut, TenantQuery};

/// A page of tenants (`GET /v1/tenants`).
pub type TenantPage = Page<TenantOut>;
/// A page of keys (`GET /v1/keys`).
pub type KeyPage = Page<KeyOut>;
/// A page of subscriptions (`GET /v1/subscriptions`).
pub type SubscriptionPage = Page<SubscriptionOut>;
/// A page of deliveries (`GET /v1/deliveries`).
pub type DeliveryPage = Page<DeliveryOut>;
/// The attempt feed (`GET /v1/attempts`).
pub type AttemptFeedPage = Page<AttemptFeedOut>;
/// The plugins (`GET /v1/plugins`: one page).
pub type PluginPage = Page<PluginOut>;
