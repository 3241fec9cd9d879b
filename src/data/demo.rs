//! Built-in demo domains: procedurally drawn faces, seeded, no files or network needed.
//!
//! - Domain A, "photos": a shaded face (soft light from the upper left, skin texture noise) with
//!   hair, eyes and mouth, on a textured cool-coloured background.
//! - Domain B, "cartoons": the same kind of face in flat colours with dark outlines, on a flat
//!   pastel background.
//!
//! Both domains vary position, size, head tilt, skin/hair/background colours independently, so
//! the two sets are unpaired; translating one into the other must keep the face's geometry
//! (content) and change its rendering (style). [`face_mask`] and [`flatness`] measure exactly
//! those two things.

use super::rng::Rng;
use image::{Rgb, RgbImage};

/// Which domain to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Photo,
    Cartoon,
}

struct Face {
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    tilt: f32,
    skin: [f32; 3],
    hair: [f32; 3],
    background: [f32; 3],
}

fn pick(rng: &mut Rng, palette: &[[f32; 3]]) -> [f32; 3] {
    palette[(rng.next_u64() % palette.len() as u64) as usize]
}

fn random_face(rng: &mut Rng, style: Style) -> Face {
    let skins: &[[f32; 3]] = &[[0.96, 0.80, 0.68], [0.90, 0.70, 0.55], [0.80, 0.58, 0.42], [0.98, 0.86, 0.76]];
    let hairs: &[[f32; 3]] = &[[0.20, 0.12, 0.06], [0.45, 0.28, 0.12], [0.08, 0.08, 0.10], [0.60, 0.45, 0.25]];
    let backgrounds: &[[f32; 3]] = match style {
        Style::Photo => &[[0.35, 0.45, 0.60], [0.30, 0.50, 0.45], [0.45, 0.45, 0.55], [0.25, 0.35, 0.50]],
        Style::Cartoon => &[[0.65, 0.80, 0.95], [0.70, 0.90, 0.75], [0.80, 0.75, 0.95], [0.60, 0.85, 0.90]],
    };
    Face {
        cx: 0.40 + 0.2 * rng.uniform() as f32,
        cy: 0.45 + 0.15 * rng.uniform() as f32,
        rx: 0.20 + 0.08 * rng.uniform() as f32,
        ry: 0.27 + 0.08 * rng.uniform() as f32,
        tilt: (rng.uniform() as f32 - 0.5) * 0.6,
        skin: pick(rng, skins),
        hair: pick(rng, hairs),
        background: pick(rng, backgrounds),
    }
}

/// Which part of the face a point (in unit coordinates) falls on.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    Background,
    Hair,
    Skin,
    Eye,
    Mouth,
}

/// Face coordinates of (x, y): centred on the face, rotated by its tilt, scaled by its radii.
fn local(face: &Face, x: f32, y: f32) -> (f32, f32) {
    let (dx, dy) = (x - face.cx, y - face.cy);
    let (s, c) = face.tilt.sin_cos();
    ((c * dx + s * dy) / face.rx, (-s * dx + c * dy) / face.ry)
}

fn part_at(face: &Face, x: f32, y: f32) -> Part {
    let (u, v) = local(face, x, y);
    let r2 = u * u + v * v;
    if r2 > 1.0 {
        // Hair: a cap above the face.
        let (hu, hv) = (u / 1.12, (v + 0.12) / 1.12);
        return if hu * hu + hv * hv <= 1.0 && v < -0.25 { Part::Hair } else { Part::Background };
    }
    if v < -0.55 {
        return Part::Hair; // fringe
    }
    for ex in [-0.38, 0.38] {
        let (eu, ev) = ((u - ex) / 0.16, (v + 0.12) / 0.10);
        if eu * eu + ev * ev <= 1.0 {
            return Part::Eye;
        }
    }
    let (mu, mv) = (u / 0.34, (v - 0.45) / 0.08);
    if mu * mu + mv * mv <= 1.0 {
        return Part::Mouth;
    }
    Part::Skin
}

fn to_u8(c: [f32; 3]) -> Rgb<u8> {
    Rgb(c.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8))
}

