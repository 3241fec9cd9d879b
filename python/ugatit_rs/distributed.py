"""Data-parallel training on ``torch.distributed`` (``docs/distributed.md``).

Launch with torchrun (``torchrun --nproc_per_node=N -m ugatit_rs train ...``) or call
:func:`setup` yourself in every process. ``batch_size`` is per rank; the global batch at step k is
the same images whatever the number of ranks (rank r takes its slice), so 2 ranks × batch 2 train
exactly what 1 process × batch 4 does, to float rounding.

After each backward pass the trainer hands each optimizer's gradients to
:class:`GradientAverager`, which all-reduces them in buckets and divides by the world size, in
place, before the Rust Adam update: parameters and spectral-norm vectors then stay identical on
every rank.
"""

from __future__ import annotations

import contextlib
import datetime
import os

import torch
import torch.distributed as dist

#: How long a collective may wait for a missing rank before every rank stops with an error.
DEFAULT_TIMEOUT = datetime.timedelta(minutes=5)


def is_distributed() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a data-parallel run)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many ranks train together (1 outside a data-parallel run)."""
    return dist.get_world_size() if is_distributed() else 1


def launched_by_torchrun() -> bool:
    """True when torchrun (or a launcher setting the same variables) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def setup(device: str = "cuda", timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> str:
    """Joins the process group torchrun describes in the environment (NCCL for CUDA, Gloo for
    the CPU) and binds this rank to its ``LOCAL_RANK`` GPU. Returns the device this rank trains
    on (``"cuda:<local rank>"`` or ``"cpu"``)."""
    if not launched_by_torchrun():
        raise RuntimeError("setup() needs torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, ...)")
    cuda = str(device).startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise ValueError("device is CUDA but no GPU is available on this node")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timeout)
    return f"cuda:{local_rank}" if cuda else "cpu"


def teardown() -> None:
    """Waits for every rank (bounded by the group's timeout), then leaves the process group, so
    no rank exits while another still talks to it."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        dist.barrier()
    except Exception:  # a peer is gone: nothing to wait for
        pass
    dist.destroy_process_group()


class GradientAverager:
    """Averages gradients across ranks in place: flattened into buckets of at most
    ``bucket_bytes``, all-reduced, divided by the world size, copied back."""

    def __init__(self, bucket_bytes: int = 32 << 20):
        self.bucket_elements = max(1, bucket_bytes // 4)
        self.world = world_size()
        self.bytes_reduced = 0

    def __call__(self, grads: list[torch.Tensor]) -> None:
        bucket: list[torch.Tensor] = []
        size = 0
        for g in grads:
            bucket.append(g)
            size += g.numel()
            if size >= self.bucket_elements:
                self._reduce(bucket)
                bucket, size = [], 0
        if bucket:
            self._reduce(bucket)

    def _reduce(self, bucket: list[torch.Tensor]) -> None:
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat.div_(self.world)
        self.bytes_reduced += flat.numel() * flat.element_size()
        offset = 0
        for g in bucket:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n


def broadcast_state(trainer) -> None:
    """Makes every rank start from rank 0's networks (parameters and spectral-norm vectors)."""
    with torch.no_grad():
        for net in trainer.networks().values():
            for tensor in list(net.parameters()) + list(net.buffers()):
                dist.broadcast(tensor.data, src=0)


def local_slice(batch: torch.Tensor) -> torch.Tensor:
    """This rank's share of a global batch: rows ``[r·n/W, (r+1)·n/W)``."""
    n, world, r = len(batch), world_size(), rank()
    per = n // world
    if per * world != n:
        raise ValueError(f"a global batch of {n} does not split evenly over {world} ranks")
    return batch[r * per : (r + 1) * per]


def any_rank(flag: bool, device) -> bool:
    """True on every rank if ``flag`` is true on any (e.g. a non-finite loss somewhere)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


#: TrainConfig fields that may differ between ranks: where each process finds its files and
#: what only rank 0 does (logging, checkpoints, evaluation). All others shape the training.
PER_RANK_FIELDS = frozenset(
    {
        "dataset",
        "result_dir",
        "device",
        "num_workers",
        "print_freq",
        "save_freq",
        "keep_checkpoints",
        "eval_freq",
        "eval_images",
        "resume",
        "init_from",
    }
)


def check_ranks_agree(facts: dict[str, object], device) -> None:
    """Refuses to start, on every rank, when the ranks' ``facts`` (the training config, the
    dataset sizes, the step resumed from) differ: replicas would silently train different models,
    wait for each other until the timeout, or abort in a collective of mismatched shapes."""
    if not is_distributed():
        return
    mine = {key: str(value) for key, value in facts.items()}
    everyone: list[dict[str, str] | None] = [None] * world_size()
    device = torch.device(device)
    # NCCL sends the pickled objects from the current CUDA device: make it this rank's own.
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        dist.all_gather_object(everyone, mine)
    differing = sorted({key for theirs in everyone for key in mine if theirs.get(key) != mine[key]})
    if differing:
        detail = "; ".join(
            f"{key}: " + ", ".join(f"{theirs.get(key)} on rank {r}" for r, theirs in enumerate(everyone))
            for key in differing
        )
        raise ValueError(f"the ranks disagree, so they would not train one model together: {detail}")
