//! Decoding any supported image file to 8-bit RGB, like PIL's `Image.open(p).convert('RGB')`:
//! grayscale is replicated, palettes expanded, 16-bit scaled down, alpha dropped.
//!
//! Dimensions and allocations are capped, so a small file that claims a gigantic image (a
//! decompression bomb) is refused instead of exhausting memory.

use image::{ImageReader, Limits, RgbImage};
use std::path::Path;

/// Largest accepted width or height.
pub const MAX_SIDE: u32 = 16_384;
/// Largest allocation the decoder may make for one image.
pub const MAX_ALLOC: u64 = 1 << 30;

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    limits
}

/// Decodes `path`; the error string says why the file is unusable. Like PIL's `open().convert`,
/// EXIF orientation is *not* applied (the official training code does not apply it either).
pub fn decode_rgb(path: &Path) -> Result<RgbImage, String> {
    // Only regular files: a FIFO named like an image would block the read forever.
    let file = crate::files::open_regular(path).map_err(|e| format!("cannot open: {e}"))?;
    let reader = ImageReader::new(std::io::BufReader::new(file));
    let mut reader = reader.with_guessed_format().map_err(|e| format!("cannot read: {e}"))?;
    reader.limits(limits());
    if reader.format().is_none() {
        return Err("not a recognised image format".into());
    }
    let image = reader.decode().map_err(|e| format!("cannot decode: {e}"))?;
    if image.width() == 0 || image.height() == 0 {
        return Err("image has zero width or height".into());
    }
    Ok(image.to_rgb8())
}

/// Decodes an in-memory file to RGB with its EXIF orientation applied (for dataset preparation,
/// where a photo should come out the way a viewer shows it).
pub fn decode_rgb_oriented(bytes: &[u8]) -> Result<RgbImage, String> {
    use image::ImageDecoder;
    let mut reader =
        ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| format!("cannot read: {e}"))?;
    reader.limits(limits());
    if reader.format().is_none() {
        return Err("not a recognised image format".into());
    }
    let mut decoder = reader.into_decoder().map_err(|e| format!("cannot decode: {e}"))?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = image::DynamicImage::from_decoder(decoder).map_err(|e| format!("cannot decode: {e}"))?;
    if image.width() == 0 || image.height() == 0 {
        return Err("image has zero width or height".into());
    }
    image.apply_orientation(orientation);
    Ok(image.to_rgb8())
}
