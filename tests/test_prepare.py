"""ugatit_rs.data.prepare on every kind of awkward file."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image
from ugatit_rs.data import DomainLoader, prepare


def _rgb(w=64, h=48, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


@pytest.fixture
def raw(tmp_path):
    a = tmp_path / "raw_a"
    (a / "zz_nested").mkdir(parents=True)
    for i in range(8):
        Image.fromarray(_rgb(seed=i)).save(a / f"photo{i}.jpg", quality=92)
    shutil.copy(a / "photo0.jpg", a / "zz_nested" / "copy_of_0.jpg")  # exact duplicate (later in path order)
    Image.fromarray(_rgb(seed=20)[:, :, 0]).save(a / "gray.png")  # grayscale
    Image.fromarray(_rgb(seed=21)).convert("P").save(a / "palette.png")  # palette
    Image.fromarray(_rgb(seed=22)[:, :, 0].astype(np.uint16) * 257).save(a / "deep16.png")  # 16-bit
    Image.fromarray(np.dstack([_rgb(seed=23), np.full((48, 64), 100, np.uint8)])).save(a / "alpha.png")
    Image.fromarray(_rgb(seed=24)).convert("CMYK").save(a / "cmyk.jpg")  # CMYK JPEG
    # EXIF orientation 6: stored landscape (left red, right blue), displayed rotated 90° clockwise.
    stored = np.zeros((30, 60, 3), np.uint8)
    stored[:, :30] = [255, 0, 0]
    stored[:, 30:] = [0, 0, 255]
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(a / "rotated.jpg", exif=exif, quality=95)
    Image.fromarray(_rgb(10, 10)).save(a / "tiny.png")  # too small
    (a / "zero.jpg").write_bytes(b"")  # zero bytes
    (a / "text.png").write_text("not an image")  # not an image
    data = (a / "photo1.jpg").read_bytes()
    (a / "truncated.jpg").write_bytes(data[:200])  # truncated
    (a / "notes.txt").write_text("ignored: not an image extension")
    b = tmp_path / "raw_b"
    b.mkdir()
    for i in range(5):
        Image.fromarray(_rgb(80, 40, seed=100 + i)).save(b / f"{i}.png")
    return a, b


def test_layout_counts_and_reasons(raw, tmp_path):
    a, b = raw
    out = tmp_path / "ds"
    summary = prepare(a, out, b, size=32, test_fraction=0.25, seed=1, min_size=16, progress=False)
    # A: 8 photos + gray, palette, deep16, alpha, cmyk, rotated = 14 decodable unique images.
    assert summary["trainA"] + summary["testA"] == 14
    assert summary["testA"] == round(14 * 0.25)
    assert summary["trainB"] + summary["testB"] == 5
    assert [os.path.basename(d[0]) for d in summary["duplicates"]] == ["copy_of_0.jpg"]
    reasons = {os.path.basename(p): r for p, r in summary["skipped"]}
    assert set(reasons) == {"tiny.png", "zero.jpg", "text.png", "truncated.jpg"}
    assert "too small" in reasons["tiny.png"]
    for split in ("trainA", "testA", "trainB", "testB"):
        files = os.listdir(out / split)
        assert len(files) == summary[split]
        for f in files:
            img = Image.open(out / split / f)
            assert img.size == (32, 32) and img.mode == "RGB"
    # The output loads in the trainer's pipeline.
    loader = DomainLoader(str(out / "trainA"), 32, batch_size=4, num_workers=0)
    assert loader.next_batch().shape == (4, 3, 32, 32) and loader.skipped() == []


def test_exif_orientation_is_applied(raw, tmp_path):
    a, _ = raw
    out = tmp_path / "ds"
    prepare(a, out, size=32, fit="pad", test_fraction=0.0, min_size=16, progress=False)
    (path,) = [p for p in os.listdir(out / "trainA") if "rotated" in p]
    img = np.asarray(Image.open(out / "trainA" / path)).astype(int)
    # Displayed upright it is portrait: red on top, blue below, black padding left and right.
    assert img[4, 16, 0] > 200 and img[4, 16, 2] < 60
    assert img[28, 16, 2] > 200 and img[28, 16, 0] < 60
    assert img[16, 1].sum() < 30


def test_split_is_deterministic_and_seeded(raw, tmp_path):
    a, _ = raw
    lists = []
    for run, seed in (("x", 3), ("y", 3), ("z", 4)):
        prepare(a, tmp_path / run, size=16, seed=seed, test_fraction=0.3, min_size=8, progress=False)
        lists.append(sorted(os.listdir(tmp_path / run / "testA")))
    assert lists[0] == lists[1]
    assert lists[0] != lists[2]


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        prepare(tmp_path / "nowhere", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        prepare(tmp_path / "empty", tmp_path / "out", progress=False)
    Image.fromarray(_rgb()).save(tmp_path / "one.png")
    with pytest.raises(ValueError, match="fit"):
        prepare(tmp_path, tmp_path / "out", fit="stretch", progress=False)
    with pytest.raises(ValueError, match="test_fraction"):
        prepare(tmp_path, tmp_path / "out", test_fraction=1.5, progress=False)
