//! Bindings for the image pipeline ([`crate::data`]).

use super::args::{domain_argument, index_argument, seed_argument, Flag, Text};
use super::error::unlocked;
use crate::data::transforms::Resize;
use crate::data::{load_image, DomainLoader, LoaderConfig};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3_tch::PyTensor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A seeded, prefetching batch stream over one domain folder. Use `ugatit_rs.data.DomainLoader`.
#[pyclass(name = "DomainLoader", module = "ugatit_rs._native")]
pub struct PyDomainLoader {
    inner: DomainLoader,
    /// Batches left in the epoch a `for` loop is iterating.
    epoch_left: AtomicI64,
    /// The constructor's arguments: `repr()` shows them, and they rebuild the loader when it
    /// is pickled or copied.
    folder: PathBuf,
    config: LoaderConfig,
}

#[pymethods]
impl PyDomainLoader {
    #[new]
    #[pyo3(signature = (folder, img_size, batch_size=1, seed=0, domain=0, train=Flag(true), strict=Flag(false), num_workers=2, resize=Text::from("bilinear")))]
    // help() would show the Flag and Text defaults as "...": the signature, spelled for Python.
    #[pyo3(
        text_signature = "(folder, img_size, batch_size=1, seed=0, domain=0, train=True, strict=False, num_workers=2, resize=\"bilinear\")"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        folder: PathBuf,
        img_size: i64,
        batch_size: i64,
        #[pyo3(from_py_with = seed_argument)] seed: u64,
        #[pyo3(from_py_with = domain_argument)] domain: u64,
        train: Flag,
        strict: Flag,
        num_workers: i64,
        resize: Text,
    ) -> PyResult<Self> {
        let usize_of = |field: &str, v: i64| {
            usize::try_from(v).map_err(|_| PyValueError::new_err(format!("DomainLoader {field} must be >= 0, got {v}")))
        };
        let (batch_size, num_workers) = (usize_of("batch_size", batch_size)?, usize_of("num_workers", num_workers)?);
        let img_size = u32::try_from(img_size).map_err(|_| {
            PyValueError::new_err(format!("DomainLoader img_size must be between 1 and 8192, got {img_size}"))
        })?;
        let resize = Resize::parse(&resize.0).ok_or_else(|| {
            PyValueError::new_err(format!("DomainLoader resize must be 'bilinear' or 'bicubic', got {:?}", resize.0))
        })?;
        let (Flag(train), Flag(strict)) = (train, strict);
        let config = LoaderConfig { img_size, batch_size, seed, domain, train, strict, num_workers, resize };
        let inner = unlocked(py, || DomainLoader::new(&folder, config.clone()))?;
        Ok(Self { inner, epoch_left: AtomicI64::new(0), folder, config })
    }

    /// Pickling and `copy.deepcopy`: the constructor's arguments and the stream's position. The
    /// copy scans the folder again and goes on with the batches this loader would give next
    /// (the stream is a function of the seed and the position); unreadable files are found and
    /// counted again as it meets them.
    #[allow(clippy::type_complexity)]
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyType>, (PathBuf, u32, usize, u64, u64, bool, bool, usize, &'static str), i64)> {
        let this = slf.borrow();
        let c = &this.config;
        let arguments = (
            this.folder.clone(),
            c.img_size,
            c.batch_size,
            c.seed,
            c.domain,
            c.train,
            c.strict,
            c.num_workers,
            c.resize.name(),
        );
        Ok((slf.get_type(), arguments, this.inner.position()))
    }

    fn __setstate__(&self, position: i64) -> PyResult<()> {
        self.seek(position)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let folder = self.folder.as_os_str().into_pyobject(py)?.repr()?;
        let LoaderConfig { img_size, batch_size, train, .. } = self.config;
        let train = if train { "True" } else { "False" };
        let (images, position) = (self.inner.num_images(), self.inner.position());
        Ok(format!(
            "DomainLoader(folder={folder}, img_size={img_size}, batch_size={batch_size}, train={train}, \
             images={images}, position={position})"
        ))
    }

    /// The next batch, a float32 (B, 3, S, S) CPU tensor in [-1, 1]. Waits in short slices
    /// with the GIL released, checking for Ctrl-C between them.
    fn next_batch(&self, py: Python<'_>) -> PyResult<PyTensor> {
        loop {
            if let Some(t) = unlocked(py, || self.inner.next_batch_timeout(Duration::from_millis(100)))? {
                return Ok(PyTensor(t));
            }
            py.check_signals()?;
        }
    }

    /// `len(loader)`: the batches in one epoch.
    fn __len__(&self) -> usize {
        usize::try_from(self.inner.batches_per_epoch()).unwrap_or(0)
    }

    /// `for batch in loader`: one epoch of batches from the current position, as PyTorch's
    /// `DataLoader` iterates (`next_batch` streams on without end, as the official loop reads).
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf.epoch_left.store(slf.inner.batches_per_epoch(), Ordering::Relaxed);
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyTensor>> {
        if self.epoch_left.fetch_sub(1, Ordering::Relaxed) <= 0 {
            self.epoch_left.store(0, Ordering::Relaxed);
            return Ok(None);
        }
        self.next_batch(py).map(Some)
    }

    /// Moves the stream to batch `k` (0 <= k <= 2**53).
    fn seek(&self, k: i64) -> PyResult<()> {
        Ok(self.inner.seek(k)?)
    }

    /// Index of the batch the next `next(loader)` returns (what `seek` sets).
    #[getter]
    fn position(&self) -> i64 {
        self.inner.position()
    }

    /// How many image files the folder scan found (unreadable ones included until met).
    #[getter]
    fn num_images(&self) -> usize {
        self.inner.num_images()
    }

    /// `ceil(num_images / batch_size)`: the batches of one epoch (its last one may be smaller);
    /// each epoch of a training stream has its own seeded order.
    #[getter]
    fn batches_per_epoch(&self) -> i64 {
        self.inner.batches_per_epoch()
    }

    /// The image files, found recursively and sorted, in the order before any shuffling.
    fn paths(&self) -> Vec<PathBuf> {
        self.inner.paths().to_vec()
    }

    /// `[(path, reason), ...]` for every unreadable file met so far.
    fn skipped(&self) -> Vec<(PathBuf, String)> {
        self.inner.skipped()
    }
}

