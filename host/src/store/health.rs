//! Whether the store can still keep what it acknowledges: the database file at its path is
//! the one opened (not deleted or replaced while running — commits to an unlinked file vanish
//! at the next start), the disk has room, and the writer can commit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Store, StoreError};

/// How long a probe's answer is reused: health checks may come often and from several
/// places, and each probe is a durable (fsynced) write.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long the writer may take to commit the probe before the store counts as unavailable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Free space below which the disk counts as full: room for at least one more batch.
pub(crate) const MIN_FREE_BYTES: u64 = 1 << 20;

/// The database file's identity (device and inode) when it was opened.
#[derive(Debug)]
pub(super) struct DatabaseFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl DatabaseFile {
    /// Records the identity of the file at `path`, just opened.
    pub(super) fn opened(path: &Path) -> Result<Self, StoreError> {
        let identity = identity(path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        Ok(Self {
            path: path.to_owned(),
            identity,
        })
    }

    /// Fails when the file at the path is gone or is another file than the one opened.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        let Some(opened) = self.identity else {
            return Ok(());
        };
        match identity(&self.path) {
            Ok(Some(now)) if now == opened => Ok(()),
            Ok(_) | Err(_) => Err(StoreError::Unavailable(format!(
                "the database file {} was deleted or replaced while the service was running; nothing written since can be kept: restore it and restart the service",
                self.path.display()
            ))),
        }
    }

    /// Bytes free for the service on the database's file system, if known.
    fn free_bytes(&self) -> Option<u64> {
        #[cfg(unix)]
        {
            let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty());
            let stat = rustix::fs::statvfs(dir.unwrap_or(Path::new("."))).ok()?;
            // Blocks reserved for root are usable when running as root.
            let blocks = if rustix::process::geteuid().is_root() {
                stat.f_bfree
            } else {
                stat.f_bavail
            };
            Some(blocks.saturating_mul(stat.f_frsize))
        }
        #[cfg(not(unix))]
        None
    }
}

#[cfg(unix)]
fn identity(path: &Path) -> std::io::Result<Option<(u64, u64)>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok(Some((meta.dev(), meta.ino())))
}

#[cfg(not(unix))]
fn identity(_path: &Path) -> std::io::Result<Option<(u64, u64)>> {
    Ok(None)
}

/// The last probe and when it ran; the lock also makes concurrent checks share one probe.
#[derive(Debug, Default)]
pub(super) struct Probe {
    last: Mutex<Option<(Instant, Result<(), Fault>)>>,
}

/// A probe's failure, kept to answer the checks that come within [`PROBE_EVERY`].
#[derive(Debug, Clone)]
enum Fault {
    Full,
    Unavailable(String),
}

impl From<Fault> for StoreError {
    fn from(fault: Fault) -> Self {
        match fault {
            Fault::Full => Self::Full,
            Fault::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

impl Probe {
    /// A write just failed on the storage itself: checks see it at once rather than after
    /// the last probe's answer expires (the next probe, a second on, may find it mended).
    pub(super) fn saw(&self, err: &StoreError) {
        let fault = match err {
            StoreError::Full => Fault::Full,
            StoreError::Unavailable(why) => Fault::Unavailable(why.clone()),
            _ => return,
        };
        if let Ok(mut last) = self.last.try_lock() {
            *last = Some((Instant::now(), Err(fault)));
        }
    }
}

impl Store {
    /// Whether the store can keep what it acknowledges: the database file is the one opened,
    /// at least [`MIN_FREE_BYTES`] are free, and a small durable write commits. Probes at most
    /// once a second; checks in between get the last answer.
    ///
    /// # Errors
    /// [`StoreError::Full`] or [`StoreError::Unavailable`] with the reason.
    pub async fn health(&self) -> Result<(), StoreError> {
        let mut last = self.health.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < PROBE_EVERY
        {
            return result.clone().map_err(StoreError::from);
        }
        let result = self.probe().await;
        *last = Some((Instant::now(), result.clone()));
        result.map_err(StoreError::from)
    }

    async fn probe(&self) -> Result<(), Fault> {
        let fault = |e: StoreError| match e {
            StoreError::Full => Fault::Full,
            other => Fault::Unavailable(other.to_string()),
        };
        self.file.check().map_err(fault)?;
        if self
            .file
            .free_bytes()
            .is_some_and(|free| free < MIN_FREE_BYTES)
        {
            return Err(Fault::Full);
        }
        let write = self.write(|conn| {
            conn.prepare_cached(
                "INSERT INTO settings (key, value) VALUES ('health_probe', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([super::now_ms().to_string()])?;
            Ok(())
        });
        match tokio::time::timeout(PROBE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(StoreError::Closed)) => Err(Fault::Unavailable("shutting down".into())),
            Ok(Err(e)) => Err(fault(self.refine(e))),
            Err(_) => Err(Fault::Unavailable(format!(
                "the database did not commit within {PROBE_TIMEOUT:?}"
            ))),
        }
    }

    /// A storage failure, told apart as a full disk when the disk has no room (SQLite reports
    /// some writes that ran out of space as plain I/O errors).
    pub(crate) fn refine(&self, err: StoreError) -> StoreError {
        match err {
            StoreError::Unavailable(_)
                if self
                    .file
                    .free_bytes()
                    .is_some_and(|free| free < MIN_FREE_BYTES) =>
            {
                StoreError::Full
            }
            other => other,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deleted_or_replaced_database_file_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = Store::open(&path).await.unwrap();
        store.health().await.unwrap();
        assert!(store.set_setting_once("a", "1").await.unwrap());
        std::fs::rename(&path, dir.path().join("moved.sqlite")).unwrap();
        std::fs::write(&path, b"another file").unwrap();
        let err = store.set_setting_once("b", "2").await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Unavailable(why) if why.contains("deleted or replaced")),
            "{err}"
        );
        // The probe's answer is reused for a second; a fresh store has none yet.
        let fresh = Store {
            health: Arc::default(),
            ..store.clone()
        };
        assert!(matches!(
            fresh.health().await,
            Err(StoreError::Unavailable(_))
        ));
        store.close().await;
    }

    use std::sync::Arc;
}
