"""Side-by-side forward+backward timing of the networks: ugatit-rs vs the PyTorch oracle.

Usage: python bench/networks_forward.py [--device cuda] [--img-size 256] [--ch 64] [--reps 20]
Prints one JSON line per (network, mode) with median milliseconds and the ratio ours/oracle.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import ugatit_rs as ug  # noqa: E402
from reference.networks import Discriminator as RefD  # noqa: E402
from reference.networks import ResnetGenerator as RefG  # noqa: E402


def timed(fn, device, reps):
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--img-size", type=int, default=256)
    ap.add_argument("--ch", type=int, default=64)
    ap.add_argument("--n-res", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--light", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.img_size, args.img_size, device=device) * 2 - 1
    cases = [
        (
            "generator",
            RefG(3, 3, args.ch, args.n_res, args.img_size, args.light),
            lambda: ug.Generator(args.ch, args.n_res, args.img_size, args.light, device=device),
        ),
        ("global_D", RefD(3, args.ch, 7), lambda: ug.Discriminator(args.ch, 7, device=device)),
        ("local_D", RefD(3, args.ch, 5), lambda: ug.Discriminator(args.ch, 5, device=device)),
    ]
    for name, ref, make_ours in cases:
        ref = ref.to(device)
        ours = make_ours()
        ours.load_state_dict(ref.state_dict())
        for mode in ("forward_no_grad", "forward_backward"):

            def run(model):
                if mode == "forward_no_grad":
                    with torch.no_grad():
                        model(x)
                else:
                    out, cam, hm = model(x)
                    (out.mean() + cam.mean() + hm.mean()).backward()

            t_ref = timed(lambda: run(ref), device, args.reps)
            t_ours = timed(lambda: run(ours), device, args.reps)
            print(
                json.dumps(
                    {
                        "net": name,
                        "mode": mode,
                        "device": str(device),
                        "img": args.img_size,
                        "ch": args.ch,
                        "light": args.light,
                        "batch": args.batch,
                        "oracle_ms": round(t_ref, 3),
                        "ours_ms": round(t_ours, 3),
                        "ratio": round(t_ours / t_ref, 3),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
