"""The user-facing pieces: the demo's quality check, the Translator, visualisation."""

import json
import os
import re
import shlex

import numpy as np
import pytest
import torch
import ugatit_rs as ug
from PIL import Image
from ugatit_rs import cli, demo, viz
from ugatit_rs.translate import Translator


@pytest.fixture(scope="module")
def demo_images():
    return {d: [demo.demo_image(d, 96, seed=5, index=i) for i in range(12)] for d in "AB"}


def test_style_score_separates_real_domains(demo_images):
    scale = demo.StyleScale(demo_images["A"][:6], demo_images["B"][:6])
    # Held-out real images (not used to calibrate) land on their own side.
    assert all(demo.style_score(scale, img) < 0.5 for img in demo_images["A"][6:])
    assert all(demo.style_score(scale, img) > 0.5 for img in demo_images["B"][6:])
    # Content: an image against itself is IoU 1; against another face, much lower.
    assert demo.scores(demo_images["A"][0], demo_images["A"][0])["iou"] == 1.0
    assert demo.scores(demo_images["A"][0], demo_images["A"][1])["iou"] < 0.9


def test_trained_demo_model_beats_untrained(tmp_path):
    summary = demo.run(str(tmp_path / "demo"), iteration=120, ch=8, n_res=1, n_train=40, n_test=8, progress=False)
    before, after = summary["quality_before"], summary["quality_after"]
    for direction in ("A2B", "B2A"):
        assert after[direction]["iou"] > before[direction]["iou"] + 0.2, (direction, before, after)
    assert after["A2B"]["style_score"] > before["A2B"]["style_score"] + 0.1
    for key in ("translations_A2B", "translations_B2A", "loss_curves", "checkpoint", "log"):
        assert os.path.exists(summary["files"][key]), key
    # A second demo into the same folder replaces the first one's run rather than keeping its
    # checkpoints aside (model.1/) as a real run's are; a folder that is no demo's is left to fit().
    demo.run(str(tmp_path / "demo"), iteration=2, ch=4, n_res=1, n_train=4, n_test=2, progress=False)
    run_dir = tmp_path / "demo" / "results" / "demo"
    assert sorted(os.listdir(run_dir / "model")) == ["demo_params_0000002.safetensors"]
    assert not os.path.exists(run_dir / "model.1") and not os.path.exists(run_dir / "log.jsonl.1")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    trainer = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu", seed=1))
    return trainer.save_checkpoint(str(tmp_path_factory.mktemp("ck") / "t_params_0000000.safetensors"))


@pytest.fixture(scope="module")
def translator(checkpoint):
    return Translator.from_checkpoint(checkpoint, direction="B2A", batch_size=2)


def test_translator_input_kinds(translator, tmp_path):
    rgb = (np.random.default_rng(0).random((77, 101, 3)) * 255).astype(np.uint8)  # odd, non-square
    pil = Image.fromarray(rgb)
    out = translator(pil)
    assert isinstance(out, Image.Image) and out.size == (101, 77)
    arr = translator(rgb)
    assert isinstance(arr, np.ndarray) and arr.shape == rgb.shape and arr.dtype == np.uint8
    t = torch.rand(3, 96, 96) * 2 - 1
    tt = translator(t)
    assert isinstance(tt, torch.Tensor) and tt.shape == t.shape and -1 <= tt.min() and tt.max() <= 1
    pil.save(tmp_path / "x.png")
    assert isinstance(translator(str(tmp_path / "x.png")), Image.Image)
    outs, heats = translator([pil, rgb, t], return_attention=True)
    assert [type(o) for o in outs] == [Image.Image, np.ndarray, torch.Tensor]
    assert heats[0].shape == (1, 24, 24)
    assert translator(pil, keep_size=False).size == (96, 96)
    # A generator expression is a list of inputs (before: "cannot translate a generator").
    lazy = translator(image for image in (pil, rgb))
    assert isinstance(lazy, list) and [type(o) for o in lazy] == [Image.Image, np.ndarray]
    assert np.array_equal(lazy[1], arr)
    with pytest.raises(TypeError, match="cannot translate"):
        translator(42)
    with pytest.raises(ValueError, match="HWC uint8"):
        translator(np.zeros((4, 4), np.float32))


