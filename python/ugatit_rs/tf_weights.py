"""The TensorFlow release's checkpoints (taki0112/UGATIT; the authors' selfie2anime weights)
read without TensorFlow and converted to ugatit-rs checkpoints of the ``variant="tf"`` networks.

>>> from ugatit_rs.tf_weights import convert
>>> convert("UGATIT_selfie2anime_lsgan_4resblock_6dis_1_1_10_10_1000_sn_smoothing", "selfie2anime.safetensors")

The reader (Rust, ``_native.TfCheckpoint``) takes the checkpoint prefix, its ``.index`` or a data
file, or the folder (its ``checkpoint`` file names the newest). Variables map to our names as
docs/tensorflow.md lists; the optimizer's slots (``*/Adam``, ``*/Adam_1``, ``beta*_power``) are
skipped; any other unknown or missing variable is named in the error.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict

from . import _native
from ._checks import working_size

# The release's scopes: generator_B translates A -> B; discriminator_A judges domain A.
SCOPES = {
    "generator_B": "genA2B",
    "generator_A": "genB2A",
    "discriminator_A/global": "disGA",
    "discriminator_B/global": "disGB",
    "discriminator_A/local": "disLA",
    "discriminator_B/local": "disLB",
}
OPTIMIZER_STATE = re.compile(r"(/Adam(_\d+)?$|^beta[12]_power(_\d+)?$|^global_step$)")

# (pattern inside a generator scope, our key, how the value is laid out in TensorFlow)
_GENERATOR = [
    (r"conv/conv2d/(kernel|bias)", "DownBlock.1.{p}", None),
    (r"ins_norm/(gamma|beta)", "DownBlock.2.{n}", None),
    (r"conv_0/conv2d/(kernel|bias)", "DownBlock.5.{p}", None),
    (r"ins_norm_0/(gamma|beta)", "DownBlock.6.{n}", None),
    (r"conv_1/conv2d/(kernel|bias)", "DownBlock.9.{p}", None),
    (r"ins_norm_1/(gamma|beta)", "DownBlock.10.{n}", None),
    (r"resblock_(\d+)/res1/conv_0/conv2d/(kernel|bias)", "DownBlock.{b}.conv_block.1.{p}", None),
    (r"resblock_(\d+)/res1/instance_norm/(gamma|beta)", "DownBlock.{b}.conv_block.2.{n}", None),
    (r"resblock_(\d+)/res2/conv_0/conv2d/(kernel|bias)", "DownBlock.{b}.conv_block.5.{p}", None),
    (r"resblock_(\d+)/res2/instance_norm/(gamma|beta)", "DownBlock.{b}.conv_block.6.{n}", None),
    (r"CAM_logit/dense/(kernel|bias)", "cam_fc.{p}", None),
    (r"CAM_logit/(kernel|bias)", "cam_w.{p}", None),
    (r"conv_1x1/conv2d/(kernel|bias)", "conv1x1.{p}", None),
    (r"MLP/linear_0/dense/(kernel|bias)", "FC.0.{p}", None),
    (r"MLP/linear_1/dense/(kernel|bias)", "FC.2.{p}", None),
    (r"MLP/gamma/dense/(kernel|bias)", "gamma.{p}", None),
    (r"MLP/beta/dense/(kernel|bias)", "beta.{p}", None),
    (r"adaptive_resblock(\d+)/res1/conv_0/conv2d/(kernel|bias)", "UpBlock1_{a}.conv1.{p}", None),
    (r"adaptive_resblock(\d+)/res1/instance_layer_norm/rho", "UpBlock1_{a}.norm1.rho", None),
    (r"adaptive_resblock(\d+)/res2/conv_0/conv2d/(kernel|bias)", "UpBlock1_{a}.conv2.{p}", None),
    (r"adaptive_resblock(\d+)/res2/instance_layer_norm/rho", "UpBlock1_{a}.norm2.rho", None),
    (r"up_conv_0/conv2d/(kernel|bias)", "UpBlock2.2.{p}", None),
    (r"layer_ins_norm_0/(rho|gamma|beta)", "UpBlock2.3.{r}", None),
    (r"up_conv_1/conv2d/(kernel|bias)", "UpBlock2.7.{p}", None),
    (r"layer_ins_norm_1/(rho|gamma|beta)", "UpBlock2.8.{r}", None),
    (r"G_logit/conv2d/(kernel|bias)", "UpBlock2.11.{p}", None),
]
_DISCRIMINATOR = [
    (r"conv_(\d+)/(kernel|bias|u)", "model.{i}.{s}", None),
    (r"conv_last/(kernel|bias|u)", "model.{last}.{s}", None),
    (r"CAM_logit/(kernel|bias|u)", "cam_fc.{s}", None),
    (r"conv_1x1/conv2d/(kernel|bias)", "conv1x1.{p}", None),
    (r"D_logit/(kernel|bias|u)", "conv.{s}", None),
]
_PARAM = {"kernel": "weight", "bias": "bias"}
_NORM = {"gamma": "weight", "beta": "bias"}
_SN = {"kernel": "weight_orig", "bias": "bias", "u": "weight_u"}


def _our_key(scope: str, rest: str, strided: int) -> str | None:
    """Our key for the variable ``rest`` inside ``scope`` (None: not one of the release's)."""
    table = _GENERATOR if scope.startswith("generator") else _DISCRIMINATOR
    for pattern, template, _ in table:
        m = re.fullmatch(pattern, rest)
        if not m:
            continue
        numbers = [int(g) for g in m.groups() if g.isdigit()]
        number = numbers[0] if numbers else None
        leaf = rest.rsplit("/", 1)[-1]
        return template.format(
            p=_PARAM.get(leaf, leaf),
            n=_NORM.get(leaf, leaf),
            r=leaf,
            s=_SN.get(leaf, leaf),
            b=12 + number if number is not None else "",
            a=number + 1 if number is not None else "",
            i=number if number is not None else "",
            last=strided,
        )
    return None


def is_tf_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a TensorFlow checkpoint (its prefix, ``.index``, a data shard or
    its folder), as the reader resolves it."""
    try:
        _native.tf_checkpoint_prefix(os.fspath(path))
    except OSError:
        return False
    return True


def _layout(name: str, shape: list[int]) -> str:
    """How the TensorFlow variable is laid out against ours: conv kernels HWIO (ours OIHW),
    dense kernels (in, out) (ours (out, in)), spectral-norm ``u`` (1, out) (ours (out,))."""
    if len(shape) == 4:
        return "conv"
    if name.endswith("/u"):
        return "u"
    return "dense" if len(shape) == 2 else "same"


def plan(path: str | os.PathLike):
    """``(checkpoint, [(TensorFlow name, our name, layout)], architecture)`` for a release
    checkpoint, from its index alone (no tensor read). Raises ``StateDictError`` naming every
    variable that is unknown, missing or mis-shaped."""
    ckpt = _native.TfCheckpoint(os.fspath(path))
    entries = {name: shape for name, _, shape in ckpt.entries()}
    names = [n for n in entries if not OPTIMIZER_STATE.search(n)]
    strided = {}
    for scope in SCOPES:
        if scope.startswith("discriminator"):
            strided[scope] = sum(1 for n in names if re.fullmatch(re.escape(scope) + r"/conv_\d+/kernel", n))
    steps, shapes, unknown = [], {net: OrderedDict() for net in SCOPES.values()}, []
    for name in names:
        scope = next((s for s in SCOPES if name.startswith(s + "/")), None)
        key = _our_key(scope, name[len(scope) + 1 :], strided.get(scope, 0)) if scope else None
        if key is None:
            unknown.append(name)
            continue
        layout = _layout(name, entries[name])
        steps.append((name, f"{SCOPES[scope]}.{key}", layout))
        shapes[SCOPES[scope]][key] = tuple(ckpt.shape_as(name, layout))
    if unknown:
        raise _native.StateDictError(
            f"{ckpt.prefix}: {len(unknown)} variable(s) are not the release's U-GAT-IT: " + ", ".join(unknown[:20])
        )
    gen = shapes["genA2B"]
    if "DownBlock.1.weight" not in gen or "FC.0.weight" not in gen:
        raise _native.StateDictError(f"{ckpt.prefix}: no generator_B/conv or MLP/linear_0 variables")
    ch = gen["DownBlock.1.weight"][0]
    n_res = sum(1 for k in gen if k.startswith("UpBlock1_") and k.endswith(".conv1.weight"))
    fc_in = gen["FC.0.weight"][1]
    light = fc_in == 4 * ch
    img_size = None if light else 4 * round((fc_in / (4 * ch)) ** 0.5)  # a light model takes any size
    arch = {
        "ch": ch,
        "n_res": n_res,
        "light": light,
        "img_size": img_size,
        "n_dis": strided["discriminator_A/global"] + 1,
    }
    _check_against_networks(ckpt.prefix, shapes, arch)
    return ckpt, steps, arch


def read(path: str | os.PathLike) -> tuple[dict[str, OrderedDict], dict]:
    """The six state dicts of a release checkpoint (our names and layouts, all in memory) and
    the architecture (``ch``, ``n_res``, ``light``, ``img_size``). For large checkpoints prefer
    :func:`convert`, which holds one tensor at a time."""
    ckpt, steps, arch = plan(path)
    state = {net: OrderedDict() for net in SCOPES.values()}
    for tf_name, ours, layout in steps:
        net, _, key = ours.partition(".")
        state[net][key] = ckpt.read(tf_name, layout)
    return state, arch


def _check_against_networks(prefix, shapes, arch) -> None:
    """Every tensor present, with the shape our TF-variant networks expect."""
    from .models import Discriminator, Generator

    nets = {
        "genA2B": Generator(
            ngf=arch["ch"], n_blocks=arch["n_res"], img_size=arch["img_size"] or 256, light=arch["light"], variant="tf"
        ),
        "disGA": Discriminator(ndf=arch["ch"], n_layers=7, variant="tf"),
        "disLA": Discriminator(ndf=arch["ch"], n_layers=5, variant="tf"),
    }
    nets["genB2A"], nets["disGB"], nets["disLB"] = nets["genA2B"], nets["disGA"], nets["disLA"]
    problems = []
    for net, sd in shapes.items():
        expected = nets[net].state_dict()
        problems += [f"{net}.{k} is missing" for k in expected if k not in sd]
        problems += [
            f"{net}.{k} has shape {sd[k]}, expected {tuple(v.shape)}"
            for k, v in expected.items()
            if k in sd and tuple(sd[k]) != tuple(v.shape)
        ]
    if problems:
        raise _native.StateDictError(f"{prefix}: " + "; ".join(problems[:20]))


def convert(path: str | os.PathLike, out: str | os.PathLike, img_size: int | None = None) -> str:
    """Writes the release checkpoint at ``path`` as a networks-only ugatit-rs checkpoint of the
    TF-variant networks (``variant: tf`` and the architecture in its metadata), one tensor in
    memory at a time; ``Translator``, ``ugatit-rs translate``/``eval``/``export`` and
    ``--init_from`` then take it. ``img_size`` is the working size of a light model (a full
    model's is fixed by its weights; default 256 for light)."""
    ckpt, steps, arch = plan(path)
    size = working_size(arch["light"], arch["img_size"], img_size, 256, os.fspath(path))
    config = _native.TrainConfig(
        light=arch["light"], ch=arch["ch"], n_res=arch["n_res"], img_size=size, variant="tf"
    ).to_dict()
    meta = [
        ("format", _native.CHECKPOINT_FORMAT),
        ("step", "0"),
        ("variant", "tf"),
        ("config", json.dumps(config)),
        ("source", os.fspath(ckpt.prefix)),
    ]
    ckpt.convert(steps, os.fspath(out), meta)
    return os.fspath(out)