/// The image sizes the demo draws: its faces need a few pixels, and a drawing is held whole
/// (3 bytes a pixel) while it is made.
pub const SIZES: std::ops::RangeInclusive<u32> = 8..=4096;

/// Images per split and domain: test images are numbered from here on, so the train images'
/// indices (and seeds) stay apart from theirs.
pub const MAX_IMAGES: u64 = 1_000_000;

/// Refuses what [`draw`] and [`write_dataset`] cannot make: a size outside [`SIZES`], counts
/// outside 1..=[`MAX_IMAGES`].
pub fn check_request(size: u32, counts: &[(&str, u64)]) -> crate::Result<()> {
    if !SIZES.contains(&size) {
        return Err(crate::Error::config(format!(
            "demo image size must be between {} and {}, got {size}",
            SIZES.start(),
            SIZES.end()
        )));
    }
    for (name, n) in counts {
        if !(1..=MAX_IMAGES).contains(n) {
            return Err(crate::Error::config(format!("{name} must be between 1 and {MAX_IMAGES}, got {n}")));
        }
    }
    Ok(())
}

/// Draws one image of `style`, `size` pixels square (within [`SIZES`]), determined by `seed`
/// and `index`.
pub fn draw(style: Style, size: u32, seed: u64, index: u64) -> RgbImage {
    let mut rng = Rng::from_parts(&[seed, index, style as u64, 0xFACE]);
    let face = random_face(&mut rng, style);
    let n = size as f32;
    let texture_seed = rng.next_u64();
    let mut img = RgbImage::new(size, size);
    let parts: Vec<Part> = (0..size * size)
        .map(|i| part_at(&face, ((i % size) as f32 + 0.5) / n, ((i / size) as f32 + 0.5) / n))
        .collect();
    for y in 0..size {
        for x in 0..size {
            let i = (y * size + x) as usize;
            let part = parts[i];
            let (fx, fy) = ((x as f32 + 0.5) / n, (y as f32 + 0.5) / n);
            let base = match part {
                Part::Background => face.background,
                Part::Hair => face.hair,
                Part::Skin => face.skin,
                Part::Eye => [0.10, 0.10, 0.14],
                Part::Mouth => [0.75, 0.22, 0.25],
            };
            let colour = match style {
                Style::Photo => {
                    let mut pixel_rng = Rng::from_parts(&[texture_seed, i as u64]);
                    let noise = (pixel_rng.uniform() as f32 - 0.5) * 0.12;
                    let light = match part {
                        Part::Background => 0.85 + 0.3 * (fx * 0.6 + (1.0 - fy) * 0.4) + 0.05 * (fx * 40.0).sin(),
                        _ => {
                            let (u, v) = local(&face, fx, fy);
                            0.75 + 0.35 * (1.0 - ((u + 0.35).powi(2) + (v + 0.35).powi(2)).min(1.5) / 1.5)
                        }
                    };
                    base.map(|c| c * light + noise)
                }
                Style::Cartoon => {
                    // Dark outline where the part changes within two pixels.
                    let edge = [(2i32, 0i32), (-2, 0), (0, 2), (0, -2), (1, 1), (-1, -1)].iter().any(|&(dx, dy)| {
                        let (nx, ny) = (x as i32 + dx, y as i32 + dy);
                        nx >= 0
                            && ny >= 0
                            && nx < size as i32
                            && ny < size as i32
                            && parts[(ny as u32 * size + nx as u32) as usize] != part
                    });
                    if edge && part != Part::Background {
                        [0.08, 0.06, 0.08]
                    } else {
                        base
                    }
                }
            };
            img.put_pixel(x, y, to_u8(colour));
        }
    }
    img
}

/// Skin-coloured pixels: the face, in either domain and in translations between them
/// (backgrounds are blue/green/violet, hair dark, so the test is `r > g > b` with a clear margin).
pub fn face_mask(img: &RgbImage) -> Vec<bool> {
    img.pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(|v| v as i32);
            r > 120 && r - b > 45 && r >= g && g > b
        })
        .collect()
}

