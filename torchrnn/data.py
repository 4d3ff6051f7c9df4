"""The sunspots series: load, split, scale, cut into windows.

The tutorial's data pipeline, step by step, and what this module does with it::

    df = pd.read_csv(url, usecols=[1], engine='python')    load_series(source)
    data = MinMaxScaler().fit_transform(df.values)          fit_scaler(train, values, scale_on='all')
    split = int(len(data) * 0.8)                            train_test_split(values, 0.8)
    trainX, trainY = get_XY(train, 12)                      make_windows(train, 12)

Loading (``load_series`` / ``read_series``)
    ``source`` is ``None`` (the series embedded in the package,
    ``torchrnn/data/monthly-sunspots.csv``: 2820 monthly values, 1749-01 ..
    1983-12), a local path, or an ``http://`` / ``https://`` URL (read with
    urllib, timeout ``URL_TIMEOUT`` seconds). The file is a CSV with one header
    line; like the tutorial's ``usecols=[1]`` the values come from the second
    column, or from ``column`` (a 0-based index or a header name).
    Accepted: LF or CRLF line endings, no final newline, quoted fields, a UTF-8
    byte-order mark, blank lines before the header and after the last data row.
    Refused, with a ``DataError`` (a ``ValueError``) that names the source and
    the place: a line whose number of fields differs from the header's (for
    example a trailing note such as ``Zuerich monthly sunspot numbers
    1749-1983``), an empty, ``NaN``/``NA``-like, non-numeric or infinite value
    (data rows are counted from 1, file lines from 1 with the header as line 1),
    a blank line between data rows (a lost value would shift every later one),
    a header with fewer than two fields when the default column is used, a
    first line that looks like data instead of a header, and a file without
    data rows. When every label in the first column is a year-month ``YYYY-MM``
    (quoted or not, as in the embedded file and the tutorial's download), the
    months must be consecutive, one row per month, in increasing order: a
    repeated, missing or out-of-order month, or a month number outside 01..12,
    is refused naming the data row, its line, the month and the one before it
    (a lost or doubled row would shift every later window by a month). Labels
    of any other form (days such as ``1749-01-15``, plain numbers, names) are
    not checked, nor is the first column when it is the values column
    (``column=0``). Nothing is dropped or filled silently: the tutorial's pandas
    call turns a trailing note into NaN, and ``MinMaxScaler`` ignores NaN
    while fitting, so the error would surface only as a NaN loss.

Provenance
    ``read_series`` returns a ``Series(values, source, sha256, column)``; its
    ``provenance()`` is a JSON-ready dict for metrics files and checkpoints.
    ``source`` is ``EMBEDDED_SOURCE`` for the embedded file, the resolved path
    for a file, or the URL; ``sha256`` is the digest of the bytes read.
    ``load_series`` is ``read_series(...).values``.

Splitting
    ``train_test_split(values, train_fraction=0.8)`` cuts in time order at
    ``int(len(values) * train_fraction)``, exactly as the tutorial does. (It is
    not scikit-learn's function of the same name, which shuffles.)

Scaling
    ``fit_scaler(train, full=None, scale_on='train')`` returns a fitted
    ``sklearn.preprocessing.MinMaxScaler``. The default fits on the training
    part only, so no information from the test part leaks into the inputs
    (the series' maximum, 253.8 in 1957-10, lies in the test part);
    ``scale_on='all'`` fits on the whole series ``full``, which reproduces the
    tutorial exactly. ``scale(scaler, a)`` / ``unscale(scaler, a)`` work on an
    array of any shape and return float64 of the same shape, checked finite.
    ``scaler_to_dict`` / ``scaler_from_dict`` carry the fitted scaler as plain
    floats (for a checkpoint loaded with ``weights_only=True``).

Windows
    ``make_windows(values, time_steps, stride=None)`` is the tutorial's
    ``get_XY``: window ``i`` is ``values[i*stride : i*stride + time_steps]`` and
    its target is ``values[i*stride + time_steps]``. The default stride is
    ``time_steps`` (non-overlapping windows, targets at indices ``time_steps,
    2*time_steps, ...``, the tutorial's choice); ``stride=1`` gives sliding
    windows. There are ``len(range(time_steps, len(values), stride))`` windows.
    Returns ``X`` of shape ``(N, time_steps, 1)`` and ``y`` of shape ``(N, 1)``,
    both float64; ``y`` has the model's output shape, so a loss or an RMSE
    cannot broadcast ``(N,)`` against ``(N, 1)``.
    ``persistence_forecast(X)`` is the baseline "next value = last value seen":
    ``X[:, -1, :]``, shape ``(N, 1)`` like ``y``.

This module does not import torch and never prints; scikit-learn is imported only when a
scaler is built (``fit_scaler``, ``scaler_from_dict``), as it takes about a second.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import math
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scikit-learn costs about a second to import; see _min_max_scaler
    from sklearn.preprocessing import MinMaxScaler

__all__ = [
    "DataError",
    "Series",
    "EMBEDDED_SOURCE",
    "URL_TIMEOUT",
    "read_series",
    "load_series",
    "train_test_split",
    "fit_scaler",
    "scale",
    "unscale",
    "scaler_to_dict",
    "scaler_from_dict",
    "make_windows",
    "persistence_forecast",
]

EMBEDDED_SOURCE = "embedded:torchrnn/data/monthly-sunspots.csv"
URL_TIMEOUT = 5.0  # seconds, per connect / read on the socket
_MAX_URL_BYTES = 64 * 2**20  # a series CSV is kilobytes; refuse to buffer a runaway download

# Plain decimal notation only: float() alone would also take 'nan', 'inf' and '1_000'.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# What pandas reads as NaN by default (its na_values), lower-cased.
_MISSING = {"nan", "-nan", "na", "n/a", "#n/a", "#n/a n/a", "#na", "-1.#ind", "1.#ind", "-1.#qnan",
            "1.#qnan", "null", "none", "<na>"}
# A year-month label such as 1749-01 (ASCII digits only: \d would also take other scripts' digits).
_YEAR_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class DataError(ValueError):
    """The data source cannot be read, or its content is not a clean numeric series."""


@dataclass(frozen=True, eq=False)
class Series:
    """A loaded series and where it came from.

    values: float64 1-D array; source: EMBEDDED_SOURCE, a resolved path or a URL;
    sha256: hex digest of the bytes read; column: the header name of the column used.
    """

    values: np.ndarray
    source: str
    sha256: str
    column: str

    def provenance(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "column": self.column,
                "n_values": int(self.values.size)}


# --------------------------------------------------------------------------- loading

def read_series(source: str | os.PathLike | None = None, column: int | str = 1) -> Series:
    """Read one numeric column of a CSV file (see the module docstring) with its provenance."""
    raw, label = _read_bytes(source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    values, name = _parse_csv(text, label, column)
    return Series(values=values, source=label, sha256=hashlib.sha256(raw).hexdigest(), column=name)


def load_series(source: str | os.PathLike | None = None, column: int | str = 1) -> np.ndarray:
    """The values of ``read_series(source, column)``: a float64 1-D array."""
    return read_series(source, column).values


def _read_bytes(source) -> tuple[bytes, str]:
    if source is None:
        ref = resources.files("torchrnn").joinpath("data", "monthly-sunspots.csv")
        return ref.read_bytes(), EMBEDDED_SOURCE
    if isinstance(source, str) and _URL_SCHEME.match(source):
        if not source.lower().startswith(("http://", "https://")):
            raise DataError(f"{source}: unsupported URL scheme (use http://, https:// or a local path)")
        return _read_url(source), source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be None, a path or an http(s) URL, got {type(source).__name__}")
    path = Path(source)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {os.fspath(source)}: {exc.strerror or exc}") from None
    return raw, str(path.resolve())


def _read_url(url: str) -> bytes:
    # The original exception is reported by its reason only (`from None`): a user who
    # mistyped a URL or is offline needs one line, not urllib's chained traceback.
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT) as resp:
            raw = resp.read(_MAX_URL_BYTES + 1)
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        reason = _reason(exc.reason)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = _reason(exc)
    else:
        if len(raw) > _MAX_URL_BYTES:
            raise DataError(f"cannot read {url}: larger than {_MAX_URL_BYTES} bytes")
        return raw
    raise DataError(f"cannot read {url}: {reason}") from None


def _reason(exc) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {URL_TIMEOUT:g} s (timed out)"
    return str(exc) or type(exc).__name__


def _parse_csv(text: str, label: str, column: int | str) -> tuple[np.ndarray, str]:
    if text.strip() == "":
        raise DataError(f"{label}: no data: the file is empty")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = None
    col = None
    values: list[float] = []
    labels: list[str] = []  # the first column, for _check_months
    lines: list[int] = []  # the file line of each data row, for its messages
    row = 0
    blank = None  # the first blank line after a data row, until another data row shows it is inside
    for fields in reader:
        line = reader.line_num  # last physical line of this record (records here are one line)
        if all(f.strip() == "" for f in fields) and len(fields) <= 1:
            if row and blank is None:
                blank = line
            continue  # blank or whitespace-only line
        if blank is not None:
            # Between two data rows a blank line may be a lost value: every later value would
            # then stand one step early, with no error (pandas skips it without a word).
            raise DataError(f"{label}: line {blank} is blank, between data rows {row} and {row + 1}; "
                            f"blank lines are accepted only before the header and after the last row")
        if header is None:
            header = fields
            col = _column_index(header, column, label)
            if _NUMBER.fullmatch(header[col].strip()):
                raise DataError(
                    f"{label}: line {line} looks like data, not a header: {_show(fields)}; "
                    f"the file needs a header line such as 'Month,Sunspots'")
            continue
        row += 1
        if len(fields) != len(header):
            raise DataError(f"{label}: line {line} (data row {row}): expected {len(header)} fields "
                            f"like the header, found {len(fields)}: {_show(fields)}")
        where = f"{label}: data row {row} (line {line})"
        values.append(_number(fields[col], f"{where}, column {header[col].strip()!r}"))
        labels.append(fields[0])
        lines.append(line)
    if not values:
        raise DataError(f"{label}: no data: only a header line ({_show(header)}), no data rows")
    if col != 0:  # with column 0 the first column is the values themselves, not labels
        _check_months(labels, lines, label, header[0].strip())
    return np.asarray(values, dtype=np.float64), header[col].strip()


def _check_months(labels: list[str], lines: list[int], label: str, name: str) -> None:
    """If every label is a year-month YYYY-MM, the months must run one row per month, in order.

    A repeated, lost or swapped row would otherwise shift every later window by a month
    without any error. Labels of any other form (days, numbers, names) are not checked.
    """
    labels = [s.strip() for s in labels]
    if not all(map(_YEAR_MONTH.fullmatch, labels)):
        return
    # Every label is 7 ASCII characters 'YYYY-MM': read the digits as one (n, 7) byte array.
    d = np.frombuffer("".join(labels).encode("ascii"), dtype=np.uint8).reshape(-1, 7).astype(np.int64) - 48
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month = d[:, 5] * 10 + d[:, 6]

    def fail(i: int, what: str, rule: str = "the months must be consecutive, one row per month, "
                                                "in increasing order") -> None:
        raise DataError(f"{label}: data row {i + 1} (line {lines[i]}), column {name!r}: {what}; {rule}")

    bad = np.flatnonzero((month < 1) | (month > 12))
    if bad.size:
        i = int(bad[0])
        after = f" follows {labels[i - 1]}" if i else ""
        fail(i, f"month {labels[i]}{after}: there is no month {labels[i][5:]}", "months are 01 to 12")
    index = year * 12 + (month - 1)
    step = np.diff(index)
    off = np.flatnonzero(step != 1)
    if not off.size:
        return
    k = int(off[0])
    if step[k] > 1 and index[k + 2:].size and index[k + 2:].min() < index[k + 1]:
        # The 'missing' months come later: rows out of order (e.g. two swapped), not a gap.
        k = int(np.flatnonzero(step[k:] < 1)[0]) + k
    i = k + 1  # the offending row; i - 1 is the one before it
    cur, prev = labels[i], labels[i - 1]
    if step[k] > 1:
        n = int(step[k]) - 1
        fail(i, f"month {cur} follows {prev}: {n} month{'s' * (n != 1)} missing")
    if step[k] == 0:
        fail(i, f"month {cur} repeats (the row before is also {prev})")
    fail(i, f"month {cur} comes after {prev} (out of order)")


def _column_index(header: list[str], column: int | str, label: str) -> int:
    names = [h.strip() for h in header]
    if isinstance(column, str):
        if column not in names:
            raise DataError(f"{label}: no column {column!r} in the header; columns are {names}")
        return names.index(column)
    if isinstance(column, bool) or not isinstance(column, int) or column < 0:
        raise ValueError(f"column must be a header name or a non-negative index, got {column!r}")
    if column >= len(header):
        raise DataError(
            f"{label}: the header has {len(header)} field{'s' if len(header) != 1 else ''} "
            f"({_show(header)}), so there is no column {column} (0-based); "
            f"expected at least {column + 1} columns such as 'Month,Sunspots'")
    return column


def _number(text: str, where: str) -> float:
    s = text.strip()
    if _NUMBER.fullmatch(s):
        x = float(s)
        if math.isfinite(x):
            return x
        raise DataError(f"{where}: value out of range: {text!r}")
    if s == "":
        raise DataError(f"{where}: empty value")
    if s.lower() in _MISSING:
        raise DataError(f"{where}: missing value {text!r}; the series must be complete")
    raise DataError(f"{where}: not a number: {text!r}")


def _show(fields: list[str]) -> str:
    return repr(",".join(fields))


# --------------------------------------------------------------------------- split

def train_test_split(values, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Split a 1-D series in time order at ``int(len(values) * train_fraction)``."""
    a = _as_series(values, "values")
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) \
            or not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be a number strictly between 0 and 1, got {train_fraction!r}")
    split = int(a.size * train_fraction)
    if split < 1 or split >= a.size:
        raise ValueError(f"train_fraction={train_fraction} splits {a.size} values into "
                         f"{split} train / {a.size - split} test; both parts must be non-empty")
    return a[:split], a[split:]


