"""Small real two-domain image datasets for tests, written as image files."""

import os

import numpy as np
from PIL import Image


def draw(domain: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Domain A: a warm disc on a light background; domain B: a cool square on a dark one."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    cx, cy, r = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.15, 0.3)
    if domain == "A":
        img = np.full((size, size, 3), 0.85) + rng.normal(0, 0.03, (size, size, 3))
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
        img[mask] = [0.9, rng.uniform(0.3, 0.6), 0.2]
    else:
        img = np.full((size, size, 3), 0.15) + rng.normal(0, 0.03, (size, size, 3))
        mask = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
        img[mask] = [0.2, rng.uniform(0.4, 0.7), 0.9]
    return (img.clip(0, 1) * 255).astype(np.uint8)


def make_dataset(root, n_train=6, n_test=2, size=100, seed=0) -> str:
    """``root/{trainA,trainB,testA,testB}`` of PNG/JPEG files; returns ``root``."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for domain in "AB":
            folder = os.path.join(root, f"{split}{domain}")
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                ext = "png" if i % 2 == 0 else "jpg"
                Image.fromarray(draw(domain, size, rng)).save(os.path.join(folder, f"{i:03d}.{ext}"))
    return os.fspath(root)
