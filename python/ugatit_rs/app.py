"""A local web app for a trained model (``ugatit-rs serve --checkpoint CKPT``; U-GAT-IT of either
variant, or CycleGAN), built with Gradio (the optional extra ``[app]``): upload one or several
images, choose the direction, see each translation beside its attention overlay (U-GAT-IT),
download the results. A request's files are kept for an hour (``KEEP_SECONDS``), then deleted.

>>> from ugatit_rs.app import build_app
>>> build_app("model.safetensors").launch()

Uploads are checked before they reach the network: files that are not images, images over
``max_pixels`` and modes other than RGB are reported in the page (converted where that is
meaningful: grey, palette, RGBA, CMYK, 16-bit), never raised.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from . import viz
from ._extras import require
from .translate import Translator

DEFAULT_MAX_PIXELS = 50_000_000  # larger uploads are refused before decoding (a decompression bomb guard)
MAX_FILES = 64  # per request
# How long a request's files stay on disk (ours and Gradio's copies): a server left running
# would otherwise keep every upload and translation until it exits.
KEEP_SECONDS = 3600

__all__ = ["build_app", "translate_uploads", "DEFAULT_MAX_PIXELS"]


def _open_rgb(path: str, max_pixels: int) -> tuple[np.ndarray | None, str | None]:
    """The upload as an HWC uint8 RGB array, or a message saying why not."""
    from PIL import Image, UnidentifiedImageError

    name = os.path.basename(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > max_pixels:
                return None, f"{name}: {width}×{height} is too large (over {max_pixels:,} pixels)"
            if width == 0 or height == 0:
                return None, f"{name}: the image is empty"
            return viz.upright_rgb(im), None  # upright, as a viewer shows it (phone photos)
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        return None, f"{name}: not a readable image ({type(e).__name__})"
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt files
        return None, f"{name}: could not be decoded ({e})"


def translate_uploads(
    translators: dict[str, Translator], paths, direction: str, out_dir: str, max_pixels: int = DEFAULT_MAX_PIXELS
):
    """Translates uploaded files: ``(gallery items, files to download, message)``. Never raises
    for a bad upload; each one is named in the message."""
    paths = [p if isinstance(p, str) else getattr(p, "name", str(p)) for p in (paths or [])]
    if not paths:
        return [], [], "Upload one or more images first."
    notes = []
    if len(paths) > MAX_FILES:
        notes.append(f"Only the first {MAX_FILES} of {len(paths)} files were translated.")
        paths = paths[:MAX_FILES]
    translator = translators[direction]
    gallery, downloads, stems = [], [], set()
    for path in paths:
        image, problem = _open_rgb(path, max_pixels)
        if problem:
            notes.append(problem)
            continue
        out, heat = translator(image, return_attention=True)
        # Uploads may share a name (x.jpg and x.png, or two folders' x.png): number the later
        # ones, so no translation replaces another's download.
        stem, copies = Path(path).stem, 1
        while stem in stems:
            copies += 1
            stem = f"{Path(path).stem}_{copies}"
        stems.add(stem)
        target = os.path.join(out_dir, f"{stem}_{direction}.png")
        viz.save_png(out, target)
        gallery.append((out, f"{stem}: {direction}"))
        if heat is not None:  # U-GAT-IT's attention; CycleGAN has none
            overlay = viz.overlay(image, heat)
            viz.save_png(overlay, os.path.join(out_dir, f"{stem}_{direction}_attention.png"))
            gallery.append((overlay, f"{stem}: attention"))
        downloads.append(target)
    done = len(downloads)
    notes.insert(0, f"Translated {done} image{'s' if done != 1 else ''} ({direction}).")
    return gallery, downloads, "\n\n".join(notes)


def _request_folder(root: str, keep_seconds: float = KEEP_SECONDS) -> str:
    """A new folder under ``root`` for one request's files; folders of requests older than
    ``keep_seconds`` are deleted (Gradio has copied what it serves into its own cache by then)."""
    cutoff = time.time() - keep_seconds
    os.makedirs(root, exist_ok=True)  # a /tmp cleaner may have removed it under a long-running server
    with os.scandir(root) as entries:
        for entry in entries:
            try:
                stale = entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff
            except FileNotFoundError:  # a concurrent request pruned it first
                continue
            if stale:
                shutil.rmtree(entry.path, ignore_errors=True)
    return tempfile.mkdtemp(dir=root)


def build_app(checkpoint: str, device: str = "cpu", max_pixels: int = DEFAULT_MAX_PIXELS):
    """The Gradio Blocks app for one checkpoint (both directions loaded once)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    gr = require("gradio", "app", "the app")

    translators = {d: Translator.from_checkpoint(checkpoint, direction=d, device=device) for d in ("A2B", "B2A")}
    out_root = tempfile.mkdtemp(prefix="ugatit-rs-app-")  # the downloads; removed when the process exits
    atexit.register(shutil.rmtree, out_root, ignore_errors=True)

    def run(files, direction):
        try:
            return translate_uploads(translators, files, direction, _request_folder(out_root), max_pixels)
        except Exception as e:  # the page reports it; the server keeps serving
            return [], [], f"Translation failed: {type(e).__name__}: {e}"

    # Gradio's cache (uploads, the gallery's images, the downloads) is pruned on the same clock.
    with gr.Blocks(title="ugatit-rs", delete_cache=(KEEP_SECONDS, KEEP_SECONDS)) as app:
        gr.Markdown(f"## U-GAT-IT: {os.path.basename(checkpoint)}")
        with gr.Row():
            with gr.Column():
                files = gr.File(label="Images", file_count="multiple", elem_id="uploads")
                direction = gr.Radio(["A2B", "B2A"], value="A2B", label="Direction", elem_id="direction")
                button = gr.Button("Translate", variant="primary", elem_id="translate")
            with gr.Column():
                message = gr.Markdown(elem_id="message")
                gallery = gr.Gallery(label="Translation and attention", columns=2, elem_id="gallery")
                downloads = gr.File(label="Download", file_count="multiple", elem_id="downloads")
        button.click(run, [files, direction], [gallery, downloads, message])
    return app
