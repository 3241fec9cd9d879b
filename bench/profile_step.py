"""Profiles training steps of ugatit-rs and of the official-style loop (torch.profiler sees the
libtorch kernels our Rust code launches too) and writes each one's top operators. (CUDA-graph
training is a TrainConfig opt-in, timed by bench/train_step.py --opt-ins '{"cuda_graph": true}'.)

Usage:
  python bench/profile_step.py --device cuda --img-size 256 --ch 64 --n-res 4 --light --out prof.md
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from train_step import build_model  # noqa: E402  (bench/, this script's own folder)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def table(model, batch, args) -> str:
    for _ in range(args.warmup):
        model.step(*batch)
    sync(args.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            model.step(*batch)
        sync(args.device)
    key = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=args.rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--img-size", type=int, default=96)
    ap.add_argument("--ch", type=int, default=16)
    ap.add_argument("--n-res", type=int, default=2)
    ap.add_argument("--light", action="store_true")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--opt-ins", default="{}", help="JSON of extra TrainConfig fields for ugatit-rs")
    ap.add_argument("--out", help="write the report here (markdown) instead of stdout")
    args = ap.parse_args()

    torch.manual_seed(0)
    s = args.img_size
    shape = (args.batch, 3, s, s)
    batch = (torch.rand(shape, device=args.device) * 2 - 1, torch.rand(shape, device=args.device) * 2 - 1)
    config = f"{'light' if args.light else 'full'} {s} px, ch {args.ch}, n_res {args.n_res}, opt-ins {args.opt_ins}"
    parts = [
        f"# Step profile: {config}, {args.device}\n",
        f"Command: `python bench/profile_step.py {' '.join(sys.argv[1:])}`\n",
    ]
    for impl in ("oracle", "ours"):
        model = build_model(impl, args)
        parts += [f"\n## {impl} ({args.steps} steps)\n", "```", table(model, batch, args), "```"]
        del model
    report = "\n".join(parts) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    else:
        print(report)


if __name__ == "__main__":
    main()
