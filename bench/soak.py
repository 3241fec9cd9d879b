"""Long-run stability: many small training steps with frequent sample grids and checkpoints,
recording the process RSS (and CUDA memory) as it goes. Memory should stay flat.

Usage: python bench/soak.py [--steps 2000] [--device cpu] [--out soak.json]
"""

import argparse
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import ugatit_rs as ug  # noqa: E402
from datasets import make_dataset  # noqa: E402


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="ugatit-soak-")
    data = make_dataset(os.path.join(root, "toy"), n_train=16, n_test=2)
    every = max(1, args.steps // 20)
    cfg = ug.TrainConfig(
        dataset=data,
        light=True,
        img_size=96,
        ch=4,
        n_res=1,
        iteration=args.steps,
        print_freq=every,
        save_freq=every,
        device=args.device,
        result_dir=os.path.join(root, "r"),
        num_workers=2,
    )
    trainer = ug.Trainer(cfg)
    samples = []
    start = time.perf_counter()

    def record(step, losses):
        if step % every == 0:
            row = {"step": step, "rss_mib": round(rss_mib(), 1), "s": round(time.perf_counter() - start, 1)}
            if args.device.startswith("cuda"):
                row["cuda_mib"] = round(torch.cuda.memory_allocated() / 2**20, 1)
            samples.append(row)
            print(json.dumps(row), flush=True)

    trainer.fit(progress=False, callback=record, log_every=every)
    first, last = samples[1], samples[-1]  # skip the very first point (allocator warm-up)
    summary = {
        "steps": args.steps,
        "checkpoints": len(os.listdir(os.path.join(trainer.run_dir, "model"))),
        "sample_grids": len(os.listdir(os.path.join(trainer.run_dir, "img"))),
        "rss_first_mib": first["rss_mib"],
        "rss_last_mib": last["rss_mib"],
        "rss_growth_mib": round(last["rss_mib"] - first["rss_mib"], 1),
        "samples": samples,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
