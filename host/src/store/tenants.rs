//! Tenants: upsert, read, list, and delete (which deletes the tenant's subscriptions, cancels
//! their unfinished deliveries and revokes its keys in one transaction; its history stays until
//! retention removes it).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::{Store, StoreError, all_rows};
use crate::tenant::TenantId;

/// The ids of the tenants that exist (not deleted), in memory: ingest checks every event's
/// tenant here instead of a query per tenant per batch (with 10,000 tenants, nearly one per
/// event). Read and changed only on the writer's thread — ingest's batches, and the commits of
/// tenant upserts and deletes — so it is exactly the committed state each batch sees: an event
/// for a tenant whose delete has committed is refused by the next batch.
#[derive(Debug, Clone, Default)]
pub(super) struct LiveTenants(Arc<Mutex<HashSet<String>>>);

impl LiveTenants {
    /// Fills the set from the database (on the writer's connection, at open).
    pub(super) fn load(&self, conn: &Connection) -> Result<(), StoreError> {
        let mut stmt = conn.prepare("SELECT id FROM tenants WHERE deleted_at IS NULL")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<HashSet<_>, _>>()?;
        *self.lock() = ids;
        Ok(())
    }

    /// The set, for one batch's look-ups (nothing else waits for it: see above).
    pub(super) fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A tenant as stored.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// A display name.
    pub name: Option<String>,
    /// The provider's own data about it, a JSON object as text.
    pub metadata: String,
    /// Created (unix ms).
    pub created_at: i64,
    /// Last changed (unix ms).
    pub updated_at: i64,
}

impl Tenant {
    fn from_row(row: &rusqlite::Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            id: TenantId::from_stored(row.get("id")?),
            name: row.get("name")?,
            metadata: row.get("metadata")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }
}

const COLUMNS: &str = "id, name, metadata, created_at, updated_at";

/// What [`Store::delete_tenant`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantDeleted {
    /// Deleted.
    Deleted,
    /// There is no such tenant.
    NotFound,
    /// The `default` tenant cannot be deleted.
    Default,
}

impl Store {
    /// Creates the tenant, or changes its name and metadata (a deleted tenant comes back,
    /// empty). Returns it and whether it was created.
    ///
    /// # Errors
    /// Database errors.
    pub async fn put_tenant(
        &self,
        id: &TenantId,
        name: Option<String>,
        metadata: String,
    ) -> Result<(Tenant, bool), StoreError> {
        let id = id.as_str().to_owned();
        let now = self.clock.now_ms();
        let tenants = self.tenants.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let live: Option<bool> = tx
                .prepare_cached("SELECT deleted_at IS NULL FROM tenants WHERE id = ?")?
                .query_row([&id], |r| r.get(0))
                .optional()?;
            let created = live != Some(true);
            tx.prepare_cached(
                "INSERT INTO tenants (id, name, metadata, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (id) DO UPDATE SET name = ?2, metadata = ?3, updated_at = ?4,
                 created_at = CASE WHEN deleted_at IS NULL THEN created_at ELSE ?4 END, deleted_at = NULL",
            )?
            .execute((&id, name, metadata, now))?;
            let mut stmt = tx.prepare_cached(&format!("SELECT {COLUMNS} FROM tenants WHERE id = ?"))?;
            let tenant = all_rows(&mut stmt, [&id], Tenant::from_row)?
                .pop()
                .ok_or_else(|| StoreError::Corrupt(format!("tenant {id} vanished")))?;
            drop(stmt);
            tx.commit()?;
            tenants.lock().insert(id);
            Ok((tenant, created))
        })
        .await
    }

    /// A tenant (not deleted).
    ///
    /// # Errors
    /// Database errors.
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tenants WHERE id = ? AND deleted_at IS NULL"
            ))?;
            Ok(all_rows(&mut stmt, [id], Tenant::from_row)?.pop())
        })
        .await
    }

    /// A page of tenants by id, after `cursor`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_tenants(
        &self,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Tenant>, StoreError> {
        let cursor = cursor.unwrap_or("").to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tenants WHERE deleted_at IS NULL AND id > ? ORDER BY id LIMIT ?"
            ))?;
            all_rows(&mut stmt, (cursor, limit), Tenant::from_row)
        })
        .await
    }

    /// Deletes a tenant: its subscriptions are deleted (tombstones, like
    /// [`Store::delete_subscription`]), their pending and in-flight deliveries cancelled, its
    /// keys revoked — all in one transaction, so nothing of it is delivered or accepted after.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_tenant(&self, id: &TenantId) -> Result<TenantDeleted, StoreError> {
        if id.is_default() {
            return Ok(TenantDeleted::Default);
        }
        let id = id.as_str().to_owned();
        let now = self.clock.now_ms();
        let tenants = self.tenants.clone();
        let deleted = self
            .write(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let deleted = tx
                    .prepare_cached(
                        "UPDATE tenants SET deleted_at = ?1, updated_at = ?1 WHERE id = ?2 AND deleted_at IS NULL",
                    )?
                    .execute((now, &id))?;
                if deleted == 0 {
                    return Ok(false);
                }
                tx.prepare_cached(
                    "UPDATE subscriptions SET deleted_at = ?1, updated_at = ?1 WHERE tenant_id = ?2 AND deleted_at IS NULL",
                )?
                .execute((now, &id))?;
                tx.prepare_cached(
                    "UPDATE deliveries SET status = 'cancelled', lease_until = NULL, updated_at = ?1
                     WHERE tenant_id = ?2 AND status IN ('pending', 'delivering')",
                )?
                .execute((now, &id))?;
                tx.prepare_cached(
                    "UPDATE api_keys SET revoked_at = ?1 WHERE tenant_id = ?2 AND revoked_at IS NULL",
                )?
                .execute((now, &id))?;
                tx.commit()?;
                // After the commit, on the writer's thread: the next ingest batch refuses it.
                tenants.lock().remove(&id);
                Ok(true)
            })
            .await?;
        if !deleted {
            return Ok(TenantDeleted::NotFound);
        }
        self.reload_subscriptions().await?;
        Ok(TenantDeleted::Deleted)
    }
}

#[cfg(test)]
#[path = "tenants_tests.rs"]
mod tests;
