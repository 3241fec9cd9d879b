"""Visualisation: CAM heatmaps as the official ``cam()`` draws them, overlays, the official sample
grid, and loss curves from a training log. Functions return numpy images (HWC uint8, RGB) or
matplotlib figures, so they work in notebooks and scripts alike."""

from __future__ import annotations

import json
import math
import numbers
import os
import struct
import sys
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ._checks import whole
from ._extras import require
from ._files import regular_file, replacing

# OpenCV's COLORMAP_JET anchor points (value -> RGB), interpolated linearly.
_JET = np.array(
    [
        [0.0, 0.0, 0.0, 0.5],
        [0.11, 0.0, 0.0, 1.0],
        [0.125, 0.0, 0.0, 1.0],
        [0.34, 0.0, 0.86, 1.0],
        [0.35, 0.0, 0.9, 1.0],
        [0.375, 0.0, 1.0, 1.0],
        [0.64, 1.0, 1.0, 0.0],
        [0.66, 1.0, 0.98, 0.0],
        [0.875, 1.0, 0.0, 0.0],
        [0.91, 0.86, 0.0, 0.0],
        [1.0, 0.5, 0.0, 0.0],
    ]
)


def jet(values: np.ndarray) -> np.ndarray:
    """Maps values in [0, 1] to jet colours (float RGB in [0, 1])."""
    v = np.clip(values, 0.0, 1.0)
    return np.stack([np.interp(v, _JET[:, 0], _JET[:, c]) for c in (1, 2, 3)], axis=-1)


def check_unit_range(x: torch.Tensor, what: str) -> None:
    """Refuses float images that are not in [-1, 1]: NaN or Inf, or values beyond ±1.5, which
    mean another scale was meant (0..255) and would otherwise be clamped into a plausible but
    wrong image. A little past ±1 (a bicubic resize's overshoot) passes and is clamped, as
    saving to 8 bits would."""
    if x.numel() == 0:
        return  # the caller's own check names an empty input
    low, high = (float(v) for v in torch.aminmax(x.detach()))  # one pass; NaN propagates
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"NaN or Inf values in {what}")
    if low < -1.5 or high > 1.5:
        raise ValueError(
            f"{what} must be in [-1, 1], got values from {low:.4g} to {high:.4g}; pass 0..255 images as "
            "uint8 arrays, and [0, 1] tensors as x * 2 - 1"
        )


