"""The ``ugatit-rs`` command line.

Sub-commands (``ugatit-rs <command> --help`` for each):
    train      train on a dataset folder (flags mirror the official main.py)
    test       the official test outputs (translation columns with heatmaps) for testA/testB
    translate  translate files or folders with a checkpoint
    convert    official .pt <-> ugatit-rs .safetensors; the TensorFlow release's checkpoints -> .safetensors
    prepare    build trainA/trainB/testA/testB from raw image folders
    demo       train on built-in photo/cartoon faces; translations, heatmaps, quality numbers
    eval       KID and FID of a checkpoint on testA/testB (the paper's table), or of two folders
    export     a checkpoint's generator as ONNX or TorchScript, or a web page
    serve      a local web app translating uploads

Flags take either spelling: ``--no_progress`` or ``--no-progress``, ``--img_size`` or
``--img-size`` (the official scripts use underscores, most tools hyphens).
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import sys

from . import RunInUseError, TrainConfig, Trainer, _native
from .data import check_dataset, check_run_dir

INTERRUPTED = 130  # the exit status for Ctrl-C (128 + SIGINT), as a shell reports it


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    name = "CycleGAN" if args.model == "cyclegan" else "light U-GAT-IT"
    print(
        f"ugatit-rs demo: {args.iteration} iterations of a {name} ({args.img_size} px, ch {args.ch}) "
        f"on built-in photo/cartoon faces, on {args.device}"
    )
    summary = demo.run(
        args.output,
        iteration=args.iteration,
        img_size=args.img_size,
        ch=args.ch,
        n_res=args.n_res,
        device=args.device,
        seed=args.seed,
        progress=not args.no_progress,
        model=args.model,
    )
    print("\ntranslation quality on the held-out test faces (before -> after training):")
    print(f"  {'direction':<10}{'content IoU':>22}{'style accuracy':>22}{'style score':>22}")
    for direction in ("A2B", "B2A"):
        b, a = summary["quality_before"][direction], summary["quality_after"][direction]
        print(
            f"  {direction:<10}{b['iou']:>10.3f} -> {a['iou']:<7.3f}{b['style_accuracy']:>12.2f} -> {a['style_accuracy']:<7.2f}"
            f"{b['style_score']:>12.2f} -> {a['style_score']:<7.2f}"
        )
    if "kid_x100" in summary["quality_after"]["A2B"]:
        print(f"\n  {'direction':<10}{'KID x100 (lower is better)':>32}")
        for direction in ("A2B", "B2A"):
            b, a = summary["quality_before"][direction], summary["quality_after"][direction]
            print(f"  {direction:<10}{b['kid_x100']:>20.2f} -> {a['kid_x100']:<8.2f}")
    print(f"\n(style score: 0 = photo, 1 = cartoon; A2B should go to 1, B2A to 0)  took {summary['seconds']:.0f}s")
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


def bounded_int(lo: int, hi: int):
    """An argparse type for integers in [lo, hi], so out-of-range values get a usage error
    instead of an overflow deep inside."""

    def parse(value: str) -> int:
        try:
            number = int(value, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if not lo <= number <= hi:
            # An upper bound at an integer type's end is not worth naming to a number below lo.
            wanted = f">= {lo}" if number < lo and hi >= I64_MAX else f"between {lo} and {hi}"
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {number}")
        return number

    parse.__name__ = "int"
    return parse


U64_MAX = 2**64 - 1
I64_MAX = 2**63 - 1
# Bounds of the integer config flags (TrainConfig.validate checks the finer limits).
_INT_FLAG_BOUNDS = {
    "seed": (0, U64_MAX),
    "n_res": (0, 256),
    "num_workers": (0, 64),
    "batch_size": (1, 65_536),
    "keep_checkpoints": (0, 1_000_000),
}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, named as in the official main.py. A flag not given takes
    the default of the chosen ``--model`` (U-GAT-IT's are shown; CycleGAN's differ where
    docs/cyclegan.md says)."""
    defaults = TrainConfig().to_dict()
    helps = {
        "dataset": "dataset folder with trainA/ trainB/ testA/ testB/",
        "light": "light model (pooled features into the gamma/beta MLP)",
        "iteration": "number of training iterations",
        "batch_size": "images per domain per step",
        "print_freq": "sample-grid frequency (steps)",
        "save_freq": "checkpoint frequency (steps)",
        "keep_checkpoints": "keep only the newest N checkpoints (0 = all; keep 2+ so resume has a fallback)",
        "decay_flag": "linear LR decay over the second half",
        "lr": "Adam learning rate (both optimizers)",
        "weight_decay": "L2 weight decay added to the gradients (Adam's coupled form, not AdamW)",
        "adv_weight": "weight of the adversarial losses (image and CAM logits)",
        "cycle_weight": "weight of the cycle-consistency L1 loss",
        "identity_weight": "weight of the identity L1 loss",
        "cam_weight": "weight of the generators' CAM classification loss",
        "resume": "continue from the latest checkpoint",
        "ch": "base channel number",
        "n_res": "residual blocks per generator",
        "img_size": "training image size (square, pixels)",
        "result_dir": "where results/<dataset>/ goes",
        "device": "cpu, cuda or cuda:N",
        "seed": "seed for initialisation and the data streams",
        "num_workers": "image decoding threads per domain",
        "fused_discriminator": "opt-in: one spectral-norm power iteration per D step instead of two (changes the numbers)",
        "eval_freq": "measure KID on held-out test images every N steps, keeping the best checkpoint; 0 = never "
        "(the metrics extra)",
        "eval_images": "test images per domain the in-training KID uses (at most)",
        "model": "ugatit, or cyclegan (the baseline; its defaults: lr 0.0002, weight_decay 0, n_res 9)",
        "pool_size": "cyclegan: history of generated images shown to the discriminators",
        "lambda_identity": "cyclegan: identity loss weight as a fraction of cycle_weight",
        "variant": "U-GAT-IT networks: pytorch, or tf (the TensorFlow release's; docs/tensorflow.md)",
        "init_from": "start from these weights (ours, official .pt, TF checkpoint): fresh optimizers, step 0",
        "precision": "fp32, or bf16: opt-in mixed precision that changes the numbers (docs/benchmarks.md)",
        "channels_last": "opt-in NHWC memory order for the convolutions (GPU tensor cores)",
        "cuda_graph": "opt-in: replay one captured CUDA graph per step after a few eager steps (CUDA)",
    }
    for name, default in defaults.items():
        kind = type(default)
        flag_type = {bool: str2bool, int: bounded_int(*_INT_FLAG_BOUNDS.get(name, (1, I64_MAX)))}.get(kind, kind)
        parser.add_argument(
            f"--{name}",
            type=flag_type,
            default=None,  # not given: the model's own default (TrainConfig(model=...))
            metavar=kind.__name__.upper(),
            help=f"{helps.get(name, name.replace('_', ' '))} (default: {default})",
        )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    given = {k: getattr(args, k) for k in TrainConfig().to_dict() if getattr(args, k, None) is not None}
    if given.get("init_from"):  # the weights fix the model, variant and architecture not given
        from .init_from import architecture_of

        given = {**architecture_of(given["init_from"]), **given}
    return TrainConfig(**given)


