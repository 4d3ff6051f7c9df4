"""The one comparison used by every test and by the parity report.

Shape first, then dtype (when asked), then values; a failure names the largest absolute and
relative difference, where it sits, the two values there, and the mean absolute difference.

Named tolerances (why each number):

* ``FLOAT32_ATOL = 1e-5``: float32 forward parity with Keras. A float32 has ~7 significant
  digits; a SimpleRNN of a few steps with O(1) activations accumulates a few ulps (~1e-7 each),
  so 1e-5 leaves two orders of magnitude of room yet catches a wrong transpose or bias (>1e-2).
* ``FLOAT64_ATOL = 1e-10``: float64 against the NumPy referee; float64 carries ~16 digits, so
  1e-10 is loose for rounding yet six orders tighter than any float32 effect.
* ``GOLDEN_ATOL = 1e-6``: golden values printed with 7-8 significant digits (handed cases).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FLOAT32_ATOL = 1e-5
FLOAT64_ATOL = 1e-10
GOLDEN_ATOL = 1e-6


@dataclass
class Diff:
    """How far ``actual`` is from ``expected``; ``ok`` says whether it is within tolerance."""

    name: str
    shape: tuple
    max_abs: float
    max_rel: float
    mean_abs: float
    where: tuple
    actual_at: float
    expected_at: float
    atol: float
    rtol: float
    ok: bool

    def describe(self) -> str:
        return (f"{self.name}: max |diff| {self.max_abs:.3e} at {self.where} "
                f"(actual {self.actual_at!r}, expected {self.expected_at!r}), max rel {self.max_rel:.3e}, "
                f"mean |diff| {self.mean_abs:.3e}; atol {self.atol:g}, rtol {self.rtol:g} -> "
                f"{'ok' if self.ok else 'MISMATCH'}")


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def compare(actual: Any, expected: Any, *, atol: float, rtol: float = 0.0, name: str = "value",
            check_dtype: bool = False) -> Diff:
    """Compare two arrays; raise ``AssertionError`` on a shape (or dtype) mismatch, else return a Diff.

    NaN anywhere counts as a mismatch (never as equal); an infinity agrees only with the same
    infinity.
    """
    a, e = _as_numpy(actual), _as_numpy(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {a.shape} != expected {e.shape} (no broadcasting)")
    if check_dtype and a.dtype != e.dtype:
        raise AssertionError(f"{name}: dtype {a.dtype} != expected {e.dtype}")
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    if a.size == 0:
        return Diff(name, a.shape, 0.0, 0.0, 0.0, (), float("nan"), float("nan"), atol, rtol, True)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.abs(a64 - e64)
        diff = np.where(np.isnan(diff), np.inf, diff)
        rel = diff / np.maximum(np.abs(e64), np.finfo(np.float64).tiny)
    idx = np.unravel_index(int(np.argmax(diff)), a.shape)
    with np.errstate(invalid="ignore"):
        # rtol scales with |expected| only where expected is finite: inf * rtol would excuse anything.
        # Identical values (the same infinity on both sides) agree; NaN never does.
        bound = atol + rtol * np.where(np.isfinite(e64), np.abs(e64), 0.0)
        ok = bool(np.all((diff <= bound) | ((a64 == e64) & ~np.isnan(a64))))
    return Diff(name, a.shape, float(diff[idx]), float(np.max(rel)), float(np.mean(diff)),
                tuple(int(i) for i in idx), float(a64[idx]), float(e64[idx]), atol, rtol, ok)


def assert_close(actual: Any, expected: Any, *, atol: float, rtol: float = 0.0, name: str = "value",
                 check_dtype: bool = False) -> Diff:
    """:func:`compare`, raising ``AssertionError`` with the full description when out of tolerance."""
    d = compare(actual, expected, atol=atol, rtol=rtol, name=name, check_dtype=check_dtype)
    if not d.ok:
        raise AssertionError(d.describe())
    return d
