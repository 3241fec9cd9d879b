//! Finding the images of a domain folder: recursive, sorted, by extension (any case).
//!
//! Only regular files count as images (a FIFO named `x.png` would block the first read
//! forever). Symbolic links are followed, but each folder is visited once, identified by its
//! device and inode, so a link loop (`trainA/loop -> .`) neither repeats images nor hangs.

use crate::{Error, Result};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The official loader's extensions plus tiff and webp.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "ppm", "pgm", "tif", "tiff", "webp"];

pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// Every image file under `dir`, recursively, sorted by path. Errors name the folder when it is
/// missing, not a folder, or holds no image.
pub fn scan_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let found = scan_images_excluding(dir, &[])?;
    if found.is_empty() {
        return Err(Error::NotFound {
            path: dir.to_path_buf(),
            message: format!("no images ({}) in this folder", IMAGE_EXTENSIONS.join(", ")),
        });
    }
    Ok(found)
}

/// Like [`scan_images`], without descending into the folders of `excluded` (which must exist),
/// and returning an empty list rather than an error when nothing is found.
pub fn scan_images_excluding(dir: &Path, excluded: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        let message = if dir.exists() { "is not a folder" } else { "folder not found" };
        return Err(Error::NotFound { path: dir.to_path_buf(), message: message.into() });
    }
    let identity = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let mut visited: HashSet<(u64, u64)> = excluded.iter().filter_map(|p| identity(p)).collect();
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        match identity(&folder) {
            Some(id) if visited.insert(id) => {}
            _ => continue, // seen already (a link loop or an excluded folder), or vanished
        }
        let entries = std::fs::read_dir(&folder).map_err(|source| Error::Io { path: folder.clone(), source })?;
        for entry in entries.flatten() {
            let path = entry.path();
            // Follows symbolic links; a dangling link has no metadata and is ignored.
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file() && has_image_extension(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_loops_and_fifos_are_not_images() {
        let dir = std::env::temp_dir().join(format!("ugatit-scan-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.png"), b"x").unwrap();
        std::fs::write(dir.join("sub/b.JPG"), b"x").unwrap();
        std::os::unix::fs::symlink(".", dir.join("loop")).unwrap();
        std::os::unix::fs::symlink("..", dir.join("sub/up")).unwrap();
        let fifo = std::ffi::CString::new(dir.join("f.png").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let found = scan_images(&dir).unwrap();
        assert_eq!(found, vec![dir.join("a.png"), dir.join("sub/b.JPG")]);
        assert!(scan_images_excluding(&dir, &[dir.join("sub")]).unwrap() == vec![dir.join("a.png")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
