//! Checkpoints: one safetensors file holding a trainer's networks under their official names
//! (U-GAT-IT: `genA2B.DownBlock.1.weight`, `disGA.model.1.weight_orig`, ...; CycleGAN:
//! `G_A.model.1.weight`, ...), both optimizers' state (`optim.G.exp_avg`, ...), any other state
//! (CycleGAN's image pools), and in the metadata the step, learning rate and config.
//!
//! Files are written atomically — temp file, fsync, rename, fsync of the folder — so a process
//! killed mid-save leaves the previous checkpoint intact. Each tensor's CRC-32 is kept in the
//! metadata and checked whenever the tensor is read, so bytes changed on disk or in a copy (a
//! flipped bit, a zero-filled page) are named instead of loaded as weights. Loading checks every
//! tensor (presence, dtype, shape) and the architecture before touching the trainer, so a bad
//! file changes nothing.

use super::cyclegan_trainer::{CycleGanTrainer, CYCLEGAN_NETWORK_NAMES};
use super::optim::Adam;
use super::trainer::{Trainer, NETWORK_NAMES};
use crate::config::TrainConfig;
use crate::models::input::check_training_batch;
use crate::models::{UgatitDiscriminator, UgatitGenerator};
use crate::nn::TensorSpec;
use crate::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub const FORMAT: &str = "ugatit-rs/1";

/// Tensors and metadata entries a trainer saves besides its networks and optimizers.
pub type ExtraState = (Vec<(String, Tensor)>, Vec<(String, String)>);

