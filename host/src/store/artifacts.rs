//! Digests of compiled plugin artefacts (see `plugins::Cache`): recorded when the service
//! writes an artefact, checked before it loads one.

use rusqlite::OptionalExtension;

use super::{Store, StoreError, json_list};

impl Store {
    /// The recorded sha256 of the artefact of `version` for `engine`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn artifact_digest(
        &self,
        version: &str,
        engine: &str,
    ) -> Result<Option<String>, StoreError> {
        let (version, engine) = (version.to_owned(), engine.to_owned());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT sha256 FROM plugin_artifacts WHERE version = ? AND engine = ?",
                )?
                .query_row((version, engine), |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// Records (or replaces) the sha256 of the artefact of `version` for `engine`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn set_artifact_digest(
        &self,
        version: &str,
        engine: &str,
        sha256: &str,
    ) -> Result<(), StoreError> {
        let (version, engine, sha256) = (version.to_owned(), engine.to_owned(), sha256.to_owned());
        let now = self.clock.now_ms();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO plugin_artifacts (version, engine, sha256, created_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (version, engine) DO UPDATE SET sha256 = excluded.sha256, created_at = excluded.created_at",
            )?
            .execute((version, engine, sha256, now))?;
            Ok(())
        })
        .await
    }

    /// Forgets every digest except those of `versions` for `engine`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn retain_artifact_digests(
        &self,
        engine: &str,
        versions: &[String],
    ) -> Result<(), StoreError> {
        let (engine, versions) = (engine.to_owned(), json_list(versions));
        self.write(move |conn| {
            conn.prepare_cached(
                "DELETE FROM plugin_artifacts
                 WHERE engine <> ?1 OR version NOT IN (SELECT value FROM json_each(?2))",
            )?
            .execute((engine, versions))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn digests_are_recorded_replaced_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        assert_eq!(store.artifact_digest("v1", "e").await.unwrap(), None);
        store.set_artifact_digest("v1", "e", "aa").await.unwrap();
        store.set_artifact_digest("v1", "e", "bb").await.unwrap();
        store.set_artifact_digest("v2", "e", "cc").await.unwrap();
        store.set_artifact_digest("v1", "old", "dd").await.unwrap();
        assert_eq!(
            store.artifact_digest("v1", "e").await.unwrap().as_deref(),
            Some("bb")
        );
        store
            .retain_artifact_digests("e", &["v1".to_owned()])
            .await
            .unwrap();
        assert_eq!(
            store.artifact_digest("v1", "e").await.unwrap().as_deref(),
            Some("bb")
        );
        assert_eq!(store.artifact_digest("v2", "e").await.unwrap(), None);
        assert_eq!(store.artifact_digest("v1", "old").await.unwrap(), None);
        store.close().await;
    }
}
