"""Translating images with a trained generator.

>>> t = Translator.from_checkpoint("results/selfie2anime/model/selfie2anime_params_0100000.safetensors")
>>> anime = t("me.jpg")                      # PIL image in, PIL image out
>>> out, heat = t(tensor, return_attention=True)

Inputs may be a ``PIL.Image``, an HWC uint8 numpy array, a ``(3, H, W)``/``(B, 3, H, W)`` float
tensor in [-1, 1], a file path, or a list of these; the result has the same kind. Images are
resized to the generator's ``img_size`` (aspect ratio ignored, as in training) and the result is
resized back to the input's size, unless ``keep_size=False``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import _native, viz
from ._checks import whole, working_size
from ._files import is_within, regular_file
from .convert import is_official, read_metadata, read_network, read_ours_network, weight_shape
from .models import Discriminator, Generator, has_attention, translate_batch


def generator_config_from_state_dict(sd, source: str = "state dict") -> dict:
    """Infers ``ngf``, ``n_blocks``, ``light`` and ``img_size`` from an official generator state
    dict (``source`` names it in errors)."""
    needed = ("DownBlock.1.weight", "FC.0.weight", "UpBlock2.11.weight")
    missing = [k for k in needed if k not in sd]
    if missing:
        raise _native.StateDictError(f"{source}: not a U-GAT-IT generator state dict: missing {', '.join(missing)}")
    ngf, input_nc = weight_shape(sd, "DownBlock.1.weight", 4, source)[:2]
    fc_in = weight_shape(sd, "FC.0.weight", 2, source)[1]
    light = fc_in == 4 * ngf
    return {
        "ngf": ngf,
        "n_blocks": sum(1 for k in sd if k.startswith("UpBlock1_") and k.endswith(".conv1.weight")),
        "light": light,
        "img_size": None if light else int(round((fc_in / (4 * ngf)) ** 0.5)) * 4,
        "input_nc": input_nc,
        "output_nc": weight_shape(sd, "UpBlock2.11.weight", 4, source)[0],
    }


class Translator:
    """A generator plus the pre- and post-processing to translate ordinary images.

    Image files and PIL images are turned upright by their EXIF orientation first, as a viewer
    shows them (a phone photo is stored sideways with a tag saying so), like ``data.prepare``.
    """

    def __init__(self, generator: Generator, img_size: int, batch_size: int = 8):
        from .cyclegan import PatchDiscriminator, ResnetGenerator

        if not isinstance(generator, torch.nn.Module) or isinstance(generator, (Discriminator, PatchDiscriminator)):
            raise TypeError(
                "Translator needs a generator (ugatit_rs.Generator, ugatit_rs.cyclegan.ResnetGenerator or a "
                f"module returning images), got {type(generator).__name__}"
            )
        self.img_size = whole("img_size", img_size, 8, 8192)
        if isinstance(generator, (Generator, ResnetGenerator)):  # sizes it cannot take fail here, not per image
            config, name = generator.config, type(generator).__name__
            self.img_size = working_size(config.get("light", True), config.get("img_size"), self.img_size, 0, name)
            if self.img_size % 4:
                raise ValueError(f"{name} takes images whose sides are multiples of 4, got img_size={self.img_size}")
        self.batch_size = whole("batch_size", batch_size, 1, 4096)
        self.generator = generator.eval()

    def __repr__(self) -> str:
        return f"Translator(img_size={self.img_size}, batch_size={self.batch_size}, generator={self.generator!r})"

    @classmethod
    def from_checkpoint(
        cls, path: str, direction: str = "A2B", device="cpu", img_size: int | None = None, batch_size: int = 8
    ) -> Translator:
        """Loads ``genA2B`` (``direction="A2B"``) or ``genB2A`` from a ugatit-rs checkpoint or a
        ``.pt``: an official one, one holding only its generators, or a bare generator state dict
        (``torch.save(generator.state_dict())``, used whatever the direction). The architecture is
        read from the weights themselves; the working image size is the full model's own, else
        ``img_size``, else the size it was trained at (from the checkpoint's config), else 256."""
        if direction not in ("A2B", "B2A"):
            raise ValueError(f"direction must be 'A2B' or 'B2A', got {direction!r}")
        cyclegan = _cyclegan_generator(path, direction, device)
        if cyclegan is not None:
            generator, trained_size = cyclegan
            return cls(generator, img_size if img_size is not None else trained_size or 256, batch_size)
        sd = read_network(path, "gen" + direction)
        trained_size, variant = None, "pytorch"
        if not is_official(path):
            meta = read_metadata(path)
            config = json.loads(meta.get("config") or "{}")
            trained_size = config.get("img_size")
            # "tf": the TensorFlow release's network (converted, or trained as variant="tf").
            variant = meta.get("variant") or config.get("variant", "pytorch")

        cfg = generator_config_from_state_dict(sd, f"{path}: gen{direction}")
        own = cfg.pop("img_size")
        size = working_size(cfg["light"], own, img_size, trained_size or 256, f"{path}: gen{direction}")
        g = Generator(img_size=size, device=device, variant=variant, init_weights=False, **cfg)
        g.load_state_dict(sd)
        return cls(g, size, batch_size)

    # -- conversions -------------------------------------------------------------------------------
    def _to_tensor(self, item) -> torch.Tensor:
        """Any supported input -> (3, H, W) float in [-1, 1] on the CPU."""
        from PIL import Image

        if isinstance(item, (str, os.PathLike)):
            item = viz.open_upright_rgb(item)
        if isinstance(item, Image.Image):
            item = viz.upright_rgb(item)
        if isinstance(item, np.ndarray):
            if item.dtype == np.uint8 and (item.ndim == 2 or item.ndim == 3 and item.shape[2] == 4) and item.size:
                item = np.array(Image.fromarray(item).convert("RGB"))  # grayscale or RGBA, as PIL converts
            if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
                raise ValueError(
                    f"numpy images must be HWC uint8 RGB (or HW gray, HWC RGBA), got {item.dtype} {item.shape}"
                )
            if 0 in item.shape:
                raise ValueError(f"cannot translate an empty ({item.shape[1]}x{item.shape[0]}) image")
            return viz.from_image(item)
        if isinstance(item, torch.Tensor):
            if item.dim() != 3 or item.shape[0] != 3 or not item.is_floating_point():
                raise ValueError(
                    f"tensor images must be float (3, H, W) in [-1, 1], got {item.dtype} {tuple(item.shape)}"
                )
            if 0 in item.shape:
                raise ValueError(f"cannot translate an empty image (shape {tuple(item.shape)})")
            viz.check_unit_range(item, "tensor images")
            return item.detach().float().cpu()
        raise TypeError(f"cannot translate a {type(item).__name__}: expected a path, PIL image, numpy array or tensor")

    @torch.no_grad()
    def _run(self, tensors: list[torch.Tensor], keep_size: bool):
        outs, heats = [], []
        dev = self.generator.device
        for i in range(0, len(tensors), self.batch_size):
            chunk = tensors[i : i + self.batch_size]
            x = torch.stack(
                [
                    F.interpolate(
                        t[None],
                        size=(self.img_size, self.img_size),
                        mode="bilinear",
                        align_corners=False,
                        antialias=True,
                    )[0]
                    for t in chunk
                ]
            ).to(dev)
            out, heat = translate_batch(self.generator, x)  # heat: None for CycleGAN (no attention)
            heat = heat.cpu() if heat is not None else [None] * len(chunk)
            for t, o, h in zip(chunk, out.cpu(), heat):
                if keep_size and tuple(t.shape[1:]) != (self.img_size, self.img_size):
                    o = F.interpolate(o[None], size=t.shape[1:], mode="bilinear", align_corners=False, antialias=True)[
                        0
                    ]
                outs.append(o.clamp(-1, 1))
                heats.append(h)
        return outs, heats

    def __call__(self, images, return_attention: bool = False, keep_size: bool = True):
        """Translates one input or a list (a tuple, or an iterator such as a generator
        expression, gives a list); returns the same kind (and heatmaps if asked). A batch, an
        (N, 3, H, W) float tensor or an (N, H, W, 3) uint8 array, gives a batch of that kind
        (the heatmaps as one (N, 1, h, w) tensor)."""
        from PIL import Image

        single = not isinstance(images, (list, tuple, Iterator))
        items = [images] if single else list(images)
        if not items:
            return ([], []) if return_attention else []
        # A 4-D tensor or array is a batch (an array one was refused as no HWC image).
        batch = isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4
        if batch and images.shape[0] == 0:
            raise ValueError(f"cannot translate an empty batch (shape {tuple(images.shape)})")
        if batch:
            items, single = list(images), False
        outs, heats = self._run([self._to_tensor(i) for i in items], keep_size)
        results = []
        for item, out in zip(items, outs):
            if isinstance(item, torch.Tensor):
                results.append(out.to(item.device))
            elif isinstance(item, np.ndarray):
                results.append(viz.to_image(out))
            else:
                results.append(Image.fromarray(viz.to_image(out)))
        if batch:
            results = torch.stack(results) if isinstance(images, torch.Tensor) else np.stack(results)
            heats = torch.stack(heats) if heats[0] is not None else None
        elif single:
            results, heats = results[0], heats[0]
        return (results, heats) if return_attention else results

    def translate_folder(self, src: str, dst: str, progress: bool = True, with_heatmap: bool = False) -> Translated:
        """Translates every image under ``src`` into ``dst`` (same relative paths, PNG). The folder is
        scanned like a dataset (regular files only, link loops followed once), leaving out ``dst``
        when it lies inside ``src`` (an earlier run's outputs); a file that cannot be decoded is
        skipped with a warning and listed in the result's ``skipped``."""
        self._check_heatmap(with_heatmap)
        jobs = _folder_jobs(src, dst, with_heatmap)
        return self._write(jobs, progress, with_heatmap, set(jobs))

    def translate_files(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        dst: str,
        root: str | None = None,
        progress: bool = True,
        with_heatmap: bool = False,
    ) -> Translated:
        """Translates image files into ``dst`` as ``<name>.png`` (or their paths relative to
        ``root``); returns the files written. A file that cannot be decoded is an error."""
        self._check_heatmap(with_heatmap)
        return self._write(_file_jobs(paths, dst, root, with_heatmap), progress, with_heatmap)

    def translate_inputs(
        self, inputs: Sequence[str | os.PathLike], dst: str, progress: bool = True, with_heatmap: bool = False
    ) -> Translated:
        """What ``ugatit-rs translate`` does: image files go to ``dst/<name>.png``, a folder's
        images to ``dst/<folder name>/<relative path>.png``, under one progress bar. A file found
        in a folder that cannot be decoded is skipped (see :class:`Translated`); one named
        itself is an error."""
        self._check_heatmap(with_heatmap)
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        jobs: dict[str, str] = {}
        scanned: set[str] = set()  # found by a folder scan, so skipped when unreadable
        named: set[str] = set()
        for src in inputs:
            if os.path.isdir(src):
                folder_dst = os.path.join(dst, os.path.basename(os.path.normpath(src)))
                found = _folder_jobs(src, folder_dst, with_heatmap, outputs=[dst])
                scanned.update(found)
            else:
                found = _file_jobs([src], dst, None, with_heatmap)
                named.update(found)
            _merge_jobs(jobs, found, with_heatmap)
        return self._write(jobs, progress, with_heatmap, scanned - named)

    def _check_heatmap(self, with_heatmap: bool) -> None:
        # Before: a CycleGAN run asked for heatmaps wrote none, without a word.
        if with_heatmap and not has_attention(self.generator):
            name = type(self.generator).__name__
            tqdm.write(
                f"warning: --heatmap/with_heatmap: a {name} has no attention map; no heatmaps are written",
                file=sys.stderr,
            )

    def _write(self, jobs: dict[str, str], progress: bool, with_heatmap: bool, skippable=frozenset()) -> Translated:
        """Translates ``{source: target}`` in batches; every target was checked to be distinct.
        A source in ``skippable`` that cannot be decoded is reported and passed over.

        Worker threads decode the next batch and encode the last one's PNGs while the generator
        runs (PIL releases the GIL in both): with a small model, encoding large PNGs took most
        of the time. At most two batches are in flight, so memory stays bounded."""
        sources = list(jobs)
        batches = [sources[i : i + self.batch_size] for i in range(0, len(sources), self.batch_size)]
        for folder in {os.path.dirname(target) for target in jobs.values()}:
            _native.remove_stale_temporaries(folder or ".")  # an earlier run killed mid-write
        written = Translated()
        pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="ugatit-rs-translate")
        try:
            with tqdm(total=len(sources), unit="img", disable=not progress) as bar:
                decoding = [pool.submit(viz.decode_or_reason, source) for source in batches[0]] if batches else []
                writing: list = []
                for k, batch in enumerate(batches):
                    chunk, images = [], []
                    for source, image in zip(batch, [job.result() for job in decoding]):
                        if isinstance(image, Exception):  # corrupt, truncated, too large, vanished
                            if source not in skippable:
                                raise image
                            written.skipped.add(source, image)
                        else:
                            chunk.append(source)
                            images.append(image)
                    if k + 1 < len(batches):
                        decoding = [pool.submit(viz.decode_or_reason, source) for source in batches[k + 1]]
                    outs, heats = self(images, return_attention=True) if images else ([], [])
                    for job in writing:  # the previous batch's files, before this one's start
                        job.result()
                    bar.update(len(batches[k - 1]) if k else 0)
                    writing = []
                    for source, out, heat in zip(chunk, outs, heats):
                        writing.append(pool.submit(_encode, out, heat if with_heatmap else None, jobs[source]))
                        written.append(jobs[source])
                for job in writing:
                    job.result()
                bar.update(len(batches[-1]) if batches else 0)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C or an error: no write left running
        if sources and not written:
            raise OSError(f"none of the {len(sources)} image(s) could be decoded; first: {written.skipped[0][1]}")
        return written


