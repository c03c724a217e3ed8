//! Hot reload: a debounced watch on the plugins folder that syncs changed files into the
//! registry, plus a periodic rescan as a backstop for events the OS drops.
//!
//! Only events that can change a file's content or name count: opening, reading and closing
//! a file without writing (the registry's own reads among them) are ignored, or every read
//! would trigger the next one. The rescan reads nothing that did not change.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::event::{AccessKind, AccessMode};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use super::folder::name_of_path;
use super::{PluginError, Registry};

/// How long a file must be quiet before it is (re)loaded: a `cp` of a large file emits many
/// modify events, and the last one is the one worth compiling.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often the folder is rescanned regardless of events.
const RESCAN_EVERY: Duration = Duration::from_secs(30);

/// Watches the plugins folder while alive; dropping it stops watching.
pub struct Watcher {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    /// Starts watching, then scans the folder once, so no change falls between the two.
    /// Must be called from within a tokio runtime.
    ///
    /// # Errors
    /// When the OS watch cannot be set up.
    pub async fn start(registry: Arc<Registry>) -> Result<Self, PluginError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<DebounceEventResult>();
        let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
            // The receiver is gone only when the watcher is being dropped.
            let _ = tx.send(result);
        })
        .map_err(|e| PluginError::Io(format!("watching the plugins folder: {e}")))?;
        debouncer
            .watch(registry.dir(), RecursiveMode::NonRecursive)
            .map_err(|e| PluginError::Io(format!("watching {}: {e}", registry.dir().display())))?;
        registry.scan().await;
        registry.prune_at_start().await;
        let task = tokio::spawn(async move {
            let mut rescan = tokio::time::interval(RESCAN_EVERY);
            rescan.tick().await;
            loop {
                tokio::select! {
                    Some(result) = rx.recv() => handle(&registry, result).await,
                    _ = rescan.tick() => registry.scan().await,
                    else => break,
                }
            }
        });
        Ok(Self {
            _debouncer: debouncer,
            task,
        })
    }
}

async fn handle(registry: &Registry, result: DebounceEventResult) {
    let events = match result {
        Ok(events) => events,
        Err(errors) => {
            tracing::warn!(?errors, "plugin folder watch reported errors; rescanning");
            return registry.scan().await;
        }
    };
    if events.iter().any(|e| e.need_rescan()) {
        return registry.scan().await;
    }
    let names: BTreeSet<String> = events
        .iter()
        .filter(|e| may_change_a_file(&e.kind))
        .flat_map(|e| e.paths.iter())
        .filter_map(|p| name_of_path(p))
        .collect();
    for name in names {
        registry.sync_file(&name).await;
    }
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
