//! Durable state in SQLite (WAL, `synchronous = FULL`, foreign keys on, a busy timeout):
//! subscriptions, events, deliveries (the queue) and attempts.
//!
//! Each connection lives on its own thread ([`tokio_rusqlite`]); a caller hands it a closure
//! that runs a whole unit of work — often a transaction of several statements — and awaits the
//! result. The thread hop, not the statement, is the unit of cost, so the hot paths are batched:
//! ingest through a group-commit writer, attempt results through a batching recorder, leases
//! together with their events. Statements have fixed shapes (lists are bound as one JSON array
//! and expanded with `json_each`), so every one stays in the prepared-statement cache.

mod artifacts;
mod attempts;
mod deliveries;
mod error;
mod events;
mod handoff;
mod health;
mod key_usage;
mod keys;
mod lane;
pub mod matching;
mod models;
pub mod operational;
mod queue;
mod results;
mod retention;
mod rotation;
mod secrets;
mod settings;
mod subscriptions;
mod tenants;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::Notify;

use crate::clock::Clock;
use lane::Lane;

pub use attempts::{FeedAttempt, FeedFilter};
pub use deliveries::DeliveryFilter;
pub use error::StoreError;
pub use events::{IngestOutcome, Ingestor, NewEvent};
pub use handoff::Handoff;
pub use key_usage::{FLUSH_EVERY, LAST_USED_GRANULARITY};
pub use keys::{NewKey, StoredKey, key_id};
pub use models::{Attempt, Delivery, DeliveryStatus, Event, Subscription, SubscriptionStatus};
pub use queue::{LeaseBatch, LeaseRef, LeaseRequest, Leased};
pub use results::{Completion, Recorded, SubscriptionEffect};
pub use retention::{Purged, RetentionPolicy};
pub use secrets::{KeySource, SecretKey};
pub use subscriptions::{NewSubscription, SubscriptionUpdate, UpdateOutcome};
pub use tenants::{Tenant, TenantDeleted};

/// Connections that only read (API lookups and lists), alongside the one writer.
const READERS: usize = 2;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;
/// The schema, applied once to a new database (`PRAGMA user_version` says which is applied).
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_plugin_artifacts.sql"),
    include_str!("../../migrations/0003_secrets.sql"),
    include_str!("../../migrations/0004_queue.sql"),
    include_str!("../../migrations/0005_tenants.sql"),
    include_str!("../../migrations/0006_retention.sql"),
    include_str!("../../migrations/0007_cheaper_delivery_writes.sql"),
];

