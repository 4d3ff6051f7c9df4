"""``torchrnn-parity MODEL_FILE``: convert a saved Keras model and prove the torch copy equal.

Exit status: 0 when every comparison is within tolerance, 1 on a mismatch, 2 on bad input
(unreadable file, unsupported layer, input of the wrong shape, or --keras when Keras cannot
load the file: the comparison asked for did not happen, though the report is still printed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .compare import FLOAT32_ATOL

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2


DEFAULT_BATCH, DEFAULT_SEED = 8, 0
# parity.check.DEFAULT_STEPS_IF_VARIABLE, written out: importing parity.check loads torch and --help must not
DEFAULT_STEPS_IF_VARIABLE = 10


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torchrnn-parity",
        description="Build the torch model from a saved Keras SimpleRNN model (.keras, or a full-model .h5 "
                    "from Keras 2 or 3) without TensorFlow, run torch and the float64 NumPy referee (and Keras "
                    "itself with --keras) on the same input, and report the largest differences per layer "
                    "and at the output.",
        epilog="Exit status: 0 parity, 1 mismatch, 2 bad input (including --keras when Keras cannot load "
               "the file).")
    p.add_argument("model_file", metavar="MODEL_FILE", help="a Keras model file: .keras or full-model .h5")
    p.add_argument("--input", metavar="X.npy", help="input array (N, time_steps, features) saved with numpy.save "
                   "(.npy only: not .npz, text or pickles); "
                   "default: a seeded uniform(-1, 1) batch in the model's input shape (of "
                   f"{DEFAULT_STEPS_IF_VARIABLE} steps for a model whose number of steps is variable)")
    p.add_argument("--batch", type=int, default=None, metavar="N",
                   help=f"size of the default random batch (default {DEFAULT_BATCH}; not with --input)")
    p.add_argument("--seed", type=int, default=None,
                   help=f"seed of the default random batch (default {DEFAULT_SEED}; not with --input)")
    p.add_argument("--atol", type=float, default=FLOAT32_ATOL,
                   help=f"absolute tolerance (default {FLOAT32_ATOL:g}: float32 forward parity)")
    p.add_argument("--rtol", type=float, default=FLOAT32_ATOL, help=f"relative tolerance (default {FLOAT32_ATOL:g})")
    p.add_argument("--keras", action="store_true",
                   help="also load the file with Keras and compare against it (needs TensorFlow; adds seconds "
                        "of import time)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    return p


def _available_bytes() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system that says
        return None


def _check_batch_fits(batch: int, model) -> None:
    """Refuse a --batch whose arrays cannot fit in memory, before any is made: the system may
    grant a huge allocation and then kill the process while it fills it (seen: --batch 1e9)."""
    from .check import DEFAULT_STEPS_IF_VARIABLE

    steps, feats = model.config.input_shape
    steps = DEFAULT_STEPS_IF_VARIABLE if steps is None else steps
    # the input in float64 and float32, and every layer's states in the float64 referee, the
    # float32 torch model and Keras: a lower bound of what the comparison holds at once
    per_sequence = steps * (feats * 12 + sum(model.config.hidden_units) * 16)
    need, have = batch * per_sequence, _available_bytes()
    if have is not None and need > have:
        raise ValueError(f"--batch {batch} needs at least {need / 1e9:.3g} GB for the input and the states "
                         f"({steps} steps, {feats} features, units {list(model.config.hidden_units)}); "
                         f"{have / 1e9:.3g} GB of memory is available: try a smaller batch")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np

    from .check import check
    from .convert import model_from_spec, narrowed_weights
    from .keras_files import read_keras_file

    try:
        if args.input is not None:
            given = [flag for flag, v in (("--batch", args.batch), ("--seed", args.seed)) if v is not None]
            if given:  # they shape the random batch that --input replaces: taking them would mislead
                raise ValueError(f"{' and '.join(given)} {'sizes' if given == ['--batch'] else 'set'} the random "
                                 f"batch; with --input {args.input} there is none (drop {' and '.join(given)})")
            if not args.input.strip():
                raise ValueError(f"--input {args.input!r} is empty; give a .npy file")
        args.batch = DEFAULT_BATCH if args.batch is None else args.batch
        args.seed = DEFAULT_SEED if args.seed is None else args.seed
        if args.batch < 1:
            raise ValueError(f"--batch must be at least 1, got {args.batch}")
        if args.seed < 0:  # NumPy's default_rng would say only "expected non-negative integer"
            raise ValueError(f"--seed must be a non-negative integer, got {args.seed}")
        for flag, value in (("--atol", args.atol), ("--rtol", args.rtol)):
            if not (value >= 0 and value != float("inf")):
                raise ValueError(f"{flag} must be a finite number >= 0, got {value}")
        spec = read_keras_file(args.model_file)
        model = model_from_spec(spec)
        narrowed = narrowed_weights(spec, model)
        if args.input is None:
            _check_batch_fits(args.batch, model)
        x = None
        if args.input is not None:
            path = Path(args.input)
            takes = "--input takes one numeric array saved with numpy.save (.npy)"
            try:
                with open(path, "rb") as f:
                    magic = f.read(6)
                if magic[:4] == b"PK\x03\x04":  # np.load would return an NpzFile, later 'a string'
                    raise ValueError(f"--input {path} is a zip archive (.npz: numpy.savez); {takes}")
                if magic != b"\x93NUMPY":  # np.load would speak of pickled data for any other file
                    raise ValueError(f"--input {path} is not a .npy file (no NumPy header); {takes}")
                x = np.load(path, allow_pickle=False)
            except ValueError as e:
                if str(e).startswith("--input"):
                    raise
                raise ValueError(f"cannot read --input {path} as a .npy array (numpy.save): {e}") from None
            except OSError as e:
                raise ValueError(f"cannot read --input {path} as a .npy array (numpy.save): {e}") from None
            if x.dtype.kind not in "biuf":
                raise ValueError(f"--input {path} holds {x.dtype} values; {takes}")
            model.as_input(x, name=f"--input {path}")  # its shape and values, named as the user gave them
        keras_path = None
        if args.keras:
            import importlib.util

            if importlib.util.find_spec("keras") is None:
                raise ValueError("--keras needs Keras: pip install 'torchrnn[keras]'")
            keras_path = args.model_file
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        report = check(model, x, keras_path=keras_path, atol=args.atol, rtol=args.rtol, batch=args.batch,
                       seed=args.seed)
    except (ValueError, OSError) as e:
        print(f"torchrnn-parity: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (MemoryError, RuntimeError) as e:
        from torchrnn.cli import _out_of_memory

        if not _out_of_memory(e):
            raise
        # a size the user chose (--batch, or --input's array through the model): exit 1 would
        # read as a mismatch
        print(f"torchrnn-parity: error: out of memory ({' '.join(str(e).split())}) with --batch {args.batch}"
              f"{'' if args.input is None else f', --input {args.input}'}; try a smaller batch", file=sys.stderr)
        return EXIT_BAD_INPUT
    if narrowed:
        # torchrnn computes in float32 (the tolerances above are float32's); say that the file's
        # float64 weights were rounded, so a float64 Keras is compared at float32 precision.
        dtypes = sorted({str(w.array.dtype) for w in narrowed})
        report.notes.append(f"weights stored as {'/'.join(dtypes)} in the file ({len(narrowed)} arrays, e.g. "
                            f"{narrowed[0].path!r}) were loaded into a torch {str(next(model.parameters()).dtype).split('.')[-1]} "
                            f"model: compared in float32, not at the file's precision")
    if args.json:
        print(json.dumps({"model_file": str(args.model_file), **report.to_dict()}, indent=2))
    else:
        print(f"{args.model_file}: {model.config}")
        print(report.table())
    if args.keras and "keras" not in report.implementations:
        # asked for, not done: exit 0 would tell a script that Keras agrees. The report above
        # still stands for torch against the NumPy referee.
        print(f"torchrnn-parity: error: --keras: Keras could not load {args.model_file} (see the note), so it was "
              f"not compared; only torch and the NumPy referee were", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK if report.ok else EXIT_MISMATCH


if __name__ == "__main__":
    sys.exit(main())
