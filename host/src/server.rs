//! Wiring: lock the data folder, open the store, load plugins, start the watcher, the
//! ingestor and the dispatcher, serve HTTP until the shutdown future resolves, then stop in
//! order (HTTP first, within its shutdown timeout, then dispatch, which finishes or releases
//! its in-flight work).

mod conn;
mod fd_limit;
mod http;

use std::fs::{File, OpenOptions, TryLockError};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use http::HttpLimits;

use crate::api::{self, ApiKey, AppState, Services};
use crate::config::Config;
use crate::dispatch::{DispatchContext, Dispatcher, RetryPolicy};
use crate::metrics::Metrics;
use crate::net::{self, NetConfig};
use crate::plugins::{self, ArtefactDigests, Cache, Compiler, Registry, Runtime, Watcher};
use crate::store::{Ingestor, KeySource, SecretKey, Store, StoreError};

/// The setting holding the generated admin key's hash.
const API_KEY_SETTING: &str = "api_key_sha256";
/// Bytes of a receiver's response body read and kept per attempt.
const RESPONSE_BYTES: usize = 4096;
/// The file in the data folder a running service holds an exclusive lock on.
const LOCK_FILE: &str = "lock";
/// How often rotated-out secrets past their grace are removed from the database (reads
/// already leave them out).
const SECRET_SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration breaks a rule (see [`Config::validate`]).
    #[error("invalid configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// The data or plugin folder could not be set up.
    #[error("{0}")]
    Io(String),
    /// Another process serves from the same data folder: two would lease each other's
    /// deliveries and re-queue each other's work.
    #[error(
        "the data folder {} is in use by another switchyard process{holder} (it holds {}); \
         stop that one first, or give this one its own data folder",
        .path.display(), .path.join(LOCK_FILE).display()
    )]
    DataDirInUse {
        /// The data folder.
        path: PathBuf,
        /// ` (pid N)` when the holder wrote its pid.
        holder: String,
    },
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The plugin runtime could not start.
    #[error(transparent)]
    Plugin(#[from] plugins::PluginError),
    /// The outbound client could not be built.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// Serving HTTP failed.
    #[error("http server: {0}")]
    Serve(std::io::Error),
}