def test_translator_batch_equals_one_by_one(translator):
    images = [torch.rand(3, 96, 96) * 2 - 1 for _ in range(5)]
    batched = translator(torch.stack(images))
    for img, out in zip(images, batched):
        assert torch.allclose(translator(img), out, atol=1e-5)
    # An (N, H, W, 3) uint8 batch gives one too (it was refused as "numpy images must be HWC").
    arrays = np.stack([viz.to_image(img) for img in images])
    outs, heats = translator(arrays, return_attention=True)
    assert isinstance(outs, np.ndarray) and outs.shape == arrays.shape and outs.dtype == np.uint8
    assert heats.shape == (5, 1, 24, 24)
    listed = translator(list(arrays))
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(outs, listed))
    with pytest.raises(ValueError, match="empty batch"):
        translator(arrays[:0])


def test_translate_folder(translator, tmp_path):
    src = tmp_path / "src" / "sub"
    src.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(demo.demo_image("B", 96, index=i)).save(src / f"{i}.jpg")
    written = translator.translate_folder(
        str(tmp_path / "src"), str(tmp_path / "dst"), progress=False, with_heatmap=True
    )
    assert sorted(os.path.relpath(p, tmp_path / "dst") for p in written) == ["sub/0.png", "sub/1.png", "sub/2.png"]
    assert (tmp_path / "dst" / "sub" / "0_cam.png").exists()
    with pytest.raises(FileNotFoundError):
        translator.translate_folder(str(tmp_path / "nothing"), str(tmp_path / "dst"))


def test_translate_folder_on_the_device_writes_what_the_cpu_writes(checkpoint, device, tmp_path):
    # The worker threads decode and encode while the generator runs on the device (on a GPU:
    # scripts/gpu_check.sh); the files must be the translations, in their own size.
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):  # odd sizes, and a batch of 2 leaves a last batch of 1
        Image.fromarray(demo.demo_image("B", 96, index=i)).resize((90 + i, 101)).save(src / f"{i}.png")
    written = {}
    for where in ("cpu", device):
        translator = Translator.from_checkpoint(checkpoint, direction="B2A", batch_size=2, device=where)
        outs = translator.translate_folder(str(src), str(tmp_path / where), progress=False, with_heatmap=True)
        written[where] = [np.asarray(Image.open(p), dtype=np.int16) for p in outs]
        assert [Image.open(p).size for p in outs] == [(90 + i, 101) for i in range(5)]
        direct = translator(Image.open(src / "3.png"))
        assert np.array_equal(np.asarray(direct, dtype=np.int16), written[where][3])
    for on_cpu, on_device in zip(written["cpu"], written[device]):
        assert np.abs(on_cpu - on_device).max() <= 1  # float rounding may move a level


