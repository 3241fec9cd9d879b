//! CycleGAN's history of generated images (`util/image_pool.py`; Shrivastava et al. 2017): the
//! discriminators see, half of the time, an older translation instead of the newest one.
//!
//! For each image of a batch: while the pool has room, the image is stored and returned; once
//! full, with probability ½ a stored image is returned and replaced by the new one (its slot
//! drawn uniformly), else the new image is returned and the pool is unchanged. Their draws come
//! from Python's `random`; ours from a seeded [`Rng`] whose state is saved in checkpoints, so a
//! resumed run draws what an uninterrupted one would (tests replay it in Python).

use crate::data::rng::Rng;
use crate::{Error, Result};
use tch::Tensor;

pub struct ImagePool {
    capacity: usize,
    images: Vec<Tensor>,
    rng: Rng,
}

impl ImagePool {
    /// An empty pool of `capacity` images drawing from `Rng::from_parts(seed_parts)`.
    pub fn new(capacity: usize, seed_parts: &[u64]) -> Self {
        Self { capacity, images: Vec::new(), rng: Rng::from_parts(seed_parts) }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The images for the discriminator in place of `images` (detached, same shape).
    pub fn query(&mut self, images: &Tensor) -> Result<Tensor> {
        let images = images.f_detach()?;
        if self.capacity == 0 {
            return Ok(images);
        }
        let mut returned = Vec::new();
        for i in 0..images.size()[0] {
            // A copy (x·1, exact), so that the pool never aliases a tensor the caller may reuse.
            let image = images.f_narrow(0, i, 1)?.f_contiguous()?.f_mul_scalar(1.0)?;
            if self.images.len() < self.capacity {
                self.images.push(image.shallow_clone());
                returned.push(image);
            } else if self.rng.uniform() > 0.5 {
                let slot = self.rng.int_inclusive(self.capacity as u32 - 1) as usize;
                returned.push(std::mem::replace(&mut self.images[slot], image));
            } else {
                returned.push(image);
            }
        }
        Ok(Tensor::f_cat(&returned, 0)?)
    }

    /// The stored images as one `(n, C, H, W)` tensor (`None` when empty) and the RNG state.
    pub fn state(&self) -> Result<(Option<Tensor>, u64)> {
        let stacked = if self.images.is_empty() { None } else { Some(Tensor::f_cat(&self.images, 0)?) };
        Ok((stacked, self.rng.state()))
    }

    /// Checks what [`ImagePool::restore`] would take, changing nothing.
    pub fn check(&self, images: Option<&[i64]>, image_shape: &[i64], name: &str) -> Result<()> {
        let Some(shape) = images else { return Ok(()) };
        if shape.len() != 4 || shape[1..] != image_shape[..] || shape[0] < 1 || shape[0] as usize > self.capacity {
            return Err(Error::StateDict(format!(
                "{name} has shape {shape:?}; this pool holds up to {} images of shape {image_shape:?}",
                self.capacity
            )));
        }
        Ok(())
    }

    /// Replaces the pool's content and RNG state (after [`ImagePool::check`]).
    pub fn restore(&mut self, images: Option<&Tensor>, rng_state: u64) -> Result<()> {
        self.images = match images {
            Some(t) => (0..t.size()[0]).map(|i| Ok(t.f_narrow(0, i, 1)?.f_contiguous()?)).collect::<Result<_>>()?,
            None => Vec::new(),
        };
        self.rng = Rng::from_state(rng_state);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn batch(value: f64) -> Tensor {
        Tensor::full([1, 1, 2, 2], value, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn fills_then_swaps_half_of_the_time() {
        let mut pool = ImagePool::new(3, &[7]);
        for v in 0..3 {
            let out = pool.query(&batch(v as f64)).unwrap();
            assert_eq!(out.double_value(&[0, 0, 0, 0]), v as f64); // stored and returned
        }
        assert_eq!(pool.len(), 3);
        let (mut old, mut new) = (0, 0);
        for v in 3..2003 {
            let out = pool.query(&batch(v as f64)).unwrap().double_value(&[0, 0, 0, 0]);
            if out == v as f64 {
                new += 1;
            } else {
                assert!(out < v as f64);
                old += 1;
            }
        }
        assert_eq!(pool.len(), 3);
        assert!((900..1100).contains(&old) && old + new == 2000, "old {old}, new {new}");
    }

    #[test]
    fn a_restored_pool_continues_identically() {
        let mut a = ImagePool::new(2, &[1]);
        for v in 0..5 {
            let _ = a.query(&batch(v as f64)).unwrap();
        }
        let (images, rng) = a.state().unwrap();
        let mut b = ImagePool::new(2, &[99]);
        b.check(images.as_ref().map(|t| t.size()).as_deref(), &[1, 2, 2], "pool").unwrap();
        b.restore(images.as_ref(), rng).unwrap();
        for v in 5..50 {
            let x = batch(v as f64);
            assert!(a.query(&x).unwrap().equal(&b.query(&x).unwrap()));
        }
        assert!(b.check(Some(&[3, 1, 2, 2]), &[1, 2, 2], "pool").is_err());
    }

    #[test]
    fn a_zero_pool_passes_images_through() {
        let mut pool = ImagePool::new(0, &[1]);
        assert_eq!(pool.query(&batch(4.0)).unwrap().double_value(&[0, 0, 0, 0]), 4.0);
        assert!(pool.is_empty());
    }
}
