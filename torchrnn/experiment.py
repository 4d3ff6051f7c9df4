"""The tutorial's sunspots experiment as library calls: data -> windows -> model -> fit -> report.

The CLI (``torchrnn train`` / ``torchrnn predict``) is a thin shell around this module, and the
benchmarks call it too, so the numbers in the README, in ``metrics.json`` and in a benchmark
come from the same code::

    prep = prepare(series=None, time_steps=12, split=0.8, scale_on="train")   # embedded data
    run = train_run(prep, hidden_units=3, epochs=20, batch_size=1, seed=0)
    run.metrics["rmse"]["test"]["model"]          # {'scaled': ..., 'original': ...}
    save_checkpoint("model.pt", run.checkpoint())
    model, ckpt = load_checkpoint("model.pt")

Windows follow the tutorial: the series is split in time order, each part is cut into windows
on its own (so no window straddles the split), scaled by a ``MinMaxScaler`` fitted on the
training part (``scale_on='train'``, the default: no look-ahead) or on the whole series
(``scale_on='all'``, the tutorial exactly). RMSE is reported in scaled units and in the data's
original units (sunspot numbers for the embedded series), beside the persistence baseline
(each window's last value as its forecast).

The model is seeded with ``seed`` (Keras initialisers drawn from a generator seeded with it)
and :func:`torchrnn.train.fit` draws its shuffle orders from another generator seeded with the
same number, so one integer repeats a run exactly.

Nothing here prints.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from . import __version__
from . import data as D
from .metrics import rmse_table
from .model import RNNModel, create_rnn, create_rnn_from_config
from .train import History, _first_non_finite, fit, predict

__all__ = ["Prepared", "Run", "CheckpointError", "prepare", "train_run", "report",
           "save_checkpoint", "load_checkpoint", "prepare_from_checkpoint", "atomic_write", "weights_digest",
           "content_digest", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "torchrnn-checkpoint"
# Version 2: every tensor and every entry of CONTENT_KEYS carries a sha256 (save_checkpoint), and a
# version-2 checkpoint without one of them is refused. Version 1 (before the digests, or with the
# weights' alone) still loads, with whatever digests it has.
CHECKPOINT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or not one that ``torchrnn train`` wrote."""


# --------------------------------------------------------------------------- data

@dataclass
class Prepared:
    """A series split, scaled and cut into windows; ``X_*`` (N, L, 1), ``y_*`` (N, 1), scaled."""

    series: D.Series
    scaler: Any
    time_steps: int
    stride: int
    split: float
    scale_on: str
    n_train_values: int
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_train(self) -> int:
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.X_test.shape[0])

    def target_index(self, part: str) -> np.ndarray:
        """Position in the series of each window's target (0-based), for ``part`` 'train' or 'test'."""
        n = self.n_train if part == "train" else self.n_test
        offset = 0 if part == "train" else self.n_train_values
        return offset + np.arange(n) * self.stride + self.time_steps

    def to_original(self, a: np.ndarray) -> np.ndarray:
        return D.unscale(self.scaler, a)

    def windows(self) -> dict:
        return {"time_steps": self.time_steps, "stride": self.stride, "split": self.split,
                "scale_on": self.scale_on, "n_train_values": self.n_train_values,
                "n_train": self.n_train, "n_test": self.n_test}


def _as_series(series: D.Series | str | os.PathLike | None) -> D.Series:
    if isinstance(series, D.Series):
        return series
    return D.read_series(series)


def prepare(series: D.Series | str | os.PathLike | None = None, *, time_steps: int = 12,
            stride: int | None = None, split: float = 0.8, scale_on: str = "train",
            scaler: Any = None) -> Prepared:
    """Load (``None`` = embedded data, a path or a URL, or a loaded :class:`torchrnn.data.Series`),
    split, scale and window the series. ``scaler``: a fitted scaler to re-apply instead of
    fitting one (what ``predict`` does with a checkpoint's scaler)."""
    s = _as_series(series)
    train, test = D.train_test_split(s.values, split)
    if scaler is None:
        scaler = D.fit_scaler(train, s.values, scale_on=scale_on)
    stride = time_steps if stride is None else stride
    parts = {}
    for name, part in (("train", train), ("test", test)):
        try:
            parts[name] = D.make_windows(D.scale(scaler, part), time_steps, stride)
        except ValueError as exc:
            raise ValueError(f"the {name} part ({part.size} of {s.values.size} values at split {split:g}): "
                             f"{exc}") from None
    return Prepared(series=s, scaler=scaler, time_steps=int(time_steps), stride=int(stride),
                    split=float(split), scale_on=scale_on, n_train_values=int(train.size),
                    X_train=parts["train"][0], y_train=parts["train"][1],
                    X_test=parts["test"][0], y_test=parts["test"][1])


