//! The batch stream of one domain, built by background worker threads.
//!
//! Batch `k` is a pure function of (seed, domain, k): the epoch is `k / batches_per_epoch`, its
//! order a seeded permutation (the official loaders reshuffle at every epoch, `drop_last=False`,
//! so an epoch's last batch may be smaller), and each image's flip and crop are drawn from a hash
//! of its position. Workers build batches ahead of the consumer, up to `prefetch` of them, and the
//! consumer takes them in order, so any number of workers yields the same stream.
//!
//! An unreadable file is skipped (the next image of the epoch takes its place) and recorded with
//! its reason; with `strict` it is an error naming the file instead.
//!
//! Nothing here can wait forever: the consumer waits in bounded slices
//! ([`DomainLoader::next_batch_timeout`], so the Python binding can check for Ctrl-C between
//! them), a worker that panics reports an error in place of its batch, a worker that vanished is
//! noticed, and a forked child (whose copy of the loader has no worker threads) builds its
//! batches itself.

use super::decode::decode_rgb;
use super::rng::Rng;
use super::scan::scan_images;
use super::transforms::{push_normalized, test_transform, train_transform, Resize};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// Largest batch index a stream can be moved to: far beyond any run, far below overflow.
pub const MAX_POSITION: i64 = 1 << 53;
/// Largest batch a loader builds.
pub const MAX_BATCH_SIZE: usize = 65_536;
/// Largest image side a loader produces.
pub const MAX_IMG_SIZE: u32 = 8192;
/// Most worker threads.
pub const MAX_WORKERS: usize = 64;

#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub img_size: u32,
    pub batch_size: usize,
    pub seed: u64,
    /// Distinguishes the A and B streams (0 and 1) so they shuffle independently.
    pub domain: u64,
    /// Train: shuffled, augmented. Test: file order, resize only, wraps around.
    pub train: bool,
    pub strict: bool,
    pub num_workers: usize,
    /// The resize filter of the transforms (U-GAT-IT: bilinear; CycleGAN: bicubic).
    pub resize: Resize,
}

impl LoaderConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, value: usize, hi: usize, lo: usize| {
            Error::config(format!("DomainLoader {field} must be between {lo} and {hi}, got {value}"))
        };
        if !(1..=MAX_IMG_SIZE).contains(&self.img_size) {
            return Err(bad("img_size", self.img_size as usize, MAX_IMG_SIZE as usize, 1));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(bad("batch_size", self.batch_size, MAX_BATCH_SIZE, 1));
        }
        if self.num_workers > MAX_WORKERS {
            return Err(bad("num_workers", self.num_workers, MAX_WORKERS, 0));
        }
        Ok(())
    }
}

/// One finished batch: (B, 3, S, S) floats.
struct BatchData {
    values: Vec<f32>,
    count: usize,
}

struct State {
    ready: BTreeMap<i64, Result<BatchData>>,
    next_to_claim: i64,
    generation: u64,
    stop: bool,
}

struct Shared {
    paths: Vec<PathBuf>,
    config: LoaderConfig,
    prefetch: i64,
    state: Mutex<State>,
    /// Index of the batch the consumer takes next. Outside `state` so that a forked child, whose
    /// copy of the mutex may have been held by a worker at the fork, never needs that lock.
    consumer_at: AtomicI64,
    wake: Condvar,
    skipped: Mutex<BTreeSet<(PathBuf, String)>>,
}

pub struct DomainLoader {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// The process that started the workers: threads do not survive `fork()`.
    owner_pid: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn batches_per_epoch(&self) -> i64 {
        self.paths.len().div_ceil(self.config.batch_size) as i64
    }

