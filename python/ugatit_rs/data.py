"""Image data: the Rust batch loader and single-image loading.

``DomainLoader(folder, img_size, batch_size, seed, domain, train, strict, num_workers)`` streams
float32 ``(B, 3, S, S)`` batches in [-1, 1] from a folder (recursively; jpg, jpeg, png, bmp, ppm,
pgm, tif, tiff, webp in any case), decoded and augmented in background Rust threads with the
official transforms. The stream depends only on the seed, never on the number of workers.
Unreadable files are skipped and listed by ``skipped()``; ``strict=True`` raises instead.
"""

from __future__ import annotations

import os

import torch

from ._native import DomainLoader
from ._native import load_image as _load_image

__all__ = ["DomainLoader", "load_image", "domain_folder"]

SPLITS = ("trainA", "trainB", "testA", "testB")


def load_image(path: str | os.PathLike, img_size: int) -> torch.Tensor:
    """One image file, resized to ``img_size`` square, as a ``(1, 3, S, S)`` float32 tensor in [-1, 1]."""
    return _load_image(os.fspath(path), int(img_size))


def domain_folder(dataset: str | os.PathLike, split: str) -> str:
    """``<dataset>/<split>``; raises FileNotFoundError naming the folder if it does not exist."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = os.path.join(os.fspath(dataset), split)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: folder not found (a dataset needs {', '.join(SPLITS)})")
    return path