def test_unreadable_images_in_a_folder_are_skipped_and_named_files_refused(translator, checkpoint, tmp_path, capsys):
    # Before: `translate` on a folder stopped at the first file it could not decode (training,
    # `test` and `prepare` skip such files), and PIL's messages for a truncated or corrupt file
    # ("image file is truncated", "Token too long in file header") did not say which file.
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(3):
        Image.fromarray(demo.demo_image("B", 96, index=i)).save(src / f"{i}.png")
    good = (src / "0.png").read_bytes()
    (src / "3_truncated.png").write_bytes(good[: len(good) // 2])
    (src / "4_text.jpg").write_text("not an image")
    (src / "5_header.ppm").write_bytes(b"P6\n" + b"1" * 20 + b" 4\n255\n" + bytes(48))  # PIL: ValueError
    reasons = {
        "3_truncated.png": "cannot decode: image file is truncated",
        "4_text.jpg": "cannot decode: not a recognised image format",
        "5_header.ppm": "cannot decode: ValueError: .*Token too long",
    }
    written = translator.translate_inputs([src], tmp_path / "out", progress=False)
    assert [os.path.basename(p) for p in written] == ["0.png", "1.png", "2.png"]
    assert sorted(os.listdir(tmp_path / "out" / "photos")) == ["0.png", "1.png", "2.png"]
    assert [os.path.basename(p) for p, _ in written.skipped] == list(reasons)
    err = capsys.readouterr().err
    for (path, reason), expected in zip(written.skipped, reasons.values()):
        assert re.fullmatch(re.escape(path) + ": " + expected + ".*", reason), reason
        assert f"warning: skipping unreadable image {reason}" in err
    alone = translator.translate_files([src / "1.png"], tmp_path / "alone", progress=False)
    assert (tmp_path / "alone" / "1.png").read_bytes() == (tmp_path / "out" / "photos" / "1.png").read_bytes()
    assert alone.skipped == []
    # A file named by itself is translated or refused, never passed over.
    for name, expected in reasons.items():
        with pytest.raises(OSError, match=re.escape(os.fspath(src / name)) + ": " + expected):
            translator.translate_inputs([src / "0.png", src / name], tmp_path / "named", progress=False)
    # A folder with nothing readable is an error, not an empty success.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(good[:100])
    with pytest.raises(OSError, match=r"none of the 1 image\(s\) could be decoded; first: .*x\.png: cannot decode"):
        translator.translate_folder(bad, tmp_path / "out_bad", progress=False)
    # The command line says how many were skipped and succeeds.
    capsys.readouterr()
    argv = ["translate", os.fspath(src), "--checkpoint", checkpoint, "--output", os.fspath(tmp_path / "cli")]
    assert cli.main([*argv, "--no_progress"]) == 0
    out = capsys.readouterr()
    assert "translated 3 image(s) into" in out.out and "(3 unreadable image(s) skipped)" in out.out
    assert out.err.count("warning: skipping unreadable image") == 3


def test_translating_files_never_overwrites_an_input_or_another_output(translator, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    image = Image.fromarray(demo.demo_image("A", 96, index=0))
    for path in (a / "x.png", a / "x.jpg", b / "x.png", a / "y.png"):
        image.save(path)
    before = (a / "x.png").read_bytes()
    # Before: x.jpg's translation silently replaced x.png's, a/x.png's replaced b/x.png's, and an
    # output folder holding the inputs had them overwritten with their translations.
    with pytest.raises(ValueError, match=r"x\.(jpg|png) and .*x\.(jpg|png) would both be written to .*x\.png"):
        translator.translate_folder(str(a), str(tmp_path / "out"), progress=False)
    with pytest.raises(ValueError, match="would both be written"):
        translator.translate_files([str(a / "x.png"), str(b / "x.png")], str(tmp_path / "out"), progress=False)
    with pytest.raises(ValueError, match="would overwrite the input"):
        translator.translate_files([str(a / "x.png")], str(a), progress=False)
    with pytest.raises(ValueError, match="would overwrite the input"):
        translator.translate_inputs([str(b)], str(tmp_path), progress=False)
    assert (a / "x.png").read_bytes() == before and not (tmp_path / "out").exists()
    # A single path is one file (it used to be iterated character by character).
    assert translator.translate_files(str(a / "y.png"), str(tmp_path / "out"), progress=False) == [
        str(tmp_path / "out" / "y.png")
    ]
    written = translator.translate_inputs([str(b), str(a / "y.png")], str(tmp_path / "out"), progress=False)
    assert written == [str(tmp_path / "out" / "b" / "x.png"), str(tmp_path / "out" / "y.png")]
    os.mkfifo(a / "pipe.png")  # used to read "no such file"; opening it would block
    with pytest.raises(FileNotFoundError, match="pipe.png: is not a regular file"):
        translator.translate_inputs([str(a / "pipe.png")], str(tmp_path / "out2"), progress=False)
    with pytest.raises(FileNotFoundError, match="nothing.png: no such file"):
        translator.translate_files([str(a / "y.png"), str(a / "nothing.png")], str(tmp_path / "out2"), progress=False)
    assert not (tmp_path / "out2").exists()  # checked before the first image


def test_translating_into_a_folder_inside_the_input_twice_leaves_the_outputs_out(
    translator, checkpoint, tmp_path, capsys
):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(demo.demo_image("A", 96, index=i)).save(photos / f"{i}.png")
    # Before: the second run scanned the first run's outputs as inputs and refused to overwrite them.
    argv = ["translate", os.fspath(photos), "--checkpoint", checkpoint]
    for _ in range(2):
        assert cli.main([*argv, "-o", os.fspath(photos / "out"), "--no_progress"]) == 0
        assert "translated 2 image(s)" in capsys.readouterr().out
    assert sorted(p.name for p in (photos / "out" / "photos").iterdir()) == ["0.png", "1.png"]
    for _ in range(2):
        assert len(translator.translate_folder(photos, photos / "api", progress=False)) == 4  # + out/photos/*
    assert sorted(p.name for p in (photos / "api").iterdir()) == ["0.png", "1.png", "out"]
    with pytest.raises(FileNotFoundError, match="no images found outside the output folder"):
        translator.translate_folder(photos / "out", photos / "out" / "photos", progress=False)


def test_viz_helpers(tmp_path):
    heat = torch.rand(1, 1, 8, 8)
    img = viz.heatmap_image(heat, 32)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    flat = viz.heatmap_image(torch.zeros(1, 1, 8, 8), 32)  # the official code divided by zero here
    assert np.isfinite(flat.astype(float)).all()
    over = viz.overlay(np.zeros((32, 32, 3), np.uint8), heat)
    assert over.shape == (32, 32, 3)
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    grid = viz.sample_grid(g, g, [torch.rand(1, 3, 96, 96) * 2 - 1 for _ in range(2)])
    assert grid.shape == (7 * 96, 2 * 96, 3)
    log = [{"step": i, "d_loss": 1.0 / (i + 1), "g_loss": 2.0} for i in range(30)]
    fig = viz.loss_curves(log, smooth=5)
    assert len(fig.axes) == 2
    # A log read while fit() writes it (or after a kill mid-write) ends in a partial line: it is
    # left out (before: JSONDecodeError). A damaged line elsewhere is named with its number.
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in log[:3]) + '{"step": 3, "d_lo')
    assert viz.read_log(path) == log[:3] and len(viz.loss_curves(path).axes) == 2
    path.write_text(json.dumps(log[0]) + "\nnot json\n" + json.dumps(log[1]) + "\n")
    with pytest.raises(ValueError, match=r"log.jsonl:2: not a JSON record"):
        viz.read_log(path)
    # save_png says what it takes (before: PIL's "Cannot handle this data type").
    with pytest.raises(TypeError, match=r"HWC uint8 RGB image .*got float64 \(4, 4, 3\)"):
        viz.save_png(np.zeros((4, 4, 3)), tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


def _cli_args(command: str) -> list[str] | None:
    """The arguments after `ugatit-rs` or `-m ugatit_rs` in a shell command (also inside a quoted
    `bash -c '...'`), or None when the command does not run ugatit-rs."""
    words = shlex.split(command, comments=True)
    for i, word in enumerate(words):
        if word == "ugatit-rs" or (word == "ugatit_rs" and i and words[i - 1] == "-m"):
            return words[i + 1 :]
        if " " in word and (inner := _cli_args(word)) is not None:
            return inner
    return None


def _documented_commands() -> list[tuple[str, list[str]]]:
    """Every ugatit-rs command in the README's and docs' shell blocks, continuation lines joined."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    docs = [os.path.join(root, "README.md")] + [
        os.path.join(root, "docs", name)
        for name in sorted(os.listdir(os.path.join(root, "docs")))
        if name.endswith(".md")
    ]
    found = []
    for path in docs:
        in_shell, pending, start = False, "", 0
        for number, line in enumerate(open(path, encoding="utf-8"), 1):
            if line.startswith("```"):
                in_shell = line.strip() in ("```bash", "```sh")
                continue
            if not in_shell:
                continue
            start = start if pending else number
            pending += line.rstrip("\n")
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            args = _cli_args(pending)
            if args is not None:
                found.append((f"{os.path.basename(path)}:{start}", args))
            pending = ""
    return found


@pytest.mark.parametrize("where, args", _documented_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_documented_commands_parse(where, args):
    """The subcommands and flags the docs show exist (what the commands do is tested elsewhere)."""
    from ugatit_rs.cli import build_parser

    try:
        build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"{where}: `ugatit-rs {shlex.join(args)}` does not parse")


def test_photos_are_translated_upright_by_their_exif_orientation(translator, tmp_path):
    # A phone stores a portrait photo sideways with an EXIF tag saying how to turn it. Before:
    # the translator and the app translated the stored, sideways pixels (a face on its side).
    rgb = (np.random.default_rng(1).random((77, 101, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90° clockwise to show"
    path = str(tmp_path / "phone.png")
    Image.fromarray(rgb).save(path, exif=exif)
    upright = np.ascontiguousarray(np.rot90(rgb, -1))
    expected = translator(upright)
    for given in (path, Image.open(path)):
        out = translator(given)
        assert out.size == (77, 101) and np.array_equal(np.asarray(out), expected)
    from ugatit_rs.app import _open_rgb

    array, message = _open_rgb(path, 10**6)
    assert message is None and np.array_equal(array, upright)


def test_translator_and_app_decode_files_as_training_does(translator, tmp_path):
    # Before: the translator passed a 16-bit grey PNG through PIL's convert("RGB"), which clips
    # it (nearly every pixel white), the app scaled it by its brightest pixel, and prepare and the
    # training pipeline scaled it to 8 bits; a decompression bomb came out as PIL's own exception
    # (a traceback from `ugatit-rs translate`).
    from ugatit_rs.app import _open_rgb
    from ugatit_rs.data import load_image

    grey = (np.random.default_rng(2).random((40, 30)) * 20000).astype(np.uint16)  # a dim 16-bit scan
    path = str(tmp_path / "deep.png")
    Image.fromarray(grey).save(path)
    trained_on = load_image(path, 40)  # the Rust decoder's pixels (30 x 40 stretched to 40 x 40)
    decoded = viz.open_upright_rgb(path)
    assert decoded.shape == (40, 30, 3) and 0 < decoded.max() < 100
    resized = viz.from_image(np.array(Image.fromarray(decoded).resize((40, 40), Image.BILINEAR)))
    assert (resized - trained_on[0]).abs().max() < 1e-6
    assert np.array_equal(_open_rgb(path, 10**6)[0], decoded)
    assert np.array_equal(np.asarray(translator(path)), np.asarray(translator(decoded)))
    assert np.array_equal(np.asarray(translator(Image.open(path))), np.asarray(translator(decoded)))

    bomb = str(tmp_path / "bomb.png")
    Image.new("L", (14000, 13000)).save(bomb)  # over PIL's 178M-pixel limit, a 180 KB file
    with pytest.raises(ValueError, match="bomb.png: .*decompression bomb"):
        translator(bomb)


def test_every_training_flag_says_what_it_does():
    # Before: nine flags' help was their own name (`--lr FLOAT  lr`, `--eval_freq INT  eval freq`).
    from ugatit_rs.cli import build_parser

    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions if a.dest == "command").choices["train"]
    for action in train._actions:
        name = action.dest
        if name in ug.TrainConfig().to_dict():
            described = action.help.rsplit(" (default:", 1)[0]
            assert described != name.replace("_", " ") and len(described) > 12, f"--{name}: {action.help!r}"


def test_every_flag_takes_both_spellings():
    # Before: `demo` took --no-progress and --n-res, every other command --no_progress and
    # --n_res, so half of what a user typed was "unrecognized arguments".
    from ugatit_rs.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._subparsers._group_actions if a.dest == "command").choices
    respelled = 0
    for command, sub in commands.items():
        for flag in (f for a in sub._actions for f in a.option_strings if f.startswith("--")):
            for other in (flag.replace("_", "-"), "--" + flag[2:].replace("-", "_")):
                assert sub._respelled(other) == flag and sub._respelled(other + "=v") == flag + "=v", (command, other)
                respelled += other != flag
    assert respelled > 40
    args = build_parser().parse_args(["translate", "a.png", "--checkpoint", "c", "--no-progress", "--batch-size=3"])
    assert args.no_progress and args.batch_size == 3
    args = build_parser().parse_args(["demo", "--no_progress", "--n_res", "1", "--img_size", "96"])
    assert args.no_progress and args.n_res == 1 and args.img_size == 96
    args = build_parser().parse_args(["translate", "--checkpoint", "c", "--", "--no-progress"])
    assert args.inputs == ["--no-progress"] and not args.no_progress  # after "--", a file name


def test_translator_repr_says_what_it_runs(translator):
    assert ug.Translator is Translator  # also at the top level, beside Generator and Trainer
    text = repr(translator)
    assert text.startswith("Translator(img_size=96, batch_size=2, generator=Generator(") and "light=True" in text


def test_the_command_line_says_its_version(capsys):
    from ugatit_rs.cli import main

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"ugatit-rs {ug.__version__} (torch {torch.__version__})"


def test_a_fifo_named_like_an_image_is_refused_not_waited_on(translator, tmp_path):
    # Before: Translator("x.png") and InceptionFeatures on a FIFO named x.png opened it with PIL
    # and waited for a writer forever (the folder scans already took regular files only).
    fifo = str(tmp_path / "x.png")
    os.mkfifo(fifo)
    from ugatit_rs.metrics import _as_hwc_uint8  # what InceptionFeatures reads a path with

    readers = (
        translator,
        viz.open_upright_rgb,
        _as_hwc_uint8,
        lambda p: translator.translate_files([p], str(tmp_path)),
    )
    for read in readers:
        with pytest.raises(FileNotFoundError, match="x.png: is not a regular file"):
            read(fifo)
    with pytest.raises(FileNotFoundError, match="missing.png: no such file or folder"):
        translator(str(tmp_path / "missing.png"))


def test_a_missing_extra_is_named_with_its_pip_install_before_any_work(checkpoint, tmp_path, monkeypatch, capsys):
    # Before, in a core install (`pip install ugatit-rs`, no extras): `ugatit-rs export CKPT
    # -o g.onnx` and `--web DIR` traced the generator, then torch's exporter failed with a
    # traceback ("OnnxExporterError: Module onnx is not installed!"); --web fetched
    # onnxruntime-web first. A None in sys.modules makes the import fail as a missing module does.
    import sys

    from ugatit_rs import app
    from ugatit_rs import export as E
    from ugatit_rs.cli import main

    g = ug.Generator(ngf=4, n_blocks=1, img_size=32, light=True)
    hint = r"pip install 'ugatit-rs\[{}\]'"
    cases = (
        ("onnx", lambda: E.onnx(g, tmp_path / "g.onnx"), "ONNX export needs onnx: " + hint.format("export")),
        ("onnxconverter_common", lambda: E.onnx(g, tmp_path / "g.onnx", fp16=True), "fp16 export needs onnxconverter_common"),
        ("onnx", lambda: E.web(g, tmp_path / "page", ort_web=tmp_path), "the web page's ONNX export needs onnx"),
        ("gradio", lambda: app.build_app(checkpoint), "the app needs gradio: " + hint.format("app")),
        ("matplotlib", lambda: viz.loss_curves([{"d_loss": 1.0, "g_loss": 2.0}]), "loss_curves needs matplotlib: " + hint.format("viz")),
    )  # fmt: skip
    for module, call, message in cases:
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, module, None)
            with pytest.raises(ImportError, match=message):
                call()
    assert not os.listdir(tmp_path)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "onnx", None)
        for argv in (["-o", str(tmp_path / "g.onnx")], ["--web", str(tmp_path / "page")]):
            assert main(["export", checkpoint, *argv]) == 2
            assert "needs onnx: pip install 'ugatit-rs[export]'" in capsys.readouterr().err
    assert not os.listdir(tmp_path)
    # Installed but broken: its own reason stays in the message.
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "onnx.py").write_text("raise ImportError('libonnx.so: cannot open shared object file')\n")
    with monkeypatch.context() as patch:
        patch.delitem(sys.modules, "onnx", raising=False)
        patch.syspath_prepend(str(tmp_path / "broken"))
        with pytest.raises(ImportError, match="onnx is installed but does not import: libonnx.so"):
            E.onnx(g, tmp_path / "g.onnx")
