"""The tutorial's training run, fit only: torchrnn against Keras 3 on TensorFlow, same run.

Work: the sunspots series through ``torchrnn.data`` as the tutorial prepares it (scaled to [0, 1]
on the whole series, 80/20 split in time order, non-overlapping windows of 12: 187 training
windows of shape (12, 1)); ``SimpleRNN(3, tanh)`` + ``Dense(1, tanh)``, MSE, Adam lr 1e-3,
``--epochs`` (20) epochs, batch size 1, shuffled every epoch.

Contenders (each in its own worker process, see ``_common``):
    torchrnn-t1 / torchrnn-tdef   torchrnn.train.fit, torch intra-op threads 1 / torch's default
    keras-tdef / keras-t1         model.fit(..., batch_size=1, verbose=0), TF intra-op default / 1
    plain-torch-t1                nn.RNN + nn.Linear + torch.optim.Adam, a textbook loop (reference)
    proto-C2-t1                   torchrnn.train.fit with profile_step.py's prototype C2 (NOT shipped code)
    numpy-floor                   profile_step.py's NumPy step, a floor reference (NOT a proposal)

Every repeat builds a fresh model (fixed seed per repeat) and times ``fit`` alone, including
Keras's tracing of its train function for the new model, which is what a user waits for. Each
worker warms up with a 1-epoch fit first. Repeats are interleaved across contenders in rotating
order; the medians of one run give the ratios.

``--busy N`` adds a condition with N busy-loop processes running (another job on the machine).

    python bench/bench_fit.py                       # 20 epochs, 3 repeats, quiet + busy1
    python bench/bench_fit.py --epochs 2 --repeats 1 --busy 0   # quick check
"""
from __future__ import annotations

import argparse
import sys
import time

import _common as C


def tutorial_data():
    from torchrnn import data
    values = data.load_series(None)
    train, _ = data.train_test_split(values, 0.8)
    scaler = data.fit_scaler(train, values, scale_on="all")     # the tutorial scales on the whole series
    X, y = data.make_windows(data.scale(scaler, train), 12)
    return X, y


# --------------------------------------------------------------------------- workers

def torchrnn_worker(args):
    info = C.setup_torch(args.threads)
    import torch  # noqa: F401
    from torchrnn import create_rnn
    from torchrnn.train import fit
    X, y = tutorial_data()

    def run(req):
        model = create_rnn(3, 1, (12, 1), ("tanh", "tanh"), seed=req["seed"])
        t0 = time.perf_counter()
        h = fit(model, X, y, epochs=req["epochs"], batch_size=1, seed=req["seed"])
        dt = time.perf_counter() - t0
        return {"seconds": dt, "epoch_seconds": list(h.seconds), "final_loss": h.loss[-1]}

    run({"seed": 1234, "epochs": 1})
    info["n_windows"] = int(X.shape[0])
    return info, {"run": run}


def plain_torch_worker(args):
    """The issue's reference: what a straightforward torch port of the tutorial does."""
    info = C.setup_torch(args.threads)
    import torch
    from torch import nn
    X, y = tutorial_data()
    Xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32)

    def run(req):
        torch.manual_seed(req["seed"])
        rnn, lin = nn.RNN(1, 3, batch_first=True), nn.Linear(3, 1)
        opt = torch.optim.Adam([*rnn.parameters(), *lin.parameters()], lr=1e-3, eps=1e-7)
        epoch_s = []
        t0 = time.perf_counter()
        for _ in range(req["epochs"]):
            te = time.perf_counter()
            total = 0.0
            for i in torch.randperm(Xt.shape[0]).tolist():
                opt.zero_grad()
                out, _ = rnn(Xt[i:i + 1])
                loss = nn.functional.mse_loss(torch.tanh(lin(out[:, -1])), yt[i:i + 1])
                loss.backward()
                opt.step()
                total += loss.item()
            epoch_s.append(time.perf_counter() - te)
        dt = time.perf_counter() - t0
        return {"seconds": dt, "epoch_seconds": epoch_s, "final_loss": total / Xt.shape[0]}

    run({"seed": 1234, "epochs": 1})
    return info, {"run": run}


def keras_worker(args):
    info = C.setup_tf(args.threads)
    import keras
    X, y = tutorial_data()

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.t)

    def run(req):
        keras.utils.set_random_seed(req["seed"])
        model = keras.Sequential([keras.Input((12, 1)), keras.layers.SimpleRNN(3, activation="tanh"),
                                  keras.layers.Dense(1, activation="tanh")])
        model.compile(loss="mean_squared_error", optimizer="adam")
        timer = EpochTimer()
        timer.seconds = []
        t0 = time.perf_counter()
        h = model.fit(X, y, epochs=req["epochs"], batch_size=1, verbose=0, shuffle=True, callbacks=[timer])
        dt = time.perf_counter() - t0
        return {"seconds": dt, "epoch_seconds": timer.seconds, "final_loss": float(h.history["loss"][-1])}

    run({"seed": 1234, "epochs": 1})
    return info, {"run": run}


