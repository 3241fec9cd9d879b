"""A static in-browser translator: the page, its script, the ONNX model and onnxruntime-web.

>>> from ugatit_rs.web import write_page
>>> write_page(generator, "site")        # then: python -m http.server -d site

The page (``index.html``, ``app.js``, ``style.css`` beside this file) runs the exported
generator with onnxruntime-web's WebAssembly backend: nothing leaves the browser and nothing is
fetched from anywhere but the folder itself. onnxruntime-web's files come from its npm package,
found in this order: the ``ort_web`` argument (a ``dist`` folder, an unpacked package, or a
``node_modules``), the ``UGATIT_ORT_WEB`` environment variable, the cache
(``$XDG_CACHE_HOME/ugatit-rs``, by default ``~/.cache/ugatit-rs``), and finally ``npm pack``
into that cache (needs Node.js's npm and the npm registry, once).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .._files import write_json

ONNXRUNTIME_WEB_VERSION = "1.30.0"

# onnxruntime-web's WebAssembly build: the classic-script API (global `ort`), and the glue module
# and binary it loads. The glue is copied as `.js`: `python -m http.server` on Python 3.11 serves
# `.mjs` with a MIME type browsers refuse for modules.
RUNTIME_FILES = {
    "ort.wasm.min.js": "ort.wasm.min.js",
    "ort-wasm-simd-threaded.mjs": "ort-wasm-simd-threaded.js",
    "ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm",
}
PAGE_FILES = ("index.html", "app.js", "style.css")
_HERE = Path(__file__).resolve().parent

__all__ = ["ONNXRUNTIME_WEB_VERSION", "find_onnxruntime_web", "write_page"]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ugatit-rs" / f"onnxruntime-web-{ONNXRUNTIME_WEB_VERSION}"


def _dist_in(folder: Path) -> Path | None:
    """The folder holding the runtime files: ``folder`` itself, its ``dist``, or the package in a
    ``node_modules``."""
    for candidate in (folder, folder / "dist", folder / "onnxruntime-web" / "dist", folder / "package" / "dist"):
        if all((candidate / name).is_file() for name in RUNTIME_FILES):
            return candidate
    return None


def _npm_pack(target: Path, timeout: float = 300) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm not found")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        subprocess.run(
            [npm, "pack", f"onnxruntime-web@{ONNXRUNTIME_WEB_VERSION}", "--silent"],
            cwd=tmp,
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        (archive,) = Path(tmp).glob("onnxruntime-web-*.tgz")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        os.replace(Path(tmp) / "package", target)  # atomic: a half-unpacked cache is never seen


def find_onnxruntime_web(ort_web: str | os.PathLike | None = None, fetch: bool = True) -> Path:
    """The folder with onnxruntime-web's WebAssembly files (see the module's docstring)."""
    given = ort_web or os.environ.get("UGATIT_ORT_WEB")
    if given:
        found = _dist_in(Path(given))
        if found is None:
            raise FileNotFoundError(
                f"{given}: no onnxruntime-web files here (expected {', '.join(RUNTIME_FILES)} in it or its dist/)"
            )
        return found
    cache = _cache_dir()
    found = _dist_in(cache)
    if found is None and fetch:
        try:
            _npm_pack(cache)
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            detail = getattr(e, "stderr", b"") or b""
            raise FileNotFoundError(
                f"onnxruntime-web {ONNXRUNTIME_WEB_VERSION} is needed for the web page and could not be fetched "
                f"with npm ({e}{': ' + detail.decode(errors='replace')[-300:] if detail else ''}). Install it with "
                f"`npm pack onnxruntime-web@{ONNXRUNTIME_WEB_VERSION}` and unpack it, then pass its folder as "
                "--ort_web DIR (or ort_web=..., or UGATIT_ORT_WEB)"
            ) from e
        found = _dist_in(cache)
    if found is None:
        raise FileNotFoundError(f"onnxruntime-web not found in {cache}")
    return found


def _check_options(generator, direction, title, img_size) -> int:
    """The page's own settings, checked before anything is written; returns the size photos
    are resized to."""
    from .. import export
    from .._checks import whole, working_size

    export.check_exportable(generator)
    if direction not in ("A2B", "B2A"):
        raise ValueError(f"direction must be 'A2B' or 'B2A', got {direction!r}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a string, got {type(title).__name__}")
    if img_size is not None and whole("img_size", img_size, 8, 8192) % 4:
        raise ValueError(f"img_size must be a multiple of 4 between 8 and 8192, got {img_size!r}")
    own = generator.config.get("img_size")
    return working_size(export.fully_convolutional(generator), own, img_size, own or 256, "the generator")


def _check_target(directory: Path) -> None:
    """Refuses a file, and a folder holding anything but an earlier page: the page's
    ``index.html`` would replace a user's own."""
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory}: exists and is not a folder")
    if not directory.is_dir() or not any(directory.iterdir()):
        return
    try:
        earlier = "onnxruntime_web" in json.loads((directory / "model.json").read_text())
    except (OSError, ValueError, TypeError):
        earlier = False
    if not earlier:
        raise FileExistsError(
            f"{directory}: holds files that an earlier `export --web` did not write; choose a new or empty folder"
        )


def write_page(
    generator,
    directory: str | os.PathLike,
    direction: str = "A2B",
    fp16: bool = False,
    ort_web: str | os.PathLike | None = None,
    title: str | None = None,
    img_size: int | None = None,
) -> str:
    """Writes ``index.html``, its script and style, ``model.onnx`` (uint8 in and out, with the
    attention outputs), ``model.json`` and onnxruntime-web's files into ``directory``. Serve the
    folder with any static server (``python -m http.server -d DIR``) and open it. Photos are
    resized to ``img_size`` (default: the generator's own, else 256). ``directory`` must be new,
    empty, or an earlier page (which is updated)."""
    from .. import export
    from .._extras import require

    img_size = _check_options(generator, direction, title, img_size)
    require("onnx", "export", "the web page's ONNX export")  # before fetching onnxruntime-web
    if fp16:
        require("onnxconverter_common", "export", "fp16 export")
    runtime = find_onnxruntime_web(ort_web)  # fail before writing anything
    directory = Path(directory)
    _check_target(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "img_size": img_size,
        "attention": export.has_attention(generator),
        "direction": direction,
        "fp16": fp16,
        "title": title or f"U-GAT-IT {direction}",
        "onnxruntime_web": ONNXRUNTIME_WEB_VERSION,
    }
    # model.json first: it marks the folder as a page, so one left half-written (a full disk)
    # is updated by the next run instead of refused as a folder of someone else's files.
    write_json(directory / "model.json", meta, indent=2)
    export.onnx(generator, directory / "model.onnx", attention=True, uint8=True, fp16=fp16)
    for name in PAGE_FILES:
        shutil.copyfile(_HERE / name, directory / name)
    (directory / "ort").mkdir(exist_ok=True)
    for source, target in RUNTIME_FILES.items():
        shutil.copyfile(runtime / source, directory / "ort" / target)
    return os.fspath(directory)
