"""CycleGAN, the paper's first baseline, in the same framework (docs/cyclegan.md).

The networks, losses, update order, image pool, optimizer and schedule are those of
junyanz/pytorch-CycleGAN-and-pix2pix (``--model cycle_gan``, its defaults), computed in Rust;
the state-dict names are theirs, so ``state_dict()`` loads into their ``ResnetGenerator`` /
``NLayerDiscriminator`` and back.

>>> cfg = ug.TrainConfig(model="cyclegan", dataset="data/horse2zebra", img_size=256)
>>> tr = ug.Trainer(cfg)          # a CycleGANTrainer: same fit(), checkpoints, resume, eval
>>> tr.fit()
"""

from __future__ import annotations

import os
import re

import numpy as np
import torch

from . import _native, viz
from ._files import torch_save
from .convert import load_plain, weight_shape
from .models import DeviceLike, _device_name, _NativeModule
from .trainer import Trainer

__all__ = [
    "ResnetGenerator",
    "PatchDiscriminator",
    "CycleGANTrainer",
    "NETWORK_NAMES",
    "read_their_network",
    "save_their_networks",
    "load_their_networks",
]

NETWORK_NAMES: list[str] = list(_native.CYCLEGAN_NETWORK_NAMES)


class _ImageOnly(_NativeModule):
    """CycleGAN's networks return one tensor, as theirs do."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]


class ResnetGenerator(_ImageOnly):
    """CycleGAN's ResNet generator (``resnet_9blocks`` / ``resnet_6blocks``, instance norm, no dropout).

    Args:
        ngf: channels of the first conv; n_blocks: residual blocks (9 at 256 px, 6 at 128 in
        their recipes); input_nc, output_nc: image channels; device: where it lives.

    Calling it on a float32 ``(B, input_nc, H, W)`` batch in [-1, 1] (H, W multiples of 4)
    returns the translation ``(B, output_nc, H, W)``. Weights start as theirs: N(0, 0.02), zero biases.
    """

    def __init__(
        self, ngf: int = 64, n_blocks: int = 9, input_nc: int = 3, output_nc: int = 3, device: DeviceLike = "cpu"
    ):
        super().__init__()
        self._adopt(
            _native.CycleGenerator(
                ngf=ngf, n_blocks=n_blocks, input_nc=input_nc, output_nc=output_nc, device=_device_name(device)
            )
        )


class PatchDiscriminator(_ImageOnly):
    """CycleGAN's PatchGAN (``NLayerDiscriminator``; ``n_layers=3`` is the 70x70 one): one
    real/fake logit per overlapping patch, ``(B, 1, h, w)``."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, input_nc: int = 3, device: DeviceLike = "cpu"):
        super().__init__()
        self._adopt(
            _native.PatchDiscriminator(ndf=ndf, n_layers=n_layers, input_nc=input_nc, device=_device_name(device))
        )

    def min_input_size(self) -> int:
        """The smallest square image this discriminator accepts."""
        return self._native.min_input_size()


class CycleGANTrainer(Trainer):
    """Trains CycleGAN as their ``CycleGANModel.optimize_parameters()`` does; everything else
    (``fit``, checkpoints, resume, Ctrl-C, logs, in-training KID, ``test``) is the
    :class:`~ugatit_rs.Trainer`'s. ``gen_a2b`` is their ``netG_A``, ``gen_b2a`` ``netG_B``,
    ``dis_a`` ``netD_A`` (judges domain B) and ``dis_b`` ``netD_B``.

    ``step`` returns ``d_loss``, ``g_loss`` and their ``D_A, G_A, cycle_A, idt_A, D_B, G_B,
    cycle_B, idt_B``, and ``lr``.
    """

    def _build(self, config) -> None:
        self._native = _native.CycleGanTrainer(config)
        self.gen_a2b = ResnetGenerator._wrap(self._native.gen_a)
        self.gen_b2a = ResnetGenerator._wrap(self._native.gen_b)
        self.dis_a = PatchDiscriminator._wrap(self._native.dis_a)
        self.dis_b = PatchDiscriminator._wrap(self._native.dis_b)

    def networks(self) -> dict[str, object]:
        """``G_A, G_B, D_A, D_B`` (their names)."""
        return dict(zip(NETWORK_NAMES, (self.gen_a2b, self.gen_b2a, self.dis_a, self.dis_b)))

    @property
    def pool_sizes(self) -> tuple[int, int]:
        """Images held by the pool of generated B images (for ``D_A``) and of generated A ones."""
        return self._native.pool_sizes

    def load_checkpoint(self, path: str) -> int:
        """Restores a checkpoint written by :meth:`save_checkpoint` (networks, optimizers, pools;
        returns its step), or loads the networks of a folder of their ``latest_net_*.pth`` files
        (returns 0; optimizers and pools start afresh, as their ``--continue_train`` does)."""
        self._refuse_during_fit("load_checkpoint()")
        path = os.fspath(path)
        if os.path.isdir(path):
            load_their_networks(self, path)
            return 0
        return self._native.load_checkpoint(path)

    # Their `resize_and_crop`: bicubic to img_size + 30 (286 for 256), random crop, flip.
    _resize = "bicubic"

    def _column(self, forward, backward, x: torch.Tensor) -> np.ndarray:
        """Sample grids and test outputs show, per source image, real / translation / cycle."""
        return cycle_column(forward, backward, x)

    def __repr__(self) -> str:
        return f"CycleGANTrainer(step={self.step_count}, device='{self.device}', config={self.config!r})"


