//! Parsing device names ("cpu", "cuda", "cuda:1") into tch devices, with clear errors.

use crate::{Error, Result};
use tch::Device;

/// Parses a device name as torch spells it and checks that the device exists.
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim();
    let device = match name {
        // `torch.device("cpu", 0)` prints as "cpu:0".
        "cpu" | "cpu:0" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => Device::Cuda(index),
            _ => {
                return Err(Error::Device(format!("unknown device {name:?}: expected \"cpu\", \"cuda\" or \"cuda:N\"")))
            }
        },
    };
    if let Device::Cuda(index) = device {
        let available = tch::Cuda::device_count() as usize;
        if available == 0 {
            return Err(Error::Device(format!(
                "device {name:?} requested but CUDA is not available on this machine; use \"cpu\""
            )));
        }
        if index >= available {
            return Err(Error::Device(format!("device {name:?} requested but only {available} CUDA device(s) exist")));
        }
    }
    Ok(device)
}

/// The torch spelling of a device, as accepted by `torch.device(...)`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(index) => format!("cuda:{index}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
