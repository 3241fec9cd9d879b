"""``ugatit_rs.Generator`` and ``ugatit_rs.Discriminator``: real ``torch.nn.Module``s whose
parameters and buffers are the very tensors the Rust network computes with.

The Rust network owns its tensors; each is registered here under its official name, nested like
the official module tree (``DownBlock.1.weight`` lives in ``self.DownBlock[1]``-like containers),
so ``state_dict()`` has the official keys and order. A learned tensor is registered as an
``nn.Parameter`` by re-classing its own Python object (same object, same ``TensorImpl``): the
gradients of a forward run in Rust land in ``p.grad``, and ``torch.optim``, hooks, a parent
module's ``parameters()``/``to()``/``train()`` and ``DistributedDataParallel`` all see them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys

from . import _native

DeviceLike = str | torch.device | int


def _device_name(device: DeviceLike | None) -> str:
    """Normalises anything ``torch.device`` accepts ('cuda', 'cuda:1', torch.device, 0); None is
    torch's default device (``torch.set_default_device``), as for ``torch.nn`` layers."""
    if device is None:
        device = torch.get_default_device()
    try:
        return str(torch.device(device))
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: {exc}") from None


class _LiveRegistry(dict):
    """A module's ``_parameters`` / ``_buffers`` dict that keeps its live tensors. PyTorch's own
    utilities write these dicts directly, below ``__setattr__``: ``torch.func.functional_call``
    swaps entries, ``nn.utils.weight_norm`` and ``prune`` delete them. Refusing here leaves the
    network whole instead of half-rewritten."""

    def __init__(self, entries: dict, network: str, prefix: str):
        super().__init__(entries)
        self._live = dict(entries)
        self._where = f"{network}.{prefix}"

    def __setitem__(self, name: str, value: object) -> None:
        live = self._live.get(name)
        if live is not None and value is not live and name in self:
            raise NotImplementedError(
                f"{self._where}{name} is a live tensor of the Rust network and cannot be swapped for another: "
                "torch.func.functional_call, torch.export and other reparametrizations replace a module's "
                "tensors, which the Rust forward cannot see; copy values into the network instead "
                "(load_state_dict, or copy_ under torch.no_grad()), and export with ugatit_rs.export"
            )
        super().__setitem__(name, value)

    def __delitem__(self, name: str) -> None:
        if name in self._live:
            raise AttributeError(
                f"cannot remove {self._where}{name}: it is a live tensor of the Rust network "
                "(weight_norm, spectral_norm, pruning and other parametrizations need to replace it, "
                "which a ugatit_rs network cannot do)"
            )
        super().__delitem__(name)

    def pop(self, name: str, *default):
        if name in self._live:
            self.__delitem__(name)
        return super().pop(name, *default)

    def popitem(self):
        raise AttributeError(f"cannot remove tensors from {self._where.rstrip('.')}: they are the Rust network's")

    def clear(self) -> None:
        self.popitem()

    def __reduce__(self):  # copies and pickles of a part hold plain dicts
        return (dict, (dict(self),))


_NOT_SHAREABLE = (
    "a ugatit_rs network cannot share its tensors with other processes: each process that receives "
    "it builds its own copy. Train in one process with ugatit_rs.Trainer (several GPUs: torchrun, see "
    "docs/distributed.md), or send the state dict and load it where it is needed"
)


def _probe(fn, device: torch.device):
    """What ``Module._apply``'s ``fn`` makes of a float32 scalar on ``device``: how a network
    learns what ``to()``/``cuda()``/``share_memory()`` asks of its tensors without touching them."""
    probe = fn(torch.zeros((), dtype=torch.float32, device=device))
    # share_memory() from a containing module: a CPU scalar it leaves shared says so (every CUDA
    # tensor counts as shared, so a probe that `.cuda()` moved would read the same). On a CUDA
    # network the probe cannot tell, as share_memory_() leaves a CUDA tensor as it is: ask a CPU
    # scalar too, or Sequential(cuda_net).share_memory() passes and shares nothing.
    asked = probe if device.type == "cpu" else fn(torch.zeros((), dtype=torch.float32))
    if isinstance(asked, torch.Tensor) and asked.device.type == "cpu" and asked.is_shared():
        raise NotImplementedError(_NOT_SHAREABLE)
    return probe


