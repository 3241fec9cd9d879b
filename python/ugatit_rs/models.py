"""PyTorch-module-like wrappers around the native U-GAT-IT networks.

The native objects own the tensors; these classes add the familiar ``torch.nn.Module`` surface:
``__call__``, ``parameters()``, ``state_dict()``, ``train()``/``eval()``, ``to(device)``.
Every tensor handed out is the live one (same storage, same autograd leaf), so
``torch.optim.Adam(g.parameters())`` trains the Rust network in place.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator, Mapping, Tuple, Union

import torch
from torch.nn.modules.module import _IncompatibleKeys

from . import _native

DeviceLike = Union[str, torch.device, int]


def _device_name(device: DeviceLike) -> str:
    """Normalises anything ``torch.device`` accepts ('cuda', 'cuda:1', torch.device, 0)."""
    try:
        return str(torch.device(device))
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: {exc}") from None


class _NativeModule:
    """Shared module surface; subclasses set ``self._native``."""

    _native: object

    @classmethod
    def _wrap(cls, native):
        """Wraps a native network owned elsewhere (e.g. by a Trainer), sharing its tensors."""
        obj = cls.__new__(cls)
        obj._native = native
        return obj

    # -- calling -------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.forward(x)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(out, cam_logit, heatmap)``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}")
        if x.device != self.device:
            raise ValueError(
                f"{type(self).__name__} input is on {x.device} but the network is on {self.device}; "
                "move one of them with .to(...)"
            )
        return self._native.forward(x)

    # -- tensors -------------------------------------------------------------------------------
    def named_parameters(self) -> Iterator[Tuple[str, torch.Tensor]]:
        """Learned parameters by official name (live tensors, ``requires_grad=True``)."""
        for name, tensor, is_param in self._native.named_tensors():
            if is_param:
                yield name, tensor

    def parameters(self) -> Iterator[torch.Tensor]:
        for _, tensor in self.named_parameters():
            yield tensor

    def named_buffers(self) -> Iterator[Tuple[str, torch.Tensor]]:
        """Non-learned state (the spectral-norm ``weight_u`` / ``weight_v`` vectors)."""
        for name, tensor, is_param in self._native.named_tensors():
            if not is_param:
                yield name, tensor

    def buffers(self) -> Iterator[torch.Tensor]:
        for _, tensor in self.named_buffers():
            yield tensor

    def state_dict(self, keep_vars: bool = False) -> "OrderedDict[str, torch.Tensor]":
        """Every tensor under its official ``UGATIT-pytorch`` name, in the official order.

        Like PyTorch, values are detached views sharing storage with the live tensors
        (``keep_vars=True`` returns the live tensors themselves).
        """
        return OrderedDict(
            (name, tensor if keep_vars else tensor.detach())
            for name, tensor, _ in self._native.named_tensors()
        )

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True) -> _IncompatibleKeys:
        """Copies an official (or our own) state dict into the live tensors.

        Everything is checked before anything is copied: mis-shaped or non-float tensors, and with
        ``strict=True`` missing or unexpected keys, raise :class:`ugatit_rs.StateDictError`
        listing every offending key, and leave the network unchanged.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict expects a mapping of name -> tensor, got {type(state_dict).__name__}")
        missing, unexpected = self._native.load_tensors(dict(state_dict), bool(strict))
        return _IncompatibleKeys(missing, unexpected)

    def num_parameters(self) -> int:
        """Number of learned scalars."""
        return self._native.num_parameters()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_()
                p.grad.zero_()

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    # -- modes and devices ---------------------------------------------------------------------
    @property
    def training(self) -> bool:
        return self._native.training

    def train(self, mode: bool = True):
        self._native.set_training(bool(mode))
        return self

    def eval(self):
        return self.train(False)

    @property
    def device(self) -> torch.device:
        return torch.device(self._native.device)

    def to(self, device: DeviceLike):
        """Moves every tensor (and its gradient) in place; handles you hold follow."""
        self._native.to_device(_device_name(device))
        return self

    def cuda(self, device: int = 0):
        return self.to(f"cuda:{device}")

    def cpu(self):
        return self.to("cpu")

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
    ):
        self._native = _native.Generator(
            ngf=ngf,
            n_blocks=n_blocks,
            img_size=img_size,
            light=light,
            input_nc=input_nc,
            output_nc=output_nc,
            device=_device_name(device),
        )



class Discriminator(_NativeModule):
    """The U-GAT-IT discriminator (official ``Discriminator``), spectral-normalised, with CAM.

    Args:
        ndf: channels of the first conv.
        n_layers: 7 for the global discriminator (needs images >= 96 px), 5 for the local one.
        input_nc: image channels.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.

    In training mode (the default) every call runs one spectral-norm power iteration, updating
    the ``weight_u`` / ``weight_v`` buffers in place, exactly like PyTorch's
    ``nn.utils.spectral_norm``; in eval mode they are used as stored.
    """

    def __init__(self, ndf: int = 64, n_layers: int = 7, input_nc: int = 3, device: DeviceLike = "cpu"):
        self._native = _native.Discriminator(
            ndf=ndf, n_layers=n_layers, input_nc=input_nc, device=_device_name(device)
        )

    def min_input_size(self) -> int:
        """The smallest square image this discriminator accepts."""
        return self._native.min_input_size()
