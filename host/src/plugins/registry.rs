//! Plugins by name: the serving version of each, its status, and the one way versions change
//! (a file in the plugins folder, whether uploaded through the API or dropped there).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;
use time::OffsetDateTime;

use super::{LoadedPlugin, PluginError, Runtime};

/// Whether a plugin's latest file loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginStatus {
    /// The latest file is serving.
    Ready,
    /// The latest file failed to load; the last good version (if any) keeps serving.
    Error,
}

/// What the API shows about a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// The plugin's name.
    pub name: String,
    /// sha256 of the serving version, if any version loaded.
    pub version: Option<String>,
    /// Size in bytes of the serving version.
    pub size: Option<usize>,
    /// `ready`, or `error` when the latest file failed to load.
    pub status: PluginStatus,
    /// Why the latest file failed to load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the serving version was loaded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub loaded_at: Option<OffsetDateTime>,
}

#[derive(Default)]
struct Entry {
    current: Option<Arc<LoadedPlugin>>,
    error: Option<String>,
}

/// The plugins folder, loaded. Reads are a short lock and an `Arc` clone; a swap replaces the
/// `Arc`, so calls in flight finish on the version they started with.
pub struct Registry {
    runtime: Runtime,
    dir: PathBuf,
    entries: RwLock<HashMap<String, Entry>>,
    /// Serialises changes (uploads, file events) so each compares against the latest state.
    change: tokio::sync::Mutex<()>,
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
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn new(runtime: Runtime, dir: impl Into<PathBuf>) -> Result<Self, PluginError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| PluginError::Io(format!("{}: {e}", dir.display())))?;
        Ok(Self {
            runtime,
            dir,
            entries: RwLock::new(HashMap::new()),
            change: tokio::sync::Mutex::new(()),
        })
    }

    /// The runtime plugins run on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The watched plugins folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The serving version of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.read().get(name).and_then(|e| e.current.clone())
    }

    /// Status of one plugin (also of one whose only file failed to load).
    pub fn info(&self, name: &str) -> Option<PluginInfo> {
        self.read().get(name).map(|e| info(name, e))
    }

    /// Status of every plugin, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        let entries = self.read();
        let mut all: Vec<PluginInfo> = entries.iter().map(|(n, e)| info(n, e)).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Validates and compiles `bytes`, then writes them to `<name>.wasm` (temp file, fsync,
    /// rename) and serves them. Returns the new status and whether the name is new. A bad
    /// component changes nothing: the old file and version stay.
    ///
    /// # Errors
    /// An invalid name, or anything [`Runtime::load`] refuses.
    pub async fn install(
        &self,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(PluginInfo, bool), PluginError> {
        if !valid_name(name) {
            return Err(PluginError::InvalidName(name.to_owned()));
        }
        let _guard = self.change.lock().await;
        let loaded = self.runtime.load(name, bytes.clone()).await?;
        let dir = self.dir.clone();
        let path = self.path_of(name);
        tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &bytes))
            .await
            .map_err(|e| PluginError::Io(e.to_string()))?
            .map_err(|e| PluginError::Io(e.to_string()))?;
        let created = self.swap(name, loaded);
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
        let _guard = self.change.lock().await;
        let existed_file = match std::fs::remove_file(self.path_of(name)) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(PluginError::Io(e.to_string())),
        };
        let existed_entry = self.write().remove(name).is_some();
        Ok(existed_file || existed_entry)
    }

    /// Brings `name` in line with its file: loads a new version, unloads a removed file, or
    /// records why a changed file does not load (the last good version keeps serving).
    pub async fn sync_file(&self, name: &str) {
        let _guard = self.change.lock().await;
        let bytes = match std::fs::read(self.path_of(name)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.write().remove(name).is_some() {
                    tracing::info!(plugin = name, "plugin file removed; unloaded");
                }
                return;
            }
            Err(e) => return self.record_error(name, PluginError::Io(e.to_string())),
        };
        let version = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if self.get(name).is_some_and(|p| p.version == version) {
            self.write().entry(name.to_owned()).or_default().error = None;
            return;
        }
        match self.runtime.load(name, bytes).await {
            Ok(loaded) => {
                tracing::info!(plugin = name, version = %loaded.version, "plugin loaded");
                self.swap(name, loaded);
            }
            Err(err) => self.record_error(name, err),
        }
    }

    /// Reconciles with the folder: every valid `<name>.wasm` is synced, every loaded plugin
    /// without a file is unloaded. The backstop for missed file events.
    pub async fn scan(&self) {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        if let Ok(dir) = std::fs::read_dir(&self.dir) {
            names.extend(dir.flatten().filter_map(|e| name_of_path(&e.path())));
        }
        names.sort();
        names.dedup();
        for name in names {
            self.sync_file(&name).await;
        }
    }

    fn swap(&self, name: &str, loaded: Arc<LoadedPlugin>) -> bool {
        let mut entries = self.write();
        let entry = entries.entry(name.to_owned()).or_default();
        let created = entry.current.is_none();
        entry.current = Some(loaded);
        entry.error = None;
        created
    }

    fn record_error(&self, name: &str, err: PluginError) {
        tracing::warn!(plugin = name, error = %err, "plugin file did not load; the last good version keeps serving");
        self.write().entry(name.to_owned()).or_default().error = Some(err.to_string());
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.wasm"))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn info(name: &str, entry: &Entry) -> PluginInfo {
    let current = entry.current.as_ref();
    PluginInfo {
        name: name.to_owned(),
        version: current.map(|p| p.version.clone()),
        size: current.map(|p| p.size),
        status: if entry.error.is_some() {
            PluginStatus::Error
        } else {
            PluginStatus::Ready
        },
        error: entry.error.clone(),
        loaded_at: current.map(|p| p.loaded_at),
    }
}

/// The plugin name a path in the plugins folder stands for: `<name>.wasm` with a valid name.
/// Temp files (`.tmp…`) and anything else are ignored.
pub(super) fn name_of_path(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let name = file.strip_suffix(".wasm")?;
    valid_name(name).then(|| name.to_owned())
}

/// Write-temp-then-rename in the same folder, with fsyncs, so the watcher never sees a half
/// file and a crash leaves either the old or the new one.
pub(super) fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
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
