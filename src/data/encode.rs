//! Writing 8-bit RGB images as PNG files (prepared datasets, the demo's domains).
//!
//! The image is encoded in memory, then written through [`crate::files::write_replacing`]: a
//! write that fails (a full disk) is an error naming the file, never a truncated PNG left under
//! its final name.

use crate::{Error, Result};
use image::{ImageFormat, RgbImage};
use std::path::Path;

/// Writes `img` to `path` as a PNG, replacing `path` only once the whole file is written.
pub fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, ImageFormat::Png)
        .map_err(|e| Error::internal(format!("cannot encode {} as PNG: {e}", path.display())))?;
    crate::files::write_replacing(path, bytes.get_ref())
}
