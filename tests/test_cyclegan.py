"""CycleGAN (the paper's baseline) against a pure-PyTorch oracle written from the structure of
junyanz/pytorch-CycleGAN-and-pix2pix (tests/reference/cyclegan.py): networks, initialisation,
training steps with the image pool, the LR policy, their state-dict files, checkpoints and exact
resume, and the shared tools (fit, CLI, Translator, export).

Tolerances: on the CPU, at ngf 8, the Rust networks issue the same libtorch kernels in the same
order as the oracle, and our Adam performs torch.optim.Adam's float operations, so results are
bitwise equal (measured: 0.0 everywhere); the asserts allow 1e-6 so that a harmless reordering
would not fail them while any real difference (a wrong loss term, pool draw or schedule) still
would. From ngf 12 the generator's 7x7 output convolution runs as the equal transposed
convolution on the CPU (faster backward, src/nn/layers.rs), so the sums round differently: that
case is compared with a float64 evaluation of the oracle instead.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import ugatit_rs as ug
from datasets import make_dataset
from reference import cyclegan as R
from ugatit_rs import cli
from ugatit_rs.cyclegan import (
    PatchDiscriminator,
    ResnetGenerator,
    load_their_networks,
    read_their_network,
    save_their_networks,
)
from ugatit_rs.translate import Translator


def _rand(shape, seed):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("size, n_blocks", [(64, 2), (96, 3)])
def test_generator_init_forward_and_backward_match_oracle(size, n_blocks):
    torch.manual_seed(5)
    ref = R.init_weights(R.ResnetGenerator(ngf=8, n_blocks=n_blocks))
    torch.manual_seed(5)
    ours = ResnetGenerator(ngf=8, n_blocks=n_blocks)
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(ref_sd) == list(our_sd)  # their names, their order
    assert all(torch.equal(ref_sd[k], our_sd[k]) for k in ref_sd)  # same seeded initialisation
    x = _rand((2, 3, size, size), 1).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    out, out_ref = ours(x), ref(x_ref)
    assert out.shape == (2, 3, size, size)
    assert (out - out_ref).abs().max().item() <= 1e-6
    weights = _rand(out.shape, 2)
    (out * weights).sum().backward()
    (out_ref * weights).sum().backward()
    assert (x.grad - x_ref.grad).abs().max().item() <= 1e-6
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert (p.grad - ref_params[name].grad).abs().max().item() <= 1e-6, name


def _output_and_gradients(net, x, weights):
    """(output, input gradient, every parameter's gradient) of `net` for the loss sum(out * weights)."""
    x = x.detach().clone().requires_grad_()
    out = net(x)
    grads = torch.autograd.grad((out * weights).sum(), [x, *net.parameters()])
    return [out.detach(), *grads]


def test_generator_with_the_transposed_output_conv_matches_oracle_to_rounding():
    # ngf 16: the output convolution (16 -> 3, 7x7) runs transposed on the CPU. Each float32
    # result is compared with the oracle in float64; ours may round a few times worse than the
    # oracle's own float32 run, not more (measured ratio about 1; a wrong kernel flip or
    # padding is off by the size of the values).
    torch.manual_seed(5)
    ref = R.init_weights(R.ResnetGenerator(ngf=16, n_blocks=2))
    ours = ResnetGenerator(ngf=16, n_blocks=2)
    ours.load_state_dict(ref.state_dict())
    exact = R.ResnetGenerator(ngf=16, n_blocks=2).double()
    exact.load_state_dict(ref.state_dict())
    x, weights = _rand((2, 3, 64, 64), 1), _rand((2, 3, 64, 64), 2)
    expected = _output_and_gradients(exact, x.double(), weights.double())
    names = ["output", "input gradient"] + [name for name, _ in ours.named_parameters()]
    for name, want, theirs, got in zip(
        names, expected, _output_and_gradients(ref, x, weights), _output_and_gradients(ours, x, weights)
    ):
        their_error = (theirs.double() - want).abs().max().item()
        our_error = (got.double() - want).abs().max().item()
        assert our_error <= 4 * their_error + 1e-7 * want.abs().max().item(), (name, our_error, their_error)


@pytest.mark.parametrize("size", [64, 128])
def test_patchgan_forward_and_backward_match_oracle(size):
    torch.manual_seed(9)
    ref = R.init_weights(R.NLayerDiscriminator(ndf=8, n_layers=3))
    torch.manual_seed(9)
    ours = PatchDiscriminator(ndf=8, n_layers=3)
    assert list(ref.state_dict()) == list(ours.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), ours.state_dict().values()))
    x = _rand((2, 3, size, size), 3).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    out, out_ref = ours(x), ref(x_ref)
    assert out.shape == (2, 1, size // 8 - 2, size // 8 - 2)  # the 70x70 PatchGAN's logit grid
    assert (out - out_ref).abs().max().item() <= 1e-6
    out.square().mean().backward()
    out_ref.square().mean().backward()
    assert (x.grad - x_ref.grad).abs().max().item() <= 1e-6
    assert ours.min_input_size() == 24
    with pytest.raises(ValueError, match="at least 24x24"):
        ours(torch.zeros(1, 3, 16, 16))


def _pair(pool_size=2, iteration=6, img_size=64, **kw):
    cfg = ug.TrainConfig(
        model="cyclegan", ch=8, n_res=2, img_size=img_size, device="cpu", pool_size=pool_size,
        iteration=iteration, seed=3, **kw,
    )  # fmt: skip
    trainer = ug.Trainer(cfg)
    nets = {
        "G_A": R.ResnetGenerator(ngf=8, n_blocks=2),
        "G_B": R.ResnetGenerator(ngf=8, n_blocks=2),
        "D_A": R.NLayerDiscriminator(ndf=8),
        "D_B": R.NLayerDiscriminator(ndf=8),
    }
    for name, net in nets.items():
        net.load_state_dict(trainer.networks()[name].state_dict())
    # The oracle's pools replay the Rust pools' random streams (seed, stream tag, pool index).
    pools = tuple(R.ImagePool(pool_size, R.SplitMix(3, 0x9001, k)) for k in (0, 1))
    ref = R.CycleGAN(
        *nets.values(), lr=cfg.lr, lambda_cycle=cfg.cycle_weight, lambda_idt=cfg.lambda_identity, pools=pools
    )
    return trainer, ref, nets


def _max_param_diff(trainer, nets):
    return max(
        (value - nets[name].state_dict()[key]).abs().max().item()
        for name, net in trainer.networks().items()
        for key, value in net.state_dict().items()
    )


@pytest.mark.parametrize("batch, pool_size", [(1, 2), (2, 3), (1, 0)])
def test_training_steps_match_oracle_with_the_pool(batch, pool_size):
    """Six steps: the pools fill, then swap images half of the time; the LR decays in the
    second half. Losses, parameters and learning rates agree with the oracle."""
    trainer, ref, nets = _pair(pool_size=pool_size)
    for step in range(1, 7):
        a, b = _rand((batch, 3, 64, 64), 10 * step), _rand((batch, 3, 64, 64), 10 * step + 1)
        lr = R.lambda_lr(2e-4, step, 6)
        ref.set_lr(lr)
        theirs = ref.step(a, b)
        ours = trainer.step(a, b)
        assert ours["lr"] == lr  # bitwise: the same float arithmetic
        for key, value in theirs.items():
            assert ours[key] == pytest.approx(value, rel=1e-6, abs=1e-7), (step, key)
        assert ours["g_loss"] == pytest.approx(
            theirs["G_A"] + theirs["G_B"] + theirs["cycle_A"] + theirs["cycle_B"] + theirs["idt_A"] + theirs["idt_B"],
            rel=1e-6,
        )
        assert _max_param_diff(trainer, nets) <= 1e-6, step
    expected = min(pool_size, 6 * batch)
    assert trainer.pool_sizes == (expected, expected)


def test_pool_stores_the_first_images_then_swaps_half_of_the_time():
    pool = R.ImagePool(3, R.SplitMix(1, 0x9001, 0))  # the oracle, checked against the Rust pool above
    trainer, _, _ = _pair(pool_size=3, iteration=4)
    sizes = []
    for step in range(4):
        trainer.step(_rand((1, 3, 64, 64), step), _rand((1, 3, 64, 64), step + 50))
        sizes.append(trainer.pool_sizes)
    assert sizes == [(1, 1), (2, 2), (3, 3), (3, 3)]
    for v in range(3):
        assert pool.query(torch.full((1, 1), float(v))).item() == v
    swapped = sum(pool.query(torch.full((1, 1), float(v))).item() != v for v in range(3, 2003))
    assert 900 <= swapped <= 1100


def test_their_network_files_round_trip(tmp_path):
    trainer, _, nets = _pair()
    trainer.step(_rand((1, 3, 64, 64), 1), _rand((1, 3, 64, 64), 2))
    written = save_their_networks(trainer, tmp_path / "ckpt", epoch="latest")
    assert sorted(os.path.basename(p) for p in written) == [f"latest_net_{n}.pth" for n in ("D_A", "D_B", "G_A", "G_B")]
    # Their modules load our files strictly, and compute the same translation.
    ref = R.ResnetGenerator(ngf=8, n_blocks=2)
    ref.load_state_dict(torch.load(tmp_path / "ckpt" / "latest_net_G_A.pth", weights_only=True), strict=True)
    x = _rand((1, 3, 64, 64), 3)
    with torch.no_grad():
        assert torch.equal(ref(x), trainer.gen_a2b(x))
    # ... and their files load into a fresh trainer (all four networks), and into Translator.
    fresh, _, _ = _pair()
    assert fresh.load_checkpoint(str(tmp_path / "ckpt")) == 0
    for name, net in fresh.networks().items():
        assert all(torch.equal(v, trainer.networks()[name].state_dict()[k]) for k, v in net.state_dict().items())
    t = Translator.from_checkpoint(str(tmp_path / "ckpt" / "latest_net_G_B.pth"), img_size=64)
    with torch.no_grad():
        assert torch.equal(t(x[0]), trainer.gen_b2a(x)[0].clamp(-1, 1))
    # A U-GAT-IT state dict or a mis-shaped one is refused, changing nothing.
    torch.save({"model.1.weight": torch.zeros(3)}, tmp_path / "ckpt" / "latest_net_D_B.pth")
    with pytest.raises(ug.StateDictError, match="latest_net_D_B.pth"):
        load_their_networks(fresh, tmp_path / "ckpt")
    torch.save({"genA2B": {}}, tmp_path / "bad.pth")
    with pytest.raises(ug.StateDictError, match="not a CycleGAN network"):
        read_their_network(tmp_path / "bad.pth")


def test_checkpoint_resume_is_bitwise_exact_with_the_pools(tmp_path):
    batches = [(_rand((1, 3, 64, 64), 2 * k), _rand((1, 3, 64, 64), 2 * k + 1)) for k in range(8)]
    straight, _, _ = _pair(pool_size=2, iteration=8)
    for a, b in batches:
        straight.step(a, b)
    first, _, _ = _pair(pool_size=2, iteration=8)
    for a, b in batches[:4]:
        first.step(a, b)
    path = first.save_checkpoint(str(tmp_path / "c.safetensors"))
    resumed, _, _ = _pair(pool_size=2, iteration=8)
    assert resumed.load_checkpoint(path) == 4 and resumed.pool_sizes == (2, 2)
    for a, b in batches[4:]:
        resumed.step(a, b)
    for name, net in straight.networks().items():
        for key, value in net.state_dict().items():
            assert torch.equal(value, resumed.networks()[name].state_dict()[key]), (name, key)
    assert resumed.lr == straight.lr
    # A U-GAT-IT trainer refuses the CycleGAN checkpoint (and vice versa), naming the model.
    ugatit = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu"))
    with pytest.raises(ug.StateDictError, match="model=cyclegan"):
        ugatit.load_checkpoint(path)


def test_config_defaults_and_validation():
    cfg = ug.TrainConfig(model="cyclegan")
    assert (cfg.lr, cfg.weight_decay, cfg.n_res, cfg.cycle_weight, cfg.lambda_identity, cfg.pool_size) == (
        2e-4, 0.0, 9, 10.0, 0.5, 50,
    )  # fmt: skip
    assert ug.TrainConfig(model="cyclegan", lr=1e-3).lr == 1e-3
    assert ug.TrainConfig().model == "ugatit" and ug.TrainConfig().lr == 1e-4
    with pytest.raises(ValueError, match="model must be one of"):
        ug.TrainConfig(model="pix2pix", device="cpu").validate()
    with pytest.raises(ValueError, match="PatchGAN"):
        ug.Trainer(ug.TrainConfig(model="cyclegan", img_size=16, ch=4, n_res=1, device="cpu"))
    with pytest.raises(ValueError, match="pool_size"):
        ug.TrainConfig(model="cyclegan", pool_size=-1, device="cpu").validate()
    assert type(ug.Trainer(ug.TrainConfig(model="cyclegan", img_size=32, ch=4, n_res=1, device="cpu"))).__name__ == (
        "CycleGANTrainer"
    )
    # Before: accepted, and the pools grew until the kernel killed the process (2.4 TB here).
    with pytest.raises(MemoryError, match=r"the two image pools \(pool_size=100000, 1024 px images\) needs"):
        ug.Trainer(ug.TrainConfig(model="cyclegan", img_size=1024, ch=4, n_res=1, pool_size=100_000, device="cpu"))


def test_fit_cli_translate_and_export(tmp_path, capsys):
    data = make_dataset(tmp_path / "data" / "toy", n_train=4)
    results = tmp_path / "r"
    train = subprocess.run(
        [sys.executable, "-m", "ugatit_rs", "train", "--model", "cyclegan", "--dataset", data, "--img_size", "64",
         "--ch", "4", "--n_res", "1", "--iteration", "4", "--print_freq", "2", "--save_freq", "2", "--device", "cpu",
         "--result_dir", str(results), "--no_progress"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert "training toy: CycleGAN (ch 4, n_res 1, 64 px); 4 iterations on cpu" in train.stdout
    run = results / "toy"
    rows = [json.loads(line) for line in open(run / "log.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert {"d_loss", "g_loss", "D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B", "lr"} <= set(
        rows[0]
    )
    assert sorted(os.listdir(run / "model")) == ["toy_params_0000002.safetensors", "toy_params_0000004.safetensors"]
    assert sorted(os.listdir(run / "img")) == [
        "A2B_0000002.png",
        "A2B_0000004.png",
        "B2A_0000002.png",
        "B2A_0000004.png",
    ]
    assert os.listdir(run / "test")
    ckpt = str(run / "model" / "toy_params_0000004.safetensors")
    meta = json.loads(ug.convert.read_metadata(ckpt)["config"])
    assert meta["model"] == "cyclegan" and meta["lr"] == 2e-4  # the model's defaults, not U-GAT-IT's
    # --init_from a CycleGAN checkpoint trains a CycleGAN without --model; before, nothing said so.
    argv = ["train", "--dataset", data, "--init_from", ckpt, "--img_size", "64", "--iteration", "1",
            "--device", "cpu", "--result_dir", str(tmp_path / "again"), "--no_progress"]  # fmt: skip
    assert cli.main(argv) == 0
    banner = f"training toy: CycleGAN (ch 4, n_res 1, 64 px), from the weights of {ckpt}; 1 iteration on cpu"
    assert banner in capsys.readouterr().out
    out = subprocess.run(
        [sys.executable, "-m", "ugatit_rs", "translate", os.path.join(data, "testA"), "--checkpoint", ckpt,
         "--output", str(tmp_path / "out"), "--heatmap"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    written = [f for _, _, files in os.walk(tmp_path / "out") for f in files]
    assert len(written) == len(os.listdir(os.path.join(data, "testA")))  # no heatmap files: CycleGAN has none
    assert "a ResnetGenerator has no attention map; no heatmaps are written" in out.stderr  # before: no word
    ort = pytest.importorskip("onnxruntime")
    onnx_path = str(tmp_path / "g.onnx")
    exp = subprocess.run(
        [sys.executable, "-m", "ugatit_rs", "export", ckpt, "--direction", "B2A", "-o", onnx_path],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert exp.returncode == 0, exp.stderr[-3000:]
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["translation"]
    g = Translator.from_checkpoint(ckpt, "B2A").generator
    x = _rand((1, 3, 96, 64), 4)  # fully convolutional: any multiple of 4
    with torch.no_grad():
        assert np.abs(session.run(None, {"image": x.numpy()})[0] - g(x).numpy()).max() <= 1e-4


def test_short_run_on_the_demo_domains_learns(tmp_path):
    """120 CycleGAN steps on the demo faces: reconstruction and identity L1 fall well below
    where they start; the photo -> cartoon translations keep the face where it was (content IoU)
    and move toward the cartoon style, as U-GAT-IT's do (tests/test_training_run.py)."""
    from ugatit_rs import demo

    data = demo.write_dataset(str(tmp_path / "demo"), n_train=40, n_test=8, size=96)
    cfg = ug.TrainConfig(
        model="cyclegan", dataset=data, img_size=96, ch=8, n_res=2, iteration=120, print_freq=1000,
        save_freq=1000, device="cpu", result_dir=str(tmp_path / "r"), num_workers=1,
    )  # fmt: skip
    trainer = ug.Trainer(cfg)
    photos = [demo.demo_image("A", 96, seed=0, index=i) for i in range(200, 208)]  # not in the training set
    cartoons = [demo.demo_image("B", 96, seed=0, index=i) for i in range(200, 208)]
    scale = demo.StyleScale(photos, cartoons)
    before = demo.quality(trainer.gen_a2b, photos, "B", scale)
    rows = [json.loads(line) for line in open(trainer.fit(progress=False))]
    after = demo.quality(trainer.gen_a2b, photos, "B", scale)
    for key in ("cycle_A", "cycle_B", "idt_A", "idt_B"):
        first = np.mean([r[key] for r in rows[:10]])
        last = np.mean([r[key] for r in rows[-10:]])
        assert last < 0.5 * first, (key, first, last)
    # Measured: IoU 0.12 -> 0.32, style score 0.07 -> 0.43 (0 = photo, 1 = cartoon).
    assert after["iou"] > before["iou"] + 0.1, (before, after)
    assert after["style_score"] > before["style_score"] + 0.15, (before, after)


def test_cyclegan_trains_on_bicubic_resizes_and_ugatit_on_bilinear(tmp_path):
    data = make_dataset(tmp_path / "data" / "toy", n_train=2)
    loaders = {
        r: ug.data.DomainLoader(os.path.join(data, "trainA"), 64, 1, seed=1, train=True, num_workers=0, resize=r)
        for r in ("bilinear", "bicubic")
    }
    a, b = (loaders[r].next_batch() for r in ("bilinear", "bicubic"))
    assert a.shape == b.shape == (1, 3, 64, 64) and not torch.equal(a, b)  # same crop, other filter
    assert (a - b).abs().mean().item() < 0.1
    with pytest.raises(ValueError, match="resize must be"):
        ug.data.DomainLoader(os.path.join(data, "trainA"), 64, resize="lanczos")
    from ugatit_rs.cyclegan import CycleGANTrainer
    from ugatit_rs.trainer import Trainer

    assert (Trainer._resize, CycleGANTrainer._resize) == ("bilinear", "bicubic")
