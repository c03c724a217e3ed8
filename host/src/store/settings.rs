//! Small persistent settings: the hash of the generated admin key.

use rusqlite::OptionalExtension;

use super::{Store, StoreError};

impl Store {
    /// A stored setting.
    ///
    /// # Errors
    /// Database errors.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM settings WHERE key = ?")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// Stores a setting unless it exists; returns whether it was stored.
    ///
    /// # Errors
    /// Database errors.
    pub async fn set_setting_once(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| {
            let stored = conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, value),
            )?;
            Ok(stored > 0)
        })
        .await
    }
}
