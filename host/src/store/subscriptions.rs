//! Subscriptions: CRUD, enable/disable, and the in-memory copy kept in step (secret
//! rotation is in `rotation`).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use rusqlite::OptionalExtension;

use super::matching::Index;
use super::{Store, StoreError, Subscription, all_rows, new_id, operational};
use crate::signing::Scheme;
use crate::tenant::{Scope, TenantId};

/// A validated subscription to create.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    /// The tenant it belongs to (checked to exist by the store).
    pub tenant_id: TenantId,
    /// Where deliveries go.
    pub url: String,
    /// Event type patterns.
    pub events: Vec<String>,
    /// Plugin name.
    pub plugin: Option<String>,
    /// Plugin config as JSON text.
    pub plugin_config: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// Signing scheme.
    pub signature: Scheme,
    /// The secret.
    pub secret: String,
}

#[cfg(test)]
impl NewSubscription {
    /// For tests: a subscription of the default tenant to `url` for `pattern`, with no plugin
    /// and a fresh Standard Webhooks secret.
    pub(crate) fn to_url(url: &str, pattern: &str) -> Self {
        Self {
            tenant_id: crate::tenant::TenantId::default_tenant(),
            url: url.into(),
            events: vec![pattern.into()],
            plugin: None,
            plugin_config: None,
            description: None,
            headers: BTreeMap::new(),
            signature: Scheme::default(),
            secret: crate::signing::generate_secret(),
        }
    }
}

/// A subscription's whole new configuration, merged from a PATCH and validated by the caller.
#[derive(Debug, Clone)]
pub struct SubscriptionUpdate {
    /// URL.
    pub url: String,
    /// Patterns.
    pub events: Vec<String>,
    /// Plugin (or none).
    pub plugin: Option<String>,
    /// Plugin config as JSON text (or none).
    pub plugin_config: Option<String>,
    /// Description (or none).
    pub description: Option<String>,
    /// Custom headers.
    pub headers: BTreeMap<String, String>,
    /// Signing scheme.
    pub signature: Scheme,
    /// A new secret, replacing the current one like a rotation; `None` keeps it.
    pub secret: Option<String>,
    /// With a new secret: how long the replaced one keeps signing.
    pub rotation_grace_ms: i64,
}

/// What [`Store::update_subscription`] did.
#[derive(Debug, Clone)]
pub enum UpdateOutcome {
    /// Written; the subscription as it now is.
    Updated(Arc<Subscription>),
    /// There is no such subscription (any more).
    NotFound,
    /// The stored subscription is no longer the one the update was merged from: merge again.
    Changed,
}

/// Whether two reads of a subscription agree on everything an update is merged from.
fn same_config(a: &Subscription, b: &Subscription) -> bool {
    a.tenant_id == b.tenant_id
        && a.url == b.url
        && a.events == b.events
        && a.plugin == b.plugin
        && a.plugin_config == b.plugin_config
        && a.description == b.description
        && a.headers == b.headers
        && a.signature == b.signature
        && a.secret == b.secret
}

/// Cancels a deleted subscription `?2`'s unfinished deliveries at `?1`: the pending ones (from
/// `deliveries_pending`) and the leased ones (from `deliveries_leased`: the status indexes
/// leave deliveries in flight out, see `migrations/0007_cheaper_delivery_writes.sql`).
pub(super) const CANCEL_UNFINISHED: [&str; 2] = [
    "UPDATE deliveries SET status = 'cancelled', lease_until = NULL, updated_at = ?1
     WHERE subscription_id = ?2 AND status = 'pending'",
    "UPDATE deliveries INDEXED BY deliveries_leased SET status = 'cancelled', lease_until = NULL, updated_at = ?1
     WHERE subscription_id = ?2 AND status = 'delivering'",
];

const COLUMNS: &str = "id, tenant_id, url, events, plugin, plugin_config, description, headers, signature, secret, \
    previous_secrets, status, disabled_reason, disabled_at, created_at, updated_at";

