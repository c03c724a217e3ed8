//! Operational events: Switchyard's own events about a tenant's subscriptions and deliveries
//! (`switchyard.subscription.disabled`, `switchyard.subscription.enabled`,
//! `switchyard.delivery.failed`), stored and routed like any other event of that tenant — in
//! the same transaction as the change they report, so one happens exactly when the other does.
//!
//! They never feed themselves: a delivery of an operational event that fails emits nothing, the
//! subscription being disabled does not receive its own `disabled` event, and `*` does not match
//! them (only a pattern that names them, e.g. `switchyard.*`; see `matching`).

use rusqlite::{OptionalExtension, Transaction};
use serde_json::{Value, json};

use super::matching::{Index, OPERATIONAL_PREFIX};
use super::{StoreError, Subscription, events, new_id_at, queue};

/// A subscription was disabled (410 Gone, or failing for too long).
pub const SUBSCRIPTION_DISABLED: &str = "switchyard.subscription.disabled";
/// A disabled subscription was enabled again.
pub const SUBSCRIPTION_ENABLED: &str = "switchyard.subscription.enabled";
/// A delivery used up its retries (or met a 410) and is failed.
pub const DELIVERY_FAILED: &str = "switchyard.delivery.failed";

/// Stores an operational event in `tenant` and one pending delivery to each of the tenant's
/// subscriptions that asked for `event_type` (except `except`). Returns whether any delivery
/// was created.
pub(super) fn emit(
    tx: &Transaction<'_>,
    index: &Index<Subscription>,
    tenant: &str,
    event_type: &str,
    data: &Value,
    except: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let event_id = new_id_at("evt", now);
    tx.prepare_cached(events::INSERT_EVENT)?.execute((
        &event_id,
        tenant,
        None::<&str>, // no idempotency key
        event_type,
        data.to_string(),
        now,
    ))?;
    let mut insert = tx.prepare_cached(events::INSERT_PENDING)?;
    let mut queued = Vec::new();
    for sub in index.matching(tenant, event_type) {
        if Some(sub.id.as_str()) == except {
            continue;
        }
        insert.execute((
            new_id_at("dlv", now),
            tenant,
            &event_id,
            &sub.id,
            now,
            now,
            now,
        ))?;
        queued.push(sub.id.clone());
    }
    queue::queued(tx, queued.iter().map(String::as_str), now)?;
    Ok(!queued.is_empty())
}

/// `switchyard.delivery.failed` for a delivery that just failed for good — unless it was itself
/// the delivery of an operational event (no loops). Returns whether deliveries were created.
pub(super) fn delivery_failed(
    tx: &Transaction<'_>,
    index: &Index<Subscription>,
    delivery_id: &str,
    attempts: i64,
    last_error: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let found: Option<(String, String, String, String)> = tx
        .prepare_cached(
            "SELECT d.tenant_id, d.event_id, d.subscription_id, e.type FROM deliveries d
             JOIN events e ON e.id = d.event_id WHERE d.id = ?",
        )?
        .query_row([delivery_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((tenant, event_id, subscription_id, event_type)) = found else {
        return Ok(false);
    };
    if event_type.starts_with(OPERATIONAL_PREFIX) {
        return Ok(false);
    }
    let data = json!({
        "delivery_id": delivery_id,
        "event_id": event_id,
        "event_type": event_type,
        "subscription_id": subscription_id,
        "attempts": attempts,
        "last_error": last_error,
    });
    emit(tx, index, &tenant, DELIVERY_FAILED, &data, None, now)
}

/// The subscription's tenant and the last error of its latest failed delivery, for the data of
/// its `disabled` event.
pub(super) fn subscription_context(
    tx: &Transaction<'_>,
    subscription_id: &str,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    let tenant: Option<String> = tx
        .prepare_cached("SELECT tenant_id FROM subscriptions WHERE id = ?")?
        .query_row([subscription_id], |r| r.get(0))
        .optional()?;
    let Some(tenant) = tenant else {
        return Ok(None);
    };
    let last_error: Option<String> = tx
        .prepare_cached(
            "SELECT last_error FROM deliveries WHERE subscription_id = ? AND last_error IS NOT NULL
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row([subscription_id], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(Some((tenant, last_error)))
}
