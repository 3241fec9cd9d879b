"""Killed runs lose nothing, diverging runs stop cleanly, hostile files are refused."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import ugatit_rs as ug
from datasets import make_dataset
from PIL import Image
from ugatit_rs.data import DomainLoader, load_image
from ugatit_rs.trainer import latest_checkpoint

TESTS = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("rel") / "toy", n_train=4, n_test=1)


def _cli_train(dataset, results, iteration, save_freq, resume=False):
    return [
        sys.executable,
        "-m",
        "ugatit_rs.cli",
        "train",
        "--dataset",
        dataset,
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
        results,
        "--iteration",
        str(iteration),
        "--save_freq",
        str(save_freq),
        "--print_freq",
        "1000",
        "--seed",
        "3",
        "--num_workers",
        "1",
        "--resume",
        "true" if resume else "false",
        "--no_progress",
    ]


def _weights(path):
    tr = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu"))
    step = tr.load_checkpoint(path)
    return step, {f"{n}.{k}": v.clone() for n, net in tr.networks().items() for k, v in net.state_dict().items()}


def _wait_for_log_lines(log, n, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
        if os.path.exists(log) and sum(1 for _ in open(log)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError("training made no progress")


def test_sigkill_at_a_random_moment_then_resume_matches_uninterrupted(dataset, tmp_path):
    total = 16
    straight = str(tmp_path / "straight")
    subprocess.run(_cli_train(dataset, straight, total, save_freq=total), check=True, capture_output=True, cwd=TESTS)
    _, expected = _weights(latest_checkpoint(os.path.join(straight, "toy", "model")))

    killed = str(tmp_path / "killed")
    proc = subprocess.Popen(
        _cli_train(dataset, killed, total, save_freq=2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=TESTS
    )
    _wait_for_log_lines(os.path.join(killed, "toy", "log.jsonl"), 3, proc)
    time.sleep(random.uniform(0.0, 0.3))  # somewhere in a step, a save, or a log write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    last = latest_checkpoint(os.path.join(killed, "toy", "model"))
    assert last is not None
    step, _ = _weights(last)  # the latest complete checkpoint loads
    assert 2 <= step < total

    subprocess.run(
        _cli_train(dataset, killed, total, save_freq=2, resume=True), check=True, capture_output=True, cwd=TESTS
    )
    final_step, got = _weights(latest_checkpoint(os.path.join(killed, "toy", "model")))
    assert final_step == total
    assert all(torch.equal(got[k], expected[k]) for k in expected), "resumed run diverged from the uninterrupted one"


@pytest.mark.parametrize(
    "signum, status, said",
    [(signal.SIGINT, 130, b"interrupted: saved"), (signal.SIGTERM, 143, b"terminated (SIGTERM): saved")],
)
def test_sigint_or_sigterm_saves_and_exits(dataset, tmp_path, signum, status, said):
    # SIGTERM is how a cluster preempts a job (and `docker stop`, `kill`); before, it killed the
    # run at once and lost every step since the last checkpoint.
    results = str(tmp_path / "r")
    proc = subprocess.Popen(
        _cli_train(dataset, results, 100_000, save_freq=100_000),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=TESTS,
    )
    log = os.path.join(results, "toy", "log.jsonl")
    _wait_for_log_lines(log, 1, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err.decode()[-2000:]
    assert said in err
    path = latest_checkpoint(os.path.join(results, "toy", "model"))
    step, weights = _weights(path)
    logged = [json.loads(line)["step"] for line in open(log)]
    assert step == logged[-1] >= 1
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_diverging_loss_stops_the_run_before_any_bad_checkpoint(dataset, tmp_path):
    cfg = ug.TrainConfig(
        dataset=dataset,
        light=True,
        img_size=96,
        ch=4,
        n_res=1,
        iteration=20,
        save_freq=1,
        print_freq=1000,
        lr=1e12,
        device="cpu",
        result_dir=str(tmp_path),
        num_workers=1,
    )
    with pytest.raises(ug.NonFiniteLossError, match="non-finite loss at step 1: .*loss") as info:
        ug.Trainer(cfg).fit(progress=False, log_every=1)
    assert info.value.step == 1
    assert latest_checkpoint(os.path.join(str(tmp_path), "toy", "model")) is None
    direct = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, lr=1e12, device="cpu"))
    batch = torch.rand(1, 3, 96, 96) * 2 - 1
    with pytest.raises(ug.NonFiniteLossError, match="non-finite loss at step 1"):
        direct.step(batch, batch)


def test_nan_parameter_is_never_checkpointed(dataset, tmp_path):
    cfg = ug.TrainConfig(
        dataset=dataset,
        light=True,
        img_size=96,
        ch=4,
        n_res=1,
        iteration=20,
        save_freq=1,
        print_freq=1000,
        device="cpu",
        result_dir=str(tmp_path),
        num_workers=1,
    )
    trainer = ug.Trainer(cfg)

    def poison(step, losses):
        if step == 2:
            with torch.no_grad():
                dict(trainer.gen_a2b.named_parameters())["conv1x1.bias"][0] = float("nan")

    with pytest.raises(FloatingPointError, match="genA2B.conv1x1.bias holds NaN"):
        trainer.fit(progress=False, log_every=1, callback=poison)
    step, weights = _weights(latest_checkpoint(os.path.join(str(tmp_path), "toy", "model")))
    assert step == 1
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_decompression_bomb_is_refused(tmp_path):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    # A valid PNG signature and header claiming 100000 x 100000 RGB pixels, with a tiny body.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 100))
        + chunk(b"IEND", b"")
    )
    (tmp_path / "bomb.png").write_bytes(png)
    assert os.path.getsize(tmp_path / "bomb.png") < 200
    with pytest.raises(OSError, match="bomb.png.*(limit|large|dimension)"):
        load_image(tmp_path / "bomb.png", 96)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "ok.png")
    loader = DomainLoader(str(tmp_path), 32, batch_size=2, num_workers=0)
    loader.next_batch()
    assert [os.path.basename(p) for p, _ in loader.skipped()] == ["bomb.png"]


def test_mutated_files_never_crash(tmp_path):
    """A small fuzzing budget for CI: bit flips, truncations and splices of real image and
    checkpoint files must end in a clean result or a specific exception, never a crash."""
    rng = random.Random(0)
    img_path = tmp_path / "seed.png"
    Image.fromarray((np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)).save(img_path)
    jpg_path = tmp_path / "seed.jpg"
    Image.open(img_path).save(jpg_path, quality=80)
    trainer = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=2, n_res=1, device="cpu"))
    ck_path = trainer.save_checkpoint(str(tmp_path / "seed.safetensors"))
    seeds = {"png": img_path.read_bytes(), "jpg": jpg_path.read_bytes(), "safetensors": open(ck_path, "rb").read()}

    def mutate(data):
        data = bytearray(data)
        kind = rng.randrange(3)
        if kind == 0:
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data = data[: rng.randrange(len(data))]
        else:
            i = rng.randrange(len(data))
            data[i : i + 4] = rng.randbytes(4)
        return bytes(data)

    outcomes = {"ok": 0, "refused": 0}
    budget = int(os.environ.get("UGATIT_FUZZ_N", "150"))  # run longer by hand: UGATIT_FUZZ_N=20000
    for n in range(budget):
        ext = rng.choice(list(seeds))
        path = tmp_path / f"m{n}.{ext}"
        path.write_bytes(mutate(seeds[ext]))
        try:
            if ext == "safetensors":
                trainer.load_checkpoint(str(path))
            else:
                x = load_image(path, 32)
                assert x.shape == (1, 3, 32, 32)
            outcomes["ok"] += 1
        except (OSError, ValueError) as exc:  # StateDictError is a ValueError
            assert str(path.name) in str(exc) or "safetensors" in str(exc) or "state_dict" in str(exc), str(exc)
            outcomes["refused"] += 1
        path.unlink()
    assert outcomes["refused"] > budget // 8 and sum(outcomes.values()) == budget


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) makes writes fail like a full disk does."""
    path = str(tmp_path / "ck.safetensors")
    script = f"""
import resource, signal, sys, torch, ugatit_rs as ug
tr = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu", seed=1))
tr.save_checkpoint({path!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
tr.step(torch.rand(1, 3, 96, 96) * 2 - 1, torch.rand(1, 3, 96, 96) * 2 - 1)
try:
    tr.save_checkpoint({path!r})
except OSError as e:
    print("OSError:", e)
    sys.exit(0)
sys.exit("save did not fail")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=TESTS)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "File too large" in out.stdout and "ck.safetensors" in out.stdout
    assert [f for f in os.listdir(tmp_path) if ".tmp-" in f] == []  # the partial temp file is removed
    step, weights = _weights(path)
    assert step == 0 and all(torch.isfinite(v).all() for v in weights.values())
