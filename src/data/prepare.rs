//! Dataset preparation: raw image folders → `trainA/ trainB/ testA/ testB/` of square PNGs.
//!
//! For each domain folder (recursively, sorted): read every image file, drop exact duplicates
//! (same bytes; the first in path order is kept), decode to RGB with the EXIF orientation applied,
//! skip what cannot be decoded or is smaller than `min_size`, resize to `size`×`size` by centre
//! crop or padding, and split train/test with a seeded shuffle. Work runs on every core. A
//! failed write (a full disk) stops the run with an error, leaving no truncated PNG behind.

use super::decode::decode_rgb_oriented;
use super::encode::write_png;
use super::rng::Rng;
use super::scan::{scan_images, scan_images_excluding};
use crate::files::{read_regular, resolved};
use crate::{Error, Result};
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};
use rayon::prelude::*;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
    /// Threads (0: one per core).
    pub workers: usize,
    /// Replace the images of an existing output dataset instead of refusing to write into it.
    pub overwrite: bool,
}

/// Largest output side.
pub const MAX_SIZE: u32 = 8192;

impl PrepareConfig {
    pub fn validate(&self) -> Result<()> {
        if !(8..=MAX_SIZE).contains(&self.size) {
            return Err(Error::config(format!("size must be between 8 and {MAX_SIZE}, got {}", self.size)));
        }
        if !(0.0..1.0).contains(&self.test_fraction) {
            return Err(Error::config(format!("test_fraction must be in [0, 1), got {}", self.test_fraction)));
        }
        if self.min_size > MAX_SIZE * 2 {
            return Err(Error::config(format!("min_size must be at most {}, got {}", MAX_SIZE * 2, self.min_size)));
        }
        Ok(())
    }
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

/// Shared with the caller while `prepare` runs: files processed so far, and a stop request.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicUsize,
    cancelled: AtomicBool,
}

impl Progress {
    pub fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Asks the workers to stop; `prepare` then returns an error.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    fn tick(&self) -> Result<()> {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.check()
    }

    fn check(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(Error::Internal("dataset preparation was cancelled".into()));
        }
        Ok(())
    }
}

fn fit_square(img: &RgbImage, size: u32, fit: Fit) -> RgbImage {
    let (w, h) = img.dimensions();
    let filter = FilterType::CatmullRom;
    match fit {
        Fit::Crop => {
            let scale = size as f64 / w.min(h) as f64;
            let (nw, nh) =
                (((w as f64 * scale).round() as u32).max(size), ((h as f64 * scale).round() as u32).max(size));
            let resized = imageops::resize(img, nw, nh, filter);
            imageops::crop_imm(&resized, (nw - size) / 2, (nh - size) / 2, size, size).to_image()
        }
        Fit::Pad => {
            let scale = size as f64 / w.max(h) as f64;
            let (nw, nh) = (
                ((w as f64 * scale).round() as u32).clamp(1, size),
                ((h as f64 * scale).round() as u32).clamp(1, size),
            );
            let resized = imageops::resize(img, nw, nh, filter);
            let mut canvas = RgbImage::from_pixel(size, size, Rgb([0, 0, 0]));
            imageops::overlay(&mut canvas, &resized, ((size - nw) / 2) as i64, ((size - nh) / 2) as i64);
            canvas
        }
    }
}

/// Longest part of a source's name kept in its output's name: file names are limited to 255
/// bytes, and the index prefix (which alone keeps names distinct) and `.png` need room.
const MAX_STEM_BYTES: usize = 200;

/// `path`'s file stem, cut to at most `max_bytes`.
fn stem_within(path: &Path, max_bytes: usize) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    crate::files::cut(&stem, max_bytes).to_string()
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.len().hash(&mut h);
    bytes.hash(&mut h);
    h.finish()
}

const SPLITS: [&str; 2] = ["train", "test"];

/// Refuses an output folder that lies inside an input folder or holds one (its images would be
/// mixed into a domain), and one that already holds prepared images unless `overwrite` (a
/// re-run would otherwise add to them); with `overwrite`, those images are removed first.
fn check_output(domains: &[(&str, &Path)], output: &Path, overwrite: bool) -> Result<()> {
    let out = resolved(output);
    for (domain, folder) in domains {
        let input = resolved(folder);
        if out.starts_with(&input) || input.starts_with(&out) {
            return Err(Error::config(format!(
                "the output folder {} and the domain {domain} folder {} overlap: choose an output outside the inputs",
                output.display(),
                folder.display()
            )));
        }
    }
    for (domain, _) in domains {
        for split in SPLITS {
            let dir = output.join(format!("{split}{domain}"));
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let existing: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
            if existing.is_empty() {
                continue;
            }
            if !overwrite {
                return Err(Error::config(format!(
                    "{} already holds {} file(s) from an earlier run; pass overwrite=True (--overwrite) to replace them",
                    dir.display(),
                    existing.len()
                )));
            }
            for file in existing {
                std::fs::remove_file(&file).map_err(|source| Error::Io { path: file.clone(), source })?;
            }
        }
    }
    Ok(())
}