/// Loads one image file resized to `img_size` as a (1, 3, S, S) float32 tensor in [-1, 1].
#[pyfunction(name = "load_image")]
pub fn py_load_image(py: Python<'_>, path: PathBuf, img_size: u32) -> PyResult<PyTensor> {
    let t = unlocked(py, || load_image(&path, img_size))?;
    Ok(PyTensor(t))
}

/// Every image file under `folder`, recursively, sorted (regular files only; link loops are
/// followed once).
#[pyfunction]
pub fn list_images(py: Python<'_>, folder: PathBuf) -> PyResult<Vec<PathBuf>> {
    unlocked(py, || crate::data::scan::scan_images_excluding(&folder, &[]))
}

/// Decodes image files and resizes them for the Inception network as `protocol` ("paper" or
/// "clean") prescribes: a float32 (N, 3, size, size) tensor of 0..255 values.
#[pyfunction]
#[pyo3(signature = (paths, size=299, protocol="paper"))]
pub fn inception_inputs_from_files(
    py: Python<'_>,
    paths: Vec<PathBuf>,
    size: u32,
    protocol: &str,
) -> PyResult<PyTensor> {
    let protocol: crate::data::inception::Protocol = protocol.parse()?;
    let t = unlocked(py, || crate::data::inception::load_inception_inputs(&paths, size, protocol))?;
    Ok(PyTensor(t))
}

/// Like `inception_inputs_from_files`, for images already in memory: HWC uint8 RGB tensors.
#[pyfunction]
#[pyo3(signature = (images, size=299, protocol="paper"))]
pub fn inception_inputs_from_arrays(
    py: Python<'_>,
    images: Vec<PyTensor>,
    size: u32,
    protocol: &str,
) -> PyResult<PyTensor> {
    let protocol: crate::data::inception::Protocol = protocol.parse()?;
    let images = images
        .iter()
        .enumerate()
        .map(|(i, t)| to_rgb_image(&t.0, &format!("image {i}")))
        .collect::<PyResult<Vec<_>>>()?;
    let t = unlocked(py, || crate::data::inception::inception_inputs(&images, size, protocol))?;
    Ok(PyTensor(t))
}

fn style_of(name: &str) -> PyResult<crate::data::demo::Style> {
    match name {
        "A" | "photo" => Ok(crate::data::demo::Style::Photo),
        "B" | "cartoon" => Ok(crate::data::demo::Style::Cartoon),
        other => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "demo domain must be 'A' (photo) or 'B' (cartoon), got {other:?}"
        ))),
    }
}

fn to_rgb_image(t: &tch::Tensor, what: &str) -> PyResult<image::RgbImage> {
    let size = t.size();
    let ok = size.len() == 3 && size[2] == 3 && matches!(t.f_kind(), Ok(tch::Kind::Uint8));
    if !ok {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{what} must be an HWC uint8 RGB tensor, got {:?} {size:?}",
            t.f_kind().ok()
        )));
    }
    let t =
        t.f_contiguous().map_err(crate::Error::Torch)?.f_to_device(tch::Device::Cpu).map_err(crate::Error::Torch)?;
    let mut raw = vec![0u8; t.numel()];
    t.f_copy_data_u8(&mut raw, t.numel()).map_err(crate::Error::Torch)?;
    image::RgbImage::from_raw(size[1] as u32, size[0] as u32, raw)
        .ok_or_else(|| pyo3::exceptions::PyValueError::new_err(format!("{what}: inconsistent size")))
}

