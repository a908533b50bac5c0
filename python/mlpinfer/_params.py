"""What a parameter set is, in memory: keys ``W1..Wn``, ``b1..bn``, and float32 numbers."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._errors import WeightsError

__all__ = ["is_float32_number", "ordered_layers"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def is_float32_number(value: Any) -> bool:
    """A real number (not a bool) that float32, the engine's precision, holds as finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    try:
        number = float(value)
    except OverflowError:
        return False
    return math.isfinite(number) and abs(number) <= _FLOAT32_MAX


# Six digits are a million layers; more would reach Python's limit on converting long
# digit strings (a ValueError of its own) before saying anything useful.
_PARAM_NAME = re.compile(r"([Wb])([1-9][0-9]{0,5})\Z")


def ordered_layers(params: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    """``[(W1, b1), ..., (Wn, bn)]``; the keys must be exactly W1..Wn, b1..bn."""
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params must be a mapping of W1..Wn, b1..bn to arrays, got {type(params).__name__}"
        )
    found: dict[str, dict[int, Any]] = {"W": {}, "b": {}}
    for key, value in params.items():
        match = _PARAM_NAME.match(key) if isinstance(key, str) else None
        if match is None:
            raise WeightsError(f"unexpected key {key!r:.60}: expected only W1..Wn and b1..bn")
        found[match.group(1)][int(match.group(2))] = value
    depth = len(found["W"])
    if depth == 0:
        keys = sorted(str(key)[:20] for key in params)[:10]
        raise WeightsError(f"no weights found: expected keys W1..Wn, b1..bn, got {keys!r}")
    expected = set(range(1, depth + 1))
    for kind in ("W", "b"):
        if set(found[kind]) != expected:
            missing = sorted(expected - set(found[kind]))[:10]
            extra = sorted(set(found[kind]) - expected)[:10]
            raise WeightsError(
                f"keys must be W1..W{depth} and b1..b{depth} without gaps; "
                f"missing {[kind + str(i) for i in missing]}, unexpected {[kind + str(i) for i in extra]}"
            )
    return [(found["W"][i], found["b"][i]) for i in range(1, depth + 1)]
