"""The Rust image pipeline on real files of every supported format, and on broken ones."""

import os

import numpy as np
import pytest
import torch
from PIL import Image
from ugatit_rs.data import DomainLoader, load_image

FORMATS = {
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "png": "PNG",
    "bmp": "BMP",
    "ppm": "PPM",
    "pgm": "PPM",
    "tif": "TIFF",
    "webp": "WEBP",
    "PNG": "PNG",
    "JPG": "JPEG",
}


def _picture(size=(50, 40), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)


@pytest.fixture
def every_format(tmp_path):
    for i, (ext, fmt) in enumerate(FORMATS.items()):
        img = Image.fromarray(_picture(seed=i))
        if ext == "pgm":
            img = img.convert("L")
        img.save(tmp_path / f"img_{i}.{ext}", format=fmt)
    # Variants PIL's convert('RGB') also handles: grayscale, palette, 16-bit, alpha.
    Image.fromarray(_picture(seed=20)[:, :, 0]).save(tmp_path / "gray.png")
    Image.fromarray(_picture(seed=21)).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(_picture(seed=22)[:, :, 0].astype(np.uint16) * 257).save(tmp_path / "deep16.png")
    Image.fromarray(np.dstack([_picture(seed=23), np.full((40, 50), 128, np.uint8)])).save(tmp_path / "alpha.png")
    (tmp_path / "readme.txt").write_text("not an image, not scanned")
    return tmp_path


def test_every_format_decodes(every_format):
    loader = DomainLoader(str(every_format), 32, batch_size=1, train=False, num_workers=0)
    assert loader.num_images == len(FORMATS) + 4
    for _ in range(loader.num_images):
        batch = loader.next_batch()
        assert batch.shape == (1, 3, 32, 32) and batch.dtype == torch.float32
        assert -1.0 <= batch.min() and batch.max() <= 1.0
    assert loader.skipped() == []


def test_test_transform_matches_pixels(tmp_path):
    pixels = _picture((32, 32), seed=5)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    x = load_image(tmp_path / "x.png", 32)
    expected = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255).sub(0.5).div(0.5)
    assert torch.equal(x[0], expected)


def test_broken_files_are_skipped_and_counted(tmp_path):
    good = _picture()
    Image.fromarray(good).save(tmp_path / "good1.png")
    Image.fromarray(good).save(tmp_path / "good2.jpg")
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello, not a jpeg")
    data = (tmp_path / "good1.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 3])
    Image.fromarray(good).save(tmp_path / "corrupt.jpg")
    raw = bytearray((tmp_path / "corrupt.jpg").read_bytes())
    raw[20:60] = b"\xff" * 40
    raw = raw[: len(raw) // 2]
    (tmp_path / "corrupt.jpg").write_bytes(bytes(raw))

    loader = DomainLoader(str(tmp_path), 32, batch_size=2, train=True, num_workers=2)
    for _ in range(6):
        assert loader.next_batch().shape[1:] == (3, 32, 32)
    skipped = {os.path.basename(p): reason for p, reason in loader.skipped()}
    assert {"zero.png", "text.jpg", "truncated.png"} <= set(skipped)
    assert "good1.png" not in skipped and "good2.jpg" not in skipped

    strict = DomainLoader(str(tmp_path), 32, batch_size=6, train=False, strict=True, num_workers=0)
    with pytest.raises(OSError, match="(zero|text|truncated|corrupt)"):
        strict.next_batch()


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        DomainLoader(str(tmp_path / "nope"), 32)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no images"):
        DomainLoader(str(tmp_path / "empty"), 32)


def test_streams_depend_on_seed_and_domain_only(tmp_path):
    for i in range(5):
        Image.fromarray(_picture(seed=i)).save(tmp_path / f"{i}.png")
    a = DomainLoader(str(tmp_path), 32, batch_size=2, seed=1, domain=0, num_workers=0)
    b = DomainLoader(str(tmp_path), 32, batch_size=2, seed=1, domain=0, num_workers=3)
    c = DomainLoader(str(tmp_path), 32, batch_size=2, seed=1, domain=1, num_workers=1)
    sa = [a.next_batch() for _ in range(6)]
    sb = [b.next_batch() for _ in range(6)]
    sc = [c.next_batch() for _ in range(6)]
    assert all(torch.equal(x, y) for x, y in zip(sa, sb))
    assert not all(torch.equal(x, y) for x, y in zip(sa, sc))
    assert [x.shape[0] for x in sa] == [2, 2, 1, 2, 2, 1]  # drop_last=False, reshuffled per epoch


def test_a_for_loop_iterates_one_epoch_of_the_same_stream(tmp_path):
    for i in range(5):
        Image.fromarray(_picture(seed=i)).save(tmp_path / f"{i}.png")
    streamed = DomainLoader(str(tmp_path), 32, batch_size=2, seed=3, num_workers=1)
    looped = DomainLoader(str(tmp_path), 32, batch_size=2, seed=3, num_workers=1)
    assert len(looped) == looped.batches_per_epoch == 3
    epochs = [list(looped), list(looped)]  # before: TypeError, 'DomainLoader' object is not iterable
    assert [len(e) for e in epochs] == [3, 3] and looped.position == 6
    assert (
        repr(looped)
        == f"DomainLoader(folder={str(tmp_path)!r}, img_size=32, batch_size=2, train=True, images=5, position=6)"
    )
    expected = [streamed.next_batch() for _ in range(6)]
    assert all(torch.equal(x, y) for x, y in zip(epochs[0] + epochs[1], expected))


@pytest.mark.parametrize("train, resize", [(True, "bilinear"), (False, "bicubic")])
def test_a_pickled_or_copied_loader_goes_on_with_the_same_stream(tmp_path, train, resize):
    # Before: `copy.deepcopy(loader)` and `pickle.dumps(loader)` raised TypeError, so a loader
    # could not be handed to another process or kept in a user's own pickled state.
    import copy
    import pickle

    for i in range(5):
        Image.fromarray(_picture(seed=i)).save(tmp_path / f"{i}.png")
    loader = DomainLoader(str(tmp_path), 32, batch_size=2, seed=4, domain=1, train=train, num_workers=1, resize=resize)
    for _ in range(4):
        loader.next_batch()
    copies = [pickle.loads(pickle.dumps(loader)), copy.deepcopy(loader), copy.copy(loader)]
    assert all(repr(c) == repr(loader) and c.position == 4 for c in copies)
    ahead = [loader.next_batch() for _ in range(5)]
    for c in copies:
        assert all(torch.equal(c.next_batch(), batch) for batch in ahead)
    # Every argument travels: a loader built differently gives other batches.
    other = DomainLoader(str(tmp_path), 32, batch_size=2, seed=4, domain=1, train=train, num_workers=1)
    other.seek(4)
    assert (resize == "bilinear") == all(torch.equal(other.next_batch(), batch) for batch in ahead)
