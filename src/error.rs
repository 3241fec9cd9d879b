//! One error type for the whole crate. `src/python/error.rs` maps each variant to a specific
//! Python exception, so every message here must name the offending thing (key, shape, file).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range (Python: `ValueError`).
    #[error("{0}")]
    Config(String),
    /// A tensor has the wrong rank or size (Python: `ValueError`).
    #[error("{0}")]
    Shape(String),
    /// A tensor has the wrong element type (Python: `TypeError`).
    #[error("{0}")]
    Dtype(String),
    /// A tensor or module is on the wrong device, or the device is unavailable (Python: `ValueError`).
    #[error("{0}")]
    Device(String),
    /// A state dict or checkpoint does not match the network: missing, unexpected or mis-shaped
    /// keys, or invalid metadata (Python: `ugatit_rs.StateDictError`, a `ValueError`).
    #[error("{0}")]
    StateDict(String),
    /// A file or folder does not exist (Python: `FileNotFoundError`).
    #[error("{}: {message}", path.display())]
    NotFound { path: PathBuf, message: String },
    /// Any other I/O failure (Python: `OSError`).
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A NaN or Inf where finite numbers are required (Python: `FloatingPointError`).
    #[error("{0}")]
    NonFinite(String),
    /// A buffer sized by user input cannot be allocated (Python: `MemoryError`).
    #[error("{0}")]
    OutOfMemory(String),
    /// A user-supplied callback (e.g. a gradient hook) raised (Python: `RuntimeError`).
    #[error("gradient hook failed: {0}")]
    Hook(String),
    /// A bug caught at the boundary: a Rust panic turned into an error (Python: `RuntimeError`).
    #[error("internal error (please report): {0}")]
    Internal(String),
    /// libtorch reported an error we did not anticipate (Python: `RuntimeError`, or
    /// `MemoryError` when an allocation failed).
    #[error("libtorch: {}", without_backtrace(.0))]
    Torch(#[from] tch::TchError),
}

/// libtorch's message without the C++ stack trace it appends ("Exception raised from ...",
/// then one line per frame), which Python users cannot act on; as in PyTorch, setting
/// `TORCH_SHOW_CPP_STACKTRACES=1` keeps it.
fn without_backtrace(err: &tch::TchError) -> String {
    let message = err.to_string();
    let keep = std::env::var("TORCH_SHOW_CPP_STACKTRACES").is_ok_and(|v| v == "1");
    match message.find("\nException raised from ") {
        Some(at) if !keep => message[..at].trim_end().to_string(),
        _ => message,
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Runs `f`, turning a panic into [`Error::Internal`] so that no panic unwinds into Python.
pub fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a Rust panic".into());
            Err(Error::Internal(message))
        }
    }
}

impl Error {
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
    pub fn shape(msg: impl Into<String>) -> Self {
        Error::Shape(msg.into())
    }
    /// A broken invariant of the crate itself (never the user's input).
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }
}

/// Physical memory of this machine in bytes (`None` if unknown): allocations sized by user input
/// are refused above it, since with memory overcommit they would otherwise "succeed" and the
/// process be killed later when the pages are touched.
pub fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    (pages > 0 && page > 0).then(|| pages as u64 * page as u64)
}

/// Memory the kernel says is available to a new allocation without swapping (`MemAvailable`;
/// physical memory where that is unknown). Read at each call: it changes as the process grows.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let kib = meminfo.as_deref().and_then(|text| {
        let line = text.lines().find(|line| line.starts_with("MemAvailable:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    });
    kib.map(|kib| kib * 1024).or_else(physical_memory)
}

/// [`Error::OutOfMemory`] if `bytes` of host memory are more than is available: with memory
/// overcommit libtorch's allocation would "succeed" and the process be killed when the pages
/// are touched, so host allocations sized by user input are checked up front. `what` says
/// what needs them.
pub fn check_host_memory(bytes: u64, what: impl FnOnce() -> String) -> Result<()> {
    if bytes < 64 << 20 {
        return Ok(()); // not worth reading /proc/meminfo for (every forward asks)
    }
    match available_memory() {
        Some(available) if bytes > available => Err(Error::OutOfMemory(format!(
            "{} needs {} MiB of memory, more than the {} MiB this machine has available",
            what(),
            bytes >> 20,
            available >> 20
        ))),
        _ => Ok(()),
    }
}

/// Reserves `n` elements in a fresh vector, or [`Error::OutOfMemory`] describing `what`.
pub fn try_vec<T>(n: usize, what: &str) -> Result<Vec<T>> {
    let bytes = (n as u64).saturating_mul(std::mem::size_of::<T>() as u64);
    let too_big = physical_memory().is_some_and(|ram| bytes > ram);
    let mut v = Vec::new();
    if too_big || v.try_reserve_exact(n).is_err() {
        return Err(Error::OutOfMemory(format!(
            "cannot allocate {} MiB for {what} (this machine has {} MiB of memory)",
            bytes >> 20,
            physical_memory().unwrap_or(0) >> 20
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    #[test]
    fn libtorch_errors_drop_the_cpp_stack_trace() {
        let err: Error = Tensor::zeros([2, 2], (tch::Kind::Float, tch::Device::Cpu))
            .f_matmul(&Tensor::zeros([3, 3], (tch::Kind::Float, tch::Device::Cpu)))
            .unwrap_err()
            .into();
        let raw = match &err {
            Error::Torch(e) => e.to_string(),
            _ => unreachable!(),
        };
        assert!(raw.contains("Exception raised from"), "libtorch's message changed: {raw}");
        let shown = err.to_string();
        assert!(shown.starts_with("libtorch: ") && shown.contains("cannot be multiplied"), "{shown}");
        assert!(!shown.contains("Exception raised from") && !shown.contains("frame #"), "{shown}");
    }
}
