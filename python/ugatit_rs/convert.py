"""Official UGATIT-pytorch checkpoints ⇄ ugatit-rs checkpoints.

The official ``*_params_<step>.pt`` is ``torch.save({'genA2B': state_dict, 'genB2A': ...,
'disGA': ..., 'disGB': ..., 'disLA': ..., 'disLB': ...})``. It is read with
``torch.load(weights_only=True)``, which refuses any pickle that would build arbitrary objects
(so a malicious file cannot run code), after the zip archive's own CRC-32s are checked (torch's
reader skips them, so a corrupted copy would otherwise load as wrong weights). Ours is one
safetensors file with the same tensors under ``<network>.<official key>``.

Command line: ``ugatit-rs convert IN OUT`` (direction chosen by the extensions).
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections import OrderedDict

import torch

from . import _native
from ._files import torch_save

NETWORK_NAMES = tuple(_native.NETWORK_NAMES)


def _unreadable(path: str, exc: Exception) -> ValueError:
    return ValueError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})")


def check_archive(path: str) -> None:
    """Checks every member of a ``torch.save`` (or TorchScript) zip archive against its CRC-32,
    which torch's own readers skip (a legacy pickle has none to check)."""
    problem = _native.zip_problem(path)
    if problem is None or problem[0] == "not an archive":
        return
    kind, message = problem
    raise ValueError(
        f"{path}: {message}" if kind == "corrupted" else f"{path}: not a readable PyTorch checkpoint ({message})"
    )


def load_plain(path: str | os.PathLike, shapes_only: bool = False):
    """``torch.load(weights_only=True)`` on the CPU: tensors and containers only, never code.

    ``shapes_only=True`` maps a zip-format file instead of reading it (a full model's 2.7 GB
    ``.pt`` in milliseconds), for callers that look only at keys and shapes: the tensors' data
    is the file's, and reading it after the file was cut short would fault."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    check_archive(path)
    try:
        mmap = shapes_only and zipfile.is_zipfile(path)  # the legacy (pre-1.6) format cannot be mapped
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path}: refused to load: the file is not a plain tensor checkpoint "
            f"(weights_only=True rejected it: {str(exc).splitlines()[0]})"
        ) from None
    except Exception as exc:
        raise _unreadable(path, exc) from None


def read_official(path: str | os.PathLike, shapes_only: bool = False) -> dict[str, torch.Tensor]:
    """Flattens an official ``.pt`` into ``{"genA2B.DownBlock.1.weight": tensor, ...}``
    (``shapes_only``: see :func:`load_plain`)."""
    path = os.fspath(path)
    nested = load_plain(path, shapes_only)
    if not isinstance(nested, dict) or not all(n in nested for n in NETWORK_NAMES):
        found = sorted(nested) if isinstance(nested, dict) else type(nested).__name__
        raise ValueError(f"{path}: expected a dict with {', '.join(NETWORK_NAMES)}, found {found}")
    return {f"{net}.{key}": value for net in NETWORK_NAMES for key, value in _network_of(nested, net, path).items()}


def split_networks(flat: dict[str, torch.Tensor]) -> dict[str, OrderedDict]:
    """``{"genA2B.X": t, ...}`` -> ``{"genA2B": {"X": t}, ...}`` (every network, possibly empty)."""
    nested: dict[str, OrderedDict] = {n: OrderedDict() for n in NETWORK_NAMES}
    for name, tensor in flat.items():
        net, _, key = name.partition(".")
        if net in nested:
            nested[net][key] = tensor
    return nested


def is_official(path: str | os.PathLike) -> bool:
    """True for an official ``.pt`` (a torch zip archive or legacy pickle), whatever its extension."""
    return _native.is_torch_save(os.fspath(path))


def read_network(path: str | os.PathLike, network: str, shapes_only: bool = False) -> OrderedDict:
    """One network's state dict from our checkpoint (reading only its tensors) or a ``.pt``
    (``shapes_only``: see :func:`load_plain`): an official one, one holding only some of its
    networks (``{"genA2B": ...}``, as people share generators for inference), or, for a
    generator, a bare generator state dict (``torch.save(generator.state_dict())``), which then
    stands for either direction."""
    path = os.fspath(path)
    if is_official(path):  # also refuses, naming it, a missing file or one that is no regular file
        sd = _network_of(load_plain(path, shapes_only), network, path)
    else:
        sd = read_ours_network(path, network)
    if not sd:
        raise _native.StateDictError(f"{path}: checkpoint has no tensors for {network}")
    return sd


def _network_of(loaded, network: str, path: str) -> OrderedDict:
    """``network``'s tensors in what ``torch.load`` returned, or a ValueError saying what is there."""
    if not isinstance(loaded, dict):
        raise ValueError(
            f"{path}: expected a dict with {network} (or a generator state dict), found {type(loaded).__name__}"
        )
    if network in loaded:
        sd, where = loaded[network], f"{path}: {network}"
    elif network.startswith("gen") and loaded and not any(str(k).split(".")[0] in NETWORK_NAMES for k in loaded):
        sd, where = loaded, path  # a bare generator state dict
    else:
        raise ValueError(f"{path}: expected a dict with {network} (or a generator state dict), found {sorted(loaded)}")
    if not isinstance(sd, dict):
        raise ValueError(f"{where} is not a state dict (found {type(sd).__name__})")
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{where}.{key} is not a tensor")
    return OrderedDict((key, value.contiguous()) for key, value in sd.items())