    /// (epoch, positions within the epoch's order) of batch `k >= 0`.
    fn positions(&self, k: i64) -> (u64, std::ops::Range<usize>) {
        let per_epoch = self.batches_per_epoch();
        let (epoch, j) = (k / per_epoch, (k % per_epoch) as usize);
        let start = j * self.config.batch_size;
        let end = (start + self.config.batch_size).min(self.paths.len());
        (epoch as u64, start..end)
    }

    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        if self.config.train {
            Rng::from_parts(&[self.config.seed, self.config.domain, epoch, 0x5AFF1E]).permutation(self.paths.len())
        } else {
            (0..self.paths.len()).collect()
        }
    }

    fn build(&self, k: i64) -> Result<BatchData> {
        // Fault injection for the tests (`--features crash-tests` only): a panicking worker.
        #[cfg(feature = "crash-tests")]
        if std::env::var_os("UGATIT_RS_TEST_PANIC_IN_LOADER").is_some() {
            panic!("injected loader panic at batch {k}");
        }
        let (epoch, range) = self.positions(k);
        let order = self.epoch_order(epoch);
        let size = self.config.img_size;
        let count = range.len();
        let floats = count * 3 * (size as usize) * (size as usize);
        let mut values = crate::error::try_vec(floats, &format!("a batch of {count} images of {size}x{size}"))?;
        for pos in range {
            let (index, img) = self.decode_from(&order, pos)?;
            let img = if self.config.train {
                let mut rng = Rng::from_parts(&[self.config.seed, self.config.domain, epoch, pos as u64, index as u64]);
                train_transform(&img, size, self.config.resize, &mut rng)
            } else {
                test_transform(&img, size, self.config.resize)
            };
            push_normalized(&img, &mut values);
        }
        Ok(BatchData { values, count })
    }

    /// [`Shared::build`], with a panic turned into an error for the consumer.
    fn build_guarded(&self, k: i64) -> Result<BatchData> {
        crate::error::guarded(|| self.build(k))
    }

    /// Decodes the image at `pos` of `order`, moving on to the next ones past unreadable files.
    fn decode_from(&self, order: &[usize], pos: usize) -> Result<(usize, image::RgbImage)> {
        for step in 0..order.len() {
            let index = order[(pos + step) % order.len()];
            let path = &self.paths[index];
            match decode_rgb(path) {
                Ok(img) => return Ok((index, img)),
                Err(reason) if self.config.strict => {
                    return Err(Error::Io {
                        path: path.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
                    })
                }
                Err(reason) => {
                    // try_lock: a forked child may hold a copy of this lock taken by a worker.
                    if let Ok(mut skipped) = self.skipped.try_lock() {
                        skipped.insert((path.clone(), reason));
                    }
                }
            }
        }
        let dir = self.paths[0].parent().unwrap_or(Path::new("."));
        Err(Error::NotFound {
            path: dir.to_path_buf(),
            message: "none of the images in this folder could be decoded".into(),
        })
    }

    fn worker(&self) {
        loop {
            let (k, generation) = {
                let mut state = lock(&self.state);
                while !state.stop && state.next_to_claim >= self.consumer_at.load(Ordering::SeqCst) + self.prefetch {
                    state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                if state.stop {
                    return;
                }
                state.next_to_claim += 1;
                (state.next_to_claim - 1, state.generation)
            };
            let batch = self.build_guarded(k);
            let mut state = lock(&self.state);
            if state.generation == generation && k >= self.consumer_at.load(Ordering::SeqCst) {
                state.ready.insert(k, batch);
                self.wake.notify_all();
            }
        }
    }
}

impl DomainLoader {
    pub fn new(folder: &Path, config: LoaderConfig) -> Result<Self> {
        config.validate()?;
        let paths = scan_images(folder)?;
        let prefetch = (2 * config.num_workers.max(1)) as i64;
        let shared = Arc::new(Shared {
            paths,
            prefetch,
            state: Mutex::new(State { ready: BTreeMap::new(), next_to_claim: 0, generation: 0, stop: false }),
            consumer_at: AtomicI64::new(0),
            wake: Condvar::new(),
            skipped: Mutex::new(BTreeSet::new()),
            config,
        });
        let mut workers = Vec::with_capacity(shared.config.num_workers);
        for i in 0..shared.config.num_workers {
            let worker_shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ugatit-loader-{i}"))
                .spawn(move || worker_shared.worker())
                .map_err(|e| Error::Internal(format!("cannot start a loader thread: {e}")))?;
            workers.push(spawned);
        }
        Ok(Self { shared, workers, owner_pid: std::process::id() })
    }

    pub fn num_images(&self) -> usize {
        self.shared.paths.len()
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.shared.paths
    }

    pub fn batches_per_epoch(&self) -> i64 {
        self.shared.batches_per_epoch()
    }

    /// Index of the batch the next call to [`DomainLoader::next_batch`] returns.
    pub fn position(&self) -> i64 {
        self.shared.consumer_at.load(Ordering::SeqCst)
    }

    /// Jumps to batch `k` (used when resuming: batch k feeds iteration k+1).
    pub fn seek(&self, k: i64) -> Result<()> {
        if !(0..=MAX_POSITION).contains(&k) {
            return Err(Error::config(format!("seek position must be between 0 and 2**53, got {k}")));
        }
        if self.is_forked() {
            self.shared.consumer_at.store(k, Ordering::SeqCst);
            return Ok(());
        }
        let mut state = lock(&self.shared.state);
        state.ready.clear();
        state.generation += 1;
        self.shared.consumer_at.store(k, Ordering::SeqCst);
        state.next_to_claim = k;
        self.shared.wake.notify_all();
        Ok(())
    }

    /// Unreadable files met so far, with the reason, sorted by path.
    pub fn skipped(&self) -> Vec<(PathBuf, String)> {
        lock(&self.shared.skipped).iter().cloned().collect()
    }

    /// True in a child process forked after the workers started: they did not come along.
    fn is_forked(&self) -> bool {
        std::process::id() != self.owner_pid
    }

    /// The next batch as a (B, 3, S, S) float32 CPU tensor.
    pub fn next_batch(&self) -> Result<Tensor> {
        loop {
            if let Some(batch) = self.next_batch_timeout(Duration::from_millis(500))? {
                return Ok(batch);
            }
        }
    }

