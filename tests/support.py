"""Test helpers: where the shared real data lives, and the comparison with the reference."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(*parts: str) -> Path:
    """A file of ../shared/data; in CI its absence fails the test instead of skipping it."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing; CI must provide ../shared beside the project")
        pytest.skip(f"{path} not available (the project expects ../shared/data)")
    return path



def assert_close_to_reference(actual: np.ndarray, expected: np.ndarray, *, rtol: float = 1e-4,
                              atol: float = 1e-5) -> None:
    """|actual - expected| <= atol * max(1, max|expected|) + rtol * |expected| everywhere.

    The engine computes in float32 and the reference in float64; the absolute term
    scales with the largest output so that logits of any size are judged alike.
    NaN must appear in exactly the same places.
    """
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    assert actual.dtype == np.float32, f"dtype {actual.dtype}, expected float32"
    nan_actual, nan_expected = np.isnan(actual), np.isnan(expected)
    if not np.array_equal(nan_actual, nan_expected):
        where = tuple(int(i) for i in np.argwhere(nan_actual != nan_expected)[0])
        raise AssertionError(f"NaN mismatch at {where}: expected {expected[where]}, got {actual[where]}")
    finite = ~nan_expected
    if not finite.any():
        return
    magnitude = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    error = np.where(finite, np.abs(actual.astype(np.float64) - expected), 0.0)
    allowed = atol * magnitude + rtol * np.abs(np.where(finite, expected, 0.0))
    bad = error > allowed
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} values differ; first at {where}: "
            f"expected {expected[where]!r}, got {actual[where]!r} "
            f"(error {error[where]:.3g}, allowed {allowed[where]:.3g})"
        )


# The file a hostile pickle would create if any of its code ran.
MARKER = "pwned_marker"


class ReduceTo:
    """Pickles as a call of ``func(*args)``: what a hostile weight file carries."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args