/// Whether subscription `id` exists (not deleted) inside the tenant filter `tenant`.
pub(super) fn in_scope(
    conn: &rusqlite::Connection,
    id: &str,
    tenant: Option<&str>,
) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE id = ?1 AND deleted_at IS NULL
             AND (?2 IS NULL OR tenant_id = ?2))",
        )?
        .query_row((id, tenant), |r| r.get(0))?)
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Creates a subscription in its tenant.
    ///
    /// # Errors
    /// Database errors; [`StoreError::UnknownTenant`] when the tenant does not exist.
    pub async fn create_subscription(
        &self,
        new: NewSubscription,
    ) -> Result<Arc<Subscription>, StoreError> {
        let id = new_id("sub");
        let tenant = new.tenant_id.as_str().to_owned();
        let tenant_id = new.tenant_id.clone();
        let now = self.clock.now_ms();
        let row = (
            id.clone(),
            new.url,
            json(&new.events)?,
            new.plugin,
            new.plugin_config,
            new.description,
            json(&new.headers)?,
            json(&new.signature)?,
            self.sealer.seal(&id, &new.secret)?,
            now,
            tenant,
        );
        let created = self
            .write(move |conn| {
                // In one statement with the tenant's existence: a tenant deleted meanwhile
                // gets no new subscription.
                Ok(conn
                    .prepare_cached(
                        "INSERT INTO subscriptions (id, url, events, plugin, plugin_config, description, headers, signature, secret,
                         created_at, updated_at, tenant_id)
                         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11
                         WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?11 AND deleted_at IS NULL)",
                    )?
                    .execute(row)?)
            })
            .await?;
        if created == 0 {
            return Err(StoreError::UnknownTenant(tenant_id.as_str().to_owned()));
        }
        self.refresh_and_get(&id).await
    }

    /// A subscription by id (not deleted), if it is inside `scope`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn subscription(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let id = id.to_owned();
        let tenant = scope.filter();
        let sealer = self.sealer.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE id = ?1 AND deleted_at IS NULL
                 AND (?2 IS NULL OR tenant_id = ?2)"
            ))?;
            Ok(all_rows(&mut stmt, (id, tenant), |r| {
                Subscription::from_row(r, &sealer)
            })?
            .pop())
        })
        .await
    }

    /// A page of subscriptions in creation order, after `cursor`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_subscriptions(
        &self,
        scope: &Scope,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Subscription>, StoreError> {
        let cursor = cursor.unwrap_or("").to_owned();
        let tenant = scope.filter();
        let sealer = self.sealer.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE deleted_at IS NULL AND id > ?1
                 AND (?3 IS NULL OR tenant_id = ?3) ORDER BY id LIMIT ?2"
            ))?;
            all_rows(&mut stmt, (cursor, limit, tenant), |r| {
                Subscription::from_row(r, &sealer)
            })
        })
        .await
    }

    /// Writes `update`, merged by the caller from `based_on`, if the stored subscription is
    /// still `based_on` (compare-and-swap inside the write transaction): two concurrent
    /// updates cannot both be merged from the same state, so neither overwrites the other's
    /// fields; the one answered [`UpdateOutcome::Changed`] merges again from the new state.
    /// The caller validates before (a plugin's `validate-config` cannot run on the writer).
    ///
    /// # Errors
    /// Database errors.
    pub async fn update_subscription(
        &self,
        scope: &Scope,
        based_on: &Subscription,
        update: SubscriptionUpdate,
    ) -> Result<UpdateOutcome, StoreError> {
        if !scope.allows(based_on.tenant_id.as_str()) {
            return Ok(UpdateOutcome::NotFound);
        }
        let id = based_on.id.clone();
        let expected = based_on.clone();
        let row = (
            update.url,
            json(&update.events)?,
            update.plugin,
            update.plugin_config,
            update.description,
            json(&update.headers)?,
            json(&update.signature)?,
        );
        let secret = update
            .secret
            .map(|secret| self.sealer.seal(&id, &secret))
            .transpose()?;
        let grace = update.rotation_grace_ms;
        let sealer = self.sealer.clone();
        let now = self.clock.now_ms();
        let outcome = self
            .transaction(move |tx| {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM subscriptions WHERE id = ? AND deleted_at IS NULL"
                ))?;
                let Some(stored) =
                    all_rows(&mut stmt, [&id], |r| Subscription::from_row(r, &sealer))?.pop()
                else {
                    return Ok(None);
                };
                if !same_config(&stored, &expected) {
                    return Ok(Some(UpdateOutcome::Changed));
                }
                let (url, events, plugin, plugin_config, description, headers, signature) = row;
                tx.prepare_cached(
                    "UPDATE subscriptions SET url = ?, events = ?, plugin = ?, plugin_config = ?, description = ?,
                     headers = ?, signature = ?, updated_at = ? WHERE id = ?",
                )?
                .execute((
                    url, events, plugin, plugin_config, description, headers, signature, now, &id,
                ))?;
                if let Some(sealed) = secret {
                    super::rotation::rotate_in(tx, &id, sealed, grace, now)?;
                }
                // The row as written, from this transaction: a DELETE right after the commit
                // must not turn the answer into "vanished".
                let written =
                    all_rows(&mut stmt, [&id], |r| Subscription::from_row(r, &sealer))?.pop();
                Ok(written.map(|w| UpdateOutcome::Updated(Arc::new(w))))
            })
            .await?;
        self.refresh_subscription(&based_on.id).await?;
        Ok(outcome.unwrap_or(UpdateOutcome::NotFound))
    }

    /// Deletes a subscription (kept as a tombstone for its delivery history) and cancels its
    /// unfinished deliveries (pending or in flight). Returns whether it existed.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_subscription(&self, scope: &Scope, id: &str) -> Result<bool, StoreError> {
        let (id, key) = (id.to_owned(), id.to_owned());
        let tenant = scope.filter();
        let now = self.clock.now_ms();
        let deleted = self
            .transaction(move |tx| {
                let deleted = tx
                    .prepare_cached(
                        "UPDATE subscriptions SET deleted_at = ?1, updated_at = ?1 WHERE id = ?2 AND deleted_at IS NULL
                         AND (?3 IS NULL OR tenant_id = ?3)",
                    )?
                    .execute((now, &id, &tenant))?;
                if deleted == 0 {
                    return Ok(0);
                }
                // Leased ones too: their attempts may still reach the receiver, but their
                // results no longer count, and nothing of it is attempted again.
                for unfinished in CANCEL_UNFINISHED {
                    tx.prepare_cached(unfinished)?.execute((now, &id))?;
                }
                Ok(deleted)
            })
            .await?;
        self.refresh_subscription(&key).await?;
        Ok(deleted > 0)
    }

    /// Re-enables a subscription and forgets its failing streak. Its parked deliveries become
    /// runnable in the same transaction (see `migrations/0004_queue.sql`), and the dispatcher
    /// is woken for them.
    ///
    /// # Errors
    /// Database errors.
    pub async fn enable_subscription(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<Option<Arc<Subscription>>, StoreError> {
        let key = id.to_owned();
        let tenant = scope.filter();
        let now = self.clock.now_ms();
        let index = self.subscription_index();
        let changed = self
            .transaction(move |tx| {
                let before: Option<(String, String)> = tx
                    .prepare_cached(
                        "SELECT status, tenant_id FROM subscriptions WHERE id = ?1 AND deleted_at IS NULL
                         AND (?2 IS NULL OR tenant_id = ?2)",
                    )?
                    .query_row((&key, &tenant), |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let Some((status, tenant_id)) = before else {
                    return Ok(false);
                };
                tx.prepare_cached(
                    "UPDATE subscriptions SET status = 'enabled', disabled_reason = NULL, disabled_at = NULL,
                     first_failure_at = NULL, updated_at = ?1 WHERE id = ?2",
                )?
                .execute((now, &key))?;
                if status == "disabled" {
                    let data = serde_json::json!({"subscription_id": key});
                    operational::emit(
                        tx,
                        &index.lock(),
                        &tenant_id,
                        operational::SUBSCRIPTION_ENABLED,
                        &data,
                        None,
                        now,
                    )?;
                }
                Ok(true)
            })
            .await?;
        if !changed {
            return Ok(None);
        }
        // Deleted right after (a concurrent DELETE): not found, not "vanished".
        let sub = self.refresh_subscription(id).await?;
        self.waker.notify_one();
        Ok(sub)
    }

    /// Disables a subscription with a reason (410 Gone, or failing for too long). Its pending
    /// deliveries stay pending, parked: the dispatcher leases none of them until it is enabled
    /// (the queue row follows the status in the same transaction).
    ///
    /// # Errors
    /// Database errors.
    pub async fn disable_subscription(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        let (id, key, reason) = (id.to_owned(), id.to_owned(), reason.to_owned());
        let now = self.clock.now_ms();
        let index = self.subscription_index();
        let emitted = self
            .transaction(move |tx| {
                let changed = tx
                    .prepare_cached(
                        "UPDATE subscriptions SET status = 'disabled', disabled_reason = ?1, disabled_at = ?2, updated_at = ?2
                         WHERE id = ?3 AND status = 'enabled'",
                    )?
                    .execute((&reason, now, &id))?;
                if changed == 0 {
                    return Ok(false);
                }
                // Into the subscription's tenant, in the same transaction: one event per
                // disable, never without it. Not to the subscription itself (it is disabled).
                let Some((tenant, last_error)) = operational::subscription_context(tx, &id)? else {
                    return Ok(false);
                };
                let data = serde_json::json!({
                    "subscription_id": id,
                    "reason": reason,
                    "last_error": last_error,
                    "disabled_at": crate::api::models::Timestamp::from_unix_ms(now),
                });
                operational::emit(
                    tx,
                    &index.lock(),
                    &tenant,
                    operational::SUBSCRIPTION_DISABLED,
                    &data,
                    Some(&id),
                    now,
                )
            })
            .await?;
        if emitted {
            self.waker.notify_one();
        }
        self.refresh_subscription(&key).await.map(drop)
    }

    /// Whether any subscription (not deleted) uses `plugin`.
    pub fn plugin_in_use(&self, plugin: &str) -> bool {
        self.subscriptions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|s| s.plugin.as_deref() == Some(plugin))
    }

    /// Re-reads every subscription into memory. Done once, at open; changes after that
    /// update their own entry ([`Store::refresh_subscription`]).
    ///
    /// # Errors
    /// Database errors.
    pub async fn reload_subscriptions(&self) -> Result<(), StoreError> {
        // Read and swap on the writer's thread, which runs one unit of work at a time: two
        // updates of the copy cannot swap in their versions in the wrong order.
        let cache = self.subscriptions.clone();
        let index = self.index.clone();
        let sealer = self.sealer.clone();
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE deleted_at IS NULL ORDER BY id"
            ))?;
            let all = all_rows(&mut stmt, [], |r| {
                Subscription::from_row(r, &sealer).map(Arc::new)
            })?;
            *index.lock() = Index::new(&all);
            *cache.write().unwrap_or_else(PoisonError::into_inner) =
                all.into_iter().map(|s| (s.id.clone(), s)).collect();
            Ok(())
        })
        .await
    }

    /// Re-reads one subscription into the in-memory copy: inserted, replaced, or removed when
    /// it is deleted (or gone). Every other entry stays as it is, in place: a change costs one
    /// row, one map entry and its patterns in the index — not a re-read or a copy of every
    /// subscription (with 10,000, a copy of the list and the index per change was most of the
    /// writer's time while subscriptions were disabled). Returns the entry.
    ///
    /// # Errors
    /// Database errors.
    pub async fn refresh_subscription(
        &self,
        id: &str,
    ) -> Result<Option<Arc<Subscription>>, StoreError> {
        let (cache, id) = (self.subscriptions.clone(), id.to_owned());
        let index = self.index.clone();
        let sealer = self.sealer.clone();
        // On the writer's thread, like every other update of the copy (see above).
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE id = ? AND deleted_at IS NULL"
            ))?;
            let fresh = all_rows(&mut stmt, [&id], |r| {
                Subscription::from_row(r, &sealer).map(Arc::new)
            })?
            .pop();
            let mut all = cache.write().unwrap_or_else(PoisonError::into_inner);
            let mut routes = index.lock();
            let old = match &fresh {
                Some(sub) => all.insert(id, sub.clone()),
                None => all.remove(&id),
            };
            if let Some(old) = &old {
                routes.remove(old);
            }
            if let Some(sub) = &fresh {
                routes.insert(sub.clone());
            }
            Ok(fresh)
        })
        .await
    }

    async fn refresh_and_get(&self, id: &str) -> Result<Arc<Subscription>, StoreError> {
        self.refresh_subscription(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("subscription {id} vanished")))
    }

    /// Subscriptions whose failing streak started before `cutoff_ms`: to be disabled.
    ///
    /// # Errors
    /// Database errors.
    pub async fn failing_since_before(&self, cutoff_ms: i64) -> Result<Vec<String>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM subscriptions WHERE status = 'enabled' AND deleted_at IS NULL AND first_failure_at IS NOT NULL
                 AND first_failure_at <= ?",
            )?;
            all_rows(&mut stmt, [cutoff_ms], |r| Ok(r.get(0)?))
        })
        .await
    }
}