def cmd_train(args: argparse.Namespace) -> int:
    from . import distributed

    if not distributed.launched_by_torchrun():
        return _train(args)
    # One process per GPU (or CPU rank) under torchrun: join the group, take this rank's GPU,
    # and leave the group cleanly (all ranks together) however the run ends.
    args.device = distributed.setup(args.device or TrainConfig().device)
    try:
        return _train(args, rank=distributed.rank())
    finally:
        distributed.teardown()


def model_summary(cfg: TrainConfig) -> str:
    """The architecture a config trains, in words: ``U-GAT-IT light (ch 64, n_res 4, 256 px)``."""
    if cfg.model == "cyclegan":
        return f"CycleGAN (ch {cfg.ch}, n_res {cfg.n_res}, {cfg.img_size} px)"
    kind = "U-GAT-IT" + (" TF variant" if cfg.variant == "tf" else "") + (" light" if cfg.light else " full")
    return f"{kind} (ch {cfg.ch}, n_res {cfg.n_res}, {cfg.img_size} px)"


def _train(args: argparse.Namespace, rank: int = 0) -> int:
    cfg = config_from_args(args)
    check_dataset(cfg.dataset)  # before building the networks (seconds for the full model)
    trainer = Trainer(cfg)
    check_run_dir(trainer.run_dir, cfg.dataset)  # fit() checks too; here, before the banner
    if rank == 0:
        # Say what trains: --init_from can choose the model and architecture (a CycleGAN
        # checkpoint trains a CycleGAN), and the flags' defaults depend on it.
        start = f", from the weights of {cfg.init_from}" if cfg.init_from else ""
        print(
            f"training {trainer.dataset_name}: {model_summary(cfg)}{start}; {cfg.iteration} iteration"
            f"{'s' if cfg.iteration != 1 else ''} on "
            f"{trainer.device}; results in {trainer.run_dir}"
        )
    try:
        log = trainer.fit(progress=not args.no_progress and rank == 0)
    except KeyboardInterrupt:
        return INTERRUPTED  # fit() saved and said so
    if rank != 0:
        return 0
    trainer.test(progress=not args.no_progress)
    print(f"done: step {trainer.step_count}; log {log}; checkpoint {trainer.checkpoint_path()}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    trainer = Trainer(cfg)
    path = args.checkpoint or trainer.resume()
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {os.path.join(trainer.run_dir, 'model')}; pass --checkpoint")
    if args.checkpoint:
        trainer.load_checkpoint(path)  # ours, an official .pt, or (CycleGAN) a folder of their .pth files
    written = trainer.test(progress=not args.no_progress)
    skipped = len(written["A2B"].skipped) + len(written["B2A"].skipped)
    print(
        f"wrote {len(written['A2B'])} A2B and {len(written['B2A'])} B2A columns to {os.path.join(trainer.run_dir, 'test')}"
        + (f" ({skipped} unreadable image(s) skipped)" if skipped else "")
    )
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from .translate import Translator

    translator = Translator.from_checkpoint(
        args.checkpoint, direction=args.direction, device=args.device, batch_size=args.batch_size
    )
    written = translator.translate_inputs(
        args.inputs, args.output, progress=not args.no_progress, with_heatmap=args.heatmap
    )
    skipped = f" ({len(written.skipped)} unreadable image(s) skipped)" if written.skipped else ""
    print(f"translated {len(written)} image(s) into {args.output}{skipped}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import official_to_ours, ours_to_official
    from .tf_weights import convert, is_tf_checkpoint

    src, dst = args.src.lower(), args.dst.lower()
    if os.path.isdir(args.dst):
        raise IsADirectoryError(f"{args.dst}: is a folder; name the file to write in it (a .safetensors or .pt)")
    # Which conversion comes first: --overwrite cannot help a pair of names that has none.
    if is_tf_checkpoint(args.src) and dst.endswith(".safetensors"):
        run = functools.partial(convert, args.src, args.dst, img_size=args.img_size)
    elif src.endswith((".pt", ".pth")) and dst.endswith(".safetensors"):
        run = functools.partial(official_to_ours, args.src, args.dst)
    elif src.endswith(".safetensors") and dst.endswith((".pt", ".pth")):
        run = functools.partial(ours_to_official, args.src, args.dst)
    else:
        # A missing source or a folder without a TensorFlow checkpoint is named as such (it read
        # only "convert .pt -> .safetensors, ...", as if the names were the problem).
        if not os.path.exists(args.src):
            raise FileNotFoundError(f"{args.src}: no such file, nor a TensorFlow checkpoint ({args.src}.index)")
        if os.path.isdir(args.src):
            _native.tf_checkpoint_prefix(args.src)  # raises, saying what the folder lacks
        raise ValueError(
            "convert official .pt -> .safetensors, .safetensors -> official .pt, or a TensorFlow checkpoint "
            f"(PREFIX, PREFIX.index or its folder) -> .safetensors (got {args.src!r} -> {args.dst!r})"
        )
    if os.path.lexists(args.dst) and not args.overwrite:
        # A conversion holds the networks only: it would silently drop a training checkpoint's
        # optimizer state, or a typo could replace the source's sibling.
        raise FileExistsError(f"{args.dst}: already exists; pass --overwrite to replace it")
    run()
    print(f"wrote {args.dst}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data import prepare

    summary = prepare(
        args.domain_a,
        args.output,
        args.domain_b,
        size=args.size,
        fit=args.fit,
        test_fraction=args.test_fraction,
        seed=args.seed,
        min_size=args.min_size,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    counts = ", ".join(f"{k}: {v}" for k, v in summary.items() if k not in ("skipped", "duplicates"))
    print(
        f"wrote {args.output}: {counts}; {len(summary['duplicates'])} duplicate(s), {len(summary['skipped'])} skipped"
    )
    for path, reason in summary["skipped"][:20]:
        print(f"  skipped {path}: {reason}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from . import evaluation

    # Checked first: the numbers take minutes, and `--output CKPT` must not replace a checkpoint.
    if not args.output.endswith(".json") or os.path.isdir(args.output):
        raise ValueError(f"--output {args.output}: name a .json file for the numbers")
    if args.real or args.fake:
        if not (args.real and args.fake) or args.dataset or args.checkpoint:
            raise ValueError("give either --real DIR --fake DIR, or --dataset DIR --checkpoint CKPT")
        result = evaluation.compare_folders(
            args.real, args.fake, args.protocol, args.inception, args.device, progress=not args.no_progress
        )
    elif args.dataset and args.checkpoint:
        result = evaluation.evaluate_checkpoint(
            args.dataset,
            args.checkpoint,
            args.protocol,
            args.inception,
            args.device,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    else:
        raise ValueError("give --dataset DIR --checkpoint CKPT (translate testA/testB), or --real DIR --fake DIR")
    print(evaluation.format_table(result))
    print(f"wrote {evaluation.write_json(result, args.output)}")
    return 0


# What an export's file name says of its format (-o without --format).
_EXPORT_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".torchscript": "torchscript"}


def _export_format(args: argparse.Namespace) -> str:
    """--format, else the one -o's suffix names, else ONNX; a contradiction is a usage error
    (an ONNX file named .pt would be handed to torch.jit.load)."""
    named = _EXPORT_SUFFIXES.get(os.path.splitext(args.output or "")[1].lower())
    if args.format and named and args.format != named:
        raise ValueError(f"{args.output}: the name says {named} but --format is {args.format}")
    return args.format or named or "onnx"


def cmd_export(args: argparse.Namespace) -> int:
    from . import export
    from .translate import Translator

    # Usage errors before the checkpoint is read (seconds for a full model).
    if args.checkpoint and args.checkpoint_option and args.checkpoint != args.checkpoint_option:
        hint = "" if args.output else f"; to name the file to write, use -o {args.checkpoint}"
        raise ValueError(f"two checkpoints given: {args.checkpoint} and --checkpoint {args.checkpoint_option}{hint}")
    args.checkpoint = args.checkpoint or args.checkpoint_option
    if not args.checkpoint:
        raise ValueError("give the checkpoint to export (ugatit-rs export CKPT, or --checkpoint CKPT)")
    if args.web:
        ignored = [flag for flag, given in (("--format", args.format), ("-o", args.output), ("--uint8", args.uint8),
                                             ("--no_attention", args.no_attention)) if given]  # fmt: skip
        if ignored:
            raise ValueError(f"{', '.join(ignored)} do not apply to --web (the page holds its own ONNX export)")
    fmt = _export_format(args)
    if args.fp16 and fmt != "onnx" and not args.web:
        raise ValueError("--fp16 is for ONNX exports (the TorchScript export computes in float32)")
    stem = os.path.splitext(os.path.basename(args.checkpoint))[0]
    target = args.output or stem + (f"_{args.direction}.onnx" if fmt == "onnx" else f"_{args.direction}.pt")
    if not args.web:
        if os.path.exists(target) and os.path.samefile(target, args.checkpoint):
            raise ValueError(f"{target}: the output would overwrite the checkpoint; choose another -o")
        if target.endswith(".safetensors"):
            raise ValueError(f"{target}: an {fmt} export is not a .safetensors file; name it .onnx or .pt")

    translator = Translator.from_checkpoint(args.checkpoint, direction=args.direction, device="cpu")
    generator = translator.generator
    if args.web:
        folder = export.web(
            generator, args.web, direction=args.direction, fp16=args.fp16, ort_web=args.ort_web,
            img_size=translator.img_size,
        )  # fmt: skip
        print(f"wrote {folder}: serve it with `python -m http.server -d {folder}` and open http://localhost:8000")
        return 0
    options = {"attention": not args.no_attention, "uint8": args.uint8}
    if fmt == "onnx":
        export.onnx(generator, target, fp16=args.fp16, **options)
    else:
        export.torchscript(generator, target, **options)
    print(f"wrote {target}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import build_app

    _check_can_listen(args.host, args.port)  # before loading the model (seconds for a full one)
    app = build_app(args.checkpoint, device=args.device, max_pixels=args.max_pixels)
    app.launch(server_name=args.host, server_port=args.port, share=False, quiet=False)
    return 0


def _check_can_listen(host: str, port: int) -> None:
    """``OSError`` naming the flag to change when the server could not listen on ``host:port``
    (Gradio's own message names a ``launch()`` parameter and an environment variable)."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise OSError(f"--host {host!r} is not an address of this machine: {exc.strerror}") from None
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's socket does
        try:
            probe.bind(address)
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port or --host") from None


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that takes a flag spelled with ``-`` for ``_`` or the other way
    round (``--no-progress`` for ``--no_progress``); sub-command parsers are of this class too."""

    def __init__(self, *args, **kwargs):
        self._flags: set[str] = set()  # before the base class adds --help
        super().__init__(*args, **kwargs)

    def add_argument(self, *names, **kwargs):
        action = super().add_argument(*names, **kwargs)
        self._flags.update(action.option_strings)
        return action

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        end = args.index("--") if "--" in args else len(args)  # after "--" everything is a value
        return super().parse_known_args([self._respelled(a) for a in args[:end]] + args[end:], namespace)

    def _respelled(self, token: str) -> str:
        name, eq, value = token.partition("=")
        if not name.startswith("--") or name in self._flags:
            return token
        for other in (name[:2] + name[2:].replace("-", "_"), name[:2] + name[2:].replace("_", "-")):
            if other in self._flags:
                return other + eq + value
        return token


# What the commands that need one generator read (Translator.from_checkpoint).
_GENERATOR_CHECKPOINT = "a .safetensors (ours) or a .pt: official, its generators alone, or a bare generator state dict"


def build_parser() -> argparse.ArgumentParser:
    import torch

    from . import __version__

    parser = _Parser(
        prog="ugatit-rs",
        description="U-GAT-IT in Rust on libtorch. Flags may be spelled with '_' or '-' (--no_progress, --no-progress).",
    )
    parser.add_argument("--version", action="version", version=f"ugatit-rs {__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train on a dataset folder (flags mirror the official main.py)")
    add_config_flags(train)
    train.add_argument("--no_progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    test = sub.add_parser("test", help="official test outputs for testA/testB with the latest checkpoint")
    add_config_flags(test)
    test.add_argument("--checkpoint", default=None, help="a .safetensors (ours) or official .pt file")
    test.add_argument("--no_progress", action="store_true", help="no progress bar")
    test.set_defaults(func=cmd_test)

    tr = sub.add_parser("translate", help="translate image files or folders with a checkpoint")
    tr.add_argument("inputs", nargs="+", help="image files and/or folders")
    tr.add_argument("--checkpoint", required=True, help=_GENERATOR_CHECKPOINT)
    tr.add_argument("--direction", choices=("A2B", "B2A"), default="A2B")
    tr.add_argument("-o", "--output", default="translated", help="output folder (default: translated)")
    tr.add_argument("--device", default="cpu")
    tr.add_argument("--batch_size", type=bounded_int(1, 4096), default=8)
    tr.add_argument("--heatmap", action="store_true", help="also write <name>_cam.png attention overlays")
    tr.add_argument("--no_progress", action="store_true")
    tr.set_defaults(func=cmd_translate)

    prep = sub.add_parser("prepare", help="build trainA/trainB/testA/testB from raw image folders")
    prep.add_argument("domain_a", help="folder of raw domain-A images (searched recursively)")
    prep.add_argument("domain_b", nargs="?", default=None, help="folder of raw domain-B images")
    prep.add_argument("-o", "--output", required=True, help="dataset folder to create")
    prep.add_argument("--size", type=bounded_int(8, 8192), default=256)
    prep.add_argument("--fit", choices=("crop", "pad"), default="crop")
    prep.add_argument("--test_fraction", type=float, default=0.1)
    prep.add_argument("--seed", type=bounded_int(0, U64_MAX), default=0)
    prep.add_argument(
        "--min_size",
        type=bounded_int(0, 16384),
        default=None,
        help="skip images whose shorter side is smaller (default: size/2)",
    )
    prep.add_argument("--overwrite", action="store_true", help="replace the images of an earlier run in --output")
    prep.add_argument("--no_progress", action="store_true")
    prep.set_defaults(func=cmd_prepare)

    conv = sub.add_parser(
        "convert", help="official .pt <-> ugatit-rs .safetensors; TensorFlow release checkpoint -> .safetensors"
    )
    conv.add_argument("src", help="a .pt, a .safetensors, or a TensorFlow checkpoint (PREFIX, PREFIX.index, folder)")
    conv.add_argument("dst", help="the file to write (an existing one only with --overwrite)")
    conv.add_argument("--overwrite", action="store_true", help="replace dst if it exists")
    conv.add_argument(
        "--img_size", type=bounded_int(8, 8192), default=None, help="working size of a light TF model (default 256)"
    )
    conv.set_defaults(func=cmd_convert)

    ev = sub.add_parser("eval", help="KID and FID of a checkpoint (testA/testB) or between two folders")
    ev.add_argument("--dataset", help="dataset folder with testA/ and testB/")
    ev.add_argument("--checkpoint", help="a .safetensors (ours) or official .pt checkpoint")
    ev.add_argument("--real", help="folder of real images (with --fake)")
    ev.add_argument("--fake", help="folder of generated images (with --real)")
    ev.add_argument("--protocol", choices=("paper", "clean"), default="paper", help="default: paper")
    ev.add_argument("--inception", default=None, help="Inception TorchScript file (default: the metrics extra's)")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--batch_size", type=bounded_int(1, 4096), default=8, help="translation batch size")
    ev.add_argument("-o", "--output", default="eval.json", help="where to write the numbers (default: eval.json)")
    ev.add_argument("--no_progress", action="store_true")
    ev.set_defaults(func=cmd_eval)

    exp = sub.add_parser("export", help="a checkpoint's generator as ONNX or TorchScript (traced from the Rust model)")
    exp.add_argument("checkpoint", nargs="?", help=_GENERATOR_CHECKPOINT)
    # The other commands take --checkpoint; the same spelling here saves a usage error.
    exp.add_argument("--checkpoint", dest="checkpoint_option", metavar="CHECKPOINT", help="the same, as a flag")
    exp.add_argument("--direction", choices=("A2B", "B2A"), default="A2B")
    exp.add_argument(
        "--format",
        choices=("onnx", "torchscript"),
        help="default: what -o's suffix names (.onnx; .pt, .pth), else onnx",
    )
    exp.add_argument("-o", "--output", default=None, help="file to write (default: <checkpoint>_<direction>.onnx/.pt)")
    exp.add_argument("--no_attention", action="store_true", help="export the translation only")
    exp.add_argument(
        "--uint8", action="store_true", help="(N, H, W, 3) uint8 RGB in and out (pre/post-processing inside)"
    )
    exp.add_argument(
        "--fp16", action="store_true", help="float16 weights and compute (ONNX; inputs/outputs keep their type)"
    )
    exp.add_argument("--web", metavar="DIR", help="write a static in-browser translator page into DIR instead")
    exp.add_argument("--ort_web", metavar="DIR", help="onnxruntime-web files for --web (default: cache, else npm)")
    exp.set_defaults(func=cmd_export)

    serve = sub.add_parser("serve", help="a local Gradio app translating uploads (the [app] extra)")
    serve.add_argument("--checkpoint", required=True, help=_GENERATOR_CHECKPOINT)
    serve.add_argument("--port", type=bounded_int(1, 65535), default=7860, help="default: 7860")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--device", default="cpu")
    serve.add_argument("--max_pixels", type=bounded_int(1, 2**40), default=50_000_000, help="largest upload")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="train on built-in photo/cartoon faces and measure the translation")
    demo.add_argument("-o", "--output", default="demo_output", help="output folder (default: demo_output)")
    demo.add_argument(
        "--iteration", type=bounded_int(1, I64_MAX), default=600, help="training iterations (default: 600)"
    )
    demo.add_argument(
        "--img-size",
        type=bounded_int(*_native.DEMO_SIZES),
        default=96,
        help="image size, multiple of 4, >= 96 (default: 96)",
    )
    demo.add_argument("--ch", type=bounded_int(1, 4096), default=16, help="base channels (default: 16)")
    demo.add_argument("--n-res", type=bounded_int(0, 256), default=2, help="residual blocks (default: 2)")
    demo.add_argument(
        "--model", choices=("ugatit", "cyclegan"), default="ugatit", help="what to train (default: ugatit)"
    )
    demo.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    demo.add_argument("--seed", type=bounded_int(0, U64_MAX), default=0)
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, MemoryError, FloatingPointError, ImportError, RunInUseError) as exc:
        print(f"ugatit-rs {args.command}: error: {exc}", file=sys.stderr)
        _print_notes(exc)
        return 2
    except KeyboardInterrupt as exc:
        # Ctrl-C: one line (and what became of the partial output, where the library says), not
        # a traceback; 130 is the status a shell reports for a command SIGINT stopped.
        print(f"\nugatit-rs {args.command}: interrupted", file=sys.stderr)
        _print_notes(exc)
        return INTERRUPTED


def _print_notes(exc: BaseException) -> None:
    """An exception's notes: what to do about it, where the library says."""
    for note in getattr(exc, "__notes__", ()):
        print(f"  {note}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