/// Handle to the database and the in-memory copy of the subscriptions (read on every ingest
/// and every delivery, changed rarely). Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The one connection that writes: SQLite allows one writer at a time, and queueing
    /// writers here (fairly, in-process) beats SQLite's sleep-and-retry busy handler.
    writer: Lane,
    /// Connections for reads, which WAL runs alongside the writer; used in turn.
    readers: Arc<[Lane]>,
    next_reader: Arc<AtomicUsize>,
    /// The subscriptions by id, changed in place on the writer's thread (one entry per
    /// change, not a copy of all of them) and read under the lock by anyone.
    subscriptions: Arc<RwLock<HashMap<String, Arc<Subscription>>>>,
    /// The same subscriptions by tenant and pattern, for ingest and operational events (read
    /// and changed in place, on the writer's thread: see [`matching::SharedIndex`]).
    index: matching::SharedIndex<Subscription>,
    /// The tenants that exist, for ingest (changed on the writer's thread).
    tenants: tenants::LiveTenants,
    /// Keys' uses not yet written to `last_used_at`.
    key_usage: key_usage::KeyUsage,
    /// Every time the store writes (event and delivery times, leases, grace periods).
    clock: Clock,
    /// Notified when deliveries may have become due outside ingest (a subscription enabled).
    waker: Arc<Notify>,
    /// Encrypts and decrypts subscription secrets.
    sealer: secrets::Sealer,
    /// The database file as opened, to notice it being deleted or replaced.
    file: Arc<health::DatabaseFile>,
    health: Arc<health::Probe>,
    /// The writer's `synchronous` setting as [`Commit::code`] last set it (0: not yet).
    writer_sync: Arc<std::sync::atomic::AtomicU8>,
    /// The dispatcher, once it runs: ingest hands it fresh deliveries already leased.
    handoff: Arc<RwLock<Option<Arc<dyn Handoff>>>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies migrations, on the
    /// system clock; the key of the subscription secrets is `secrets.key` beside it
    /// (generated for a new database).
    ///
    /// # Errors
    /// When the file cannot be opened or migrated, or the key is wrong.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_clock(path, Clock::system()).await
    }

    /// [`Store::open`] with the clock every stored time is read from.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated, or the key is wrong.
    pub async fn open_with_clock(path: &Path, clock: Clock) -> Result<Self, StoreError> {
        let key_file = path
            .parent()
            .map_or_else(|| PathBuf::from("secrets.key"), |d| d.join("secrets.key"));
        Self::open_with(path, KeySource::File(key_file), clock).await
    }

    /// [`Store::open`] with the secrets key from `key` and the clock every stored time is read
    /// from. Plain-text secrets (a database from before encryption) are encrypted in place,
    /// leaving no copy in the file.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated, or the key is missing or wrong.
    pub async fn open_with(path: &Path, key: KeySource, clock: Clock) -> Result<Self, StoreError> {
        let writer = tokio_rusqlite::Connection::open(path).await?;
        let tenants = tenants::LiveTenants::default();
        let live = tenants.clone();
        let sealer = writer
            .call(move |conn| {
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| {
                    r.get::<_, String>(0)
                })?;
                configure(conn)?;
                migrate(conn)?;
                live.load(conn)?;
                secrets::prepare(conn, &key)
            })
            .await?;
        let file = Arc::new(health::DatabaseFile::opened(path)?);
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = tokio_rusqlite::Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .await?;
            reader.call(configure).await?;
            readers.push(Lane::new(reader));
        }
        let store = Self {
            writer: Lane::new(writer),
            readers: readers.into(),
            next_reader: Arc::new(AtomicUsize::new(0)),
            subscriptions: Arc::new(RwLock::new(HashMap::new())),
            index: matching::SharedIndex::default(),
            tenants,
            key_usage: key_usage::KeyUsage::default(),
            clock,
            waker: Arc::new(Notify::new()),
            sealer,
            file,
            health: Arc::new(health::Probe::default()),
            writer_sync: Arc::new(std::sync::atomic::AtomicU8::new(0)),
            handoff: Arc::new(RwLock::new(None)),
        };
        store.reload_subscriptions().await?;
        Ok(store)
    }

    /// Closes the connections, after the work already handed to them.
    pub async fn close(&self) {
        for lane in self.readers.iter().chain([&self.writer]) {
            if let Err(e) = lane.conn.clone().close().await {
                tracing::warn!(error = %e, "closing a database connection failed");
            }
        }
    }

    /// Runs `work` on the writing connection: every statement that changes something goes
    /// here.
    pub(crate) async fn write<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.write_with(Commit::Durable, work).await
    }

    async fn write_with<R, F>(&self, commit: Commit, work: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let file = self.file.clone();
        let sync = self.writer_sync.clone();
        let result = self
            .writer
            .call(move |conn| {
                // Set for every call, so no unit of work inherits another's setting (only when
                // it changes: a pragma is parsed anew each time it is run).
                if sync.load(Ordering::Relaxed) != commit.code() {
                    conn.pragma_update(None, "synchronous", commit.synchronous())?;
                    sync.store(commit.code(), Ordering::Relaxed);
                }
                let result = work(conn)?;
                // A commit to a database file that was deleted or replaced meanwhile is lost
                // at the next start: refuse to report it as durable (one `stat`).
                if matches!(commit, Commit::Durable) {
                    file.check()?;
                }
                Ok(result)
            })
            .await;
        if let Err(e) = &result {
            self.health.saw(e);
        }
        result
    }

    /// Runs `work` in a write transaction that takes the write lock up front (`BEGIN
    /// IMMEDIATE`), committing (durably) when it returns `Ok`.
    pub(crate) async fn transaction<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.transaction_with(Commit::Durable, work).await
    }

    /// [`Store::transaction`] for dispatch bookkeeping (leases, attempt results), committed
    /// without its own fsync: see [`Commit::Bookkeeping`].
    pub(crate) async fn bookkeeping<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.transaction_with(Commit::Bookkeeping, work).await
    }

    async fn transaction_with<R, F>(&self, commit: Commit, work: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.write_with(commit, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let result = work(&tx)?;
            tx.commit()?;
            Ok(result)
        })
        .await
    }

    /// Runs `work` on one of the reading connections.
    pub(crate) async fn read<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let turn = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[turn].call(work).await
    }

    /// The clock the store reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Notified when deliveries may have become due outside ingest (the dispatcher listens).
    pub fn waker(&self) -> Arc<Notify> {
        self.waker.clone()
    }

    /// Hands fresh deliveries to `handoff` from now on (see [`Handoff`]), in place of the
    /// dispatcher before it, if any.
    pub fn set_handoff(&self, handoff: Arc<dyn Handoff>) {
        *self.handoff.write().unwrap_or_else(PoisonError::into_inner) = Some(handoff);
    }

    /// Where fresh deliveries go already leased, if a dispatcher takes them.
    pub(crate) fn handoff(&self) -> Option<Arc<dyn Handoff>> {
        self.handoff
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current subscriptions (not deleted), from memory, sorted by id (a copy of the
    /// list of pointers).
    pub fn subscriptions(&self) -> Vec<Arc<Subscription>> {
        let mut all: Vec<Arc<Subscription>> = self
            .subscriptions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// The ids of the current subscriptions whose plugin is one of `plugins`, from memory
    /// (unsorted: no copy of the whole list).
    pub fn subscriptions_using(&self, plugins: &std::collections::HashSet<String>) -> Vec<String> {
        self.subscriptions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|s| s.plugin.as_ref().is_some_and(|p| plugins.contains(p)))
            .map(|s| s.id.clone())
            .collect()
    }

    /// The current subscriptions by tenant and pattern, to lock on the writer's thread.
    pub(crate) fn subscription_index(&self) -> matching::SharedIndex<Subscription> {
        self.index.clone()
    }

    /// One current subscription, from memory (a hash lookup: one per delivery).
    pub fn cached_subscription(&self, id: &str) -> Option<Arc<Subscription>> {
        self.subscriptions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }
}

/// How a write transaction commits.
#[derive(Debug, Clone, Copy)]
enum Commit {
    /// fsync the WAL before returning (`synchronous = FULL`): accepted events, API changes.
    Durable,
    /// Written to the WAL without an fsync of its own (`synchronous = NORMAL`). A process
    /// crash loses nothing (the OS has the pages); a power loss may lose the last such
    /// commits, which only means a delivery is leased or attempted again (at-least-once). The
    /// next durable commit fsyncs them too.
    Bookkeeping,
}

impl Commit {
    /// The setting as a number, for [`Store::writer_sync`] (0 is "not set yet").
    fn code(self) -> u8 {
        match self {
            Self::Durable => 1,
            Self::Bookkeeping => 2,
        }
    }

    fn synchronous(self) -> &'static str {
        match self {
            Self::Durable => "FULL",
            Self::Bookkeeping => "NORMAL",
        }
    }
}

