//! API keys beside the bootstrap admin key: `sy_<id>_<secret>`, shown once; only the SHA-256
//! of the whole key is stored. A request's key is looked up by its id on every request (no
//! cache), so a revoke or an expiry takes effect on the next request.

use rand::RngCore;

use super::{Store, StoreError, all_rows, new_id};
use crate::tenant::TenantId;

/// A key as stored (never the key itself).
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// `key_…`
    pub id: String,
    /// The tenant it acts in; `None`: any.
    pub tenant_id: Option<TenantId>,
    /// Hex SHA-256 of the key.
    pub hash: String,
    /// The key's public start, for people to recognise it.
    pub prefix: String,
    /// Its scopes, as written.
    pub scopes: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// Created (unix ms).
    pub created_at: i64,
    /// When it stops working (unix ms), if ever.
    pub expires_at: Option<i64>,
    /// When it was revoked (unix ms).
    pub revoked_at: Option<i64>,
    /// When it last authenticated (unix ms), to the minute (see `store::key_usage`).
    pub last_used_at: Option<i64>,
}

impl StoredKey {
    fn from_row(row: &rusqlite::Row<'_>) -> Result<Self, StoreError> {
        let scopes: String = row.get("scopes")?;
        Ok(Self {
            id: row.get("id")?,
            tenant_id: row
                .get::<_, Option<String>>("tenant_id")?
                .map(TenantId::from_stored),
            hash: row.get("hash")?,
            prefix: row.get("prefix")?,
            scopes: serde_json::from_str(&scopes)
                .map_err(|e| StoreError::Corrupt(format!("key scopes: {e}")))?,
            description: row.get("description")?,
            created_at: row.get("created_at")?,
            expires_at: row.get("expires_at")?,
            revoked_at: row.get("revoked_at")?,
            last_used_at: row.get("last_used_at")?,
        })
    }
}

/// A key to create.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The tenant it acts in (must exist); `None`: any.
    pub tenant_id: Option<TenantId>,
    /// Its scopes (validated by the caller).
    pub scopes: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// When it stops working (unix ms).
    pub expires_at: Option<i64>,
}

const COLUMNS: &str = "id, tenant_id, hash, prefix, scopes, description, created_at, expires_at, revoked_at, last_used_at";

/// The id part of a key `sy_key_<ulid>_<secret>`, if it has that shape.
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("sy_")?;
    let end = rest.match_indices('_').nth(1)?.0;
    let id = &rest[..end];
    id.starts_with("key_").then_some(id)
}

impl Store {
    /// Creates a key; returns it as stored and the key itself (the only time it exists
    /// outside the caller's hands). `None` when the tenant does not exist.
    ///
    /// # Errors
    /// Database errors.
    pub async fn create_key(&self, new: NewKey) -> Result<Option<(StoredKey, String)>, StoreError> {
        let id = new_id("key");
        let mut secret = [0u8; 24];
        rand::rng().fill_bytes(&mut secret);
        let key = format!("sy_{id}_{}", hex::encode(secret));
        let hash = crate::api::ApiKey::from_key(&key).to_hex();
        let prefix = format!("sy_{id}");
        let scopes = super::subscriptions::json(&new.scopes)?;
        let now = self.clock.now_ms();
        let tenant = new.tenant_id.as_ref().map(|t| t.as_str().to_owned());
        let row_id = id.clone();
        let stored = self
            .write(move |conn| {
                let created = conn
                    .prepare_cached(
                        "INSERT INTO api_keys (id, tenant_id, hash, prefix, scopes, description, created_at, expires_at)
                         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
                         WHERE ?2 IS NULL OR EXISTS (SELECT 1 FROM tenants WHERE id = ?2 AND deleted_at IS NULL)",
                    )?
                    .execute((
                        &row_id,
                        &tenant,
                        hash,
                        prefix,
                        scopes,
                        new.description,
                        now,
                        new.expires_at,
                    ))?;
                if created == 0 {
                    return Ok(None);
                }
                let mut stmt =
                    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?"))?;
                Ok(all_rows(&mut stmt, [&row_id], StoredKey::from_row)?.pop())
            })
            .await?;
        Ok(stored.map(|s| (s, key)))
    }

    /// A key by id, revoked or not (the caller checks), read fresh from the database.
    ///
    /// # Errors
    /// Database errors.
    pub async fn key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?"))?;
            Ok(all_rows(&mut stmt, [id], StoredKey::from_row)?.pop())
        })
        .await
    }

    /// A page of keys not revoked, by id, after `cursor`; of one tenant when `tenant` is
    /// given.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_keys(
        &self,
        tenant: Option<&TenantId>,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredKey>, StoreError> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        let cursor = cursor.unwrap_or("").to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM api_keys WHERE revoked_at IS NULL AND id > ?1
                 AND (?2 IS NULL OR tenant_id = ?2) ORDER BY id LIMIT ?3"
            ))?;
            all_rows(&mut stmt, (cursor, tenant, limit), StoredKey::from_row)
        })
        .await
    }

    /// Revokes a key at once. Returns whether it existed (and was not revoked yet).
    ///
    /// # Errors
    /// Database errors.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let now = self.clock.now_ms();
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
                )?
                .execute((now, id))?
                > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::key_id;

    #[test]
    fn key_ids() {
        assert_eq!(
            key_id("sy_key_01JF3Y9G8Q0V7ZC2M6T4N5B8KD_abcdef"),
            Some("key_01JF3Y9G8Q0V7ZC2M6T4N5B8KD")
        );
        assert_eq!(key_id("sy_key_x"), None);
        assert_eq!(key_id("sk_key_a_b"), None);
        assert_eq!(key_id("sy_sub_a_b"), None);
    }
}