/// What a checkpoint saves and restores, and what a step checks first; both trainers implement it.
pub trait Checkpointable {
    fn config(&self) -> &TrainConfig;
    fn device(&self) -> Device;
    fn step_count(&self) -> i64;
    fn set_step_count(&mut self, step: i64);
    fn lr(&self) -> f64;
    /// The networks' names, which prefix their tensors in the file.
    fn network_names(&self) -> &'static [&'static str];
    fn for_each_network(&self, f: &mut dyn FnMut(&'static str, &crate::nn::ParamStore) -> Result<()>) -> Result<()>;
    /// The generators' and the discriminators' optimizers.
    fn optimizers(&mut self) -> [&mut Adam; 2];
    /// Further tensors and metadata to save (none by default).
    fn extra_state(&self) -> Result<ExtraState> {
        Ok((Vec::new(), Vec::new()))
    }
    /// Checks the further state in `file` (absent is fine), changing nothing.
    fn check_extra_state(&self, _file: &SafetensorsFile) -> Result<()> {
        Ok(())
    }
    /// Restores the further state (after every check passed).
    fn load_extra_state(&mut self, _file: &SafetensorsFile) -> Result<()> {
        Ok(())
    }
    /// Refuses a batch whose generator passes cannot fit in the host memory.
    fn check_step_memory(&self, batch: &Tensor) -> Result<()>;
    /// Everything a step refuses before its first kernel: batches of the wrong shape, dtype or
    /// device, networks whose tensors Python altered (a changed shape, dtype or device, or a
    /// parameter no longer in its optimizer's storage), and a batch too large for the host.
    fn check_step(&mut self, real_a: &Tensor, real_b: &Tensor) -> Result<()> {
        let (img_size, device) = (self.config().img_size, self.device());
        check_training_batch(real_a, "real_a", img_size, device)?;
        check_training_batch(real_b, "real_b", img_size, device)?;
        self.for_each_network(&mut |name, store| store.check_intact(name))?;
        self.optimizers().iter().try_for_each(|optim| optim.check_aliasing())?;
        self.check_step_memory(real_a)
    }
}

impl<G: UgatitGenerator, D: UgatitDiscriminator> Checkpointable for Trainer<G, D> {
    fn config(&self) -> &TrainConfig {
        Trainer::config(self)
    }
    fn device(&self) -> Device {
        Trainer::device(self)
    }
    fn step_count(&self) -> i64 {
        self.step
    }
    fn set_step_count(&mut self, step: i64) {
        self.set_step(step)
    }
    fn lr(&self) -> f64 {
        Trainer::lr(self)
    }
    fn network_names(&self) -> &'static [&'static str] {
        &NETWORK_NAMES
    }
    fn for_each_network(&self, f: &mut dyn FnMut(&'static str, &crate::nn::ParamStore) -> Result<()>) -> Result<()> {
        Trainer::for_each_network(self, f)
    }
    fn optimizers(&mut self) -> [&mut Adam; 2] {
        [&mut self.g_optim, &mut self.d_optim]
    }
    fn check_step_memory(&self, batch: &Tensor) -> Result<()> {
        Trainer::check_step_memory(self, batch)
    }
}

impl Checkpointable for CycleGanTrainer {
    fn config(&self) -> &TrainConfig {
        CycleGanTrainer::config(self)
    }
    fn device(&self) -> Device {
        CycleGanTrainer::device(self)
    }
    fn step_count(&self) -> i64 {
        self.step
    }
    fn set_step_count(&mut self, step: i64) {
        self.set_step(step)
    }
    fn lr(&self) -> f64 {
        CycleGanTrainer::lr(self)
    }
    fn network_names(&self) -> &'static [&'static str] {
        &CYCLEGAN_NETWORK_NAMES
    }
    fn for_each_network(&self, f: &mut dyn FnMut(&'static str, &crate::nn::ParamStore) -> Result<()>) -> Result<()> {
        CycleGanTrainer::for_each_network(self, f)
    }
    fn optimizers(&mut self) -> [&mut Adam; 2] {
        [&mut self.g_optim, &mut self.d_optim]
    }
    fn check_step_memory(&self, batch: &Tensor) -> Result<()> {
        CycleGanTrainer::check_step_memory(self, batch)
    }

    /// The pools: `pool.fake_B.images` / `pool.fake_A.images` (when not empty) and each RNG
    /// state in the metadata (`pool.fake_B.rng`, as a decimal u64).
    fn extra_state(&self) -> Result<ExtraState> {
        let (mut tensors, mut metadata) = (Vec::new(), Vec::new());
        for (name, pool) in POOL_NAMES.iter().zip(&self.pools) {
            let (images, rng) = pool.state()?;
            if let Some(images) = images {
                tensors.push((format!("pool.{name}.images"), images));
            }
            metadata.push((format!("pool.{name}.rng"), rng.to_string()));
        }
        Ok((tensors, metadata))
    }

    fn check_extra_state(&self, file: &SafetensorsFile) -> Result<()> {
        let size = self.config().img_size;
        for (name, pool) in POOL_NAMES.iter().zip(&self.pools) {
            let entry = file.entries().iter().find(|e| e.name == format!("pool.{name}.images"));
            if let Some(e) = entry {
                if e.kind != Kind::Float {
                    return Err(Error::StateDict(format!("{}: {} is not float32", file.path.display(), e.name)));
                }
            }
            pool.check(entry.map(|e| e.shape.as_slice()), &[3, size, size], &format!("pool.{name}.images"))?;
            if let Some(state) = file.metadata().get(&format!("pool.{name}.rng")) {
                state.parse::<u64>().map_err(|_| {
                    Error::StateDict(format!("{}: pool.{name}.rng is not a u64 ({state:?})", file.path.display()))
                })?;
            }
        }
        Ok(())
    }

    fn load_extra_state(&mut self, file: &SafetensorsFile) -> Result<()> {
        let device = self.device();
        for (name, pool) in POOL_NAMES.iter().zip(self.pools.iter_mut()) {
            let Some(state) = file.metadata().get(&format!("pool.{name}.rng")) else { continue };
            let rng = state.parse::<u64>().map_err(|_| Error::StateDict(format!("pool.{name}.rng: {state:?}")))?;
            let images = match file.entries().iter().find(|e| e.name == format!("pool.{name}.images")) {
                Some(entry) => Some(file.read(entry, device)?),
                None => None,
            };
            pool.restore(images.as_ref(), rng)?;
        }
        Ok(())
    }
}

/// CycleGAN's pools by what they hold: generated B images (for D_A), generated A ones (for D_B).
const POOL_NAMES: [&str; 2] = ["fake_B", "fake_A"];

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

fn dtype_name(kind: Kind) -> Result<&'static str> {
    match kind {
        Kind::Float => Ok("F32"),
        Kind::Double => Ok("F64"),
        Kind::Half => Ok("F16"),
        Kind::BFloat16 => Ok("BF16"),
        Kind::Int64 => Ok("I64"),
        Kind::Uint8 => Ok("U8"),
        other => Err(Error::Dtype(format!("cannot save a {other:?} tensor in a checkpoint"))),
    }
}

