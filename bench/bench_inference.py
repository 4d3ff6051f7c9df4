"""Inference: torchrnn ``model.predict`` against Keras ``model.predict``, same weights, same run.

Cases (``SimpleRNN(units, tanh)`` + ``Dense(1, tanh)``, inputs uniform in [0, 1), float32):
    small   100,000 windows of (12, 1) through 3 units  (the tutorial's model)
    large    10,000 windows of (120, 8) through 64 units

Variants:
    torchrnn  model.predict(x) as a user calls it (its default chunks, RNNModel.predict_batch_size), and
              model.predict(x, batch_size=B) for B in --torch-batches ("all" = the whole array in one batch)
    keras     model.predict(x, verbose=0) with its default batch_size=32 (what a user gets), and
              batch_size=B for B in --keras-batches ("all" = the whole array in one batch), so
              that a like-for-like batch is in the table too

The Keras model gets the torch model's weights (``set_weights(model.get_weights())``) and the
first rows of both outputs are compared, so both sides compute the same function. Each variant is
called once untimed (warm-up: Keras traces its predict function there), then ``--repeats`` timed
calls interleaved across worker processes (torch with 1 and default intra-op threads, Keras with
TF's default threads and with 1).

    python bench/bench_inference.py
    python bench/bench_inference.py --repeats 1 --busy 0       # quick check
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import _common as C

CASES = {
    "small": {"n": 100_000, "steps": 12, "features": 1, "units": 3},
    "large": {"n": 10_000, "steps": 120, "features": 8, "units": 64},
}
SEED = 0


def case_input(name: str) -> np.ndarray:
    c = CASES[name]
    return np.random.default_rng(SEED).random((c["n"], c["steps"], c["features"]), dtype=np.float32)


def torch_model(name: str):
    from torchrnn import create_rnn
    c = CASES[name]
    return create_rnn(c["units"], 1, (c["steps"], c["features"]), ("tanh", "tanh"), seed=SEED)


def _bs(v, n):
    return None if v == "default" else n if v == "all" else int(v)


# --------------------------------------------------------------------------- workers

def torch_worker(args):
    info = C.setup_torch(args.threads)
    import torch
    torch.manual_seed(0)
    models = {k: torch_model(k) for k in CASES}
    inputs = {k: case_input(k) for k in CASES}

    def run(req):
        m, x = models[req["case"]], inputs[req["case"]]
        if req["batch"] == "floor":
            return {"seconds": products_only(torch, m, x), "head": None}
        t0 = time.perf_counter()
        out = m.predict(x, batch_size=_bs(req["batch"], x.shape[0]))
        dt = time.perf_counter() - t0
        return {"seconds": dt, "head": out[:1000].ravel().tolist()}

    return info, {"run": run}


def products_only(torch, model, x_np) -> float:
    """Seconds for the matrix products alone that predict(x) must do (input projection plus
    bias, and the recurrent product, every step, in predict's default chunks), on buffers made
    beforehand: no activation, no Dense, no checks. A floor for any implementation that does
    these products with torch's BLAS; against Keras's best time it bounds the ratio from below."""
    layer = model.rnn[0]
    x = torch.from_numpy(x_np)
    n, steps = x.shape[0], x.shape[1]
    bs = min(n, model.predict_batch_size(tuple(x.shape)))
    w_ih_t, w_hh_t, b = (t.detach() for t in (layer.weight_ih.t(), layer.weight_hh.t(), layer.bias))
    rows = torch.empty(2, bs, layer.units)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, n, bs):
            xc = x[s:s + bs]
            r = rows[:, :xc.shape[0]]
            for t in range(steps):
                torch.addmm(b, xc[:, t], w_ih_t, out=r[t % 2])
                if t:
                    r[t % 2].addmm_(r[(t - 1) % 2], w_hh_t)
    return time.perf_counter() - t0


def keras_worker(args):
    info = C.setup_tf(args.threads)
    import keras
    models, inputs = {}, {}
    for k, c in CASES.items():
        m = keras.Sequential([keras.Input((c["steps"], c["features"])),
                              keras.layers.SimpleRNN(c["units"], activation="tanh"),
                              keras.layers.Dense(1, activation="tanh")])
        m.set_weights(torch_model(k).get_weights())   # same numbers as the torch side
        models[k], inputs[k] = m, case_input(k)

    def run(req):
        m, x = models[req["case"]], inputs[req["case"]]
        kw = {} if req["batch"] == "default" else {"batch_size": x.shape[0] if req["batch"] == "all"
                                                   else int(req["batch"])}
        t0 = time.perf_counter()
        out = m.predict(x, verbose=0, **kw)
        dt = time.perf_counter() - t0
        return {"seconds": dt, "head": np.asarray(out[:1000]).ravel().tolist()}

    return info, {"run": run}


WORKERS = {"torch": torch_worker, "keras": keras_worker}


# --------------------------------------------------------------------------- driver

def plan(args, names):
    """(worker, case, batch label) for every variant."""
    jobs = []
    for case in args.cases.split(","):
        for w in names:
            batches = (["default", *args.torch_batches.split(","), "floor"] if w.startswith("torchrnn")
                       else ["default", *args.keras_batches.split(",")])
            jobs += [(w, case, b) for b in batches if b]
    return jobs


def variant_name(worker: str, batch: str) -> str:
    if batch == "floor":
        return f"{worker} matrix products only (floor)"
    if batch == "default":
        return f"{worker} bs={'auto' if worker.startswith('torchrnn') else 32} (default)"
    return f"{worker} bs={'whole' if batch == 'all' else batch}"


def measure(ws, jobs, repeats, condition, log=print):
    times = {j: [] for j in jobs}
    busy_seen = {}
    heads = {}
    for j in jobs:  # warm-up, and the outputs for the agreement check (the floor has none)
        head = ws[j[0]].call("run", case=j[1], batch=j[2])["head"]
        heads[j] = None if head is None else np.asarray(head)
    for r, order in C.rotations(jobs, repeats):
        for j in order:
            others = C.gate()
            out = ws[j[0]].call("run", case=j[1], batch=j[2])
            times[j].append(out["seconds"])
            busy_seen.setdefault(j, []).append(others)
            log(f"  [{condition}] rep {r + 1}/{repeats} {j[1]:5s} {variant_name(j[0], j[2]):32s} "
                f"{out['seconds']:8.3f} s  load {C.loadavg()[0]}  others busy before {others}")
    rows = []
    for (w, case, b), ts in times.items():
        c = CASES[case]
        ref = next(h for (w2, c2, _), h in heads.items() if c2 == case and w2.startswith("torchrnn"))
        rows.append({"bench": "inference", "case": f"{case}: {c['n']:,} x ({c['steps']}, {c['features']}) "
                                                  f"-> {c['units']} units",
                     "case_key": case, "condition": condition, "variant": variant_name(w, b), "worker": w,
                     "batch": b, "median_s": C.median(ts), "times_s": ts,
                     "max_abs_diff_vs_torch": (None if heads[(w, case, b)] is None
                                               else float(np.max(np.abs(heads[(w, case, b)] - ref)))),
                     "others_busy_before": busy_seen.get((w, case, b), []),
                     "info": ws[w].info})
    return rows


def ratios(rows):
    """Headline: what users get by default on both sides, and each side at its best batch size."""
    out = []
    for cond in dict.fromkeys(r["condition"] for r in rows):
        for case in dict.fromkeys(r["case_key"] for r in rows):
            rs = {(r["worker"], r["batch"]): r["median_s"] for r in rows
                  if r["condition"] == cond and r["case_key"] == case}
            keras_def = rs.get(("keras-tdef", "default"))
            keras_best = min(((v, k) for k, v in rs.items() if k[0].startswith("keras-")), default=None)
            floors = {k[0]: v for k, v in rs.items() if k[1] == "floor"}
            rs = {k: v for k, v in rs.items() if k[1] != "floor"}
            for w in ("torchrnn-tdef", "torchrnn-t1"):
                if (w, "default") in rs and keras_def:
                    out.append(C.ratio(f"inference {case} [{cond}] defaults: {w} predict(x) / keras-tdef predict(x) "
                                       f"(batch 32)", rs[(w, "default")], keras_def, 0.2, headline=True))
                mine = [(v, k) for k, v in rs.items() if k[0] == w]
                if mine and keras_best:
                    v, k = min(mine)
                    kb = keras_best[1]
                    out.append(C.ratio(f"inference {case} [{cond}] best batch: {w} bs={_label(k[1], w)} / "
                                       f"{kb[0]} bs={_label(kb[1], kb[0])}", v, keras_best[0], 0.2, headline=True,
                                       note="each side at its fastest batch size in this run"))
                if w in floors and keras_best:
                    kb = keras_best[1]
                    out.append(C.ratio(f"inference {case} [{cond}] floor: {w} matrix products alone / "
                                       f"{kb[0]} bs={_label(kb[1], kb[0])}", floors[w], keras_best[0], None,
                                       note="the products predict must do, nothing else: no ratio at "
                                            "the best batch can be below this"))
                for b in ("4096", "all"):
                    if (w, b) in rs and ("keras-tdef", b) in rs:
                        out.append(C.ratio(f"inference {case} [{cond}] same batch {_label(b)}: {w} / keras-tdef",
                                           rs[(w, b)], rs[("keras-tdef", b)], 0.2))
            for w in ("torchrnn-tdef", "torchrnn-t1"):
                if (w, "default") in rs and (w, "all") in rs:
                    out.append(C.ratio(f"inference {case} [{cond}] {w}: predict(x) default chunks / whole array in one batch",
                                       rs[(w, "default")], rs[(w, "all")], None))
            for (w, b), v in rs.items():
                if w == "torchrnn-t1" and ("torchrnn-tdef", b) in rs:
                    out.append(C.ratio(f"inference {case} [{cond}] torchrnn bs={_label(b, w)}: 1 thread / default threads",
                                       v, rs[("torchrnn-tdef", b)], None))
    return out


def _label(b, worker=""):
    return {"all": "whole", "default": "auto (default)" if worker.startswith("torchrnn") else "32 (default)"}.get(b, b)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--serve", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--threads", default="default", help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=5, help="timed calls per variant (default 5)")
    p.add_argument("--cases", default="small,large", help="which cases (default small,large)")
    p.add_argument("--torch-batches", default="1024,4096,all",
                   help="torch batch sizes besides predict(x)'s own default ('all' = the whole array; default 1024,4096,all)")
    p.add_argument("--keras-batches", default="4096,all", help="Keras batch sizes besides its default 32")
    p.add_argument("--torch-threads", default="1,default", help="torch intra-op settings (default 1,default)")
    p.add_argument("--tf-threads", default="default,1", help="TF intra-op settings (default default,1)")
    p.add_argument("--busy", type=int, default=0, help="also measure with N busy-loop processes (default 0)")
    p.add_argument("--out", default=None, help="write the results JSON here")
    args = p.parse_args(argv)
    if args.serve:
        args.threads = None if args.threads == "default" else int(args.threads)
        C.serve(lambda: WORKERS[args.serve](args))
        return 0

    machine = C.machine_info()
    print(f"bench_inference: nproc {machine['nproc']}, load {machine['loadavg_at_start']}", flush=True)
    me = "bench/bench_inference.py"
    specs = {}
    for t in args.torch_threads.split(","):
        specs[f"torchrnn-t{'def' if t == 'default' else t}"] = [me, "--serve", "torch", "--threads", t]
    for t in args.tf_threads.split(","):
        specs[f"keras-t{'def' if t == 'default' else t}"] = [me, "--serve", "keras", "--threads", t]
    rows = []
    with C.workers(specs) as ws:
        jobs = plan(args, list(ws))
        rows += measure(ws, jobs, args.repeats, "quiet")
        if args.busy:
            with C.cpu_hogs(args.busy):
                rows += measure(ws, jobs, args.repeats, f"busy{args.busy}")
    result = {"bench": "inference", "machine": machine, "loadavg_at_end": C.loadavg(), "repeats": args.repeats,
              "rows": rows, "ratios": ratios(rows)}
    for r in rows:
        diff = "" if r["max_abs_diff_vs_torch"] is None else f"max|diff| vs torch {r['max_abs_diff_vs_torch']:.1e}"
        print(f"{r['condition']:6s} {r['case_key']:5s} {r['variant']:34s} {C.fmt_s(r['median_s']):>9s}  {diff}")
    for q in result["ratios"]:
        print(f"{q['name']:90s} {q['value']:.3f}")
    if args.out:
        C.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