/// Prepares `output/{train,test}{A,B}` from the domain folders. `progress` counts processed
/// files (of the total returned by [`count_inputs`]) and can cancel the run.
pub fn prepare(
    domains: &[(&str, &Path)],
    output: &Path,
    config: &PrepareConfig,
    progress: &Progress,
) -> Result<PrepareSummary> {
    config.validate()?;
    check_output(domains, output, config.overwrite)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.workers)
        .build()
        .map_err(|e| Error::internal(format!("cannot start the worker threads: {e}")))?;
    pool.install(|| prepare_on_pool(domains, output, config, progress))
}

fn prepare_on_pool(
    domains: &[(&str, &Path)],
    output: &Path,
    config: &PrepareConfig,
    progress: &Progress,
) -> Result<PrepareSummary> {
    let mut summary = PrepareSummary::default();
    for (domain, folder) in domains {
        let paths = scan_images(folder)?;
        // Pass 1: read and hash every file; the first of each set of identical files is kept.
        let hashes: Vec<std::result::Result<u64, String>> = paths
            .par_iter()
            .map(|p| {
                progress.check().map_err(|e| e.to_string())?;
                read_regular(p).map(|b| content_hash(&b)).map_err(|e| e.to_string())
            })
            .collect();
        progress.check()?;
        let mut first_seen: HashMap<u64, usize> = HashMap::new();
        let mut unique = Vec::new();
        for (i, hash) in hashes.iter().enumerate() {
            match hash {
                Err(e) => {
                    summary.skipped.push((paths[i].clone(), format!("cannot read: {e}")));
                    progress.tick()?;
                }
                Ok(h) => match first_seen.get(h) {
                    Some(&j) if read_regular(&paths[i]).ok() == read_regular(&paths[j]).ok() => {
                        summary.duplicates.push((paths[i].clone(), paths[j].clone()));
                        progress.tick()?;
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
        let n_test = if unique.len() >= 2 && config.test_fraction > 0.0 {
            ((unique.len() as f64 * config.test_fraction).round() as usize).clamp(1, unique.len() - 1)
        } else {
            0
        };
        let mut split_of = vec!["train"; unique.len()];
        for &k in &order[..n_test] {
            split_of[k] = "test";
        }
        for split in SPLITS {
            let dir = output.join(format!("{split}{domain}"));
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
            // An earlier run killed mid-write left its image under a temporary name.
            crate::files::remove_stale_temporaries(&dir)?;
        }
        // Pass 2: decode, fit, save. An image that cannot be used is skipped with its reason; a
        // write that fails (a full disk, a read-only folder) stops everything: the dataset
        // would be incomplete.
        let outcomes = (0..unique.len())
            .into_par_iter()
            .map(|k| {
                progress.check()?;
                let path = &paths[unique[k]];
                let fitted = (|| {
                    let bytes = read_regular(path).map_err(|e| format!("cannot read: {e}"))?;
                    let img = decode_rgb_oriented(&bytes)?;
                    let (w, h) = img.dimensions();
                    if w.min(h) < config.min_size {
                        return Err(format!(
                            "too small ({w}x{h}; the shorter side must be at least {})",
                            config.min_size
                        ));
                    }
                    Ok(fit_square(&img, config.size, config.fit))
                })();
                let outcome = match fitted {
                    Ok(out) => {
                        let name = format!("{:06}_{}.png", unique[k], stem_within(path, MAX_STEM_BYTES));
                        write_png(&output.join(format!("{}{domain}", split_of[k])).join(name), &out)?;
                        Ok(split_of[k])
                    }
                    Err(reason) => Err(reason),
                };
                progress.tick()?;
                Ok(outcome)
            })
            .collect::<Result<Vec<std::result::Result<&str, String>>>>()?;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (k, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(split) => *counts.entry(split).or_default() += 1,
                Err(reason) => summary.skipped.push((paths[unique[k]].clone(), reason)),
            }
        }
        for split in SPLITS {
            summary.counts.push((format!("{split}{domain}"), counts.get(split).copied().unwrap_or(0)));
        }
    }
    summary.skipped.sort();
    Ok(summary)
}

/// How many files `prepare` will go through (for a progress bar's total), leaving out an
/// output folder nested in an input (which `prepare` refuses anyway).
pub fn count_inputs(domains: &[(&str, &Path)], output: &Path) -> Result<usize> {
    let excluded: Vec<PathBuf> = if output.is_dir() { vec![output.to_path_buf()] } else { Vec::new() };
    domains.iter().map(|(_, f)| scan_images_excluding(f, &excluded).map(|p| p.len())).sum()
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
