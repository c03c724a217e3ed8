//! Each plugin's own deadline and memory, chosen at upload, kept by name in a file the service
//! writes (`<data dir>/plugin-limits.json`): the plugins folder holds only components, so a
//! restart, or a new file dropped into the folder under the same name, finds them here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::folder::write_atomically;
use super::{PluginError, PluginLimits};

/// The plugins' own limits, by name; written through to the file (when there is one).
pub(super) struct OwnLimits {
    file: Option<PathBuf>,
    /// Held across a write, so writes land in the order they were made.
    map: tokio::sync::Mutex<BTreeMap<String, PluginLimits>>,
    /// A copy for reads that must not wait (listing plugins).
    snapshot: std::sync::RwLock<BTreeMap<String, PluginLimits>>,
}

impl OwnLimits {
    /// Kept in memory only (embedders without a data folder).
    pub(super) fn in_memory() -> Self {
        Self::with(None, BTreeMap::new())
    }

    /// Read from `file`. A missing file is no limits; an unreadable one is logged and treated
    /// the same (the plugins then run under the service's defaults, which are always safe).
    pub(super) fn open(file: PathBuf) -> Self {
        let map = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %file.display(), error = %e, "plugin limits file is not valid; plugins run under the default limits");
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(path = %file.display(), error = %e, "cannot read the plugin limits file; plugins run under the default limits");
                BTreeMap::new()
            }
        };
        Self::with(Some(file), map)
    }

    fn with(file: Option<PathBuf>, map: BTreeMap<String, PluginLimits>) -> Self {
        Self {
            file,
            snapshot: std::sync::RwLock::new(map.clone()),
            map: tokio::sync::Mutex::new(map),
        }
    }

    /// `name`'s own limits (none chosen: the defaults).
    pub(super) fn get(&self, name: &str) -> PluginLimits {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .copied()
            .unwrap_or_default()
    }

    /// Records `name`'s own limits (the defaults: forgets them), durably.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub(super) async fn set(&self, name: &str, limits: PluginLimits) -> Result<(), PluginError> {
        let mut map = self.map.lock().await;
        let before = map.get(name).copied().unwrap_or_default();
        if before == limits {
            return Ok(());
        }
        if limits == PluginLimits::default() {
            map.remove(name);
        } else {
            map.insert(name.to_owned(), limits);
        }
        if let Err(e) = self.write(&map).await {
            // Back to what the file holds.
            if before == PluginLimits::default() {
                map.remove(name);
            } else {
                map.insert(name.to_owned(), before);
            }
            return Err(e);
        }
        *self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = map.clone();
        Ok(())
    }

    async fn write(&self, map: &BTreeMap<String, PluginLimits>) -> Result<(), PluginError> {
        let Some(file) = self.file.clone() else {
            return Ok(());
        };
        let text = serde_json::to_vec_pretty(map).map_err(|e| PluginError::Io(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let dir = file.parent().map(PathBuf::from).unwrap_or_default();
            write_atomically(&dir, &file, &text)
                .map_err(|e| PluginError::Io(format!("{}: {e}", file.display())))
        })
        .await
        .map_err(|e| PluginError::Io(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_survive_a_reopen_and_defaults_are_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plugin-limits.json");
        let own = OwnLimits::open(file.clone());
        let big = PluginLimits {
            memory_mb: Some(128),
            timeout_ms: None,
        };
        own.set("py", big).await.unwrap();
        own.set("rust", PluginLimits::default()).await.unwrap();
        let again = OwnLimits::open(file.clone());
        assert_eq!(again.get("py"), big);
        assert_eq!(again.get("rust"), PluginLimits::default());
        again.set("py", PluginLimits::default()).await.unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.trim(), "{}");
        std::fs::write(&file, "not json").unwrap();
        assert_eq!(OwnLimits::open(file).get("py"), PluginLimits::default());
    }
}