def weight_shape(sd, key: str, ndim: int, source: str) -> tuple[int, ...]:
    """The shape of ``sd[key]``, which must be an ``ndim``-D tensor with no empty dimension (a
    state dict's architecture is read from such shapes)."""
    value = sd.get(key)
    if not isinstance(value, torch.Tensor) or value.dim() != ndim or 0 in value.shape:
        found = f"has shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else f"is a {type(value).__name__}"
        raise _native.StateDictError(f"{source}: {key} {found}; expected a non-empty {ndim}-D weight")
    return tuple(value.shape)


def _step_from_name(path: str) -> int:
    match = re.search(r"_params_(\d+)\.", os.path.basename(path))
    return int(match.group(1)) if match else 0


def official_to_ours(src: str | os.PathLike, dst: str | os.PathLike, step: int | None = None) -> str:
    """Converts an official ``.pt`` into a networks-only ugatit-rs checkpoint (the optimizers
    restart, as they do in the official resume). The step comes from the file name unless given."""
    flat = read_official(src)
    step = _step_from_name(os.fspath(src)) if step is None else step
    meta = [("format", _native.CHECKPOINT_FORMAT), ("step", str(step)), ("source", os.path.basename(os.fspath(src)))]
    _native.write_checkpoint(os.fspath(dst), list(flat.items()), meta)
    return os.fspath(dst)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a ugatit-rs checkpoint (``step``, ``lr``, ``config`` as JSON, ...)."""
    return dict(_native.read_checkpoint_metadata(os.fspath(path)))


def read_ours_network(path: str | os.PathLike, network: str) -> OrderedDict:
    """The tensors of our checkpoint stored under ``<network>.``, without the prefix (possibly
    none); nothing else of the file is read."""
    prefix = network + "."
    return OrderedDict((n[len(prefix) :], t) for n, t in _native.read_checkpoint(os.fspath(path), prefix))


def read_ours(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """The six state dicts of a ugatit-rs checkpoint: ``{"genA2B": OrderedDict(...), ...}``. The
    optimizer state beside them (twice the weights' size) is not read."""
    nested = {name: read_ours_network(path, name) for name in NETWORK_NAMES}
    missing = [n for n, sd in nested.items() if not sd]
    if missing:
        raise _native.StateDictError(f"{path}: checkpoint has no tensors for {', '.join(missing)}")
    return nested


def ours_to_official(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Writes a ugatit-rs checkpoint in the official ``.pt`` layout, loadable by the official
    ``UGATIT.load`` / ``test()`` (``load_state_dict`` with ``strict=True``)."""
    parent = os.path.dirname(os.path.abspath(os.fspath(dst)))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{parent}: output folder not found")
    torch_save(read_ours(src), dst)
    return os.fspath(dst)


def load_official_into(trainer, path: str | os.PathLike) -> int:
    """Loads an official ``.pt`` straight into a :class:`ugatit_rs.Trainer` (weights only).
    Every network is checked before any is changed. Returns the step from the file name."""
    nested = split_networks(read_official(path))
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
