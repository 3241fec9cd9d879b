"""Starting a run from existing weights (``TrainConfig(init_from=...)``, ``ugatit-rs train
--init_from``): the networks of a checkpoint, with fresh optimizers at step 0, on the variant and
architecture the weights belong to.

Accepted: a ugatit-rs checkpoint (U-GAT-IT of either variant, or CycleGAN), an official
UGATIT-pytorch ``.pt``, a TensorFlow release checkpoint (its prefix, ``.index`` or folder), or a
folder of CycleGAN's ``*_net_G_A.pth`` files.
"""

from __future__ import annotations

import json
import os

from . import _native
from .tf_weights import is_tf_checkpoint as _is_tf


def architecture_of(path: str | os.PathLike) -> dict:
    """The TrainConfig fields the weights at ``path`` fix: ``model``, ``variant``, ``light``,
    ``ch``, ``n_res`` and (full U-GAT-IT) ``img_size``."""
    from .convert import is_official, read_metadata, read_network

    path = os.fspath(path)
    if os.path.isdir(path) and not _is_tf(path):
        from .cyclegan import generator_config_from_state_dict, read_their_network

        generator = os.path.join(path, "latest_net_G_A.pth")
        cfg = generator_config_from_state_dict(read_their_network(generator), generator)
        return {"model": "cyclegan", "ch": cfg["ngf"], "n_res": cfg["n_blocks"]}
    if _is_tf(path):
        from .tf_weights import read

        _, arch = read(path)
        out = {"model": "ugatit", "variant": "tf", "light": arch["light"], "ch": arch["ch"], "n_res": arch["n_res"]}
        return out if arch["light"] else {**out, "img_size": arch["img_size"]}
    if not is_official(path):
        meta = read_metadata(path)
        config = json.loads(meta.get("config") or "{}")
        if config.get("model") == "cyclegan":
            return {"model": "cyclegan", "ch": config["ch"], "n_res": config["n_res"]}
        variant = meta.get("variant") or config.get("variant", "pytorch")
    else:
        variant = "pytorch"
    from .translate import generator_config_from_state_dict

    generator = read_network(path, "genA2B", shapes_only=True)
    cfg = generator_config_from_state_dict(generator, f"{path}: genA2B")
    out = {"model": "ugatit", "variant": variant, "light": cfg["light"], "ch": cfg["ngf"], "n_res": cfg["n_blocks"]}
    return out if cfg["light"] else {**out, "img_size": cfg["img_size"]}


def load_into(trainer, path: str | os.PathLike) -> None:
    """Copies the networks at ``path`` into ``trainer`` (all checked first; optimizers and the
    step untouched). The variant and architecture must be the trainer's (``StateDictError``
    names the difference)."""
    path = os.fspath(path)
    wanted = architecture_of(path)
    config = trainer.config
    differs = [f"{k}={v!r} (trainer: {getattr(config, k)!r})" for k, v in wanted.items() if getattr(config, k) != v]
    if differs:
        raise _native.StateDictError(f"{path}: the weights have {', '.join(differs)}")
    if config.model == "cyclegan":
        if os.path.isdir(path):
            from .cyclegan import load_their_networks

            load_their_networks(trainer, path)
            return
        from .convert import read_ours_network

        state = {n: read_ours_network(path, n) for n in trainer.networks()}
    elif _is_tf(path):
        from .tf_weights import read

        state, _ = read(path)
    else:
        from .convert import is_official, read_official, read_ours, split_networks

        state = split_networks(read_official(path)) if is_official(path) else read_ours(path)
    nets = trainer.networks()
    missing = [n for n in nets if not state.get(n)]
    if missing:
        raise _native.StateDictError(f"{path}: no weights for {', '.join(missing)}")
    for name, net in nets.items():  # every network checked before any is changed
        expected = net.state_dict()
        bad = sorted(set(expected) ^ set(state[name])) + [
            k for k in expected if k in state[name] and tuple(state[name][k].shape) != tuple(expected[k].shape)
        ]
        if bad:
            raise _native.StateDictError(f"{path}: {name} does not fit this trainer: {', '.join(bad[:8])}")
    for name, net in nets.items():
        net.load_state_dict(state[name])