# --------------------------------------------------------------------------- run

@dataclass
class Run:
    """A trained model with everything needed to report on it and to rebuild it."""

    model: RNNModel
    prepared: Prepared
    history: History
    settings: dict
    predictions: dict[str, np.ndarray]
    metrics: dict
    fit_seconds: float

    def checkpoint(self) -> dict:
        """The checkpoint as plain containers and tensors (loadable with ``weights_only=True``)."""
        p = self.prepared
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "torchrnn_version": __version__,
            "model_config": dataclasses.asdict(self.model.config),
            "model_state": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "scaler": D.scaler_to_dict(p.scaler),
            "windows": p.windows(),
            "data": p.series.provenance(),
            "training": {**self.settings, "loss": list(self.history.loss),
                         "fit_seconds": self.fit_seconds},
            "metrics": {"rmse": self.metrics["rmse"]},
        }


def report(model: RNNModel, prep: Prepared) -> tuple[dict[str, np.ndarray], dict]:
    """Predictions for both parts and the RMSE table (model and persistence, scaled and original)."""
    preds, rmse = {}, {}
    for part in ("train", "test"):
        X, y = getattr(prep, f"X_{part}"), getattr(prep, f"y_{part}")
        preds[part] = predict(model, X).astype(np.float64)
        rmse[part] = rmse_table(y, {"model": preds[part], "persistence": D.persistence_forecast(X)},
                                to_original=prep.to_original)
    metrics = {
        "rmse": rmse,
        "units": {"scaled": f"MinMaxScaler to [0, 1] fitted on {'the training part' if prep.scale_on == 'train' else 'the whole series'}",
                  "original": prep.series.column},
        "n_windows": {"train": prep.n_train, "test": prep.n_test},
    }
    return preds, metrics


def train_run(prep: Prepared, *, hidden_units: int | Sequence[int] = 3,
              activation: Sequence[str] = ("tanh", "tanh"), epochs: int = 20, batch_size: int = 1,
              lr: float = 1e-3, seed: int | None = 0, device: str | torch.device = "cpu",
              progress: bool = False, callback: Callable[[int, dict], Any] | None = None) -> Run:
    """Build ``create_rnn(hidden_units, 1, (time_steps, 1), activation, seed=seed)``, fit it on the
    training windows like the tutorial, and report on both parts."""
    device = torch.device(device)
    units = list(hidden_units) if isinstance(hidden_units, (list, tuple)) else [hidden_units]
    model = create_rnn(units if len(units) > 1 else units[0], 1, (prep.time_steps, 1),
                       tuple(activation), seed=seed).to(device)
    t0 = time.perf_counter()
    history = fit(model, prep.X_train, prep.y_train, epochs=epochs, batch_size=batch_size, lr=lr,
                  seed=seed, progress=progress, callback=callback)
    fit_seconds = time.perf_counter() - t0
    preds, metrics = report(model, prep)
    settings = {"epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
                "seed": None if seed is None else int(seed), "device": str(device),
                "epochs_run": history.epochs,
                # what the process ran with (the CLI's --threads); read, never set, here
                "threads": torch.get_num_threads()}
    metrics.update({"loss": list(history.loss), "fit_seconds": fit_seconds, "training": settings,
                    "windows": prep.windows(), "model_config": dataclasses.asdict(model.config),
                    "count_params": model.count_params(), "data": prep.series.provenance()})
    return Run(model=model, prepared=prep, history=history, settings=settings, predictions=preds,
               metrics=metrics, fit_seconds=fit_seconds)


# --------------------------------------------------------------------------- files

