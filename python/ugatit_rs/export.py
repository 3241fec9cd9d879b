"""Exporting a generator: TorchScript and ONNX, traced from the Rust network itself.

``torch.jit.trace`` records the ATen operations the Rust forward issues (the tracer works at
libtorch's dispatcher, and the network's tensors are this module's parameters), so the exported
graph *is* the Rust model: there is no second description of the architecture to drift. While
tracing, ILN/AdaILN are computed with the official mean/variance reductions, which keep the
feature-map size symbolic: a light generator exports with a dynamic batch and image size
(multiples of 4), a full one with a dynamic batch at its own ``img_size``.

>>> import ugatit_rs.export as E
>>> E.onnx(generator, "g.onnx"); E.torchscript(generator, "g.pt")

The graph takes a float (N, 3, H, W) image in [-1, 1] and returns the translation, then (with
``attention=True``, the default) the CAM logits (N, 2) and the heatmap (N, 1, H/4, W/4).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .models import Generator

__all__ = ["onnx", "torchscript"]


class _Traced(nn.Module):
    """The generator as ``torch.jit.trace`` sees it: its parameters plus the Rust forward."""

    def __init__(self, generator: Generator, attention: bool):
        super().__init__()
        self.generator = generator
        self.attention = attention

    def forward(self, x: torch.Tensor):
        out, cam_logit, heatmap = self.generator._native.forward_for_export(x)
        return (out, cam_logit, heatmap) if self.attention else out


def _check(generator) -> None:
    if not isinstance(generator, Generator):
        raise TypeError(f"export expects a ugatit_rs.Generator, got {type(generator).__name__}")


def _example(generator: Generator, batch: int = 1) -> torch.Tensor:
    size = generator.config["img_size"]
    return torch.zeros(batch, generator.config["input_nc"], size, size, device=generator.device)


def _traced(generator: Generator, attention: bool) -> nn.Module:
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            return torch.jit.trace(_Traced(generator, attention), _example(generator), check_trace=False)
    finally:
        generator.train(was_training)


def torchscript(generator: Generator, path: str | os.PathLike, attention: bool = True) -> str:
    """Writes a TorchScript file (``torch.jit.load`` in Python, ``tch::CModule`` in Rust)."""
    _check(generator)
    path = os.fspath(path)
    _traced(generator, attention).save(path)
    return path


def onnx(generator: Generator, path: str | os.PathLike, attention: bool = True, opset: int = 17) -> str:
    """Writes an ONNX model (input ``image``; outputs ``translation``[, ``cam_logit``, ``heatmap``])."""
    _check(generator)
    path = os.fspath(path)
    light = generator.config["light"]
    outputs = ["translation", "cam_logit", "heatmap"] if attention else ["translation"]
    axes = {0: "batch", 2: "height", 3: "width"} if light else {0: "batch"}
    dynamic = {"image": axes, "translation": axes}
    if attention:
        dynamic["cam_logit"] = {0: "batch"}
        dynamic["heatmap"] = {0: "batch", 2: "height4", 3: "width4"} if light else {0: "batch"}
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            torch.onnx.export(
                _Traced(generator, attention),
                (_example(generator),),
                path,
                input_names=["image"],
                output_names=outputs,
                dynamic_axes=dynamic,
                opset_version=opset,
                dynamo=False,
            )
    finally:
        generator.train(was_training)
    return path
