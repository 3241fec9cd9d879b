"""bf16 training's effect on quality (issue #15): KID of the demo's light U-GAT-IT trained in
float32 and in bf16 (TrainConfig.precision), each with several seeds so the seed-to-seed spread
shows the noise the difference must be read against.

  python scripts/bf16_quality.py train --device cuda --out DIR   # trains, keeps the generators
  python scripts/bf16_quality.py score DIR                       # KID x100 per run, and summary

Training runs `ugatit_rs.demo.run` (600 iterations, 96 px, ch 16); scoring needs the metrics
extra's Inception weights (the accelerator machine does not have them: score here). Scoring
translates --n-test fresh test images per domain of each run's demo dataset (more than the
demo's own 16, for a steadier KID).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import torch

PRECISIONS = ("fp32", "bf16")
DEMO = dict(img_size=96, ch=16, n_res=2, n_test=16)


def train(args) -> None:
    from ugatit_rs import demo

    os.makedirs(args.out, exist_ok=True)
    for precision, seed in [(p, s) for p in PRECISIONS for s in args.seeds]:
        with tempfile.TemporaryDirectory() as work:
            summary = demo.run(
                work,
                iteration=args.iteration,
                img_size=DEMO["img_size"],
                ch=DEMO["ch"],
                n_res=DEMO["n_res"],
                n_test=DEMO["n_test"],
                device=args.device,
                seed=seed,
                progress=False,
                precision=precision,
            )
            ckpt = [os.path.join(r, f) for r, _, fs in os.walk(work) for f in fs if f.endswith(".safetensors")]
            from ugatit_rs.translate import Translator

            for direction in ("A2B", "B2A"):
                gen = Translator.from_checkpoint(ckpt[0], direction=direction, device="cpu").generator
                torch.save(gen.state_dict(), os.path.join(args.out, f"{precision}_s{seed}_{direction}.pt"))
        record = {
            "precision": precision,
            "seed": seed,
            "seconds": summary["seconds"],
            "quality": summary["quality_after"],
        }
        with open(os.path.join(args.out, "runs.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


def score(args) -> None:
    import numpy as np
    import ugatit_rs as ug
    from PIL import Image
    from ugatit_rs import _native, viz
    from ugatit_rs.evaluation import compare_folders

    with open(os.path.join(args.dir, "runs.jsonl")) as f:
        runs = [(r["precision"], r["seed"]) for r in map(json.loads, f)]
    print(f"{'run':<10}{'KID x100 A2B':>14}{'KID x100 B2A':>14}")
    results = {}
    for precision, seed in runs:
        with tempfile.TemporaryDirectory() as work:
            data = os.path.join(work, "demo")
            _native.write_demo_dataset(data, 200, args.n_test, DEMO["img_size"], seed)
            row = {}
            for direction, source, target in (("A2B", "testA", "testB"), ("B2A", "testB", "testA")):
                g = ug.Generator(ngf=DEMO["ch"], n_blocks=DEMO["n_res"], img_size=DEMO["img_size"], light=True)
                g.load_state_dict(torch.load(os.path.join(args.dir, f"{precision}_s{seed}_{direction}.pt")))
                fakes = os.path.join(work, f"fake_{direction}")
                os.makedirs(fakes)
                for i, path in enumerate(_native.list_images(os.path.join(data, source))):
                    with torch.no_grad():
                        out = g.eval()(_native.load_image(path, DEMO["img_size"]))[0][0]
                    Image.fromarray(viz.to_image(out)).save(os.path.join(fakes, f"{i:03d}.png"))
                scores = compare_folders(os.path.join(data, target), fakes, progress=False)
                row[direction] = scores["kid_x100"]
            results[(precision, seed)] = row
            print(f"{precision}/s{seed:<5}{row['A2B']:>14.2f}{row['B2A']:>14.2f}", flush=True)
    seeds = sorted({s for p, s in results if all((q, s) in results for q in PRECISIONS)})

    def spread(values: np.ndarray) -> float:  # seed-to-seed sd; undefined for one seed
        return float(values.std(ddof=1)) if len(values) > 1 else float("nan")

    for direction in ("A2B", "B2A"):
        kid = {p: np.array([results[(p, s)][direction] for s in seeds]) for p in PRECISIONS}
        diff = kid["bf16"] - kid["fp32"]
        print(
            f"{direction}: fp32 {kid['fp32'].mean():.2f} ± {spread(kid['fp32']):.2f}, "
            f"bf16 {kid['bf16'].mean():.2f} ± {spread(kid['bf16']):.2f} (mean ± seed-to-seed sd, "
            f"{len(seeds)} seeds); bf16 - fp32 per seed {np.round(diff, 2).tolist()}, mean {diff.mean():+.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--device", default="cuda")
    t.add_argument("--out", required=True)
    t.add_argument("--iteration", type=int, default=600)
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    s = sub.add_parser("score")
    s.add_argument("dir")
    s.add_argument("--n-test", type=int, default=64, help="test images per domain to translate and score")
    args = ap.parse_args()
    {"train": train, "score": score}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