def to_image(x: torch.Tensor) -> np.ndarray:
    """A ``(3, H, W)`` or ``(1, 3, H, W)`` tensor in [-1, 1] as an HWC uint8 RGB array."""
    if x.dim() == 4:
        x = x[0]
    x = x.detach().float().cpu().clamp(-1, 1)
    return ((x.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)


def array_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor of a numpy array, sharing it when it is contiguous and writable. A read-only
    array (``np.asarray(pil_image)``) is copied: ``torch.from_numpy`` would warn about it."""
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _check_rgb(image, what: str = "image") -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        found = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{what} must be an HWC uint8 RGB array, got {found}")


def from_image(image: np.ndarray) -> torch.Tensor:
    """An HWC uint8 RGB array as a ``(3, H, W)`` float32 tensor in [-1, 1] (inverse of :func:`to_image`)."""
    _check_rgb(image)
    return array_tensor(image).permute(2, 0, 1).float().div(127.5).sub(1)


def upright_rgb(image) -> np.ndarray:
    """A PIL image as HWC uint8 RGB, the way ``prepare`` and the training data pipeline decode a
    file: turned upright by its EXIF orientation (phone photos), 16-bit grey scaled to 8 bits
    (PIL's ``convert("RGB")`` clips it, making nearly every pixel white); everything else as
    ``convert("RGB")`` gives it. Floating-point grey (a float TIFF), which the Rust decoder
    cannot read and so training and ``prepare`` skip as unreadable, is clamped to [0, 1]."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":
        grey = np.asarray(image)
        if image.mode == "F":
            grey = (np.clip(np.nan_to_num(grey), 0.0, 1.0) * 255.0).round()
        else:  # c / 65535 in 8 bits, rounded (as the Rust decoder scales)
            grey = (np.clip(grey.astype(np.int64), 0, 65535) * 255 + 32767) // 65535
        image = Image.fromarray(grey.astype(np.uint8))
    return np.array(image.convert("RGB"))


def open_upright_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as :func:`upright_rgb` gives it. A file PIL cannot decode (truncated,
    corrupt, not an image) raises ``OSError`` saying ``<path>: cannot decode: <why>``, as the Rust
    loader does; one too large for PIL's decompression-bomb limit ``ValueError`` naming it; a
    FIFO or other non-regular file ``FileNotFoundError`` (reading it would wait forever)."""
    from PIL import Image, UnidentifiedImageError

    path = regular_file(path)
    try:
        with Image.open(path) as image:
            return upright_rgb(image)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except UnidentifiedImageError:
        raise UnidentifiedImageError(f"{path}: cannot decode: not a recognised image format") from None
    except OSError as exc:
        if exc.filename is not None:  # permissions and the like: the message names the file
            raise
        raise OSError(f"{path}: cannot decode: {exc}") from None
    except (ValueError, SyntaxError, EOFError, IndexError, struct.error) as exc:
        # What PIL's format plugins raise on a corrupt header or stream ("Token too long in
        # file header", a bad tag), without the file's name.
        raise OSError(f"{path}: cannot decode: {type(exc).__name__}: {exc}") from None


def decode_or_reason(path: str | os.PathLike) -> np.ndarray | Exception:
    """:func:`open_upright_rgb`, but the ``OSError``/``ValueError`` saying why the file cannot be
    read is returned, not raised, so the caller decides whether it is fatal."""
    try:
        return open_upright_rgb(path)
    except (OSError, ValueError) as exc:
        return exc


class UnreadableImages(list):
    """``(path, reason)`` for each image passed over because it could not be decoded. The first
    :attr:`NAMED` are named on stderr as they are added, then one line says that more follow
    silently, so a folder of broken files does not flood a notebook."""

    NAMED = 10

    def add(self, path: str | os.PathLike, reason: Exception | str) -> None:
        self.append((os.fspath(path), str(reason)))
        if len(self) <= self.NAMED:
            # tqdm.write: above any open progress bar
            tqdm.write(f"warning: skipping unreadable image {_naming(path, reason)}", file=sys.stderr)
        elif len(self) == self.NAMED + 1:
            tqdm.write("warning: further unreadable images are skipped without a word", file=sys.stderr)


def _naming(path, reason) -> str:
    """The reason as a message that names the file (every decoder's errors already do)."""
    text = str(reason)
    return text if text.startswith(os.fspath(path)) else f"{os.fspath(path)}: {text}"


def heatmap_image(heatmap: torch.Tensor, size: int | Sequence[int]) -> np.ndarray:
    """The official ``cam()``: min-max normalise, resize bilinearly, jet colormap (RGB uint8).

    A constant heatmap (which made the official code divide by zero) becomes all-blue.
    """
    if not isinstance(heatmap, torch.Tensor) or heatmap.dim() < 2 or heatmap.numel() == 0:
        raise ValueError(
            f"heatmap must be a non-empty (..., h, w) tensor, got {getattr(heatmap, 'shape', type(heatmap).__name__)}"
        )
    h = heatmap.detach().float().cpu()
    while h.dim() > 2:
        h = h[0]
    h = h - h.min()
    peak = h.max()
    h = h / peak if peak > 0 else torch.zeros_like(h)
    hw = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
    if len(hw) != 2:
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    hw = tuple(whole("size", n, 1, 16384) for n in hw)
    h = F.interpolate(h[None, None], size=hw, mode="bilinear", align_corners=False)[0, 0]
    return (jet(h.numpy()) * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, heatmap: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """The heatmap's jet colours blended over an HWC uint8 image (``alpha``: the heatmap's share)."""
    _check_rgb(image)
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    colours = heatmap_image(heatmap, image.shape[:2]).astype(np.float32)
    return (image.astype(np.float32) * (1 - alpha) + colours * alpha).round().clip(0, 255).astype(np.uint8)


@torch.no_grad()
def translation_column(forward, backward, x: torch.Tensor) -> np.ndarray:
    """The official sample column for one image ``x`` (1, 3, S, S) of the source domain:
    real, identity heatmap, identity, translation heatmap, translation, cycle heatmap, cycle."""
    size = x.shape[-1]
    identity, _, identity_hm = backward(x)
    fake, _, fake_hm = forward(x)
    cycle, _, cycle_hm = backward(fake)
    tiles = [
        to_image(x),
        heatmap_image(identity_hm, size),
        to_image(identity),
        heatmap_image(fake_hm, size),
        to_image(fake),
        heatmap_image(cycle_hm, size),
        to_image(cycle),
    ]
    return np.concatenate(tiles, axis=0)


def sample_grid(forward, backward, images: Iterable[torch.Tensor]) -> np.ndarray:
    """Columns of :func:`translation_column` side by side: ``(7*S, n*S, 3)``."""
    return np.concatenate([translation_column(forward, backward, x) for x in images], axis=1)


def read_log(path: str | os.PathLike) -> list[dict]:
    """The JSON-lines training log written by ``Trainer.fit`` (one dict per step). A last line
    that is not complete JSON (a run writing it as it is read, or killed mid-write) is left out;
    any other line that is not a JSON object raises ``ValueError`` naming the file and line."""
    with open(path) as f:
        *lines, last = f.read().split("\n")  # `last` is "" when the file ends with its newline
    records = []
    for number, line in enumerate([*lines, last], 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines) + 1:
                break  # the line being written
            raise ValueError(f"{os.fspath(path)}:{number}: not a JSON record ({exc})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{os.fspath(path)}:{number}: not a JSON object but {type(record).__name__}")
        records.append(record)
    return records


def loss_curves(log: str | os.PathLike | list, keys: Sequence[str] = ("d_loss", "g_loss"), smooth: int = 1):
    """A matplotlib figure with one panel per loss; ``smooth`` averages over a moving window."""
    matplotlib = require("matplotlib", "viz", "loss_curves")
    if (
        not os.environ.get("DISPLAY")
        and matplotlib.get_backend().lower() not in ("agg",)
        and "inline" not in matplotlib.get_backend()
    ):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log) if not isinstance(log, list) else log
    smooth = whole("smooth", smooth, 1)  # steps averaged
    logged = {key for row in rows for key in row}
    missing = [key for key in keys if key not in logged]
    if not rows or missing:
        raise ValueError(f"the log has no {', '.join(missing) or 'rows'}; it has {sorted(logged)}")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2), squeeze=False)
    steps = np.array([r["step"] for r in rows])
    for ax, key in zip(axes[0], keys):
        values = np.array([r.get(key, np.nan) for r in rows], dtype=float)
        if smooth > 1 and len(values) >= smooth:
            kernel = np.ones(smooth) / smooth
            values = np.convolve(values, kernel, mode="valid")
            ax.plot(steps[smooth - 1 :], values)
        else:
            ax.plot(steps, values)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def save_png(image: np.ndarray, path: str | os.PathLike) -> None:
    """Writes an HWC uint8 RGB array as PNG (creating the folder), replacing ``path`` only once
    complete. zlib level 1, as OpenCV's ``imwrite`` (the official code's writer) defaults to: PIL's
    default level 6 took five times as long for files about a fifth smaller."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise TypeError(f"save_png takes an HWC uint8 RGB image (or HW grey), got {image.dtype} {image.shape}")
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with replacing(path) as tmp:  # complete or absent, never a truncated PNG
        Image.fromarray(image).save(tmp, format="PNG", compress_level=1)