/// One demo image (HWC uint8 tensor) of domain "A" (photo) or "B" (cartoon).
#[pyfunction]
#[pyo3(signature = (domain, size=96, seed=0, index=0))]
pub fn demo_image(
    domain: Text,
    size: u32,
    #[pyo3(from_py_with = seed_argument)] seed: u64,
    #[pyo3(from_py_with = index_argument)] index: u64,
) -> PyResult<PyTensor> {
    crate::data::demo::check_request(size, &[])?;
    let img = crate::data::demo::draw(style_of(&domain.0)?, size, seed, index);
    let t = tch::Tensor::f_from_slice(img.as_raw())
        .and_then(|t| t.f_view_([size as i64, size as i64, 3]))
        .map_err(crate::Error::Torch)?;
    Ok(PyTensor(t))
}

/// Writes the demo dataset (trainA/trainB/testA/testB PNGs) under `root`, in parallel.
#[pyfunction]
#[pyo3(signature = (root, n_train=200, n_test=20, size=96, seed=0))]
pub fn write_demo_dataset(
    py: Python<'_>,
    root: PathBuf,
    n_train: u64,
    n_test: u64,
    size: u32,
    #[pyo3(from_py_with = seed_argument)] seed: u64,
) -> PyResult<()> {
    unlocked(py, || crate::data::demo::write_dataset(&root, n_train, n_test, size, seed))?;
    Ok(())
}

/// (face-mask IoU between `source` and `translated`, flatness and border brightness of
/// `translated`) for HWC uint8 images.
#[pyfunction]
pub fn demo_scores(source: PyTensor, translated: PyTensor) -> PyResult<(f64, f64, f64)> {
    let a = to_rgb_image(&source, "source")?;
    let b = to_rgb_image(&translated, "translated")?;
    if a.dimensions() != b.dimensions() {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "source is {:?}, translated {:?}: sizes differ",
            a.dimensions(),
            b.dimensions()
        )));
    }
    use crate::data::demo::{border_brightness, face_mask, flatness, iou};
    Ok((iou(&face_mask(&a), &face_mask(&b)), flatness(&b), border_brightness(&b)))
}

/// Prepares a dataset folder from raw domain folders; see `ugatit_rs.data.prepare`.
/// `callback(done, total)` is called about ten times a second; Ctrl-C (or an exception from the
/// callback) stops the workers and is raised here.
#[pyfunction]
#[pyo3(signature = (domains, output, size, fit, test_fraction, seed, min_size, workers, overwrite=Flag(false), callback=None))]
#[allow(clippy::too_many_arguments)]
pub fn prepare_dataset<'py>(
    py: Python<'py>,
    domains: Vec<(String, PathBuf)>,
    output: PathBuf,
    size: u32,
    fit: Text,
    test_fraction: f64,
    seed: u64,
    min_size: u32,
    workers: usize,
    overwrite: Flag,
    callback: Option<PyObject>,
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    use crate::data::prepare::{count_inputs, prepare, Fit, PrepareConfig, Progress};
    let fit = match fit.0.as_str() {
        "crop" => Fit::Crop,
        "pad" => Fit::Pad,
        other => return Err(PyValueError::new_err(format!("fit must be 'crop' or 'pad', got {other:?}"))),
    };
    let config = PrepareConfig { size, fit, test_fraction, seed, min_size, workers, overwrite: overwrite.0 };
    config.validate()?; // before the scan, which can take a while on a large folder
    let named: Vec<(&str, &std::path::Path)> = domains.iter().map(|(d, p)| (d.as_str(), p.as_path())).collect();
    let total = unlocked(py, || count_inputs(&named, &output))?;
    let progress = Progress::default();
    let mut raised: Option<PyErr> = None;
    let summary = unlocked(py, || {
        std::thread::scope(|scope| {
            let job = scope.spawn(|| crate::error::guarded(|| prepare(&named, &output, &config, &progress)));
            while !job.is_finished() {
                std::thread::sleep(Duration::from_millis(100));
                if raised.is_some() || job.is_finished() {
                    continue;
                }
                let outcome = Python::with_gil(|py| -> PyResult<()> {
                    py.check_signals()?;
                    if let Some(cb) = &callback {
                        cb.call1(py, (progress.done(), total))?;
                    }
                    Ok(())
                });
                if let Err(e) = outcome {
                    progress.cancel();
                    raised = Some(e);
                }
            }
            job.join().unwrap_or_else(|_| Err(crate::Error::internal("dataset preparation panicked")))
        })
    });
    if let Some(e) = raised {
        return Err(e);
    }
    let summary = summary?;
    if let Some(cb) = &callback {
        cb.call1(py, (total, total))?;
    }
    let d = pyo3::types::PyDict::new(py);
    for (split, n) in &summary.counts {
        d.set_item(split, n)?;
    }
    let skipped: Vec<(String, String)> =
        summary.skipped.iter().map(|(p, r)| (p.display().to_string(), r.clone())).collect();
    let duplicates: Vec<(String, String)> =
        summary.duplicates.iter().map(|(a, b)| (a.display().to_string(), b.display().to_string())).collect();
    d.set_item("skipped", skipped)?;
    d.set_item("duplicates", duplicates)?;
    Ok(d)
}
