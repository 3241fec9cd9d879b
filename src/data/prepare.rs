//! Dataset preparation: raw image folders → `trainA/ trainB/ testA/ testB/` of square PNGs.
//!
//! For each domain folder (recursively, sorted): read every image file, drop exact duplicates
//! (same bytes; the first in path order is kept), decode to RGB with the EXIF orientation applied,
//! skip what cannot be decoded or is smaller than `min_size`, resize to `size`×`size` by centre
//! crop or padding, and split train/test with a seeded shuffle. Work runs on every core.

use super::decode::decode_rgb_oriented;
use super::rng::Rng;
use super::scan::scan_images;
use crate::{Error, Result};
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Scale the short side to `size`, cut the centre square.
    Crop,
    /// Scale the long side to `size`, pad the rest with black.
    Pad,
}

#[derive(Debug, Clone)]
pub struct PrepareConfig {
    pub size: u32,
    pub fit: Fit,
    /// Share of each domain's images that goes to test/ (at least one when there are two or more).
    pub test_fraction: f64,
    pub seed: u64,
    /// Images whose shorter side is below this are skipped.
    pub min_size: u32,
    pub workers: usize,
}

#[derive(Debug, Default, Clone)]
pub struct PrepareSummary {
    /// Written images per split ("trainA", "testA", ...).
    pub counts: Vec<(String, usize)>,
    /// Files not written, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Exact duplicates: (file, the earlier file it repeats).
    pub duplicates: Vec<(PathBuf, PathBuf)>,
}

fn fit_square(img: &RgbImage, size: u32, fit: Fit) -> RgbImage {
    let (w, h) = img.dimensions();
    let filter = FilterType::CatmullRom;
    match fit {
        Fit::Crop => {
            let scale = size as f64 / w.min(h) as f64;
            let (nw, nh) = (((w as f64 * scale).round() as u32).max(size), ((h as f64 * scale).round() as u32).max(size));
            let resized = imageops::resize(img, nw, nh, filter);
            imageops::crop_imm(&resized, (nw - size) / 2, (nh - size) / 2, size, size).to_image()
        }
        Fit::Pad => {
            let scale = size as f64 / w.max(h) as f64;
            let (nw, nh) = (((w as f64 * scale).round() as u32).clamp(1, size), ((h as f64 * scale).round() as u32).clamp(1, size));
            let resized = imageops::resize(img, nw, nh, filter);
            let mut canvas = RgbImage::from_pixel(size, size, Rgb([0, 0, 0]));
            imageops::overlay(&mut canvas, &resized, ((size - nw) / 2) as i64, ((size - nh) / 2) as i64);
            canvas
        }
    }
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.len().hash(&mut h);
    bytes.hash(&mut h);
    h.finish()
}

/// Runs `job(i)` for i in 0..n on `workers` threads; `done` counts finished items.
fn parallel<T: Send>(n: usize, workers: usize, done: &AtomicUsize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = job(i);
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().map(|r| r.expect("every job ran")).collect()
}

/// Prepares `output/{train,test}{A,B}` from the domain folders. `progress` counts processed files
/// (of the total returned by [`count_inputs`]) so a caller can draw a progress bar.
pub fn prepare(domains: &[(&str, &Path)], output: &Path, config: &PrepareConfig, progress: &AtomicUsize) -> Result<PrepareSummary> {
    if config.size < 8 {
        return Err(Error::config(format!("size must be at least 8, got {}", config.size)));
    }
    if !(0.0..1.0).contains(&config.test_fraction) {
        return Err(Error::config(format!("test_fraction must be in [0, 1), got {}", config.test_fraction)));
    }
    let mut summary = PrepareSummary::default();
    for (domain, folder) in domains {
        let paths = scan_images(folder)?;
        // Pass 1: read and hash every file; the first of each set of identical files is kept.
        let hashes = parallel(paths.len(), config.workers, &AtomicUsize::new(0), |i| std::fs::read(&paths[i]).map(|b| content_hash(&b)));
        let mut first_seen: HashMap<u64, usize> = HashMap::new();
        let mut unique = Vec::new();
        for (i, hash) in hashes.iter().enumerate() {
            match hash {
                Err(e) => summary.skipped.push((paths[i].clone(), format!("cannot read: {e}"))),
                Ok(h) => match first_seen.get(h) {
                    Some(&j) if std::fs::read(&paths[i]).ok() == std::fs::read(&paths[j]).ok() => {
                        summary.duplicates.push((paths[i].clone(), paths[j].clone()));
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        first_seen.entry(*h).or_insert(i);
                        unique.push(i);
                    }
                },
            }
        }
        // Seeded split of the unique files.
        let order = Rng::from_parts(&[config.seed, domain.as_bytes()[0] as u64, 0x5911]).permutation(unique.len());
        let n_test = if unique.len() >= 2 { ((unique.len() as f64 * config.test_fraction).round() as usize).clamp(1, unique.len() - 1) } else { 0 };
        let n_test = if config.test_fraction == 0.0 { 0 } else { n_test };
        let mut split_of = vec!["train"; unique.len()];
        for &k in &order[..n_test] {
            split_of[k] = "test";
        }
        for split in ["train", "test"] {
            let dir = output.join(format!("{split}{domain}"));
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        }
        // Pass 2: decode, fit, save.
        let outcomes = parallel(unique.len(), config.workers, progress, |k| -> std::result::Result<&'static str, String> {
            let path = &paths[unique[k]];
            let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
            let img = decode_rgb_oriented(&bytes)?;
            let (w, h) = img.dimensions();
            if w.min(h) < config.min_size {
                return Err(format!("too small ({w}x{h}; the shorter side must be at least {})", config.min_size));
            }
            let out = fit_square(&img, config.size, config.fit);
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let target = output.join(format!("{}{domain}", split_of[k])).join(format!("{:06}_{stem}.png", unique[k]));
            out.save(&target).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
            Ok(split_of[k])
        });
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (k, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(split) => *counts.entry(split).or_default() += 1,
                Err(reason) => summary.skipped.push((paths[unique[k]].clone(), reason)),
            }
        }
        for split in ["train", "test"] {
            summary.counts.push((format!("{split}{domain}"), counts.get(split).copied().unwrap_or(0)));
        }
    }
    summary.skipped.sort();
    Ok(summary)
}

/// How many files `prepare` will go through (for a progress bar's total).
pub fn count_inputs(domains: &[(&str, &Path)]) -> Result<usize> {
    domains.iter().map(|(_, f)| scan_images(f).map(|p| p.len())).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_and_pad_give_squares() {
        let img = RgbImage::from_pixel(40, 20, Rgb([200, 10, 10]));
        let c = fit_square(&img, 16, Fit::Crop);
        assert_eq!(c.dimensions(), (16, 16));
        assert_eq!(c.get_pixel(0, 0).0, [200, 10, 10]);
        let p = fit_square(&img, 16, Fit::Pad);
        assert_eq!(p.dimensions(), (16, 16));
        assert_eq!(p.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(p.get_pixel(8, 8).0, [200, 10, 10]);
    }
}
