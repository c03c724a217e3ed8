//! When each API key was last used (`last_used_at` of `GET /v1/keys`), without a write per
//! request: a key that authenticates is noted in memory, and at most once per
//! [`LAST_USED_GRANULARITY`] per key the time is queued for the database. A background task
//! ([`Store::run_key_usage`]) writes what is queued, all keys in one bookkeeping transaction
//! on the writer, at most once per [`FLUSH_EVERY`]. The request never waits for it.
//!
//! So `last_used_at` is the time of a use at most a minute (plus one flush) older than the
//! key's latest use — enough to see which keys are alive and which to revoke — and a service
//! answering 10,000 requests a second with one key writes one row a minute for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use super::{Store, StoreError};

/// A key's `last_used_at` is written at most this often.
pub const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);
/// The queued times are written at most this often (one transaction for all keys).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The keys' uses not yet written, and when each key's time was last queued.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyUsage {
    state: Arc<Mutex<State>>,
    queued: Arc<Notify>,
}

#[derive(Debug, Default)]
struct State {
    /// Key id → when its time was last queued: uses within the granularity after it are not.
    /// Entries older than the granularity are dropped at each flush, so this holds only the
    /// keys used within the last minute.
    noted: HashMap<String, i64>,
    /// Key id → the time to write.
    pending: HashMap<String, i64>,
}

impl KeyUsage {
    /// Notes that key `id` authenticated at `now` (unix ms). Queues a write only when the
    /// key's time was not queued within the granularity.
    pub(super) fn used(&self, id: &str, now: i64) {
        let granularity = crate::clock::duration_ms(LAST_USED_GRANULARITY);
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state
                .noted
                .get(id)
                .is_some_and(|at| now < at.saturating_add(granularity))
            {
                return;
            }
            state.noted.insert(id.to_owned(), now);
            state.pending.insert(id.to_owned(), now);
        }
        self.queued.notify_one();
    }

    /// The queued times, taken; forgets the keys noted longer ago than the granularity.
    fn take(&self, now: i64) -> Vec<(String, i64)> {
        let since = now.saturating_sub(crate::clock::duration_ms(LAST_USED_GRANULARITY));
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.noted.retain(|_, at| *at > since);
        state.pending.drain().collect()
    }
}

impl Store {
    /// Notes that the issued key `id` authenticated now (memory only; see the module).
    pub fn key_used(&self, id: &str) {
        self.key_usage.used(id, self.clock.now_ms());
    }

    /// Writes the queued `last_used_at` times in one transaction; returns how many keys it
    /// wrote. A time never moves a key's `last_used_at` back.
    ///
    /// # Errors
    /// Database errors (the times taken are dropped: the key's next use after its minute
    /// queues a fresh one).
    pub async fn flush_key_usage(&self) -> Result<usize, StoreError> {
        let times = self.key_usage.take(self.clock.now_ms());
        if times.is_empty() {
            return Ok(0);
        }
        self.bookkeeping(move |tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?1) WHERE id = ?2",
            )?;
            let mut written = 0;
            for (id, at) in &times {
                written += stmt.execute((at, id))?;
            }
            Ok(written)
        })
        .await
    }

    /// Writes the keys' queued uses as they come, at most once per [`FLUSH_EVERY`], until the
    /// store closes.
    pub async fn run_key_usage(self) {
        loop {
            self.key_usage.queued.notified().await;
            match self.flush_key_usage().await {
                Ok(_) => {}
                Err(StoreError::Closed) => return,
                Err(e) => tracing::warn!(error = %e, "recording when keys were used failed"),
            }
            tokio::time::sleep(FLUSH_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::store::NewKey;

    /// A key used again within the granularity is not written again; a use after it is.
    #[tokio::test]
    async fn a_use_is_written_at_most_once_per_granularity() {
        let dir = tempfile::tempdir().unwrap();
        let manual = Clock::manual(1_700_000_000_000);
        let store = Store::open_with_clock(&dir.path().join("db.sqlite"), manual.clock())
            .await
            .unwrap();
        let (key, _) = store
            .create_key(NewKey {
                tenant_id: None,
                scopes: vec!["events:write".into()],
                description: None,
                expires_at: None,
            })
            .await
            .unwrap()
            .unwrap();
        let last_used = || async { store.key(&key.id).await.unwrap().unwrap().last_used_at };
        assert_eq!(last_used().await, None);
        assert_eq!(store.flush_key_usage().await.unwrap(), 0, "nothing queued");

        let first = manual.now_ms();
        store.key_used(&key.id);
        assert_eq!(last_used().await, None, "not written on the request's path");
        assert_eq!(store.flush_key_usage().await.unwrap(), 1);
        assert_eq!(last_used().await, Some(first));

        manual.advance(Duration::from_secs(59));
        for _ in 0..100 {
            store.key_used(&key.id);
        }
        assert_eq!(
            store.flush_key_usage().await.unwrap(),
            0,
            "within the minute"
        );
        assert_eq!(last_used().await, Some(first));

        manual.advance(Duration::from_secs(1));
        store.key_used(&key.id);
        store.key_used(&key.id);
        assert_eq!(store.flush_key_usage().await.unwrap(), 1);
        assert_eq!(last_used().await, Some(first + 60_000));
        store.close().await;
    }

    /// Only the keys used within the last minute are remembered.
    #[test]
    fn memory_holds_only_the_last_minutes_keys() {
        let usage = KeyUsage::default();
        for n in 0..1000 {
            usage.used(&format!("key_{n}"), 0);
        }
        assert_eq!(usage.take(0).len(), 1000);
        usage.used("key_late", 30_000);
        assert_eq!(usage.take(60_000).len(), 1);
        let state = usage.state.lock().unwrap();
        assert_eq!(state.noted.len(), 1, "{:?}", state.noted.keys());
        assert!(state.pending.is_empty());
    }
}