fn kind_of(dtype: &str) -> Option<Kind> {
    match dtype {
        "F32" => Some(Kind::Float),
        "F64" => Some(Kind::Double),
        "F16" => Some(Kind::Half),
        "BF16" => Some(Kind::BFloat16),
        "I64" => Some(Kind::Int64),
        "U8" => Some(Kind::Uint8),
        _ => None,
    }
}

/// Largest safetensors header we accept (the format's own readers use the same limit).
const MAX_HEADER: u64 = 100 << 20;

/// Writes `tensors` and `metadata` as a safetensors file, to a temporary file that replaces
/// `path` only once it is complete and on disk. Tensors are copied to the host one at a time,
/// so saving needs one tensor's worth of host memory, not the whole state's.
pub fn write_safetensors_atomic(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let specs = tensors.iter().map(|(n, t)| Ok((n.clone(), t.size(), t.f_kind()?))).collect::<Result<Vec<_>>>()?;
    write_safetensors_streaming(path, &specs, metadata, |i| Ok(tensors[i].1.shallow_clone()))
}

/// [`write_safetensors_atomic`] for tensors produced one at a time by `produce(i)` (each must
/// have the shape and dtype of `specs[i]`): the header is written from the specs, then each
/// tensor as it comes, so memory holds one tensor at a time (conversions of multi-GB files).
pub fn write_safetensors_streaming(
    path: &Path,
    specs: &[TensorSpec],
    metadata: &HashMap<String, String>,
    mut produce: impl FnMut(usize) -> Result<Tensor>,
) -> Result<()> {
    // The tensors' checksums are known only once they are written: the header holds a
    // placeholder of the same length, overwritten in place at the end.
    let mut metadata = metadata.clone();
    metadata.insert(CHECKSUM_KEY.into(), vec!["00000000"; specs.len()].join(","));
    metadata.remove(DATA_ORDER_CHECKSUM_KEY); // a loaded file's, passed along: not this file's
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(metadata));
    let mut offset = 0usize;
    for (name, shape, kind) in specs {
        let numel: i64 = shape.iter().product();
        let bytes = numel as usize * kind.elt_size_in_bytes();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype_name(*kind)?, "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut header_bytes = serde_json::Value::Object(header).to_string().into_bytes();
    while !header_bytes.len().is_multiple_of(8) {
        header_bytes.push(b' ');
    }
    let checksums_at = checksum_position(&header_bytes)? as u64 + 8;

    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = crate::files::temporary_beside(path);
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).map_err(io_err(path))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(&(header_bytes.len() as u64).to_le_bytes()).map_err(io_err(path))?;
        w.write_all(&header_bytes).map_err(io_err(path))?;
        let mut checksums = Vec::with_capacity(specs.len());
        for (i, (name, shape, kind)) in specs.iter().enumerate() {
            crash_point(i, &mut w, &tmp)?;
            // On the host and contiguous: a no-op for CPU tensors, one tensor's copy otherwise.
            let t = produce(i)?.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
            if t.size() != *shape || t.f_kind()? != *kind {
                return Err(Error::internal(format!(
                    "{name}: produced {:?} {:?}, announced {shape:?} {kind:?}",
                    t.size(),
                    t.f_kind()?
                )));
            }
            let bytes = t.numel() * kind.elt_size_in_bytes();
            // SAFETY: `t` is a contiguous CPU tensor of `bytes` bytes, alive (and not written to,
            // the trainer being locked) for the duration of the borrow.
            let data = unsafe { std::slice::from_raw_parts(t.data_ptr() as *const u8, bytes) };
            w.write_all(data).map_err(io_err(path))?;
            checksums.push(format!("{:08x}", crc32fast::hash(data)));
        }
        let file = w.into_inner().map_err(|e| Error::Io { path: path.to_path_buf(), source: e.into_error() })?;
        let mut by_name: Vec<(&String, String)> = specs.iter().map(|(name, _, _)| name).zip(checksums).collect();
        by_name.sort();
        let checksums: Vec<String> = by_name.into_iter().map(|(_, checksum)| checksum).collect();
        file.write_all_at(checksums.join(",").as_bytes(), checksums_at).map_err(io_err(path))?;
        file.sync_all().map_err(io_err(path))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The metadata entry holding each tensor's CRC-32 (8 hex digits, comma-separated, in the