    /// The next batch, or `None` if it is not ready within `timeout` (call again to keep
    /// waiting; the stream does not move).
    pub fn next_batch_timeout(&self, timeout: Duration) -> Result<Option<Tensor>> {
        let shared = &self.shared;
        let batch = if self.workers.is_empty() || self.is_forked() {
            let k = shared.consumer_at.load(Ordering::SeqCst);
            let batch = shared.build_guarded(k);
            shared.consumer_at.store(k + 1, Ordering::SeqCst);
            batch
        } else {
            let deadline = Instant::now() + timeout;
            let mut state = lock(&shared.state);
            loop {
                let k = shared.consumer_at.load(Ordering::SeqCst);
                if let Some(batch) = state.ready.remove(&k) {
                    shared.consumer_at.store(k + 1, Ordering::SeqCst);
                    shared.wake.notify_all();
                    break batch;
                }
                if self.workers.iter().all(|w| w.is_finished()) {
                    return Err(Error::Internal("every data-loader thread has stopped".into()));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                state = shared.wake.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            }
        }?;
        let s = shared.config.img_size as i64;
        Ok(Some(Tensor::f_from_slice(&batch.values)?.f_view_([batch.count as i64, 3, s, s])?.f_to_kind(Kind::Float)?))
    }
}

impl Drop for DomainLoader {
    fn drop(&mut self) {
        if self.is_forked() {
            // The workers live in the parent; joining them here would wait forever.
            std::mem::forget(std::mem::take(&mut self.workers));
            return;
        }
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Loads one file with the test transform, as a (1, 3, S, S) tensor.
pub fn load_image(path: &Path, img_size: u32) -> Result<Tensor> {
    if !(1..=MAX_IMG_SIZE).contains(&img_size) {
        return Err(Error::config(format!("img_size must be between 1 and {MAX_IMG_SIZE}, got {img_size}")));
    }
    let img = decode_rgb(path).map_err(|reason| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
    })?;
    let mut values = Vec::new();
    push_normalized(&test_transform(&img, img_size, Resize::Bilinear), &mut values);
    let s = img_size as i64;
    Ok(Tensor::f_from_slice(&values)?.f_view_([1, 3, s, s])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_images(dir: &Path, n: usize) {
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_fn(40 + i as u32, 36, |x, y| {
                image::Rgb([(x * 5) as u8, (y * 7) as u8, (i * 30) as u8])
            });
            let name = if i % 2 == 0 { format!("img{i}.png") } else { format!("sub/img{i}.JPG") };
            img.save_with_format(
                dir.join(name),
                if i % 2 == 0 { image::ImageFormat::Png } else { image::ImageFormat::Jpeg },
            )
            .unwrap();
        }
        std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
        std::fs::write(dir.join("notes.txt"), b"ignored").unwrap();
    }

    fn config(workers: usize) -> LoaderConfig {
        LoaderConfig {
            img_size: 32,
            batch_size: 2,
            seed: 3,
            domain: 0,
            train: true,
            strict: false,
            num_workers: workers,
            resize: Resize::Bilinear,
        }
    }

    #[test]
    fn stream_is_independent_of_worker_count_and_skips_broken_files() {
        let dir = std::env::temp_dir().join(format!("ugatit-loader-{}", std::process::id()));
        write_images(&dir, 5);
        let serial = DomainLoader::new(&dir, config(0)).unwrap();
        let parallel = DomainLoader::new(&dir, config(3)).unwrap();
        assert_eq!(serial.num_images(), 6); // five images + broken.png (it has an image extension)
        assert_eq!(serial.batches_per_epoch(), 3);
        for _ in 0..7 {
            let a = serial.next_batch().unwrap();
            let b = parallel.next_batch().unwrap();
            assert_eq!(a.size(), [2, 3, 32, 32]);
            assert!(a.equal(&b));
            assert!(a.abs().max().double_value(&[]) <= 1.0);
        }
        assert_eq!(serial.skipped().len(), 1);
        assert!(serial.skipped()[0].0.ends_with("broken.png"));
        // Seeking reproduces the stream.
        serial.seek(2).unwrap();
        let again = serial.next_batch().unwrap();
        parallel.seek(2).unwrap();
        assert!(again.equal(&parallel.next_batch().unwrap()));
        let strict = DomainLoader::new(&dir, LoaderConfig { strict: true, ..config(0) }).unwrap();
        let err = (0..6).map(|_| strict.next_batch()).find_map(|r| r.err()).unwrap();
        assert!(err.to_string().contains("broken.png"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_and_empty_folders_are_named() {
        let missing = std::env::temp_dir().join("ugatit-no-such-folder");
        let err = DomainLoader::new(&missing, config(0)).err().unwrap();
        assert!(matches!(err, Error::NotFound { .. }));
        assert!(err.to_string().contains("ugatit-no-such-folder"));
    }
}
