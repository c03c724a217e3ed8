//! Uploads that compile off the request. An upload is checked for what is cheap to check (size,
//! header, instance shape, limits), written durably to `<data dir>/plugin-uploads/`, and
//! compiled by a task of its own; the request waits for it only so long (`plugin_upload_wait`,
//! or to the end with `?wait=true`), then answers `202` with `status: "compiling"`. The last
//! good version serves meanwhile; the plugin becomes `ready`, or `error` with the reason. A
//! staged upload outlives a crash or a stop: the next start compiles it.
//!
//! A staged file is one JSON header line (name, version, the plugin's own limits) followed by
//! the component's bytes, written in one go (temp file, fsync, rename), so it is whole or absent.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::folder::write_atomically;
use super::load::version_of;
use super::registry::valid_name;
use super::{PluginError, PluginInfo, PluginLimits, Registry};

/// What an upload came to.
#[derive(Debug)]
pub enum Upload {
    /// Compiled and serving (or refused: then the call returned the error).
    Done {
        /// The plugin now.
        info: PluginInfo,
        /// Whether the name is new.
        created: bool,
    },
    /// Staged and compiling; the last good version serves meanwhile.
    Compiling(PluginInfo),
}

/// Where the result of an install started off the request arrives.
type Installing = tokio::sync::oneshot::Receiver<Result<(PluginInfo, bool), PluginError>>;

/// The header line of a staged upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    name: String,
    version: String,
    #[serde(default)]
    limits: PluginLimits,
}

/// The folder staged uploads wait in.
#[derive(Debug, Clone)]
pub(super) struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// Staging in `dir` (created private if missing).
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub(super) fn new(dir: PathBuf) -> Result<Self, PluginError> {
        super::runtime::create_private_dir(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, name: &str, version: &str) -> PathBuf {
        self.dir.join(format!("{name}.{version}.upload"))
    }

    /// Writes the upload durably; returns its path.
    async fn stage(&self, header: &Header, bytes: &Bytes) -> Result<PathBuf, PluginError> {
        let path = self.path(&header.name, &header.version);
        let mut content = serde_json::to_vec(header).map_err(|e| PluginError::Io(e.to_string()))?;
        content.push(b'\n');
        content.extend_from_slice(bytes);
        let (dir, target) = (self.dir.clone(), path.clone());
        tokio::task::spawn_blocking(move || write_atomically(&dir, &target, &content))
            .await
            .map_err(|e| PluginError::Io(e.to_string()))?
            .map_err(|e| PluginError::Io(format!("staging the upload: {e}")))?;
        Ok(path)
    }

    /// The newest staged upload of each name; older ones of the same name (superseded before
    /// they compiled) and files that are not uploads are removed.
    fn newest(&self) -> Vec<PathBuf> {
        let mut found: Vec<(String, std::time::SystemTime, PathBuf)> = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".upload"))
                .and_then(|n| n.split_once('.'))
                .map(|(name, _)| name.to_owned())
                .filter(|name| valid_name(name));
            let modified = entry.metadata().and_then(|m| m.modified());
            match (name, modified) {
                (Some(name), Ok(modified)) => found.push((name, modified, path)),
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        found.sort();
        let mut newest: Vec<(String, PathBuf)> = Vec::new();
        for (name, _, path) in found {
            match newest.last_mut() {
                Some((last, older)) if *last == name => {
                    let _ = std::fs::remove_file(&*older);
                    *older = path;
                }
                _ => newest.push((name, path)),
            }
        }
        newest.into_iter().map(|(_, path)| path).collect()
    }
}

