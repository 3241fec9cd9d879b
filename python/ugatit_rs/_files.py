"""Writing files so that a failure never leaves a half-written one under its final name.

A full disk, a quota or a kill in the middle of a write would otherwise leave a truncated
model, image or JSON file that looks finished. Everything the package writes whole goes to a
temporary name beside its destination (``files::temporary_beside`` in Rust, the one scheme for
both sides) and
is renamed over it once complete; a failure removes the temporary file and raises ``OSError``
naming the destination.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

import torch

from . import _native


def regular_file(path: str | os.PathLike) -> str:
    """``path`` if it is a regular file (or a link to one); else ``FileNotFoundError`` saying
    what it is. Opening a FIFO named like an image would wait for a writer forever."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        if os.path.isdir(path):
            reason = "is a folder"
        elif os.path.exists(path):
            reason = "is not a regular file (a FIFO, socket or device?)"
        else:
            reason = "no such file or folder"
        raise FileNotFoundError(f"{path}: {reason}")
    return path


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` lies strictly below ``folder``, as spelled (a folder that is a link
    inside another) or with links resolved."""
    return any(
        a.startswith(b.rstrip(os.sep) + os.sep)
        for a, b in (
            (os.path.abspath(path), os.path.abspath(folder)),
            (os.path.realpath(path), os.path.realpath(folder)),
        )
    )


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path to write ``path``'s new content to; it replaces ``path`` when the
    block ends without an exception and is removed otherwise. An ``OSError`` about the temporary
    file is raised about ``path``, the name the user knows."""
    path = os.fspath(path)
    tmp = os.fspath(_native.temporary_beside(path))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (tmp, None):
            raise OSError(exc.errno, exc.strerror, path) from exc
        raise


def write_json(path: str | os.PathLike, value, **kwargs) -> None:
    """``json.dump(value)`` to ``path``, replacing it only once complete."""
    with replacing(path) as tmp, open(tmp, "w") as f:
        json.dump(value, f, **kwargs)


class _Sink:
    """A file for ``torch.save`` that never fails a write: torch's zip writer turns a failed write
    into a RuntimeError naming nothing ("enforce fail at inline_container.cc"), and when its
    destructor retries, into a C++ ``terminate`` that aborts the process. The first error is
    kept, later writes are dropped, and :func:`torch_save` raises the error afterwards."""

    def __init__(self, file) -> None:
        self._file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        if self.error is None:
            try:
                self._file.write(data)
            except OSError as exc:
                self.error = exc
        return memoryview(data).nbytes

    def flush(self) -> None:
        if self.error is None:
            try:
                self._file.flush()
            except OSError as exc:
                self.error = exc


def torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, replacing ``path`` only once complete; a failed write (a full
    disk) raises its ``OSError`` naming ``path``, instead of torch's RuntimeError or an abort."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        sink = _Sink(f)
        torch.save(obj, sink)
        if sink.error is not None:
            raise sink.error
