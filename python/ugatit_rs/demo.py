"""The built-in demo: procedurally drawn photo-like faces (domain A) and cartoon faces (domain B),
a short training run, and a quantitative check of the translation.

Quality measures, computed on the held-out test images (see ``src/data/demo.rs``):

- **content** — the face mask IoU between each input and its translation (skin-coloured pixels;
  backgrounds are never skin-coloured). A translation that keeps the face where it was, at its
  size and tilt, scores near 1; noise or a blank image scores near 0.
- **style** — two hand-made features: *flatness*, the share of pixels whose 3x3 neighbourhood is
  flat (cartoons are flat fills, ≈0.85; photos shaded and textured, ≈0.0), and *border
  brightness* (pastel cartoon backdrops vs dim photo backdrops). Each is scaled so that the mean
  of real photos maps to 0 and the mean of real cartoons to 1 (calibrated on the real test
  images); the *style score* is their average, and ``style_accuracy`` is the share of
  translations on the target domain's side of 0.5. On real images it separates the domains
  perfectly (tested).
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import numpy as np
import torch

from . import _native, viz
from ._checks import whole
from ._files import write_json
from ._native import TrainConfig
from .data import load_image
from .models import translate_batch
from .trainer import Trainer


def write_dataset(root: str, n_train: int = 200, n_test: int = 16, size: int = 96, seed: int = 0) -> str:
    """Writes ``root/{trainA,trainB,testA,testB}`` (A: photos, B: cartoons) as PNG files."""
    n_train = whole("n_train", n_train, 1, _native.DEMO_MAX_IMAGES)
    n_test = whole("n_test", n_test, 1, _native.DEMO_MAX_IMAGES)
    _native.write_demo_dataset(os.fspath(root), n_train, n_test, whole("size", size, *_native.DEMO_SIZES), seed)
    return os.fspath(root)


def demo_image(domain: str, size: int = 96, seed: int = 0, index: int = 0) -> np.ndarray:
    """One demo image (HWC uint8): domain ``"A"`` (photo) or ``"B"`` (cartoon)."""
    return _native.demo_image(domain, whole("size", size, *_native.DEMO_SIZES), seed, index).numpy()


def scores(source: np.ndarray, translated: np.ndarray) -> dict[str, float]:
    """Face-mask IoU(source, translated), and flatness and border brightness of ``translated``."""
    iou, flat, bright = _native.demo_scores(viz.array_tensor(source), viz.array_tensor(translated))
    return {"iou": iou, "flatness": flat, "brightness": bright}


class StyleScale:
    """Maps (flatness, brightness) to a style score: 0 = typical real photo, 1 = typical cartoon."""

    def __init__(self, photos: list[np.ndarray], cartoons: list[np.ndarray]):
        feats = {
            name: np.array([[scores(i, i)[k] for k in ("flatness", "brightness")] for i in imgs])
            for name, imgs in (("A", photos), ("B", cartoons))
        }
        self.low, self.high = feats["A"].mean(0), feats["B"].mean(0)

    def __call__(self, flatness: float, brightness: float) -> float:
        return float(np.mean((np.array([flatness, brightness]) - self.low) / (self.high - self.low)))


def style_score(scale: StyleScale, img: np.ndarray) -> float:
    """One image's style score on ``scale``: 0 looks like the photos, 1 like the cartoons."""
    s = scores(img, img)
    return scale(s["flatness"], s["brightness"])


@torch.no_grad()
def quality(generator, images: list[np.ndarray], target: str, scale: StyleScale) -> dict[str, float]:
    """Mean content IoU, flatness, style score and style accuracy of ``generator`` translating
    ``images`` into domain ``target`` (``"B"``: cartoons; ``"A"``: photos)."""
    if target not in ("A", "B"):
        raise ValueError(f"target must be 'A' or 'B', got {target!r}")
    was_training = generator.training
    generator.eval()
    try:
        rows = []
        for img in images:
            x = viz.from_image(img)[None].to(generator.device)
            out, _ = translate_batch(generator, x)
            rows.append(scores(img, viz.to_image(out)))
    finally:
        generator.train(was_training)
    style = np.array([scale(r["flatness"], r["brightness"]) for r in rows])
    on_target = style > 0.5 if target == "B" else style < 0.5
    return {
        "iou": float(np.mean([r["iou"] for r in rows])),
        "flatness": float(np.mean([r["flatness"] for r in rows])),
        "style_score": float(style.mean()),
        "style_accuracy": float(on_target.mean()),
    }


def _test_images(dataset: str, split: str, size: int) -> list[np.ndarray]:
    folder = os.path.join(dataset, split)
    return [viz.to_image(load_image(os.path.join(folder, f), size)) for f in sorted(os.listdir(folder))]


