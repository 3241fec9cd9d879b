"""TrainConfig(cuda_graph=True): one training step captured in a CUDA graph and replayed.

On the CPU: the two halves a replay is made of (``prepare_replay``, the host bookkeeping, and
``step_kernels``, the device work a graph captures) compute exactly what ``step`` computes,
LR decay and the full model's factored FC.0 gradient included; and the wrapper's control flow
(warm-up, one capture, prepare-copy-replay, eager fallbacks) against stand-ins for torch.cuda's
graph API. On CUDA: a graph-replayed run matches an eager run, and a batch of another shape
steps eagerly."""

import pytest
import torch
import ugatit_rs as ug


def _config(light, device="cpu", **kw):
    return ug.TrainConfig(
        light=light, img_size=96, ch=4, n_res=1, iteration=5, decay_flag=True, device=device, seed=5, **kw
    )


def _batches(n, batch=1, device="cpu"):
    gen = torch.Generator().manual_seed(2)
    return [tuple((torch.rand(batch, 3, 96, 96, generator=gen) * 2 - 1).to(device) for _ in "ab") for _ in range(n)]


def _params(trainer):
    return {
        f"{n}.{k}": v.detach().clone() for n, net in trainer.networks().items() for k, v in net.state_dict().items()
    }


@pytest.mark.parametrize("light", [True, False])
def test_split_step_is_the_step(light):
    eager, split = ug.Trainer(_config(light)), ug.Trainer(_config(light))
    for a, b in _batches(5):  # iteration=5: the LR decays from step 3 on
        expected = eager.step(a, b)
        with torch.enable_grad():
            lr = split._native.prepare_replay()
            losses = split._native.step_kernels(a, b)
        assert lr == expected["lr"]
        assert {n: t.item() for n, t in losses} == {k: v for k, v in expected.items() if k != "lr"}
        assert split.step_count == eager.step_count
    got, want = _params(split), _params(eager)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_cuda_graph_is_refused_where_it_cannot_run():
    with pytest.raises(ValueError, match="cuda_graph"):
        ug.Trainer(_config(True, cuda_graph=True))
    with pytest.raises(ValueError, match="cuda_graph"):
        ug.Trainer(ug.TrainConfig(model="cyclegan", img_size=96, ch=4, n_res=1, device="cuda", cuda_graph=True))


def test_a_frozen_parameter_is_refused_by_both_halves():
    """A captured update would still write a parameter frozen after the capture, so the graph's
    halves refuse one (an eager step skips it, as torch.optim.Adam does)."""
    trainer = ug.Trainer(_config(True))
    next(iter(trainer.gen_b2a.parameters())).requires_grad_(False)
    a, b = _batches(1)[0]
    for half in (trainer._native.prepare_replay, lambda: trainer._native.step_kernels(a, b)):
        with pytest.raises(ValueError, match=r"genB2A parameter \S+ has requires_grad=False.*cuda_graph"):
            half()
    assert trainer.step_count == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("light", [True, False])
def test_replayed_steps_match_eager_steps(light):
    eager = ug.Trainer(_config(light, "cuda", iteration=8))
    graphed = ug.Trainer(_config(light, "cuda", iteration=8, cuda_graph=True))
    worst = 0.0
    for a, b in _batches(8, device="cuda"):
        want, got = eager.step(a, b), graphed.step(a, b)
        assert got.keys() == want.keys()
        worst = max(worst, max(abs(got[k] - want[k]) / max(abs(want[k]), 1e-6) for k in want))
    assert graphed._graph_step.replays == 8 - 3, "3 eager warm-up steps, then replays"
    assert graphed.step_count == eager.step_count == 8
    got, want = _params(graphed), _params(eager)
    param_diff = max((got[k] - want[k]).abs().max().item() for k in want)
    print(f"cuda_graph vs eager after 8 steps: losses {worst:.2e} relative, parameters {param_diff:.2e}")
    # The replay runs the captured kernels; only cuDNN's per-call algorithm choice could differ.
    assert worst <= 1e-4 and param_diff <= 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_other_batch_shapes_step_eagerly():
    trainer = ug.Trainer(_config(True, "cuda", cuda_graph=True))
    for a, b in _batches(4, device="cuda"):
        trainer.step(a, b)
    replays = trainer._graph_step.replays
    a, b = _batches(1, batch=2, device="cuda")[0]
    losses = trainer.step(a, b)
    assert trainer._graph_step.replays == replays and trainer.step_count == 5
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())


class _FakeNative:
    """Stands in for the native trainer: records the calls the graph wrapper makes."""

    def __init__(self, fail_capture=False):
        self.calls, self.fail_capture = [], fail_capture

    def step_lazy(self, a, b, grad_hook=None):
        self.calls.append("eager")
        return [("d_loss", a.sum())], 0.5

    def prepare_replay(self):
        self.calls.append("prepare")
        return 0.25

    def step_kernels(self, a, b):
        self.calls.append("capture")
        if self.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.static, self.loss = a, torch.zeros(())
        return [("d_loss", self.loss)]


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda's stream and graph API on the CPU: a 'capture' runs the body once (as the
    fake native's step_kernels only records), a replay recomputes the loss from the static input."""
    import contextlib

    natives = []

    class Graph:
        def replay(self):
            native = natives[-1]
            native.calls.append("replay")
            native.loss.fill_(native.static.sum())

    class Stream:
        def __init__(self, *args, **kwargs):
            pass

        def wait_stream(self, other):
            pass

    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", lambda g: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: Stream())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    return natives


def test_graph_step_warms_up_captures_once_and_replays(fake_cuda):
    from ugatit_rs._cuda_graph import CudaGraphStep

    native = _FakeNative()
    fake_cuda.append(native)
    step = CudaGraphStep(native, warmup=2)
    batches = [(torch.full((1, 3, 4, 4), float(i)), torch.zeros(1, 3, 4, 4)) for i in range(5)]
    results = [step(a, b) for a, b in batches]
    assert native.calls == ["eager", "eager", "capture"] + ["prepare", "replay"] * 3
    # Each replay saw its own batch (copied into the static input) and returned its own loss.
    assert [float(losses[0][1]) for losses, _ in results] == [0.0, 48.0, 96.0, 144.0, 192.0]
    assert [lr for _, lr in results] == [0.5, 0.5, 0.25, 0.25, 0.25]
    assert step.replays == 3 and step.captured
    step(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))  # another batch shape: eager
    assert native.calls[-1] == "eager" and step.replays == 3


def test_failed_capture_warns_and_steps_eagerly(fake_cuda):
    from ugatit_rs._cuda_graph import CudaGraphStep

    native = _FakeNative(fail_capture=True)
    fake_cuda.append(native)
    step = CudaGraphStep(native, warmup=1)
    a = torch.ones(1, 3, 4, 4)
    step(a, a)
    with pytest.warns(RuntimeWarning, match="capturing the training step failed.*stream is capturing"):
        step(a, a)
    step(a, a)
    assert native.calls == ["eager", "capture", "eager", "eager"] and not step.captured