class _LiveTree(nn.Module):
    """Refuses to replace or delete what the Rust network computes with: the registered tensors
    and containers. ``module.weight = nn.Parameter(...)`` would otherwise change ``state_dict()``
    and what an optimizer sees while the forward kept using the old tensor."""

    def _refuse_if_live(self, name: str, value: object, action: str) -> None:
        live = self.__dict__.get("_parameters", {}).get(name)
        if live is None:
            live = self.__dict__.get("_buffers", {}).get(name)
        part = self.__dict__.get("_modules", {}).get(name)
        if live is None and isinstance(part, _Container) and value is not part:
            raise AttributeError(
                f"cannot {action} {name!r}: it is part of a ugatit_rs network's parameter tree, which the "
                "Rust network computes with"
            )
        if live is not None and value is not live:
            raise AttributeError(
                f"cannot {action} {name!r}: it is a live tensor of the Rust network, which would keep "
                f"computing with the old one; write into it instead (`with torch.no_grad(): "
                f"module.{name}.copy_(value)`) or use load_state_dict"
            )

    def share_memory(self):
        """Refused: another process never computes with these tensors. Pickling (how
        ``torch.multiprocessing`` hands a module to a spawned process) gives it an independent
        network built from the state dict, so Hogwild-style updates would silently not be shared;
        before, this returned without doing anything."""
        raise NotImplementedError(_NOT_SHAREABLE)

    def _refuse_if_sealed(self, name: str, what: str) -> None:
        registered = (self.__dict__.get(key, {}) for key in ("_parameters", "_buffers", "_modules"))
        if self.__dict__.get("_sealed") and not any(name in names for names in registered):
            raise AttributeError(
                f"cannot add {what} {name!r}: a ugatit_rs network holds exactly the official tensors, so that "
                "its state_dict() loads back; keep extra parameters and modules in a module of your own "
                "that contains this one"
            )

    def __setattr__(self, name: str, value: object) -> None:
        self._refuse_if_live(name, value, "replace")
        # nn.Module stores a module without add_module; a parameter goes through register_parameter.
        if isinstance(value, nn.Module):
            self._refuse_if_sealed(name, "the module")
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        self._refuse_if_live(name, None, "delete")
        super().__delattr__(name)

    def register_parameter(self, name: str, param: nn.Parameter | None) -> None:
        self._refuse_if_sealed(name, "the parameter")
        super().register_parameter(name, param)

    def register_buffer(self, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
        self._refuse_if_sealed(name, "the buffer")
        super().register_buffer(name, tensor, persistent)

    def add_module(self, name: str, module: nn.Module | None) -> None:
        self._refuse_if_sealed(name, "the module")
        super().add_module(name, module)

    register_module = add_module


class _Container(_LiveTree):
    """One level of the official module tree (``DownBlock``, ``DownBlock.1``, ...), holding the
    live tensors registered under it. Only the network as a whole can be called; numbered levels
    index like the official ``nn.Sequential`` (``g.DownBlock[1].weight``)."""

    def forward(self, *args, **kwargs):
        raise RuntimeError("this is a part of a ugatit_rs network's parameter tree; call the network itself")

    def _apply(self, fn, recurse: bool = True):
        """A part's tensors move and convert only with the whole network (``network.to(...)``)."""
        own = next(self.parameters(), None)
        device = own.device if own is not None else torch.device("cpu")
        changed = True  # unless the probe says otherwise; e.g. .cuda() without CUDA raises
        try:
            probe = _probe(fn, device)
            changed = isinstance(probe, torch.Tensor) and (probe.dtype, probe.device) != (torch.float32, device)
        except NotImplementedError:  # a RuntimeError, but no device problem
            raise
        except (RuntimeError, AssertionError):
            pass
        if changed:
            raise ValueError(
                "a part of a ugatit_rs network cannot be moved or converted on its own; move the whole "
                "network with network.to(device) (it computes in float32)"
            )
        return self

    def _warn_hook(self) -> None:
        warnings.warn(
            "a hook on a part of a ugatit_rs network never fires: the network's forward runs in Rust as "
            "a whole, so its parts are never called; hook the network itself, or a tensor (register_hook)",
            UserWarning,
            stacklevel=3,
        )

    def register_forward_hook(self, *args, **kwargs):
        self._warn_hook()
        return super().register_forward_hook(*args, **kwargs)

    def register_forward_pre_hook(self, *args, **kwargs):
        self._warn_hook()
        return super().register_forward_pre_hook(*args, **kwargs)

    def register_full_backward_hook(self, *args, **kwargs):
        self._warn_hook()
        return super().register_full_backward_hook(*args, **kwargs)

    def register_full_backward_pre_hook(self, *args, **kwargs):
        self._warn_hook()
        return super().register_full_backward_pre_hook(*args, **kwargs)

    def __getitem__(self, index: int) -> nn.Module:
        if isinstance(index, int) and not isinstance(index, bool):
            numbered = [int(name) for name in self._modules if name.isdigit()]
            position = index + max(numbered, default=-1) + 1 if index < 0 else index
            child = self._modules.get(str(position))
            if child is not None:
                return child
        raise IndexError(f"no part {index!r} here; its parts are {list(self._modules)}")


def _check_state_dict(network: str, state_dict: Mapping) -> dict:
    """Refuses, before anything is copied, what the native loader cannot take."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"load_state_dict expects a mapping of name -> tensor, got {type(state_dict).__name__}")
    problems = []
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state dict entry {key!r} is not a torch.Tensor (got {type(value).__name__})")
        if value.layout != torch.strided:
            problems.append(f"{key}: {value.layout} tensors are not supported; pass a dense tensor")
        elif value.device.type not in ("cpu", "cuda"):
            problems.append(f"{key}: tensor on the {value.device.type} device holds no data")
    if problems:
        raise _native.StateDictError(f"error(s) in loading state_dict for {network}:\n  " + "\n  ".join(problems))
    return dict(state_dict)


def _rebuild(cls: type, config: dict, state: dict, training: bool, frozen: list[str]) -> _NativeModule:
    """Unpickles a network (``copy.deepcopy``, ``torch.save(module)``): built from its
    constructor arguments on the device its tensors are on, then loaded."""
    device = next(iter(state.values())).device if state else "cpu"
    module = cls(**config, device=device)
    module.load_state_dict(state)
    module.train(training)
    for name, parameter in module.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    return module


class _NativeModule(_LiveTree):
    """The module surface both networks share; subclasses build ``self._native``."""

    _native: _native.Network

    @classmethod
    def _wrap(cls, native: _native.Network):
        """Wraps a native network owned elsewhere (a Trainer), sharing its tensors."""
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module._adopt(native)
        return module

    def _adopt(self, native: _native.Network) -> None:
        self._native = native
        live, owners = [], {"": self}
        for name, tensor, is_param in native.named_tensors():
            *path, leaf = name.split(".")
            owner: nn.Module = self
            for depth, part in enumerate(path):
                child = owner._modules.get(part)
                if child is None:
                    child = _Container()
                    owner.add_module(part, child)
                    owners[".".join(path[: depth + 1]) + "."] = child
                owner = child
            if is_param:
                # Re-class the Rust tensor's own Python object: nn.Parameter(t) would make a new
                # TensorImpl, and gradients of the Rust forward would not reach it.
                tensor.__class__ = nn.Parameter
                owner.register_parameter(leaf, tensor)
            else:
                owner.register_buffer(leaf, tensor)
            live.append((owner.__dict__, "_parameters" if is_param else "_buffers", leaf, tensor, name))
        for prefix, owner in owners.items():
            for key in ("_parameters", "_buffers"):
                registry = _LiveRegistry(owner.__dict__[key], type(self).__name__, prefix)
                object.__setattr__(owner, key, registry)
            owner._sealed = True
        # Where each live tensor is registered, to see a swap that bypassed even _LiveRegistry.
        self._live = tuple(live)

    def _check_registered(self) -> None:
        """Reparametrizations swap tensors in the module's dicts directly (``_LiveRegistry`` refuses
        the usual ways); the Rust forward cannot see them and would silently use its own."""
        for attributes, key, leaf, tensor, name in self._live:
            if attributes[key].get(leaf) is not tensor:
                raise NotImplementedError(
                    f"{type(self).__name__}.{name} is not the tensor the Rust network computes with: "
                    "torch.func.functional_call and other reparametrizations swap a module's tensors, "
                    "which the Rust forward cannot see; copy values into the network instead "
                    "(load_state_dict, or copy_ under torch.no_grad())"
                )

    # -- calling -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(out, cam_logit, heatmap)``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}")
        if x.layout != torch.strided:
            raise ValueError(f"{type(self).__name__} expects a dense tensor, got a {x.layout} one")
        if x.device != self.device:
            raise ValueError(
                f"{type(self).__name__} input is on {x.device} but the network is on {self.device}; "
                "move one of them with .to(...)"
            )
        self._check_registered()
        return self._native.forward(x)

    # -- state -----------------------------------------------------------------------------------
    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True, assign: bool = False):
        """Copies an official (or our own) state dict into the live tensors, all or nothing.

        Everything is checked before anything is copied: mis-shaped, non-float, sparse or meta
        tensors, and with ``strict=True`` missing or unexpected keys, raise
        :class:`ugatit_rs.StateDictError` listing every offending key, and leave the network
        unchanged. ``assign=True`` is not supported (the Rust network keeps its own tensors).
        """
        if assign:
            raise ValueError("assign=True is not supported: values are copied into the network's own tensors")
        tensors = _check_state_dict(type(self).__name__, state_dict)
        missing, unexpected = self._native.load_tensors(tensors, bool(strict))
        return _IncompatibleKeys(missing, unexpected)

    def num_parameters(self) -> int:
        """Number of learned scalars."""
        return self._native.num_parameters()

    # -- modes and devices ---------------------------------------------------------------------
    @property
    def training(self) -> bool:
        native = self.__dict__.get("_native")
        return True if native is None else native.training

    @training.setter
    def training(self, mode: bool) -> None:
        native = self.__dict__.get("_native")
        if native is not None:  # nn.Module.__init__ sets it before the network exists
            native.set_training(bool(mode))

    @property
    def device(self) -> torch.device:
        return torch.device(self._native.device)

    def _apply(self, fn, recurse: bool = True):
        """``to()``, ``cuda()``, ``cpu()`` (also from a parent module) move the Rust network in place,
        so every handle follows; other dtypes than float32 are refused."""
        try:
            probe = _probe(fn, self.device)
        except NotImplementedError:  # a RuntimeError, but no device problem
            raise
        except (RuntimeError, AssertionError) as exc:  # no CUDA, no such device index
            raise ValueError(f"cannot move {type(self).__name__} from {self.device}: {exc}") from None
        if not isinstance(probe, torch.Tensor):
            return self
        if probe.dtype != torch.float32:
            raise TypeError(f"{type(self).__name__} computes in float32 only; cannot convert it to {probe.dtype}")
        if probe.device != self.device:
            self._native.to_device(str(probe.device))
        return self

    def to(self, *args, **kwargs):
        """Moves every tensor (and its gradient) in place; handles you hold follow."""
        if len(args) == 1 and not kwargs:
            if args[0] is None:
                raise ValueError(f"{type(self).__name__}.to(None): name a device ('cpu', 'cuda', 'cuda:N')")
            if isinstance(args[0], (str, int)):
                args = (_device_name(args[0]),)
        return super().to(*args, **kwargs)

    def __reduce__(self):
        """Pickling, ``copy.deepcopy`` and ``torch.save(module)`` give an independent network: the
        constructor arguments, the state dict (parameters and buffers), the train/eval mode and
        which parameters are frozen. Hooks and gradients are not carried."""
        state = {name: tensor.detach() for name, tensor in self.state_dict().items()}
        frozen = [name for name, parameter in self.named_parameters() if not parameter.requires_grad]
        return (_rebuild, (type(self), self.config, state, self.training, frozen))

    def __prepare_scriptable__(self):
        """torch.jit.script calls this first: TorchScript compiles Python source, and this
        network's forward is Rust (torch's own message would be about a type annotation)."""
        name = type(self).__name__
        ways = "torch.jit.trace" + (", or ugatit_rs.export.torchscript(generator, path)" if "Generator" in name else "")
        raise TypeError(
            f"torch.jit.script cannot compile a ugatit_rs {name}: its forward is Rust, not Python; trace it instead ({ways})"
        )

    @property
    def config(self) -> dict:
        """The constructor arguments (without the device)."""
        return dict(self._native.config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return (
            f"{type(self).__name__}({args}, device='{self.device}', "
            f"training={self.training}, parameters={self.num_parameters():,})"
        )


class Generator(_NativeModule):
    """The U-GAT-IT generator (official ``ResnetGenerator``).

    Args:
        ngf: channels of the first conv (``--ch``); the bottleneck has ``4 * ngf``.
        n_blocks: residual blocks in the encoder and AdaILN blocks in the decoder (``--n_res``).
        img_size: image size; must be a multiple of 4. The full model (``light=False``) only takes
            this size, since its γ/β MLP sees the whole flattened feature map.
        light: pool the attention features before the γ/β MLP (the paper's "light" variant).
        input_nc, output_nc: image channels.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
        variant: ``"pytorch"`` (znxlwm/UGATIT-pytorch, the default) or ``"tf"``: the TensorFlow
            release's network, which the authors' selfie2anime weights belong to (biases, affine
            encoder norms, its CAM and MLP, smoothed rho; needs ``n_blocks=4``; docs/tensorflow.md).
        init_weights: draw the initial weights as PyTorch does (the default). ``False`` starts
            every parameter at zero, for weights loaded next: it skips the draws (1.7 s for a full
            256 px generator) and leaves torch's random generator where it was.

    Calling it on a float32 ``(B, input_nc, H, W)`` batch in [-1, 1] returns
    ``(out, cam_logit, heatmap)``: the translated images ``(B, output_nc, H, W)``, the CAM logits
    ``(B, 2)`` and the attention heatmap ``(B, 1, H/4, W/4)``.
    """

    def __init__(
        self,
        ngf: int = 64,
        n_blocks: int = 4,
        img_size: int = 256,
        light: bool = False,
        input_nc: int = 3,
        output_nc: int = 3,
        device: DeviceLike = "cpu",
        variant: str = "pytorch",
        init_weights: bool = True,
    ):
        super().__init__()
        self._adopt(
            _native.Generator(
                ngf=ngf,
                n_blocks=n_blocks,
                img_size=img_size,
                light=light,
                input_nc=input_nc,
                output_nc=output_nc,
                device=_device_name(device),
                variant=variant,
                init_weights=init_weights,
            )
        )


class Discriminator(_NativeModule):
    """The U-GAT-IT discriminator (official ``Discriminator``), spectral-normalised, with CAM.

    Args:
        ndf: channels of the first conv.
        n_layers: 7 for the global discriminator (needs images >= 96 px), 5 for the local one.
        input_nc: image channels.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
        variant: ``"pytorch"`` (the default) or ``"tf"``, the TensorFlow release's branch
            (``n_layers`` 7/5 = its global/local with ``--n_dis 6``; docs/tensorflow.md).

    In training mode (the default) every call runs one spectral-norm power iteration, updating
    the ``weight_u`` / ``weight_v`` buffers in place, exactly like PyTorch's
    ``nn.utils.spectral_norm``; in eval mode they are used as stored. (The TF variant iterates
    on every call, as TensorFlow does, and stores the result in training mode only.)
    """

    def __init__(
        self, ndf: int = 64, n_layers: int = 7, input_nc: int = 3, device: DeviceLike = "cpu", variant: str = "pytorch"
    ):
        super().__init__()
        self._adopt(
            _native.Discriminator(
                ndf=ndf, n_layers=n_layers, input_nc=input_nc, device=_device_name(device), variant=variant
            )
        )

    def min_input_size(self) -> int:
        """The smallest square image this discriminator accepts."""
        return self._native.min_input_size()


def has_attention(generator) -> bool:
    """U-GAT-IT generators return CAM logits and a heatmap; CycleGAN's only the translation."""
    return isinstance(generator, Generator)


def translate_batch(generator: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(translation, heatmap)`` of any generator: a U-GAT-IT one returns its attention heatmap,
    CycleGAN's (``ugatit_rs.cyclegan.ResnetGenerator``) has none (``None``)."""
    result = generator(x)
    return (result[0], result[2]) if isinstance(result, tuple) else (result, None)
