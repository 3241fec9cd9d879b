//! Checkpoints: one safetensors file holding the six networks under their official names
//! (`genA2B.DownBlock.1.weight`, `disGA.model.1.weight_orig`, ...), both optimizers' state
//! (`optim.G.exp_avg`, ...), and in the metadata the step, learning rate and config.
//!
//! Files are written atomically — temp file, fsync, rename, fsync of the folder — so a process
//! killed mid-save leaves the previous checkpoint intact. Loading checks every tensor (presence,
//! dtype, shape) and the architecture before touching the trainer, so a bad file changes nothing.

use super::trainer::{Trainer, NETWORK_NAMES};
use crate::config::TrainConfig;
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub const FORMAT: &str = "ugatit-rs/1";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

fn dtype_of(kind: Kind) -> Result<(Dtype, &'static str)> {
    match kind {
        Kind::Float => Ok((Dtype::F32, "F32")),
        Kind::Double => Ok((Dtype::F64, "F64")),
        Kind::Int64 => Ok((Dtype::I64, "I64")),
        Kind::Uint8 => Ok((Dtype::U8, "U8")),
        other => Err(Error::Dtype(format!("cannot save a {other:?} tensor in a checkpoint"))),
    }
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::F64 => Some(Kind::Double),
        Dtype::F16 => Some(Kind::Half),
        Dtype::BF16 => Some(Kind::BFloat16),
        Dtype::I64 => Some(Kind::Int64),
        Dtype::U8 => Some(Kind::Uint8),
        _ => None,
    }
}

/// Writes `tensors` and `metadata` as a safetensors file, streaming one tensor at a time, to a
/// temporary file that replaces `path` only once it is complete and on disk.
pub fn write_safetensors_atomic(path: &Path, tensors: &[(String, Tensor)], metadata: &HashMap<String, String>) -> Result<()> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("string map"));
    let mut offset = 0usize;
    let mut cpu = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let (_, dtype) = dtype_of(tensor.f_kind()?)?;
        let t = tensor.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let bytes = t.numel() * t.f_kind()?.elt_size_in_bytes();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": t.size(), "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
        cpu.push((t, bytes));
    }
    let mut header_bytes = serde_json::to_vec(&serde_json::Value::Object(header)).expect("json");
    while header_bytes.len() % 8 != 0 {
        header_bytes.push(b' ');
    }

    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(&(header_bytes.len() as u64).to_le_bytes()).map_err(io_err(&tmp))?;
        w.write_all(&header_bytes).map_err(io_err(&tmp))?;
        let mut buf = Vec::new();
        // Fault injection for the crash tests: die after writing this many tensors.
        let abort_after: Option<usize> = std::env::var("UGATIT_RS_TEST_ABORT_SAVE_AFTER").ok().and_then(|v| v.parse().ok());
        for (i, (t, bytes)) in cpu.iter().enumerate() {
            if abort_after == Some(i) {
                w.flush().map_err(io_err(&tmp))?;
                std::process::abort();
            }
            buf.resize(*bytes, 0);
            t.f_copy_data_u8(&mut buf, t.numel())?;
            w.write_all(&buf).map_err(io_err(&tmp))?;
        }
        let file = w.into_inner().map_err(|e| Error::Io { path: tmp.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io_err(&tmp))?;
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

/// A safetensors file read into memory.
pub struct SafetensorsFile {
    pub path: PathBuf,
    bytes: Vec<u8>,
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::NotFound { path: path.to_path_buf(), message: "checkpoint file not found".into() });
        }
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let file = Self { path: path.to_path_buf(), bytes };
        file.parse()?; // validate the header once up front
        Ok(file)
    }

    fn parse(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.bytes).map_err(|e| {
            Error::StateDict(format!("{}: not a valid safetensors file ({e})", self.path.display()))
        })
    }

    pub fn metadata(&self) -> Result<HashMap<String, String>> {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).map_err(|e| {
            Error::StateDict(format!("{}: not a valid safetensors file ({e})", self.path.display()))
        })?;
        Ok(meta.metadata().clone().unwrap_or_default())
    }

    /// Every tensor whose name starts with `prefix`, with the prefix removed, on `device`.
    pub fn tensors_with_prefix(&self, prefix: &str, device: Device) -> Result<Vec<(String, Tensor)>> {
        let st = self.parse()?;
        let mut out = Vec::new();
        for (name, view) in st.iter() {
            let Some(rest) = name.strip_prefix(prefix) else { continue };
            let kind = kind_of(view.dtype()).ok_or_else(|| {
                Error::StateDict(format!("{}: tensor {name} has unsupported dtype {:?}", self.path.display(), view.dtype()))
            })?;
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let t = Tensor::f_from_data_size(view.data(), &shape, kind)?.f_to_device(device)?;
            out.push((rest.to_string(), t));
        }
        Ok(out)
    }
}

