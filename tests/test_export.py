"""ONNX and TorchScript exports, traced from the Rust generator itself, against the Rust
generator in eval mode (ONNX Runtime on the CPU)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import ugatit_rs as ug
from ugatit_rs import export as E

ort = pytest.importorskip("onnxruntime")


def generator(light, size, seed=0):
    torch.manual_seed(seed)
    g = ug.Generator(ngf=8, n_blocks=2, img_size=size, light=light)
    with torch.no_grad():  # move every rho off its initial value so both norms matter
        for name, p in g.named_parameters():
            if name.endswith("rho"):
                p.uniform_(0, 1)
    return g


@pytest.mark.parametrize(
    "light, size, shapes",
    [
        (True, 96, [(2, 3, 96, 96), (1, 3, 128, 160)]),  # dynamic batch and image size
        (False, 96, [(3, 3, 96, 96)]),
        (False, 128, [(1, 3, 128, 128)]),
    ],
)
def test_onnx_runtime_and_torchscript_match_the_rust_generator(tmp_path, light, size, shapes):
    g = generator(light, size)
    onnx_path = E.onnx(g, tmp_path / "g.onnx")
    ts_path = E.torchscript(g, tmp_path / "g.pt")
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(ts_path)
    g.eval()
    for shape in shapes:
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
        with torch.no_grad():
            ref = g(x)
            from_ts = scripted(x)
        from_ort = session.run(None, {"image": x.numpy()})
        for name, a, b, c in zip(("translation", "cam_logit", "heatmap"), from_ort, from_ts, ref):
            scale = max(1.0, c.abs().max().item())
            assert np.abs(a - c.numpy()).max() <= 1e-4 * scale, (name, shape)
            assert (b - c).abs().max().item() <= 1e-5 * scale, (name, shape)


def test_export_does_not_change_the_generator(tmp_path):
    g = generator(True, 96).train()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    E.onnx(g, tmp_path / "g.onnx", attention=False)
    assert g.training and all(torch.equal(before[k], v) for k, v in g.state_dict().items())
    session = ort.InferenceSession(os.fspath(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["translation"]


def test_export_command_from_a_checkpoint(tmp_path):
    tr = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu"))
    ckpt = tr.save_checkpoint(str(tmp_path / "c.safetensors"))
    for fmt, name in (("onnx", "g.onnx"), ("torchscript", "g.pt")):
        out = subprocess.run(
            [sys.executable, "-m", "ugatit_rs", "export", ckpt, "--direction", "B2A", "--format", fmt,
             "-o", str(tmp_path / name)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        assert os.path.getsize(tmp_path / name) > 10_000
    bad = subprocess.run([sys.executable, "-m", "ugatit_rs", "export", ckpt, "-o", str(tmp_path / "no" / "g.onnx")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "output folder not found" in bad.stderr
    with pytest.raises(TypeError, match="Generator"):
        E.onnx(tr.dis_ga, tmp_path / "d.onnx")