@torch.no_grad()
def cycle_column(forward, backward, x: torch.Tensor) -> np.ndarray:
    """One image ``x`` (1, 3, S, S) of the source domain as a column: real, translation, cycle."""
    modes = forward.training, backward.training
    forward.eval(), backward.eval()
    try:
        fake = forward(x)
        rec = backward(fake)
    finally:
        forward.train(modes[0]), backward.train(modes[1])
    return np.concatenate([viz.to_image(t) for t in (x, fake, rec)], axis=0)


# -- their files: <epoch>_net_G_A.pth, ... -------------------------------------------------------------
def is_network_state_dict(obj) -> bool:
    """A state dict of one of their networks (``model.<i>.weight`` keys, tensors only)."""
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and k.startswith("model.") for k in obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def read_their_network(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """One network from their ``<epoch>_net_<name>.pth`` (read with ``weights_only=True``)."""
    sd = load_plain(path)
    if not is_network_state_dict(sd):
        found = sorted(sd)[:5] if isinstance(sd, dict) else type(sd).__name__
        raise _native.StateDictError(f"{os.fspath(path)}: not a CycleGAN network state dict (found {found})")
    return {k: v.contiguous() for k, v in sd.items()}


def generator_config_from_state_dict(sd, source: str = "state dict") -> dict:
    """``ngf``, ``n_blocks``, ``input_nc``, ``output_nc`` of a CycleGAN ResNet generator state
    dict (``source`` names it in errors)."""
    if "model.1.weight" not in sd:
        raise _native.StateDictError(f"{source}: not a CycleGAN ResNet generator state dict: missing model.1.weight")
    layers = [(int(m[1]), m[2]) for m in (re.fullmatch(r"model\.(\d+)\.(.*)", k) for k in sd) if m]
    last = max(i for i, rest in layers if rest == "weight")
    ngf, input_nc = weight_shape(sd, "model.1.weight", 4, source)[:2]
    return {
        "ngf": ngf,
        "n_blocks": sum(1 for _, rest in layers if rest == "conv_block.1.weight"),
        "input_nc": input_nc,
        "output_nc": weight_shape(sd, f"model.{last}.weight", 4, source)[0],
    }


def save_their_networks(trainer: CycleGANTrainer, folder: str | os.PathLike, epoch: str = "latest") -> list[str]:
    """Writes ``<folder>/<epoch>_net_G_A.pth`` ... ``_D_B.pth`` as their ``save_networks`` does
    (CPU state dicts), loadable by their code with ``load_networks``."""
    os.makedirs(folder, exist_ok=True)
    written = []
    for name, net in trainer.networks().items():
        path = os.path.join(os.fspath(folder), f"{epoch}_net_{name}.pth")
        torch_save({k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, path)
        written.append(path)
    return written


def load_their_networks(trainer: CycleGANTrainer, folder: str | os.PathLike, epoch: str = "latest") -> list[str]:
    """Loads their ``<epoch>_net_<name>.pth`` files into ``trainer`` (all four, or only the
    generators when the discriminators' files are absent, as their test-time save has), each
    checked completely before it is copied."""
    found = {n: os.path.join(os.fspath(folder), f"{epoch}_net_{n}.pth") for n in NETWORK_NAMES}
    present = {n: p for n, p in found.items() if os.path.isfile(p)}
    if not {"G_A", "G_B"} <= set(present):
        raise FileNotFoundError(f"{folder}: no {epoch}_net_G_A.pth and {epoch}_net_G_B.pth")
    state = {n: read_their_network(p) for n, p in present.items()}
    nets = trainer.networks()
    for name, sd in state.items():  # all checks first: a mismatch anywhere changes nothing
        missing = set(nets[name].state_dict()) ^ set(sd)
        if missing:
            raise _native.StateDictError(
                f"{present[name]}: keys differ from this trainer's {name}: {sorted(missing)[:5]}"
            )
        for key, value in sd.items():
            if value.shape != nets[name].state_dict()[key].shape:
                raise _native.StateDictError(f"{present[name]}: {key} has shape {tuple(value.shape)}")
    for name, sd in state.items():
        nets[name].load_state_dict(sd)
    return list(present.values())