/// order of the tensors' names). Name order, not the order of the data in the file: another
/// safetensors writer (the `safetensors` package's `save_file(tensors, metadata=...)`) lays the
/// tensors out its own way and copies the metadata along, and the checksums must still pair with
/// their tensors. Files without it (written before it existed, or by other tools) load unchecked.
const CHECKSUM_KEY: &str = "crc32_by_name";

/// The checksum entry of the files written before [`CHECKSUM_KEY`]: the same list in the order
/// of the tensors' data, which only our own writer's layout keeps.
const DATA_ORDER_CHECKSUM_KEY: &str = "crc32";

/// Where the checksums' placeholder value starts in the serialised header. JSON escapes every
/// quote inside a string, so the key followed by `":"` occurs once, as the metadata entry.
fn checksum_position(header: &[u8]) -> Result<usize> {
    let key = format!("\"{CHECKSUM_KEY}\":\"");
    let mut found = header.windows(key.len()).enumerate().filter(|(_, w)| *w == key.as_bytes()).map(|(i, _)| i);
    match (found.next(), found.next()) {
        (Some(at), None) => Ok(at + key.len()),
        _ => Err(Error::internal("the checkpoint header has no single checksum entry")),
    }
}

/// Fault injection for the crash tests (`--features crash-tests` only): with
/// `UGATIT_RS_TEST_ABORT_SAVE_AFTER=N` the process dies after writing N tensors.
#[cfg(feature = "crash-tests")]
fn crash_point(written: usize, w: &mut BufWriter<File>, tmp: &Path) -> Result<()> {
    let abort_after: Option<usize> = std::env::var("UGATIT_RS_TEST_ABORT_SAVE_AFTER").ok().and_then(|v| v.parse().ok());
    if abort_after == Some(written) {
        w.flush().map_err(io_err(tmp))?;
        std::process::abort();
    }
    Ok(())
}

#[cfg(not(feature = "crash-tests"))]
fn crash_point(_written: usize, _w: &mut BufWriter<File>, _tmp: &Path) -> Result<()> {
    Ok(())
}

/// The first bytes of a `torch.save` file: a zip archive, or a legacy pickle (protocol 2-5). A
/// safetensors file starts with its header length instead, which is never that large.
fn looks_like_torch_save(start: &[u8; 8]) -> bool {
    u64::from_le_bytes(*start) > MAX_HEADER
        && (start.starts_with(b"PK\x03\x04") || (start[0] == 0x80 && (2..=5).contains(&start[1])))
}

/// Whether `path` is a `torch.save` file (an official UGATIT-pytorch checkpoint, whatever its
/// extension) rather than a safetensors one. Reads 8 bytes of a regular file, never blocks.
pub fn is_torch_save(path: &Path) -> Result<bool> {
    let file = crate::files::open_regular(path)?;
    let mut start = [0u8; 8];
    Ok(file.read_exact_at(&mut start, 0).is_ok() && looks_like_torch_save(&start))
}

/// Where one tensor lies in a safetensors file.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub name: String,
    pub kind: Kind,
    pub shape: Vec<i64>,
    /// Absolute byte offset in the file, and length.
    offset: u64,
    len: u64,
    /// CRC-32 of the bytes as written, where the file records it.
    checksum: Option<u32>,
}

