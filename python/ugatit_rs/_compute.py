"""How ugatit-rs network forwards compute on this thread: opt-in reduced precision and
channels-last memory order (src/nn/compute.rs). Training takes the same settings from
``TrainConfig(precision=..., channels_last=...)``."""

from __future__ import annotations

import functools
import threading

from . import _native


class compute:  # lower case, as torch.no_grad, which it is used like
    """Runs ugatit-rs network forwards inside the block in ``precision``.

    ``"bf16"`` or ``"fp16"``: convolutions and matrix products take their input and weights in
    that type, as ``torch.autocast`` would, while normalisation statistics and the spectral norm
    stay float32 and networks return float32. ``channels_last=True`` hands the convolutions
    NHWC-ordered operands (cuDNN's tensor-core kernels prefer them). Both change the numbers
    slightly. Prefer it to ``torch.autocast``, which would also lower what this keeps in float32
    (the spectral norm's matrix-vector products). The setting is per thread, like autocast's::

        with ugatit_rs.compute("fp16"):
            translated, cam_logit, heatmap = generator(images)

    Like ``torch.no_grad()``, one object can be entered again, nested, and used as a decorator.
    """

    def __init__(self, precision: str = "fp32", channels_last: bool = False):
        # Set and put back at once: a bad value fails here, where it is written.
        _native.set_compute(*_native.set_compute(precision, channels_last))
        self.precision, self.channels_last = precision, channels_last
        self._saved = threading.local()  # per thread, the settings each open block replaced

    def __enter__(self) -> None:
        stack = self._saved.__dict__.setdefault("stack", [])
        stack.append(_native.set_compute(self.precision, self.channels_last))

    def __exit__(self, *exc_info) -> None:
        _native.set_compute(*self._saved.stack.pop())

    def __call__(self, function):
        @functools.wraps(function)
        def within(*args, **kwargs):
            with self:
                return function(*args, **kwargs)

        return within

    def __repr__(self) -> str:
        return f"compute(precision={self.precision!r}, channels_last={self.channels_last})"