# --------------------------------------------------------------------------- scaling

def _min_max_scaler(**kwargs) -> MinMaxScaler:
    # Imported here, not at the top: scikit-learn pulls in scipy and pandas (about a second),
    # and only building a scaler needs it; reading, splitting and windowing do not.
    from sklearn.preprocessing import MinMaxScaler

    return MinMaxScaler(**kwargs)


def fit_scaler(train, full=None, scale_on: str = "train") -> MinMaxScaler:
    """A ``MinMaxScaler`` to [0, 1], fitted on ``train`` or (``scale_on='all'``) on ``full``.

    ``full`` is the whole series (train part first); it is required for 'all' and
    unused for 'train', so a caller may always pass both.
    """
    tr = _as_series(train, "train")
    if scale_on == "train":
        fit_on = tr
    elif scale_on == "all":
        if full is None:
            raise ValueError("scale_on='all' needs the whole series as `full`")
        fit_on = _as_series(full, "full")
        if fit_on.size < tr.size or not np.array_equal(fit_on[: tr.size], tr):
            raise ValueError("`full` must be the whole series and begin with the `train` part")
    else:
        raise ValueError(f"scale_on must be 'train' or 'all', got {scale_on!r}")
    if np.ptp(fit_on) == 0:
        # MinMaxScaler would silently use a range of 1 and 'scaled' numbers would mean nothing.
        raise DataError(f"cannot scale: the {'training part' if scale_on == 'train' else 'series'} is constant "
                        f"({fit_on.size} values all equal to {float(fit_on[0])!r})")
    return _min_max_scaler(feature_range=(0, 1)).fit(fit_on.reshape(-1, 1))


