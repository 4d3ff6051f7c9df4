"""``torchrnn train`` and ``torchrnn predict``: the tutorial's sunspots run from the command line.

    torchrnn train                          # the tutorial: 12 steps, SimpleRNN(3) tanh, Dense(1) tanh,
                                            # 20 epochs, batch size 1, 80/20 split, embedded data
    torchrnn train --scale-on all --out runs/tutorial     # the tutorial's scaling, look-ahead included
    torchrnn predict --checkpoint runs/tutorial/model.pt --out predictions.csv

``train`` writes into ``--out`` (default: a new ``runs/<timestamp>`` folder; existing files are
never overwritten): ``model.pt`` (weights, model config, scaler, windowing, data provenance;
written atomically), ``metrics.json``, ``plot.png`` (the tutorial's figure) and ``loss.png``;
it prints the RMSE table with the persistence baseline. ``predict`` rebuilds the model from the
checkpoint alone and writes one CSV row per window. Both run torch on one intra-op thread unless
``--threads`` says otherwise (``--help`` says why); ``metrics.json`` records the count used.

Exit codes: 0 done, 2 bad input (flags, data, checkpoint, sizes that do not fit in memory; one
line on stderr), 130 interrupted
(Ctrl-C; no checkpoint is left half-written). ``main(argv)`` returns the code instead of
exiting, so tests call it in-process.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Sequence

# Nothing heavy at the top (numpy, torch, scikit-learn, matplotlib are imported by the commands
# that use them), so --help and usage errors answer without the seconds those imports take.

OUTPUT_FILES = ("model.pt", "metrics.json", "plot.png", "loss.png")
DEFAULT_SEED = 0
RUNS_DIR = "runs"


class UsageError(ValueError):
    """A flag value that argparse's types cannot judge alone (device, output folder)."""


# --------------------------------------------------------------------------- argument types

def _number(parse, expected: str, ok=None):
    """An argparse type: ``parse(text)`` (``int`` or ``float``), then ``ok(value)`` if given.

    Either failing is a usage error (exit 2) that says what was expected and repeats the text.
    """
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if ok is not None and not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return convert


_positive_int = _number(int, "a positive integer", lambda v: v >= 1)
_positive_float = _number(float, "a positive finite number", lambda v: math.isfinite(v) and v > 0)
_fraction = _number(float, "a number strictly between 0 and 1", lambda v: 0 < v < 1)
# torchrnn.init.SEED_RANGE and its text, written out: importing it would load torch
SEED_RANGE = (0, 2**32 - 1)
SEED_RANGE_TEXT = "an integer from 0 to 2**32 - 1 (torch's CPU generator keeps 32 bits of a seed)"
_seed = _number(int, SEED_RANGE_TEXT, lambda v: SEED_RANGE[0] <= v <= SEED_RANGE[1])
# torch starts the threads it is given: 20000 fail in libgomp and 100000 segfault, so the count
# is bounded well above any useful value (a few per core) but far below those.
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))
_threads = _number(int, f"0 (torch's default) or a number of threads from 1 to {MAX_THREADS} "
                        f"(at most max(64, 4 x the {os.cpu_count() or 1} CPUs))", lambda v: 0 <= v <= MAX_THREADS)