/// An open safetensors file: the header is parsed and checked against the file's size up
/// front; tensors are read one at a time on demand, so memory stays at one tensor.
pub struct SafetensorsFile {
    pub path: PathBuf,
    file: File,
    entries: Vec<TensorEntry>,
    metadata: HashMap<String, String>,
    /// The metadata entry the checksums came from, if any.
    checksum_key: Option<&'static str>,
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = crate::files::open_regular(path).map_err(|e| match e {
            Error::NotFound { path, .. } => Error::NotFound { path, message: "checkpoint file not found".into() },
            other => other,
        })?;
        let invalid =
            |why: String| Error::StateDict(format!("{}: not a valid safetensors checkpoint ({why})", path.display()));
        let size = file.metadata().map_err(io_err(path))?.len();
        let mut start = [0u8; 8];
        file.read_exact_at(&mut start, 0).map_err(|_| invalid(format!("only {size} bytes long")))?;
        let header_len = u64::from_le_bytes(start);
        if looks_like_torch_save(&start) {
            return Err(Error::StateDict(format!(
                "{}: this is a PyTorch .pt file (zip/pickle), not a ugatit-rs safetensors checkpoint; \
                 convert it first: `ugatit-rs convert {} OUT.safetensors` or ugatit_rs.convert.official_to_ours",
                path.display(),
                path.display()
            )));
        }
        if header_len > MAX_HEADER || header_len + 8 > size {
            return Err(invalid(format!("header length {header_len} does not fit a {size}-byte file")));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact_at(&mut header, 8).map_err(io_err(path))?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| invalid(format!("header is not JSON: {e}")))?;
        let data_start = 8 + header_len;
        let data_len = size - data_start;
        let mut metadata: HashMap<String, String> = HashMap::new();
        let mut entries = Vec::new();
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = serde_json::from_value(value).map_err(|e| invalid(format!("metadata: {e}")))?;
                continue;
            }
            let field = |key: &str| value.get(key).ok_or_else(|| invalid(format!("{name} has no {key}")));
            let dtype = field("dtype")?.as_str().unwrap_or("?");
            let kind = kind_of(dtype).ok_or_else(|| invalid(format!("{name} has unsupported dtype {dtype}")))?;
            let shape: Vec<i64> = serde_json::from_value(field("shape")?.clone())
                .map_err(|_| invalid(format!("{name} has an invalid shape")))?;
            let offsets: [u64; 2] = serde_json::from_value(field("data_offsets")?.clone())
                .map_err(|_| invalid(format!("{name} has invalid data_offsets")))?;
            let numel = shape.iter().try_fold(1u64, |n, &d| u64::try_from(d).ok().and_then(|d| n.checked_mul(d)));
            let expected = numel.and_then(|n| n.checked_mul(kind.elt_size_in_bytes() as u64));
            let [begin, end] = offsets;
            if end < begin || end > data_len || expected != Some(end - begin) {
                return Err(invalid(format!(
                    "{name}: data_offsets {offsets:?} do not hold a {dtype} {shape:?} tensor inside the file's \
                     {data_len} data bytes (truncated?)"
                )));
            }
            entries.push(TensorEntry {
                name,
                kind,
                shape,
                offset: data_start + begin,
                len: end - begin,
                checksum: None,
            });
        }
        let by_name = metadata.remove(CHECKSUM_KEY);
        let by_data = metadata.remove(DATA_ORDER_CHECKSUM_KEY);
        if let Some(list) = by_name.as_ref().or(by_data.as_ref()) {
            let checksums: Vec<Option<u32>> =
                list.split(',').filter(|c| !c.is_empty()).map(|c| u32::from_str_radix(c, 16).ok()).collect();
            if checksums.len() != entries.len() || checksums.contains(&None) {
                return Err(invalid(format!(
                    "its {} tensors do not match the checksum list in its metadata (corrupted header)",
                    entries.len()
                )));
            }
            if by_name.is_some() {
                entries.sort_by(|a, b| a.name.cmp(&b.name));
            } else {
                entries.sort_by_key(|e| e.offset);
            }
            for (entry, checksum) in entries.iter_mut().zip(checksums) {
                entry.checksum = checksum;
            }
        }
        entries.sort_by_key(|e| e.offset);
        let checksum_key = match (&by_name, &by_data) {
            (Some(_), _) => Some(CHECKSUM_KEY),
            (None, Some(_)) => Some(DATA_ORDER_CHECKSUM_KEY),
            (None, None) => None,
        };
        Ok(Self { path: path.to_path_buf(), file, entries, metadata, checksum_key })
    }

    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    pub fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    /// Reads one tensor onto `device`, straight into the tensor's own memory, checking its
    /// bytes against the checksum the file records for it.
    pub fn read(&self, entry: &TensorEntry, device: Device) -> Result<Tensor> {
        let t = Tensor::f_empty(entry.shape.as_slice(), (entry.kind, Device::Cpu))
            .map_err(|e| Error::OutOfMemory(format!("cannot allocate {} bytes for {}: {e}", entry.len, entry.name)))?;
        if entry.len > 0 {
            // SAFETY: a fresh contiguous CPU tensor of exactly `entry.len` bytes, owned here.
            let data = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, entry.len as usize) };
            self.file.read_exact_at(data, entry.offset).map_err(io_err(&self.path))?;
            if entry.checksum.is_some_and(|expected| crc32fast::hash(data) != expected) {
                return Err(Error::StateDict(format!(
                    "{}: {}: checksum mismatch, the file is corrupted (its bytes changed after it was written; \
                     a tensor changed on purpose by another tool is refused too: change it through ugatit-rs \
                     and save from there, or drop the file's \"{}\" metadata entry to load it unchecked)",
                    self.path.display(),
                    entry.name,
                    self.checksum_key.unwrap_or(CHECKSUM_KEY)
                )));
            }
        }
        Ok(if device == Device::Cpu { t } else { t.f_to_device(device)? })
    }

    /// (name without `prefix`, entry) for every tensor under `prefix`.
    pub fn entries_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a TensorEntry)> {
        self.entries.iter().filter_map(move |e| e.name.strip_prefix(prefix).map(|rest| (rest, e)))
    }
}

