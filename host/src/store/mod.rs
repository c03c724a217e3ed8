//! Durable state in SQLite (WAL, `synchronous = FULL`, foreign keys on, a busy timeout):
//! subscriptions, events, deliveries (the queue) and attempts. Writes on the hot paths are
//! batched — ingest through a group-commit writer, attempt results through a batching
//! recorder — because with sqlx a statement, not a row, is the unit of cost. Multi-row
//! statements vary in shape with the batch size, so they are not kept in the prepared-statement
//! cache (each cached shape holds memory proportional to its row count).

mod deliveries;
mod events;
mod models;
mod settings;
mod subscriptions;

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use deliveries::{Completion, DeliveryFilter, Leased, SubscriptionEffect};
pub use events::{IngestOutcome, Ingestor, NewEvent};
pub use models::{Attempt, Delivery, DeliveryStatus, Event, Subscription, SubscriptionStatus};
pub use subscriptions::{NewSubscription, SubscriptionPatch};

/// A store failure that is not the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value did not parse (a bug or a hand-edited database).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A shared batch failed to commit (the message of the underlying error).
    #[error("database error: {0}")]
    Batch(String),
    /// The writer task is gone (shutting down).
    #[error("the store is shutting down")]
    Closed,
}

/// Handle to the database and the in-memory copy of the subscriptions (read on every ingest
/// and every delivery, changed rarely). Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The one connection that writes: SQLite allows one writer at a time, and queueing
    /// writers here (fairly, in-process) beats SQLite's sleep-and-retry busy handler.
    writer: SqlitePool,
    /// Connections for reads, which WAL runs alongside the writer.
    reader: SqlitePool,
    subscriptions: Arc<RwLock<Arc<Vec<Arc<Subscription>>>>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .statement_cache_capacity(64);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(2)
            .min_connections(1)
            .connect_with(options)
            .await?;
        let store = Self {
            writer,
            reader,
            subscriptions: Arc::new(RwLock::new(Arc::new(Vec::new()))),
        };
        store.reload_subscriptions().await?;
        Ok(store)
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// The writing connection: every statement that changes something goes here.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The reading connections.
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// A write transaction that takes the write lock up front (`BEGIN IMMEDIATE`): a deferred
    /// one that reads first cannot wait for the lock when upgrading and fails with "database
    /// is locked" as soon as another writer committed in between.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The current subscriptions (not deleted), from memory.
    pub fn subscriptions(&self) -> Arc<Vec<Arc<Subscription>>> {
        self.subscriptions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One current subscription, from memory.
    pub fn cached_subscription(&self, id: &str) -> Option<Arc<Subscription>> {
        // Sorted by id (see `reload_subscriptions`): a lookup per delivery stays O(log n).
        let all = self.subscriptions();
        all.binary_search_by(|s| s.id.as_str().cmp(id))
            .ok()
            .map(|i| all[i].clone())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc()
        .unix_timestamp_nanos()
        .div_euclid(1_000_000) as i64
}

/// A new id: `prefix` + `_` + a ULID (sortable by creation time).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new())
}
