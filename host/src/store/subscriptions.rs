//! Subscriptions: CRUD, enable/disable, and the in-memory copy kept in step (secret
//! rotation is in `rotation`).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use super::{Store, StoreError, Subscription, all_rows, new_id, now_ms};
use crate::signing::Scheme;

/// A validated subscription to create.
#[derive(Debug, Clone)]
pub struct NewSubscription {
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
    a.url == b.url
        && a.events == b.events
        && a.plugin == b.plugin
        && a.plugin_config == b.plugin_config
        && a.description == b.description
        && a.headers == b.headers
        && a.signature == b.signature
        && a.secret == b.secret
}

const COLUMNS: &str = "id, url, events, plugin, plugin_config, description, headers, signature, secret, \
    previous_secrets, status, disabled_reason, disabled_at, created_at, updated_at";

pub(super) fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Creates a subscription.
    ///
    /// # Errors
    /// Database errors.
    pub async fn create_subscription(
        &self,
        new: NewSubscription,
    ) -> Result<Arc<Subscription>, StoreError> {
        let id = new_id("sub");
        let now = now_ms();
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
        );
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO subscriptions (id, url, events, plugin, plugin_config, description, headers, signature, secret,
                 created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            )?
            .execute(row)?;
            Ok(())
        })
        .await?;
        self.reload_and_get(&id).await
    }

    /// A subscription by id (not deleted).
    ///
    /// # Errors
    /// Database errors.
    pub async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        let id = id.to_owned();
        let sealer = self.sealer.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE id = ? AND deleted_at IS NULL"
            ))?;
            Ok(all_rows(&mut stmt, [id], |r| Subscription::from_row(r, &sealer))?.pop())
        })
        .await
    }

    /// A page of subscriptions in creation order, after `cursor`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_subscriptions(
        &self,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Subscription>, StoreError> {
        let cursor = cursor.unwrap_or("").to_owned();
        let sealer = self.sealer.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE deleted_at IS NULL AND id > ? ORDER BY id LIMIT ?"
            ))?;
            all_rows(&mut stmt, (cursor, limit), |r| Subscription::from_row(r, &sealer))
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
        based_on: &Subscription,
        update: SubscriptionUpdate,
    ) -> Result<UpdateOutcome, StoreError> {
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
                let now = now_ms();
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
        self.reload_subscriptions().await?;
        Ok(outcome.unwrap_or(UpdateOutcome::NotFound))
    }

    /// Deletes a subscription (kept as a tombstone for its delivery history) and cancels its
    /// pending deliveries. Returns whether it existed.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let deleted = self
            .transaction(move |tx| {
                let now = now_ms();
                let deleted = tx
                    .prepare_cached(
                        "UPDATE subscriptions SET deleted_at = ?1, updated_at = ?1 WHERE id = ?2 AND deleted_at IS NULL",
                    )?
                    .execute((now, &id))?;
                tx.prepare_cached(
                    "UPDATE deliveries SET status = 'cancelled', updated_at = ?1 WHERE subscription_id = ?2 AND status = 'pending'",
                )?
                .execute((now, &id))?;
                Ok(deleted)
            })
            .await?;
        self.reload_subscriptions().await?;
        Ok(deleted > 0)
    }

    /// Re-enables a subscription and forgets its failing streak.
    ///
    /// # Errors
    /// Database errors.
    pub async fn enable_subscription(
        &self,
        id: &str,
    ) -> Result<Option<Arc<Subscription>>, StoreError> {
        let key = id.to_owned();
        let changed = self
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE subscriptions SET status = 'enabled', disabled_reason = NULL, disabled_at = NULL,
                         first_failure_at = NULL, updated_at = ? WHERE id = ? AND deleted_at IS NULL",
                    )?
                    .execute((now_ms(), key))?)
            })
            .await?;
        if changed == 0 {
            return Ok(None);
        }
        // Deleted right after (a concurrent DELETE): not found, not "vanished".
        self.reload_subscriptions().await?;
        Ok(self.cached_subscription(id))
    }

    /// Disables a subscription with a reason (410 Gone, or failing for too long).
    ///
    /// # Errors
    /// Database errors.
    pub async fn disable_subscription(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        let (id, reason) = (id.to_owned(), reason.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE subscriptions SET status = 'disabled', disabled_reason = ?1, disabled_at = ?2, updated_at = ?2
                 WHERE id = ?3 AND status = 'enabled'",
            )?
            .execute((reason, now_ms(), id))?;
            Ok(())
        })
        .await?;
        self.reload_subscriptions().await
    }

    /// Whether any subscription (not deleted) uses `plugin`.
    pub fn plugin_in_use(&self, plugin: &str) -> bool {
        self.subscriptions()
            .iter()
            .any(|s| s.plugin.as_deref() == Some(plugin))
    }

    /// Re-reads every subscription into memory, sorted by id (byte order, which
    /// [`Store::cached_subscription`] relies on for its binary search).
    ///
    /// # Errors
    /// Database errors.
    pub async fn reload_subscriptions(&self) -> Result<(), StoreError> {
        // Read and swap on the writer's thread, which runs one unit of work at a time: two
        // reloads after two changes cannot swap in their copies in the wrong order.
        let cache = self.subscriptions.clone();
        let sealer = self.sealer.clone();
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE deleted_at IS NULL ORDER BY id"
            ))?;
            let all = all_rows(&mut stmt, [], |r| {
                Subscription::from_row(r, &sealer).map(Arc::new)
            })?;
            *cache.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(all);
            Ok(())
        })
        .await
    }

    async fn reload_and_get(&self, id: &str) -> Result<Arc<Subscription>, StoreError> {
        self.reload_subscriptions().await?;
        self.cached_subscription(id)
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
mod tests {
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
            .create_subscription(NewSubscription {
                url: "http://127.0.0.1:9/".into(),
                events: vec!["*".into()],
                plugin: None,
                plugin_config: None,
                description: None,
                headers: BTreeMap::new(),
                signature: Scheme::StandardWebhooks,
                secret: crate::signing::generate_secret(),
            })
            .await
            .unwrap();
        let stale = (*created).clone();
        let first = store
            .update_subscription(&stale, update_of(&stale, "first"))
            .await
            .unwrap();
        let UpdateOutcome::Updated(now) = first else {
            panic!("{first:?}")
        };
        assert_eq!(now.description.as_deref(), Some("first"));
        let second = store
            .update_subscription(&stale, update_of(&stale, "second"))
            .await
            .unwrap();
        assert!(matches!(second, UpdateOutcome::Changed), "{second:?}");
        let stored = store.subscription(&stale.id).await.unwrap().unwrap();
        assert_eq!(stored.description.as_deref(), Some("first"));
        assert!(store.delete_subscription(&stale.id).await.unwrap());
        let gone = store
            .update_subscription(&now, update_of(&now, "third"))
            .await
            .unwrap();
        assert!(matches!(gone, UpdateOutcome::NotFound), "{gone:?}");
        store.close().await;
    }
}
