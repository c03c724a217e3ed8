//! The ways a plugin's version changes: an install (an upload, or a caller with the bytes), a
//! removal, and the sync of one file or of the whole folder (the watcher and the rescan). Each
//! takes the name's lock, so changes of one plugin compare against its latest state.

use bytes::Bytes;
use futures::StreamExt;

use super::super::folder::{name_of_path, write_atomically};
use super::super::{load, runtime};
use super::{PluginError, PluginInfo, PluginLimits, Registry, SYNCS_AT_ONCE, valid_name};

impl Registry {
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
        self.notify_changed();
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
        let changed = self.sync_file_now(name).await;
        self.done_starting(name);
        changed
    }

    async fn sync_file_now(&self, name: &str) -> bool {
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
        let version = match load::version_of(bytes.clone()).await {
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
        names.extend(self.listed().await);
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
            runtime::release_compile_scratch();
        }
    }

    /// The start-up's first step, before anything is read: every plugin file in the folder
    /// shows `compiling` until the first [`Registry::scan`] has synced it, so requests and
    /// deliveries through it wait for it instead of finding no such plugin.
    pub async fn mark_folder_starting(&self) {
        let names = self.listed().await;
        self.mark_starting(&names);
    }

    /// The plugin names of the folder's files (names only: nothing is opened).
    async fn listed(&self) -> Vec<String> {
        let dir = self.folder.dir().to_owned();
        tokio::task::spawn_blocking(move || {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| name_of_path(&e.path()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default()
    }
}
