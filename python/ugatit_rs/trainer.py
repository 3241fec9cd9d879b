"""``ugatit_rs.Trainer``: the six U-GAT-IT networks, their two Adam optimizers and the official
training iteration, all in Rust. Python holds the orchestration (``fit``): data streams,
progress bar, loss log, sample grids, checkpoints, resume and Ctrl-C."""

from __future__ import annotations

import glob
import json
import math
import os
import re
import signal
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

import torch

from . import _native, viz
from ._native import TrainConfig
from .data import DomainLoader, domain_folder, load_image
from .models import Discriminator, Generator

NETWORK_NAMES = ("genA2B", "genB2A", "disGA", "disGB", "disLA", "disLB")


class NonFiniteLossError(FloatingPointError):
    """Training produced NaN or Inf; ``step`` and ``losses`` say where. No checkpoint is written
    after the failing step, so the last one on disk is the last good state."""

    def __init__(self, step: int, losses: Dict[str, float]):
        self.step = step
        self.losses = losses
        bad = ", ".join(f"{k}={v}" for k, v in losses.items() if not math.isfinite(v))
        super().__init__(f"non-finite loss at step {step}: {bad}")


def _check_finite(step: int, losses: Dict[str, float]) -> None:
    if not all(math.isfinite(v) for v in losses.values()):
        raise NonFiniteLossError(step, losses)
_CHECKPOINT_RE = re.compile(r"_params_(\d+)\.safetensors$")


