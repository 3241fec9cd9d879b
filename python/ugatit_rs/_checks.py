"""Argument checks shared by the Python layer."""

from __future__ import annotations

import numbers


def whole(name: str, value, low: int, high: int | None = None) -> int:
    """``value`` as an int when it is an integer (numpy's too, not a bool) of at least ``low``
    (and at most ``high``); else a ValueError naming the argument."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be an int {bounds}, got {value!r}")
    return int(value)


def working_size(light: bool, own: int | None, requested: int | None, default: int, source: str) -> int:
    """The image size a generator works at: a full-mode one's ``own`` (its dense layers fix it;
    ``requested`` anything else is a ValueError naming ``source``), else ``requested``, else
    ``default``. A light one is fully convolutional and takes any size."""
    if not light:
        if requested is not None and requested != own:
            raise ValueError(f"{source}: a full-mode generator works at img_size={own} only, got img_size={requested}")
        return own
    return requested if requested is not None else default
