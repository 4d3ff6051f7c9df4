"""Error metrics that refuse to broadcast.

The tutorial computes ``sqrt(mean_squared_error(y_true, y_pred))``. A reader who writes
``np.sqrt(np.mean((y_true - y_pred) ** 2))`` with ``y_true`` of shape ``(N,)`` and ``y_pred`` of
shape ``(N, 1)`` gets an ``(N, N)`` difference matrix and a wrong number without any warning
(handed case K5: ``[1, 2, 3]`` against ``[[1], [2], [3]]`` gives 1.1547005 instead of 0).

The rule here: the two arrays must have the same shape, with one explicit exception, the pair
``(N,)`` and ``(N, 1)`` (a column of targets against a model's one-unit output), where the
``(N,)`` side is reshaped to ``(N, 1)`` before subtracting. Anything else is a ``ValueError``
naming both shapes; so are empty inputs and NaN or infinite values on either side. The
computation is in float64 whatever the inputs' dtype.

(scikit-learn's ``mean_squared_error(..., squared=False)`` was removed in 1.6; it is not used.)
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["mse", "rmse", "rmse_table"]


def _as_array(a: Any, name: str) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor, without importing torch here
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not a numeric array: {exc}") from None
    return arr


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _as_array(y_true, "y_true"), _as_array(y_pred, "y_pred")
    if t.shape != p.shape:
        # The one reshape allowed: (N,) against (N, 1), in either order.
        if t.ndim == 1 and p.ndim == 2 and p.shape == (t.shape[0], 1):
            t = t.reshape(-1, 1)
        elif p.ndim == 1 and t.ndim == 2 and t.shape == (p.shape[0], 1):
            p = p.reshape(-1, 1)
        else:
            raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}; "
                             f"the shapes must match (only (N,) against (N, 1) is reshaped), "
                             f"they are never broadcast")
    if t.size == 0:
        raise ValueError(f"y_true and y_pred are empty (shape {t.shape})")
    for name, a in (("y_true", t), ("y_pred", p)):
        bad = ~np.isfinite(a)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            n = int(bad.sum())
            raise ValueError(f"{name} holds {n} non-finite value{'s' * (n != 1)} "
                             f"(first {float(a[idx])!r} at index {idx})")
    return t, p


def _errors(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.floating]:
    """The errors and the mean of their squares (inf when the squares overflow float64)."""
    t, p = _pair(y_true, y_pred)
    with np.errstate(over="ignore"):
        d = t - p
        return d, np.mean(d ** 2)


def _overflow(d: np.ndarray, what: str) -> ValueError:
    a = np.abs(d)
    idx = tuple(int(i) for i in np.unravel_index(np.argmax(a), a.shape))
    return ValueError(f"the {what} is beyond float64 (largest |error| {float(a[idx]):g} at index {idx}): "
                      f"the values are too large; rescale them")


def mse(y_true: Any, y_pred: Any) -> float:
    """Mean squared error over all elements, shapes checked as described in the module docstring.
    A mean beyond float64 (errors above ~1e154) is a ValueError, never ``inf``."""
    d, m = _errors(y_true, y_pred)
    if not np.isfinite(m):
        raise _overflow(d, "mean squared error")
    return float(m)


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error: ``sqrt(mse(y_true, y_pred))``, shapes checked, never broadcast.

    When the squares overflow float64 but the RMSE does not (errors between ~1e154 and ~1e308),
    it is computed as ``s * sqrt(mean((d / s)**2))`` with ``s = max|d|``, not returned as ``inf``."""
    d, m = _errors(y_true, y_pred)
    if np.isfinite(m):
        return float(np.sqrt(m))
    with np.errstate(over="ignore"):
        s = np.max(np.abs(d))
    if not np.isfinite(s):
        raise _overflow(d, "error itself")
    return float(s * np.sqrt(np.mean((d / s) ** 2)))


def rmse_table(y_true: Any, forecasts: Mapping[str, Any],
               to_original: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """RMSE of several forecasts of the same targets, in scaled and (optionally) original units.

    ``forecasts`` maps a name (e.g. ``'model'``, ``'persistence'``) to predictions;
    ``to_original`` undoes the scaling (e.g. ``lambda a: data.unscale(scaler, a)``). Returns
    ``{name: {'scaled': ..., 'original': ...}}`` (``'original'`` only with ``to_original``).
    """
    t = _as_array(y_true, "y_true")
    t_orig = to_original(t) if to_original is not None else None
    out: dict[str, dict[str, float]] = {}
    for name, f in forecasts.items():
        f = _as_array(f, f"forecast {name!r}")
        row = {"scaled": rmse(t, f)}
        if to_original is not None:
            row["original"] = rmse(t_orig, to_original(f))
        out[name] = row
    return out
