//! Plugins by name: the serving version of each, its status, and the one way versions change
//! (a file in the plugins folder, whether uploaded through the API or dropped there).
//!
//! Changes are serialised per name, not globally: a long compile of one plugin never holds up
//! an upload of another. A file is read only when its fingerprint changed, and a version that
//! failed to load is remembered, so neither the watcher nor the rescan reads or compiles the
//! same thing twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use futures::StreamExt;

use super::code::Source;
use super::folder::{Fingerprint, Folder, name_of_path, write_atomically};
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
/// Versions that failed to load, remembered so they are not compiled again.
const REMEMBERED_FAILURES: usize = 256;

#[derive(Default)]
pub(super) struct Entry {
    pub(super) current: Option<Arc<LoadedPlugin>>,
    pub(super) error: Option<String>,
    /// Versions being compiled for this name (uploads, or a changed file), oldest first.
    pub(super) pending: Vec<String>,
    /// The file as last examined: unchanged means nothing to read.
    file: Option<Fingerprint>,
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

    /// Validates and compiles `bytes`, then records its own `limits`, writes the bytes to
    /// `<name>.wasm` (temp file, fsync, rename) and serves them. Returns the new status and
    /// whether the name is new. A bad component changes nothing: the old file, limits and
    /// version stay. (Uploads go through [`Registry::upload`], which calls this off the
    /// request.)
    ///
    /// # Errors
    /// An invalid name, or anything [`Runtime::load_with`] refuses.
    pub async fn install(
        &self,
        name: &str,
        bytes: impl Into<Bytes>,
        limits: PluginLimits,
    ) -> Result<(PluginInfo, bool), PluginError> {
        let bytes = bytes.into();
        if !valid_name(name) {
            return Err(PluginError::InvalidName(name.to_owned()));
        }
        let lock = self.lock_of(name);
        let _guard = lock.lock().await;
        let loaded = self.load(name, bytes.clone(), limits).await?;
        self.own_limits.set(name, limits).await?;
        let folder = self.folder.clone();
        let file = name.to_owned();
        let written = tokio::task::spawn_blocking(move || {
            write_atomically(folder.dir(), &folder.path_of(&file), &bytes)?;
            folder
                .fingerprint(&file)
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .await
        .map_err(|e| PluginError::Io(e.to_string()))?
        .map_err(|e| PluginError::Io(e.to_string()))?;
        let created = self.swap(name, loaded);
        // The watcher will see the rename; the fingerprint tells it there is nothing to read.
        self.write().entry(name.to_owned()).or_default().file = written;
        self.prune().await;
        let info = self
            .info(name)
            .ok_or_else(|| PluginError::NotFound(name.to_owned()))?;
        Ok((info, created))
    }

    /// Deletes `<name>.wasm` and unloads it. Returns whether there was anything to remove.
    ///
    /// # Errors
    /// When the file exists but cannot be removed.
    pub async fn remove(&self, name: &str) -> Result<bool, PluginError> {
        let lock = self.lock_of(name);
        let _guard = lock.lock().await;
        let existed_file = match std::fs::remove_file(self.folder.path_of(name)) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(PluginError::Io(e.to_string())),
        };
        let existed_entry = self.write().remove(name).is_some();
        if let Err(e) = self.own_limits.set(name, PluginLimits::default()).await {
            tracing::warn!(plugin = name, error = %e, "could not forget the plugin's own limits");
        }
        self.prune().await;
        Ok(existed_file || existed_entry)
    }

    /// Brings `name` in line with its file: loads a new version, unloads a removed file, or
    /// records why a changed file does not load (the last good version keeps serving). A file
    /// whose fingerprint did not change is not read. Returns whether the serving version
    /// changed.
    pub async fn sync_file(&self, name: &str) -> bool {
        let lock = self.lock_of(name);
        let _guard = lock.lock().await;
        let folder = self.folder.clone();
        let file = name.to_owned();
        let limit = self.runtime.limits().component_bytes;
        let examined = tokio::task::spawn_blocking(move || {
            let fingerprint = folder.fingerprint(&file)?;
            Ok::<_, PluginError>((folder, fingerprint))
        })
        .await;
        let (folder, fingerprint) = match examined {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return self.record_error(name, e),
            Err(e) => return self.record_error(name, PluginError::Io(e.to_string())),
        };
        let Some(fingerprint) = fingerprint else {
            let removed = self.write().remove(name).is_some();
            if removed {
                tracing::info!(plugin = name, "plugin file removed; unloaded");
            }
            return removed;
        };
        if self.read().get(name).and_then(|e| e.file) == Some(fingerprint) {
            return false;
        }
        self.write().entry(name.to_owned()).or_default().file = Some(fingerprint);
        let file = name.to_owned();
        let read = tokio::task::spawn_blocking(move || folder.read(&file, limit))
            .await
            .map_err(|e| PluginError::Io(e.to_string()))
            .and_then(|read| read);
        let bytes = match read {
            Ok(read) => {
                // What was read: a change during the read shows as a new fingerprint.
                self.write().entry(name.to_owned()).or_default().file = Some(read.fingerprint);
                Bytes::from(read.bytes)
            }
            Err(e) => return self.record_error(name, e),
        };
        let version = match super::load::version_of(bytes.clone()).await {
            Ok(version) => version,
            Err(err) => return self.record_error(name, err),
        };
        self.mark_pending(name, &version);
        let loaded = self.load(name, bytes, self.own_limits.get(name)).await;
        self.unmark_pending(name, &version);
        match loaded {
            Ok(loaded) => {
                tracing::info!(plugin = name, version = %loaded.version, "plugin loaded");
                self.swap(name, loaded);
                true
            }
            Err(err) => self.record_error(name, err),
        }
    }

    /// Reconciles with the folder: every valid `<name>.wasm` is synced, every loaded plugin
    /// without a file is unloaded. The backstop for missed file events; cheap when nothing
    /// changed (one `lstat` per file).
    pub async fn scan(&self) {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        let dir = self.folder.dir().to_owned();
        let listed = tokio::task::spawn_blocking(move || {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| name_of_path(&e.path()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default();
        names.extend(listed);
        names.sort();
        names.dedup();
        // A few files at a time: each sync holds its component's bytes until it is loaded, so
        // a folder of 1,000 plugins read all at once peaked at 1,000 components in memory, and
        // the freed heap stayed with the process.
        let syncs: Vec<_> = names.iter().map(|n| self.sync_file(n)).collect();
        let changed: Vec<bool> = futures::stream::iter(syncs)
            .buffer_unordered(SYNCS_AT_ONCE)
            .collect()
            .await;
        if changed.into_iter().any(|c| c) {
            self.prune().await;
            super::runtime::release_compile_scratch();
        }
    }

    /// Removes compiled artefacts no loaded version uses, and leftovers of interrupted
    /// compiles: at start, before anything compiles.
    pub async fn prune_at_start(&self) {
        if let Some(cache) = &self.runtime.cache {
            let keep = self.versions_in_use();
            cache.prune(&self.runtime.engine_key, &keep, true).await;
        }
    }

    async fn prune(&self) {
        if let Some(cache) = &self.runtime.cache {
            let keep = self.versions_in_use();
            cache.prune(&self.runtime.engine_key, &keep, false).await;
        }
    }

    fn versions_in_use(&self) -> Vec<String> {
        let mut keep: Vec<String> = self
            .read()
            .values()
            .filter_map(|e| e.current.as_ref().map(|p| p.version.clone()))
            .collect();
        keep.extend(lock(&self.loading).iter().cloned());
        keep
    }

    /// Loads `bytes` unless its version already failed (then that failure again, at once).
    /// The version serving already is not compiled again, only given `limits`.
    async fn load(
        &self,
        name: &str,
        bytes: Bytes,
        limits: PluginLimits,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let version = super::load::version_of(bytes.clone()).await?;
        if let Some(current) = self.get(name).filter(|p| p.version == version) {
            if current.own_limits == limits {
                return Ok(current);
            }
            return current
                .with_limits(self.runtime.limits(), limits)
                .map(Arc::new);
        }
        if let Some((_, err)) = lock(&self.failed).iter().find(|(v, _)| *v == version) {
            return Err(err.clone());
        }
        lock(&self.loading).insert(version.clone());
        let source = Source {
            folder: self.folder.clone(),
            name: name.to_owned(),
        };
        let loaded = self
            .runtime
            .load_version(name, bytes, version.clone(), limits, Some(source))
            .await;
        lock(&self.loading).remove(&version);
        if let Err(err) = &loaded
            && remember(err)
        {
            let mut failed = lock(&self.failed);
            if failed.len() >= REMEMBERED_FAILURES {
                failed.pop_front();
            }
            failed.push_back((version, err.clone()));
        }
        loaded
    }

    fn lock_of(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    fn swap(&self, name: &str, loaded: Arc<LoadedPlugin>) -> bool {
        let mut entries = self.write();
        let entry = entries.entry(name.to_owned()).or_default();
        let created = entry.current.is_none();
        entry.current = Some(loaded);
        entry.error = None;
        created
    }

    /// Marks `version` of `name` as compiling (shown as `status: compiling`); returns the
    /// plugin as it is now.
    pub(super) fn mark_pending(&self, name: &str, version: &str) -> PluginInfo {
        let fallback = self.fallback_limits(name);
        let mut entries = self.write();
        let entry = entries.entry(name.to_owned()).or_default();
        entry.pending.push(version.to_owned());
        // What failed before is not the latest any more.
        entry.error = None;
        info(name, entry, &fallback)
    }

    /// Done compiling `version` of `name`. A name that never loaded and shows nothing is
    /// forgotten (a refused first upload leaves no plugin behind).
    pub(super) fn unmark_pending(&self, name: &str, version: &str) {
        let mut entries = self.write();
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        if let Some(at) = entry.pending.iter().position(|v| v == version) {
            entry.pending.remove(at);
        }
        let empty = entry.current.is_none()
            && entry.error.is_none()
            && entry.pending.is_empty()
            && entry.file.is_none();
        if empty {
            entries.remove(name);
        }
    }

    /// Records why an upload answered `202` did not load (the last good version serves).
    pub(super) fn record_failure(&self, name: &str, err: PluginError) {
        self.record_error(name, err);
    }

    /// Records why the file does not load; returns false (the serving version is unchanged).
    fn record_error(&self, name: &str, err: PluginError) -> bool {
        tracing::warn!(plugin = name, error = %err, "plugin file did not load; the last good version keeps serving");
        self.write().entry(name.to_owned()).or_default().error = Some(err.to_string());
        false
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Failures that the same bytes would meet again (not I/O, not a shutdown).
fn remember(err: &PluginError) -> bool {
    matches!(
        err,
        PluginError::NotAComponent(_)
            | PluginError::WrongWorld(_)
            | PluginError::Compile(_)
            | PluginError::CompileBudget(_)
            | PluginError::InstanceTooLarge(_)
            | PluginError::TooLarge { .. }
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["slack", "a", "my-plugin_2", "0x", &"a".repeat(63)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "Slack",
            "a.b",
            "a/b",
            "ä",
            &"a".repeat(64),
            ".tmpabc",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(
            name_of_path(Path::new("/x/slack.wasm")),
            Some("slack".into())
        );
        assert_eq!(name_of_path(Path::new("/x/.tmpAb12.wasm")), None);
        assert_eq!(name_of_path(Path::new("/x/slack.txt")), None);
    }
}
