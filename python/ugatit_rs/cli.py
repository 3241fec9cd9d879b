"""The ``ugatit-rs`` command line.

Sub-commands (``ugatit-rs <command> --help`` for each):
    train      train on a dataset folder (flags mirror the official main.py)
    test       the official test outputs (translation columns with heatmaps) for testA/testB
    translate  translate files or folders with a checkpoint
    convert    official .pt <-> ugatit-rs .safetensors
    demo       translate a synthetic face with a freshly initialised generator (PNG outputs)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from . import Generator, TrainConfig, Trainer


def synthetic_face(size: int, seed: int = 0) -> np.ndarray:
    """A shaded face-like picture (HWC uint8): a skin-coloured ellipse with eyes and a mouth on a
    textured background. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    background = 0.35 + 0.15 * np.sin(8 * xx + 3 * yy)[..., None] * np.array([0.6, 0.8, 1.0])
    img = np.broadcast_to(background, (size, size, 3)).copy()
    img += rng.normal(0, 0.03, img.shape)
    cx, cy, rx, ry = 0.5, 0.52, 0.28, 0.36
    face = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    shade = 0.75 + 0.25 * (1 - ((xx - cx + 0.1) ** 2 + (yy - cy + 0.1) ** 2) * 4)
    img[face] = (np.array([0.95, 0.76, 0.62]) * shade[face, None]).clip(0, 1)
    for ex in (0.4, 0.6):
        eye = ((xx - ex) / 0.05) ** 2 + ((yy - 0.45) / 0.03) ** 2 <= 1
        img[eye] = [0.1, 0.1, 0.15]
    mouth = (((xx - 0.5) / 0.1) ** 2 + ((yy - 0.68) / 0.025) ** 2 <= 1) & face
    img[mouth] = [0.7, 0.2, 0.25]
    return (img.clip(0, 1) * 255).astype(np.uint8)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> (1, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(img).permute(2, 0, 1).float().div(127.5).sub(1).unsqueeze(0)


def to_image(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> HWC uint8."""
    return ((x[0].detach().cpu().permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).round().byte().numpy()


def jet_overlay(heatmap: torch.Tensor, size: int) -> np.ndarray:
    """Min-max normalised heatmap, resized bilinearly, in a jet colormap (HWC uint8, RGB)."""
    h = heatmap[0, 0].detach().cpu()
    h = (h - h.min()) / (h.max() - h.min()).clamp_min(1e-12)
    h = torch.nn.functional.interpolate(h[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    v = h.numpy()
    rgb = np.stack([np.clip(1.5 - np.abs(4 * v - k), 0, 1) for k in (3, 2, 1)], axis=-1)
    return (rgb * 255).astype(np.uint8)


def cmd_demo(args: argparse.Namespace) -> int:
    from PIL import Image

    os.makedirs(args.output, exist_ok=True)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    g = Generator(ngf=args.ch, n_blocks=args.n_res, img_size=args.img_size, light=True, device=args.device)
    g.eval()
    face = synthetic_face(args.img_size, args.seed)
    with torch.no_grad():
        out, cam_logit, heatmap = g(to_tensor(face).to(g.device))
    elapsed = time.perf_counter() - start
    files = {
        "input": os.path.join(args.output, "input.png"),
        "translation": os.path.join(args.output, "translation.png"),
        "heatmap": os.path.join(args.output, "heatmap.png"),
    }
    Image.fromarray(face).save(files["input"])
    Image.fromarray(to_image(out)).save(files["translation"])
    Image.fromarray(jet_overlay(heatmap, args.img_size)).save(files["heatmap"])
    summary = {
        "generator": repr(g),
        "cam_logit": cam_logit[0].tolist(),
        "output_range": [out.min().item(), out.max().item()],
        "seconds": round(elapsed, 3),
        "files": files,
    }
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"{g}\ntranslated a {args.img_size}x{args.img_size} image in {elapsed:.2f}s (untrained generator)")
    print(f"wrote {', '.join(files.values())}")
    print(f"output folder: {os.path.abspath(args.output)}")
    return 0


def str2bool(value: str) -> bool:
    """A strict version of the official str2bool (which took any substring of 'true' as True)."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "y", "t"):
        return True
    if lowered in ("false", "0", "no", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, named as in the official main.py, defaults from TrainConfig."""
    defaults = TrainConfig().to_dict()
    helps = {
        "dataset": "dataset folder with trainA/ trainB/ testA/ testB/",
        "light": "light model (pooled features into the gamma/beta MLP)",
        "iteration": "number of training iterations", "batch_size": "images per domain per step",
        "print_freq": "sample-grid frequency (steps)", "save_freq": "checkpoint frequency (steps)",
        "decay_flag": "linear LR decay over the second half", "resume": "continue from the latest checkpoint",
        "ch": "base channel number", "n_res": "residual blocks", "img_size": "image size",
        "result_dir": "where results/<dataset>/ goes", "device": "cpu, cuda or cuda:N",
        "seed": "seed for initialisation and the data streams", "num_workers": "image decoding threads per domain",
    }
    for name, default in defaults.items():
        kind = type(default)
        flag_type = str2bool if kind is bool else kind
        parser.add_argument(f"--{name}", type=flag_type, default=default, metavar=kind.__name__.upper(),
                            help=f"{helps.get(name, name.replace('_', ' '))} (default: {default})")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{k: getattr(args, k) for k in TrainConfig().to_dict()})


def cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    trainer = Trainer(cfg)
    print(f"training {trainer.dataset_name}: {cfg.iteration} iterations on {trainer.device}; results in {trainer.run_dir}")
    try:
        log = trainer.fit(progress=not args.no_progress)
    except KeyboardInterrupt:
        return 130
    trainer.test()
    print(f"done: step {trainer.step_count}; log {log}; checkpoint {trainer.checkpoint_path()}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    trainer = Trainer(cfg)
    path = args.checkpoint or trainer.resume()
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {os.path.join(trainer.run_dir, 'model')}; pass --checkpoint")
    if args.checkpoint:
        if path.endswith(".pt"):
            from .convert import load_official_into

            load_official_into(trainer, path)
        else:
            trainer.load_checkpoint(path)
    written = trainer.test()
    print(f"wrote {len(written['A2B'])} A2B and {len(written['B2A'])} B2A columns to {os.path.join(trainer.run_dir, 'test')}")
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from .translate import Translator

    translator = Translator.from_checkpoint(args.checkpoint, direction=args.direction, device=args.device,
                                            batch_size=args.batch_size)
    written = []
    for src in args.inputs:
        if os.path.isdir(src):
            written += translator.translate_folder(src, os.path.join(args.output, os.path.basename(os.path.normpath(src))),
                                                   progress=not args.no_progress, with_heatmap=args.heatmap)
        elif os.path.isfile(src):
            written += translator.translate_files([src], args.output, progress=False, with_heatmap=args.heatmap)
        else:
            raise FileNotFoundError(f"{src}: no such file or folder")
    print(f"translated {len(written)} image(s) into {args.output}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import official_to_ours, ours_to_official

    if args.src.endswith(".pt") and args.dst.endswith(".safetensors"):
        official_to_ours(args.src, args.dst)
    elif args.src.endswith(".safetensors") and args.dst.endswith(".pt"):
        ours_to_official(args.src, args.dst)
    else:
        raise ValueError("convert official .pt -> .safetensors or .safetensors -> official .pt "
                         f"(got {args.src!r} -> {args.dst!r})")
    print(f"wrote {args.dst}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ugatit-rs", description="U-GAT-IT in Rust on libtorch")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train on a dataset folder (flags mirror the official main.py)")
    add_config_flags(train)
    train.add_argument("--no_progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    test = sub.add_parser("test", help="official test outputs for testA/testB with the latest checkpoint")
    add_config_flags(test)
    test.add_argument("--checkpoint", default=None, help="a .safetensors (ours) or official .pt file")
    test.set_defaults(func=cmd_test)

    tr = sub.add_parser("translate", help="translate image files or folders with a checkpoint")
    tr.add_argument("inputs", nargs="+", help="image files and/or folders")
    tr.add_argument("--checkpoint", required=True, help="a .safetensors (ours) or official .pt file")
    tr.add_argument("--direction", choices=("A2B", "B2A"), default="A2B")
    tr.add_argument("--output", default="translated", help="output folder (default: translated)")
    tr.add_argument("--device", default="cpu")
    tr.add_argument("--batch_size", type=int, default=8)
    tr.add_argument("--heatmap", action="store_true", help="also write <name>_cam.png attention overlays")
    tr.add_argument("--no_progress", action="store_true")
    tr.set_defaults(func=cmd_translate)

    conv = sub.add_parser("convert", help="official .pt <-> ugatit-rs .safetensors")
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.set_defaults(func=cmd_convert)

    demo = sub.add_parser("demo", help="translate a synthetic face with a fresh generator; write PNGs")
    demo.add_argument("--output", default="demo_output", help="output folder (default: demo_output)")
    demo.add_argument("--img-size", type=int, default=128, help="image size, multiple of 4 (default: 128)")
    demo.add_argument("--ch", type=int, default=32, help="base channels ngf (default: 32)")
    demo.add_argument("--n-res", type=int, default=4, help="residual blocks (default: 4)")
    demo.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"ugatit-rs {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
