//! Plugins by name: the serving version of each, its status, and the one way versions change
//! (a file in the plugins folder, whether uploaded through the API or dropped there).
//!
//! Changes are serialised per name, not globally: a long compile of one plugin never holds up
//! an upload of another. A file is read only when its fingerprint changed, and a version that
//! failed to load is remembered, so neither the watcher nor the rescan reads or compiles the
//! same thing twice.
//!
//! This file holds the state and the lookups; `changes` the ways a version comes or goes
//! (install, remove, sync a file, scan the folder), `versions` what every change shares
//! (loading a version, swapping it in, the per-name locks, pruning the compile cache).

mod changes;
mod versions;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::folder::{Fingerprint, Folder};
use super::own_limits::OwnLimits;
use super::status::info;
pub use super::status::{PluginInfo, PluginStats, PluginStatus};
use super::uploads::Staging;
use super::{LoadedPlugin, PluginError, PluginLimits, Runtime};

/// Uploads in progress at once (body read, staged, compiling, written), whether their request
/// still waits or was answered `202`; more are refused before their body is read (`429`), so
/// at most this many components (`plugin_max_component_mb` each at most) are in memory.
const UPLOADS_AT_ONCE: usize = 8;
/// Files a scan syncs at once (reading, hashing, checking the cache; compiles have their own,
/// smaller bound).
const SYNCS_AT_ONCE: usize = 8;
/// How long a request (a dry run, a subscription naming the plugin) waits for a plugin still
/// loading after a start before it answers `503 plugin_loading`.
pub const LOADING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Versions that failed to load, remembered so they are not compiled again.
const REMEMBERED_FAILURES: usize = 256;

#[derive(Default)]
pub(super) struct Entry {
    pub(super) current: Option<Arc<LoadedPlugin>>,
    pub(super) error: Option<String>,
    /// Versions being compiled for this name (uploads, or a changed file), oldest first.
    pub(super) pending: Vec<String>,
    /// Listed at start-up and not synced yet: the start's first scan will load it.
    pub(super) starting: bool,
    /// The file as last examined: unchanged means nothing to read.
    file: Option<Fingerprint>,
}

impl Entry {
    /// Nothing serves yet, but a version is on its way: the name was listed at start-up and
    /// not synced yet, or its first version is compiling. Deliveries through it wait instead
    /// of failing.
    pub(super) fn loading(&self) -> bool {
        self.current.is_none() && (self.starting || !self.pending.is_empty())
    }

    /// Nothing to show: no version, no error, nothing on its way, no file.
    pub(super) fn shows_nothing(&self) -> bool {
        self.current.is_none()
            && self.error.is_none()
            && self.pending.is_empty()
            && !self.starting
            && self.file.is_none()
    }
}

/// The plugins folder, loaded. Reads are a short lock and an `Arc` clone; a swap replaces the
/// `Arc`, so calls in flight finish on the version they started with.
pub struct Registry {
    runtime: Runtime,
    folder: Arc<Folder>,
    entries: RwLock<HashMap<String, Entry>>,
    /// One lock per name: changes of one plugin compare against its latest state.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Versions that failed to load, with why (oldest first).
    failed: Mutex<VecDeque<(String, PluginError)>>,
    /// Versions being loaded now: the cache keeps their artefacts.
    loading: Mutex<HashSet<String>>,
    uploads: Arc<tokio::sync::Semaphore>,
    /// Where uploads wait, durably, while they compile (none: uploads are not staged).
    staging: Option<Staging>,
    /// Each plugin's own deadline and memory.
    own_limits: OwnLimits,
    /// Bumped whenever a plugin's state changes, for those waiting for one to load.
    changed: tokio::sync::watch::Sender<u64>,
}