/// Runs the service on `listener` until `shutdown` resolves.
///
/// # Errors
/// When a part of the service cannot start; see [`StartError`].
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    config.validate().map_err(StartError::Config)?;
    let config = Arc::new(config);
    let open_files = fd_limit::raise_open_files_limit();
    let max_connections = fd_limit::connection_cap(
        config.http.max_connections,
        open_files,
        config.max_in_flight,
    );
    // The data folder holds the database and compiled plugins (native code the service
    // loads): nobody else may be able to write it.
    refuse_if_others_can_write(&config.data_dir)?;
    refuse_if_others_can_write(&config.data_dir.join(PLUGIN_CACHE))?;
    create_private_dir(&config.data_dir)?;
    // Held until `run` returns (and by the kernel until the process dies, however it dies).
    let _lock = lock_data_dir(&config.data_dir)?;
    let key = match &config.secret_key {
        Some(text) => KeySource::Given(
            SecretKey::parse(text).map_err(|e| StartError::Io(format!("secret_key: {e}")))?,
        ),
        None => KeySource::File(config.secret_key_file.clone()),
    };
    let store = Store::open_with(&config.database_path(), key, config.clock.clone()).await?;
    restrict_to_owner(&config.data_dir, &config.database_path());
    let (api_key, generated) = api_key(&store, &config).await?;
    if let Some(key) = generated {
        // Printed once, on purpose, to stdout: only the hash is kept.
        println!(
            "\nGenerated the admin API key (shown only now; only its hash is stored):\n\n    {key}\n\nUse it as: Authorization: Bearer {key}\n"
        );
    }
    let api_key = Arc::new(api_key);
    let plugins = start_plugins(&config, &store).await?;
    let _watcher = Watcher::start_within(plugins.clone(), config.plugin_startup_wait).await?;
    // Uploads answered `202` before a stop or a crash compile now (in tasks of their own).
    plugins.resume_uploads().await;
    // A shutdown kills compiles in progress, so it never waits for one (their uploads answer
    // 503).
    let shutdown = {
        let plugins = plugins.clone();
        async move {
            shutdown.await;
            plugins.shutdown();
        }
    };
    let client = net::Client::new(NetConfig {
        allow_private_networks: config.allow_private_networks,
        timeout: config.delivery_timeout,
        user_agent: format!(
            "Switchyard/{} (webhook delivery)",
            env!("CARGO_PKG_VERSION")
        ),
        max_response_bytes: RESPONSE_BYTES,
        // Several subscriptions may share a receiver host, so all of them may be in flight to
        // one host at once.
        max_idle_per_host: config.max_in_flight,
    })?;
    let metrics = {
        let plugins = plugins.clone();
        Metrics::with_plugin_stats(Box::new(move || plugins.stats()))
    };
    // One wake-up for everything that queues deliveries: ingest, the API, the store itself.
    let wake = store.waker();
    let (ingestor, ingest_task) = Ingestor::start(
        store.clone(),
        wake.clone(),
        config.max_pending_events,
        config.max_pending_bytes,
        config.retention.idempotency_ttl,
    );
    let sweeper = tokio::spawn(sweep_expired_secrets(store.clone()));
    let retention = tokio::spawn(crate::retention::run(
        store.clone(),
        config.retention,
        metrics.clone(),
    ));
    let key_usage = tokio::spawn(store.clone().run_key_usage());
    let dispatcher = Dispatcher::start(
        DispatchContext {
            store: store.clone(),
            plugins: plugins.clone(),
            client: client.clone(),
            metrics: metrics.clone(),
            retry: RetryPolicy::new(config.retry_schedule.clone()),
            max_in_flight: config.max_in_flight,
            max_in_flight_per_subscription: config.max_in_flight_per_subscription,
            max_in_flight_per_tenant: config.max_in_flight_per_tenant,
            lease: config.lease,
            delivery_timeout: config.delivery_timeout,
            disable_after_failing_for: config.disable_after_failing_for,
            clock: config.clock.clone(),
        },
        wake.clone(),
    );
    let state = AppState::new(Services {
        store: store.clone(),
        ingestor,
        plugins,
        client,
        metrics,
        config: config.clone(),
        api_key,
        wake,
    });
    tracing::info!(listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), data_dir = %config.data_dir.display(), max_connections, "switchyard is serving");
    let served = http::serve(
        listener,
        api::router(state),
        config.http,
        max_connections,
        shutdown,
    )
    .await;
    sweeper.abort();
    retention.abort();
    key_usage.abort();
    tracing::info!("shutting down: finishing deliveries in flight");
    dispatcher.shutdown(Duration::from_secs(5)).await;
    // The router (and with it the last ingestor handle) is gone, so the writer drains and ends.
    let _ = tokio::time::timeout(Duration::from_secs(5), ingest_task).await;
    // The keys' last uses not written yet.
    if let Err(e) = store.flush_key_usage().await {
        tracing::warn!(error = %e, "recording when keys were used failed");
    }
    store.close().await;
    served.map_err(StartError::Serve)
}