/// Intersection over union of two masks (1.0 when both are empty).
pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Fraction of interior pixels whose 3x3 neighbourhood is flat (every channel within 6/255 of the
/// centre): high for flat-coloured cartoons, low for shaded, textured photos.
pub fn flatness(img: &RgbImage) -> f64 {
    let (w, h) = img.dimensions();
    if w < 3 || h < 3 {
        return 0.0;
    }
    let mut flat = 0usize;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let c = img.get_pixel(x, y).0;
            let is_flat = (-1i32..=1).all(|dy| {
                (-1i32..=1).all(|dx| {
                    let n = img.get_pixel((x as i32 + dx) as u32, (y as i32 + dy) as u32).0;
                    (0..3).all(|k| (n[k] as i32 - c[k] as i32).abs() <= 6)
                })
            });
            flat += is_flat as usize;
        }
    }
    flat as f64 / ((w - 2) * (h - 2)) as f64
}

/// Mean brightness (0..1) of the left and right 4-pixel-wide borders, which the face never
/// reaches: dim, saturated backdrops in the photos, bright pastels in the cartoons.
pub fn border_brightness(img: &RgbImage) -> f64 {
    let (w, h) = img.dimensions();
    let band = 4.min(w / 2);
    let mut sum = 0u64;
    let mut count = 0u64;
    for y in 0..h {
        for x in (0..band).chain(w - band..w) {
            sum += img.get_pixel(x, y).0.iter().map(|&v| v as u64).sum::<u64>();
            count += 3;
        }
    }
    if count == 0 {
        0.0
    } else {
        sum as f64 / count as f64 / 255.0
    }
}

/// Writes `root/{trainA,trainB,testA,testB}` of PNGs (photos are A, cartoons B); train and test
/// images never share an index, and A and B are drawn independently (unpaired).
pub fn write_dataset(root: &std::path::Path, n_train: u64, n_test: u64, size: u32, seed: u64) -> crate::Result<()> {
    check_request(size, &[("n_train", n_train), ("n_test", n_test)])?;
    let jobs: Vec<(String, Style, u64)> = [("train", 0u64, n_train), ("test", MAX_IMAGES, n_test)]
        .iter()
        .flat_map(|&(split, base, n)| {
            [("A", Style::Photo), ("B", Style::Cartoon)]
                .into_iter()
                .flat_map(move |(d, style)| (0..n).map(move |i| (format!("{split}{d}"), style, base + i)))
        })
        .collect();
    for split in ["trainA", "trainB", "testA", "testB"] {
        let dir = root.join(split);
        std::fs::create_dir_all(&dir).map_err(|source| crate::Error::Io { path: dir.clone(), source })?;
    }
    use rayon::prelude::*;
    jobs.par_iter().try_for_each(|(split, style, index)| {
        let path = root.join(split).join(format!("{index:07}.png"));
        super::encode::write_png(&path, &draw(*style, size, seed, *index))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_deterministic_distinct_and_separable() {
        let a = draw(Style::Photo, 96, 1, 0);
        assert_eq!(a, draw(Style::Photo, 96, 1, 0));
        assert_ne!(a, draw(Style::Photo, 96, 1, 1));
        for i in 0..20 {
            let photo = draw(Style::Photo, 96, 7, i);
            let cartoon = draw(Style::Cartoon, 96, 7, i);
            assert!(flatness(&photo) < 0.5, "photo {i}: {}", flatness(&photo));
            assert!(flatness(&cartoon) > 0.5, "cartoon {i}: {}", flatness(&cartoon));
            assert!(border_brightness(&photo) < 0.62 && border_brightness(&cartoon) > 0.62, "borders {i}");
            let mask = face_mask(&photo);
            let share = mask.iter().filter(|m| **m).count() as f64 / mask.len() as f64;
            assert!((0.05..0.5).contains(&share), "photo {i} face share {share}");
            let mask = face_mask(&cartoon);
            let share = mask.iter().filter(|m| **m).count() as f64 / mask.len() as f64;
            assert!((0.05..0.5).contains(&share), "cartoon {i} face share {share}");
        }
    }

    #[test]
    fn iou_basics() {
        assert_eq!(iou(&[true, false], &[true, false]), 1.0);
        assert_eq!(iou(&[true, false], &[false, true]), 0.0);
        assert_eq!(iou(&[false], &[false]), 1.0);
    }
}
