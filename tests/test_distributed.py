"""Data-parallel training on torch.distributed with Gloo on this CPU: launched by torchrun, two
ranks at batch 1 end where one process at batch 2 ends; a killed rank stops the other."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import ugatit_rs as ug
from datasets import make_dataset

TRAIN_FLAGS = ["--light", "true", "--img_size", "96", "--ch", "4", "--n_res", "1", "--device", "cpu",
               "--num_workers", "0", "--print_freq", "1000", "--no_progress"]  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "toy", n_train=6, n_test=2, size=100)


def train(dataset, results, nproc, batch, iteration, extra=(), port=29512, timeout=600):
    if nproc == 1:
        cmd = [sys.executable, "-m", "ugatit_rs", "train"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "ugatit_rs", "train"]  # fmt: skip
    cmd += ["--dataset", dataset, "--result_dir", str(results), "--batch_size", str(batch),
            "--iteration", str(iteration), "--save_freq", str(iteration), *TRAIN_FLAGS, *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def weights(results, step):
    path = os.path.join(results, "toy", "model", f"toy_params_{step:07d}.safetensors")
    return dict(ug._native.read_checkpoint(path))


def test_two_ranks_at_batch_one_match_one_process_at_batch_two(dataset, tmp_path):
    single = train(dataset, tmp_path / "single", 1, 2, 3)
    assert single.returncode == 0, single.stderr[-3000:]
    double = train(dataset, tmp_path / "double", 2, 1, 3)
    assert double.returncode == 0, double.stderr[-3000:]
    a, b = weights(tmp_path / "single", 3), weights(tmp_path / "double", 3)
    assert a.keys() == b.keys()
    # The same update up to the order of floating-point sums (the gradient of a mean over two
    # images vs the mean of two one-image gradients). Rounding alone, measured as the same
    # single-process run with its first input moved by one ulp, spreads weights by 3.6e-6 after
    # three steps; the two-rank run differs from the single process by 1.9e-7.
    worst = max((a[k] - b[k]).abs().max().item() for k in a if not k.startswith("optim."))
    assert worst < 1e-5, worst


def test_resume_on_another_number_of_ranks(dataset, tmp_path):
    # A constant learning rate, so that the 2-step first leg follows the 4-step schedule.
    constant = ["--decay_flag", "false"]
    first = train(dataset, tmp_path / "r", 2, 1, 2, extra=constant, port=29513)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = train(dataset, tmp_path / "r", 1, 2, 4, extra=[*constant, "--resume", "true"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "global batch changes" not in resumed.stderr
    changed = train(dataset, tmp_path / "r", 1, 1, 5, extra=[*constant, "--resume", "true"])
    assert "global batch changes from 2" in changed.stderr and "to 1" in changed.stderr
    straight = train(dataset, tmp_path / "s", 1, 2, 4, extra=constant)
    assert straight.returncode == 0, straight.stderr[-3000:]
    a, b = weights(tmp_path / "r", 4), weights(tmp_path / "s", 4)
    worst = max((a[k] - b[k]).abs().max().item() for k in a if not k.startswith("optim."))
    assert worst < 1e-5, worst


def test_a_killed_rank_stops_the_other_with_an_error(dataset, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           "--master_port=29514", "-m", "ugatit_rs", "train", "--dataset", dataset, "--result_dir", str(tmp_path),
           "--batch_size", "1", "--iteration", "100000", "--save_freq", "5", *TRAIN_FLAGS]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    model = os.path.join(tmp_path, "toy", "model")
    deadline = time.time() + 300
    while time.time() < deadline and not (os.path.isdir(model) and os.listdir(model)):
        time.sleep(0.5)
    assert os.path.isdir(model) and os.listdir(model), "no checkpoint before the kill"
    children = subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "ugatit_rs"], capture_output=True, text=True)
    pids = [int(p) for p in children.stdout.split()]
    assert pids, "no worker processes found"
    os.kill(pids[-1], signal.SIGKILL)
    started = time.time()
    _, err = proc.communicate(timeout=400)
    assert proc.returncode != 0
    assert time.time() - started < 400
    latest = sorted(os.listdir(model))[-1]
    torch.manual_seed(0)
    tr = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu"))
    assert tr.load_checkpoint(os.path.join(model, latest)) > 0


def _two_nodes(datasets, results, port, iteration=2, extra=((), ())):
    """Two torchrun invocations (one process each) meeting through a c10d rendezvous on
    127.0.0.1, as two machines would; ``results`` is one folder or one per node."""
    procs = []
    results = results if isinstance(results, (list, tuple)) else [results, results]
    for node, (data, result, flags) in enumerate(zip(datasets, results, extra)):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
               f"--node_rank={node}", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
               "--rdzv_id=ugatit-test", "-m", "ugatit_rs", "train", "--dataset", data, "--result_dir", str(result),
               "--batch_size", "1", "--iteration", str(iteration), "--save_freq", str(iteration), *TRAIN_FLAGS,
               *flags]  # fmt: skip
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return [(p.wait(timeout=600), p.communicate()[1]) for p in procs]


def test_two_nodes_on_localhost_train_together(dataset, tmp_path):
    outcomes = _two_nodes([dataset, dataset], tmp_path, port=29515)
    for code, err in outcomes:
        assert code == 0, err[-3000:]
    assert os.path.exists(os.path.join(tmp_path, "toy", "model", "toy_params_0000002.safetensors"))


def _refused_on_every_rank(outcomes, field, values):
    """Both ranks exit with the disagreement named (the rendezvous, not the node, sets the ranks)."""
    for code, err in outcomes:
        assert code != 0 and "the ranks disagree" in err and f"{field}: " in err, err[-2000:]
        assert all(f"{v} on rank" in err for v in values), err[-2000:]
        assert "SIGABRT" not in err and "Signal 6" not in err, err[-2000:]


def test_ranks_with_different_datasets_are_refused(dataset, tmp_path):
    other = make_dataset(tmp_path / "other" / "toy", n_train=5, n_test=2, size=100)
    outcomes = _two_nodes([dataset, other], tmp_path / "r", port=29516)
    _refused_on_every_rank(outcomes, "trainA images", ["6", "5"])


@pytest.mark.parametrize(
    "flags, field, values",
    [
        # Before: a SIGABRT in Gloo's broadcast of mismatched shapes.
        (["--light", "false"], "light", ["True", "False"]),
        # Before: exit 0, each rank on its own learning rate, the replicas drifting apart unseen.
        (["--lr", "2e-4"], "lr", ["0.0001", "0.0002"]),
    ],
    ids=["architecture", "learning rate"],
)
def test_ranks_with_different_configs_are_refused(dataset, tmp_path, flags, field, values):
    outcomes = _two_nodes([dataset, dataset], tmp_path, port=29519, extra=((), flags))
    _refused_on_every_rank(outcomes, field, values)


def test_a_rank_that_cannot_see_the_checkpoint_is_refused_on_resume(dataset, tmp_path):
    # Before: rank 1, whose --result_dir held no checkpoint, started again from step 0 while
    # rank 0 resumed at step 2, and waited in a collective until the timeout.
    assert train(dataset, tmp_path / "a", 1, 1, 2).returncode == 0
    resume = ["--resume", "true"]
    outcomes = _two_nodes([dataset, dataset], [tmp_path / "a", tmp_path / "b"], 29520, 4, (resume, resume))
    _refused_on_every_rank(outcomes, "step resumed from", ["2", "0"])


def test_a_diverging_run_stops_every_rank_with_the_error(dataset, tmp_path):
    out = train(dataset, tmp_path, 2, 1, 20, extra=["--lr", "1e12"], port=29517)
    assert out.returncode != 0
    assert out.stderr.count("non-finite loss at step") >= 2, out.stderr[-3000:]
    model = os.path.join(tmp_path, "toy", "model")
    assert not os.path.isdir(model) or not os.listdir(model)


def test_ctrl_c_stops_all_ranks_at_one_step_with_a_checkpoint(dataset, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           "--master_port=29518", "-m", "ugatit_rs", "train", "--dataset", dataset, "--result_dir", str(tmp_path),
           "--batch_size", "1", "--iteration", "100000", "--save_freq", "100000", *TRAIN_FLAGS]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = os.path.join(tmp_path, "toy", "log.jsonl")
    deadline = time.time() + 300
    while time.time() < deadline and not (os.path.exists(log) and os.path.getsize(log) > 0):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=300)
    model = os.path.join(tmp_path, "toy", "model")
    saved = sorted(os.listdir(model))
    assert len(saved) == 1, saved
    step = int(saved[0].split("_")[-1].split(".")[0])
    with open(log) as f:
        steps = [int(line.split('"step": ')[1].split(",")[0]) for line in f]
    assert steps[-1] == step


HOOKED_RUN = """
import json, os, sys
import torch
import ugatit_rs as ug
from ugatit_rs import distributed as dp