def proto_worker(args):
    """torchrnn.train.fit itself, on a model and optimizer changed as bench/profile_step.py's
    prototype C2 proposes (the tanh SimpleRNN as one lean autograd node returning the last state,
    per-step views by unbind; Keras Adam on flat buffers). Not what torchrnn ships: it shows what
    those changes give in this same run."""
    info = C.setup_torch(args.threads)
    import torch
    from profile_step import _prototypes
    from torchrnn import create_rnn
    from torchrnn.train import fit
    _, _, FlatKerasAdam, TanhRNNUnbind = _prototypes()
    X, y = tutorial_data()

    class Proto(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            rnn = self.m.rnn[0]
            return torch.tanh(self.m.dense(TanhRNNUnbind.apply(x, rnn.weight_ih, rnn.bias, rnn.weight_hh)))

    def run(req):
        model = create_rnn(3, 1, (12, 1), ("tanh", "tanh"), seed=req["seed"])
        t0 = time.perf_counter()
        h = fit(Proto(model), X, y, epochs=req["epochs"], batch_size=1, seed=req["seed"],
                optimizer=FlatKerasAdam(model.parameters()))
        dt = time.perf_counter() - t0
        return {"seconds": dt, "epoch_seconds": list(h.seconds), "final_loss": h.loss[-1]}

    run({"seed": 1234, "epochs": 1})
    return info, {"run": run}


def numpy_worker(args):
    """Floor reference, not a proposal: profile_step.py's NumPy step (forward, manual backward,
    Keras Adam in float32) in fit's loop shape (a torch.randperm order per epoch, seeded)."""
    info = C.setup_torch(args.threads)
    info["framework"] = "numpy"
    import numpy as np
    import torch
    from profile_step import NumpyTutorialStep
    from torchrnn import create_rnn
    X, y = tutorial_data()
    X32, y32 = X.astype(np.float32), y.astype(np.float32)

    def run(req):
        step = NumpyTutorialStep(create_rnn(3, 1, (12, 1), ("tanh", "tanh"), seed=req["seed"]))
        gen = torch.Generator().manual_seed(req["seed"])
        epoch_s, losses = [], []
        t0 = time.perf_counter()
        for _ in range(req["epochs"]):
            te = time.perf_counter()
            losses = [step(X32[i:i + 1], y32[i:i + 1]) for i in torch.randperm(len(X32), generator=gen).tolist()]
            epoch_s.append(time.perf_counter() - te)
        dt = time.perf_counter() - t0
        return {"seconds": dt, "epoch_seconds": epoch_s, "final_loss": float(np.mean(losses))}

    run({"seed": 1234, "epochs": 1})
    return info, {"run": run}


WORKERS = {"torchrnn": torchrnn_worker, "plain": plain_torch_worker, "keras": keras_worker, "proto": proto_worker,
           "numpy": numpy_worker}


def _threads(s: str):
    return None if s in ("default", "def", "0") else int(s)


# --------------------------------------------------------------------------- driver

def contenders(args) -> dict[str, list[str]]:
    me = "bench/bench_fit.py"
    specs = {}
    for t in args.torch_threads.split(","):
        specs[f"torchrnn-t{t if t != 'default' else 'def'}"] = [me, "--serve", "torchrnn", "--threads", t]
    if args.plain:
        specs["plain-torch-t1"] = [me, "--serve", "plain", "--threads", "1"]
    if args.proto:
        specs["proto-C2-t1"] = [me, "--serve", "proto", "--threads", "1"]
        specs["numpy-floor"] = [me, "--serve", "numpy", "--threads", "1"]
    if args.keras:
        for t in args.tf_threads.split(","):
            specs[f"keras-t{t if t != 'default' else 'def'}"] = [me, "--serve", "keras", "--threads", t]
    return specs


def measure(ws: dict, epochs: int, repeats: int, condition: str, log=print) -> list[dict]:
    runs = {name: [] for name in ws}
    for r, order in C.rotations(list(ws), repeats):
        for name in order:
            others = C.gate()
            out = ws[name].call("run", seed=r, epochs=epochs)
            out["loadavg"] = C.loadavg()
            out["others_busy_before"] = others
            runs[name].append(out)
            log(f"  [{condition}] rep {r + 1}/{repeats} {name:16s} {out['seconds']:7.2f} s  "
                f"loss {out['final_loss']:.5f}  load {out['loadavg'][0]}  others busy before {others}")
    rows = []
    for name, rs in runs.items():
        steady = [s for o in rs for s in o["epoch_seconds"][1:]]
        rows.append({"bench": "fit", "case": f"sunspots 187x(12,1), 3 units, {epochs} epochs, batch 1",
                     "condition": condition, "variant": name, "median_s": C.median([o["seconds"] for o in rs]),
                     "times_s": [o["seconds"] for o in rs],
                     "first_epoch_s": C.median([o["epoch_seconds"][0] for o in rs]),
                     "steady_epoch_s": C.median(steady) if steady else None,
                     "final_loss": [o["final_loss"] for o in rs],
                     "loadavg": [o["loadavg"] for o in rs],
                     "others_busy_before": [o["others_busy_before"] for o in rs], "info": ws[name].info})
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    out = []
    by = {(r["condition"], r["variant"]): r["median_s"] for r in rows}
    for cond in dict.fromkeys(r["condition"] for r in rows):
        keras = by.get((cond, "keras-tdef"))
        if keras is None:
            continue
        for v in ("torchrnn-tdef", "torchrnn-t1", "plain-torch-t1", "proto-C2-t1", "numpy-floor"):
            if (cond, v) in by:
                out.append(C.ratio(f"fit [{cond}] {v} / keras-tdef", by[(cond, v)], keras,
                                   0.2 if v.startswith(("torchrnn", "proto")) else None,
                                   {"proto-C2-t1": "prototype, not shipped",
                                    "numpy-floor": "floor reference, not a proposal"}.get(v, ""),
                                   headline=v.startswith(("torchrnn", "proto"))))
        if (cond, "torchrnn-tdef") in by and (cond, "torchrnn-t1") in by:
            out.append(C.ratio(f"fit [{cond}] torchrnn-t1 / torchrnn-tdef", by[(cond, "torchrnn-t1")],
                               by[(cond, "torchrnn-tdef")], None, "threads: 1 vs torch default"))
        for v, note in (("proto-C2-t1", "gain of the prototype"), ("numpy-floor", "NumPy floor reference")):
            if (cond, v) in by and (cond, "torchrnn-t1") in by:
                out.append(C.ratio(f"fit [{cond}] {v} / torchrnn-t1", by[(cond, v)], by[(cond, "torchrnn-t1")],
                                   None, note))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--serve", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--threads", default="default", help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=20, help="epochs per fit (default 20, the tutorial's)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per contender (default 3)")
    p.add_argument("--torch-threads", default="1,default", help="torch intra-op settings to time (default 1,default)")
    p.add_argument("--tf-threads", default="default,1", help="TF intra-op settings to time (default default,1)")
    p.add_argument("--busy", type=int, default=1,
                   help="also measure with this many busy-loop processes running (default 1; 0 = quiet only)")
    p.add_argument("--busy-repeats", type=int, default=None, help="repeats under load (default: --repeats)")
    p.add_argument("--no-keras", dest="keras", action="store_false", help="skip Keras")
    p.add_argument("--no-plain", dest="plain", action="store_false", help="skip the plain-torch reference loop")
    p.add_argument("--no-proto", dest="proto", action="store_false",
                   help="skip the prototype and NumPy-floor contenders (profile_step.py; not shipped code)")
    p.add_argument("--out", default=None, help="write the results JSON here")
    args = p.parse_args(argv)
    if args.serve:
        args.threads = _threads(args.threads)
        C.serve(lambda: WORKERS[args.serve](args))
        return 0

    machine = C.machine_info()
    print(f"bench_fit: nproc {machine['nproc']}, load {machine['loadavg_at_start']}", flush=True)
    rows = []
    with C.workers(contenders(args)) as ws:
        rows += measure(ws, args.epochs, args.repeats, "quiet")
        if args.busy:
            with C.cpu_hogs(args.busy):
                rows += measure(ws, args.epochs, args.busy_repeats or args.repeats, f"busy{args.busy}")
    result = {"bench": "fit", "machine": machine, "loadavg_at_end": C.loadavg(), "epochs": args.epochs,
              "repeats": args.repeats, "rows": rows, "ratios": ratios(rows)}
    for r in rows:
        print(f"{r['condition']:6s} {r['variant']:16s} median {C.fmt_s(r['median_s']):>9s}  "
              f"first epoch {C.fmt_s(r['first_epoch_s'])}  steady epoch {C.fmt_s(r['steady_epoch_s'] or float('nan'))}")
    for q in result["ratios"]:
        print(f"{q['name']:50s} {q['value']:.3f}" + (f"  (target <= {q['target']})" if q["target"] else ""))
    if args.out:
        C.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
