//! Reading and writing user-named files safely.
//!
//! Reading never blocks: a FIFO, socket or device named like an image or a checkpoint would make
//! a plain `File::open` (or the first read) wait forever, beyond the reach of Ctrl-C. Every file
//! the crate reads goes through [`open_regular`].
//!
//! Writing never leaves a half-written file under the final name: a full disk, a quota or a kill
//! mid-write would otherwise leave a truncated image or checkpoint that looks finished. Files are
//! written to [`temporary_beside`] their destination and renamed over it when complete.

use crate::{Error, Result};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Opens `path` for reading if it is a regular file (symbolic links are followed). Opening is
/// non-blocking, so a FIFO is refused instead of waiting for a writer.
pub fn open_regular(path: &Path) -> Result<File> {
    let file =
        OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(|source| {
            match source.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::NotFound { path: path.to_path_buf(), message: "file not found".into() }
                }
                _ => Error::Io { path: path.to_path_buf(), source },
            }
        })?;
    let meta = file.metadata().map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "a folder" } else { "not a regular file (a FIFO, socket or device?)" };
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("is {what}")),
        });
    }
    Ok(file)
}

/// Reads a whole regular file (see [`open_regular`]).
pub fn read_regular(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    Ok(bytes)
}

/// `path` made absolute with its symbolic links resolved as far as it exists, like Python's
/// `os.path.realpath`: a folder still to be created under a link is where the link points, so
/// overlap checks between folders cannot be fooled by a link.
pub fn resolved(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = path.as_path();
    let mut missing = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return missing.iter().rev().fold(real, |resolved, name| resolved.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                existing = parent;
            }
            _ => return path, // `..` at the end, or nothing exists: as given
        }
    }
}

/// Longest part of the destination's name kept in a temporary name: file names are limited to
/// 255 bytes, and a destination near that limit must still get a temporary name.
const TEMPORARY_PREFIX_BYTES: usize = 64;

/// A temporary name in `path`'s folder to write to before renaming over `path` (a rename within
/// one folder is atomic): hidden, starting with the destination's name, unique to this process
/// and call.
pub fn temporary_beside(path: &Path) -> PathBuf {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{}.tmp-{}-{call}", cut(&name, TEMPORARY_PREFIX_BYTES), std::process::id()))
}

/// The longest start of `name` of at most `max_bytes` that ends at a character boundary: for
/// names built from user-named files, which must stay within the 255-byte limit.
pub fn cut(name: &str, max_bytes: usize) -> &str {
    let mut end = name.len().min(max_bytes);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The id of the process that writes (or wrote) the file `name`, when `name` is one of
/// [`temporary_beside`]'s: `.<prefix>.tmp-<pid>-<call>` (before the call counter existed,
/// `.<prefix>.tmp-<pid>`).
fn temporary_writer(name: &OsStr) -> Option<i32> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (_, tail) = name.to_str()?.strip_prefix('.')?.rsplit_once(".tmp-")?;
    let pid = match tail.split_once('-') {
        Some((pid, call)) if digits(call) => pid,
        Some(_) => return None,
        None => tail,
    };
    if digits(pid) {
        pid.parse().ok()
    } else {
        None
    }
}