/// Saves the trainer's full state to `path` (atomically). Refuses, naming the tensor, to write a
/// state holding NaN or Inf, so the last checkpoint on disk is always a usable one.
pub fn save(trainer: &mut dyn Checkpointable, path: &Path) -> Result<()> {
    save_with_metadata(trainer, path, &[])
}

/// [`save`] with extra metadata entries (e.g. the data-parallel world size); the reserved keys
/// (`format`, `step`, `lr`, `config`, `optim.*`) cannot be overridden.
pub fn save_with_metadata(trainer: &mut dyn Checkpointable, path: &Path, extra: &[(String, String)]) -> Result<()> {
    let mut tensors = Vec::new();
    trainer.for_each_network(&mut |net, store| {
        store.check_intact(net)?;
        for var in store.vars() {
            tensors.push((format!("{net}.{}", var.name), var.tensor));
        }
        Ok(())
    })?;
    let (extra_tensors, extra_metadata) = trainer.extra_state()?;
    tensors.extend(extra_tensors);
    for (name, t) in &tensors {
        if !all_finite(t)? {
            return Err(Error::NonFinite(format!(
                "not saving {}: {name} holds NaN or Inf (training diverged); the previous checkpoint is kept",
                path.display()
            )));
        }
    }
    let mut metadata: HashMap<String, String> = extra_metadata.into_iter().collect();
    let (step, lr, config) = (trainer.step_count(), trainer.lr(), trainer.config().clone());
    for (group, optim) in ["G", "D"].into_iter().zip(trainer.optimizers()) {
        let (exp_avg, exp_avg_sq, step) = optim.state();
        tensors.push((format!("optim.{group}.exp_avg"), exp_avg.shallow_clone()));
        tensors.push((format!("optim.{group}.exp_avg_sq"), exp_avg_sq.shallow_clone()));
        metadata.insert(format!("optim.{group}.step"), step.to_string());
    }
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert("step".into(), step.to_string());
    // `{:?}` prints the shortest string that parses back to the same f64.
    metadata.insert("lr".into(), format!("{lr:?}"));
    metadata.insert("config".into(), serde_json::to_string(&config).expect("config json"));
    for (key, value) in extra {
        metadata.entry(key.clone()).or_insert_with(|| value.clone());
    }
    write_safetensors_atomic(path, &tensors, &metadata)
}

