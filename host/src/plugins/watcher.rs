//! Hot reload: a watch on the plugins folder that syncs changed files into the registry once
//! they are quiet, plus a periodic rescan as a backstop for events the OS drops.
//!
//! Only events that can change a file's content or name count: opening, reading and closing
//! a file without writing (the registry's own reads among them) are ignored, or every read
//! would trigger the next one. The rescan reads nothing that did not change.
//!
//! The debounce is a timer in this task, armed only while a file waits to be quiet. (The
//! `notify-debouncer-full` thread it replaces woke 40 times a second forever to check its
//! queue: a quarter of an idle service's CPU.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::event::{AccessKind, AccessMode};
use notify_debouncer_full::notify::{
    self, Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _,
};
use tokio::time::Instant;

use super::folder::name_of_path;
use super::{PluginError, Registry};

/// How long a file must be quiet before it is (re)loaded: a `cp` of a large file emits many
/// modify events, and the last one is the one worth compiling.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often the folder is rescanned regardless of events.
const RESCAN_EVERY: Duration = Duration::from_secs(30);

/// Watches the plugins folder while alive; dropping it stops watching (and the first scan,
/// if it is still running).
pub struct Watcher {
    _watcher: RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
    first_scan: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
        self.first_scan.abort();
    }
}

impl Watcher {
    /// Starts watching, then scans the folder once, so no change falls between the two, and
    /// returns when that scan is done. Must be called from within a tokio runtime.
    ///
    /// # Errors
    /// When the OS watch cannot be set up.
    pub async fn start(registry: Arc<Registry>) -> Result<Self, PluginError> {
        Self::start_within(registry, Duration::MAX).await
    }

    /// [`Watcher::start`], returning after `wait` at most (`plugin_startup_wait`): the first
    /// scan goes on in the background, each plugin not loaded yet showing `compiling`
    /// ([`Registry::mark_folder_starting`]), so a start that must compile many plugins (no
    /// cached artefacts: a first start, a new engine) serves the API meanwhile.
    ///
    /// # Errors
    /// When the OS watch cannot be set up.
    pub async fn start_within(
        registry: Arc<Registry>,
        wait: Duration,
    ) -> Result<Self, PluginError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<notify::Result<Event>>();
        let mut watcher = notify::recommended_watcher(move |result| {
            // The receiver is gone only when the watcher is being dropped.
            let _ = tx.send(result);
        })
        .map_err(|e| PluginError::Io(format!("watching the plugins folder: {e}")))?;
        watcher
            .watch(registry.dir(), RecursiveMode::NonRecursive)
            .map_err(|e| PluginError::Io(format!("watching {}: {e}", registry.dir().display())))?;
        registry.remove_compile_leftovers().await;
        registry.mark_folder_starting().await;
        let mut first_scan = tokio::spawn({
            let registry = registry.clone();
            async move {
                registry.scan().await;
                // Only now that every file was synced: the cache keeps what they use.
                registry.prune().await;
            }
        });
        if tokio::time::timeout(wait, &mut first_scan).await.is_err() {
            let loading = registry.loading_names().len();
            tracing::info!(
                loading,
                "serving while plugins still compile; their deliveries wait for them"
            );
        }
        let task = tokio::spawn(watch(registry, rx));
        Ok(Self {
            _watcher: watcher,
            task,
            first_scan,
        })
    }
}

/// The watch loop: files changed wait in `quiet_at` until no event touched them for
/// [`DEBOUNCE`], then are synced; a dropped event (or an error) rescans the folder.
async fn watch(
    registry: Arc<Registry>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<notify::Result<Event>>,
) {
    let mut rescan = tokio::time::interval(RESCAN_EVERY);
    rescan.tick().await;
    let mut quiet_at: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        let next = quiet_at.values().min().copied();
        tokio::select! {
            event = rx.recv() => match event {
                Some(Ok(event)) if event.need_rescan() => registry.scan().await,
                Some(Ok(event)) => {
                    let at = Instant::now() + DEBOUNCE;
                    for name in changed_names(&event) {
                        quiet_at.insert(name, at);
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "plugin folder watch reported an error; rescanning");
                    registry.scan().await;
                }
                None => break,
            },
            () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                let mut quiet = Vec::new();
                quiet_at.retain(|name, at| {
                    let waiting = *at > now;
                    if !waiting {
                        quiet.push(name.clone());
                    }
                    waiting
                });
                for name in quiet {
                    registry.sync_file(&name).await;
                }
            }
            _ = rescan.tick() => registry.scan().await,
        }
    }
}

/// The plugin names an event may have changed.
fn changed_names(event: &Event) -> Vec<String> {
    if !may_change_a_file(&event.kind) {
        return Vec::new();
    }
    event.paths.iter().filter_map(|p| name_of_path(p)).collect()
}

/// Whether an event may mean a file's content, name or permissions changed. Access events
/// other than closing a file that was open for writing are reads.
fn may_change_a_file(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Other => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify_debouncer_full::notify::event::{CreateKind, ModifyKind};

    #[test]
    fn reads_are_not_changes() {
        for read in [
            AccessKind::Open(AccessMode::Read),
            AccessKind::Open(AccessMode::Any),
            AccessKind::Read,
            AccessKind::Close(AccessMode::Read),
            AccessKind::Any,
        ] {
            assert!(!may_change_a_file(&EventKind::Access(read)), "{read:?}");
        }
        assert!(may_change_a_file(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(may_change_a_file(&EventKind::Create(CreateKind::File)));
        assert!(may_change_a_file(&EventKind::Modify(ModifyKind::Any)));
    }
}