/// Whether process `pid` may still be writing. Only a definite "no such process" counts as gone:
/// another user's process, or an id that is not a single process's, is not ours to judge.
fn writer_alive(pid: i32) -> bool {
    if pid <= 0 {
        return true; // kill() would address a process group
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Deletes the temporary files in `dir` whose writing process is gone: what a process killed
/// in the middle of a write leaves (up to a whole checkpoint, never reused). A living writer's
/// file, and anything not named by [`temporary_beside`], is left alone. Returns how many files
/// and bytes were removed; a missing `dir` holds none.
pub fn remove_stale_temporaries(dir: &Path) -> Result<(usize, u64)> {
    let io = |source| Error::Io { path: dir.to_path_buf(), source };
    let entries = match std::fs::read_dir(dir) {
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        entries => entries.map_err(io)?,
    };
    let (mut removed, mut freed) = (0, 0);
    for entry in entries {
        let entry = entry.map_err(io)?;
        let Some(pid) = temporary_writer(&entry.file_name()) else { continue };
        // `DirEntry::metadata` does not follow a symbolic link: a link is not ours.
        let size = match entry.metadata() {
            Ok(meta) if meta.is_file() && !writer_alive(pid) => meta.len(),
            _ => continue,
        };
        match std::fs::remove_file(entry.path()) {
            Ok(()) => (removed, freed) = (removed + 1, freed + size),
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => {} // another cleaner was first
            Err(source) => return Err(Error::Io { path: entry.path(), source }),
        }
    }
    Ok((removed, freed))
}

/// Writes `bytes` to `path`, replacing it only once they are all written; on failure (a full
/// disk: `ENOSPC`) the temporary file is removed and the error names `path`.
pub fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary_beside(path);
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io { path: path.to_path_buf(), source }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_folders_are_refused_at_once() {
        let dir = std::env::temp_dir().join(format!("ugatit-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("x.png");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let err = open_regular(&fifo).unwrap_err().to_string();
        assert!(err.contains("x.png") && err.contains("not a regular file"), "{err}");
        assert!(open_regular(&dir).unwrap_err().to_string().contains("folder"));
        assert!(matches!(open_regular(&dir.join("missing")), Err(Error::NotFound { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resolved_follows_links_to_folders_that_do_not_exist_yet() {
        let dir = std::env::temp_dir().join(format!("ugatit-resolved-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("real")).unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).unwrap();
        let real = std::fs::canonicalize(dir.join("real")).unwrap();
        assert_eq!(resolved(&dir.join("link/new/deeper")), real.join("new/deeper"));
        assert_eq!(resolved(&dir.join("link")), real);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names_are_parsed_back_and_only_a_dead_writers_are_removed() {
        let dir = std::env::temp_dir().join(format!("ugatit-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mine = temporary_beside(&dir.join("ckpt.safetensors"));
        assert_eq!(temporary_writer(mine.file_name().unwrap()), Some(std::process::id() as i32));
        for (name, writer) in [
            (".a.png.tmp-12-3", Some(12)),
            (".a.tmp-b.tmp-7", Some(7)), // the older scheme, without the call counter
            (".a.png.tmp-12-x", None),
            (".a.png.tmp--3", None),
            (".a.png.tmp-+5-1", None),
            ("a.png.tmp-12-3", None), // not hidden
            (".a.png", None),
        ] {
            assert_eq!(temporary_writer(OsStr::new(name)), writer, "{name}");
        }
        // A child that has exited and been reaped: its id names no process (ids are not reused
        // this quickly).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir.join(format!(".ckpt.safetensors.tmp-{dead}-0"));
        std::fs::write(&stale, b"partial").unwrap();
        std::fs::write(&mine, b"being written").unwrap();
        std::fs::write(dir.join(".notes.tmp-x"), b"a user's").unwrap();
        std::os::unix::fs::symlink(&mine, dir.join(format!(".link.tmp-{dead}-1"))).unwrap();
        assert_eq!(remove_stale_temporaries(&dir).unwrap(), (1, 7));
        assert!(!stale.exists() && mine.exists() && dir.join(".notes.tmp-x").exists());
        assert!(dir.join(format!(".link.tmp-{dead}-1")).symlink_metadata().is_ok());
        assert_eq!(remove_stale_temporaries(&dir.join("missing")).unwrap(), (0, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        // A full disk is simulated in tests/test_sturdiness.py (a file size limit in a child
        // process); here: replacing works, and a failure names the destination.
        let dir = std::env::temp_dir().join(format!("ugatit-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("x.png");
        write_replacing(&target, b"first").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"first");
        write_replacing(&target, b"second").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"second");
        let long = dir.join(format!("{}.png", "é".repeat(125))); // 254 bytes, at the limit
        write_replacing(&long, b"long").unwrap();
        assert_eq!(std::fs::read(&long).unwrap(), b"long");
        std::fs::remove_file(&long).unwrap();
        let missing = dir.join("no-such-folder").join("y.png");
        let err = write_replacing(&missing, b"z").unwrap_err();
        assert!(matches!(&err, Error::Io { path, .. } if path == &missing), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "only x.png, no temporary file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