def scale(scaler: MinMaxScaler, values) -> np.ndarray:
    """``scaler.transform`` for an array of any shape (one feature); same shape, float64."""
    return _apply(scaler.transform, values, "scale")


def unscale(scaler: MinMaxScaler, values) -> np.ndarray:
    """``scaler.inverse_transform`` for an array of any shape, e.g. (N, 1) predictions."""
    return _apply(scaler.inverse_transform, values, "unscale")


def _apply(fn, values, what: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        n = int(np.count_nonzero(~np.isfinite(a)))
        raise ValueError(f"{what}: input holds {n} non-finite value{'s' * (n != 1)}")
    out = fn(a.reshape(-1, 1)).reshape(a.shape)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{what}: result holds non-finite values")
    return out


def scaler_to_dict(scaler: MinMaxScaler) -> dict:
    """The fitted scaler as plain floats: data_min, data_max, feature_range."""
    return {"data_min": float(scaler.data_min_[0]), "data_max": float(scaler.data_max_[0]),
            "feature_range": [float(v) for v in scaler.feature_range]}


def scaler_from_dict(d: dict) -> MinMaxScaler:
    """Rebuild the scaler of ``scaler_to_dict``; its transform is bit-identical to the original's."""
    # The dict may come from a hand-edited checkpoint: a zero or NaN range would make MinMaxScaler
    # use a range of 1 (or ignore the NaN) and every 'scaled' number would mean nothing, so it
    # is checked as fit_scaler checks the data it fits on.
    if not isinstance(d, dict):
        raise ValueError(f"scaler must be a dict with data_min, data_max, feature_range, got {type(d).__name__}")
    missing = [k for k in ("data_min", "data_max", "feature_range") if k not in d]
    if missing:
        raise ValueError(f"scaler has no {', '.join(missing)} (keys: {sorted(d)})")

    def real(value, name):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value):
            raise ValueError(f"scaler {name} must be a finite number, got {value!r}")
        return float(value)

    lo, hi = real(d["data_min"], "data_min"), real(d["data_max"], "data_max")
    if not hi > lo or not np.isfinite(hi - lo):
        raise ValueError(f"scaler data_max {hi!r} must be greater than data_min {lo!r} (by a finite amount); "
                         f"a constant series cannot be scaled")
    fr = d["feature_range"]
    if not isinstance(fr, (list, tuple)) or len(fr) != 2:
        raise ValueError(f"scaler feature_range must be a pair (min, max), got {fr!r}")
    fr = (real(fr[0], "feature_range[0]"), real(fr[1], "feature_range[1]"))
    if not fr[1] > fr[0]:
        raise ValueError(f"scaler feature_range {fr!r} must be increasing")
    # MinMaxScaler derives scale_ and min_ from data_min_/data_max_ only, so fitting on
    # the two extremes recomputes exactly the same attributes.
    return _min_max_scaler(feature_range=fr).fit(np.array([[lo], [hi]]))


