//! A tensor-bundle checkpoint: the index read whole (it is small), tensors read one at a time
//! from their data shard straight into a tensor's memory, each checked against its CRC-32C.

use super::{crc32c, proto, table};
use crate::files::open_regular;
use crate::{Error, Result};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The index of the real selfie2anime checkpoint is well under a megabyte; anything this large
/// is not an index.
const MAX_INDEX_BYTES: u64 = 256 << 20;

/// One variable of the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TfEntry {
    pub name: String,
    /// TensorFlow's `DataType` number (1 = float32).
    pub dtype: u64,
    pub shape: Vec<i64>,
    shard: u32,
    offset: u64,
    size: u64,
    crc: u32,
}

impl TfEntry {
    pub fn kind(&self) -> Option<Kind> {
        match self.dtype {
            1 => Some(Kind::Float),
            2 => Some(Kind::Double),
            3 => Some(Kind::Int),
            9 => Some(Kind::Int64),
            19 => Some(Kind::Half),
            _ => None,
        }
    }

    /// The element count, or None for a negative or overflowing shape (a corrupt entry).
    pub fn numel(&self) -> Option<i64> {
        self.shape.iter().try_fold(1i64, |n, &d| if d < 0 { None } else { n.checked_mul(d) })
    }
}

#[derive(Debug)]
pub struct TfCheckpoint {
    prefix: PathBuf,
    num_shards: u32,
    entries: Vec<TfEntry>,
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::StateDict(format!("{}: {message}", path.display()))
}

/// The checkpoint prefix (`.../UGATIT.model-1000000`) for any of: the prefix itself, its
/// `.index` or a `.data-*` file, or a folder holding a `checkpoint` file (the newest) or a
/// single `.index`.
pub fn resolve_prefix(path: &Path) -> Result<PathBuf> {
    let text = path.to_string_lossy();
    let prefix = if path.is_dir() {
        let listed = std::fs::read_to_string(path.join("checkpoint")).ok().and_then(|s| {
            s.lines().find_map(|line| {
                let rest = line.trim().strip_prefix("model_checkpoint_path:")?;
                Some(rest.trim().trim_matches('"').to_string())
            })
        });
        match listed {
            // TensorFlow often records absolute paths of the machine that saved the checkpoint:
            // when that path is not here, the same file name in this folder is meant.
            Some(name) => {
                let listed = path.join(&name);
                let here = PathBuf::from(format!("{}.index", listed.display()));
                match Path::new(&name).file_name() {
                    Some(file) if !here.is_file() => path.join(file),
                    _ => listed,
                }
            }
            None => {
                let mut indexes: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|source| Error::Io { path: path.to_path_buf(), source })?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "index"))
                    .collect();
                if indexes.len() != 1 {
                    return Err(Error::NotFound {
                        path: path.to_path_buf(),
                        message: format!(
                            "expected one TensorFlow checkpoint (a `checkpoint` file or one .index), found {} .index files",
                            indexes.len()
                        ),
                    });
                }
                indexes.pop().expect("one").with_extension("")
            }
        }
    } else if let Some(stripped) = text.strip_suffix(".index") {
        PathBuf::from(stripped)
    } else if let Some(at) = text.rfind(".data-") {
        PathBuf::from(&text[..at])
    } else {
        path.to_path_buf()
    };
    let index = PathBuf::from(format!("{}.index", prefix.display()));
    if !index.is_file() {
        return Err(Error::NotFound {
            path: index,
            message: "TensorFlow checkpoint index not found (give PREFIX, PREFIX.index or the folder)".into(),
        });
    }
    Ok(prefix)
}

