//! The Inception network's inputs for the quality metrics (`docs/metrics.md`): images decoded
//! and resized to 299x299 exactly as each protocol prescribes, in parallel, as one
//! (N, 3, S, S) float32 tensor of 0..255 values.
//! - `paper` (the U-GAT-IT authors' GAN_Metrics-Tensorflow): 8-bit RGB, Pillow bilinear.
//! - `clean` (clean-fid / torch-fidelity): each channel as a float image, Pillow bicubic,
//!   clipped to [0, 255], not re-quantised.

use super::decode::decode_rgb;
use super::resample::{resize_f32_planes, resize_u8, Filter};
use crate::{Error, Result};
use image::RgbImage;
use rayon::prelude::*;
use std::path::PathBuf;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Paper,
    Clean,
}

impl std::str::FromStr for Protocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "paper" => Ok(Protocol::Paper),
            "clean" => Ok(Protocol::Clean),
            other => Err(Error::config(format!("protocol must be 'paper' or 'clean', got {other:?}"))),
        }
    }
}

/// Resizes one image into `out` (3 planes of `size * size`).
fn resize_into(img: &RgbImage, size: u32, protocol: Protocol, out: &mut [f32]) {
    let plane = (size * size) as usize;
    match protocol {
        Protocol::Paper => {
            let resized = resize_u8(img, size, size, Filter::Bilinear);
            for (i, px) in resized.as_raw().chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = px[c] as f32;
                }
            }
        }
        Protocol::Clean => out.copy_from_slice(&resize_f32_planes(img, size, size, Filter::Bicubic)),
    }
}

/// Resizes decoded images into one tensor, in parallel.
pub fn inception_inputs(images: &[RgbImage], size: u32, protocol: Protocol) -> Result<Tensor> {
    if !(1..=4096).contains(&size) {
        return Err(Error::config(format!("size must be between 1 and 4096, got {size}")));
    }
    let per_image = 3 * (size * size) as usize;
    let mut values = crate::error::try_vec::<f32>(images.len() * per_image, "the Inception inputs")?;
    values.resize(images.len() * per_image, 0.0);
    values
        .par_chunks_mut(per_image)
        .zip(images.par_iter())
        .for_each(|(out, img)| resize_into(img, size, protocol, out));
    let s = size as i64;
    Ok(Tensor::f_from_slice(&values)?.f_view_([images.len() as i64, 3, s, s])?.f_to_kind(Kind::Float)?)
}

/// Decodes `paths` (in parallel) and prepares them with [`inception_inputs`]. A file that cannot
/// be decoded is an error naming it: a metric over a silently shrunken set would mislead.
pub fn load_inception_inputs(paths: &[PathBuf], size: u32, protocol: Protocol) -> Result<Tensor> {
    let images: Vec<RgbImage> = paths
        .par_iter()
        .map(|p| {
            decode_rgb(p).map_err(|reason| Error::Io {
                path: p.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
            })
        })
        .collect::<Result<_>>()?;
    inception_inputs(&images, size, protocol)
}