/// Whether `name` is a valid plugin name: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let ok_char = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-';
    matches!(bytes.first(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.len() <= 63
        && bytes.iter().all(ok_char)
}

impl Registry {
    /// A registry over `dir` (created if missing). Nothing is loaded until [`Registry::scan`].
    /// Symbolic links leading out of the folder are refused.
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn new(runtime: Runtime, dir: impl Into<PathBuf>) -> Result<Self, PluginError> {
        Self::with_links(runtime, dir, false)
    }

    /// [`Registry::new`], following symbolic links out of the folder when `follow_symlinks`
    /// (`plugins_follow_symlinks`). Whatever a link leads to must still be a regular file.
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn with_links(
        runtime: Runtime,
        dir: impl Into<PathBuf>,
        follow_symlinks: bool,
    ) -> Result<Self, PluginError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| PluginError::Io(format!("{}: {e}", dir.display())))?;
        Ok(Self {
            runtime,
            folder: Arc::new(Folder::new(dir, follow_symlinks)),
            entries: RwLock::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            failed: Mutex::new(VecDeque::new()),
            loading: Mutex::new(HashSet::new()),
            uploads: Arc::new(tokio::sync::Semaphore::new(UPLOADS_AT_ONCE)),
            staging: None,
            own_limits: OwnLimits::in_memory(),
            changed: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Keeps state in `data_dir`: uploads staged in `plugin-uploads/` while they compile (so
    /// an upload answered `202` survives a restart) and the plugins' own limits in
    /// `plugin-limits.json`. Without it, both live only in memory.
    ///
    /// # Errors
    /// When the staging folder cannot be created.
    pub fn with_state_dir(mut self, data_dir: &Path) -> Result<Self, PluginError> {
        self.staging = Some(Staging::new(data_dir.join("plugin-uploads"))?);
        self.own_limits = OwnLimits::open(data_dir.join("plugin-limits.json"));
        Ok(self)
    }

    pub(super) fn staging(&self) -> Option<&Staging> {
        self.staging.as_ref()
    }

    /// The runtime plugins run on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The watched plugins folder.
    pub fn dir(&self) -> &Path {
        self.folder.dir()
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> PluginStats {
        PluginStats {
            file_reads: self.folder.reads(),
            compiles: self.runtime.compiles(),
            compiling: self.runtime.compiling(),
            code_loads: self.runtime.code_loads(),
            code_loaded: self.runtime.code_loaded(),
            uploading: u64::try_from(
                UPLOADS_AT_ONCE.saturating_sub(self.uploads.available_permits()),
            )
            .unwrap_or(0),
        }
    }

    /// A turn to read an upload's body and install it, if one is free: at most a few uploads
    /// are in memory at once. `None` when all are taken (the caller refuses the upload before
    /// reading its body).
    ///
    /// # Errors
    /// [`PluginError::ShuttingDown`] once the service stops.
    pub fn upload_turn(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, PluginError> {
        match self.uploads.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(tokio::sync::TryAcquireError::NoPermits) => Ok(None),
            Err(tokio::sync::TryAcquireError::Closed) => Err(PluginError::ShuttingDown),
        }
    }

    /// A turn to install an upload, waiting for one; `None` once the service stops.
    pub(super) async fn wait_for_upload_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.uploads.clone().acquire_owned().await.ok()
    }

    /// Stops compiles in progress (their uploads fail as shutting down) and refuses new ones.
    pub fn shutdown(&self) {
        self.uploads.close();
        self.runtime.shutdown();
    }

    /// The serving version of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.read().get(name).and_then(|e| e.current.clone())
    }

    /// Whether `name` has nothing serving yet but is being loaded ([`Entry::loading`]).
    pub fn is_loading(&self, name: &str) -> bool {
        self.read().get(name).is_some_and(Entry::loading)
    }

    /// The names [`Registry::is_loading`] holds for (usually none).
    pub fn loading_names(&self) -> HashSet<String> {
        self.read()
            .iter()
            .filter(|(_, e)| e.loading())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Changes whenever a plugin's state does (a version swapped in, a load that failed or
    /// ended): what a waiter for a loading plugin watches.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(super) fn notify_changed(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The serving version of `name`, waiting up to `within` while it is loading.
    ///
    /// # Errors
    /// [`PluginError::NotFound`] when no such plugin is loaded or loading;
    /// [`PluginError::Loading`] when it is still loading after `within`.
    pub async fn ready_within(
        &self,
        name: &str,
        within: std::time::Duration,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let mut changes = self.changes();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(plugin) = self.get(name) {
                return Ok(plugin);
            }
            if !self.is_loading(name) {
                return Err(PluginError::NotFound(name.to_owned()));
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as `self`: this is only the timeout.
                Ok(Err(_)) | Err(_) => return Err(PluginError::Loading(name.to_owned())),
            }
        }
    }

    /// Status of one plugin (also of one whose only file failed to load).
    pub fn info(&self, name: &str) -> Option<PluginInfo> {
        self.read()
            .get(name)
            .map(|e| info(name, e, &self.fallback_limits(name)))
    }

    /// Status of every plugin, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        let entries = self.read();
        let mut all: Vec<PluginInfo> = entries
            .iter()
            .map(|(n, e)| info(n, e, &self.fallback_limits(n)))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The limits `name`'s calls would get with no version serving: the service's, with the
    /// plugin's own choices.
    fn fallback_limits(&self, name: &str) -> super::Limits {
        let service = self.runtime.limits();
        service
            .for_plugin(self.own_limits.get(name))
            .unwrap_or_else(|_| service.clone())
    }

    /// The name's own limits (the defaults when it chose none).
    pub fn own_limits(&self, name: &str) -> PluginLimits {
        self.own_limits.get(name)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