#[cfg(test)]
#[path = "subscriptions_tests.rs"]
mod tests;

#[cfg(test)]
mod update_tests {
    use super::*;

    fn update_of(sub: &Subscription, description: &str) -> SubscriptionUpdate {
        SubscriptionUpdate {
            url: sub.url.clone(),
            events: sub.events.clone(),
            plugin: sub.plugin.clone(),
            plugin_config: sub.plugin_config.clone(),
            description: Some(description.to_owned()),
            headers: sub.headers.clone(),
            signature: sub.signature.clone(),
            secret: None,
            rotation_grace_ms: 0,
        }
    }

    /// An update merged from a state that is no longer stored is refused, so the caller
    /// merges again instead of writing back stale fields.
    #[tokio::test]
    async fn an_update_from_a_stale_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let created = store
            .create_subscription(NewSubscription::to_url("http://127.0.0.1:9/", "*"))
            .await
            .unwrap();
        let stale = (*created).clone();
        let first = store
            .update_subscription(
                &crate::tenant::Scope::Any,
                &stale,
                update_of(&stale, "first"),
            )
            .await
            .unwrap();
        let UpdateOutcome::Updated(now) = first else {
            panic!("{first:?}")
        };
        assert_eq!(now.description.as_deref(), Some("first"));
        let second = store
            .update_subscription(
                &crate::tenant::Scope::Any,
                &stale,
                update_of(&stale, "second"),
            )
            .await
            .unwrap();
        assert!(matches!(second, UpdateOutcome::Changed), "{second:?}");
        let stored = store
            .subscription(&crate::tenant::Scope::Any, &stale.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.description.as_deref(), Some("first"));
        assert!(
            store
                .delete_subscription(&crate::tenant::Scope::Any, &stale.id)
                .await
                .unwrap()
        );
        let gone = store
            .update_subscription(&crate::tenant::Scope::Any, &now, update_of(&now, "third"))
            .await
            .unwrap();
        assert!(matches!(gone, UpdateOutcome::NotFound), "{gone:?}");
        store.close().await;
    }
}
