"""Side-by-side benchmark: ugatit-rs vs the official-style PyTorch loop (tests/reference), same
machine, same config. Each implementation runs in its own subprocess (so peak memory and global
flags such as cuDNN benchmark mode do not leak between them); the two alternate over --rounds
rounds and each side's fastest round is reported, so a host whose speed drifts slows both alike.

Measures, per implementation:
  - training step time: median over --steps steps after --warmup, synchronised
  - peak memory: CPU max RSS, and on CUDA torch.cuda.max_memory_allocated
  - generator inference throughput (images/s) at batch 1 and --infer-batch, eval + no_grad
and once: the Rust data pipeline's image rate on generated JPEG files vs the rate training
consumes (2 domains x batch / step time).

Usage:
  python bench/train_step.py --device cpu --img-size 96 --ch 16 --n-res 2 --light --markdown docs/benchmarks.md
  python bench/train_step.py --device cuda --img-size 256 --ch 64 --n-res 4 --light
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def _sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_time(fn, device, steps, warmup):
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _batches(args):
    import torch

    s, b = args.img_size, args.batch
    return [
        (torch.rand(b, 3, s, s, device=args.device) * 2 - 1, torch.rand(b, 3, s, s, device=args.device) * 2 - 1)
        for _ in range(4)
    ]


def build_model(impl, args):
    """The ugatit-rs trainer or the official-style loop for the benchmark's config; both have
    `.step(real_a, real_b)`."""
    if impl == "ours":
        import ugatit_rs as ug

        cfg = ug.TrainConfig(
            light=args.light,
            img_size=args.img_size,
            ch=args.ch,
            n_res=args.n_res,
            batch_size=args.batch,
            iteration=1_000_000,
            device=args.device,
            **json.loads(args.opt_ins),
        )
        return ug.Trainer(cfg)
    from reference.training import OfficialLoop

    return OfficialLoop(args.light, args.img_size, args.ch, args.n_res, 1_000_000, device=args.device)


def make_step(impl, args, batches):
    """(one training step over the batches in turn, the A2B generator) for `impl`."""
    counter = [0]
    model = build_model(impl, args)
    gen = model.gen_a2b if impl == "ours" else model.genA2B

    def step():
        a, b = batches[counter[0] % 4]
        counter[0] += 1
        model.step(a, b)

    step.model = model
    return step, gen


def run_interleaved(args) -> dict:
    """Both implementations in one process, one step each in turn: on a host whose speed drifts
    (shared CPUs) both see the same conditions, so the step ratio is far steadier."""
    import torch

    torch.manual_seed(0)
    batches = _batches(args)
    steps = {impl: make_step(impl, args, batches)[0] for impl in ("oracle", "ours")}
    times = {impl: [] for impl in steps}
    for i in range(args.warmup + args.steps):
        for impl in ("oracle", "ours") if i % 2 else ("ours", "oracle"):
            t = time.perf_counter()
            steps[impl]()
            _sync(args.device)
            if i >= args.warmup:
                times[impl].append(time.perf_counter() - t)
    return {f"{impl}_step_ms": statistics.median(t) * 1e3 for impl, t in times.items()}


def run_one(args) -> dict:
    """Runs inside the subprocess for one implementation."""
    import torch

    torch.manual_seed(0)
    dev, s = args.device, args.img_size
    step, gen = make_step(args.impl, args, _batches(args))

    for _ in range(args.warmup):
        step()
    if dev.startswith("cuda"):
        # Steady-state peak: after warm-up (cuDNN benchmark mode tries large workspaces once).
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    step_s = _median_time(step, dev, args.steps, 0)
    result = {"impl": args.impl, "step_ms": step_s * 1e3}
    graph_step = getattr(step.model, "_graph_step", None)
    if graph_step is not None:  # TrainConfig(cuda_graph=True): were the timed steps replays?
        result["cuda_graph_replays"] = graph_step.replays
    if dev.startswith("cuda"):
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        # A replayed CUDA graph allocates nothing: its activations live in the graph's pool,
        # which only the reserved figure shows (caching slack included, on both sides).
        result["peak_gpu_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    gen.eval()
    for batch in (1, args.infer_batch):
        x = torch.rand(batch, 3, s, s, device=dev) * 2 - 1

        def infer():
            with torch.no_grad():
                gen(x)

        t = _median_time(infer, dev, max(3, args.steps // 2), 2)
        result[f"infer_b{batch}_img_s"] = batch / t
        if args.amp and dev.startswith("cuda"):
            # fp16: torch.autocast for the official generator; ugatit_rs.compute for ours (autocast
            # cannot keep our normalisation statistics in float32), also with channels-last.
            variants = {"amp": {}}
            if args.impl == "ours":
                variants["amp_cl"] = {"channels_last": True}

            for name, opts in variants.items():

                def infer_amp(opts=opts):
                    if args.impl == "ours":
                        import ugatit_rs as ug

                        with torch.no_grad(), ug.compute("fp16", **opts):
                            gen(x)
                    else:
                        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
                            gen(x)

                t = _median_time(infer_amp, dev, max(3, args.steps // 2), 2)
                result[f"infer_b{batch}_{name}_img_s"] = batch / t
    return result


def data_rate(args) -> float:
    """Images/s of the Rust loader (train transform, --workers threads) on generated JPEGs."""
    import numpy as np
    import ugatit_rs as ug
    from PIL import Image

    folder = tempfile.mkdtemp(prefix="ugatit-bench-")
    rng = np.random.default_rng(0)
    src = int(args.img_size * 1.25)
    for i in range(64):
        Image.fromarray((rng.random((src, src, 3)) * 255).astype(np.uint8)).save(
            os.path.join(folder, f"{i}.jpg"), quality=90
        )
    loader = ug.data.DomainLoader(folder, args.img_size, batch_size=args.batch, num_workers=args.workers)
    loader.next_batch()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < 3.0:
        n += loader.next_batch().shape[0]
    return n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--img-size", type=int, default=96)
    ap.add_argument("--ch", type=int, default=16)
    ap.add_argument("--n-res", type=int, default=2)
    ap.add_argument("--light", action="store_true")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--infer-batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="alternating runs per implementation; the fastest counts")
    ap.add_argument("--amp", action="store_true", help="also time fp16 autocast inference (CUDA)")
    ap.add_argument("--opt-ins", default="{}", help="JSON of extra TrainConfig fields for ugatit-rs")
    ap.add_argument(
        "--interleave",
        action="store_true",
        help="also time both steps alternately in one process (the steadier ratio on a shared host)",
    )
    ap.add_argument("--impl", choices=("ours", "oracle", "both"), help=argparse.SUPPRESS)
    ap.add_argument("--markdown", help="append a results table to this markdown file")
    args = ap.parse_args()

    if args.impl:
        print(json.dumps(run_interleaved(args) if args.impl == "both" else run_one(args)))
        return

    child_args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--markdown":
            skip = True
        elif not a.startswith("--markdown="):
            child_args.append(a)
    # Alternate the two implementations over --rounds rounds and keep each one's fastest round:
    # a machine whose speed drifts (shared hosts) then slows both sides alike.
    runs = {"oracle": [], "ours": []}
    for _ in range(args.rounds):
        for impl in runs:
            cmd = [sys.executable, __file__, "--impl", impl] + child_args
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{impl} run failed:\n{out.stderr[-3000:]}")
            runs[impl].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results = {impl: min(rounds, key=lambda r: r["step_ms"]) for impl, rounds in runs.items()}
    interleaved = None
    if args.interleave:
        cmd = [sys.executable, __file__, "--impl", "both"] + child_args
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"interleaved run failed:\n{out.stderr[-3000:]}")
        interleaved = json.loads(out.stdout.strip().splitlines()[-1])
    rate = data_rate(args)
    ours, ref = results["ours"], results["oracle"]
    consumed = 2 * args.batch / (ours["step_ms"] / 1e3)
    summary = {
        "config": {k: getattr(args, k) for k in ("device", "img_size", "ch", "n_res", "light", "batch", "opt_ins")},
        "oracle": ref,
        "ours": ours,
        "step_ratio": ours["step_ms"] / ref["step_ms"],
        **(
            {
                "interleaved": interleaved,
                "step_ratio_interleaved": interleaved["ours_step_ms"] / interleaved["oracle_step_ms"],
            }
            if interleaved
            else {}
        ),
        "rss_ratio": ours["peak_rss_mib"] / ref["peak_rss_mib"],
        "data_img_s": rate,
        "train_consumes_img_s": consumed,
        "data_headroom": rate / consumed,
    }
    if "peak_gpu_mib" in ours:
        summary["gpu_mem_ratio"] = ours["peak_gpu_mib"] / ref["peak_gpu_mib"]
        summary["gpu_reserved_ratio"] = ours["peak_gpu_reserved_mib"] / ref["peak_gpu_reserved_mib"]
    for k in ours:
        if k.startswith("infer_"):
            # Against the official generator's same mode, or its fp32 for modes it lacks.
            base = ref.get(k, ref.get(k.replace("_amp_cl", "").replace("_amp", "")))
            summary[f"{k}_ratio"] = ours[k] / base
    print(json.dumps(summary, indent=2))
    if args.markdown:
        append_markdown(args, summary)


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in ' {}"') else arg


def append_markdown(args, s):
    import torch

    o, r = s["ours"], s["oracle"]
    dev = (
        torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or platform.machine()
    )
    lines = [
        f"\n### {args.device} · {'light' if args.light else 'full'} · img {args.img_size} · ch {args.ch} · n_res {args.n_res} · batch {args.batch}"
        + (f" · opt-ins {args.opt_ins}" if args.opt_ins != "{}" else ""),
        "",
        f"Machine: {dev}, {os.cpu_count()} CPU threads visible; torch {torch.__version__}. "
        f"Command: `python bench/train_step.py {' '.join(_quote(a) for a in sys.argv[1:])}`",
        "",
        "| measure | official-style loop | ugatit-rs | ratio (ours / official) |",
        "|---|---|---|---|",
        f"| training step, median ms | {r['step_ms']:.1f} | {o['step_ms']:.1f} | **{s['step_ratio']:.2f}×** |",
    ]
    if "interleaved" in s:
        i = s["interleaved"]
        lines.append(
            f"| training step, median ms, alternating in one process | {i['oracle_step_ms']:.1f} | {i['ours_step_ms']:.1f} | **{s['step_ratio_interleaved']:.2f}×** |"
        )
    if "cuda_graph_replays" in o:
        lines.append(f"| ugatit-rs steps that replayed the CUDA graph | | {o['cuda_graph_replays']} | |")
    lines += [
        f"| peak RSS, MiB | {r['peak_rss_mib']:.0f} | {o['peak_rss_mib']:.0f} | {s['rss_ratio']:.2f}× |",
    ]
    if "peak_gpu_mib" in o:
        lines.append(
            f"| peak GPU memory, MiB | {r['peak_gpu_mib']:.0f} | {o['peak_gpu_mib']:.0f} | **{s['gpu_mem_ratio']:.2f}×** |"
        )
        lines.append(
            f"| peak GPU memory reserved, MiB | {r['peak_gpu_reserved_mib']:.0f} | {o['peak_gpu_reserved_mib']:.0f} | {s['gpu_reserved_ratio']:.2f}× |"
        )
    for k in o:
        if k.startswith("infer_"):
            theirs = f"{r[k]:.1f}" if k in r else "(fp32 above)"
            lines.append(
                f"| generator inference {k[6:].replace('_img_s', '').replace('_', ' ')}, img/s | {theirs} | {o[k]:.1f} | {s[k + '_ratio']:.2f}× |"
            )
    lines.append(
        f"| data pipeline ({args.workers} workers), img/s | | {s['data_img_s']:.0f} | {s['data_headroom']:.1f}× what training consumes ({s['train_consumes_img_s']:.1f} img/s) |"
    )
    with open(args.markdown, "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
