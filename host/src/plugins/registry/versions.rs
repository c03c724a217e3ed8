//! What every change of a version shares: loading one (unless the same bytes failed before),
//! swapping it in, the per-name locks, the pending versions and load errors the status shows,
//! and pruning the compile cache down to the versions in use.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use super::super::code::Source;
use super::super::load;
use super::super::status::info;
use super::{LoadedPlugin, PluginError, PluginInfo, PluginLimits, REMEMBERED_FAILURES, Registry};

impl Registry {
    /// Removes the leftovers of compiles a crash interrupted: at start, before anything
    /// compiles.
    pub async fn remove_compile_leftovers(&self) {
        if let Some(cache) = &self.runtime.cache {
            cache.remove_leftovers().await;
        }
    }

    /// Removes compiled artefacts no loaded version uses — except while the start's first scan
    /// runs: the artefacts of the plugins it has not reached yet are in use too (it prunes
    /// once it is done).
    pub(in crate::plugins) async fn prune(&self) {
        if self.read().values().any(|e| e.starting) {
            return;
        }
        if let Some(cache) = &self.runtime.cache {
            let keep = self.versions_in_use();
            cache.prune(&self.runtime.engine_key, &keep).await;
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
    pub(super) async fn load(
        &self,
        name: &str,
        bytes: Bytes,
        limits: PluginLimits,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let version = load::version_of(bytes.clone()).await?;
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

    pub(super) fn lock_of(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    pub(super) fn swap(&self, name: &str, loaded: Arc<LoadedPlugin>) -> bool {
        let mut entries = self.write();
        let entry = entries.entry(name.to_owned()).or_default();
        let created = entry.current.is_none();
        entry.current = Some(loaded);
        entry.error = None;
        drop(entries);
        self.notify_changed();
        created
    }

    /// Marks `version` of `name` as compiling (shown as `status: compiling`); returns the
    /// plugin as it is now.
    pub(in crate::plugins) fn mark_pending(&self, name: &str, version: &str) -> PluginInfo {
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
    pub(in crate::plugins) fn unmark_pending(&self, name: &str, version: &str) {
        let mut entries = self.write();
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        if let Some(at) = entry.pending.iter().position(|v| v == version) {
            entry.pending.remove(at);
        }
        if entry.shows_nothing() {
            entries.remove(name);
        }
        drop(entries);
        self.notify_changed();
    }

    /// Marks each of `names` as listed at start-up, to be loaded by the first scan: until then
    /// it shows `compiling` and its deliveries wait.
    pub(super) fn mark_starting(&self, names: &[String]) {
        let mut entries = self.write();
        for name in names {
            let entry = entries.entry(name.clone()).or_default();
            entry.starting = entry.current.is_none();
        }
    }

    /// `name` was synced: it is not waiting for the start's first scan any more. A name that
    /// was only listed (its file went before the scan reached it) is forgotten.
    pub(super) fn done_starting(&self, name: &str) {
        let mut entries = self.write();
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        if !entry.starting {
            return;
        }
        entry.starting = false;
        if entry.shows_nothing() {
            entries.remove(name);
        }
        drop(entries);
        self.notify_changed();
    }

    /// Records why an upload answered `202` did not load (the last good version serves).
    pub(in crate::plugins) fn record_failure(&self, name: &str, err: PluginError) {
        self.record_error(name, err);
    }

    /// Records why the file does not load; returns false (the serving version is unchanged).
    pub(super) fn record_error(&self, name: &str, err: PluginError) -> bool {
        tracing::warn!(plugin = name, error = %err, "plugin file did not load; the last good version keeps serving");
        self.write().entry(name.to_owned()).or_default().error = Some(err.to_string());
        self.notify_changed();
        false
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