# --------------------------------------------------------------------------- windows

def make_windows(values, time_steps: int, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's ``get_XY``: X (N, time_steps, 1) and y (N, 1), float64.

    Window i is ``values[i*stride : i*stride + time_steps]``, its target
    ``values[i*stride + time_steps]``; ``stride`` defaults to ``time_steps``.
    """
    a = _as_series(values, "values")
    if isinstance(time_steps, bool) or not isinstance(time_steps, (int, np.integer)) or time_steps < 1:
        raise ValueError(f"time_steps must be a positive integer, got {time_steps!r}")
    if stride is None:
        stride = time_steps
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    if a.size <= time_steps:
        raise ValueError(f"a series of length {a.size} gives no window with time_steps={time_steps}: "
                         f"it needs at least {time_steps + 1} values ({time_steps} inputs and 1 target)")
    starts = np.arange(0, a.size - time_steps, stride)
    X = a[starts[:, None] + np.arange(time_steps)][:, :, None]
    y = a[starts + time_steps][:, None]
    return X, y


def persistence_forecast(X) -> np.ndarray:
    """The naive forecast "next value = last value in the window": ``X[:, -1, :]``."""
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] < 1:
        raise ValueError(f"X must have shape (N, time_steps, features), got {x.shape}")
    return x[:, -1, :].copy()


def _as_series(values, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D series, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        n = int(np.count_nonzero(~np.isfinite(a)))
        raise ValueError(f"{name} holds {n} non-finite value{'s' * (n != 1)} "
                         f"(first at index {int(np.argmin(np.isfinite(a)))})")
    return a
