"""Official UGATIT-pytorch checkpoints ⇄ ugatit-rs checkpoints.

The official ``*_params_<step>.pt`` is ``torch.save({'genA2B': state_dict, 'genB2A': ...,
'disGA': ..., 'disGB': ..., 'disLA': ..., 'disLB': ...})``. It is read with
``torch.load(weights_only=True)``, which refuses any pickle that would build arbitrary objects
(so a malicious file cannot run code). Ours is one safetensors file with the same tensors under
``<network>.<official key>``.

Command line: ``ugatit-rs convert IN OUT`` (direction chosen by the extensions).
"""

from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict
from typing import Dict, Optional

import torch

from . import _native

NETWORK_NAMES = ("genA2B", "genB2A", "disGA", "disGB", "disLA", "disLB")


def read_official(path: str | os.PathLike) -> Dict[str, torch.Tensor]:
    """Flattens an official ``.pt`` into ``{"genA2B.DownBlock.1.weight": tensor, ...}``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: official checkpoint not found")
    try:
        nested = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: refused to load: the file is not a plain tensor checkpoint "
                         f"(weights_only=True rejected it: {str(exc).splitlines()[0]})") from None
    except Exception as exc:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(nested, dict) or not all(n in nested for n in NETWORK_NAMES):
        found = sorted(nested) if isinstance(nested, dict) else type(nested).__name__
        raise ValueError(f"{path}: expected a dict with {', '.join(NETWORK_NAMES)}, found {found}")
    flat = {}
    for net in NETWORK_NAMES:
        for key, value in nested[net].items():
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{path}: {net}.{key} is not a tensor")
            flat[f"{net}.{key}"] = value.contiguous()
    return flat


def _step_from_name(path: str) -> int:
    match = re.search(r"_params_(\d+)\.", os.path.basename(path))
    return int(match.group(1)) if match else 0


def official_to_ours(src: str | os.PathLike, dst: str | os.PathLike, step: Optional[int] = None) -> str:
    """Converts an official ``.pt`` into a networks-only ugatit-rs checkpoint (the optimizers
    restart, as they do in the official resume). The step comes from the file name unless given."""
    flat = read_official(src)
    step = _step_from_name(os.fspath(src)) if step is None else step
    meta = [("format", "ugatit-rs/1"), ("step", str(step)), ("source", os.path.basename(os.fspath(src)))]
    _native.write_checkpoint(os.fspath(dst), list(flat.items()), meta)
    return os.fspath(dst)


def read_metadata(path: str | os.PathLike) -> Dict[str, str]:
    """The metadata of a ugatit-rs checkpoint (``step``, ``lr``, ``config`` as JSON, ...)."""
    _, meta = _native.read_checkpoint(os.fspath(path))
    return dict(meta)


def read_ours(path: str | os.PathLike) -> Dict[str, Dict[str, torch.Tensor]]:
    """The six state dicts of a ugatit-rs checkpoint: ``{"genA2B": OrderedDict(...), ...}``."""
    tensors, _ = _native.read_checkpoint(os.fspath(path))
    nested: Dict[str, Dict[str, torch.Tensor]] = {n: OrderedDict() for n in NETWORK_NAMES}
    for name, tensor in tensors:
        net, _, key = name.partition(".")
        if net in nested:
            nested[net][key] = tensor
    missing = [n for n, sd in nested.items() if not sd]
    if missing:
        raise ValueError(f"{path}: checkpoint has no tensors for {', '.join(missing)}")
    return nested


def ours_to_official(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Writes a ugatit-rs checkpoint in the official ``.pt`` layout, loadable by the official
    ``UGATIT.load`` / ``test()`` (``load_state_dict`` with ``strict=True``)."""
    torch.save(read_ours(src), os.fspath(dst))
    return os.fspath(dst)


def load_official_into(trainer, path: str | os.PathLike) -> int:
    """Loads an official ``.pt`` straight into a :class:`ugatit_rs.Trainer` (weights only).
    Every network is checked before any is changed. Returns the step from the file name."""
    flat = read_official(path)
    nested = {n: {k[len(n) + 1:]: v for k, v in flat.items() if k.startswith(n + ".")} for n in NETWORK_NAMES}
    networks = trainer.networks()
    # Dry run first: a strict load into nothing would not catch shape errors, so compare here.
    for net, sd in nested.items():
        ours = networks[net].state_dict()
        problems = sorted(set(ours) ^ set(sd)) + [k for k in sd if k in ours and sd[k].shape != ours[k].shape]
        if problems:
            raise ValueError(f"{path}: {net} does not match this trainer's architecture: {problems[:8]}")
    for net, sd in nested.items():
        networks[net].load_state_dict(sd)
    return _step_from_name(os.fspath(path))