/// Takes the data folder's lock (an exclusive `flock` on `<data>/lock`, which the kernel drops
/// when the process ends, even by `kill -9`), and writes this process's id into it.
fn lock_data_dir(dir: &Path) -> Result<File, StartError> {
    let path = dir.join(LOCK_FILE);
    let io = |e: std::io::Error| StartError::Io(format!("{}: {e}", path.display()));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .and_then(|pid| pid.trim().parse::<u32>().ok())
                .map(|pid| format!(" (pid {pid})"))
                .unwrap_or_default();
            return Err(StartError::DataDirInUse {
                path: dir.to_owned(),
                holder,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

/// Removes rotated-out secrets past their grace: at start (which also clears those of a
/// service that was down), then every [`SECRET_SWEEP_EVERY`].
async fn sweep_expired_secrets(store: Store) {
    let mut every = tokio::time::interval(SECRET_SWEEP_EVERY);
    loop {
        every.tick().await;
        match store.clear_expired_secrets().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(subscriptions = n, "cleared expired rotated-out secrets"),
            Err(StoreError::Closed) => return,
            Err(e) => tracing::warn!(error = %e, "clearing expired secrets failed"),
        }
    }
}

/// The configured key, or the stored hash of the key generated at the first start, or a new
/// key (returned so the caller can show it once; only its hash is stored).
async fn api_key(store: &Store, config: &Config) -> Result<(ApiKey, Option<String>), StartError> {
    if let Some(key) = &config.api_key {
        return Ok((ApiKey::from_key(key), None));
    }
    if let Some(hash) = store.setting(API_KEY_SETTING).await? {
        let key = ApiKey::from_hex(&hash)
            .ok_or_else(|| StartError::Io("the stored API key hash is corrupt".into()))?;
        return Ok((key, None));
    }
    let random = crate::signing::generate_secret();
    let key = format!(
        "sk_{}",
        random
            .trim_start_matches("whsec_")
            .replace(['+', '/', '='], "")
    );
    let hash = ApiKey::from_key(&key);
    store
        .set_setting_once(API_KEY_SETTING, &hash.to_hex())
        .await?;
    Ok((hash, Some(key)))
}

/// The database holds subscription secrets: only the service's user may read the data folder
/// and the database files (SQLite's `-wal`/`-shm` files are created with the database's mode).
fn restrict_to_owner(data_dir: &std::path::Path, database: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let set = |path: &std::path::Path, mode: u32| {
            if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
                tracing::warn!(path = %path.display(), error = %e, "could not restrict permissions");
            }
        };
        set(data_dir, 0o700);
        for suffix in ["", "-wal", "-shm"] {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            let path = std::path::PathBuf::from(name);
            if path.exists() {
                set(&path, 0o600);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (data_dir, database);
}

/// The compile cache's folder, in the data folder.
const PLUGIN_CACHE: &str = "plugin-cache";

/// The runtime and registry; on a first start the bundled plugins are written into the folder.
async fn start_plugins(config: &Config, store: &Store) -> Result<Arc<Registry>, StartError> {
    let first_start = !config.plugins_dir.exists();
    if first_start && config.bundled_plugins {
        plugins::seed_bundled(&config.plugins_dir)
            .map_err(|e| StartError::Io(format!("{}: {e}", config.plugins_dir.display())))?;
    }
    let cache = Cache::new(
        config.data_dir.join(PLUGIN_CACHE),
        Arc::new(StoreDigests(store.clone())),
    );
    let mut runtime = Runtime::new(config.plugin_limits.clone(), Some(cache))?;
    if let Some(program) = &config.plugin_compiler {
        runtime = runtime.with_compiler(Compiler::Child {
            program: program.clone(),
            budget: config.plugin_compile_budget,
        });
    }
    Ok(Arc::new(
        Registry::with_links(runtime, &config.plugins_dir, config.plugins_follow_symlinks)?
            .with_state_dir(&config.data_dir)?,
    ))
}

/// Artefact digests in the database, where only the service writes.
struct StoreDigests(Store);

impl ArtefactDigests for StoreDigests {
    fn get<'a>(
        &'a self,
        version: &'a str,
        engine: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            self.0
                .artifact_digest(version, engine)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn put<'a>(
        &'a self,
        version: &'a str,
        engine: &'a str,
        sha256: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .set_artifact_digest(version, engine, sha256)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn retain<'a>(
        &'a self,
        engine: &'a str,
        versions: &'a [String],
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .retain_artifact_digests(engine, versions)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Refuses a folder that exists and that others could write: group or world write bits, or
/// owned by another user. (A missing folder is created private.)
fn refuse_if_others_can_write(dir: &std::path::Path) -> Result<(), StartError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = match std::fs::metadata(dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StartError::Io(format!("{}: {e}", dir.display()))),
        };
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(StartError::Io(format!(
                "{} is owned by user {}, not by the user the service runs as ({me}): others could replace the database or the compiled plugins it runs; give it to this user (chown) or use another data_dir",
                dir.display(),
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(StartError::Io(format!(
                "others can write {} (mode {:o}): they could replace the database or the compiled plugins the service runs; run chmod go-w on it (the service keeps it 0700)",
                dir.display(),
                meta.mode() & 0o7777
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates the data folder, `0700` from the start (where it is new).
fn create_private_dir(dir: &std::path::Path) -> Result<(), StartError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| StartError::Io(format!("{}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_generated_key_is_stored_only_as_a_hash_and_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let config = Config::with_data_dir(dir.path());
        let (first, generated) = api_key(&store, &config).await.unwrap();
        let key = generated.expect("a first start generates a key");
        assert!(key.starts_with("sk_") && key.len() > 30, "{key}");
        assert!(first.matches(&key));
        let stored = store.setting(API_KEY_SETTING).await.unwrap().unwrap();
        assert!(
            !stored.contains(&key[3..]),
            "the key itself must not be stored"
        );
        let (again, generated) = api_key(&store, &config).await.unwrap();
        assert!(
            generated.is_none(),
            "a restart must not generate (or print) another key"
        );
        assert!(again.matches(&key));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_data_folder_and_database_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let db = data.join("switchyard.db");
        let _store = Store::open(&db).await.unwrap();
        restrict_to_owner(&data, &db);
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&db), 0o600);
    }

    #[tokio::test]
    async fn a_configured_key_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let mut config = Config::with_data_dir(dir.path());
        config.api_key = Some("configured-key-0123456789".into());
        let (key, generated) = api_key(&store, &config).await.unwrap();
        assert!(generated.is_none());
        assert!(key.matches("configured-key-0123456789"));
        assert!(store.setting(API_KEY_SETTING).await.unwrap().is_none());
    }
}
