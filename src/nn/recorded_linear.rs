//! A Linear layer whose weight gradient can be left to the optimizer as factors.
//!
//! For `y = x Wᵀ` autograd forms `dW = dyᵀ x`: with a batch of B images that is a rank-B
//! product of two thin matrices, materialised at the full size of `W`. The full generator's FC.0
//! maps the whole 64×64×256 feature map to 256 values at 256 px: a 268M-element weight whose
//! gradient (1 GiB per generator) is alive during the backward pass, when memory peaks. While a
//! recorder is on, the layer runs with its weight detached and keeps each call's input and
//! output; the trainer asks autograd for `dy` (the gradient at the recorded outputs) instead of
//! `dW`, and the optimizer multiplies the factors out a slice at a time after the backward pass
//! (`crate::train::optim::Gradient::Outer`). Same gradient, up to the order of a B-term sum.

use super::compute::lowered;
use super::layers::Linear;
use crate::Result;
use std::sync::Mutex;
use tch::Tensor;

/// The calls of one Linear layer since its recorder started: `(input, output)` pairs, the input
/// detached, the output part of the autograd graph.
pub struct LinearCalls {
    /// The layer's weight (a handle on the parameter).
    pub weight: Tensor,
    pub calls: Vec<(Tensor, Tensor)>,
}

/// Switches a layer between plain calls and recorded ones (see the module docs). Shared by
/// reference: the forward pass takes `&self`.
#[derive(Default)]
pub struct LinearRecorder {
    calls: Mutex<Option<Vec<(Tensor, Tensor)>>>,
}

impl LinearRecorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<(Tensor, Tensor)>>> {
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts recording (forgetting any earlier calls) or stops it.
    pub fn set_recording(&self, on: bool) {
        *self.lock() = on.then(Vec::new);
    }

    /// `linear(x)`; while recording, with the weight detached and the call kept.
    pub fn forward(&self, linear: &Linear, x: &Tensor) -> Result<Tensor> {
        let mut calls = self.lock();
        let Some(calls) = calls.as_mut() else { return linear.forward(x) };
        let x = lowered(x)?;
        let y = x.f_linear::<Tensor>(&lowered(&linear.weight.f_detach()?)?, None)?;
        calls.push((x.f_detach()?, y.shallow_clone()));
        Ok(y)
    }

    /// The calls recorded so far (recording goes on, from none).
    pub fn take(&self, linear: &Linear) -> Option<LinearCalls> {
        let mut calls = self.lock();
        let taken = std::mem::take(calls.as_mut()?);
        Some(LinearCalls { weight: linear.weight.shallow_clone(), calls: taken })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ParamStore;
    use tch::{Device, Kind};

    /// Autograd's `dy` at the recorded outputs, multiplied out, is the weight gradient of the
    /// plain layer; recording off gives the plain layer back.
    #[test]
    fn recorded_factors_give_the_weight_gradient() {
        let store = ParamStore::new(Device::Cpu);
        let linear = Linear::new(&(&store.root() / "fc"), 5, 3).unwrap();
        let recorder = LinearRecorder::default();
        let input = |b: i64| Tensor::randn([b, 5], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let (x1, x2) = (input(2), input(1));
        let loss = |y1: Tensor, y2: Tensor| (y1.sin().sum(Kind::Float) + y2.square().sum(Kind::Float)) * 0.5;

        let plain = loss(recorder.forward(&linear, &x1).unwrap(), recorder.forward(&linear, &x2).unwrap());
        let expected = Tensor::run_backward(&[&plain], &[&linear.weight], false, false).pop().unwrap();

        recorder.set_recording(true);
        let recorded = loss(recorder.forward(&linear, &x1).unwrap(), recorder.forward(&linear, &x2).unwrap());
        let LinearCalls { weight, calls } = recorder.take(&linear).unwrap();
        assert_eq!(weight.data_ptr(), linear.weight.data_ptr());
        assert_eq!(calls.len(), 2);
        let outputs: Vec<&Tensor> = calls.iter().map(|(_, y)| y).collect();
        let dys = Tensor::run_backward(&[&recorded], &outputs, false, false);
        let dy = Tensor::cat(&dys, 0);
        let x = Tensor::cat(&calls.iter().map(|(x, _)| x.shallow_clone()).collect::<Vec<_>>(), 0);
        let product = dy.tr().mm(&x);
        assert!((product - expected).abs().max().double_value(&[]) < 1e-6);
        assert!(recorder.take(&linear).unwrap().calls.is_empty(), "taking empties the record");

        recorder.set_recording(false);
        assert!(recorder.take(&linear).is_none());
        assert!(recorder.forward(&linear, &x1).unwrap().requires_grad());
    }
}
