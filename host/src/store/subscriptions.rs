//! Subscriptions: CRUD, rotation, enable/disable, and the in-memory copy kept in step.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use super::{Store, StoreError, Subscription, all_rows, new_id};
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

/// A validated change; `None` leaves a field as it is, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionPatch {
    /// New URL.
    pub url: Option<String>,
    /// New patterns.
    pub events: Option<Vec<String>>,
    /// New plugin (or none).
    pub plugin: Option<Option<String>>,
    /// New plugin config (or none).
    pub plugin_config: Option<Option<String>>,
    /// New description (or none).
    pub description: Option<Option<String>>,
    /// New headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// New signing scheme.
    pub signature: Option<Scheme>,
}

const COLUMNS: &str = "id, url, events, plugin, plugin_config, description, headers, signature, secret, \
    previous_secret, previous_secret_expires_at, status, disabled_reason, disabled_at, created_at, updated_at";

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
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
            new.secret,
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
        self.refresh_and_get(&id).await
    }

    /// A subscription by id (not deleted).
    ///
    /// # Errors
    /// Database errors.
    pub async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE id = ? AND deleted_at IS NULL"
            ))?;
            Ok(all_rows(&mut stmt, [id], Subscription::from_row)?.pop())
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
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE deleted_at IS NULL AND id > ? ORDER BY id LIMIT ?"
            ))?;
            all_rows(&mut stmt, (cursor, limit), Subscription::from_row)
        })
        .await
    }

    /// Applies a patch; `None` when there is no such subscription.
    ///
    /// # Errors
    /// Database errors.
    pub async fn update_subscription(
        &self,
        id: &str,
        patch: SubscriptionPatch,
    ) -> Result<Option<Arc<Subscription>>, StoreError> {
        let Some(mut sub) = self.subscription(id).await? else {
            return Ok(None);
        };
        if let Some(url) = patch.url {
            sub.url = url;
        }
        if let Some(events) = patch.events {
            sub.events = events;
        }
        if let Some(plugin) = patch.plugin {
            sub.plugin = plugin;
        }
        if let Some(config) = patch.plugin_config {
            sub.plugin_config = config;
        }
        if let Some(description) = patch.description {
            sub.description = description;
        }
        if let Some(headers) = patch.headers {
            sub.headers = headers;
        }
        if let Some(signature) = patch.signature {
            sub.signature = signature;
        }
        let row = (
            sub.url,
            json(&sub.events)?,
            sub.plugin,
            sub.plugin_config,
            sub.description,
            json(&sub.headers)?,
            json(&sub.signature)?,
            self.clock.now_ms(),
            id.to_owned(),
        );
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE subscriptions SET url = ?, events = ?, plugin = ?, plugin_config = ?, description = ?, headers = ?,
                 signature = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL",
            )?
            .execute(row)?;
            Ok(())
        })
        .await?;
        self.refresh_and_get(id).await.map(Some)
    }

    /// Deletes a subscription (kept as a tombstone for its delivery history) and cancels its
    /// unfinished deliveries (pending or in flight). Returns whether it existed.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        let (id, key) = (id.to_owned(), id.to_owned());
        let now = self.clock.now_ms();
        let deleted = self
            .transaction(move |tx| {
                let deleted = tx
                    .prepare_cached(
                        "UPDATE subscriptions SET deleted_at = ?1, updated_at = ?1 WHERE id = ?2 AND deleted_at IS NULL",
                    )?
                    .execute((now, &id))?;
                // Leased ones too: their attempts may still reach the receiver, but their
                // results no longer count, and nothing of it is attempted again.
                tx.prepare_cached(
                    "UPDATE deliveries SET status = 'cancelled', lease_until = NULL, updated_at = ?1
                     WHERE subscription_id = ?2 AND status IN ('pending', 'delivering')",
                )?
                .execute((now, &id))?;
                Ok(deleted)
            })
            .await?;
        self.refresh_subscription(&key).await?;
        Ok(deleted > 0)
    }

    /// Replaces the secret; the old one keeps signing until `grace_ms` from now.
    ///
    /// # Errors
    /// Database errors.
    pub async fn rotate_secret(
        &self,
        id: &str,
        secret: &str,
        grace_ms: i64,
    ) -> Result<bool, StoreError> {
        let (id, key, secret) = (id.to_owned(), id.to_owned(), secret.to_owned());
        let now = self.clock.now_ms();
        let changed = self
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE subscriptions SET previous_secret = secret, previous_secret_expires_at = ?1, secret = ?2,
                         updated_at = ?3 WHERE id = ?4 AND deleted_at IS NULL",
                    )?
                    .execute((now.saturating_add(grace_ms), secret, now, id))?)
            })
            .await?;
        self.refresh_subscription(&key).await?;
        Ok(changed > 0)
    }

    /// Re-enables a subscription and forgets its failing streak. Its parked deliveries become
    /// runnable in the same transaction (see `migrations/0003_queue.sql`), and the dispatcher
    /// is woken for them.
    ///
    /// # Errors
    /// Database errors.
    pub async fn enable_subscription(
        &self,
        id: &str,
    ) -> Result<Option<Arc<Subscription>>, StoreError> {
        let key = id.to_owned();
        let now = self.clock.now_ms();
        let changed = self
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE subscriptions SET status = 'enabled', disabled_reason = NULL, disabled_at = NULL,
                         first_failure_at = NULL, updated_at = ? WHERE id = ? AND deleted_at IS NULL",
                    )?
                    .execute((now, key))?)
            })
            .await?;
        if changed == 0 {
            return Ok(None);
        }
        let sub = self.refresh_and_get(id).await?;
        self.waker.notify_one();
        Ok(Some(sub))
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
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE subscriptions SET status = 'disabled', disabled_reason = ?1, disabled_at = ?2, updated_at = ?2
                 WHERE id = ?3 AND status = 'enabled'",
            )?
            .execute((reason, now, id))?;
            Ok(())
        })
        .await?;
        self.refresh_subscription(&key).await.map(drop)
    }

    /// Whether any subscription (not deleted) uses `plugin`.
    pub fn plugin_in_use(&self, plugin: &str) -> bool {
        self.subscriptions()
            .iter()
            .any(|s| s.plugin.as_deref() == Some(plugin))
    }

    /// Re-reads every subscription into memory, sorted by id (byte order, which
    /// [`Store::cached_subscription`] relies on for its binary search). Done once, at open;
    /// changes after that update their own entry ([`Store::refresh_subscription`]).
    ///
    /// # Errors
    /// Database errors.
    pub async fn reload_subscriptions(&self) -> Result<(), StoreError> {
        // Read and swap on the writer's thread, which runs one unit of work at a time: two
        // updates of the copy cannot swap in their versions in the wrong order.
        let cache = self.subscriptions.clone();
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE deleted_at IS NULL ORDER BY id"
            ))?;
            let all = all_rows(&mut stmt, [], |r| Subscription::from_row(r).map(Arc::new))?;
            *cache.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(all);
            Ok(())
        })
        .await
    }

    /// Re-reads one subscription into the in-memory copy: inserted, replaced, or removed when
    /// it is deleted (or gone). Every other entry stays as it is, so a change costs one row and
    /// a copy of the list of pointers, not a re-read of every subscription. Returns the entry.
    ///
    /// # Errors
    /// Database errors.
    pub async fn refresh_subscription(
        &self,
        id: &str,
    ) -> Result<Option<Arc<Subscription>>, StoreError> {
        let (cache, id) = (self.subscriptions.clone(), id.to_owned());
        // On the writer's thread, like every other update of the copy (see above).
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM subscriptions WHERE id = ? AND deleted_at IS NULL"
            ))?;
            let fresh = all_rows(&mut stmt, [&id], |r| {
                Subscription::from_row(r).map(Arc::new)
            })?
            .pop();
            let current = cache.read().unwrap_or_else(PoisonError::into_inner).clone();
            let mut all: Vec<Arc<Subscription>> = current.as_ref().clone();
            match (all.binary_search_by(|s| s.id.as_str().cmp(&id)), &fresh) {
                (Ok(i), Some(sub)) => all[i] = sub.clone(),
                (Ok(i), None) => {
                    all.remove(i);
                }
                (Err(i), Some(sub)) => all.insert(i, sub.clone()),
                (Err(_), None) => return Ok(None),
            }
            *cache.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(all);
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
