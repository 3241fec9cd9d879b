"""Dataset preparation: ugatit_rs.data.prepare (Rust, all cores) vs the same work in PIL
(open, EXIF transpose, convert RGB, bicubic resize + centre crop, save PNG), single-process and
with a multiprocessing pool of os.cpu_count() workers.

Usage: python bench/prepare_vs_pil.py [--n 200] [--src-size 800] [--size 256]
"""

import argparse
import json
import os
import shutil
import tempfile
import time
from multiprocessing import Pool

import numpy as np
from PIL import Image, ImageOps
from ugatit_rs.data import prepare


def make_inputs(folder, n, size):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0 : int(size * 0.75)] / size
    for i in range(n):
        base = np.stack([np.sin(xx * rng.uniform(2, 9) + i), np.cos(yy * rng.uniform(2, 9)), np.sin((xx + yy) * 4)], -1)
        img = ((base * 0.4 + 0.5 + rng.normal(0, 0.04, base.shape)).clip(0, 1) * 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(folder, f"{i:04d}.jpg"), quality=90)


def pil_one(args):
    src, dst, size = args
    with Image.open(src) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im.crop((left, top, left + size, top + size)).save(dst)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--src-size", type=int, default=800)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="ugatit-prep-")
    raw = os.path.join(root, "raw")
    os.makedirs(raw)
    make_inputs(raw, args.n, args.src_size)
    files = sorted(os.listdir(raw))

    t = time.perf_counter()
    prepare(raw, os.path.join(root, "ours"), size=args.size, test_fraction=0.0, progress=False)
    ours = time.perf_counter() - t

    out = os.path.join(root, "pil")
    os.makedirs(out)
    jobs = [(os.path.join(raw, f), os.path.join(out, f + ".png"), args.size) for f in files]
    t = time.perf_counter()
    for job in jobs:
        pil_one(job)
    pil_serial = time.perf_counter() - t
    t = time.perf_counter()
    with Pool(os.cpu_count()) as pool:
        pool.map(pil_one, jobs)
    pil_pool = time.perf_counter() - t
    shutil.rmtree(root)
    print(
        json.dumps(
            {
                "images": args.n,
                "src": f"{args.src_size}x{int(args.src_size * 0.75)} JPEG",
                "size": args.size,
                "cpus": os.cpu_count(),
                "ours_s": round(ours, 2),
                "pil_serial_s": round(pil_serial, 2),
                "pil_pool_s": round(pil_pool, 2),
                "speedup_vs_pil_serial": round(pil_serial / ours, 2),
                "speedup_vs_pil_pool": round(pil_pool / ours, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