fn all_finite(t: &Tensor) -> Result<bool> {
    all_chunks(t, |chunk| chunk.f_isfinite()?.f_all())
}

/// Whether `test` holds for every chunk of `t` (flattened), a million elements at a time: the
/// whole-tensor checks allocate several temporaries the size of the tensor (`isfinite` alone
/// takes an `abs` copy and three masks), which for a checkpoint's largest entry (the flat Adam
/// moments) more than doubled the memory a load needs.
fn all_chunks(t: &Tensor, test: impl Fn(&Tensor) -> std::result::Result<Tensor, tch::TchError>) -> Result<bool> {
    const CHUNK: i64 = 1 << 20;
    let flat = t.f_reshape([-1])?;
    let n = flat.size()[0];
    let mut start = 0;
    while start < n {
        if !bool::try_from(&test(&flat.f_narrow(0, start, CHUNK.min(n - start))?)?).map_err(Error::Torch)? {
            return Ok(false);
        }
        start += CHUNK;
    }
    Ok(true)
}

/// What a checkpoint holds besides the networks.
pub struct CheckpointInfo {
    pub step: i64,
    /// The learning rate of the checkpoint's last update (informational: the schedule is a
    /// function of the step and the config), if recorded.
    pub lr: Option<f64>,
    pub config: Option<TrainConfig>,
    /// `optim.G.step` and `optim.D.step`, when the file holds optimizer state.
    pub optimizer_steps: Option<[i64; 2]>,
}

/// Reads and checks the metadata of a checkpoint written by [`save`] (or networks-only, by
/// `convert`): counts must be non-negative integers, the learning rate finite and non-negative,
/// the config valid.
pub fn info(file: &SafetensorsFile) -> Result<CheckpointInfo> {
    let meta = file.metadata();
    let path = &file.path;
    let bad = |key: &str, why: &str| {
        Error::StateDict(format!("{}: checkpoint metadata {key:?} {why} (got {:?})", path.display(), meta[key]))
    };
    let count = |key: &str| -> Result<Option<i64>> {
        match meta.get(key) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if n >= 0 => Ok(Some(n)),
                _ => Err(bad(key, "must be a non-negative integer")),
            },
        }
    };
    let lr = match meta.get("lr") {
        None => None,
        Some(v) => match v.trim().parse::<f64>() {
            Ok(lr) if lr.is_finite() && lr >= 0.0 => Some(lr),
            _ => return Err(bad("lr", "must be a finite, non-negative number")),
        },
    };
    let config = match meta.get("config") {
        Some(json) => {
            let config = serde_json::from_str::<TrainConfig>(json).map_err(|e| {
                Error::StateDict(format!("{}: checkpoint config is not valid JSON ({e})", path.display()))
            })?;
            config.validate().map_err(|e| Error::StateDict(format!("{}: checkpoint config: {e}", path.display())))?;
            Some(config)
        }
        None => None,
    };
    let optimizer_steps = match (count("optim.G.step")?, count("optim.D.step")?) {
        (Some(g), Some(d)) => Some([g, d]),
        (None, None) => None,
        _ => {
            return Err(Error::StateDict(format!("{}: checkpoint has the state of one optimizer only", path.display())))
        }
    };
    Ok(CheckpointInfo { step: count("step")?.unwrap_or(0), lr, config, optimizer_steps })
}

