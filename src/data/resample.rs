//! Pillow's resampling, reproduced exactly, for the Inception inputs of the quality metrics
//! (`docs/metrics.md`): the paper's protocol resizes 8-bit RGB with `Image.BILINEAR`, clean-fid's
//! resizes each channel as a float image (mode "F") with `Image.BICUBIC`.
//!
//! Pillow resizes in two separable passes (horizontal, then vertical). For each output pixel it
//! weights the input pixels within `support * scale` of the pixel centre (the filter stretched
//! when downscaling, so it antialiases), normalised to sum to 1. 8-bit images use 22-bit
//! fixed-point weights with rounding and clip each pass to 0..255; float images accumulate in
//! f64 and store f32. Matching these details gives bit-identical results, which the tests check
//! against Pillow itself.

use image::RgbImage;

/// Pillow's fixed-point precision for 8-bit resampling: `32 - 8 - 2` bits.
const PRECISION_BITS: u32 = 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BILINEAR` (triangle, support 1).
    Bilinear,
    /// `Image.BICUBIC` (Keys cubic with a = -0.5, support 2).
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// For every output position: the first input index and the normalised weights.
struct Coefficients {
    starts: Vec<usize>,
    weights: Vec<Vec<f64>>,
}

/// Pillow's `precompute_coeffs` over the whole input (no crop box).
fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let mut starts = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        // Pillow multiplies by the reciprocal (not a division: the rounding differs).
        let ss = 1.0 / filterscale;
        let mut w: Vec<f64> = (xmin..xmax).map(|x| filter.weight((x as f64 - center + 0.5) * ss)).collect();
        let total: f64 = w.iter().sum();
        if total != 0.0 {
            for v in &mut w {
                *v /= total;
            }
        }
        starts.push(xmin);
        weights.push(w);
    }
    Coefficients { starts, weights }
}

/// The weights as Pillow's rounded 22-bit fixed point.
fn fixed_point(c: &Coefficients) -> Vec<Vec<i64>> {
    let one = (1i64 << PRECISION_BITS) as f64;
    c.weights
        .iter()
        .map(|w| w.iter().map(|&v| if v < 0.0 { (-0.5 + v * one) as i64 } else { (0.5 + v * one) as i64 }).collect())
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One 8-bit pass along rows (`horizontal`) or columns, over interleaved RGB.
fn pass_u8(src: &[u8], (w, h): (usize, usize), out_len: usize, horizontal: bool, filter: Filter) -> Vec<u8> {
    let in_len = if horizontal { w } else { h };
    let coeffs = coefficients(in_len, out_len, filter);
    let fixed = fixed_point(&coeffs);
    let (ow, oh) = if horizontal { (out_len, h) } else { (w, out_len) };
    let mut out = vec![0u8; ow * oh * 3];
    for y in 0..oh {
        for x in 0..ow {
            let i = if horizontal { x } else { y };
            let (start, k) = (coeffs.starts[i], &fixed[i]);
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (j, &kj) in k.iter().enumerate() {
                let (sx, sy) = if horizontal { (start + j, y) } else { (x, start + j) };
                let p = (sy * w + sx) * 3;
                for c in 0..3 {
                    acc[c] += src[p + c] as i64 * kj;
                }
            }
            let o = (y * ow + x) * 3;
            for c in 0..3 {
                out[o + c] = clip8(acc[c]);
            }
        }
    }
    out
}

/// Pillow's pass order: vertical first when the height shrinks by more than twice as many pixels
/// as the width (it makes the horizontal pass cheaper), else horizontal first. The order changes
/// the 8-bit rounding, so it is part of being exact (Pillow before this heuristic always went
/// horizontal first, which differs by at most 1 in such cases).
fn vertical_first((w, h): (usize, usize), (ow, oh): (usize, usize)) -> bool {
    let (dh, dw) = (h as i64 - oh as i64, w as i64 - ow as i64);
    dh > 0 && dh > dw * 2
}

/// `img.resize((width, height), filter)` on an 8-bit RGB image, as Pillow computes it.
pub fn resize_u8(img: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = (width as usize, height as usize);
    let mut data = img.as_raw().clone();
    let (mut cw, mut ch) = (w, h);
    let horizontal = |data: &mut Vec<u8>, cw: &mut usize, ch: usize| {
        if ow != w {
            *data = pass_u8(data, (*cw, ch), ow, true, filter);
            *cw = ow;
        }
    };
    if vertical_first((w, h), (ow, oh)) {
        if oh != h {
            data = pass_u8(&data, (cw, ch), oh, false, filter);
            ch = oh;
        }
        horizontal(&mut data, &mut cw, ch);
    } else {
        horizontal(&mut data, &mut cw, ch);
        if oh != h {
            data = pass_u8(&data, (cw, ch), oh, false, filter);
        }
    }
    RgbImage::from_raw(width, height, data).expect("resampled buffer has the output size")
}

/// One float pass (Pillow's mode "F": f64 accumulation, f32 storage) over one channel plane.
fn pass_f32(src: &[f32], (w, h): (usize, usize), out_len: usize, horizontal: bool, filter: Filter) -> Vec<f32> {
    let in_len = if horizontal { w } else { h };
    let coeffs = coefficients(in_len, out_len, filter);
    let (ow, oh) = if horizontal { (out_len, h) } else { (w, out_len) };
    let mut out = vec![0f32; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            let i = if horizontal { x } else { y };
            let mut acc = 0f64;
            for (j, &kj) in coeffs.weights[i].iter().enumerate() {
                let s = coeffs.starts[i] + j;
                let v = if horizontal { src[y * w + s] } else { src[s * w + x] };
                acc += v as f64 * kj;
            }
            out[y * ow + x] = acc as f32;
        }
    }
    out
}

/// clean-fid's "clean" resize: each channel as a float image resized by Pillow, then clipped to
/// [0, 255]. Returns the three planes (CHW) of `width * height` floats.
pub fn resize_f32_planes(img: &RgbImage, width: u32, height: u32, filter: Filter) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = (width as usize, height as usize);
    let vertical_first = vertical_first((w, h), (ow, oh));
    let mut out = Vec::with_capacity(3 * ow * oh);
    for c in 0..3 {
        let mut plane: Vec<f32> = img.as_raw().iter().skip(c).step_by(3).map(|&v| v as f32).collect();
        let (mut cw, mut ch) = (w, h);
        for vertical in if vertical_first { [true, false] } else { [false, true] } {
            if vertical && oh != h {
                plane = pass_f32(&plane, (cw, ch), oh, false, filter);
                ch = oh;
            } else if !vertical && ow != w {
                plane = pass_f32(&plane, (cw, ch), ow, true, filter);
                cw = ow;
            }
        }
        out.extend(plane.into_iter().map(|v| v.clamp(0.0, 255.0)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_identity_is_kept() {
        for filter in [Filter::Bilinear, Filter::Bicubic] {
            let c = coefficients(500, 299, filter);
            for w in &c.weights {
                assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
        assert_eq!(resize_u8(&img, 7, 5, Filter::Bilinear), img);
        let flat = RgbImage::from_pixel(40, 30, image::Rgb([200, 10, 77]));
        assert!(resize_u8(&flat, 299, 299, Filter::Bilinear).pixels().all(|p| p.0 == [200, 10, 77]));
        let planes = resize_f32_planes(&flat, 13, 11, Filter::Bicubic);
        assert!(planes[..143].iter().all(|&v| (v - 200.0).abs() < 1e-3));
    }
}