def _encode(out: np.ndarray, heat, target: str) -> None:
    viz.save_png(out, target)
    if heat is not None:
        viz.save_png(viz.overlay(out, heat), _heatmap_path(target))


class Translated(list):
    """The files a translation wrote, in input order, and in ``skipped`` the ``(path, reason)``
    of each image found in a folder that could not be decoded (it was passed over with a
    warning, as training and ``prepare`` pass over such files)."""

    def __init__(self, written=()):
        super().__init__(written)
        self.skipped = viz.UnreadableImages()


def _heatmap_path(target: str) -> str:
    return os.path.splitext(target)[0] + "_cam.png"


def _merge_jobs(jobs: dict[str, str], new: dict[str, str], with_heatmap: bool) -> None:
    """Adds ``{source: target}`` to ``jobs``, refusing two sources that would write the same file
    (``a/x.png`` and ``b/x.png``; ``x.jpg`` and ``x.png``; ``x.png``'s heatmap and ``x_cam.png``)
    and a target that is one of the inputs (an output folder that holds the images)."""

    def written(target: str) -> tuple[str, ...]:  # as real paths: "out/./x.png" is "out/x.png"
        return tuple(map(os.path.realpath, (target, _heatmap_path(target)) if with_heatmap else (target,)))

    writer = {file: source for source, target in jobs.items() for file in written(target)}
    inputs = {os.path.realpath(source) for source in (*jobs, *new)}
    for source, target in new.items():
        if source in jobs:
            continue  # the same file given twice is translated once
        for file in written(target):
            if file in writer:
                raise ValueError(
                    f"{writer[file]} and {source} would both be written to {file}; "
                    "translate them into different output folders"
                )
            if file in inputs:
                raise ValueError(f"translating {source} would overwrite the input {file}; choose another output folder")
            writer[file] = source
        jobs[source] = target


