"""Official .pt checkpoints in and out, and the command line."""

import os
import pickle
import subprocess
import sys

import pytest
import torch
import ugatit_rs as ug
from datasets import make_dataset
from reference.training import OfficialLoop
from ugatit_rs.cli import build_parser, config_from_args, main
from ugatit_rs.convert import NETWORK_NAMES, load_official_into, official_to_ours, ours_to_official, read_official

CLI = [sys.executable, "-m", "ugatit_rs.cli"]


def _official_file(path, light=True, seed=0):
    torch.manual_seed(seed)
    loop = OfficialLoop(light, 96, 4, 1, 10)
    for net in (loop.disGA, loop.disLA):  # give the SN vectors a non-initial state
        net(torch.rand(1, 3, 96, 96))
    torch.save({name: net.state_dict() for name, net in loop.networks().items()}, path)
    return loop


def test_official_pt_converts_and_loads(tmp_path):
    pt = tmp_path / "toy_params_0000010.pt"
    loop = _official_file(pt)
    ours = official_to_ours(pt, tmp_path / "converted.safetensors")
    cfg = ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu", seed=5)
    trainer = ug.Trainer(cfg)
    assert trainer.load_checkpoint(ours) == 10
    for name, net in loop.networks().items():
        theirs = net.state_dict()
        mine = trainer.networks()[name].state_dict()
        assert list(mine) == list(theirs)
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), name
    fresh = ug.Trainer(cfg)
    assert load_official_into(fresh, pt) == 10
    assert torch.equal(fresh.gen_b2a.state_dict()["FC.0.weight"], loop.genB2A.state_dict()["FC.0.weight"])


def test_a_pt_holding_only_generators_translates(tmp_path):
    from ugatit_rs.translate import Translator

    loop = _official_file(tmp_path / "all.pt")
    x = torch.rand(2, 3, 96, 96) * 2 - 1
    with torch.no_grad():
        expected = {"A2B": loop.genA2B(x)[0], "B2A": loop.genB2A(x)[0]}
    # Before: "expected a dict with genA2B, genB2A, disGA, disGB, disLA, disLB", though a
    # translation needs one generator, and people share just that.
    torch.save({"genA2B": loop.genA2B.state_dict()}, tmp_path / "a2b.pt")
    torch.save(loop.genB2A.state_dict(), tmp_path / "bare.pt")  # stands for either direction
    for path, direction, wanted in (("a2b.pt", "A2B", "A2B"), ("bare.pt", "B2A", "B2A"), ("bare.pt", "A2B", "B2A")):
        g = Translator.from_checkpoint(tmp_path / path, direction=direction).generator
        with torch.no_grad():
            assert torch.allclose(g(x)[0], expected[wanted], rtol=0, atol=1e-5), (path, direction)
    with pytest.raises(
        ValueError, match=r"a2b\.pt: expected a dict with genB2A \(or a generator state dict\), found \['genA2B'\]"
    ):
        Translator.from_checkpoint(tmp_path / "a2b.pt", direction="B2A")
    torch.save({"genA2B": "weights"}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"odd\.pt: genA2B is not a state dict \(found str\)"):
        Translator.from_checkpoint(tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="expected a dict with genA2B, genB2A, disGA"):  # training needs all six
        load_official_into(
            ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu")), tmp_path / "a2b.pt"
        )


@pytest.mark.parametrize("legacy", [False, True])
def test_an_official_pt_is_read_once_per_use(tmp_path, monkeypatch, legacy):
    # Before: Translator.from_checkpoint read a .pt twice (once to see whether it was CycleGAN's)
    # and `train --init_from` three times (the CLI's and the trainer's architecture check, then
    # the weights): 2.3 s and 2.7 GB a read for a full 256 px model. Keys and shapes now come
    # from the file mapped, not read; the legacy (pre-1.6) format, which cannot be mapped, is read.
    pt = tmp_path / "toy_params_0000010.pt"
    loop = _official_file(pt)
    if legacy:
        torch.save(torch.load(pt, weights_only=True), pt, _use_new_zipfile_serialization=False)
    reads = []
    load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(k.get("mmap", False)) or load(*a, **k))
    translator = ug.translate.Translator.from_checkpoint(pt, direction="B2A", img_size=96)
    assert sorted(reads) == ([False, False] if legacy else [False, True])
    assert torch.equal(translator.generator.state_dict()["FC.0.weight"], loop.genB2A.state_dict()["FC.0.weight"])
    reads.clear()
    args = build_parser().parse_args(["train", "--init_from", str(pt), "--img_size", "96", "--device", "cpu"])
    trainer = ug.Trainer(config_from_args(args))
    assert sorted(reads) == ([False] * 3 if legacy else [False, True, True])
    for name, net in loop.networks().items():
        theirs, mine = net.state_dict(), trainer.networks()[name].state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), name


def test_ours_exports_to_official_layout(tmp_path):
    cfg = ug.TrainConfig(light=False, img_size=96, ch=4, n_res=1, device="cpu", seed=2)
    trainer = ug.Trainer(cfg)
    trainer.step(torch.rand(1, 3, 96, 96) * 2 - 1, torch.rand(1, 3, 96, 96) * 2 - 1)
    ckpt = trainer.save_checkpoint(str(tmp_path / "run_params_0000001.safetensors"))
    pt = ours_to_official(ckpt, tmp_path / "run_params_0000001.pt")
    loaded = torch.load(pt, map_location="cpu", weights_only=True)
    loop = OfficialLoop(False, 96, 4, 1, 10)
    for name, net in loop.networks().items():
        net.load_state_dict(loaded[name], strict=True)  # the official UGATIT.load
        mine = trainer.networks()[name].state_dict()
        assert all(torch.equal(v, mine[k]) for k, v in net.state_dict().items())


