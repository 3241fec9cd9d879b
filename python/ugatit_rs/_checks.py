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