DEFAULT_THREADS = 1
THREADS_HELP = (
    "torch intra-op threads for this process; 0 leaves torch's default (usually one per core) "
    f"(default: {DEFAULT_THREADS}). One because the tutorial's matrices are tiny: a second thread "
    "does not speed up the batch-size-1 training, and makes small matrix products several times "
    "slower whenever another process keeps a core busy; more threads pay off only for large "
    f"predictions on an otherwise idle machine. At most {MAX_THREADS} (max(64, 4 x CPUs))")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchrnn",
        description="The Keras SimpleRNN sunspots tutorial in PyTorch: train the forecaster, "
                    "or predict with a saved checkpoint.",
        epilog="Exit codes: 0 success, 2 bad input, 130 interrupted.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser(
        "train", help="train the tutorial's forecaster and write checkpoint, metrics and plots",
        description="Train create_rnn(hidden_units, 1, (time_steps, 1), activation) on windows of a "
                    "series, like the tutorial's compile(loss='mean_squared_error', optimizer='adam') + "
                    "fit(epochs=20, batch_size=1). Defaults reproduce the tutorial, except that the "
                    "scaler is fitted on the training part only (see --scale-on).")
    t.add_argument("--data", metavar="PATH_OR_URL", default=None,
                   help="CSV file or http(s) URL with a header line, values in the second column "
                        "(the tutorial's Month,Sunspots format); default: the embedded monthly "
                        "sunspots series (2820 values, 1749-01 to 1983-12)")
    t.add_argument("--time-steps", type=_positive_int, default=12, metavar="L",
                   help="inputs per window; the target is the next value (default: 12)")
    t.add_argument("--hidden-units", type=_positive_int, nargs="+", default=[3], metavar="H",
                   help="units of the SimpleRNN layer; several numbers stack several layers, "
                        "e.g. --hidden-units 8 4 (default: 3)")
    t.add_argument("--activation", nargs=2, default=["tanh", "tanh"], metavar=("RNN", "DENSE"),
                   help="Keras activation names for the SimpleRNN layer(s) and the Dense output "
                        "(default: tanh tanh)")
    t.add_argument("--epochs", type=_positive_int, default=20, help="training epochs (default: 20)")
    t.add_argument("--batch-size", type=_positive_int, default=1,
                   help="windows per optimizer step (default: 1, as in the tutorial)")
    t.add_argument("--lr", type=_positive_float, default=1e-3,
                   help="Adam learning rate; Adam follows Keras's update rule (default: 0.001)")
    t.add_argument("--split", type=_fraction, default=0.8,
                   help="fraction of the series, in time order, used for training (default: 0.8)")
    t.add_argument("--stride", type=_positive_int, default=None,
                   help="distance between window starts; default: --time-steps (non-overlapping "
                        "windows, the tutorial's get_XY); 1 gives sliding windows")
    t.add_argument("--scale-on", choices=("train", "all"), default="train",
                   help="fit the MinMaxScaler on the training part only (default, no look-ahead) or "
                        "on the whole series: 'all' reproduces the tutorial exactly, including its "
                        "look-ahead (the series' maximum lies in the test part)")
    t.add_argument("--seed", type=_seed, default=DEFAULT_SEED,
                   help=f"seed for the initial weights and the per-epoch shuffle; the same seed "
                        f"repeats a run exactly (default: {DEFAULT_SEED})")
    t.add_argument("--out", metavar="DIR", default=None,
                   help=f"output folder (created if missing, and checked writable before training; "
                        f"existing result files are never overwritten); default: a new "
                        f"{RUNS_DIR}/<YYYYmmdd-HHMMSS> folder")
    t.add_argument("--device", default="cpu",
                   help="torch device to train on: cpu, or cuda, mps or xpu where available (default: cpu)")
    t.add_argument("--threads", type=_threads, default=DEFAULT_THREADS, metavar="N", help=THREADS_HELP)
    t.add_argument("--quiet", action="store_true",
                   help="no progress bars and no preamble; the result table is still printed")
    t.set_defaults(handler=cmd_train)

    p = sub.add_parser(
        "predict", help="predict with a checkpoint written by 'torchrnn train' and write a CSV",
        description="Rebuild the model from a checkpoint (config, weights, scaler and windowing are "
                    "in it), cut the series into the same windows and write one CSV row per window: "
                    "part, window, target_index, actual, predicted (original units), actual_scaled, "
                    "predicted_scaled.")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="model.pt written by 'torchrnn train'")
    p.add_argument("--data", metavar="PATH_OR_URL", default=None,
                   help="series to predict, same format as for train; default: the data the "
                        "checkpoint was trained on (as recorded in it)")
    p.add_argument("--out", metavar="FILE.csv", default=None,
                   help="CSV file to write (replaced atomically if it exists; never a device or a pipe); "
                        "default, or -: standard output")
    p.add_argument("--whole", action="store_true",
                   help="cut windows from the whole series (part 'all') instead of the checkpoint's "
                        "train/test split")
    p.add_argument("--device", default="cpu",
                   help="torch device: cpu, or cuda, mps or xpu where available (default: cpu)")
    p.add_argument("--threads", type=_threads, default=DEFAULT_THREADS, metavar="N", help=THREADS_HELP)
    p.add_argument("--quiet", action="store_true", help="no summary on standard error")
    p.set_defaults(handler=cmd_predict)
    return parser


# --------------------------------------------------------------------------- helpers

