//! Secret rotation: every rotated-out secret keeps signing until its own grace ends (the
//! newest [`MAX_PREVIOUS_SECRETS`]), and secrets past their grace are removed from the
//! database (reads already leave them out).

use rusqlite::OptionalExtension;

use super::models::{MAX_PREVIOUS_SECRETS, StoredSecret};
use super::subscriptions::json;
use super::{Store, StoreError, all_rows};
use crate::tenant::Scope;

impl Store {
    /// Replaces the secret; the old one keeps signing until `grace_ms` from now, and so do
    /// earlier ones still inside their grace (the newest [`MAX_PREVIOUS_SECRETS`]).
    ///
    /// # Errors
    /// Database errors.
    pub async fn rotate_secret(
        &self,
        scope: &Scope,
        id: &str,
        secret: &str,
        grace_ms: i64,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let tenant = scope.filter();
        let sealed = self.sealer.seal(&id, secret)?;
        let now = self.clock.now_ms();
        let key = id.clone();
        let changed = self
            .transaction(move |tx| {
                if !super::subscriptions::in_scope(tx, &id, tenant.as_deref())? {
                    return Ok(false);
                }
                rotate_in(tx, &id, sealed, grace_ms, now)
            })
            .await?;
        self.refresh_subscription(&key).await?;
        Ok(changed)
    }

    /// Removes rotated-out secrets whose grace has ended from the database (reads already
    /// leave them out). Returns how many subscriptions changed.
    ///
    /// # Errors
    /// Database errors.
    pub async fn clear_expired_secrets(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let cleared = self
            .transaction(move |tx| {
                let rows: Vec<(String, String)> = {
                    let mut stmt = tx.prepare_cached(
                        "SELECT id, previous_secrets FROM subscriptions WHERE previous_secrets != '[]'",
                    )?;
                    all_rows(&mut stmt, [], |r| Ok((r.get(0)?, r.get(1)?)))?
                };
                let mut update = tx.prepare_cached(
                    "UPDATE subscriptions SET previous_secrets = ? WHERE id = ?",
                )?;
                let mut cleared = 0;
                for (id, previous) in rows {
                    let all = parse_previous(&id, &previous)?;
                    let count = all.len();
                    let live: Vec<StoredSecret> =
                        all.into_iter().filter(|p| p.expires_at > now).collect();
                    if live.len() < count {
                        update.execute((json(&live)?, &id))?;
                        cleared += 1;
                    }
                }
                Ok(cleared)
            })
            .await?;
        if cleared > 0 {
            self.reload_subscriptions().await?;
        }
        Ok(cleared)
    }
}

