"""Opt-in compute settings (src/nn/compute.rs): bf16 training, channels-last, and
``ugatit_rs.compute`` for inference. They change the numbers by rounding only — checked against
the float32 default with tolerances measured here — and leave master weights, optimizer state
and outputs in float32."""

import threading

import pytest
import torch
import ugatit_rs as ug

SMALL = dict(light=True, img_size=96, ch=4, n_res=1, iteration=10, device="cpu", seed=3)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, 96, 96, generator=g) * 2 - 1, torch.rand(1, 3, 96, 96, generator=g) * 2 - 1


def _first_step(**opts):
    trainer = ug.Trainer(ug.TrainConfig(**SMALL, **opts))
    return trainer, trainer.step(*_batch())


def test_bf16_training_runs_in_bf16_on_float32_master_weights(tmp_path):
    _, fp32 = _first_step()
    trainer, bf16 = _first_step(precision="bf16")
    assert fp32.keys() == bf16.keys()
    rel = {k: abs(bf16[k] - fp32[k]) / max(abs(fp32[k]), 1e-3) for k in fp32 if k != "lr"}
    # bfloat16 keeps 8 bits of mantissa: measured, losses move by 2e-5..2e-3 relative...
    assert max(rel.values()) < 0.02, rel
    # ...and they do move: the convolutions really ran in bfloat16.
    assert max(rel.values()) > 1e-4, rel
    for net in trainer.networks().values():
        assert all(t.dtype == torch.float32 for t in net.state_dict().values())
    # The checkpoint (networks, Adam moments) is float32 and records the precision.
    path = trainer.save_checkpoint(str(tmp_path / "bf16.safetensors"))
    assert all(t.dtype == torch.float32 for _, t in ug._native.read_checkpoint(path))
    metadata = "".join(v for _, v in ug._native.read_checkpoint_metadata(path)).replace(" ", "")
    assert '"precision":"bf16"' in metadata
    resumed = ug.Trainer(ug.TrainConfig(**SMALL))
    resumed.load_checkpoint(path)
    assert resumed.step_count == 1


def test_channels_last_is_the_same_function():
    _, default = _first_step()
    _, nhwc = _first_step(channels_last=True)
    for k, v in default.items():
        assert nhwc[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


@pytest.mark.parametrize(
    "opts,match",
    [
        (dict(precision="fp16"), "precision"),
        (dict(precision="bfloat16"), "precision"),
        (dict(precision="bf16", model="cyclegan"), "precision"),
        (dict(channels_last=True, variant="tf", n_res=4), "channels_last"),
    ],
)
def test_unsupported_combinations_are_refused(opts, match):
    cfg = {**SMALL, **opts}
    with pytest.raises(ValueError, match=match):
        ug.TrainConfig(**cfg)


def test_compute_context_for_inference():
    g = ug.Generator(ngf=8, n_blocks=1, img_size=96, light=True).eval()
    x = _batch()[0]
    with torch.no_grad():
        ref = g(x)[0]
        with ug.compute("bf16", channels_last=True):
            low = g(x)
            # Another thread's forwards keep float32: the setting is per thread.
            other = []
            t = threading.Thread(target=lambda: other.append(g(x)[0]))
            t.start()
            t.join()
        after = g(x)[0]
    assert all(o.dtype == torch.float32 for o in low)
    diff = (low[0] - ref).abs().max().item()
    assert 1e-6 < diff < 0.1, diff
    assert torch.equal(other[0], ref) and torch.equal(after, ref)
    with pytest.raises(ValueError, match="precision"):
        ug.compute("int8")  # where it is written, not at the `with`


def test_one_compute_object_enters_again_nests_and_decorates():
    # Before: a second `with` on the same object raised contextlib's "AttributeError:
    # '_GeneratorContextManager' object has no attribute 'args'".
    g = ug.Generator(ngf=8, n_blocks=1, img_size=96, light=True).eval()
    x = _batch()[0]
    low, exact = ug.compute("bf16"), ug.compute()
    with torch.no_grad():
        ref = g(x)[0]
        with low:
            first = g(x)[0]
        with low:
            assert torch.equal(g(x)[0], first)
            with exact:
                assert torch.equal(g(x)[0], ref)
                with low:  # the same object inside itself
                    assert torch.equal(g(x)[0], first)
                assert torch.equal(g(x)[0], ref)
            assert torch.equal(g(x)[0], first)
        assert torch.equal(g(x)[0], ref)
        assert not torch.equal(first, ref)
        assert torch.equal(low(lambda: g(x)[0])(), first) and torch.equal(g(x)[0], ref)
    assert repr(low) == "compute(precision='bf16', channels_last=False)"
