"""The TensorFlow variant and the TensorFlow checkpoint reader, against outputs and checkpoints
written by the real TensorFlow 2.21 (tests/fixtures/tf/, made by
scripts/make_tf_fixture.py from the release's structure and variable names).

Tolerance: the generators differ from TensorFlow's outputs by up to ~4e-5 on the translation.
That is float rounding: a 1-ulp change of the input moves our own translation by as much (the
random weights, std 0.2, amplify rounding through 20-odd layers). Each test measures that spread
for its network and allows 4x it; discriminators agree to ~3e-7.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import ugatit_rs as ug
from ugatit_rs import _native
from ugatit_rs import tf_weights as T
from ugatit_rs.translate import Translator

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "tf")
TAGS = ["light_96", "light_128", "full_96"]


def _fixture(tag):
    folder = os.path.join(FIXTURES, tag)
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    ref = dict(np.load(os.path.join(folder, "outputs.npz")))
    # The inputs are drawn from the fixture's seed, as scripts/make_tf_fixture.py drew them.
    rng = np.random.default_rng(1000 + config["seed"])
    shape = (config["batch"], config["img_size"], config["img_size"], 3)
    ref["x_a"], ref["x_b"] = (rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(2))
    return folder, config, ref


def _nchw(a):
    return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()


def _rounding_spread(net, x):
    """How far a 1-ulp change of every input value moves the network's first output."""
    with torch.no_grad():
        return (net(x)[0] - net(x.nextafter(x + torch.sign(x)))[0]).abs().max().item()


@pytest.mark.parametrize("tag", TAGS)
def test_generators_match_tensorflow(tag):
    folder, config, ref = _fixture(tag)
    state, arch = T.read(folder)
    assert (arch["ch"], arch["n_res"], arch["light"]) == (config["ch"], config["n_res"], config["light"])
    for key, net, x in (("a2b", "genA2B", "x_a"), ("b2a", "genB2A", "x_b")):
        g = ug.Generator(ngf=arch["ch"], n_blocks=4, img_size=config["img_size"], light=arch["light"], variant="tf")
        g.load_state_dict(state[net])
        g.eval()
        x = _nchw(ref[x])
        with torch.no_grad():
            out, cam_logit, heatmap = g(x)
        tolerance = 4 * max(_rounding_spread(g, x), 1e-6)
        assert (out - _nchw(ref[f"{key}.out"])).abs().max().item() <= tolerance, key
        assert (cam_logit - torch.from_numpy(ref[f"{key}.cam_logit"])).abs().max().item() <= tolerance, key
        heat_ref = torch.from_numpy(ref[f"{key}.heatmap"])
        assert (heatmap[:, 0] - heat_ref).abs().max().item() <= 1e-5 * max(1.0, heat_ref.abs().max().item())


@pytest.mark.parametrize("tag", TAGS)
def test_discriminators_match_tensorflow(tag):
    folder, config, ref = _fixture(tag)
    state, arch = T.read(folder)
    for key, net, x, n_layers in (
        ("dA_global", "disGA", "x_a", 7),
        ("dA_local", "disLA", "x_a", 5),
        ("dB_global", "disGB", "x_b", 7),
        ("dB_local", "disLB", "x_b", 5),
    ):
        d = ug.Discriminator(ndf=arch["ch"], n_layers=n_layers, variant="tf")
        d.load_state_dict(state[net])
        d.eval()
        with torch.no_grad():
            out, cam_logit, heatmap = d(_nchw(ref[x]))
        expected = _nchw(ref[f"{key}.out"])
        assert out.shape == expected.shape  # the asymmetric padding keeps the size: 3x3 / 12x12 at 96 px
        assert (out - expected).abs().max().item() <= 1e-5, key
        assert (cam_logit - torch.from_numpy(ref[f"{key}.cam_logit"])).abs().max().item() <= 1e-5, key
        heat_ref = torch.from_numpy(ref[f"{key}.heatmap"])
        assert (heatmap[:, 0] - heat_ref).abs().max().item() <= 1e-5 * max(1.0, heat_ref.abs().max().item())


def test_reader_lists_and_checks_every_variable():
    ckpt = _native.TfCheckpoint(os.path.join(FIXTURES, "light_96"))
    names = {name for name, _, _ in ckpt.entries()}
    # The release's CAM keeps two kernels: the dense logit's and the attention weights'.
    assert {"generator_B/CAM_logit/dense/kernel", "generator_B/CAM_logit/kernel"} <= names
    assert "generator_B/conv/conv2d/kernel/Adam" in names and "beta1_power" in names  # optimizer state
    kernel = ckpt.read("generator_B/conv/conv2d/kernel")
    assert kernel.shape == (7, 7, 3, 2) and kernel.dtype == torch.float32
    with pytest.raises(KeyError, match="no variable"):
        ckpt.read("generator_B/nope")
    with pytest.raises(FileNotFoundError):
        _native.TfCheckpoint(os.path.join(FIXTURES, "missing"))


