//! Finding the images of a domain folder: recursive, sorted, by extension (any case).

use crate::{Error, Result};
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
    if !dir.is_dir() {
        let message = if dir.exists() { "is not a folder" } else { "folder not found" };
        return Err(Error::NotFound { path: dir.to_path_buf(), message: message.into() });
    }
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|source| Error::Io { path: folder.clone(), source })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if has_image_extension(&path) {
                found.push(path);
            }
        }
    }
    if found.is_empty() {
        return Err(Error::NotFound {
            path: dir.to_path_buf(),
            message: format!("no images ({}) in this folder", IMAGE_EXTENSIONS.join(", ")),
        });
    }
    found.sort();
    Ok(found)
}
