"""Measuring a translation model the way the paper does (``docs/metrics.md``).

- :func:`evaluate_checkpoint`: translate ``testA`` with A→B and ``testB`` with B→A, compare each
  with the target domain's real test images: KID (×100 ± std×100, the paper's table) and FID.
- :func:`compare_folders`: the same numbers between any two folders of images.
- :class:`TrainingEvaluator`: KID of both directions during training on a fixed subset of the test
  images (the real features are computed once).
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import torch
from tqdm.auto import tqdm

from . import _files, metrics, viz
from .data import domain_folder, load_image
from .models import translate_batch


def _scores(real: np.ndarray, fake: np.ndarray, protocol: str) -> dict:
    k = metrics.kid(real, fake, protocol=protocol)
    return {
        "kid_x100": 100 * k.mean,
        "kid_std_x100": 100 * k.std,
        "fid": metrics.fid(real, fake),
        "n_real": len(real),
        "n_fake": len(fake),
    }


def readable_images(folder: str, translated: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """``(images, skipped)``: the images under ``folder`` that decode, and ``(path, reason)`` for
    each that does not, named on stderr, as training and ``test`` pass over them. Every file is
    decoded by the Rust decoder the Inception features read files with and, if ``translated``,
    also by the translator's (PIL), so no file fails half-way through a measurement. Fewer than
    the estimators' two images is a ValueError naming the folder."""
    images, skipped = [], viz.UnreadableImages()
    for path in metrics.image_files(folder):
        try:
            load_image(path, 8)
            if translated:
                viz.open_upright_rgb(path)
        except (OSError, ValueError) as exc:
            skipped.add(path, exc)
            continue
        images.append(path)
    if not images:
        raise OSError(f"{folder}: none of its {len(skipped)} image(s) could be decoded; first: {skipped[0][1]}")
    if len(images) < metrics.MIN_FEATURES:  # found before any image is translated or measured
        raise ValueError(
            f"{folder}: KID and FID need at least {metrics.MIN_FEATURES} readable images, found {len(images)}"
        )
    return images, skipped


def compare_folders(
    real: str, fake: str, protocol: str = "paper", inception: str | None = None, device=None, progress: bool = True
) -> dict:
    """KID and FID between the images of two folders (searched recursively). Files that cannot be
    decoded are skipped and listed under ``"skipped"``."""
    (real_files, real_skipped), (fake_files, fake_skipped) = readable_images(real), readable_images(fake)
    feats = metrics.InceptionFeatures(weights=inception, protocol=protocol, device=device, progress=progress)
    result = {"protocol": protocol, **_scores(feats(real_files), feats(fake_files), protocol)}
    return {**result, "skipped": real_skipped + fake_skipped}


def evaluate_checkpoint(
    dataset: str,
    checkpoint: str,
    protocol: str = "paper",
    inception: str | None = None,
    device="cpu",
    batch_size: int = 8,
    progress: bool = True,
) -> dict:
    """The paper's table for one checkpoint: ``{"A2B": {...}, "B2A": {...}}`` with KID×100, its
    std×100 and FID per direction. Translations stay in memory (as 8-bit images, like saved files).
    Test images that cannot be decoded are skipped and listed under ``"skipped"``."""
    from .translate import Translator

    # Everything that can be refused is checked before the first image is translated.
    files, skipped = {}, []
    for split in ("testA", "testB"):
        files[split], unreadable = readable_images(domain_folder(dataset, split), translated=True)
        skipped += unreadable
    translators = {
        direction: Translator.from_checkpoint(checkpoint, direction=direction, device=device, batch_size=batch_size)
        for direction in ("A2B", "B2A")
    }
    feats = metrics.InceptionFeatures(weights=inception, protocol=protocol, device=device, progress=progress)
    result = {"protocol": protocol, "checkpoint": os.fspath(checkpoint), "dataset": os.fspath(dataset)}
    for direction, source, target in (("A2B", "testA", "testB"), ("B2A", "testB", "testA")):
        fakes = []
        with tqdm(total=len(files[source]), unit="img", desc=f"translate {source}", disable=not progress) as bar:
            for i in range(0, len(files[source]), batch_size):
                chunk = files[source][i : i + batch_size]
                fakes += [np.array(img) for img in translators[direction](chunk)]  # writable copies
                bar.update(len(chunk))
        result[direction] = _scores(feats(files[target]), feats(fakes), protocol)
    return {**result, "skipped": skipped}