/// Restores the trainer from `path`. Everything is validated before anything is changed: the
/// architecture, every tensor's presence, dtype and shape (from the header), then every value
/// (finite; second moments non-negative), reading one tensor at a time; only then are the
/// tensors copied in, again one at a time. A networks-only file resets both optimizers.
pub fn load(trainer: &mut dyn Checkpointable, path: &Path) -> Result<CheckpointInfo> {
    let file = SafetensorsFile::open(path)?;
    let info = info(&file)?;
    if let Some(saved) = &info.config {
        let ours = trainer.config().architecture();
        for ((field, theirs), (_, mine)) in saved.architecture().iter().zip(ours.iter()) {
            if theirs != mine {
                return Err(Error::StateDict(format!(
                    "{}: checkpoint was trained with {field}={theirs}, this trainer has {field}={mine}",
                    path.display()
                )));
            }
        }
    }
    // 1. Names, dtypes and shapes, from the header alone.
    trainer.for_each_network(&mut |net, store| {
        let prefix = format!("{net}.");
        let specs: Vec<TensorSpec> =
            file.entries_with_prefix(&prefix).map(|(n, e)| (n.to_string(), e.shape.clone(), e.kind)).collect();
        if specs.is_empty() {
            return Err(Error::StateDict(format!("{}: checkpoint has no tensors for {net}", path.display())));
        }
        store.check_specs(&specs, true, net).map(|_| ())
    })?;
    let optim_entries = match info.optimizer_steps {
        Some(steps) => {
            let mut found = Vec::new();
            for ((group, step), optim) in [("G", steps[0]), ("D", steps[1])].into_iter().zip(trainer.optimizers()) {
                let entry = |name: &str| {
                    file.entries().iter().find(|e| e.name == format!("optim.{group}.{name}")).cloned().ok_or_else(
                        || Error::StateDict(format!("{}: checkpoint lacks optim.{group}.{name}", path.display())),
                    )
                };
                let (m, v) = (entry("exp_avg")?, entry("exp_avg_sq")?);
                optim.check_state_spec(&m.shape, m.kind)?;
                optim.check_state_spec(&v.shape, v.kind)?;
                found.push((m, v, step));
            }
            Some(found)
        }
        None => None,
    };
    trainer.check_extra_state(&file)?;
    // 2. Values: finite everywhere, second moments non-negative.
    let device = trainer.device();
    let names = trainer.network_names();
    for entry in file.entries() {
        let is_network = names.iter().any(|net| entry.name.strip_prefix(net).is_some_and(|r| r.starts_with('.')))
            || entry.name.starts_with("pool.");
        let is_optim = optim_entries
            .as_ref()
            .is_some_and(|o| o.iter().any(|(m, v, _)| m.name == entry.name || v.name == entry.name));
        if !is_network && !is_optim {
            continue;
        }
        let t = file.read(entry, Device::Cpu)?;
        if !all_finite(&t)? {
            return Err(Error::NonFinite(format!("{}: {} holds NaN or Inf", path.display(), entry.name)));
        }
        if entry.name.ends_with("exp_avg_sq") && !all_chunks(&t, |chunk| chunk.f_ge(0.0)?.f_all())? {
            return Err(Error::StateDict(format!(
                "{}: {} has negative entries (a second moment cannot be negative)",
                path.display(),
                entry.name
            )));
        }
    }
    // 3. Copy in, one tensor at a time.
    trainer.for_each_network(&mut |net, store| {
        let prefix = format!("{net}.");
        for (name, entry) in file.entries_with_prefix(&prefix) {
            store.copy_from(name, &file.read(entry, device)?)?;
        }
        Ok(())
    })?;
    match optim_entries {
        Some(found) => {
            for ((m, v, step), optim) in found.iter().zip(trainer.optimizers()) {
                optim.load_moment("exp_avg", &file.read(m, device)?)?;
                optim.load_moment("exp_avg_sq", &file.read(v, device)?)?;
                optim.set_step_count(*step);
            }
        }
        None => {
            for optim in trainer.optimizers() {
                optim.reset_state()?;
            }
        }
    }
    trainer.load_extra_state(&file)?;
    trainer.set_step_count(info.step);
    Ok(info)
}
