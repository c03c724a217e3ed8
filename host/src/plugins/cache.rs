//! The compile cache: artefacts this service compiled, kept in a folder so a restart does not
//! compile again. Loading an artefact runs its native code, so each one is trusted only if
//! its sha256 matches the digest recorded when it was written, kept where only the service
//! writes (the database, through [`ArtefactDigests`]); anything else is compiled again. Only
//! accepted components (world check passed) are written, and [`Cache::prune`] drops what no
//! loaded version uses.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where artefact digests are kept (the service uses its database). Keys are the component's
/// version (sha256 of its bytes) and the engine's compatibility hash; values the sha256 (hex)
/// of the artefact's bytes.
pub trait ArtefactDigests: Send + Sync {
    /// The recorded digest, if any.
    fn get<'a>(
        &'a self,
        version: &'a str,
        engine: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// Records (or replaces) a digest.
    fn put<'a>(
        &'a self,
        version: &'a str,
        engine: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Forgets every digest except those of `versions` for `engine`.
    fn retain<'a>(
        &'a self,
        engine: &'a str,
        versions: &'a [String],
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Digests kept in memory, for embedders without a database (tests, benchmarks): artefacts
/// written by an earlier process are never trusted.
#[derive(Debug, Default)]
pub struct MemoryDigests(Mutex<HashMap<(String, String), String>>);

impl ArtefactDigests for MemoryDigests {
    fn get<'a>(
        &'a self,
        version: &'a str,
        engine: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let found = map.get(&(version.to_owned(), engine.to_owned())).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn put<'a>(
        &'a self,
        version: &'a str,
        engine: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((version.to_owned(), engine.to_owned()), sha256.to_owned());
        Box::pin(async { Ok(()) })
    }

    fn retain<'a>(
        &'a self,
        engine: &'a str,
        versions: &'a [String],
    ) -> BoxFuture<'a, Result<(), String>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(v, e), _| e == engine && versions.contains(v));
        Box::pin(async { Ok(()) })
    }
}

/// An artefact in the cache whose bytes matched the digest recorded for them.
#[derive(Debug, Clone)]
pub(super) struct Cached {
    path: Arc<Path>,
    sha256: Arc<str>,
    /// The largest artefact worth reading.
    max_bytes: u64,
}