def _file_jobs(paths, dst: str, root: str | None, with_heatmap: bool) -> dict[str, str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    new: dict[str, str] = {}
    for path in map(regular_file, paths):
        rel = os.path.relpath(path, root) if root else os.path.basename(path)
        new.setdefault(path, os.path.join(dst, os.path.splitext(rel)[0] + ".png"))
    jobs: dict[str, str] = {}
    _merge_jobs(jobs, new, with_heatmap)
    return jobs


def _folder_jobs(src: str, dst: str, with_heatmap: bool, outputs: Sequence[str] = ()) -> dict[str, str]:
    """Jobs for every image under ``src``, written under ``dst``. Images inside an output folder
    that lies within ``src`` (``dst``, or ``outputs``: the command's ``-o``) are an earlier run's
    translations, not inputs: before, running ``translate photos -o photos/out`` a second time
    took them as inputs and refused to overwrite them."""
    inside = [os.fspath(folder) for folder in (dst, *outputs) if is_within(folder, src)]
    paths = [os.fspath(p) for p in _native.list_images(os.fspath(src))]
    paths = [p for p in paths if not any(is_within(p, folder) for folder in inside)]
    if not paths:
        left_out = f" outside the output folder {inside[0]}" if inside else ""
        raise FileNotFoundError(f"{src}: no images found{left_out}")
    return _file_jobs(paths, dst, src, with_heatmap)


def _cyclegan_generator(path, direction: str, device):
    """``(generator, trained img_size or None)`` when ``path`` is a CycleGAN checkpoint of ours
    (``G_A`` translates A2B, ``G_B`` B2A) or one of their ``*_net_G_A.pth`` files (one
    generator: ``direction`` is the file's own); None for a U-GAT-IT checkpoint."""
    from . import cyclegan

    path = os.fspath(path)
    if is_official(path):
        from .convert import load_plain

        if not cyclegan.is_network_state_dict(load_plain(path, shapes_only=True)):
            return None  # an official U-GAT-IT .pt: not read here, its generator is read once
        sd = load_plain(path)
        trained_size = None
    else:
        config = json.loads(read_metadata(path).get("config") or "{}")
        if config.get("model") != "cyclegan":
            return None
        sd = read_ours_network(path, "G_A" if direction == "A2B" else "G_B")
        trained_size = config.get("img_size")
    generator = cyclegan.ResnetGenerator(device=device, **cyclegan.generator_config_from_state_dict(sd, path))
    generator.load_state_dict(sd)
    return generator, trained_size