def _kind(path: Path) -> str:
    """What a path that is not a regular file is, for messages."""
    mode = path.stat().st_mode
    return ("a directory" if stat.S_ISDIR(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a named pipe" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")


def file_to_write(path: str | os.PathLike) -> Path:
    """``path`` as a file name :func:`atomic_write` can create: not a directory, in a folder that
    exists; a ValueError naming it otherwise."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ValueError(f"{path} is a directory; give a file name")
        if path.is_symlink():  # write the file it names; replacing the link would leave that file stale
            path = Path(os.path.realpath(path))
        if path.exists() and not path.is_file():
            # os.replace would put a regular file where a device or a pipe was (/dev/full, a FIFO)
            raise ValueError(f"{path} is {_kind(path)}; give the name of a regular file")
        if not path.parent.is_dir():
            raise ValueError(f"cannot write {path}: folder {path.parent} does not exist")
    except OSError as exc:  # a name too long, a loop of links, a folder that cannot be searched
        raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file in the same directory, then
    ``os.replace`` it into place: a reader (or an interrupted run) sees the old file or the
    complete new one, never half of one."""
    path = file_to_write(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # it names a random temporary name; the user gave `path`
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        # mkstemp creates the file 0600; give it the mode an ordinary open() would (0666 - umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename in (None, tmp):  # a full disk, a failed rename
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return path


def weights_digest(state: dict) -> dict[str, str]:
    """sha256 of every tensor of a state dict: over its dtype, shape and bytes (C order), by name.

    torch's zip reader does not check the CRCs of the archive, so a flipped bit in the weight
    data of a ``model.pt`` would load silently and predict other numbers; these digests, stored
    beside the weights, let :func:`load_checkpoint` refuse such a file and name the tensor."""
    out = {}
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        out[name] = h.hexdigest()
    return out


# The checkpoint's entries that are plain containers (no tensors): what predict rebuilds the
# model and the windows from, and the record of how it was trained.
CONTENT_KEYS = ("model_config", "scaler", "windows", "data", "training", "metrics")


def _canonical(value: Any) -> bytes:
    """One byte string per value: JSON with sorted keys, exact float reprs and NaN spelled out;
    anything JSON does not know is written as its type and repr, so it still changes the digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True,
                      default=lambda o: f"<{type(o).__name__}>{o!r}").encode()


def content_digest(checkpoint: dict) -> dict[str, str]:
    """sha256 of each of the checkpoint's :data:`CONTENT_KEYS` that it holds, by key.

    Like :func:`weights_digest` for the tensors: a byte damaged in the pickle, or a scaler or
    window setting edited by hand, would otherwise load and predict other numbers without a word.
    (A digest kept in the same file guards against accidents, not against someone who recomputes
    it: :func:`save_checkpoint` does that for a deliberate edit.)"""
    return {key: hashlib.sha256(_canonical(checkpoint[key])).hexdigest()
            for key in CONTENT_KEYS if key in checkpoint}


def save_checkpoint(path: str | os.PathLike, checkpoint: dict) -> Path:
    """``torch.save`` the checkpoint atomically (see :func:`atomic_write`), with the sha256 of
    each weight tensor (``model_state_sha256``, see :func:`weights_digest`) and of each other
    entry (``content_sha256``, see :func:`content_digest`) added."""
    checkpoint = {k: v for k, v in checkpoint.items() if k not in ("model_state_sha256", "content_sha256")}
    checkpoint["version"] = CHECKPOINT_VERSION  # the version that carries the digests
    if "model_state" in checkpoint:
        checkpoint["model_state_sha256"] = weights_digest(checkpoint["model_state"])
    checkpoint["content_sha256"] = content_digest(checkpoint)
    return atomic_write(path, lambda f: torch.save(checkpoint, f))


def _check_digest(path: Path, ckpt: dict) -> None:
    """Refuse weights whose bytes differ from those saved. Checkpoints written before digests
    were stored (no ``model_state_sha256``) load without this check."""
    recorded = ckpt.get("model_state_sha256")
    if recorded is None:
        if ckpt.get("version") != 1:
            raise CheckpointError(f"checkpoint {path}: model_state_sha256 is missing (a version-"
                                  f"{ckpt.get('version')} checkpoint records a digest for every tensor)")
        return
    state = ckpt["model_state"]
    if not isinstance(recorded, dict) or not isinstance(state, dict) or \
            not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path}: model_state or model_state_sha256 is not a dict of tensors/digests")
    if set(recorded) != set(state):
        raise CheckpointError(f"checkpoint {path}: model_state holds tensors {sorted(state)} but digests were "
                              f"recorded for {sorted(recorded)}")
    actual = weights_digest(state)
    for name in sorted(state):
        if actual[name] != recorded[name]:
            raise CheckpointError(f"checkpoint {path}: tensor {name} is damaged: its sha256 {actual[name][:12]}... "
                                  f"differs from the {str(recorded[name])[:12]}... recorded when it was saved")


def _check_content_digest(path: Path, ckpt: dict) -> None:
    """Refuse an entry (scaler, windows, ...) that differs from what was saved, naming it.
    Checkpoints written before these digests were stored (no ``content_sha256``) load without it."""
    recorded = ckpt.get("content_sha256")
    if recorded is None:
        if ckpt.get("version") == 1:
            return
        raise CheckpointError(f"checkpoint {path}: content_sha256 is missing (a version-"
                              f"{ckpt.get('version')} checkpoint records a digest for every entry)")
    if not isinstance(recorded, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in recorded.items()):
        raise CheckpointError(f"checkpoint {path}: content_sha256 is not a dict of digests by key")
    if ckpt.get("version") != 1:
        unrecorded = [k for k in CONTENT_KEYS if k in ckpt and k not in recorded]
        if unrecorded:
            raise CheckpointError(f"checkpoint {path}: {', '.join(unrecorded)} {'has' if len(unrecorded) == 1 else 'have'} "
                                  f"no digest in content_sha256 (a version-{ckpt.get('version')} checkpoint "
                                  f"records one for every entry)")
    gone = sorted(k for k in recorded if k not in ckpt)
    if gone:
        raise CheckpointError(f"checkpoint {path}: {', '.join(gone)} {'was' if len(gone) == 1 else 'were'} "
                              f"saved but {'is' if len(gone) == 1 else 'are'} missing")
    for key in sorted(recorded):
        try:
            actual = hashlib.sha256(_canonical(ckpt[key])).hexdigest()
        except (TypeError, ValueError) as exc:  # e.g. a dict edited to hold keys of mixed types
            raise CheckpointError(f"checkpoint {path}: {key} cannot be checked against its digest "
                                  f"({type(exc).__name__}: {exc})") from None
        if actual != recorded[key]:
            raise CheckpointError(f"checkpoint {path}: {key} is damaged or was edited: its sha256 "
                                  f"{actual[:12]}... differs from the {recorded[key][:12]}... recorded "
                                  f"when it was saved")


def _check_windows(w: Any, model: RNNModel) -> None:
    """The windowing that predict re-applies, and a model that fits it: one value per window in,
    one forecast out (what ``train_run`` builds). Raises ValueError naming the key."""
    if not isinstance(w, dict):
        raise ValueError(f"windows is a {type(w).__name__}, not a dict")
    missing = [k for k in ("time_steps", "stride", "split", "scale_on") if k not in w]
    if missing:
        raise ValueError(f"windows has no {', '.join(missing)}")
    for key in ("time_steps", "stride"):
        v = w[key]
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"windows {key} must be a positive integer, got {v!r}")
    if isinstance(w["split"], (bool, np.bool_)) or not isinstance(w["split"], (int, float, np.number)) \
            or not 0 < w["split"] < 1:
        raise ValueError(f"windows split must be a number strictly between 0 and 1, got {w['split']!r}")
    if w["scale_on"] not in ("train", "all"):
        raise ValueError(f"windows scale_on must be 'train' or 'all', got {w['scale_on']!r}")
    cfg = model.config
    if cfg.return_sequences:
        raise ValueError("model_config return_sequences is True; a forecaster gives one value per window")
    if cfg.dense_units != 1:
        raise ValueError(f"model_config dense_units is {cfg.dense_units!r}; a forecaster has one output")
    if cfg.input_shape != (int(w["time_steps"]), 1):
        raise ValueError(f"model_config input_shape {cfg.input_shape} does not fit windows time_steps "
                         f"{w['time_steps']!r} of one value, ({w['time_steps']!r}, 1)")


def _check_finite_weights(model: RNNModel) -> None:
    """A NaN or an infinity in a weight (saved so, or edited in and re-hashed) makes every
    forecast NaN; refuse it here, naming the tensor, not later in whatever meets the NaN first."""
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            count, idx, value = _first_non_finite(t)
            raise ValueError(f"tensor {name} holds {count} non-finite value{'s' * (count != 1)} "
                             f"(first {value!r} at index {idx})")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[RNNModel, dict]:
    """Rebuild the model a checkpoint describes and load its weights (``weights_only=True``).

    Raises :class:`CheckpointError` (a ``ValueError``) with the path and the reason when the
    file is missing, unreadable, not a torchrnn checkpoint, inconsistent with its config, or
    holds a weight tensor or an entry (scaler, windows, ...) that differs from the sha256
    recorded when it was saved.
    """
    if not str(path).strip():  # Path('') would be the current folder
        raise CheckpointError(f"checkpoint path {str(path)!r} is empty; give a model.pt file")
    path = Path(path)
    try:
        if path.is_dir():
            raise CheckpointError(f"checkpoint {path} is a directory; give the model.pt file inside it")
        if not path.exists():
            raise CheckpointError(f"checkpoint {path}: no such file")
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} is {_kind(path)}, not a checkpoint file")
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc.strerror or exc}") from None
    if not zipfile.is_zipfile(path):
        # torch.save writes a zip archive; anything else (a truncated copy, a text file) would
        # otherwise surface as torch's long advice about weights_only.
        raise CheckpointError(f"checkpoint {path}: not a PyTorch checkpoint (not a zip archive; "
                              f"truncated or another kind of file)")
    try:
        # read onto the CPU (where the digests are checked); the model moves to map_location below
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"checkpoint {path}: holds objects that weights_only=True refuses to "
                              f"load; only checkpoints written by 'torchrnn train' are read") from None
    except Exception as exc:  # torch raises many kinds here (zip, EOF, Runtime) for a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path}: cannot be read ({type(exc).__name__}: {first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a torchrnn checkpoint (no format={CHECKPOINT_FORMAT!r})")
    if ckpt.get("version") not in READABLE_VERSIONS or isinstance(ckpt.get("version"), bool):
        raise CheckpointError(f"checkpoint {path}: version {ckpt.get('version')!r}, this torchrnn reads "
                              f"versions {' and '.join(map(str, READABLE_VERSIONS))}")
    missing = [k for k in ("model_config", "model_state", "scaler", "windows", "data") if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing {', '.join(missing)}")
    _check_digest(path, ckpt)
    _check_content_digest(path, ckpt)
    try:
        if not isinstance(ckpt["model_config"], dict):
            raise ValueError(f"model_config is a {type(ckpt['model_config']).__name__}, not a dict")
        model = create_rnn_from_config(ckpt["model_config"])
        _check_windows(ckpt["windows"], model)
        try:
            model.load_state_dict(ckpt["model_state"], strict=True)
        except RuntimeError as exc:  # its first line alone ("Error(s) in loading ...") names nothing
            raise ValueError(" ".join(str(exc).split())[:300]) from None
        _check_finite_weights(model)
        D.scaler_from_dict(ckpt["scaler"])
        if not isinstance(ckpt["data"], dict):
            raise ValueError(f"data is a {type(ckpt['data']).__name__}, not a dict")
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path}: inconsistent content ({first})") from None
    model.to(map_location)
    model.eval()
    return model, ckpt


def prepare_from_checkpoint(ckpt: dict, series: D.Series | str | os.PathLike | None) -> Prepared:
    """The checkpoint's windowing and scaler applied to ``series`` (the same split fraction)."""
    w = ckpt["windows"]
    return prepare(series, time_steps=int(w["time_steps"]), stride=int(w["stride"]),
                   split=float(w["split"]), scale_on=str(w["scale_on"]),
                   scaler=D.scaler_from_dict(ckpt["scaler"]))
