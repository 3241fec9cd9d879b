"""``ugatit_rs.Trainer``: the six U-GAT-IT networks, their two Adam optimizers and the official
training iteration, all in Rust. Python holds the orchestration (``fit``): data streams,
progress bar, loss log, sample grids, checkpoints, resume and Ctrl-C."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import json
import math
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from . import _native, viz
from . import distributed as dp
from ._checks import whole
from ._cuda_graph import CudaGraphStep
from ._files import replacing, write_json
from ._native import TrainConfig
from .data import DomainLoader, check_dataset, check_run_dir, domain_folder, load_image
from .models import Discriminator, Generator
from .translate import Translated

NETWORK_NAMES = tuple(_native.NETWORK_NAMES)


class RunInUseError(RuntimeError):
    """A ``fit()`` was refused because another one is running: on the same Trainer (in another
    thread), or into the same run folder (another process or trainer). Also raised by
    ``step()``, ``load_checkpoint()`` and ``resume()`` called while ``fit()`` runs in another
    thread (its own callback may call them)."""


class NonFiniteLossError(FloatingPointError):
    """Training produced NaN or Inf; ``step`` and ``losses`` say where. No checkpoint is written
    after the failing step, so the last one on disk is the last good state."""

    def __init__(self, step: int, losses: dict[str, float]):
        self.step = step
        self.losses = losses
        bad = ", ".join(f"{k}={v}" for k, v in losses.items() if not math.isfinite(v))
        super().__init__(f"non-finite loss at step {step}: {bad}")


def _check_finite(step: int, losses: dict[str, float]) -> None:
    if not all(math.isfinite(v) for v in losses.values()):
        raise NonFiniteLossError(step, losses)


_CHECKPOINT_RE = re.compile(r"_params_(\d+)\.safetensors$")


def _step_of(path: str) -> int:
    """The step in a checkpoint's name (``..._params_<step>.safetensors``), or -1."""
    match = _CHECKPOINT_RE.search(path)
    return int(match.group(1)) if match else -1


def checkpoints(model_dir: str) -> list[str]:
    """The checkpoints in ``model_dir``, newest (highest step, by number) first."""
    found = glob.glob(os.path.join(glob.escape(model_dir), "*_params_*.safetensors"))
    return sorted((path for path in found if _step_of(path) >= 0), key=lambda p: (_step_of(p), p), reverse=True)


def latest_checkpoint(model_dir: str) -> str | None:
    """The checkpoint with the highest step in ``model_dir`` (by number, not by name), or None."""
    found = checkpoints(model_dir)
    return found[0] if found else None


def _set_earlier_run_aside(model_dir: str) -> str | None:
    """Moves ``model_dir`` to ``model.1`` (``.2``, ...) when it holds checkpoints, for a new run
    from step 0: its saves would replace the earlier run's step by step, and a later ``resume``
    would take the earlier run's newest for this one's. Returns where they went."""
    earlier = checkpoints(model_dir) or glob.glob(os.path.join(glob.escape(model_dir), "*_best.safetensors"))
    if not earlier:
        return None
    aside = next(f"{model_dir}.{n}" for n in range(1, 10**6) if not os.path.lexists(f"{model_dir}.{n}"))
    os.replace(model_dir, aside)
    return aside


class _FrozenConfig:
    """A read-only view of a trainer's :class:`TrainConfig`: the trainer was built from it, so
    changing a field afterwards would silently do nothing."""

    __slots__ = ("_config",)

    def __init__(self, config: TrainConfig):
        object.__setattr__(self, "_config", config)

    def __getattr__(self, name):
        return getattr(self._config, name)

    def __setattr__(self, name, value):
        raise AttributeError(
            f"Trainer.config is read-only (setting {name!r} would have no effect): build a new Trainer "
            "from a modified TrainConfig instead"
        )

    def copy(self) -> TrainConfig:
        """A modifiable copy, e.g. to build another Trainer."""
        return TrainConfig(**self._config.to_dict())

    def __eq__(self, other):
        return self._config == (other._config if isinstance(other, _FrozenConfig) else other)

    def __repr__(self) -> str:
        return repr(self._config)