dataset, results = sys.argv[1:3]
dp.setup("cpu")
tr = ug.Trainer(ug.TrainConfig(dataset=dataset, result_dir=results, light=True, img_size=96, ch=4, n_res=1,
                               device="cpu", num_workers=0, iteration=1, print_freq=1000, save_freq=1000))
kept, copies = {}, {}
for net in ("gen_a2b", "dis_ga"):
    for name, p in getattr(tr, net).named_parameters():
        def keep(grad, key=f"{net}.{name}"):
            kept[key], copies[key] = grad, grad.clone()
        p.register_hook(keep)
tr.fit(progress=False)
changed = [key for key in kept if not torch.equal(kept[key], copies[key])]
torch.save(copies, os.path.join(results, f"rank{dp.rank()}.pt"))
with open(os.path.join(results, f"rank{dp.rank()}.json"), "w") as f:
    json.dump({"kept": len(kept), "changed": changed}, f)
dp.teardown()
"""


def test_a_gradient_a_hook_keeps_stays_this_ranks_own(dataset, tmp_path):
    # Before: the all-reduce averaged the gradient tensors in place, so a gradient a tensor hook
    # stored (to log its norm) read as the average of the ranks once the step was over. Under
    # PyTorch's DistributedDataParallel it stays the rank's own.
    script = tmp_path / "hooked.py"
    script.write_text(HOOKED_RUN)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           "--master_port=29519", str(script), dataset, str(tmp_path)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    for rank in (0, 1):
        with open(tmp_path / f"rank{rank}.json") as f:
            result = json.load(f)
        assert result["kept"] > 20 and result["changed"] == [], result
    # The ranks read different images, so their own gradients differ.
    grads = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert any(not torch.equal(grads[0][key], grads[1][key]) for key in grads[0])