/// Reads a staged upload, at most `limit` bytes of component.
fn read_staged(path: &Path, limit: usize) -> Result<(Header, Bytes), PluginError> {
    let io = |e: std::io::Error| PluginError::Io(format!("{}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(4096)
        .read_until(b'\n', &mut line)
        .map_err(io)?;
    let header: Header = serde_json::from_slice(&line)
        .map_err(|e| PluginError::Io(format!("{}: bad header: {e}", path.display())))?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok((header, Bytes::from(bytes)))
}

impl Registry {
    /// Uploads `bytes` as `name` with its own `limits`: checks what is cheap to check, stages
    /// the bytes durably, and compiles them in a task of their own, holding `turn` (so
    /// uploads in memory stay bounded) until it is done. Waits for the result at most `wait`
    /// (`None`: to the end); past that, answers [`Upload::Compiling`].
    ///
    /// # Errors
    /// What the cheap checks refuse at once; with the result awaited, whatever
    /// [`Registry::install`] refuses.
    pub async fn upload(
        self: &Arc<Self>,
        name: &str,
        bytes: Bytes,
        limits: PluginLimits,
        wait: Option<Duration>,
        turn: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Upload, PluginError> {
        if !valid_name(name) {
            return Err(PluginError::InvalidName(name.to_owned()));
        }
        self.runtime().precheck(&bytes, limits).await?;
        let header = Header {
            name: name.to_owned(),
            version: version_of(bytes.clone()).await?,
            limits,
        };
        let staged = match self.staging() {
            Some(staging) => Some(staging.stage(&header, &bytes).await?),
            None => None,
        };
        let (mut done, compiling) = self.spawn_install(header, bytes, staged, turn);
        let result = match wait {
            None => done.await,
            // Not even a result that is known at once (a version that failed before): the
            // caller asked for `202` as soon as the bytes are stored. The task records it.
            Some(wait) if wait.is_zero() => return Ok(Upload::Compiling(compiling)),
            Some(wait) => match tokio::time::timeout(wait, &mut done).await {
                Ok(result) => result,
                Err(_elapsed) => {
                    // From here on the task records its own failure; a result that came in
                    // just now is still taken.
                    done.close();
                    match done.try_recv() {
                        Ok(result) => Ok(result),
                        Err(_) => return Ok(Upload::Compiling(compiling)),
                    }
                }
            },
        };
        let (info, created) = result.map_err(|_| PluginError::ShuttingDown)??;
        Ok(Upload::Done { info, created })
    }

    /// Compiles the uploads a stop or a crash left staged (the newest of each name), each
    /// in a task of its own, as [`Registry::upload`] would have.
    pub async fn resume_uploads(self: &Arc<Self>) {
        let Some(staging) = self.staging().cloned() else {
            return;
        };
        let limit = self.runtime().limits().component_bytes;
        let staged = tokio::task::spawn_blocking(move || {
            staging
                .newest()
                .into_iter()
                .map(|path| (read_staged(&path, limit), path))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (read, path) in staged {
            let (header, bytes) = match read {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "dropping a staged plugin upload that cannot be read");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            let Some(turn) = self.wait_for_upload_turn().await else {
                return;
            };
            tracing::info!(plugin = %header.name, version = %header.version, "compiling an upload staged before the restart");
            drop(self.spawn_install(header, bytes, Some(path), turn).0);
        }
    }

    /// Starts the install of a staged upload; the receiver gets its result (when dropped or
    /// closed first, the task records a failure on the plugin instead). Also returns the
    /// plugin as it is once the version shows as compiling (before the task can finish).
    fn spawn_install(
        self: &Arc<Self>,
        header: Header,
        bytes: Bytes,
        staged: Option<PathBuf>,
        turn: tokio::sync::OwnedSemaphorePermit,
    ) -> (Installing, PluginInfo) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let compiling = self.mark_pending(&header.name, &header.version);
        let this = self.clone();
        tokio::spawn(async move {
            let _turn = turn;
            let result = this.install(&header.name, bytes, header.limits).await;
            // A stop leaves the upload staged, for the next start.
            if !matches!(result, Err(PluginError::ShuttingDown))
                && let Some(path) = staged
            {
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
            }
            // Nobody waits for the answer any more: the plugin shows the failure. Recorded
            // before the version stops showing as compiling, so the plugin never vanishes.
            let result = match result {
                Err(err) if tx.is_closed() => {
                    if err != PluginError::ShuttingDown {
                        this.record_failure(&header.name, err);
                    }
                    this.unmark_pending(&header.name, &header.version);
                    return;
                }
                result => result,
            };
            this.unmark_pending(&header.name, &header.version);
            // The status as it is now that this version no longer compiles.
            let result =
                result.map(|(info, created)| (this.info(&header.name).unwrap_or(info), created));
            if let Err(Err(err)) = tx.send(result)
                && err != PluginError::ShuttingDown
            {
                this.record_failure(&header.name, err);
            }
        });
        (rx, compiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn staged_uploads_read_back_and_only_the_newest_of_a_name_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::new(dir.path().join("uploads")).unwrap();
        let header = |name: &str, version: &str| Header {
            name: name.into(),
            version: version.into(),
            limits: PluginLimits {
                memory_mb: Some(64),
                timeout_ms: None,
            },
        };
        let older = staging
            .stage(&header("py", "aaa"), &Bytes::from_static(b"\0asm old"))
            .await
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let newer = staging
            .stage(&header("py", "bbb"), &Bytes::from_static(b"\0asm\nnew"))
            .await
            .unwrap();
        let other = staging
            .stage(&header("js", "ccc"), &Bytes::from_static(b"x"))
            .await
            .unwrap();
        std::fs::write(dir.path().join("uploads/junk"), b"?").unwrap();
        let mut kept = staging.newest();
        kept.sort();
        let mut want = vec![newer.clone(), other];
        want.sort();
        assert_eq!(kept, want);
        assert!(!older.exists() && !dir.path().join("uploads/junk").exists());
        let (read, bytes) = read_staged(&newer, 100).unwrap();
        assert_eq!(read, header("py", "bbb"));
        assert_eq!(&bytes[..], b"\0asm\nnew", "a newline in the bytes is kept");
        let (_, cut) = read_staged(&newer, 3).unwrap();
        assert_eq!(
            cut.len(),
            4,
            "reads one byte past the limit, so the size check refuses it"
        );
    }
}
