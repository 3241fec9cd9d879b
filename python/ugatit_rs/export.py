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
With ``uint8=True`` the pre- and post-processing are part of the graph, for apps: an
(N, H, W, 3) uint8 RGB image in, an (N, H, W, 3) uint8 translation out (quantised exactly as
:class:`ugatit_rs.Translator` does); the heatmap stays float. ``fp16=True`` (ONNX only) stores
and computes in float16 with float32 (or uint8) inputs and outputs, via onnxconverter-common.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

from ._checks import whole
from ._extras import require
from ._files import replacing
from .models import Generator, has_attention

__all__ = ["onnx", "torchscript", "web"]


class _Traced(nn.Module):
    """The generator as ``torch.jit.trace`` sees it: its parameters plus the Rust forward."""

    def __init__(self, generator: Generator, attention: bool, uint8: bool):
        super().__init__()
        self.generator = generator
        self.attention = attention
        self.uint8 = uint8

    def forward(self, x: torch.Tensor):
        if self.uint8:  # NHWC uint8 RGB -> NCHW [-1, 1], as viz.from_image
            x = x.permute(0, 3, 1, 2).float().div(127.5).sub(1)
        out, cam_logit, heatmap = self.generator._native.forward_for_export(x)
        if self.uint8:  # -> NHWC uint8, as viz.to_image (round half to even)
            out = out.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
        return (out, cam_logit, heatmap) if self.attention else out


#: The ONNX operator sets an export may target (see :func:`onnx`).
OPSETS = (11, 21)


def check_exportable(generator) -> None:
    """Raises TypeError unless ``generator`` is one of the generators an export can trace."""
    from .cyclegan import ResnetGenerator

    if not isinstance(generator, (Generator, ResnetGenerator)):
        raise TypeError(
            f"export expects a ugatit_rs.Generator or ugatit_rs.cyclegan.ResnetGenerator, got {type(generator).__name__}"
        )


def fully_convolutional(generator) -> bool:
    """Any image size works (multiples of 4): light U-GAT-IT and CycleGAN generators."""
    return generator.config.get("light", True)


def _example(generator, uint8: bool) -> torch.Tensor:
    size, channels = generator.config.get("img_size", 256), generator.config["input_nc"]
    if uint8:
        return torch.zeros(1, size, size, channels, dtype=torch.uint8, device=generator.device)
    return torch.zeros(1, channels, size, size, device=generator.device)


def _writable(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{parent}: output folder not found")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a folder; give the file to write")
    return path


def _traced(generator: Generator, attention: bool, uint8: bool) -> nn.Module:
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch 2.11 calls the tracer deprecated; it is what records the Rust forward's ATen
            # calls (torch.export cannot see inside it), and torch is pinned, so the warning
            # would only tell users what they cannot act on (and fail `-W error` runs).
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit\.trace")
            module = _Traced(generator, attention, uint8)
            return torch.jit.trace(module, _example(generator, uint8), check_trace=False)
    finally:
        generator.train(was_training)


def torchscript(generator: Generator, path: str | os.PathLike, attention: bool = True, uint8: bool = False) -> str:
    """Writes a TorchScript file (``torch.jit.load`` in Python, ``tch::CModule`` in Rust; see
    ``ugatit_rs._native.ExportedGenerator``)."""
    check_exportable(generator)
    attention = attention and has_attention(generator)
    path = _writable(path)
    traced = _traced(generator, attention, uint8)
    # Serialised in memory, then written by us: a failed write is a plain OSError, where torch's
    # zip writer given the path aborts the process on a full disk.
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(traced.save_to_buffer())
    return path


def onnx(
    generator: Generator,
    path: str | os.PathLike,
    attention: bool = True,
    uint8: bool = False,
    fp16: bool = False,
    opset: int = 17,
) -> str:
    """Writes an ONNX model (input ``image``; outputs ``translation``[, ``cam_logit``, ``heatmap``]).
    A CycleGAN generator has no attention outputs: its export holds the translation only.
    ``opset`` is the ONNX operator set, between 11 (the first with the dynamic padding the uint8
    export needs) and 21 (the newest torch 2.11's exporter writes); both ends are tested with
    onnxruntime (``tests/test_export.py``)."""
    check_exportable(generator)
    require("onnx", "export", "ONNX export")  # torch's exporter imports it only after tracing
    if fp16:
        require("onnxconverter_common", "export", "fp16 export")
    opset = whole("opset", opset, *OPSETS)
    attention = attention and has_attention(generator)
    path = _writable(path)
    light = fully_convolutional(generator)
    outputs = ["translation", "cam_logit", "heatmap"] if attention else ["translation"]
    if light:  # any size the network accepts (multiples of 4)
        axes = {0: "batch", 1: "height", 2: "width"} if uint8 else {0: "batch", 2: "height", 3: "width"}
    else:
        axes = {0: "batch"}
    dynamic = {"image": axes, "translation": axes}
    if attention:
        dynamic["cam_logit"] = {0: "batch"}
        dynamic["heatmap"] = {0: "batch", 2: "height4", 3: "width4"} if light else {0: "batch"}
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings(), replacing(path) as tmp:
            # The TorchScript-based exporter's notes on constant folding and on instance norm's
            # "train" flag: both are expected here (the statistics are per image by design).
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
            # torch >= 2.9 calls this exporter "legacy"; the torch.export-based one cannot see
            # inside the Rust forward. torch is pinned (2.11), where it is present and tested.
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*TorchScript-based ONNX")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            torch.onnx.export(
                _Traced(generator, attention, uint8),
                (_example(generator, uint8),),
                tmp,
                input_names=["image"],
                output_names=outputs,
                dynamic_axes=dynamic,
                opset_version=opset,
                dynamo=False,
            )
            if fp16:
                _to_float16(tmp)
    finally:
        generator.train(was_training)
    return path


def _to_float16(path: str) -> None:
    """Rewrites an ONNX file in float16, keeping its inputs' and outputs' types. Weights of
    magnitude below 1e-7 become ±1e-7 (the converter's clamp, below float16's normal range)."""
    onnx_lib = require("onnx", "export", "fp16 export")
    float16 = require("onnxconverter_common.float16", "export", "fp16 export")
    with warnings.catch_warnings():
        # One warning per clamped weight (any trained network has some): said once, above.
        warnings.filterwarnings("ignore", category=UserWarning, message=r".*will be truncated to")
        model = float16.convert_float_to_float16(onnx_lib.load(path, format="protobuf"), keep_io_types=True)
    # The converter retypes the values but leaves Cast nodes that make floats (here: element
    # counts of the normalisations' variance) casting to float32; make them agree.
    declared = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    f32, f16 = onnx_lib.TensorProto.FLOAT, onnx_lib.TensorProto.FLOAT16
    for node in model.graph.node:
        if node.op_type == "Cast" and declared.get(node.output[0]) == f16:
            for attribute in node.attribute:
                if attribute.name == "to" and attribute.i == f32:
                    attribute.i = f16
    onnx_lib.save(model, path, format="protobuf")


def web(generator: Generator, directory: str | os.PathLike, direction: str = "A2B", **kwargs) -> str:
    """Writes a static in-browser translator for ``generator`` into ``directory`` (see
    :func:`ugatit_rs.web.write_page`; keyword arguments go there)."""
    from .web import write_page

    return write_page(generator, directory, direction=direction, **kwargs)
