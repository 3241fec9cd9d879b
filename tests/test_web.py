"""The in-browser translator page (onnxruntime-web, WebAssembly) and the Gradio app, driven in
headless Chromium with no network beyond localhost."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import ugatit_rs as ug
from browser import browser_page, free_port, require, serving, static_server
from PIL import Image
from ugatit_rs import demo
from ugatit_rs.translate import Translator

# The demo's model (light, 96 px, ch 16, 2 residual blocks), after two training steps.
DEMO = dict(light=True, img_size=96, ch=16, n_res=2)


@pytest.fixture(scope="module")
def demo_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    trainer = ug.Trainer(ug.TrainConfig(device="cpu", **DEMO))
    for k in range(2):
        photo, cartoon = (demo.demo_image(d, 96, index=k) for d in "AB")
        trainer.step(*(ug.viz.from_image(x)[None] for x in (photo, cartoon)))
    return trainer.save_checkpoint(str(root / "demo.safetensors"))


@pytest.fixture(scope="module")
def site(demo_checkpoint, tmp_path_factory):
    """`ugatit-rs export CKPT --web DIR`, as a user runs it (onnxruntime-web from the cache or npm)."""
    folder = str(tmp_path_factory.mktemp("site"))
    out = subprocess.run(
        [sys.executable, "-m", "ugatit_rs", "export", demo_checkpoint, "--direction", "A2B", "--web", folder],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if out.returncode != 0 and "could not be fetched" in out.stderr and not os.environ.get("CI"):
        pytest.skip("onnxruntime-web is not available offline here")
    assert out.returncode == 0, out.stderr[-3000:]
    return folder


def test_web_folder_is_self_contained(site):
    names = set(os.listdir(site))
    assert {"index.html", "app.js", "style.css", "model.onnx", "model.json", "ort"} <= names
    meta = json.load(open(os.path.join(site, "model.json")))
    assert meta["img_size"] == 96 and meta["direction"] == "A2B"
    html = open(os.path.join(site, "index.html")).read() + open(os.path.join(site, "app.js")).read()
    assert "http://" not in html and "https://" not in html  # nothing from a CDN


def test_a_page_is_written_only_into_a_new_empty_or_earlier_page_folder(site, demo_checkpoint, tmp_path):
    from ugatit_rs.web import write_page

    g = Translator.from_checkpoint(demo_checkpoint).generator
    own = tmp_path / "mine"
    own.mkdir()
    (own / "index.html").write_text("the user's page")
    # Before: the user's index.html was replaced without a word.
    with pytest.raises(FileExistsError, match="earlier `export --web` did not write"):
        write_page(g, own)
    assert (own / "index.html").read_text() == "the user's page"
    with pytest.raises(FileExistsError, match="not a folder"):
        write_page(g, own / "index.html")
    assert write_page(g, site) == site  # an earlier page is updated
    # Before: a page whose writing stopped after its first file (model.onnx, then model.json
    # failed on a full disk) held no model.json, and every later run into it was refused as a
    # folder of someone else's files. model.json now comes first.
    half = tmp_path / "half"
    from unittest import mock

    def full_disk_after_writing(generator, path, **kwargs):
        open(path, "wb").write(b"part of a model")
        raise OSError(28, "No space left on device")

    with mock.patch("ugatit_rs.export.onnx", side_effect=full_disk_after_writing):
        with pytest.raises(OSError, match="No space left"):
            write_page(g, half)
    assert write_page(g, half) == str(half) and (half / "model.onnx").is_file() and (half / "index.html").is_file()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        # Before: written, with "X" as the page's direction and its title.
        ({"direction": "X"}, ValueError, "direction must be"),
        ({"img_size": 90}, ValueError, "multiple of 4"),
        ({"title": 3}, TypeError, "title must be a string"),
    ],
    ids=["direction", "img_size", "title"],
)
def test_page_options_are_checked_before_anything_is_written(tmp_path, kwargs, error, match):
    from ugatit_rs.web import write_page

    with pytest.raises(error, match=match):
        write_page(ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True), tmp_path / "page", **kwargs)
    with pytest.raises(ValueError, match="works at img_size=96 only"):
        write_page(ug.Generator(ngf=4, n_blocks=1, img_size=96, light=False), tmp_path / "page", img_size=128)
    assert not (tmp_path / "page").exists()


def test_page_translates_like_the_translator(site, demo_checkpoint, tmp_path):
    photo = demo.demo_image("A", 96, seed=7)  # at the model's size: the page's resize is the identity
    Image.fromarray(photo).save(tmp_path / "photo.png")
    expected = Translator.from_checkpoint(demo_checkpoint, "A2B")(photo)
    with static_server(site) as url, browser_page(url) as page:
        page.goto(url + "/")
        page.wait_for_function("document.body.dataset.state !== 'loading'")
        assert page.get_attribute("body", "data-state") == "ready", page.inner_text("#status")
        page.set_input_files("#file", str(tmp_path / "photo.png"))
        page.wait_for_function("window.ugatit.runs === 1 && document.body.dataset.state !== 'running'")
        assert page.get_attribute("body", "data-state") == "done", page.inner_text("#status")
        shown = page.evaluate(
            "() => Array.from(document.getElementById('output').getContext('2d').getImageData(0, 0, 96, 96).data)"
        )
        ms = page.evaluate("window.ugatit.lastMs")
        attention = page.evaluate(
            "() => Array.from(document.getElementById('attention').getContext('2d').getImageData(0, 0, 96, 96).data)"
        )
        assert page.outside == [], page.outside
    shown = np.array(shown, dtype=np.uint8).reshape(96, 96, 4)
    assert (shown[..., 3] == 255).all()
    diff = np.abs(shown[..., :3].astype(int) - expected.astype(int))
    assert diff.max() <= 2, f"max |page - Translator| = {diff.max()}/255"
    print(f"page vs Translator: max {diff.max()}/255, {(diff > 0).mean():.2%} of values differ")
    assert np.array(attention).reshape(96, 96, 4)[..., :3].std() > 1  # a heatmap was drawn
    print(f"in-browser (WASM, 1 thread) translation of a 96 px image: {ms:.0f} ms")


def test_page_webcam_and_bad_files(site, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with static_server(site) as url, browser_page(url) as page:
        page.goto(url + "/")
        page.wait_for_function("document.body.dataset.state === 'ready'")
        page.set_input_files("#file", str(tmp_path / "notes.txt"))
        page.wait_for_function("document.body.dataset.state === 'error'")
        assert "not an image" in page.inner_text("#status")
        page.set_input_files("#file", str(tmp_path / "broken.png"))
        page.wait_for_function("document.getElementById('status').textContent.includes('cannot decode')")
        page.click("#webcam")  # Chromium's synthetic camera
        page.wait_for_selector("#capture", state="visible")
        page.click("#capture")
        page.wait_for_function("window.ugatit.runs === 1 && document.body.dataset.state === 'done'")
        assert page.outside == []


def test_translate_uploads_reports_bad_files_and_converts_modes(demo_checkpoint, tmp_path):
    from ugatit_rs.app import translate_uploads

    translators = {d: Translator.from_checkpoint(demo_checkpoint, d) for d in ("A2B", "B2A")}
    photo = demo.demo_image("A", 96)
    files = {
        "rgba.png": Image.fromarray(photo).convert("RGBA"),
        "grey.png": Image.fromarray(photo).convert("L"),
        "palette.png": Image.fromarray(photo).convert("P"),
        "cmyk.jpg": Image.fromarray(photo).convert("CMYK"),
        "deep.png": Image.fromarray(np.asarray(Image.fromarray(photo).convert("L"), np.uint16) * 257),
        "small.jpg": Image.fromarray(photo[:40, :50]),
    }
    for name, im in files.items():
        im.save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("hello")
    Image.new("RGB", (400, 300)).save(tmp_path / "huge.png")
    paths = [str(tmp_path / n) for n in [*files, "notes.txt", "huge.png"]]
    gallery, downloads, message = translate_uploads(translators, paths, "B2A", str(tmp_path / "out"), max_pixels=10**5)
    assert len(downloads) == len(files) and len(gallery) == 2 * len(files)
    assert "Translated 6 images (B2A)" in message
    assert "notes.txt: not a readable image" in message and "huge.png: 400×300 is too large" in message
    assert Image.open(downloads[-1]).size == (50, 40)  # back at the upload's own size
    assert translate_uploads(translators, [], "A2B", str(tmp_path))[2].startswith("Upload")
    # Before: uploads sharing a name shared one download, the later translation replacing it.
    (tmp_path / "other").mkdir()
    Image.fromarray(photo[:, ::-1]).save(tmp_path / "other" / "small.jpg")
    twins = [str(tmp_path / "small.jpg"), str(tmp_path / "other" / "small.jpg"), str(tmp_path / "small.png")]
    Image.fromarray(photo).save(twins[2])
    _, downloads, _ = translate_uploads(translators, twins, "A2B", str(tmp_path / "twins"))
    assert [os.path.basename(p) for p in downloads] == ["small_A2B.png", "small_2_A2B.png", "small_3_A2B.png"]
    assert [Image.open(p).size for p in downloads] == [(50, 40), (96, 96), (96, 96)]


def test_gradio_app_translates_an_upload(demo_checkpoint, tmp_path):
    require("gradio")
    Image.fromarray(demo.demo_image("A", 96, seed=3)).save(tmp_path / "face.png")
    (tmp_path / "notes.txt").write_text("hello")
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost"}
    command = [sys.executable, "-m", "ugatit_rs", "serve", "--checkpoint", demo_checkpoint, "--port", str(port)]
    with serving(command, port, timeout=180, env=env) as url, browser_page(url) as page:
        page.goto(url + "/")
        page.locator("#uploads input[type=file]").set_input_files(
            [str(tmp_path / "face.png"), str(tmp_path / "notes.txt")]
        )
        page.wait_for_function(
            "document.querySelectorAll('#uploads .file-preview tr, #uploads li, #uploads .file').length > 0"
        )
        page.click("#translate")
        page.wait_for_function("document.getElementById('message').innerText.includes('Translated')")
        message = page.inner_text("#message")
        assert "Translated 1 image (A2B)" in message and "notes.txt: not a readable image" in message
        page.wait_for_selector("#gallery img")
        assert page.locator("#gallery img").count() >= 2
        print("requests refused (not local):", page.outside)


def test_translate_uploads_with_a_cyclegan_checkpoint(tmp_path):
    """CycleGAN has no attention: the app shows and writes the translations only."""
    from ugatit_rs.app import translate_uploads

    trainer = ug.Trainer(ug.TrainConfig(model="cyclegan", img_size=96, ch=4, n_res=1, device="cpu"))
    ckpt = trainer.save_checkpoint(str(tmp_path / "cg.safetensors"))
    translators = {d: Translator.from_checkpoint(ckpt, d) for d in ("A2B", "B2A")}
    Image.fromarray(demo.demo_image("B", 96)).save(tmp_path / "face.png")
    gallery, downloads, message = translate_uploads(
        translators, [str(tmp_path / "face.png")], "B2A", str(tmp_path / "o")
    )
    assert "Translated 1 image (B2A)" in message and len(gallery) == 1 and len(downloads) == 1
    assert os.listdir(tmp_path / "o") == ["face_B2A.png"]


def test_the_app_deletes_a_requests_files_after_an_hour(demo_checkpoint, tmp_path):
    """Before: every request's translations stayed on disk (ours and Gradio's copies) until the
    server exited, so a server left running filled the disk."""
    require("gradio")
    from ugatit_rs.app import KEEP_SECONDS, _request_folder, build_app

    old, recent = tmp_path / "old", tmp_path / "recent"
    for folder in (old, recent):
        folder.mkdir()
        (folder / "x_A2B.png").write_bytes(b"png")
    an_hour_ago = time.time() - KEEP_SECONDS - 5
    os.utime(old, (an_hour_ago, an_hour_ago))
    new = _request_folder(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(["recent", os.path.basename(new)])
    assert build_app(demo_checkpoint).delete_cache == (KEEP_SECONDS, KEEP_SECONDS)
    assert os.path.isdir(_request_folder(str(tmp_path / "removed_by_a_tmp_cleaner")))
    # Concurrent requests prune the same old folders: before, one's stat() of a folder another
    # had just deleted failed the request with FileNotFoundError.
    shared, errors = tmp_path / "concurrent", []

    def request():
        for _ in range(200):
            try:
                _request_folder(str(shared), keep_seconds=0)
            except OSError as e:
                errors.append(e)

    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_serve_on_a_busy_port_names_the_flag_before_loading_the_model(tmp_path):
    """Before: Gradio's 'Cannot find empty port', naming its launch() parameter and an environment
    variable, after the model had loaded."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        missing = str(tmp_path / "model.safetensors")  # the port is checked first
        out = subprocess.run(
            [sys.executable, "-m", "ugatit_rs", "serve", "--checkpoint", missing, "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use; choose another --port" in out.stderr