def test_unknown_or_missing_variables_are_named(monkeypatch):
    real = _native.TfCheckpoint

    class Extra:
        def __init__(self, path):
            self.inner = real(path)
            self.prefix = self.inner.prefix

        def entries(self):
            kept = [e for e in self.inner.entries() if e[0] != "generator_A/G_logit/conv2d/bias"]
            return kept + [("generator_B/something_new/kernel", 1, [3])]

        def read(self, name, layout="same"):
            return self.inner.read(name, layout)

        def shape_as(self, name, layout):
            return self.inner.shape_as(name, layout)

    monkeypatch.setattr(_native, "TfCheckpoint", Extra)
    with pytest.raises(ug.StateDictError, match="generator_B/something_new/kernel"):
        T.read(os.path.join(FIXTURES, "light_96"))

    class Missing(Extra):
        def entries(self):
            return [e for e in self.inner.entries() if e[0] != "generator_A/G_logit/conv2d/bias"]

    monkeypatch.setattr(_native, "TfCheckpoint", Missing)
    with pytest.raises(ug.StateDictError, match="genB2A.UpBlock2.11.bias is missing"):
        T.read(os.path.join(FIXTURES, "light_96"))


def test_convert_then_translate_and_export(tmp_path):
    folder, config, ref = _fixture("full_96")
    out = tmp_path / "selfie2anime.safetensors"
    prefix = os.path.join(folder, "UGATIT.model-1000")
    done = subprocess.run(
        [sys.executable, "-m", "ugatit_rs", "convert", prefix + ".index", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    meta = ug.convert.read_metadata(out)
    assert meta["variant"] == "tf" and json.loads(meta["config"])["img_size"] == 96
    # Before: ignored, the file written at the weights' own 96.
    with pytest.raises(ValueError, match="works at img_size=96 only, got img_size=128"):
        T.convert(prefix, tmp_path / "other.safetensors", img_size=128)
    t = Translator.from_checkpoint(str(out), "A2B")
    assert t.generator.config["variant"] == "tf" and "variant='tf'" in repr(t.generator)
    with torch.no_grad():
        got = t.generator(_nchw(ref["x_a"]))[0]
    assert (got - _nchw(ref["a2b.out"])).abs().max().item() <= 4e-4
    ort = pytest.importorskip("onnxruntime")
    from ugatit_rs import export

    session = ort.InferenceSession(export.onnx(t.generator, tmp_path / "tf.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"image": _nchw(ref["x_a"]).numpy()})[0]
    assert np.abs(onnx_out - got.numpy()).max() <= 1e-4


def test_tf_variant_needs_four_blocks():
    with pytest.raises(ValueError, match="n_blocks .n_res. = 4"):
        ug.Generator(ngf=4, n_blocks=3, img_size=96, light=True, variant="tf")
    with pytest.raises(ValueError, match="variant must be"):
        ug.Generator(variant="keras")
    assert ug.Discriminator(ndf=4, n_layers=7, variant="tf").min_input_size() == 96


def test_fine_tune_from_the_release_checkpoint(tmp_path):
    """`train --init_from` a TensorFlow checkpoint: the TF-variant trainer starts from exactly
    those weights (step 0, fresh optimizers), trains with our losses, and resumes exactly."""
    folder = os.path.join(FIXTURES, "light_96")
    from ugatit_rs.init_from import architecture_of

    arch = architecture_of(folder)
    assert arch == {"model": "ugatit", "variant": "tf", "light": True, "ch": 2, "n_res": 4}
    cfg = ug.TrainConfig(img_size=96, device="cpu", init_from=folder, **arch)
    trainer = ug.Trainer(cfg)
    state, _ = T.read(folder)
    assert trainer.step_count == 0
    assert all(torch.equal(v, state["genA2B"][k]) for k, v in trainer.gen_a2b.state_dict().items())
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1
    losses = trainer.step(x, x)
    assert np.isfinite(losses["g_loss"]) and trainer.step_count == 1
    ckpt = trainer.save_checkpoint(str(tmp_path / "ft.safetensors"))
    assert Translator.from_checkpoint(ckpt).generator.config["variant"] == "tf"
    # A PyTorch-variant trainer refuses these weights, naming the difference.
    with pytest.raises(ug.StateDictError, match="variant='tf'"):
        ug.Trainer(ug.TrainConfig(light=True, ch=4, n_res=4, img_size=96, device="cpu", init_from=folder))
    with pytest.raises(ValueError, match="n_res=4"):
        ug.TrainConfig(variant="tf", n_res=2, device="cpu").validate()
