"""The optional extras of pyproject.toml (``pip install 'ugatit-rs[export]'``, ...): a feature
whose extra is missing says which one to install, before any work, instead of failing inside
a library that imported it lazily (torch's ONNX exporter, say, after the graph is traced)."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``module`` imported; an ImportError naming ``extra`` when it is not installed. A module
    that is installed but fails to import keeps its own reason in the message."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.partition(".")[0]
        missing = e.name in (module, top)
        reason = "" if missing else f" ({module} is installed but does not import: {e})"
        raise ImportError(f"{purpose} needs {top}: pip install 'ugatit-rs[{extra}]'{reason}") from e
