//! Opening user-named files without ever blocking: a FIFO, socket or device named like an image
//! or a checkpoint would make a plain `File::open` (or the first read) wait forever, beyond the
//! reach of Ctrl-C. Every file the crate reads goes through [`open_regular`].

use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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
}
