"""Translating a folder: ``Translator.translate_folder`` against the plain loop a user would write.

The plain loop opens each batch with PIL, calls the translator on it and saves each result with
PIL's defaults (zlib level 6), one step after another: what ``translate_folder`` itself did before
it overlapped decoding and PNG encoding with the generator in worker threads and wrote PNGs at
zlib level 1 (OpenCV's default). Both produce the same pixels; the two alternate over --rounds
rounds on the same machine and each side's fastest round counts.

Usage:
  python bench/translate_folder.py                      # 48 1280x960 JPEGs, light ch 16 at 96 px
  python bench/translate_folder.py --ch 64 --n-res 4 --img-size 256 --images 16
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
import ugatit_rs as ug
from PIL import Image
from ugatit_rs import viz
from ugatit_rs.translate import Translator


def make_photos(folder: str, count: int, width: int, height: int) -> list[str]:
    """Smooth random images (upsampled noise) saved as JPEG, like photos in how they compress."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        small = (rng.random((height // 16, width // 16, 3)) * 255).astype(np.uint8)
        path = os.path.join(folder, f"{i:04d}.jpg")
        Image.fromarray(small).resize((width, height), Image.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


def plain_loop(translator: Translator, paths: list[str], out: str) -> None:
    os.makedirs(out, exist_ok=True)
    for i in range(0, len(paths), translator.batch_size):
        chunk = paths[i : i + translator.batch_size]
        images = [viz.open_upright_rgb(p) for p in chunk]
        for path, result in zip(chunk, translator(images)):
            Image.fromarray(result).save(os.path.join(out, os.path.basename(path)[:-4] + ".png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=960)
    parser.add_argument("--img-size", type=int, default=96)
    parser.add_argument("--ch", type=int, default=16)
    parser.add_argument("--n-res", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="the full model (default: light)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    generator = ug.Generator(
        ngf=args.ch, n_blocks=args.n_res, img_size=args.img_size, light=not args.full, device=args.device
    )
    translator = Translator(generator, args.img_size, batch_size=args.batch)
    with tempfile.TemporaryDirectory() as root:
        photos = os.path.join(root, "photos")
        os.makedirs(photos)
        paths = make_photos(photos, args.images, args.width, args.height)
        times: dict[str, list[float]] = {"plain loop": [], "translate_folder": []}
        for r in range(args.rounds):
            for name, run in (
                ("plain loop", lambda: plain_loop(translator, paths, os.path.join(root, f"plain{r}"))),
                (
                    "translate_folder",
                    lambda: translator.translate_folder(photos, os.path.join(root, f"ours{r}"), False),
                ),
            ):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        same = all(
            np.array_equal(
                np.asarray(Image.open(os.path.join(root, "plain0", f))),
                np.asarray(Image.open(os.path.join(root, "ours0", f))),
            )
            for f in sorted(os.listdir(os.path.join(root, "ours0")))
        )
        sizes = {
            name: sum(os.path.getsize(os.path.join(root, folder, f)) for f in os.listdir(os.path.join(root, folder)))
            for name, folder in (("plain loop", "plain0"), ("translate_folder", "ours0"))
        }
    plain, ours = min(times["plain loop"]), min(times["translate_folder"])
    model = f"{'full' if args.full else 'light'} ch {args.ch}, n_res {args.n_res}, {args.img_size} px"
    print(f"{args.images} {args.width}x{args.height} JPEGs, {model}, batch {args.batch}, {args.device}, "
          f"{os.cpu_count()} CPU threads; same pixels: {same}")  # fmt: skip
    print("| loop | seconds | images/s | output MB | ratio |\n|---|---|---|---|---|")
    for name, best in (("plain loop", plain), ("translate_folder", ours)):
        print(f"| {name} | {best:.2f} | {args.images / best:.1f} | {sizes[name] / 1e6:.0f} | {best / plain:.2f}x |")


if __name__ == "__main__":
    main()