# Device types whose tensors hold real data and that this torch can run on when the hardware is
# there; meta (shapes only), xla, ipu, privateuseone and the rest need packages or plug-ins this
# CLI does not load, and used to end in tracebacks (or, in predict, in a blamed checkpoint).
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def _device(name: str):
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name!r} is not a torch device name (use cpu or cuda)") from None
    if dev.type not in DEVICE_TYPES:
        raise UsageError(f"--device {name}: torchrnn runs on {', '.join(DEVICE_TYPES)} devices only "
                         f"(the last three where available); use --device cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here (torch {torch.__version__}, "
                         f"{'no GPU found' if torch.version.cuda else 'a build without CUDA'}); use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available here; use --device cpu")
    if dev.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise UsageError(f"--device {name}: XPU is not available here; use --device cpu")
    if dev.type in ("cuda", "xpu") and dev.index is not None:
        count = getattr(torch, dev.type).device_count()
        if dev.index >= count:
            raise UsageError(f"--device {name}: there {'is' if count == 1 else 'are'} {count} {dev.type} "
                             f"device{'' if count == 1 else 's'} here (indices from 0)")
    return dev


def _use_threads(n: int) -> int:
    """Give torch ``n`` intra-op threads for the rest of the process (0: leave torch's default);
    returns the count now in effect. The CLI owns its process; the library never does this."""
    import torch

    if n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def _out_dir(out: str | None) -> tuple[Path, bool]:
    """The folder to write into, and whether it is a fresh default name (made unique at creation)."""
    if out is None:
        return Path(RUNS_DIR) / time.strftime("%Y%m%d-%H%M%S"), True
    if not out.strip():  # Path('') is the current folder
        raise UsageError(f"--out {out!r} is empty; give a folder name")
    path = Path(out)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:  # a name too long, a folder that cannot be searched
        raise UsageError(f"--out {out}: {exc.strerror or exc}") from None
    if exists and not is_dir:
        raise UsageError(f"--out {out}: exists and is not a folder")
    taken = [f for f in OUTPUT_FILES if (path / f).exists()]
    if taken:
        raise UsageError(f"--out {out}: already holds {', '.join(taken)}; refusing to overwrite "
                         f"(choose another folder)")
    return path, False


def _out_file(out: str | None, inputs: Sequence[tuple[str, str | None]] = ()) -> Path | None:
    """predict's ``--out`` checked before the checkpoint is read: None (or '-') is standard
    output; otherwise a file name in an existing folder where files can be written, and none of
    the ``(flag, path)`` ``inputs`` the command reads."""
    from . import experiment as E

    if out is None or out == "-":
        return None
    if not out.strip():
        raise UsageError(f"--out {out!r} is empty; give a file name, or - for standard output")
    if out.endswith(("/", os.sep)):  # Path() drops the slash and would write a file of that name
        raise UsageError(f"--out {out} ends with {out[-1]}, which names a folder; give a file name")
    try:
        path = E.file_to_write(out)
    except ValueError as exc:
        raise UsageError(f"--out: {exc}") from None
    for flag, other in inputs:
        try:
            same = other is not None and Path(other).exists() and path.exists() and path.samefile(other)
        except OSError:
            same = False
        if same:
            raise UsageError(f"--out {out} is the {flag} file being read; writing it would destroy it")
    _check_can_write_in(path.parent, f"--out {out}: cannot write files in folder {path.parent}")
    return path


