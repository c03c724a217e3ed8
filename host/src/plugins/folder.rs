//! The plugins folder, not trusted: only regular files are read (a FIFO, a device or a
//! directory named `x.wasm` is refused without blocking), symbolic links only when they stay
//! inside the folder (unless the operator allows others), the size is checked before reading,
//! and nothing is read twice: a file's [`Fingerprint`] tells whether it changed since.
//!
//! Every function here blocks; callers run them with `spawn_blocking`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{FileType, Mode, OFlags};

use super::PluginError;
use super::registry::valid_name;

/// What identifies one version of a file without reading it: a change of content, a
/// replacement (rename over it) or a `chmod` changes one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    mode: u32,
}

impl Fingerprint {
    fn of(stat: &rustix::fs::Stat) -> Self {
        Self {
            dev: stat.st_dev,
            ino: stat.st_ino,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            mtime: (
                stat.st_mtime,
                i64::try_from(stat.st_mtime_nsec).unwrap_or(0),
            ),
            ctime: (
                stat.st_ctime,
                i64::try_from(stat.st_ctime_nsec).unwrap_or(0),
            ),
            mode: stat.st_mode,
        }
    }
}

/// The folder and how far it is trusted.
#[derive(Debug)]
pub(super) struct Folder {
    dir: PathBuf,
    /// Follow symbolic links that lead out of the folder (`plugins_follow_symlinks`).
    follow_symlinks: bool,
    /// Plugin files opened for reading so far (`switchyard_plugin_file_reads_total`).
    reads: AtomicU64,
}

/// A file's bytes, with the fingerprint it had when it was opened.
pub(super) struct FileRead {
    pub(super) fingerprint: Fingerprint,
    pub(super) bytes: Vec<u8>,
}

impl Folder {
    pub(super) fn new(dir: PathBuf, follow_symlinks: bool) -> Self {
        Self {
            dir,
            follow_symlinks,
            reads: AtomicU64::new(0),
        }
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.wasm"))
    }

    pub(super) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The fingerprint of `<name>.wasm` (of its target, for a link), without opening it;
    /// `None` when there is no such entry.
    ///
    /// # Errors
    /// When the entry exists but cannot be examined.
    pub(super) fn fingerprint(&self, name: &str) -> Result<Option<Fingerprint>, PluginError> {
        let path = self.path_of(name);
        let stat = match rustix::fs::lstat(&path) {
            Ok(stat) => stat,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(io_error(&path, e)),
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink {
            return Ok(Some(Fingerprint::of(&stat)));
        }
        // A link: its target's identity (a dangling link is an entry that cannot be read).
        match rustix::fs::stat(&path) {
            Ok(target) => Ok(Some(Fingerprint::of(&target))),
            Err(_) => Ok(Some(Fingerprint::of(&stat))),
        }
    }

    /// Reads `<name>.wasm` if it is a regular file of at most `limit` bytes.
    ///
    /// # Errors
    /// Anything else in its place (a FIFO, a device, a directory, a link out of the folder),
    /// a file over the limit (refused before reading), or an I/O error.
    pub(super) fn read(&self, name: &str, limit: usize) -> Result<FileRead, PluginError> {
        let path = self.path_of(name);
        let target = self.resolve(&path)?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        // O_NOFOLLOW: the path was resolved above, so a link swapped in since is refused.
        // O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused just below).
        let fd = rustix::fs::open(
            &target,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error(&path, e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| io_error(&path, e))?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind != FileType::RegularFile {
            return Err(PluginError::Io(format!(
                "{} is {}, not a regular file",
                path.display(),
                describe(kind)
            )));
        }
        let size = usize::try_from(stat.st_size).unwrap_or(usize::MAX);
        if size > limit {
            return Err(PluginError::TooLarge { size, limit });
        }
        let mut bytes = Vec::with_capacity(size);
        // One byte more than the limit: a file that grew since the fstat is refused too.
        let limit_plus_one = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        std::fs::File::from(fd)
            .take(limit_plus_one)
            .read_to_end(&mut bytes)
            .map_err(|e| PluginError::Io(format!("{}: {e}", path.display())))?;
        if bytes.len() > limit {
            return Err(PluginError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        Ok(FileRead {
            fingerprint: Fingerprint::of(&stat),
            bytes,
        })
    }

    /// The path to open: `path` itself, or the target of a link that may be followed.
    fn resolve(&self, path: &Path) -> Result<PathBuf, PluginError> {
        let stat = rustix::fs::lstat(path).map_err(|e| io_error(path, e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink {
            return Ok(path.to_owned());
        }
        let target = std::fs::canonicalize(path).map_err(|e| {
            PluginError::Io(format!("{} is a broken symbolic link: {e}", path.display()))
        })?;
        let inside = std::fs::canonicalize(&self.dir).is_ok_and(|dir| target.starts_with(dir));
        if !inside && !self.follow_symlinks {
            return Err(PluginError::Io(format!(
                "{} is a symbolic link to {}, outside the plugins folder (set plugins_follow_symlinks = true to allow that)",
                path.display(),
                target.display()
            )));
        }
        Ok(target)
    }
}

fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Directory => "a directory",
        FileType::Socket => "a socket",
        FileType::Symlink => "a symbolic link",
        _ => "not a file",
    }
}

fn io_error(path: &Path, e: rustix::io::Errno) -> PluginError {
    PluginError::Io(format!("{}: {}", path.display(), std::io::Error::from(e)))
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
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let folder = Folder::new(dir.path().to_owned(), false);
        std::fs::write(folder.path_of("ok"), b"12345").unwrap();
        assert_eq!(folder.read("ok", 5).unwrap().bytes, b"12345");
        assert!(matches!(
            folder.read("ok", 4),
            Err(PluginError::TooLarge { size: 5, limit: 4 })
        ));
        std::fs::create_dir(folder.path_of("dir")).unwrap();
        let err = folder.read("dir", 5).err().unwrap().to_string();
        assert!(err.contains("a directory, not a regular file"), "{err}");
        std::os::unix::fs::symlink("/dev/null", folder.path_of("null")).unwrap();
        let err = folder.read("null", 5).err().unwrap().to_string();
        assert!(err.contains("outside the plugins folder"), "{err}");
        let trusting = Folder::new(dir.path().to_owned(), true);
        let err = trusting.read("null", 5).err().unwrap().to_string();
        assert!(err.contains("a character device"), "{err}");
        std::os::unix::fs::symlink("ok.wasm", folder.path_of("alias")).unwrap();
        assert_eq!(folder.read("alias", 5).unwrap().bytes, b"12345");
        assert_eq!(folder.reads(), 4);
    }

    #[test]
    fn fingerprints_change_with_the_content_not_with_reads() {
        let dir = tempfile::tempdir().unwrap();
        let folder = Folder::new(dir.path().to_owned(), false);
        assert_eq!(folder.fingerprint("p").unwrap(), None);
        std::fs::write(folder.path_of("p"), b"one").unwrap();
        let first = folder.fingerprint("p").unwrap().unwrap();
        folder.read("p", 10).unwrap();
        assert_eq!(folder.fingerprint("p").unwrap(), Some(first));
        std::fs::write(folder.path_of("p"), b"two!").unwrap();
        assert_ne!(folder.fingerprint("p").unwrap(), Some(first));
    }
}