/// Inside a write transaction: makes `sealed` the current secret of `id`, keeping the old one
/// (until `grace_ms` from `now`) and earlier ones still inside their grace. Whether `id` exists.
pub(super) fn rotate_in(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    sealed: String,
    grace_ms: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let current: Option<(String, String)> = tx
        .prepare_cached(
            "SELECT secret, previous_secrets FROM subscriptions WHERE id = ? AND deleted_at IS NULL",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((old, previous)) = current else {
        return Ok(false);
    };
    let mut kept = vec![StoredSecret {
        secret: old,
        expires_at: now.saturating_add(grace_ms),
    }];
    kept.extend(
        parse_previous(id, &previous)?
            .into_iter()
            .filter(|p| p.expires_at > now),
    );
    kept.truncate(MAX_PREVIOUS_SECRETS);
    tx.prepare_cached(
        "UPDATE subscriptions SET secret = ?1, previous_secrets = ?2, updated_at = ?3 WHERE id = ?4",
    )?
    .execute((sealed, json(&kept)?, now, id))?;
    Ok(true)
}

fn parse_previous(id: &str, text: &str) -> Result<Vec<StoredSecret>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("subscription {id} previous_secrets: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    use super::*;
    use crate::signing::Scheme;
    use crate::store::NewSubscription;

    fn new_subscription(secret: &str) -> NewSubscription {
        NewSubscription {
            signature: Scheme::StandardWebhooks,
            secret: secret.into(),
            ..NewSubscription::to_url("https://example.com/hook", "*")
        }
    }

    fn stored_previous(path: &std::path::Path, id: &str) -> Vec<StoredSecret> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let text: String = conn
            .query_row(
                "SELECT previous_secrets FROM subscriptions WHERE id = ?",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[tokio::test]
    async fn rotations_inside_the_grace_keep_every_earlier_secret_up_to_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let sub = store
            .create_subscription(new_subscription("s0"))
            .await
            .unwrap();
        let day = 24 * 3600 * 1000;
        for n in 1..=5 {
            assert!(
                store
                    .rotate_secret(&crate::tenant::Scope::Any, &sub.id, &format!("s{n}"), day)
                    .await
                    .unwrap()
            );
        }
        let sub = store
            .subscription(&crate::tenant::Scope::Any, &sub.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sub.secret, "s5");
        let previous: Vec<&str> = sub
            .previous_secrets
            .iter()
            .map(|(s, _)| s.as_str())
            .collect();
        assert_eq!(previous, ["s4", "s3", "s2"], "newest first, bounded");
        assert_eq!(
            sub.signing_secrets(store.clock().now_ms()),
            ["s5", "s4", "s3", "s2"],
            "every secret inside its grace signs"
        );
        assert!(
            !store
                .rotate_secret(&crate::tenant::Scope::Any, "sub_missing", "x", day)
                .await
                .unwrap()
        );
        store.close().await;
    }

    /// The keys made when the row is read sign exactly as the secrets do, and leave out a
    /// rotated-out secret once its grace ends, as the secrets' list does.
    #[tokio::test]
    async fn prepared_keys_sign_as_the_secrets_do_and_follow_their_grace() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let first = crate::signing::generate_secret();
        let sub = store
            .create_subscription(new_subscription(&first))
            .await
            .unwrap();
        let (hour, day) = (3600 * 1000, 24 * 3600 * 1000);
        let any = crate::tenant::Scope::Any;
        let second = crate::signing::generate_secret();
        assert!(
            store
                .rotate_secret(&any, &sub.id, &second, hour)
                .await
                .unwrap()
        );
        let third = crate::signing::generate_secret();
        assert!(
            store
                .rotate_secret(&any, &sub.id, &third, day)
                .await
                .unwrap()
        );
        let sub = store.cached_subscription(&sub.id).unwrap();
        let now = store.clock().now_ms();
        for (at, signatures) in [(now, 3), (now + 2 * hour, 2), (now + 2 * day, 1)] {
            let with_keys = sub
                .signature
                .sign_with(&sub.signing_keys(at), "evt_1", 7, b"{}")
                .unwrap();
            let with_secrets = sub
                .signature
                .sign(&sub.signing_secrets(at), "evt_1", 7, b"{}")
                .unwrap();
            assert_eq!(with_keys, with_secrets, "at +{} ms", at - now);
            let (_, signature) = with_keys
                .iter()
                .find(|(name, _)| name == "webhook-signature")
                .unwrap();
            assert_eq!(
                signature.split(' ').count(),
                signatures,
                "at +{} ms",
                at - now
            );
        }
        store.close().await;
    }

    #[tokio::test]
    async fn expired_previous_secrets_are_left_out_on_read_and_cleared_by_the_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = Store::open(&path).await.unwrap();
        let sub = store
            .create_subscription(new_subscription("s0"))
            .await
            .unwrap();
        let day = 24 * 3600 * 1000;
        store
            .rotate_secret(&crate::tenant::Scope::Any, &sub.id, "s1", day)
            .await
            .unwrap();
        // A grace that ended at once: `s1` is out on the next read.
        store
            .rotate_secret(&crate::tenant::Scope::Any, &sub.id, "s2", -1)
            .await
            .unwrap();
        let read = store
            .subscription(&crate::tenant::Scope::Any, &sub.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            read.previous_secrets
                .iter()
                .map(|(s, _)| s.as_str())
                .collect::<Vec<_>>(),
            ["s0"]
        );
        assert_eq!(
            store
                .cached_subscription(&sub.id)
                .unwrap()
                .signing_secrets(store.clock().now_ms()),
            ["s2", "s0"]
        );
        assert_eq!(stored_previous(&path, &sub.id).len(), 2, "still on disk");
        assert_eq!(store.clear_expired_secrets().await.unwrap(), 1);
        assert_eq!(stored_previous(&path, &sub.id).len(), 1);
        assert_eq!(store.clear_expired_secrets().await.unwrap(), 0);
        store.close().await;
    }
}
