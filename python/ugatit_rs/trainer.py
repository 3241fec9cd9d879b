"""``ugatit_rs.Trainer``: the six U-GAT-IT networks, their two Adam optimizers and the official
training iteration, all in Rust. Python holds the orchestration (``fit``): progress, logging,
samples, checkpoints, Ctrl-C."""

from __future__ import annotations

from typing import Dict

import torch

from . import _native
from ._native import TrainConfig
from .models import Discriminator, Generator


class Trainer:
    """Trains U-GAT-IT as the official ``UGATIT.train()`` does.

    Args:
        config: a :class:`TrainConfig`; validated here (``ValueError`` names a bad field).

    The networks ``gen_a2b, gen_b2a, dis_ga, dis_gb, dis_la, dis_lb`` are live views of the
    trainer's tensors: reading their ``state_dict()`` or calling them shows the current weights.
    """

    def __init__(self, config: TrainConfig):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"Trainer expects a ugatit_rs.TrainConfig, got {type(config).__name__}")
        self._native = _native.Trainer(config)
        self.gen_a2b = Generator._wrap(self._native.gen_a2b)
        self.gen_b2a = Generator._wrap(self._native.gen_b2a)
        self.dis_ga = Discriminator._wrap(self._native.dis_ga)
        self.dis_gb = Discriminator._wrap(self._native.dis_gb)
        self.dis_la = Discriminator._wrap(self._native.dis_la)
        self.dis_lb = Discriminator._wrap(self._native.dis_lb)

    @property
    def config(self) -> TrainConfig:
        return self._native.config

    @property
    def device(self) -> torch.device:
        return torch.device(self._native.device)

    @property
    def step_count(self) -> int:
        """Completed iterations."""
        return self._native.step_count

    @property
    def lr(self) -> float:
        """The learning rate of the last update."""
        return self._native.lr

    def networks(self) -> Dict[str, object]:
        """The six networks under their official checkpoint names."""
        return {
            "genA2B": self.gen_a2b,
            "genB2A": self.gen_b2a,
            "disGA": self.dis_ga,
            "disGB": self.dis_gb,
            "disLA": self.dis_la,
            "disLB": self.dis_lb,
        }

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> Dict[str, float]:
        """One official iteration on a batch of each domain (float32 ``(B, 3, img_size, img_size)``
        in [-1, 1], on the trainer's device): LR decay, D update, G update, rho clipping.

        Returns every loss component (``d_loss``, ``g_loss``, ``D_ad_loss_GA``, ...,
        ``G_cam_loss_B``) and ``lr`` as floats.
        """
        for name, x in (("real_a", real_a), ("real_b", real_b)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        return dict(self._native.step(real_a, real_b))

    def __repr__(self) -> str:
        return f"Trainer(step={self.step_count}, device='{self.device}', config={self.config!r})"