/// The cache folder and its digests.
#[derive(Clone)]
pub struct Cache {
    dir: Arc<Path>,
    digests: Arc<dyn ArtefactDigests>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache in `dir` (created if missing, private to the service's user) with digests kept
    /// in `digests`.
    pub fn new(dir: impl Into<PathBuf>, digests: Arc<dyn ArtefactDigests>) -> Self {
        Self {
            dir: Arc::from(dir.into()),
            digests,
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, version: &str, engine: &str) -> PathBuf {
        self.dir.join(format!("{version}-{engine}.cwasm"))
    }

    /// The artefact of `version` for `engine`, if one is cached and its bytes are the ones
    /// recorded (hashed in chunks: nothing is kept in memory). A mismatch is logged and treated
    /// as a miss (the caller compiles again).
    pub(super) async fn find(&self, version: &str, engine: &str, max_bytes: u64) -> Option<Cached> {
        let path = self.path(version, engine);
        let file = path.clone();
        let actual = tokio::task::spawn_blocking(move || digest_bounded(&file, max_bytes))
            .await
            .ok()?
            .ok()??;
        match self.digests.get(version, engine).await {
            Ok(Some(recorded)) if recorded == actual => Some(Cached {
                path: Arc::from(path),
                sha256: Arc::from(actual),
                max_bytes,
            }),
            Ok(recorded) => {
                tracing::warn!(
                    path = %path.display(),
                    recorded = recorded.as_deref().unwrap_or("none"),
                    actual,
                    "compiled plugin in the cache is not the one this service wrote; compiling again"
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read plugin artefact digests; compiling again");
                None
            }
        }
    }

    /// Loads `cached`'s artefact for `engine`, once the bytes read still hash to the digest
    /// checked when it was found (blocking: call off the async workers). The code runs from
    /// a copy in memory, never from a mapping of the file: what was checked is what runs, and
    /// a file changed in place later cannot reach it (nor fault it with `SIGBUS`).
    ///
    /// # Errors
    /// The file is gone, changed, or wasmtime refuses it.
    pub(super) fn open(&self, cached: &Cached, engine: &Engine) -> Result<Component, String> {
        let path: &Path = &cached.path;
        let bytes = match read_bounded(path, cached.max_bytes) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(format!("{} is gone", path.display())),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let actual = hex::encode(Sha256::digest(&bytes));
        if *actual != *cached.sha256 {
            return Err(format!(
                "{} changed since it was checked (sha256 {actual})",
                path.display()
            ));
        }
        // SAFETY: these bytes hash to the digest recorded when this service wrote them, in
        // the database, where only the service writes; the cache folder and the data folder
        // holding it refuse to serve when others can write them. wasmtime copies them into
        // memory of its own and still checks its version and settings.
        #[allow(unsafe_code)]
        unsafe { Component::deserialize(engine, &bytes) }.map_err(|e| format!("{e:#}"))
    }

    /// Writes an accepted component's artefact and records its digest; returns it as cached,
    /// or `None` when it could not be written or recorded (logged).
    pub(super) async fn put(
        &self,
        version: &str,
        engine: &str,
        artefact: bytes::Bytes,
    ) -> Option<Cached> {
        let digest = hex::encode(Sha256::digest(&artefact));
        let max_bytes = u64::try_from(artefact.len()).unwrap_or(u64::MAX);
        let (dir, path) = (self.dir.clone(), self.path(version, engine));
        let written = tokio::task::spawn_blocking(move || {
            super::folder::write_atomically(&dir, &path, &artefact)
        })
        .await;
        match written {
            Ok(Ok(())) => match self.digests.put(version, engine, &digest).await {
                Ok(()) => Some(Cached {
                    path: Arc::from(self.path(version, engine)),
                    sha256: Arc::from(digest),
                    max_bytes,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "could not record a plugin artefact digest");
                    None
                }
            },
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not write a plugin cache entry");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not write a plugin cache entry");
                None
            }
        }
    }

    /// Removes every artefact (and digest) but those of `keep` for `engine`.
    pub(super) async fn prune(&self, engine: &str, keep: &[String]) {
        let wanted: Vec<String> = keep.iter().map(|v| format!("{v}-{engine}.cwasm")).collect();
        self.remove_where(move |name| !name.starts_with('.') && !wanted.iter().any(|w| w == name))
            .await;
        if let Err(e) = self.digests.retain(engine, keep).await {
            tracing::warn!(error = %e, "could not prune plugin artefact digests");
        }
    }

    /// Removes the leftovers of compiles a crash interrupted (`.compile-*`): at start, before
    /// anything compiles.
    pub(super) async fn remove_leftovers(&self) {
        self.remove_where(|name| name.starts_with('.')).await;
    }

    /// Removes the cache folder's entries whose name is `stale`.
    async fn remove_where(&self, stale: impl Fn(&str) -> bool + Send + 'static) {
        let dir = self.dir.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let mut removed = 0_usize;
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return removed;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if stale(&name) {
                    let path = entry.path();
                    let gone = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    removed += usize::from(gone.is_ok());
                }
            }
            removed
        })
        .await
        .unwrap_or(0);
        if removed > 0 {
            tracing::info!(removed, "pruned the plugin compile cache");
        }
    }
}

/// The file's bytes, `None` when it does not exist, is not a regular file, or is larger than
/// `max_bytes`.
fn read_bounded(path: &Path, max_bytes: u64) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() <= max_bytes => std::fs::read(path).map(Some),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The sha256 (hex) of the file, read in chunks; `None` when it does not exist, is not a
/// regular file, or is larger than `max_bytes`.
fn digest_bounded(path: &Path, max_bytes: u64) -> std::io::Result<Option<String>> {
    use std::io::Read;
    // Checked before opening: opening a FIFO would wait for a writer.
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() <= max_bytes => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; 64 << 10];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(buffer.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(hex::encode(hasher.finalize())))
}
