"""The tutorial's sunspots run over several seeds, in torchrnn and in Keras, on the same windows.

Both sides get the very same scaled windows from ``torchrnn.experiment.prepare`` (the tutorial's
80/20 time-order split, non-overlapping windows of 12 steps) and the same recipe: SimpleRNN(3,
tanh) + Dense(1, tanh), MSE, Adam (lr 1e-3), 20 epochs, batch size 1, shuffled each epoch. Keras
is the tutorial's own code (``Sequential`` + ``compile`` + ``fit``). The RMSE of both, and of the
persistence baseline (each window's last value), is computed by ``torchrnn.metrics.rmse_table``.

    python bench/seeds_vs_keras.py                  # 5 seeds, scaler fitted on the training part
    python bench/seeds_vs_keras.py --scale-on all   # the tutorial exactly (scaler sees the test part)

Writes ``bench/results/seeds_<scale-on>.json`` and ``.md``. Not a test: it takes minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from torchrnn import data as D  # noqa: E402
from torchrnn.experiment import prepare, train_run  # noqa: E402
from torchrnn.metrics import rmse_table  # noqa: E402


def keras_run(prep, seed: int, epochs: int) -> tuple[dict, float]:
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((prep.time_steps, 1)),
                              keras.layers.SimpleRNN(3, activation="tanh"),
                              keras.layers.Dense(1, activation="tanh")])
    model.compile(loss="mean_squared_error", optimizer="adam")
    t0 = time.perf_counter()
    model.fit(prep.X_train, prep.y_train, epochs=epochs, batch_size=1, verbose=0)
    seconds = time.perf_counter() - t0
    out = {}
    for part in ("train", "test"):
        X, y = getattr(prep, f"X_{part}"), getattr(prep, f"y_{part}")
        pred = model.predict(X, verbose=0).astype(np.float64)
        out[part] = rmse_table(y, {"keras": pred}, to_original=prep.to_original)["keras"]
    return out, seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default 5)")
    p.add_argument("--epochs", type=int, default=20, help="epochs (default 20, the tutorial's)")
    p.add_argument("--scale-on", choices=["train", "all"], default="train",
                   help="MinMaxScaler fitted on the training part (default) or the whole series (tutorial)")
    args = p.parse_args(argv)

    prep = prepare(None, time_steps=12, split=0.8, scale_on=args.scale_on)
    rows = []
    for seed in range(args.seeds):
        run = train_run(prep, hidden_units=3, epochs=args.epochs, seed=seed)
        k, k_seconds = keras_run(prep, seed, args.epochs)
        r = run.metrics["rmse"]
        rows.append({"seed": seed,
                     "torchrnn": {part: r[part]["model"] for part in ("train", "test")},
                     "keras": k,
                     "persistence": {part: r[part]["persistence"] for part in ("train", "test")},
                     "fit_seconds": {"torchrnn": run.fit_seconds, "keras": k_seconds}})
        print(f"seed {seed}: test RMSE (sunspots) torchrnn {r['test']['model']['original']:.2f}  "
              f"keras {k['test']['original']:.2f}  persistence {r['test']['persistence']['original']:.2f}",
              flush=True)

    def stat(who, part, unit):
        vals = [row[who][part][unit] for row in rows]
        return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0), min(vals), max(vals)

    lines = [f"Sunspots, tutorial configuration, {args.seeds} seeds (0..{args.seeds - 1}), {args.epochs} epochs, "
             f"batch size 1, scaler fitted on {'the training part' if args.scale_on == 'train' else 'the whole series (the tutorial)'}; "
             f"{prep.n_train} train / {prep.n_test} test windows.", "",
             "| RMSE | train (scaled) | train (sunspots) | test (scaled) | test (sunspots) |",
             "|---|---|---|---|---|"]
    for who in ("torchrnn", "keras", "persistence"):
        cells = []
        for part in ("train", "test"):
            for unit in ("scaled", "original"):
                m, s, lo, hi = stat(who, part, unit)
                fmt = "{:.4f}" if unit == "scaled" else "{:.2f}"
                cells.append((fmt + " ± " + fmt + " [" + fmt + ", " + fmt + "]").format(m, s, lo, hi))
        lines.append(f"| {who} | " + " | ".join(cells) + " |")
    lines += ["", "mean ± standard deviation [min, max] over seeds; persistence does not depend on the seed.", "",
              "| seed | torchrnn test (sunspots) | keras test (sunspots) | torchrnn fit s | keras fit s |",
              "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['seed']} | {row['torchrnn']['test']['original']:.2f} | {row['keras']['test']['original']:.2f} | "
                     f"{row['fit_seconds']['torchrnn']:.1f} | {row['fit_seconds']['keras']:.1f} |")
    md = "\n".join(lines) + "\n"
    print("\n" + md)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"seeds_{args.scale_on}.md").write_text(md)
    (out / f"seeds_{args.scale_on}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