def test_reading_weights_leaves_the_optimizer_state_unread(tmp_path, monkeypatch):
    # Before: ours_to_official (and --init_from with our checkpoint) read every tensor, the Adam
    # moments too (twice the weights), then dropped them: 8.4 GB peak for a full 256 px model's
    # 2.7 GB of weights, now 3.1 GB, and the read 4x faster.
    trainer = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu", seed=2))
    ckpt = trainer.save_checkpoint(str(tmp_path / "run_params_0000001.safetensors"))
    read = []
    original = ug._native.read_checkpoint

    def recording(*args):
        tensors = original(*args)
        read.extend(tensors)
        return tensors

    monkeypatch.setattr(ug._native, "read_checkpoint", recording)
    pt = ours_to_official(ckpt, tmp_path / "run.pt")
    ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu", init_from=ckpt))
    assert read and all(name.split(".")[0] in NETWORK_NAMES for name, _ in read)
    assert sorted(torch.load(pt, weights_only=True)) == sorted(NETWORK_NAMES)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > PWNED",))


def test_pickles_that_run_code_are_refused(tmp_path):
    evil = tmp_path / "evil_params_0000001.pt"
    with open(evil, "wb") as f:
        pickle.dump({"genA2B": _Evil()}, f)
    with pytest.raises(ValueError, match="refused"):
        read_official(evil)
    assert not (tmp_path / "PWNED").exists() and not os.path.exists("PWNED")
    (tmp_path / "other.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="other.pt"):
        read_official(tmp_path / "other.pt")
    torch.save({"genA2B": {}}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="genB2A"):
        read_official(tmp_path / "partial.pt")


def test_cli_train_test_translate_convert(tmp_path, capsys):
    data = make_dataset(tmp_path / "toy", n_train=3, n_test=2)
    results = tmp_path / "results"
    common = [
        "--dataset",
        data,
        "--light",
        "true",
        "--img_size",
        "96",
        "--ch",
        "4",
        "--n_res",
        "1",
        "--device",
        "cpu",
        "--result_dir",
        str(results),
        "--num_workers",
        "1",
    ]
    run = lambda *args: subprocess.run(CLI + list(args), capture_output=True, text=True, cwd=tmp_path)  # noqa: E731
    out = run("train", *common, "--iteration", "2", "--save_freq", "2", "--print_freq", "2", "--no_progress")
    assert out.returncode == 0, out.stderr
    ckpt = results / "toy" / "model" / "toy_params_0000002.safetensors"
    assert ckpt.exists() and (results / "toy" / "test" / "A2B_2.png").exists()
    out = run("test", *common)
    assert out.returncode == 0 and "2 A2B" in out.stdout, out.stderr
    out = run(
        "translate",
        str(tmp_path / "toy" / "testB"),
        "--checkpoint",
        str(ckpt),
        "--direction",
        "B2A",
        "--output",
        str(tmp_path / "tr"),
        "--heatmap",
        "--no_progress",
    )
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(tmp_path / "tr" / "testB")) == ["000.png", "000_cam.png", "001.png", "001_cam.png"]
    out = run("convert", str(ckpt), str(tmp_path / "x.pt"))
    assert out.returncode == 0 and (tmp_path / "x.pt").exists(), out.stderr
    # Before: converting back over the training checkpoint replaced it with a networks-only file,
    # its optimizer state lost without a word.
    before = ckpt.read_bytes()
    out = run("convert", str(tmp_path / "x.pt"), str(ckpt))
    assert out.returncode == 2 and "already exists; pass --overwrite" in out.stderr and ckpt.read_bytes() == before
    assert run("convert", str(tmp_path / "x.pt"), str(tmp_path / "y.safetensors"), "--overwrite").returncode == 0
    # A missing source, or a folder holding no TensorFlow checkpoint, is named as such (before:
    # only "convert official .pt -> .safetensors, ...", as if the names were wrong).
    # (In this process: a subprocess costs seconds of imports.)
    assert main(["convert", str(tmp_path / "nothing"), str(tmp_path / "z.safetensors")]) == 2
    assert "nothing: no such file, nor a TensorFlow checkpoint" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "tr"), str(tmp_path / "z.safetensors")]) == 2
    assert "expected one TensorFlow checkpoint" in capsys.readouterr().err
    # Before: a folder as the output was "already exists; pass --overwrite", and with
    # --overwrite the list of conversions; a pair with no conversion also asked for --overwrite.
    for argv in ([str(ckpt), str(tmp_path / "tr")], [str(ckpt), str(tmp_path / "tr"), "--overwrite"]):
        assert main(["convert", *argv]) == 2
        assert "tr: is a folder; name the file to write in it" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "x.pt"), str(tmp_path / "x.pt")]) == 2
    assert "convert official .pt -> .safetensors" in capsys.readouterr().err
    out = run("train", "--dataset", str(tmp_path / "missing"), "--device", "cpu")
    assert out.returncode == 2 and "missing: no such folder (a dataset is a folder holding trainA" in out.stderr
    out = run("train", "--img_size", "50", "--device", "cpu")
    assert out.returncode == 2 and "img_size" in out.stderr
    out = run("train", "--light", "maybe")
    assert out.returncode == 2 and "expected true or false" in out.stderr
    # Before: accepted up to 8192 and refused later by the demo's image writer.
    out = run("demo", "--img-size", "5000")
    assert out.returncode == 2 and "--img-size" in out.stderr and "8 and 4096" in out.stderr