class Trainer:
    """Trains U-GAT-IT exactly as the official ``UGATIT.train()`` does.

    Args:
        config: a :class:`TrainConfig`; validated here (``ValueError`` names a bad field).

    The networks ``gen_a2b, gen_b2a, dis_ga, dis_gb, dis_la, dis_lb`` are live views of the
    trainer's tensors: their ``state_dict()`` or a call shows the current weights.
    """

    _graph_step: CudaGraphStep | None = None
    # save_samples' images, read once per count: (count, {"A": [...], "B": [...]}).
    _samples: tuple[int, dict[str, list[torch.Tensor]]] = (0, {})

    def __new__(cls, config: TrainConfig):
        # TrainConfig(model="cyclegan") trains the baseline with this same surface.
        if cls is Trainer and getattr(config, "model", "ugatit") == "cyclegan":
            from .cyclegan import CycleGANTrainer

            cls = CycleGANTrainer
        return super().__new__(cls)

    def __init__(self, config: TrainConfig):
        if isinstance(config, _FrozenConfig):
            config = config.copy()
        if not isinstance(config, TrainConfig):
            raise TypeError(f"Trainer expects a ugatit_rs.TrainConfig, got {type(config).__name__}")
        self._build(config)
        self._config = self._native.config
        # Every tensor a user may hook (`register_hook`): see _sync_kept_gradients.
        self._hookable = [p for net in self.networks().values() for p in net.parameters()]
        self._gradients_kept = False
        self._fitting = threading.Lock()
        self._fit_thread: int | None = None  # the thread running fit(), while one does
        self._in_callback = False  # fit()'s callback is running (in fit()'s thread)
        self._stop_requested = threading.Event()
        if config.init_from:  # a new run from existing weights: fresh optimizers, step 0
            from .init_from import load_into

            load_into(self, config.init_from)

    def _build(self, config: TrainConfig) -> None:
        """The native trainer and the Python views of its networks."""
        if config.model != "ugatit":  # "cyclegan" was dispatched by __new__
            raise ValueError(f"model must be one of {list(_native.MODELS)}, got {config.model!r}")
        self._native = _native.Trainer(config)
        # TrainConfig(cuda_graph=True): steps replay one captured CUDA graph (after warm-up).
        self._graph_step = CudaGraphStep(self._native) if config.cuda_graph else None
        self.gen_a2b = Generator._wrap(self._native.gen_a2b)
        self.gen_b2a = Generator._wrap(self._native.gen_b2a)
        self.dis_ga = Discriminator._wrap(self._native.dis_ga)
        self.dis_gb = Discriminator._wrap(self._native.dis_gb)
        self.dis_la = Discriminator._wrap(self._native.dis_la)
        self.dis_lb = Discriminator._wrap(self._native.dis_lb)

    def __setattr__(self, name: str, value) -> None:
        self._refuse_replacing(name, value)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._refuse_replacing(name, None)
        object.__delattr__(self, name)

    def _refuse_replacing(self, name: str, value) -> None:
        # The trainer's networks are views of the native trainer's own: a module put in their
        # place would be neither trained nor saved, while the old one still would.
        current = self.__dict__.get(name)
        if isinstance(current, torch.nn.Module) and value is not current:
            raise AttributeError(
                f"{type(self).__name__}.{name} is the network this trainer trains and saves and cannot be "
                f"replaced; copy weights into it instead (trainer.{name}.load_state_dict(...))"
            )

    def __reduce__(self):
        raise TypeError(
            f"a {type(self).__name__} cannot be copied or pickled (it holds native optimizer state and a data "
            "pipeline); save_checkpoint(path), then Trainer(config).load_checkpoint(path) continues it exactly, "
            "and copy.deepcopy works on its networks"
        )

    # -- state -----------------------------------------------------------------------------------
    @property
    def config(self) -> TrainConfig:
        """The config this trainer was built with (read-only; ``.copy()`` gives a modifiable one)."""
        return _FrozenConfig(self._config)

    @property
    def device(self) -> torch.device:
        """Where the six networks, their optimizers and each step's batches live."""
        return torch.device(self._native.device)

    @property
    def step_count(self) -> int:
        """Completed iterations."""
        return self._native.step_count

    @property
    def lr(self) -> float:
        """The learning rate of the last update."""
        return self._native.lr

    def networks(self) -> dict[str, object]:
        """The six networks under their official checkpoint names."""
        return dict(
            zip(NETWORK_NAMES, (self.gen_a2b, self.gen_b2a, self.dis_ga, self.dis_gb, self.dis_la, self.dis_lb))
        )

    # -- folders ---------------------------------------------------------------------------------
    @property
    def dataset_name(self) -> str:
        """The last part of ``config.dataset``: the run folder's and the checkpoints' name."""
        return os.path.basename(os.path.normpath(self.config.dataset)) or "dataset"

    @property
    def run_dir(self) -> str:
        """``<result_dir>/<dataset name>``, with ``model/``, ``img/`` and ``test/`` inside."""
        return os.path.join(self.config.result_dir, self.dataset_name)

    def checkpoint_path(self, step: int | None = None) -> str:
        """Where ``fit()`` saves the checkpoint of ``step`` (default: the current step), named as
        the official code names its ``.pt`` files."""
        step = self.step_count if step is None else whole("step", step, 0)
        return os.path.join(self.run_dir, "model", f"{self.dataset_name}_params_{step:07d}.safetensors")

    # -- one iteration ---------------------------------------------------------------------------
    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One official iteration on a batch of each domain (float32 ``(B, 3, img_size, img_size)``
        in [-1, 1], on the trainer's device): LR decay, D update, G update, rho clipping. The
        discriminators are left in training mode, as the official loop keeps them (their spectral
        norm advances at each call); the generators' mode does not change what they compute.

        Returns every loss component (``d_loss``, ``g_loss``, ``D_ad_loss_GA``, ...,
        ``G_cam_loss_B``) and ``lr`` as floats. Raises :class:`NonFiniteLossError` naming the
        loss and the step if any loss is NaN or Inf, and before changing anything ``TypeError``
        if a batch is not float32, ``ValueError`` if it holds NaN or Inf or lies off the [-1, 1]
        scale (beyond ±1.5, e.g. 0..255).
        """
        self._refuse_during_fit("step()")
        for name, x in (("real_a", real_a), ("real_b", real_b)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
            if x.layout != torch.strided or x.device.type not in ("cpu", "cuda"):
                raise ValueError(f"{name} must be a dense CPU or CUDA tensor, got {x.layout} on {x.device}")
            if x.dtype != torch.float32:  # before the range: a 0..255 uint8 batch is a dtype error
                raise TypeError(f"{name} must be a float32 tensor in [-1, 1], got {x.dtype}")
            # A NaN would reach every weight through the update, and 0..255 images train a
            # network on nonsense; fit()'s own batches need no such check.
            viz.check_unit_range(x, name)
        _check_grad_mode()
        if self._graph_step is not None:
            values, lr = self._step_lazy(real_a, real_b, None)
            losses = dict(zip([n for n, _ in values], torch.stack([t for _, t in values]).double().tolist()))
            losses["lr"] = lr
        else:
            self._sync_kept_gradients()
            losses = dict(self._native.step(real_a, real_b))
        _check_finite(self.step_count, losses)
        return losses

    def _sync_kept_gradients(self) -> None:
        """Tells the optimizers whether a tensor hook on a parameter may keep its gradient: on
        the CPU the update otherwise reuses each spent gradient's memory as scratch, and a
        gradient a hook stored would then read as something else after the step."""
        kept = any(p._backward_hooks for p in self._hookable)
        if kept != self._gradients_kept:
            self._native.set_keep_gradients(kept)
            self._gradients_kept = kept

    def _step_lazy(self, real_a: torch.Tensor, real_b: torch.Tensor, grad_hook):
        """One iteration with the losses left on the device: ``(losses, lr)``."""
        self._sync_kept_gradients()
        if self._graph_step is not None and grad_hook is None:
            return self._graph_step(real_a, real_b)
        return self._native.step_lazy(real_a, real_b, grad_hook)

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self, path: str | None = None) -> str:
        """Writes networks, optimizer state, step, LR and config to one safetensors file,
        atomically (a crash mid-write leaves the previous file intact). Returns the path."""
        path = os.fspath(path or self.checkpoint_path())
        if not path.lower().endswith(".safetensors"):
            # A .pt name promises the official format, which has no optimizer state to resume from.
            raise ValueError(
                f"{path}: a checkpoint is a .safetensors file; for the official UGATIT-pytorch .pt, save "
                "this and run `ugatit-rs convert CKPT.safetensors OUT.pt`"
            )
        self._native.save_checkpoint(os.fspath(path), [("world_size", str(dp.world_size()))])
        return path

    def _save_and_prune(self) -> str:
        """``fit``'s save: this step's checkpoint, then the older ones beyond
        ``config.keep_checkpoints`` deleted (never one of a later step: another run's)."""
        path = self.save_checkpoint()
        keep = self.config.keep_checkpoints
        if keep > 0:
            older = [p for p in checkpoints(os.path.dirname(path)) if _step_of(p) < self.step_count]
            for stale in older[keep - 1 :]:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(stale)
        return path

    def load_checkpoint(self, path: str) -> int:
        """Restores a checkpoint written by :meth:`save_checkpoint` (or by ``convert``); returns
        its step. The file is validated completely before the trainer changes. An official
        UGATIT-pytorch ``.pt`` (any extension) is loaded as weights only, the step from its name."""
        from .convert import is_official, load_official_into

        self._refuse_during_fit("load_checkpoint()")
        path = os.fspath(path)
        if os.path.isfile(path) and is_official(path):
            return load_official_into(self, path)
        return self._native.load_checkpoint(path)

    def resume(self) -> str | None:
        """Loads the newest loadable checkpoint of this run's ``model/`` folder, if any; returns
        its path. A newest checkpoint that is damaged (truncated, corrupted) is reported and the
        previous one is used, as the atomic saves guarantee one good file."""
        self._refuse_during_fit("resume()")
        failures = []
        for path in checkpoints(os.path.join(self.run_dir, "model")):
            try:
                self.load_checkpoint(path)
            except (ValueError, OSError, FloatingPointError) as exc:
                failures.append(f"{path}: {exc}")
                print(f"warning: skipping unusable checkpoint {path}: {exc}", file=sys.stderr)
                continue
            return path
        if failures:
            raise _native.StateDictError("no usable checkpoint to resume from:\n  " + "\n  ".join(failures))
        return None

    # -- samples ---------------------------------------------------------------------------------
    def _sample_images(self, split: str, count: int) -> list[torch.Tensor]:
        """The first ``count`` readable images of a split (unreadable ones are skipped and
        reported, like training images)."""
        folder = domain_folder(self.config.dataset, split)
        loader = DomainLoader(folder, self.config.img_size, 1, train=False, num_workers=0)
        images, skipped = [], viz.UnreadableImages()
        for path in loader.paths():
            if len(images) == count:
                break
            try:
                images.append(load_image(path, self.config.img_size).to(self.device))
            except OSError as exc:
                skipped.add(path, exc)
        return images

    def save_samples(self, step: int | None = None, count: int = 5) -> dict[str, str]:
        """The official sample grids: ``count`` train and ``count`` test images per direction, as
        columns of real / heatmap / identity / heatmap / translation / heatmap / cycle (CycleGAN:
        real / translation / cycle), written to
        ``img/A2B_<step>.png`` and ``img/B2A_<step>.png`` (networks in eval mode, no autograd)."""
        step = self.step_count if step is None else whole("step", step, 0)
        whole("count", count, 1)  # images per split and direction
        if self._samples[0] != count:  # fit() writes a grid every print_freq steps
            images = {d: self._sample_images(f"train{d}", count) + self._sample_images(f"test{d}", count) for d in "AB"}
            for domain, found in images.items():
                if not found:
                    raise ValueError(
                        f"no readable sample images in train{domain} or test{domain} of {self.config.dataset}"
                    )
            self._samples = (count, images)
        modes = {name: net.training for name, net in self.networks().items()}
        for net in self.networks().values():
            net.eval()
        try:
            paths = {}
            for direction, fwd, bwd, images in (
                ("A2B", self.gen_a2b, self.gen_b2a, self._samples[1]["A"]),
                ("B2A", self.gen_b2a, self.gen_a2b, self._samples[1]["B"]),
            ):
                path = os.path.join(self.run_dir, "img", f"{direction}_{step:07d}.png")
                viz.save_png(np.concatenate([self._column(fwd, bwd, x) for x in images], axis=1), path)
                paths[direction] = path
            return paths
        finally:
            for name, net in self.networks().items():
                net.train(modes[name])

    # -- the whole run ---------------------------------------------------------------------------
    def fit(
        self,
        progress: bool = True,
        callback: Callable[[int, dict[str, float]], None] | None = None,
        log_every: int = 10,
        until: int | None = None,
    ) -> str:
        """Trains until ``config.iteration`` over ``config.dataset`` (``trainA/`` and ``trainB/``).

        Writes under :attr:`run_dir`: ``log.jsonl`` (every loss of every step; TensorBoard events
        too when ``tensorboard`` is installed), sample grids every ``print_freq`` steps in
        ``img/``, checkpoints every ``save_freq`` steps and at the end in ``model/`` (only the
        newest ``keep_checkpoints`` of them when that is set; a new run from step 0 first moves an
        earlier run's to ``model.1/``). With
        ``config.resume`` it continues from the latest checkpoint, exactly where it stopped.

        Nothing done is lost: Ctrl-C finishes the current step, saves a checkpoint, then raises
        ``KeyboardInterrupt`` (a second Ctrl-C interrupts at once). SIGTERM (a cluster's
        preemption, ``docker stop``) does the same, then raises ``SystemExit(143)``, unless the
        program has its own SIGTERM handler, which is left in place. Any other exception (a
        vanished dataset, a callback that raises, ...) also saves the completed steps before it
        propagates — except a NaN/Inf loss, after which nothing is saved.

        ``callback(step, losses)`` is called whenever losses are read (every ``log_every`` steps:
        losses stay on the device in between, so the GPU never waits for the host). It may read,
        save and :meth:`stop`; a ``step()``, ``load_checkpoint()``, ``resume()`` or ``fit()``
        from it raises :class:`RunInUseError`, as it would change the run under ``fit()``. A NaN or Inf
        loss raises :class:`NonFiniteLossError` at that read, naming the loss and the step; losses
        are always read before a checkpoint is written, so no checkpoint holds a diverged state.
        ``until`` stops after that step (saving a checkpoint) without changing the schedule,
        which is still computed for ``config.iteration`` steps (a larger ``until`` is a
        ValueError). A trainer already at the last step trains nothing, writes nothing and says
        so. Returns the path of the log.
        One ``fit`` at a time per trainer and per run folder (across processes): a second one
        raises :class:`RunInUseError`. Run in a thread, :meth:`stop` ends it at the next step
        boundary (saving a checkpoint).
        """
        log_every = whole("log_every", log_every, 1)
        until = None if until is None else whole("until", until, 1)
        if until is not None and until > self.config.iteration:
            # The schedule (the learning rate's decay) ends at config.iteration, and so does fit.
            raise ValueError(
                f"until={until} is beyond config.iteration={self.config.iteration}: to train longer, build a "
                "Trainer with a larger iteration (resume=True continues this run; the schedule changes)"
            )
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable as callback(step, losses), got {type(callback).__name__}")
        if not self._fitting.acquire(blocking=False):
            if self._fit_thread == threading.get_ident():
                raise RunInUseError("fit() is refused inside fit()'s callback; one run at a time")
            raise RunInUseError("this Trainer is already running fit() (in another thread); one run at a time")
        self._stop_requested.clear()
        self._fit_thread = threading.get_ident()
        try:
            _check_grad_mode()
            # Before any step and any run folder: the sample grids, the in-training KID and the
            # command line's test() read testA/testB, so a missing one failed a run at its first
            # print_freq (as the official code refuses such a dataset when it starts).
            check_dataset(self.config.dataset)
            check_run_dir(self.run_dir, self.config.dataset)
            owner = _exclusive_run_dir(self.run_dir) if dp.rank() == 0 else contextlib.nullcontext()
            with torch.enable_grad(), owner:
                return self._fit(progress, callback, log_every, until)
        finally:
            self._fit_thread = None
            self._fitting.release()

    def _fit(self, progress, callback, log_every, until) -> str:
        cfg = self.config
        # Data-parallel: every rank reads the same global batch and trains on its slice; rank 0
        # alone writes logs, samples and checkpoints.
        world, lead = dp.world_size(), dp.rank() == 0
        if lead:  # this process holds the run folder: a temporary file there is a killed save's
            removed, freed = _native.remove_stale_temporaries(os.path.join(self.run_dir, "model"))
            if removed:
                print(
                    f"removed {removed} partial checkpoint(s) ({freed >> 20} MiB) left by a killed save",
                    file=sys.stderr,
                )
        grad_hook = dp.GradientAverager() if world > 1 else None
        if world > 1 and self._graph_step is not None:
            warnings.warn(
                "cuda_graph: data-parallel steps run eagerly (the gradient averaging is host code)", stacklevel=2
            )
        loaders = {
            d: DomainLoader(
                domain_folder(cfg.dataset, f"train{d}"),
                cfg.img_size,
                cfg.batch_size * world,
                seed=cfg.seed,
                domain=i,
                train=True,
                num_workers=cfg.num_workers,
                resize=self._resize,
            )
            for i, d in enumerate("AB")
        }
        if cfg.resume:
            resumed = self.resume()
            if resumed and lead:
                print(f"resumed from {resumed} (step {self.step_count})", file=sys.stderr)
                _warn_if_global_batch_changes(resumed, cfg.batch_size * world)
        start = self.step_count
        for loader in loaders.values():
            loader.seek(start)  # batch k feeds iteration k + 1, whatever happened before
        if world > 1:
            shared = {k: v for k, v in cfg.to_dict().items() if k not in dp.PER_RANK_FIELDS}
            images = {f"train{d} images": loader.num_images for d, loader in loaders.items()}
            frozen = [
                f"{n}.{k}"
                for n, net in self.networks().items()
                for k, p in net.named_parameters()
                if not p.requires_grad
            ]
            facts = {**shared, **images, "step resumed from": start, "frozen parameters": ", ".join(frozen) or "none"}
            dp.check_ranks_agree(facts, self.device)
            dp.broadcast_state(self)
        last = cfg.iteration if until is None else until
        if start >= last:  # e.g. fit() again after a finished run: say so rather than save again
            if lead:
                bound = f"until={until}" if until is not None else f"config.iteration={cfg.iteration}"
                print(f"fit: nothing to do: the trainer is at step {start}, {bound}", file=sys.stderr)
            return os.path.join(self.run_dir, RunLog.FILE)
        if lead and start == 0:  # a new run: the earlier one's checkpoints go aside, as its log does
            model_dir = os.path.join(self.run_dir, "model")
            aside = _set_earlier_run_aside(model_dir)
            if aside is not None:
                print(
                    f"fit: a new run from step 0; the earlier run's checkpoints in {model_dir} moved to {aside} "
                    f"(to continue that run instead: stop this one, put {aside} back as {model_dir}, and resume=True)",
                    file=sys.stderr,
                )
        run_log = RunLog(
            self.run_dir,
            total=last,
            initial=start,
            progress=progress and lead,
            callback=None if callback is None else functools.partial(self._run_callback, callback),
            write=lead,
        )
        evaluator = self._training_evaluator() if cfg.eval_freq > 0 and lead else None
        save = self._save_and_prune if lead else (lambda *args: None)
        interrupted: list[int] = []  # the signals received, first first

        # Ctrl-C (SIGINT), and SIGTERM (a scheduler's preemption, `docker stop`, `kill`), stop
        # at the next step boundary, so the log, the checkpoint and the trainer agree on the
        # last completed step; a second signal interrupts at once.
        def on_signal(signum, frame):
            if interrupted:
                raise _interruption(signum)
            interrupted.append(signum)

        previous_handlers = {}
        if threading.current_thread() is threading.main_thread():
            previous_handlers[signal.SIGINT] = signal.signal(signal.SIGINT, on_signal)
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # never displace the user's own
                previous_handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_signal)
        try:
            for step in range(start + 1, last + 1):
                # All ranks stop at the same step boundary, whichever received the signal.
                requested = bool(interrupted) or self._stop_requested.is_set()
                if dp.any_rank(requested, self.device) if world > 1 else requested:
                    if self._stop_requested.is_set() and not interrupted:
                        break  # stop(): save and return, below
                    raise _interruption(interrupted[0] if interrupted else signal.SIGINT)
                real_a, real_b = (loaders[d].next_batch() for d in "AB")
                if world > 1:
                    real_a, real_b = dp.local_slice(real_a), dp.local_slice(real_b)
                if self.device.type == "cuda":
                    # From page-locked memory the copies queue behind the previous step's kernels;
                    # from pageable memory the driver may make the host wait for them.
                    real_a, real_b = real_a.pin_memory(), real_b.pin_memory()
                real_a = real_a.to(self.device, non_blocking=True)
                real_b = real_b.to(self.device, non_blocking=True)
                losses, lr = self._step_lazy(real_a, real_b, grad_hook)
                run_log.record(step, losses, lr)
                if run_log.pending >= log_every or step == last:
                    run_log.flush()
                if step % cfg.print_freq == 0 and lead:
                    self.save_samples(step)
                if step % cfg.save_freq == 0:
                    run_log.flush()  # never write a checkpoint after a non-finite step
                    save()
                if evaluator is not None and step % cfg.eval_freq == 0:
                    run_log.flush()
                    self._evaluate(evaluator, run_log, step)
            run_log.flush()
            if interrupted:
                raise _interruption(interrupted[0])
            if self.step_count % cfg.save_freq != 0:
                save()
        except NonFiniteLossError:
            raise  # the state diverged: keep the last good checkpoint as the latest
        except BaseException as exc:
            if lead:
                self._save_on_the_way_out(run_log, start, exc)
            raise
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            run_log.close()
            skipped = {p for loader in loaders.values() for p, _ in loader.skipped()}
            if skipped:
                print(f"skipped {len(skipped)} unreadable image(s); first: {sorted(skipped)[0]}", file=sys.stderr)
        return run_log.path

    def stop(self) -> bool:
        """Asks a ``fit()`` running in another thread (a notebook's background run) to finish its
        current step, save a checkpoint and return. Returns whether a fit was running."""
        if not self._fitting.locked():
            return False
        self._stop_requested.set()
        return True

    def _refuse_during_fit(self, what: str) -> None:
        """A step or a restore from another thread, or from fit()'s own callback, would change a
        running fit() under it: its log, its data position and its checkpoints would no longer
        agree with the networks. (fit() itself restores, in its own thread, when it resumes.)"""
        running = self._fit_thread
        if running is not None and running != threading.get_ident():
            raise RunInUseError(
                f"{what} is refused while fit() runs in another thread; call stop() and let fit() return first"
            )
        if running is not None and self._in_callback:
            raise RunInUseError(
                f"{what} is refused inside fit()'s callback; call stop() there, and {what} once fit() has returned"
            )

    def _run_callback(self, callback, step: int, losses: dict) -> None:
        self._in_callback = True
        try:
            callback(step, losses)
        finally:
            self._in_callback = False

    def _training_evaluator(self):
        """The in-training KID, or None (with one message) when the metrics extra is missing."""
        from .evaluation import TrainingEvaluator

        try:
            return TrainingEvaluator(self, self.config.eval_images)
        except FileNotFoundError as exc:
            print(f"eval_freq={self.config.eval_freq} ignored: {exc}", file=sys.stderr)
            return None

    @property
    def best_checkpoint_path(self) -> str:
        """Where ``fit`` keeps the checkpoint with the lowest in-training KID (mean of both directions)."""
        return os.path.join(self.run_dir, "model", f"{self.dataset_name}_best.safetensors")

    def _evaluate(self, evaluator, run_log: RunLog, step: int) -> None:
        started = time.perf_counter()
        scores = evaluator()
        scores["eval_seconds"] = round(time.perf_counter() - started, 3)
        run_log.record_eval(step, scores)
        best_file = os.path.join(self.run_dir, "model", "best.json")
        best = None
        if os.path.exists(best_file):
            with open(best_file) as f:
                best = json.load(f).get("kid_mean")
        if best is None or scores["kid_mean"] < best:
            self.save_checkpoint(self.best_checkpoint_path)
            write_json(best_file, {"step": step, **scores})

    def _save_on_the_way_out(self, run_log: RunLog, start: int, exc: BaseException) -> None:
        """Saves the steps completed before ``exc`` ended the run (if any and if finite)."""
        try:
            run_log.flush(agree=False)  # raises NonFiniteLossError rather than saving a diverged state
        except NonFiniteLossError:
            return
        if self.step_count <= start:
            return
        if os.path.exists(self.checkpoint_path()):
            return
        try:
            path = self._save_and_prune()
        except Exception as save_error:  # keep the original exception; say why nothing was saved
            print(f"\ncould not save a checkpoint after {type(exc).__name__}: {save_error}", file=sys.stderr)
            return
        if isinstance(exc, KeyboardInterrupt):
            what = "interrupted"
        elif isinstance(exc, SystemExit) and exc.code == _TERMINATED:
            what = "terminated (SIGTERM)"
        else:
            # Its first line: under torchrun a rank is often killed before the error itself prints.
            reason = next(iter(str(exc).strip().splitlines()), "")
            reason = reason if len(reason) <= 160 else reason[:157] + "..."
            what = f"stopped by {type(exc).__name__}" + (f" ({reason})" if reason else "")
        print(f"\n{what}: saved {path} (step {self.step_count}); resume with resume=True", file=sys.stderr)

    # The training transforms' resize filter (U-GAT-IT's torchvision default).
    _resize = "bilinear"

    def _column(self, forward, backward, x: torch.Tensor) -> np.ndarray:
        """One source image's column in sample grids and test outputs."""
        return viz.translation_column(forward, backward, x)

    def test(self, progress: bool = True) -> dict[str, Translated]:
        """The official test outputs: for every ``testA``/``testB`` image, one column of
        real / heatmap / identity / heatmap / translation / heatmap / cycle, written to
        ``test/A2B_<n>.png`` and ``test/B2A_<n>.png`` (``n`` counts the split's files from 1, in
        file order), with the generators in eval mode and without autograd (their modes are
        restored afterwards). Returns the written paths per direction; a file that cannot be
        decoded is passed over with a warning, as training passes over it, and listed in that
        direction's ``skipped``."""
        check_run_dir(self.run_dir, self.config.dataset)
        jobs = []
        for direction, split, fwd, bwd in (
            ("A2B", "testA", self.gen_a2b, self.gen_b2a),
            ("B2A", "testB", self.gen_b2a, self.gen_a2b),
        ):
            loader = DomainLoader(
                domain_folder(self.config.dataset, split), self.config.img_size, 1, train=False, num_workers=0
            )
            jobs += [(direction, n, path, fwd, bwd) for n, path in enumerate(loader.paths())]
        written = {"A2B": Translated(), "B2A": Translated()}
        modes = [(net, net.training) for net in (self.gen_a2b, self.gen_b2a)]
        try:
            for net, _ in modes:
                net.eval()
            with torch.no_grad():
                for direction, n, path, fwd, bwd in tqdm(jobs, unit="img", disable=not progress):
                    try:
                        x = load_image(path, self.config.img_size).to(self.device)
                    except OSError as exc:
                        written[direction].skipped.add(path, exc)
                        continue
                    out = os.path.join(self.run_dir, "test", f"{direction}_{n + 1}.png")
                    viz.save_png(self._column(fwd, bwd, x), out)
                    written[direction].append(out)
        finally:
            for net, mode in modes:
                net.train(mode)
        return written

    def __repr__(self) -> str:
        return f"Trainer(step={self.step_count}, device='{self.device}', config={self.config!r})"


# How a run ended by SIGTERM exits: 128 + 15, the status a shell reports for a terminated process.
_TERMINATED = 128 + signal.SIGTERM


def _interruption(signum: int) -> BaseException:
    """What ``fit`` raises, once its checkpoint is saved, for a received signal: Ctrl-C is a
    ``KeyboardInterrupt``; SIGTERM exits as the signal would have (status 143), after cleanup."""
    return KeyboardInterrupt() if signum == signal.SIGINT else SystemExit(_TERMINATED)


def _warn_if_global_batch_changes(checkpoint: str, global_batch: int) -> None:
    """The data stream and the update depend on the global batch (per-rank batch × ranks):
    say so when a resume changes it."""
    meta = dict(_native.read_checkpoint_metadata(checkpoint))
    try:
        saved = json.loads(meta["config"])["batch_size"] * int(meta.get("world_size", 1))
    except (KeyError, ValueError, TypeError):
        return
    if saved != global_batch:
        print(
            f"warning: the global batch changes from {saved} (when {checkpoint} was written) to {global_batch}: "
            "the resumed run sees other batches and takes other steps than the original would have",
            file=sys.stderr,
        )


@contextlib.contextmanager
def _exclusive_run_dir(run_dir: str) -> Iterator[None]:
    """One fit() per run folder at a time, across processes and trainers: two would interleave
    their logs and resume from each other's checkpoints. The lock (``flock`` on ``.lock``) goes
    with the process that holds it, so a killed run leaves none behind."""
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, ".lock"), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RunInUseError(
                f"{run_dir} is in use by another training run ({holder}); wait for it, stop it, or train "
                "into another result_dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _check_grad_mode() -> None:
    """Training needs autograd; ``torch.inference_mode()`` cannot be switched off inside. Under
    ``torch.autocast`` the step's float32 state would meet lowered activations (libtorch failed
    deep inside the spectral norm); mixed precision is the trainer's own opt-in instead."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError("cannot train under torch.inference_mode(): call step()/fit() outside it")
    for device_type in ("cpu", "cuda"):
        if torch.is_autocast_enabled(device_type):
            raise RuntimeError(
                f"cannot train under torch.autocast({device_type!r}): call step()/fit() outside it; for mixed "
                "precision use TrainConfig(precision='bf16'), which keeps the norms, the spectral norm and Adam "
                "in float32"
            )


class RunLog:
    """What a run leaves besides checkpoints: ``log.jsonl`` (every loss of every step),
    TensorBoard events (when installed), the progress bar and the user's callback.

    Losses arrive as device tensors and are read in batches (:meth:`flush`), one host sync per
    ``log_every`` steps; a NaN or Inf raises :class:`NonFiniteLossError` at that read.
    """

    FILE = "log.jsonl"

    def __init__(self, run_dir: str, total: int, initial: int, progress: bool, callback=None, write: bool = True):
        self.path = os.path.join(run_dir, self.FILE)
        self._write = write  # False on data-parallel ranks other than 0: they only check losses
        if write:
            os.makedirs(run_dir, exist_ok=True)
            _trim_log(self.path, initial)
        self._writer = _tensorboard_writer(run_dir) if write else None
        self._bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, disable=not progress)
        self._callback = callback
        self._pending: list = []
        self._started = time.perf_counter()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, step: int, losses, lr: float) -> None:
        self._pending.append((step, losses, lr))
        self._bar.update(1)

    def flush(self, agree: bool = True) -> None:
        """Reads the pending losses. ``agree``: in a data-parallel run, all ranks reach one
        verdict on non-finite losses (a collective every rank must join; off on the way out of
        an exception, when the other ranks may be gone)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        names = [n for n, _ in pending[0][1]]
        stacked = torch.stack([torch.stack([t for _, t in losses]) for _, losses, _ in pending]).double()
        values = stacked.cpu().tolist()
        diverged = next((i for i, row in enumerate(values) if not all(map(math.isfinite, row))), None)
        # Every rank reaches the same verdict, so a NaN on one stops all at the same step.
        if agree and dp.any_rank(diverged is not None, stacked.device) and diverged is None:
            raise NonFiniteLossError(pending[-1][0], {"loss on another rank": float("nan")})
        record = None
        try:
            with open(self.path if self._write else os.devnull, "a") as log:
                for i, ((step, _, lr), row) in enumerate(zip(pending, values)):
                    record = {
                        "step": step,
                        **dict(zip(names, row)),
                        "lr": lr,
                        "time": round(time.perf_counter() - self._started, 3),
                    }
                    log.write(json.dumps(record) + "\n")
                    if i == diverged:
                        raise NonFiniteLossError(step, dict(zip(names, row)))
                    if self._writer is not None:
                        for key, value in record.items():
                            if key not in ("step", "time"):
                                self._writer.add_scalar(key, value, step)
        except OSError:
            # The log could not be written (a full disk): the verdict on the losses still
            # stands, so that no checkpoint is saved on the way out of a diverged run.
            if diverged is not None:
                raise NonFiniteLossError(pending[diverged][0], dict(zip(names, values[diverged]))) from None
            raise
        self._bar.set_postfix(d_loss=f"{record['d_loss']:.4f}", g_loss=f"{record['g_loss']:.2f}")
        if self._callback is not None:
            self._callback(pending[-1][0], record)

    def record_eval(self, step: int, scores: dict) -> None:
        """An evaluation's numbers: a ``log.jsonl`` line of their own, TensorBoard, the bar."""
        with open(self.path, "a") as log:
            log.write(json.dumps({"step": step, **scores}) + "\n")
        if self._writer is not None:
            for key, value in scores.items():
                self._writer.add_scalar(f"eval/{key}", value, step)
        self._bar.set_postfix(kid_A2B=f"{scores['kid_A2B']:.2f}", kid_B2A=f"{scores['kid_B2A']:.2f}")

    def close(self) -> None:
        self._bar.close()
        if self._writer is not None:
            self._writer.close()


def _trim_log(path: str, last_step: int) -> None:
    """Makes ``log.jsonl`` end at ``last_step``, where the run starts: a fresh run (0) starts a
    new log, the earlier one kept as ``log.jsonl.1`` (``.2``, ...); a resumed one drops the lines
    of steps it will redo (written after the checkpoint it resumes from, by a run that was
    killed) and a line cut short by the kill. Without this, a second demo in one folder plotted
    both runs' losses as one zig-zag curve."""
    if not os.path.exists(path):
        return
    if last_step == 0:
        if os.path.getsize(path) > 0:
            earlier = next(f"{path}.{n}" for n in range(1, 10**6) if not os.path.exists(f"{path}.{n}"))
            os.replace(path, earlier)
        return
    with open(path, "rb") as f:  # the common case, a clean resume, reads only the end
        f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))
        tail = f.read()
    if tail.endswith(b"\n") and _logged_step(tail.split(b"\n")[-2]) <= last_step:
        return
    with replacing(path) as tmp, open(tmp, "wb") as kept, open(path, "rb") as log:
        for line in log:
            if line.endswith(b"\n") and _logged_step(line) <= last_step:
                kept.write(line)


def _logged_step(line: bytes) -> float:
    """The step of a log line; a line that is not one (cut short) sorts after every step."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def _tensorboard_writer(run_dir: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed
        return None
    return SummaryWriter(os.path.join(run_dir, "tensorboard"))
