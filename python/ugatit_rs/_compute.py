"""How ugatit-rs network forwards compute on this thread: opt-in reduced precision and
channels-last memory order (src/nn/compute.rs). Training takes the same settings from
``TrainConfig(precision=..., channels_last=...)``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from . import _native


@contextmanager
def compute(precision: str = "fp32", channels_last: bool = False) -> Iterator[None]:
    """Runs ugatit-rs network forwards inside the block in ``precision``.

    ``"bf16"`` or ``"fp16"``: convolutions and matrix products take their input and weights in
    that type, as ``torch.autocast`` would, while normalisation statistics and the spectral norm
    stay float32 and networks return float32. ``channels_last=True`` hands the convolutions
    NHWC-ordered operands (cuDNN's tensor-core kernels prefer them). Both change the numbers
    slightly. Prefer it to ``torch.autocast``, which would also lower what this keeps in float32
    (the spectral norm's matrix-vector products). The setting is per thread, like autocast's::

        with ugatit_rs.compute("fp16"):
            translated, cam_logit, heatmap = generator(images)
    """
    previous = _native.set_compute(precision, channels_last)
    try:
        yield
    finally:
        _native.set_compute(*previous)
