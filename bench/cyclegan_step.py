"""CycleGAN training step: ugatit-rs vs the reference loop (tests/reference/cyclegan.py, written
from junyanz/pytorch-CycleGAN-and-pix2pix's structure), side by side in one process on the same
batches, alternating step by step so that both see the same machine state.

    python bench/cyclegan_step.py [--device cpu] [--img-size 128] [--ngf 32] [--n-blocks 6] [--steps 10]

Both perform the same update (on the CPU bitwise at ngf 8, to float rounding from ngf 12, where
the output convolution runs transposed: tests/test_cyclegan.py); the median step time of each and
their ratio are printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--img-size", type=int, default=128)
    ap.add_argument("--ngf", type=int, default=32)
    ap.add_argument("--n-blocks", type=int, default=6)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()

    import ugatit_rs as ug
    from reference import cyclegan as R

    dev = args.device
    cfg = ug.TrainConfig(model="cyclegan", img_size=args.img_size, ch=args.ngf, n_res=args.n_blocks, device=dev)
    ours = ug.Trainer(cfg)
    nets = [
        R.ResnetGenerator(ngf=args.ngf, n_blocks=args.n_blocks),
        R.ResnetGenerator(ngf=args.ngf, n_blocks=args.n_blocks),
    ]
    nets += [R.NLayerDiscriminator(ndf=args.ngf), R.NLayerDiscriminator(ndf=args.ngf)]
    for net, name in zip(nets, ("G_A", "G_B", "D_A", "D_B")):
        net.load_state_dict(ours.networks()[name].state_dict())
        net.to(dev)
    pools = tuple(R.ImagePool(50, R.SplitMix(0, 0x9001, k)) for k in (0, 1))
    ref = R.CycleGAN(*nets, lr=cfg.lr, pools=pools)

    def sync():
        if dev.startswith("cuda"):
            torch.cuda.synchronize()

    batches = [
        (torch.rand(args.batch, 3, args.img_size, args.img_size, device=dev) * 2 - 1,
         torch.rand(args.batch, 3, args.img_size, args.img_size, device=dev) * 2 - 1)
        for _ in range(4)
    ]  # fmt: skip
    times = {"ugatit-rs": [], "reference": []}
    for k in range(args.warmup + args.steps):
        a, b = batches[k % len(batches)]
        for name, step in (("ugatit-rs", ours.step), ("reference", ref.step)):
            sync()
            start = time.perf_counter()
            step(a, b)
            sync()
            if k >= args.warmup:
                times[name].append(time.perf_counter() - start)
    ours_t, ref_t = statistics.median(times["ugatit-rs"]), statistics.median(times["reference"])
    where = (
        torch.cuda.get_device_name()
        if dev.startswith("cuda")
        else f"{platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(
        f"### CycleGAN step · {dev} ({where}) · img {args.img_size} · ngf {args.ngf} · {args.n_blocks} blocks · batch {args.batch}\n"
    )
    print("| implementation | median step (s) | ratio |")
    print("|---|---|---|")
    print(f"| reference loop (PyTorch) | {ref_t:.3f} | 1.00× |")
    print(f"| ugatit-rs | {ours_t:.3f} | {ours_t / ref_t:.2f}× |")


if __name__ == "__main__":
    main()
