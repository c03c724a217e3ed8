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

pub use common::{
    DeliveryId, EventId, HealthOut, ListQuery, NonNullPatch, Page, Patch, SubscriptionId, Timestamp,
};
pub use deliveries::{
    AttemptOut, AttemptOutcome, DeliveryDetailOut, DeliveryListQuery, DeliveryOut,
    DeliveryStatusOut, RetryOut,
};
pub use errors::{ErrorBody, ErrorCode, ErrorDetail};
pub use events::{EventAccepted, EventIn, EventOut};
pub use plugins::{DryRunEvent, DryRunIn, DryRunOut, LogLineOut, PluginOut, PluginStatusOut};
pub use subscriptions::{
    REDACTED, RecoverIn, RecoverOut, SecretOut, Signature, SubscriptionIn, SubscriptionOut,
    SubscriptionPatch, SubscriptionQuery, SubscriptionStatusOut, TestEventIn, TestEventOut,
};