/// Saves the trainer's full state to `path` (atomically). Refuses, naming the tensor, to write a
/// state holding NaN or Inf, so the last checkpoint on disk is always a usable one.
pub fn save(trainer: &Trainer, path: &Path) -> Result<()> {
    let mut tensors = Vec::new();
    trainer.for_each_network(|net, store| {
        for var in store.vars() {
            tensors.push((format!("{net}.{}", var.name), var.tensor));
        }
        Ok(())
    })?;
    for (name, t) in &tensors {
        if !bool::try_from(&t.f_isfinite()?.f_all()?).map_err(Error::Torch)? {
            return Err(Error::NonFinite(format!(
                "not saving {}: {name} holds NaN or Inf (training diverged); the previous checkpoint is kept",
                path.display()
            )));
        }
    }
    let mut metadata = HashMap::new();
    for (group, optim) in [("G", &trainer.g_optim), ("D", &trainer.d_optim)] {
        let (exp_avg, exp_avg_sq, step) = optim.state();
        tensors.push((format!("optim.{group}.exp_avg"), exp_avg.shallow_clone()));
        tensors.push((format!("optim.{group}.exp_avg_sq"), exp_avg_sq.shallow_clone()));
        metadata.insert(format!("optim.{group}.step"), step.to_string());
    }
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert("step".into(), trainer.step.to_string());
    // `{:?}` prints the shortest string that parses back to the same f64.
    metadata.insert("lr".into(), format!("{:?}", trainer.g_optim.lr()));
    metadata.insert("config".into(), serde_json::to_string(trainer.config()).expect("config json"));
    write_safetensors_atomic(path, &tensors, &metadata)
}

fn parse_meta<T: std::str::FromStr>(meta: &HashMap<String, String>, key: &str, path: &Path) -> Result<T> {
    meta.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::StateDict(format!("{}: checkpoint metadata has no valid {key:?}", path.display())))
}

/// What a checkpoint holds besides the networks.
pub struct CheckpointInfo {
    pub step: i64,
    pub lr: f64,
    pub config: Option<TrainConfig>,
    pub has_optimizer_state: bool,
}

/// Reads the metadata of a checkpoint written by [`save`] (or networks-only, by `convert`).
pub fn info(file: &SafetensorsFile) -> Result<CheckpointInfo> {
    let meta = file.metadata()?;
    let path = &file.path;
    let config = match meta.get("config") {
        Some(json) => Some(serde_json::from_str::<TrainConfig>(json).map_err(|e| {
            Error::StateDict(format!("{}: checkpoint config is not valid JSON ({e})", path.display()))
        })?),
        None => None,
    };
    Ok(CheckpointInfo {
        step: meta.get("step").map(|_| parse_meta(&meta, "step", path)).transpose()?.unwrap_or(0),
        lr: meta.get("lr").map(|_| parse_meta(&meta, "lr", path)).transpose()?.unwrap_or(f64::NAN),
        config,
        has_optimizer_state: meta.contains_key("optim.G.step"),
    })
}

/// Restores the trainer from `path`. Everything is validated before anything is changed.
/// A networks-only file (no optimizer state) loads the weights and resets both optimizers.
pub fn load(trainer: &mut Trainer, path: &Path) -> Result<CheckpointInfo> {
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
    let device = trainer.device();
    let mut per_network = Vec::new();
    for net in NETWORK_NAMES {
        let tensors = file.tensors_with_prefix(&format!("{net}."), device)?;
        if tensors.is_empty() {
            return Err(Error::StateDict(format!("{}: checkpoint has no tensors for {net}", path.display())));
        }
        per_network.push((net, tensors));
    }
    let optim_state = if info.has_optimizer_state {
        let meta = file.metadata()?;
        let mut states = Vec::new();
        for group in ["G", "D"] {
            let t = file.tensors_with_prefix(&format!("optim.{group}."), device)?;
            let find = |name: &str| {
                t.iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone()).ok_or_else(|| {
                    Error::StateDict(format!("{}: checkpoint lacks optim.{group}.{name}", path.display()))
                })
            };
            let step: i64 = parse_meta(&meta, &format!("optim.{group}.step"), path)?;
            states.push((find("exp_avg")?, find("exp_avg_sq")?, step));
        }
        Some(states)
    } else {
        None
    };

    // Validate every network (strict) before copying anything: load into the live stores only
    // once all six dry runs pass.
    trainer.for_each_network(|net, store| {
        let (_, tensors) = per_network.iter().find(|(n, _)| *n == net).expect("all six read");
        store.check(tensors, true, net).map(|_| ())
    })?;
    if let Some(states) = &optim_state {
        for ((exp_avg, exp_avg_sq, _), optim) in states.iter().zip([&trainer.g_optim, &trainer.d_optim]) {
            optim.check_state(exp_avg, exp_avg_sq)?;
        }
    }
    trainer.for_each_network(|net, store| {
        let (_, tensors) = per_network.iter().find(|(n, _)| *n == net).expect("all six read");
        store.load(tensors, true, net).map(|_| ())
    })?;
    match optim_state {
        Some(states) => {
            let [(g_m, g_v, g_step), (d_m, d_v, d_step)]: [_; 2] = states.try_into().ok().expect("two groups");
            trainer.g_optim.load_state(&g_m, &g_v, g_step)?;
            trainer.d_optim.load_state(&d_m, &d_v, d_step)?;
        }
        None => {
            trainer.g_optim.reset_state()?;
            trainer.d_optim.reset_state()?;
        }
    }
    trainer.step = info.step;
    if info.lr.is_finite() {
        trainer.g_optim.set_lr(info.lr);
        trainer.d_optim.set_lr(info.lr);
    }
    Ok(info)
}
