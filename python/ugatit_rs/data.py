"""Image data: the Rust batch loader and single-image loading.

``DomainLoader(folder, img_size, batch_size, seed, domain, train, strict, num_workers, resize)``
streams float32 ``(B, 3, S, S)`` batches in [-1, 1] from a folder (recursively; jpg, jpeg, png,
bmp, ppm, pgm, tif, tiff, webp in any case), decoded and augmented in background Rust threads with
the official transforms (``resize="bilinear"``, U-GAT-IT's; ``"bicubic"`` is CycleGAN's). The stream depends only on the seed, never on the number of workers.
Unreadable files are skipped and listed by ``skipped()``; ``strict=True`` raises instead.
``next_batch()`` streams on without end, as the official loop reads; ``for batch in loader``
iterates one epoch (``len(loader)`` batches) from the current position, as a PyTorch
``DataLoader`` does. A loader pickles and copies (``copy.deepcopy``, another process): the copy
scans the folder again and goes on from the same position with the same batches.
"""

from __future__ import annotations

import os

import torch

from ._checks import whole
from ._files import is_within
from ._native import DomainLoader
from ._native import load_image as _load_image

__all__ = ["DomainLoader", "load_image", "domain_folder", "check_dataset", "prepare"]

SPLITS = ("trainA", "trainB", "testA", "testB")


def load_image(path: str | os.PathLike, img_size: int) -> torch.Tensor:
    """One image file, resized to ``img_size`` square, as a ``(1, 3, S, S)`` float32 tensor in [-1, 1]."""
    return _load_image(os.fspath(path), whole("img_size", img_size, 1, 8192))


def domain_folder(dataset: str | os.PathLike, split: str) -> str:
    """``<dataset>/<split>``; raises FileNotFoundError naming the folder if it does not exist."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    dataset = os.fspath(dataset)
    path = os.path.join(dataset, split)
    if os.path.isdir(path):
        return path
    needs = f"a dataset is a folder holding {', '.join(SPLITS)}"
    if not dataset:
        raise FileNotFoundError(f"no dataset given ({needs})")
    if not os.path.isdir(dataset):
        raise FileNotFoundError(
            f"{dataset}: {'not a folder' if os.path.exists(dataset) else 'no such folder'} ({needs})"
        )
    hint = ""
    parent, name = os.path.split(os.path.normpath(dataset))
    if name in SPLITS:  # ds/trainA given for ds
        hint = f"; {dataset} is one of them: give the folder above it, {parent or '.'}"
    raise FileNotFoundError(f"{path}: folder not found ({needs}){hint}")


def check_dataset(dataset: str | os.PathLike) -> None:
    """Raises ``FileNotFoundError`` naming the first of ``trainA``, ``trainB``, ``testA``,
    ``testB`` under ``dataset`` that is missing or holds no image (a scan; nothing is decoded).
    Training needs all four: the test images feed the sample grids and the test outputs."""
    for split in SPLITS:
        try:
            DomainLoader(domain_folder(dataset, split), 8, train=False, num_workers=0)
        except FileNotFoundError as exc:
            if split.startswith("train"):
                raise
            raise FileNotFoundError(
                f"{exc}; training translates test images for its sample grids and test outputs"
            ) from None


def check_run_dir(run_dir: str | os.PathLike, dataset: str | os.PathLike) -> None:
    """Raises ``ValueError`` when ``run_dir`` lies inside one of the dataset's split folders:
    the scans are recursive, so the next run would take its sample grids and test outputs for
    that domain's images."""
    for split in SPLITS:
        folder = os.path.join(os.fspath(dataset), split)
        if is_within(run_dir, folder):
            raise ValueError(
                f"the run folder {os.fspath(run_dir)} lies inside {folder}, whose images are read recursively: its "
                "sample grids and test outputs would become training or test images; give a result_dir outside "
                f"{', '.join(SPLITS)}"
            )


def prepare(
    domain_a: str | os.PathLike,
    output: str | os.PathLike,
    domain_b: str | os.PathLike | None = None,
    size: int = 256,
    fit: str = "crop",
    test_fraction: float = 0.1,
    seed: int = 0,
    min_size: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Builds ``output/{trainA,testA[,trainB,testB]}`` from folders of raw images, in Rust on all cores.

    Every image file under ``domain_a`` (and ``domain_b``), recursively, is decoded (any common
    format, EXIF orientation applied, grayscale/palette/16-bit/alpha/CMYK converted to RGB),
    resized to ``size`` square by centre ``fit="crop"`` or ``fit="pad"`` (black borders), and
    written as PNG. Exact duplicates (same bytes) are kept once; files that cannot be decoded or
    whose shorter side is below ``min_size`` (default ``size // 2``) are skipped. The train/test
    split is a seeded shuffle with ``test_fraction`` of each domain's images in ``test``
    (training needs at least one test image per domain: ``test_fraction=0`` leaves none).

    ``output`` may not overlap an input folder, and an output that already holds prepared images
    is refused unless ``overwrite=True`` (which replaces them), so a re-run never doubles a
    dataset. Ctrl-C stops the workers and raises ``KeyboardInterrupt``. A write that fails (a
    full disk, a read-only folder) raises ``OSError`` naming the file; every PNG is complete
    or absent, never truncated.

    Returns ``{"trainA": n, "testA": n, ..., "skipped": [(path, reason)], "duplicates": [(path, original)]}``.
    """
    from . import _native

    size = whole("size", size, 8, 8192)
    min_size = whole("min_size", size // 2 if min_size is None else min_size, 0, 16384)
    seed = whole("seed", seed, 0, 2**64 - 1)
    workers = whole("workers", workers or os.cpu_count() or 1, 1, 1024)
    domains = [("A", os.fspath(domain_a))] + ([("B", os.fspath(domain_b))] if domain_b is not None else [])
    for _, folder in domains:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder}: folder not found")
    if domain_b is not None:
        # Folders are searched recursively: the same folder, or one inside the other, would put
        # the same photos in both domains.
        a, b = (os.path.realpath(folder) for _, folder in domains)
        if os.path.commonpath([a, b]) in (a, b):
            raise ValueError(
                f"domain_a ({domains[0][1]}) and domain_b ({domains[1][1]}) overlap: "
                + ("they are the same folder" if a == b else "one is inside the other")
                + ", so both domains would hold the same images"
            )
    bar = None

    def report(done, total):
        # The bar opens on the first report (after 0.1 s), so a config or output refused at once
        # prints only the error.
        nonlocal bar
        if bar is None:
            from tqdm.auto import tqdm

            # What was done before the bar opened is its `initial`: the rate counts from here.
            bar = tqdm(unit="img", desc="prepare", total=total, initial=done)
        bar.total = total
        bar.update(done - bar.n)

    # What a run stopped part-way (a failed write, Ctrl-C) leaves, and how to start again.
    leftover = f"{os.fspath(output)} holds the images written so far; re-run with overwrite=True (--overwrite)"
    try:
        return dict(
            _native.prepare_dataset(
                domains,
                os.fspath(output),
                size,
                fit,
                float(test_fraction),
                seed,
                min_size,
                workers,
                bool(overwrite),
                report if progress else None,
            )
        )
    except OSError as exc:
        if exc.filename and is_within(exc.filename, output):
            exc.add_note(leftover)
        raise
    except KeyboardInterrupt as exc:
        if os.path.isdir(output):
            exc.add_note(leftover)
        raise
    finally:
        if bar is not None:
            bar.close()