/// Settings every connection gets.
fn configure(conn: &mut Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Statement journals (the undo of one statement inside a transaction, which every insert
    // that fires a queue trigger opens) in memory rather than in a temporary file: in a profile
    // of fan-out they were 6% of the service's time, mostly `pwrite` to that file. They never
    // hold anything durable.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // One plan per statement, whatever is bound. Without this SQLite (3.5x) compiles a bound
    // `LIMIT ?` into the plan as a constant and recompiles the statement whenever that value
    // changes: every lease (`LIMIT ?` of the room left) was compiled anew, 46% of the lease's
    // time in a profile of e2e with every delivery through the store. The store keeps no
    // `ANALYZE` statistics, so bound values have nothing else to inform.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Applies the migrations the database has not seen, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let mut applied: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if applied == 0 && created_by_sqlx(conn)? {
        // Databases from before the move to rusqlite recorded the same schema in sqlx's table.
        applied = 1;
        conn.pragma_update(None, "user_version", applied)?;
    }
    let applied = usize::try_from(applied).unwrap_or(0);
    // Foreign keys off while migrating (a pragma that cannot change inside a transaction):
    // rebuilding a table that others reference (`0005` rebuilds `events`) must not cascade or
    // fail on the drop. Every reference is checked before each migration commits.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let result = (|| {
        for (number, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(sql)?;
            let broken: i64 =
                tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                    r.get(0)
                })?;
            if broken > 0 {
                return Err(StoreError::Corrupt(format!(
                    "migration {} leaves {broken} broken references",
                    number + 1
                )));
            }
            tx.pragma_update(
                None,
                "user_version",
                i64::try_from(number + 1).unwrap_or(i64::MAX),
            )?;
            tx.commit()?;
        }
        Ok(())
    })();
    conn.pragma_update(None, "foreign_keys", "ON")?;
    result
}

fn created_by_sqlx(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
        [],
        |r| r.get(0),
    )?)
}

