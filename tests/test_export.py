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
    # Before: `-o` naming the checkpoint replaced it with the export.
    before = open(ckpt, "rb").read()
    for target, message in ((ckpt, "would overwrite the checkpoint"), (str(tmp_path / "x.safetensors"), "name it")):
        bad = subprocess.run([sys.executable, "-m", "ugatit_rs", "export", ckpt, "-o", target],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr[-2000:]
    assert open(ckpt, "rb").read() == before
    with pytest.raises(TypeError, match="Generator"):
        E.onnx(tr.dis_ga, tmp_path / "d.onnx")


def test_an_export_named_pt_is_torchscript_and_flags_that_do_not_apply_are_refused(tmp_path, capsys):
    # Before: `-o model.pt` without --format wrote ONNX into model.pt, and --web took --format,
    # -o, --uint8 and --no_attention without a word and ignored them.
    from ugatit_rs.cli import main

    tr = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu"))
    ckpt = tr.save_checkpoint(str(tmp_path / "c.safetensors"))
    assert main(["export", ckpt, "-o", str(tmp_path / "g.pt")]) == 0
    traced = torch.jit.load(str(tmp_path / "g.pt"))
    x = torch.rand(1, 3, 96, 96) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(traced(x)[0], tr.gen_a2b.eval()(x)[0], atol=1e-5)
    # Usage errors come before the checkpoint is read: a missing one is not what they say.
    missing = str(tmp_path / "missing.safetensors")
    for argv, message in (
        (["-o", "g.pt", "--format", "onnx"], "g.pt: the name says torchscript but --format is onnx"),
        (["-o", "g.onnx", "--format", "torchscript"], "g.onnx: the name says onnx but --format is torchscript"),
        (["-o", "g.pt", "--fp16"], "--fp16 is for ONNX exports"),
        (["--web", "page", "--format", "onnx", "--uint8"], "--format, --uint8 do not apply to --web"),
    ):
        assert main(["export", missing, *argv]) == 2
        assert message in capsys.readouterr().err, argv
    assert not os.path.exists("page")
    # --checkpoint, as translate, eval and serve spell it (it was "unrecognized arguments").
    assert main(["export", "--checkpoint", ckpt, "-o", str(tmp_path / "flag.onnx")]) == 0
    assert os.path.getsize(tmp_path / "flag.onnx") > 0
    assert main(["export", ckpt, "--checkpoint", missing]) == 2
    assert "two checkpoints given" in capsys.readouterr().err
    # The output as a positional beside --checkpoint: the message says where it goes.
    assert main(["export", "--checkpoint", ckpt, "g.onnx"]) == 2
    assert "to name the file to write, use -o g.onnx" in capsys.readouterr().err
    assert main(["export", "-o", "g.onnx"]) == 2
    assert "give the checkpoint to export" in capsys.readouterr().err


@pytest.mark.parametrize("light, size", [(True, 96), (False, 96)])
def test_fp16_onnx_error_is_small_and_keeps_float_io(tmp_path, light, size):
    pytest.importorskip("onnxconverter_common")
    g = generator(light, size).eval()
    session = ort.InferenceSession(E.onnx(g, tmp_path / "g16.onnx", fp16=True), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(float)"]
    assert os.path.getsize(tmp_path / "g16.onnx") < 0.7 * os.path.getsize(E.onnx(g, tmp_path / "g32.onnx"))
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        ref = g(x)
    errors = [float(np.abs(a - b.numpy()).max()) for a, b in zip(session.run(None, {"image": x.numpy()}), ref)]
    # Measured: about 1.5e-3 on the translation (float16 has 11 significant bits).
    assert errors[0] <= 1e-2 and max(errors) <= 2e-2, errors
    assert errors[0] > 1e-6  # it really computes in float16


@pytest.mark.parametrize("opset", list(E.OPSETS))
def test_the_oldest_and_newest_opsets_export_and_run(tmp_path, opset):
    g = generator(True, 96).eval()
    session = ort.InferenceSession(E.onnx(g, tmp_path / "g.onnx", uint8=True, opset=opset))
    assert session.run(None, {"image": np.zeros((1, 96, 96, 3), np.uint8)})[0].shape == (1, 96, 96, 3)


def test_bad_export_targets_and_opsets_are_refused_before_tracing(tmp_path, capfd):
    g = generator(True, 96)
    # Before: a TorchScript RuntimeError ("enforce fail at inline_container.cc"), and for an
    # opset the exporter cannot write, the whole traced graph dumped on stdout first.
    with pytest.raises(IsADirectoryError, match="is a folder"):
        E.torchscript(g, tmp_path)
    for opset in (E.OPSETS[0] - 1, E.OPSETS[1] + 1, "17", True):
        with pytest.raises(ValueError, match="opset must be an int between 11 and 21"):
            E.onnx(g, tmp_path / "g.onnx", opset=opset)
    assert capfd.readouterr().out == "" and not os.listdir(tmp_path)


def test_uint8_export_quantises_like_the_translator(tmp_path):
    g = generator(True, 96).eval()
    session = ort.InferenceSession(E.onnx(g, tmp_path / "g8.onnx", uint8=True), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(E.torchscript(g, tmp_path / "g8.pt", uint8=True))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 96, 128, 3), dtype=np.uint8)  # dynamic size, NHWC
    with torch.no_grad():
        out = g(torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1))[0]
    expected = np.stack([ug.viz.to_image(o) for o in out])
    from_ort = session.run(None, {"image": images})[0]
    from_ts = scripted(torch.from_numpy(images))[0].numpy()
    assert from_ort.dtype == np.uint8 and from_ort.shape == images.shape
    # Float rounding can move a value across a .5 boundary: at most 1 level, on few pixels.
    for got in (from_ort, from_ts):
        diff = np.abs(got.astype(int) - expected.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize("attention", [True, False])
def test_torchscript_runs_under_tch_cmodule_with_the_same_result(tmp_path, attention):
    g = generator(False, 96).eval()
    path = E.torchscript(g, tmp_path / "g.pt", attention=attention)
    from_tch = ug._native.ExportedGenerator(path)
    assert repr(from_tch) == f"ExportedGenerator({path!r})"
    scripted = torch.jit.load(path)
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        ref = g(x)
        from_jit = scripted(x)
    got = from_tch.forward(x)
    if not attention:
        from_jit, ref = (from_jit,), ref[:1]
        assert got[1].numel() == 0 and got[2].numel() == 0
    for a, b, c in zip(got, from_jit, ref):
        assert torch.equal(a, b)  # the same file in the same libtorch: identical
        assert (a - c).abs().max().item() <= 1e-5


def test_exported_generator_refuses_what_is_not_torchscript(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(ug.StateDictError, match="not a TorchScript file"):
        ug._native.ExportedGenerator(str(bad))
    with pytest.raises(FileNotFoundError):
        ug._native.ExportedGenerator(str(tmp_path / "missing.pt"))
    os.mkfifo(tmp_path / "fifo.pt")
    with pytest.raises(OSError, match="not a regular file"):
        ug._native.ExportedGenerator(str(tmp_path / "fifo.pt"))
    # libtorch's reader skips the archive's CRCs: before, a bit flipped in a weight loaded.
    path = E.torchscript(ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True), str(tmp_path / "g.pt"))
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x04
    open(path, "wb").write(data)
    with pytest.raises(ug.StateDictError, match="g.pt: .* fails its CRC check, the file is corrupted"):
        ug._native.ExportedGenerator(path)