impl TfCheckpoint {
    pub fn open(path: &Path) -> Result<Self> {
        let prefix = resolve_prefix(path)?;
        let index_path = PathBuf::from(format!("{}.index", prefix.display()));
        let mut file = open_regular(&index_path)?;
        let len = file.metadata().map_err(|source| Error::Io { path: index_path.clone(), source })?.len();
        if len > MAX_INDEX_BYTES {
            return Err(invalid(&index_path, format!("{len} bytes is too large for a checkpoint index")));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes).map_err(|source| Error::Io { path: index_path.clone(), source })?;
        let pairs = table::read_table(&bytes).map_err(|m| invalid(&index_path, m))?;

        let mut header = None;
        let mut entries = Vec::new();
        for (key, value) in pairs {
            if key.is_empty() {
                header = Some(proto::bundle_header(&value).map_err(|e| invalid(&index_path, e))?);
                continue;
            }
            let name = String::from_utf8(key).map_err(|_| invalid(&index_path, "a variable name is not UTF-8"))?;
            let e = proto::bundle_entry(&value).map_err(|e| invalid(&index_path, format!("{name}: {e}")))?;
            if e.sliced {
                return Err(invalid(&index_path, format!("{name} is a partitioned variable (not supported)")));
            }
            entries.push(TfEntry {
                name,
                dtype: e.dtype,
                shape: e.shape,
                shard: e.shard_id,
                offset: e.offset,
                size: e.size,
                crc: e.crc32c,
            });
        }
        let header = header.ok_or_else(|| invalid(&index_path, "no bundle header (not a tensor-bundle index)"))?;
        if header.endianness != 0 {
            return Err(invalid(&index_path, "big-endian checkpoints are not supported"));
        }
        if let Some(e) = entries.iter().find(|e| e.shard >= header.num_shards) {
            return Err(invalid(&index_path, format!("{} is in shard {} of {}", e.name, e.shard, header.num_shards)));
        }
        Ok(Self { prefix, num_shards: header.num_shards, entries })
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Every variable, sorted by name.
    pub fn entries(&self) -> &[TfEntry] {
        &self.entries
    }

    pub fn entry(&self, name: &str) -> Option<&TfEntry> {
        self.entries.binary_search_by(|e| e.name.as_str().cmp(name)).ok().map(|i| &self.entries[i])
    }

    fn shard_path(&self, shard: u32) -> PathBuf {
        PathBuf::from(format!("{}.data-{shard:05}-of-{:05}", self.prefix.display(), self.num_shards))
    }

    /// Reads one variable onto `device`, checking its size and checksum.
    pub fn read(&self, entry: &TfEntry, device: Device) -> Result<Tensor> {
        let path = self.shard_path(entry.shard);
        let kind = entry.kind().ok_or_else(|| {
            invalid(&path, format!("{} has TensorFlow dtype {}, which is not read here", entry.name, entry.dtype))
        })?;
        let expected = entry.numel().and_then(|n| (n as u64).checked_mul(kind.elt_size_in_bytes() as u64));
        if expected != Some(entry.size) {
            return Err(invalid(
                &path,
                format!("{}: {} bytes do not hold a {:?} tensor", entry.name, entry.size, entry.shape),
            ));
        }
        let file = open_regular(&path)?;
        let len = file.metadata().map_err(|source| Error::Io { path: path.clone(), source })?.len();
        if entry.offset.checked_add(entry.size).is_none_or(|end| end > len) {
            return Err(invalid(&path, format!("{} lies past the end of the file (truncated?)", entry.name)));
        }
        let t = Tensor::f_empty(entry.shape.as_slice(), (kind, Device::Cpu))
            .map_err(|e| Error::OutOfMemory(format!("cannot allocate {} bytes for {}: {e}", entry.size, entry.name)))?;
        if entry.size > 0 {
            // SAFETY: a fresh contiguous CPU tensor of exactly `entry.size` bytes, owned here.
            let data = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, entry.size as usize) };
            file.read_exact_at(data, entry.offset).map_err(|source| Error::Io { path: path.clone(), source })?;
            if crc32c::mask(crc32c::extend(0, data)) != entry.crc {
                return Err(invalid(&path, format!("{}: checksum mismatch (corrupted download?)", entry.name)));
            }
        }
        Ok(if device == Device::Cpu { t } else { t.f_to_device(device)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf/light_96")
    }

    #[test]
    fn reads_a_real_tensorflow_checkpoint() {
        let ckpt = TfCheckpoint::open(&fixture()).unwrap(); // the folder: its `checkpoint` file
        assert!(ckpt.prefix().ends_with("UGATIT.model-1000"));
        let kernel = ckpt.entry("generator_B/conv/conv2d/kernel").unwrap();
        assert_eq!((kernel.kind(), kernel.shape.clone()), (Some(Kind::Float), vec![7, 7, 3, 2]));
        // Adam's slots and beta powers are there too (the release has them).
        assert!(ckpt.entry("generator_B/conv/conv2d/kernel/Adam_1").is_some());
        assert!(ckpt.entries().iter().any(|e| e.name == "beta1_power"));
        for entry in ckpt.entries() {
            let t = ckpt.read(entry, Device::Cpu).unwrap(); // every checksum verifies
            assert_eq!(t.size(), entry.shape);
        }
        let same = TfCheckpoint::open(&ckpt.prefix().with_extension("model-1000.index")).unwrap();
        assert_eq!(same.entries().len(), ckpt.entries().len());
    }

    #[test]
    fn refuses_corrupted_and_truncated_files() {
        let dir = std::env::temp_dir().join(format!("ugatit-tf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = fixture().join("UGATIT.model-1000");
        let dst = dir.join("m");
        let data = std::fs::read(format!("{}.data-00000-of-00001", src.display())).unwrap();
        let index = std::fs::read(format!("{}.index", src.display())).unwrap();
        let mut flipped = data.clone();
        let ckpt = TfCheckpoint::open(&src).unwrap();
        let entry = ckpt.entry("generator_B/G_logit/conv2d/kernel").unwrap().clone();
        flipped[entry.offset as usize + 3] ^= 0x40;
        std::fs::write(format!("{}.data-00000-of-00001", dst.display()), &flipped).unwrap();
        std::fs::write(format!("{}.index", dst.display()), &index).unwrap();
        let bad = TfCheckpoint::open(&dst).unwrap();
        let err = bad.read(&entry, Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch") && err.contains("G_logit"), "{err}");
        std::fs::write(format!("{}.data-00000-of-00001", dst.display()), &data[..data.len() / 2]).unwrap();
        let last = bad.entries().iter().max_by_key(|e| e.offset).unwrap().clone();
        assert!(bad.read(&last, Device::Cpu).unwrap_err().to_string().contains("truncated"));
        std::fs::write(format!("{}.index", dst.display()), &index[..index.len() - 10]).unwrap();
        assert!(TfCheckpoint::open(&dst).is_err());
        std::fs::write(
            format!("{}.index", dst.display()),
            b"not an index at all, but long enough to have a footer ....",
        )
        .unwrap();
        assert!(TfCheckpoint::open(&dst).unwrap_err().to_string().contains("magic"));
        assert!(matches!(TfCheckpoint::open(&dir.join("absent")), Err(Error::NotFound { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
