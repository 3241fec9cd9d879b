"""Whole training runs on real image files: fit, logs, samples, checkpoints, exact resume,
atomic saves, and a short run that measurably learns."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import ugatit_rs as ug
from datasets import make_dataset
from ugatit_rs.trainer import latest_checkpoint

TESTS = os.path.dirname(__file__)


def _config(dataset, results, **kw):
    base = dict(
        dataset=dataset,
        light=True,
        img_size=96,
        ch=4,
        n_res=1,
        iteration=4,
        print_freq=2,
        save_freq=2,
        device="cpu",
        result_dir=results,
        num_workers=1,
        seed=7,
    )
    base.update(kw)
    return ug.TrainConfig(**base)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "toy")


def _all_tensors(trainer):
    return {f"{n}.{k}": v.clone() for n, net in trainer.networks().items() for k, v in net.state_dict().items()}


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))],
)
def test_fit_writes_log_samples_and_checkpoints(dataset, tmp_path, device):
    # On CUDA the batches reach the device from page-locked memory.
    trainer = ug.Trainer(_config(dataset, str(tmp_path), device=device))
    log = trainer.fit(progress=False)
    rows = [json.loads(line) for line in open(log)]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert {"d_loss", "g_loss", "G_cam_loss_B", "D_ad_cam_loss_LA", "lr"} <= set(rows[0])
    assert all(np.isfinite(r["g_loss"]) for r in rows)
    run = os.path.join(str(tmp_path), "toy")
    assert sorted(os.listdir(os.path.join(run, "model"))) == [
        "toy_params_0000002.safetensors",
        "toy_params_0000004.safetensors",
    ]
    from PIL import Image

    grid = Image.open(os.path.join(run, "img", "A2B_0000004.png"))
    assert grid.size == (96 * 7, 96 * 7)  # 5 train + 2 test columns, 7 rows
    trainer.gen_b2a.eval()
    written = trainer.test(progress=False)
    assert len(written["A2B"]) == 2 and Image.open(written["B2A"][0]).size == (96, 7 * 96)
    # The generators' modes are restored (before, test() left both in eval mode).
    assert trainer.gen_a2b.training and not trainer.gen_b2a.training


def test_resume_is_bitwise_exact_across_processes(dataset, tmp_path):
    """4 steps in one go == 2 steps, save, a fresh process loads and does 2 more."""
    straight = ug.Trainer(_config(dataset, str(tmp_path / "straight"), save_freq=100))
    straight.fit(progress=False)
    expected = _all_tensors(straight)

    staged_dir = str(tmp_path / "staged")
    first = ug.Trainer(_config(dataset, staged_dir, save_freq=100))
    first.fit(progress=False, until=2)
    assert first.step_count == 2
    script = textwrap.dedent(f"""
        import sys, torch, ugatit_rs as ug
        cfg = ug.TrainConfig(dataset={dataset!r}, light=True, img_size=96, ch=4, n_res=1, iteration=4,
                             print_freq=2, save_freq=100, device="cpu", result_dir={staged_dir!r},
                             num_workers=2, seed=7, resume=True)
        tr = ug.Trainer(cfg)
        tr.fit(progress=False)
        assert tr.step_count == 4, tr.step_count
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=TESTS)
    resumed = ug.Trainer(_config(dataset, staged_dir))
    assert resumed.load_checkpoint(latest_checkpoint(os.path.join(staged_dir, "toy", "model"))) == 4
    got = _all_tensors(resumed)
    assert got.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(got[k], expected[k])]
    assert not different, different[:5]
    assert resumed.lr == straight.lr


def test_interrupted_save_keeps_previous_checkpoint(dataset, tmp_path):
    trainer = ug.Trainer(_config(dataset, str(tmp_path)))
    trainer.step(*[torch.rand(1, 3, 96, 96) * 2 - 1 for _ in range(2)])
    path = trainer.save_checkpoint(str(tmp_path / "ckpt.safetensors"))
    before = _all_tensors(trainer)
    script = textwrap.dedent(f"""
        import torch, ugatit_rs as ug
        cfg = ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu", seed=99)
        tr = ug.Trainer(cfg)
        tr.save_checkpoint({path!r})   # dies half-way (fault injection)
    """)
    env = dict(os.environ, UGATIT_RS_TEST_ABORT_SAVE_AFTER="20")
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=TESTS, capture_output=True)
    assert proc.returncode != 0  # aborted mid-write
    leftovers = [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    assert leftovers, "the aborted save should have been writing a temp file"
    fresh = ug.Trainer(_config(dataset, str(tmp_path), seed=1))
    assert fresh.load_checkpoint(path) == 1
    after = _all_tensors(fresh)
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_checkpoint_mismatch_and_garbage_are_refused_without_changes(dataset, tmp_path):
    trainer = ug.Trainer(_config(dataset, str(tmp_path)))
    path = trainer.save_checkpoint(str(tmp_path / "a.safetensors"))
    other = ug.Trainer(_config(dataset, str(tmp_path), ch=8))
    before = _all_tensors(other)
    with pytest.raises(ug.StateDictError, match="ch=4"):
        other.load_checkpoint(path)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    with pytest.raises(ug.StateDictError, match="not a valid safetensors"):
        other.load_checkpoint(str(garbage))
    with pytest.raises(FileNotFoundError):
        other.load_checkpoint(str(tmp_path / "missing.safetensors"))
    assert all(torch.equal(v, before[k]) for k, v in _all_tensors(other).items())


def test_short_training_run_learns(dataset, tmp_path):
    """80 steps on the two toy domains: cycle and identity L1 fall to well under half."""
    data = make_dataset(tmp_path / "data" / "toy", n_train=8)
    cfg = _config(data, str(tmp_path / "r"), ch=8, iteration=80, print_freq=1000, save_freq=1000, lr=2e-4)
    log = ug.Trainer(cfg).fit(progress=False)
    rows = [json.loads(line) for line in open(log)]
    for key in ("G_recon_loss_A", "G_recon_loss_B", "G_identity_loss_A", "G_identity_loss_B"):
        first = np.mean([r[key] for r in rows[:10]])
        last = np.mean([r[key] for r in rows[-10:]])
        assert last < 0.5 * first, (key, first, last)