/// Runs a query and maps every row (the mapping may fail with a [`StoreError`], which
/// `query_map`'s closure cannot return).
fn all_rows<T>(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    mut map: impl FnMut(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// A list bound as one parameter: a JSON array for `IN (SELECT value FROM json_each(?))`.
fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    serde_json::Value::Array(
        items
            .iter()
            .map(|s| serde_json::Value::String(s.as_ref().to_owned()))
            .collect(),
    )
    .to_string()
}

/// A new id: `prefix` + `_` + a ULID (sortable by creation time).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new())
}

/// A new id whose ULID time is `now_ms`, the store clock's time the row is created at: so "ids
/// below the id of time t" is exactly "created before t" (retention walks the id indexes with
/// that), under a manual clock too.
pub(crate) fn new_id_at(prefix: &str, now_ms: i64) -> String {
    let ms = u64::try_from(now_ms).unwrap_or(0);
    format!(
        "{prefix}_{}",
        ulid::Ulid::from_parts(ms, rand::random::<u128>())
    )
}

/// Applies only the first `count` migrations, as the release that had those left its database
/// (for the upgrade tests).
#[cfg(test)]
fn migrate_as_of(conn: &mut Connection, count: usize) {
    let tx = conn.transaction().unwrap();
    for sql in &MIGRATIONS[..count] {
        tx.execute_batch(sql).unwrap();
    }
    tx.pragma_update(None, "user_version", i64::try_from(count).unwrap())
        .unwrap();
    tx.commit().unwrap();
}

#[cfg(test)]
mod plans_tests;
#[cfg(test)]
mod upgrade_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// The bundled SQLite is built with `.cargo/config.toml`'s `LIBSQLITE3_FLAGS`: a build that
    /// lost them (another config, a `cargo` run from elsewhere) would still pass every other
    /// test and take a global mutex on every page. (`HAVE_FDATASYNC` is not among the options
    /// SQLite reports; it goes with the others.)
    #[test]
    fn sqlite_is_built_with_the_projects_options() {
        let conn = Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare("PRAGMA compile_options").unwrap();
        let options = all_rows(&mut stmt, [], |r| Ok(r.get::<_, String>(0)?)).unwrap();
        for want in ["DEFAULT_MEMSTATUS=0", "OMIT_SHARED_CACHE"] {
            assert!(
                options.iter().any(|o| o == want),
                "{want} missing from {options:?}"
            );
        }
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "ENABLE_MEMORY_MANAGEMENT is on: {options:?}"
        );
    }

    #[tokio::test]
    async fn reopening_applies_the_schema_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = Store::open(&path).await.unwrap();
        assert!(store.set_setting_once("k", "v").await.unwrap());
        store.close().await;
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("v"));
        let version: i64 = store
            .read(|conn| Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(version, i64::try_from(MIGRATIONS.len()).unwrap());
        store.close().await;
    }

    #[tokio::test]
    async fn a_database_migrated_by_sqlx_is_taken_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "CREATE TABLE _sqlx_migrations (version INTEGER PRIMARY KEY);
             INSERT INTO settings (key, value) VALUES ('k', 'old');",
        )
        .unwrap();
        drop(conn);
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("old"));
        store.close().await;
    }

    /// Leases and attempt results commit without an fsync of their own; every other write,
    /// including the next one on the same connection, fsyncs (`synchronous`: 1 NORMAL, 2 FULL).
    #[tokio::test]
    async fn only_bookkeeping_skips_its_fsync() {
        fn level(conn: &Connection) -> Result<i64, StoreError> {
            Ok(conn.pragma_query_value(None, "synchronous", |r| r.get(0))?)
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        assert_eq!(store.bookkeeping(|tx| level(tx)).await.unwrap(), 1);
        assert_eq!(store.write(|conn| level(conn)).await.unwrap(), 2);
        assert_eq!(store.bookkeeping(|tx| level(tx)).await.unwrap(), 1);
        assert_eq!(store.transaction(|tx| level(tx)).await.unwrap(), 2);
        store.close().await;
    }

    /// Statement journals stay in memory on every connection (`temp_store`: 2 MEMORY).
    #[tokio::test]
    async fn statement_journals_are_kept_in_memory() {
        fn temp_store(conn: &Connection) -> Result<i64, StoreError> {
            Ok(conn.pragma_query_value(None, "temp_store", |r| r.get(0))?)
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        assert_eq!(store.write(|conn| temp_store(conn)).await.unwrap(), 2);
        assert_eq!(store.read(|conn| temp_store(conn)).await.unwrap(), 2);
        store.close().await;
    }

    #[test]
    fn lists_bind_as_one_json_array() {
        assert_eq!(json_list(&["a", "b\"c"]), r#"["a","b\"c"]"#);
        assert_eq!(json_list::<&str>(&[]), "[]");
    }
}
