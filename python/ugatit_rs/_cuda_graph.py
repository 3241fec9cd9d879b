"""CUDA-graph training (``TrainConfig(cuda_graph=True)``): one U-GAT-IT step captured once and
replayed for every later step.

At batch 1 a training step is a few thousand small kernels, and on a fast GPU launching them
costs more than running them. A CUDA graph records the kernels of one step and launches them all
at once. The Rust trainer's kernels run in this process on the stream ``torch.cuda.graph``
captures, so PyTorch's capture records them. The native trainer splits a step for this:
``step_kernels`` is device work only (forwards, backward, both Adam updates, rho clipping,
losses), which is captured; ``prepare_replay`` is the host bookkeeping a replay cannot do (the
step count, the LR and Adam's bias corrections, written into device scalars that the captured
kernels read). A replay runs the captured kernels, so it computes what an eager step computes.

A graph replays fixed addresses: each batch is copied into static input tensors, the losses come
back in static output tensors (copied out, since the next replay overwrites them), and the
trainer updates every parameter, moment and spectral-norm vector in place. A batch of another
shape, dtype or device runs as an eager step.
"""

from __future__ import annotations

import warnings

import torch

#: Eager steps before the capture: cuDNN's benchmark mode tries its algorithms on the first
#: calls (with host synchronisation, which a capture forbids) and autograd starts its threads.
WARMUP_STEPS = 3


class CudaGraphStep:
    """Runs training steps of a native U-GAT-IT trainer, eagerly until the capture, then by
    replaying one captured step. Called like ``step_lazy``: returns ``(losses, lr)`` with the
    losses as device tensors."""

    def __init__(self, native, warmup: int = WARMUP_STEPS):
        self._native = native
        self._warmup = warmup
        self._graph: torch.cuda.CUDAGraph | None = None
        self._inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._outputs: list[tuple[str, torch.Tensor]] = []
        self._failed = False
        self.replays = 0

    @property
    def captured(self) -> bool:
        return self._graph is not None

    def __call__(self, real_a: torch.Tensor, real_b: torch.Tensor):
        if self._graph is None and not self._failed:
            if self._warmup > 0:
                self._warmup -= 1
                return self._eager_on_side_stream(real_a, real_b)
            self._capture(real_a, real_b)
        if self._graph is None or not self._fits(real_a, real_b):
            return self._native.step_lazy(real_a, real_b)
        lr = self._native.prepare_replay()
        self._inputs[0].copy_(real_a)
        self._inputs[1].copy_(real_b)
        self._graph.replay()
        self.replays += 1
        values = torch.stack([t for _, t in self._outputs])  # one copy out of the graph's buffers
        return list(zip([n for n, _ in self._outputs], values.unbind())), lr

    def _fits(self, real_a: torch.Tensor, real_b: torch.Tensor) -> bool:
        return all(
            x.shape == s.shape and x.dtype == s.dtype and x.device == s.device
            for x, s in zip((real_a, real_b), self._inputs)
        )

    def _eager_on_side_stream(self, real_a, real_b):
        # PyTorch's recipe for warming up before a capture: a side stream, joined afterwards.
        side = torch.cuda.Stream(device=real_a.device)
        side.wait_stream(torch.cuda.current_stream(real_a.device))
        with torch.cuda.stream(side):
            result = self._native.step_lazy(real_a, real_b)
        torch.cuda.current_stream(real_a.device).wait_stream(side)
        return result

    def _capture(self, real_a: torch.Tensor, real_b: torch.Tensor) -> None:
        """Records one step's kernels. Nothing runs during a capture, so a failed capture leaves
        the trainer as it was: training then goes on eagerly, with a warning saying why."""
        self._inputs = (real_a.clone(), real_b.clone())
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(real_a.device)
        try:
            with torch.cuda.graph(graph):
                self._outputs = self._native.step_kernels(*self._inputs)
        except Exception as e:  # noqa: BLE001 - any failure means: train eagerly, and say so
            self._failed, self._inputs, self._outputs = True, None, []
            warnings.warn(
                f"cuda_graph: capturing the training step failed ({type(e).__name__}: {e}); "
                "training continues with eager steps",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        self._graph = graph