def _check_can_write_in(folder: Path, what: str) -> None:
    """Create and remove a file in ``folder``; a UsageError ``what (reason)`` if that fails."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".torchrnn-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{what} ({exc.strerror or exc})") from None


def _create_out_dir(path: Path, fresh: bool, flag: str) -> tuple[Path, list[Path]]:
    """Create the folder (and missing parents) and make sure files can be written in it, before
    any training: a folder found unusable only after the last epoch would lose the trained model.
    Returns the folder and the folders this call created (deepest first), to remove if the run
    fails before writing anything."""
    created = [p for p in (path, *path.parents) if not p.exists()]
    try:
        try:
            if not fresh:
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                for n in range(1000):
                    candidate = path if n == 0 else path.with_name(f"{path.name}-{n}")
                    try:
                        candidate.mkdir()
                        break
                    except FileExistsError:
                        continue
                else:
                    raise UsageError(f"cannot find a free folder name next to {path}")
                if candidate != path:  # path itself existed, so it is not in `created`
                    created = [candidate, *created]
                path = candidate
        except OSError as exc:
            raise UsageError(f"{flag} {path}: cannot create folder {exc.filename or path} "
                             f"({exc.strerror or exc})") from None
        if not fresh:
            taken = [f for f in OUTPUT_FILES if (path / f).exists()]
            if taken:  # someone wrote there since _out_dir looked
                raise UsageError(f"{flag} {path}: now holds {', '.join(taken)}; refusing to overwrite")
        _check_can_write_in(path, f"{flag} {path}: cannot write files in this folder")
    except BaseException:
        _remove_empty(created)
        raise
    return path, created


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove the folders this run created, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _fmt(x: float, width: int) -> str:
    if abs(x) >= 1e7:  # data in huge units: 1e298 printed with .2f would be 300 digits wide
        cell = f"{x:.3e}"
        return cell.rjust(width) if len(cell) < width else f" {cell}"
    return f"{x:>{width}.4f}" if abs(x) < 10 else f"{x:>{width}.2f}"


def format_rmse_table(metrics: dict) -> str:
    """The RMSE table: model and persistence rows; train and test, scaled and original columns."""
    unit = str(metrics["units"]["original"]) or "original"
    unit = unit[:10]
    rmse = metrics["rmse"]
    w = max(10, len(unit) + 2)
    lines = [
        f"RMSE ({metrics['n_windows']['train']} train / {metrics['n_windows']['test']} test windows)",
        f"{'':<13}{'train':>{2 * w}}{'test':>{2 * w}}",
        f"{'':<13}{'scaled':>{w}}{unit:>{w}}{'scaled':>{w}}{unit:>{w}}",
    ]
    for row in ("model", "persistence"):
        cells = "".join(_fmt(rmse[part][row][k], w) for part in ("train", "test") for k in ("scaled", "original"))
        lines.append(f"{row:<13}{cells}")
    return "\n".join(lines)


def _describe_source(prov: dict) -> str:
    return f"{prov['source']} ({prov['n_values']} values, sha256 {prov['sha256'][:12]}...)"


# --------------------------------------------------------------------------- train

def cmd_train(args: argparse.Namespace) -> int:
    from . import experiment as E
    from . import plot as P

    device = _device(args.device)
    threads = _use_threads(args.threads)
    out, fresh = _out_dir(args.out)
    prep = E.prepare(args.data, time_steps=args.time_steps, stride=args.stride, split=args.split,
                     scale_on=args.scale_on)
    units = args.hidden_units
    layers = " -> ".join(f"SimpleRNN({u}, {args.activation[0]})" for u in units)
    if not args.quiet:
        print(f"data: {_describe_source(prep.series.provenance())}")
        print(f"windows: {prep.n_train} train / {prep.n_test} test of {prep.time_steps} steps "
              f"(stride {prep.stride}, split {prep.split:g}, scaler fitted on "
              f"{'the training part' if prep.scale_on == 'train' else 'the whole series'})")
        print(f"model: {layers} -> Dense(1, {args.activation[1]}); {args.epochs} epochs, batch size "
              f"{args.batch_size}, Keras Adam lr {args.lr:g}, seed {args.seed}, {device}, "
              f"{threads} torch thread{'s' if threads != 1 else ''}")
        sys.stdout.flush()
    out, created = _create_out_dir(out, fresh, "--out")
    try:
        run = E.train_run(prep, hidden_units=units, activation=tuple(args.activation), epochs=args.epochs,
                          batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=device,
                          progress=not args.quiet)
        E.save_checkpoint(out / "model.pt", run.checkpoint())
        # strict JSON: a NaN or Infinity here would be a wrong number that some parsers reject
        text = json.dumps(run.metrics, indent=2, allow_nan=False) + "\n"
        E.atomic_write(out / "metrics.json", lambda f: f.write(text), mode="w")
        fig = P.forecast_figure(prep.y_train, prep.y_test, run.predictions["train"], run.predictions["test"],
                                ylabel=f"{prep.series.column or 'Value'} (scaled)")
        E.atomic_write(out / "plot.png", lambda f: P.save_png(fig, f))
        lfig = P.loss_figure(run.history.loss)
        E.atomic_write(out / "loss.png", lambda f: P.save_png(lfig, f))
    except BaseException:
        _remove_empty(created)
        raise

    print(f"trained in {run.fit_seconds:.1f} s; final loss {run.history.loss[-1]:.6g}")
    print(format_rmse_table(run.metrics))
    print(f"wrote {out}{os.sep}: {', '.join(OUTPUT_FILES)}")
    return 0


# --------------------------------------------------------------------------- predict

def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from . import data as D
    from . import experiment as E
    from .metrics import rmse
    from .train import predict

    out = _out_file(args.out, [("--checkpoint", args.checkpoint), ("--data", args.data)])
    device = _device(args.device)
    _use_threads(args.threads)
    model, ckpt = E.load_checkpoint(args.checkpoint, map_location=device)
    recorded = ckpt["data"]
    if args.data is not None:
        source = args.data
    elif recorded.get("source") == D.EMBEDDED_SOURCE:
        source = None
    else:
        source = recorded.get("source")
    series = D.read_series(source)
    notes = []
    if series.sha256 != recorded.get("sha256"):
        notes.append(f"note: {series.source} is not the data the model was trained on "
                     f"(sha256 {series.sha256[:12]}... vs {str(recorded.get('sha256'))[:12]}...)")

    w = ckpt["windows"]
    scaler = D.scaler_from_dict(ckpt["scaler"])
    parts: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []  # part, X, y, target index
    if args.whole:
        L, stride = int(w["time_steps"]), int(w["stride"])
        X, y = D.make_windows(D.scale(scaler, series.values), L, stride)
        parts.append(("all", X, y, np.arange(X.shape[0]) * stride + L))
    else:
        prep = E.prepare_from_checkpoint(ckpt, series)
        for part in ("train", "test"):
            parts.append((part, getattr(prep, f"X_{part}"), getattr(prep, f"y_{part}"), prep.target_index(part)))

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["part", "window", "target_index", "actual", "predicted", "actual_scaled", "predicted_scaled"])
    summary = []
    for part, X, y, idx in parts:
        pred = predict(model, X).astype(np.float64)
        y_orig, p_orig = D.unscale(scaler, y), D.unscale(scaler, pred)
        for i in range(X.shape[0]):
            writer.writerow([part, i, int(idx[i]), float(y_orig[i, 0]), float(p_orig[i, 0]),
                             float(y[i, 0]), float(pred[i, 0])])
        summary.append(f"{part}: {X.shape[0]} windows, RMSE {rmse(y, pred):.4f} scaled, "
                       f"{rmse(y_orig, p_orig):.2f} {series.column or 'original units'}")
    text = buf.getvalue()
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        where = "standard output"
    else:
        E.atomic_write(out, lambda f: f.write(text), mode="w")
        where = args.out
    if not args.quiet:
        for line in notes + summary + [f"wrote {where}"]:
            print(line, file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- main

def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


_ALLOCATION = re.compile(r"(?:tried to|unable to) allocate ([0-9.]+ ?[KMGTP]?i?B\b|[0-9]+ bytes)", re.IGNORECASE)


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure: MemoryError (NumPy, Python), torch's
    OutOfMemoryError (CUDA & co.) or the RuntimeError of torch's CPU allocator."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def _memory_error(args: argparse.Namespace, exc: BaseException) -> str:
    """One line for an allocation failure: how much was asked for and the flags that set sizes."""
    m = _ALLOCATION.search(str(exc))
    asked = ""
    if m:
        amount = m.group(1)
        if amount.endswith(" bytes"):
            amount = f"{int(amount.split()[0]) / 1e9:.3g} GB"
        asked = f" (an allocation of {amount} failed)"
    if args.command == "train":
        sizes = (f"--hidden-units {' '.join(map(str, args.hidden_units))}, --time-steps {args.time_steps}, "
                 f"--batch-size {args.batch_size}, --device {args.device}")
    else:
        sizes = f"the model in --checkpoint {args.checkpoint}, --device {args.device}"
    return f"out of memory{asked} with {sizes}; try smaller values"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a job scheduler), raised where the process is, so that a run
    stopped this way cleans up as Ctrl-C does: no half-written file, no empty output folder."""


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    import signal
    import threading

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage and the error (or the help)
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return args.handler(args)
    except Terminated:
        print("torchrnn: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("torchrnn: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # DataError, CheckpointError, UsageError are ValueErrors
        print(f"torchrnn {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # sizes the user chose (e.g. --hidden-units 100000)
        if not _out_of_memory(exc):
            raise
        print(f"torchrnn {args.command}: error: {_memory_error(args, exc)}", file=sys.stderr)
        return 2
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
