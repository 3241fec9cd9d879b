"""Inference speed of the exports on the CPU: ONNX Runtime vs the Rust generator (ugatit-rs's own
eval forward), side by side in one run, and the in-browser page (onnxruntime-web, WebAssembly,
one thread) in headless Chromium.

    python bench/export_inference.py [--size 256] [--ch 64] [--n-res 4] [--batch 1 4] [--browser]

Weights are random (speed does not depend on them). Threads: both CPU runtimes use all cores
(torch's intra-op pool and ONNX Runtime's default); the browser runs one WASM thread, since a
page served by a plain static server is not cross-origin isolated.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import torch
import ugatit_rs as ug
from ugatit_rs import export


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, ORT's first-run planning)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_rows(g, batches, repeats, fp16: bool):
    import onnxruntime as ort

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {"onnxruntime fp32": export.onnx(g, os.path.join(tmp, "g.onnx"))}
        if fp16:
            sessions["onnxruntime fp16"] = export.onnx(g, os.path.join(tmp, "g16.onnx"), fp16=True)
        sessions = {k: ort.InferenceSession(v, providers=["CPUExecutionProvider"]) for k, v in sessions.items()}
        size = g.config["img_size"]
        for batch in batches:
            x = torch.rand(batch, 3, size, size) * 2 - 1
            with torch.no_grad():
                ours = timed(lambda: g(x), repeats)
            rows.append((batch, "ugatit-rs (Rust, libtorch)", ours, 1.0))
            for name, session in sessions.items():
                t = timed(lambda: session.run(None, {"image": x.numpy()}), repeats)
                rows.append((batch, name, t, t / ours))
    return rows


def browser_ms(g, repeats: int) -> float:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from browser import browser_page, static_server

    size = g.config["img_size"]
    with tempfile.TemporaryDirectory() as site:
        export.web(g, site)
        with static_server(site) as url, browser_page(url) as page:
            page.goto(url + "/")
            page.wait_for_function("document.body.dataset.state === 'ready'")
            script = f"""async () => {{
                const c = document.createElement('canvas'); c.width = c.height = {size};
                c.getContext('2d').fillRect(0, 0, {size // 2}, {size});
                const times = [];
                for (let i = 0; i < {repeats + 1}; i++) {{ await window.ugatit.translate(c); times.push(window.ugatit.lastMs); }}
                return times.slice(1);
            }}"""
            return statistics.median(page.evaluate(script))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ch", type=int, default=64)
    parser.add_argument("--n-res", type=int, default=4)
    parser.add_argument("--full", action="store_true", help="full-mode generator (default: light)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fp16", action="store_true", help="also time the fp16 ONNX export")
    parser.add_argument("--browser", action="store_true", help="also time the web page in headless Chromium")
    args = parser.parse_args()

    torch.manual_seed(0)
    g = ug.Generator(ngf=args.ch, n_blocks=args.n_res, img_size=args.size, light=not args.full).eval()
    mode = "full" if args.full else "light"
    print(
        f"### cpu · {mode} · img {args.size} · ch {args.ch} · n_res {args.n_res} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads)\n"
    )
    print("| batch | runtime | s / batch | img/s | time vs ugatit-rs |")
    print("|---|---|---|---|---|")
    for batch, name, t, ratio in cpu_rows(g, args.batch, args.repeats, args.fp16):
        print(f"| {batch} | {name} | {t:.3f} | {batch / t:.2f} | {ratio:.2f}× |")
    if args.browser:
        ms = browser_ms(g, args.repeats)
        print(
            f"\nIn the browser (onnxruntime-web WASM, 1 thread, headless Chromium): {ms:.0f} ms per {args.size} px image"
        )


if __name__ == "__main__":
    main()