def run(
    output: str = "demo_output",
    iteration: int = 600,
    img_size: int = 96,
    ch: int = 16,
    n_res: int = 2,
    device: str = "cpu",
    seed: int = 0,
    n_train: int = 200,
    n_test: int = 16,
    lr: float = 2e-4,
    progress: bool = True,
    model: str = "ugatit",
    precision: str = "fp32",
) -> dict:
    """Writes the demo data, trains a light U-GAT-IT on it, and writes into ``output``:
    ``translations_A2B.png`` / ``translations_B2A.png`` (input, translation, attention overlay per
    row), ``loss_curves.png``, ``quality.json`` (before vs after training), the checkpoint, the
    sample grids and the training log. Returns the summary dict."""
    started = time.perf_counter()
    os.makedirs(output, exist_ok=True)
    earlier = os.path.join(output, "results", "demo")
    if os.path.isfile(os.path.join(output, "quality.json")) and os.path.isdir(earlier):
        # An earlier demo's run (its quality.json beside it): the demo replaces its own outputs,
        # where fit() would set the checkpoints of a real run aside (90 MB a demo).
        print(f"demo: replacing the earlier demo run in {earlier}", file=sys.stderr)
        shutil.rmtree(earlier)
    dataset = write_dataset(os.path.join(output, "data", "demo"), n_train, n_test, img_size, seed)
    cfg = TrainConfig(
        model=model,
        dataset=dataset,
        light=True,
        img_size=img_size,
        ch=ch,
        n_res=n_res,
        iteration=iteration,
        print_freq=max(1, iteration // 4),
        save_freq=iteration,
        lr=lr,
        result_dir=os.path.join(output, "results"),
        device=device,
        seed=seed,
        num_workers=2,
        precision=precision,
    )
    trainer = Trainer(cfg)
    tests = {d: _test_images(dataset, f"test{d}", img_size) for d in "AB"}
    scale = StyleScale(tests["A"], tests["B"])

    def measure():
        return {
            "A2B": quality(trainer.gen_a2b, tests["A"], "B", scale),
            "B2A": quality(trainer.gen_b2a, tests["B"], "A", scale),
        }

    kid = _kid_evaluator(trainer, n_test)

    def measure_all():
        measured = measure()
        if kid is not None:
            for direction, value in kid().items():
                if direction in ("kid_A2B", "kid_B2A"):
                    measured[direction[4:]]["kid_x100"] = value
        return measured

    before = measure_all()
    log = trainer.fit(progress=progress)
    after = measure_all()
    files = {"log": log, "checkpoint": trainer.checkpoint_path()}
    for direction, gen, images in (("A2B", trainer.gen_a2b, tests["A"]), ("B2A", trainer.gen_b2a, tests["B"])):
        path = os.path.join(output, f"translations_{direction}.png")
        viz.save_png(translation_sheet(gen, images[:8]), path)
        files[f"translations_{direction}"] = path
    try:
        keys = (
            ("d_loss", "g_loss", "cycle_A", "idt_A")
            if model == "cyclegan"
            else ("d_loss", "g_loss", "G_recon_loss_A", "G_cam_loss_A")
        )
        fig = viz.loss_curves(log, keys=keys, smooth=10)
        files["loss_curves"] = os.path.join(output, "loss_curves.png")
        fig.savefig(files["loss_curves"], dpi=90)
    except ImportError:
        print("matplotlib is not installed: no loss_curves.png", file=sys.stderr)
    summary = {
        "config": cfg.to_dict(),
        "quality_before": before,
        "quality_after": after,
        "seconds": round(time.perf_counter() - started, 1),
        "files": files,
    }
    write_json(os.path.join(output, "quality.json"), summary, indent=2)
    return summary


def _kid_evaluator(trainer, n_test: int):
    """KID of both directions on the held-out faces, when the metrics extra is installed."""
    from .evaluation import TrainingEvaluator

    try:
        return TrainingEvaluator(trainer, n_test)
    except FileNotFoundError as exc:
        print(f"no KID in this demo: {exc}", file=sys.stderr)
        return None


@torch.no_grad()
def translation_sheet(generator, images: list[np.ndarray]) -> np.ndarray:
    """Rows of input | translation | attention overlay (HWC uint8; no overlay for a generator
    without attention, such as CycleGAN's)."""
    was_training = generator.training
    generator.eval()
    try:
        rows = []
        for img in images:
            out, heat = translate_batch(generator, viz.from_image(img)[None].to(generator.device))
            row = [img, viz.to_image(out)] + ([viz.overlay(img, heat)] if heat is not None else [])
            rows.append(np.concatenate(row, axis=1))
    finally:
        generator.train(was_training)
    return np.concatenate(rows, axis=0)