def _kid_text(scores: dict) -> str:
    """KID×100 ± std×100; the paper's estimator has no std with a single block (≤ 10 images)."""
    std = scores["kid_std_x100"]
    return f"{scores['kid_x100']:.2f} ± " + (f"{std:.2f}" if std is not None and math.isfinite(std) else "n/a")


def format_table(result: dict) -> str:
    """The paper's layout: KID×100 ± std×100 and FID per direction."""
    lines = [f"{'direction':<10}{'KID x100':>20}{'FID':>12}{'real':>7}{'fake':>7}   ({result['protocol']} protocol)"]
    rows = [(d, result[d]) for d in ("A2B", "B2A") if d in result]
    if "kid_x100" in result:
        rows.append(("real/fake", result))
    for name, r in rows:
        lines.append(f"{name:<10}{_kid_text(r):>20}{r['fid']:>12.2f}{r['n_real']:>7}{r['n_fake']:>7}")
    return "\n".join(lines)


def _strict(value):
    """``value`` with every NaN or Inf float replaced by None (JSON's null): ``json.dump`` would
    write ``NaN``, which strict JSON readers refuse."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(result: dict, path: str) -> str:
    """Writes ``result`` as strict JSON (an undefined number, such as the std of a single KID
    block, is ``null``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _files.write_json(path, _strict(result), indent=2, allow_nan=False)
    return path


class TrainingEvaluator:
    """KID of both directions on up to ``images`` test images per domain, for ``fit()``.

    The test images are loaded once (the trainer's test transform) and their real features
    computed once; each evaluation translates them with the generators in eval mode, without
    autograd, and compares with the other domain's real features (paper protocol).
    """

    def __init__(self, trainer, images: int, protocol: str = "paper"):
        self.trainer = trainer
        self.protocol = protocol
        self.features = metrics.InceptionFeatures(protocol=protocol, device=trainer.device)
        size = trainer.config.img_size
        self.inputs, self.real = {}, {}
        for domain in "AB":
            loaded = []
            for path in metrics._native.list_images(domain_folder(trainer.config.dataset, f"test{domain}")):
                if len(loaded) == images:
                    break
                try:
                    loaded.append(load_image(path, size))
                except OSError as exc:  # passed over, as fit() passes over unreadable training images
                    print(f"warning: in-training KID skips unreadable image {exc}", file=sys.stderr)
            if len(loaded) < metrics.MIN_FEATURES:
                raise ValueError(
                    f"in-training KID needs at least {metrics.MIN_FEATURES} readable test{domain} images, "
                    f"found {len(loaded)}"
                )
            self.inputs[domain] = torch.cat(loaded)
            self.real[domain] = self.features(self.inputs[domain])

    @torch.no_grad()
    def _translate(self, generator, x: torch.Tensor) -> torch.Tensor:
        was_training = generator.training
        generator.eval()
        try:
            batches = [translate_batch(generator, x[i : i + 8].to(self.trainer.device))[0] for i in range(0, len(x), 8)]
            return torch.cat(batches)
        finally:
            generator.train(was_training)

    def __call__(self) -> dict:
        """``{"kid_A2B": ..., "kid_B2A": ..., "kid_mean": ...}`` (×100, the paper's scale)."""
        out = {}
        for direction, generator, source, target in (
            ("A2B", self.trainer.gen_a2b, "A", "B"),
            ("B2A", self.trainer.gen_b2a, "B", "A"),
        ):
            fake = self.features(self._translate(generator, self.inputs[source]))
            out[f"kid_{direction}"] = 100 * metrics.kid(self.real[target], fake, protocol=self.protocol).mean
        out["kid_mean"] = (out["kid_A2B"] + out["kid_B2A"]) / 2
        return out