def _progress(total: int, initial: int, enabled: bool):
    """tqdm (terminal or notebook) when installed and wanted, else None."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True)


def latest_checkpoint(model_dir: str) -> Optional[str]:
    """The checkpoint with the highest step in ``model_dir`` (by number, not by name), or None."""
    best = None
    for path in glob.glob(os.path.join(glob.escape(model_dir), "*_params_*.safetensors")):
        match = _CHECKPOINT_RE.search(path)
        if match and (best is None or int(match.group(1)) > best[0]):
            best = (int(match.group(1)), path)
    return best[1] if best else None


class Trainer:
    """Trains U-GAT-IT exactly as the official ``UGATIT.train()`` does.

    Args:
        config: a :class:`TrainConfig`; validated here (``ValueError`` names a bad field).

    The networks ``gen_a2b, gen_b2a, dis_ga, dis_gb, dis_la, dis_lb`` are live views of the
    trainer's tensors: their ``state_dict()`` or a call shows the current weights.
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

    # -- state -----------------------------------------------------------------------------------
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
        return dict(zip(NETWORK_NAMES, (self.gen_a2b, self.gen_b2a, self.dis_ga, self.dis_gb, self.dis_la, self.dis_lb)))

    # -- folders ---------------------------------------------------------------------------------
    @property
    def dataset_name(self) -> str:
        return os.path.basename(os.path.normpath(self.config.dataset)) or "dataset"

    @property
    def run_dir(self) -> str:
        """``<result_dir>/<dataset name>``, with ``model/``, ``img/`` and ``test/`` inside."""
        return os.path.join(self.config.result_dir, self.dataset_name)

    def checkpoint_path(self, step: Optional[int] = None) -> str:
        step = self.step_count if step is None else step
        return os.path.join(self.run_dir, "model", f"{self.dataset_name}_params_{step:07d}.safetensors")

    # -- one iteration ---------------------------------------------------------------------------
    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> Dict[str, float]:
        """One official iteration on a batch of each domain (float32 ``(B, 3, img_size, img_size)``
        in [-1, 1], on the trainer's device): LR decay, D update, G update, rho clipping.

        Returns every loss component (``d_loss``, ``g_loss``, ``D_ad_loss_GA``, ...,
        ``G_cam_loss_B``) and ``lr`` as floats. Raises :class:`NonFiniteLossError` naming the
        loss and the step if any loss is NaN or Inf.
        """
        for name, x in (("real_a", real_a), ("real_b", real_b)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        losses = dict(self._native.step(real_a, real_b))
        _check_finite(self.step_count, losses)
        return losses

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self, path: Optional[str] = None) -> str:
        """Writes networks, optimizer state, step, LR and config to one safetensors file,
        atomically (a crash mid-write leaves the previous file intact). Returns the path."""
        path = path or self.checkpoint_path()
        self._native.save_checkpoint(os.fspath(path))
        return path

    def load_checkpoint(self, path: str) -> int:
        """Restores a checkpoint written by :meth:`save_checkpoint` (or by ``convert``); returns
        its step. The file is validated completely before the trainer changes."""
        return self._native.load_checkpoint(os.fspath(path))

    def resume(self) -> Optional[str]:
        """Loads the latest checkpoint of this run's ``model/`` folder, if any; returns its path."""
        path = latest_checkpoint(os.path.join(self.run_dir, "model"))
        if path:
            self.load_checkpoint(path)
        return path

    # -- samples ---------------------------------------------------------------------------------
    def _sample_images(self, split: str, count: int) -> List[torch.Tensor]:
        folder = domain_folder(self.config.dataset, split)
        loader = DomainLoader(folder, self.config.img_size, 1, train=False, num_workers=0)
        return [load_image(p, self.config.img_size).to(self.device) for p in loader.paths()[:count]]

    def save_samples(self, step: Optional[int] = None, count: int = 5) -> Dict[str, str]:
        """The official sample grids: ``count`` train and ``count`` test images per direction, as
        columns of real / heatmap / identity / heatmap / translation / heatmap / cycle, written to
        ``img/A2B_<step>.png`` and ``img/B2A_<step>.png`` (networks in eval mode, no autograd)."""
        step = self.step_count if step is None else step
        if not hasattr(self, "_samples"):
            self._samples = {d: self._sample_images(f"train{d}", count) + self._sample_images(f"test{d}", count) for d in "AB"}
        modes = {name: net.training for name, net in self.networks().items()}
        for net in self.networks().values():
            net.eval()
        try:
            paths = {}
            for direction, fwd, bwd, images in (("A2B", self.gen_a2b, self.gen_b2a, self._samples["A"]),
                                                ("B2A", self.gen_b2a, self.gen_a2b, self._samples["B"])):
                path = os.path.join(self.run_dir, "img", f"{direction}_{step:07d}.png")
                viz.save_png(viz.sample_grid(fwd, bwd, images), path)
                paths[direction] = path
            return paths
        finally:
            for name, net in self.networks().items():
                net.train(modes[name])

    # -- the whole run ---------------------------------------------------------------------------
    def fit(self, progress: bool = True, callback: Optional[Callable[[int, Dict[str, float]], None]] = None,
            log_every: int = 10, until: Optional[int] = None) -> str:
        """Trains until ``config.iteration`` over ``config.dataset`` (``trainA/`` and ``trainB/``).

        Writes under :attr:`run_dir`: ``log.jsonl`` (every loss of every step; TensorBoard events
        too when ``tensorboard`` is installed), sample grids every ``print_freq`` steps in
        ``img/``, checkpoints every ``save_freq`` steps and at the end in ``model/``. With
        ``config.resume`` it continues from the latest checkpoint, exactly where it stopped.
        Ctrl-C finishes the current step, saves a checkpoint, then raises ``KeyboardInterrupt``
        (a second Ctrl-C interrupts at once).

        ``callback(step, losses)`` is called whenever losses are read (every ``log_every`` steps:
        losses stay on the device in between, so the GPU never waits for the host). A NaN or Inf
        loss raises :class:`NonFiniteLossError` at that read, naming the loss and the step; losses
        are always read before a checkpoint is written, so no checkpoint holds a diverged state.
        ``until`` stops after that step (saving a checkpoint) without changing the schedule,
        which is still computed for ``config.iteration`` steps. Returns the path of the log.
        """
        cfg = self.config
        loaders = {d: DomainLoader(domain_folder(cfg.dataset, f"train{d}"), cfg.img_size, cfg.batch_size,
                                   seed=cfg.seed, domain=i, train=True, num_workers=cfg.num_workers)
                   for i, d in enumerate("AB")}
        if cfg.resume:
            resumed = self.resume()
            if resumed:
                print(f"resumed from {resumed} (step {self.step_count})", file=sys.stderr)
        start = self.step_count
        for loader in loaders.values():
            loader.seek(start)  # batch k feeds iteration k + 1, whatever happened before
        os.makedirs(self.run_dir, exist_ok=True)
        log_path = os.path.join(self.run_dir, "log.jsonl")
        writer = _tensorboard_writer(self.run_dir)
        last = cfg.iteration if until is None else min(int(until), cfg.iteration)
        bar = _progress(last, start, progress)
        pending: list = []
        started = time.perf_counter()

        def flush():
            if not pending:
                return
            names = [n for n, _ in pending[0][1]]
            values = torch.stack([torch.stack([t for _, t in losses]) for _, losses, _ in pending]).double().cpu().tolist()
            with open(log_path, "a") as log:
                for (step, _, lr), row in zip(pending, values):
                    record = {"step": step, **dict(zip(names, row)), "lr": lr,
                              "time": round(time.perf_counter() - started, 3)}
                    log.write(json.dumps(record) + "\n")
                    if not all(math.isfinite(v) for v in row):
                        pending.clear()
                        raise NonFiniteLossError(step, dict(zip(names, row)))
                    if writer is not None:
                        for key, value in record.items():
                            if key not in ("step", "time"):
                                writer.add_scalar(key, value, step)
            last_step, last = pending[-1][0], record
            pending.clear()
            if bar is not None:
                bar.set_postfix(d_loss=f"{last['d_loss']:.4f}", g_loss=f"{last['g_loss']:.2f}")
            if callback is not None:
                callback(last_step, last)

        # Ctrl-C (SIGINT) stops at the next step boundary, so the log, the checkpoint and the
        # trainer agree on the last completed step; a second Ctrl-C interrupts at once.
        interrupted: list = []

        def on_sigint(signum, frame):
            if interrupted:
                raise KeyboardInterrupt
            interrupted.append(signum)

        previous_handler = None
        if threading.current_thread() is threading.main_thread():
            previous_handler = signal.signal(signal.SIGINT, on_sigint)
        try:
            for step in range(start + 1, last + 1):
                if interrupted:
                    raise KeyboardInterrupt
                real_a = loaders["A"].next_batch().to(self.device, non_blocking=True)
                real_b = loaders["B"].next_batch().to(self.device, non_blocking=True)
                losses, lr = self._native.step_lazy(real_a, real_b)
                pending.append((step, losses, lr))
                if len(pending) >= log_every or step == last:
                    flush()
                if bar is not None:
                    bar.update(1)
                if step % cfg.print_freq == 0:
                    self.save_samples(step)
                if step % cfg.save_freq == 0:
                    flush()  # never write a checkpoint after a non-finite step
                    self.save_checkpoint()
            flush()
            if interrupted:
                raise KeyboardInterrupt
            if self.step_count % cfg.save_freq != 0:
                self.save_checkpoint()
        except KeyboardInterrupt:
            flush()  # raises NonFiniteLossError rather than saving a diverged state
            path = self.save_checkpoint()
            print(f"\ninterrupted: saved {path} (step {self.step_count}); resume with resume=True", file=sys.stderr)
            raise
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
            skipped = {p for loader in loaders.values() for p, _ in loader.skipped()}
            if skipped:
                print(f"skipped {len(skipped)} unreadable image(s); first: {sorted(skipped)[0]}", file=sys.stderr)
        return log_path

    def test(self) -> Dict[str, List[str]]:
        """The official test outputs: for every ``testA``/``testB`` image, one column of
        real / heatmap / identity / heatmap / translation / heatmap / cycle, written to
        ``test/A2B_<n>.png`` and ``test/B2A_<n>.png``. Returns the written paths."""
        written: Dict[str, List[str]] = {"A2B": [], "B2A": []}
        for net in (self.gen_a2b, self.gen_b2a):
            net.eval()
        for direction, split, fwd, bwd in (("A2B", "testA", self.gen_a2b, self.gen_b2a),
                                           ("B2A", "testB", self.gen_b2a, self.gen_a2b)):
            loader = DomainLoader(domain_folder(self.config.dataset, split), self.config.img_size, 1,
                                  train=False, num_workers=0)
            for n, path in enumerate(loader.paths()):
                x = load_image(path, self.config.img_size).to(self.device)
                out = os.path.join(self.run_dir, "test", f"{direction}_{n + 1}.png")
                viz.save_png(viz.translation_column(fwd, bwd, x), out)
                written[direction].append(out)
        return written

    def __repr__(self) -> str:
        return f"Trainer(step={self.step_count}, device='{self.device}', config={self.config!r})"


def _tensorboard_writer(run_dir: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed
        return None
    return SummaryWriter(os.path.join(run_dir, "tensorboard"))
