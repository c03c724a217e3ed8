//! Small persistent settings: the hash of the generated admin key.

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// A stored setting.
    ///
    /// # Errors
    /// Database errors.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(self.reader())
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Stores a setting unless it exists; returns whether it was stored.
    ///
    /// # Errors
    /// Database errors.
    pub async fn set_setting_once(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
