//! The official image transforms (docs/architecture.md §6), producing normalised CHW float32 in [-1, 1].
//! - train: RandomHorizontalFlip(0.5) → Resize((s+30, s+30)) → RandomCrop(s)
//! - test:  Resize((s, s))
//!
//! U-GAT-IT resizes bilinearly; CycleGAN (its `resize_and_crop`, 286 then 256) bicubically.
//! Resizing ignores the aspect ratio, like both official codes.

use super::rng::Rng;
use image::imageops::{self, FilterType};
use image::RgbImage;

/// How much larger than `img_size` the train transform resizes before cropping.
pub const CROP_MARGIN: u32 = 30;

/// Appends `img` as CHW floats normalised like `ToTensor()` + `Normalize(0.5, 0.5)`.
pub fn push_normalized(img: &RgbImage, out: &mut Vec<f32>) {
    let (w, h) = img.dimensions();
    let raw = img.as_raw();
    let plane = (w * h) as usize;
    let start = out.len();
    out.resize(start + 3 * plane, 0.0);
    for (i, px) in raw.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[start + c * plane + i] = (px[c] as f32 / 255.0 - 0.5) / 0.5;
        }
    }
}

/// The resampling filter of the resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resize {
    /// U-GAT-IT's (`transforms.Resize` default).
    #[default]
    Bilinear,
    /// CycleGAN's (`Image.BICUBIC`).
    Bicubic,
}

impl Resize {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "bilinear" => Some(Self::Bilinear),
            "bicubic" => Some(Self::Bicubic),
            _ => None,
        }
    }

    /// The name [`Resize::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bilinear => "bilinear",
            Self::Bicubic => "bicubic",
        }
    }

    fn filter(self) -> FilterType {
        match self {
            Self::Bilinear => FilterType::Triangle,
            Self::Bicubic => FilterType::CatmullRom,
        }
    }
}

pub fn train_transform(img: &RgbImage, size: u32, resize: Resize, rng: &mut Rng) -> RgbImage {
    let flip = rng.uniform() < 0.5;
    let big = size + CROP_MARGIN;
    let mut resized = imageops::resize(img, big, big, resize.filter());
    if flip {
        imageops::flip_horizontal_in_place(&mut resized);
    }
    let x = rng.int_inclusive(CROP_MARGIN);
    let y = rng.int_inclusive(CROP_MARGIN);
    imageops::crop_imm(&resized, x, y, size, size).to_image()
}

pub fn test_transform(img: &RgbImage, size: u32, resize: Resize) -> RgbImage {
    if img.dimensions() == (size, size) {
        return img.clone();
    }
    imageops::resize(img, size, size, resize.filter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_layout() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgb([0, 255, 51]));
        img.put_pixel(1, 0, image::Rgb([255, 0, 0]));
        let mut out = Vec::new();
        push_normalized(&img, &mut out);
        assert_eq!(out, vec![-1.0, 1.0, 1.0, -1.0, (51.0 / 255.0 - 0.5) / 0.5, -1.0]);
    }

    #[test]
    fn train_transform_size_and_determinism() {
        let img = RgbImage::from_fn(50, 40, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let a = train_transform(&img, 32, Resize::Bilinear, &mut Rng::from_parts(&[1]));
        let b = train_transform(&img, 32, Resize::Bilinear, &mut Rng::from_parts(&[1]));
        assert_eq!(a.dimensions(), (32, 32));
        assert_eq!(a, b);
        assert_eq!(test_transform(&img, 24, Resize::Bilinear).dimensions(), (24, 24));
        assert_eq!(test_transform(&img, 24, Resize::Bicubic).dimensions(), (24, 24));
    }
}
