"""Forward + backward of the step-loop path against the fused path, on the same shapes.

torchrnn's ``SimpleRNN`` runs ``tanh`` and ``relu`` through torch's fused kernel
(``torch.rnn_tanh``, what ``nn.RNN`` calls) and every other element-wise activation through a
Python step loop wrapped in one autograd node (``_Recurrence``). This times one
``y = layer(x); y.backward(g)`` (the last state, ``return_sequences=False``) for

    tanh (fused)       the reference
    tanh (step loop)   the same activation forced through the step loop (``use_fused=False``):
                       separates the cost of the path from the cost of the activation
    linear, sigmoid    step loop, as a user of those activations gets it
    sigmoid, flush denormals   the same inside ``torch.set_flush_denormal(True)`` (TensorFlow's
                       default): sigmoid's vanishing gradient crosses the float32 subnormal range,
                       where a matmul is ~100x slower; since 02bc304 the layer's backward flushes
                       them itself, so the two columns should agree (a regression check)

on (N, L, F) -> H = (1, 12, 1) -> 3 (the tutorial's training step), (64, 120, 8) -> 64 and
(256, 30, 4) -> 16, in one process per torch thread setting. Every timing is the mean over an
inner loop calibrated to about ``--min-time`` seconds; the variants are interleaved and the
median of ``--repeats`` is reported.

    python bench/bench_step_loop.py
"""
from __future__ import annotations

import argparse
import sys
import time

import _common as C

SHAPES = [(1, 12, 1, 3), (64, 120, 8, 64), (256, 30, 4, 16)]
VARIANTS = [("tanh", True), ("tanh", False), ("linear", False), ("sigmoid", False), ("sigmoid+ftz", False)]


def variant_name(act, fused):
    if act.endswith("+ftz"):
        return f"{act[:-4]} (step loop, flush denormals)"
    return f"{act} ({'fused' if fused else 'step loop'})"


def worker(args):
    info = C.setup_torch(args.threads)
    import torch
    from torchrnn import SimpleRNN

    def make(shape, act, fused, mode):
        # "+ftz": the same activation with torch.set_flush_denormal(True) around the call, as
        # TensorFlow runs its kernels: a gradient that vanishes through the float32 subnormal
        # range (sigmoid' <= 1/4 per step) can make each matmul of those steps ~100x slower.
        ftz = act.endswith("+ftz")
        act = act[:-4] if ftz else act
        n, L, f, h = shape
        gen = torch.Generator().manual_seed(0)
        layer = SimpleRNN(f, h, act, generator=gen)
        layer.use_fused = fused
        x = torch.rand(n, L, f, generator=gen)
        g = torch.randn(n, h, generator=gen)
        if mode == "fwd+bwd":
            def body():
                layer(x).backward(g)
        else:
            def body():
                with torch.no_grad():
                    layer(x)
        if not ftz:
            return body

        def step():
            torch.set_flush_denormal(True)
            try:
                body()
            finally:
                torch.set_flush_denormal(False)
        return step

    def run(req):
        step = make(tuple(req["shape"]), req["act"], req["fused"], req["mode"])
        n = req.get("iters")
        if n is None:  # calibrate
            step()
            n, t = 1, 0.0
            while True:
                t0 = time.perf_counter()
                for _ in range(n):
                    step()
                t = time.perf_counter() - t0
                if t >= req["min_time"] / 4:
                    break
                n *= 2
            n = max(1, int(n * req["min_time"] / max(t, 1e-9)))
        for _ in range(max(1, n // 10)):  # warm
            step()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        return {"seconds": (time.perf_counter() - t0) / n, "iters": n}

    return info, {"run": run}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", default="default", help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per variant (default 5)")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per timed repeat (default 0.2)")
    p.add_argument("--torch-threads", default="1,default", help="torch intra-op settings (default 1,default)")
    p.add_argument("--modes", default="fwd+bwd,forward", help="fwd+bwd and/or forward (no grad)")
    p.add_argument("--out", default=None, help="write the results JSON here")
    args = p.parse_args(argv)
    if args.serve:
        args.threads = None if args.threads == "default" else int(args.threads)
        C.serve(lambda: worker(args))
        return 0

    machine = C.machine_info()
    print(f"bench_step_loop: nproc {machine['nproc']}, load {machine['loadavg_at_start']}", flush=True)
    specs = {f"torch-t{'def' if t == 'default' else t}": ["bench/bench_step_loop.py", "--serve", "--threads", t]
             for t in args.torch_threads.split(",")}
    rows, ratios = [], []
    ws_names = list(specs)
    with C.workers(specs) as ws:
        for wname, w in ws.items():
            for mode in args.modes.split(","):
                for shape in SHAPES:
                    jobs = VARIANTS
                    iters = {}
                    for act, fused in jobs:
                        iters[(act, fused)] = w.call("run", shape=shape, act=act, fused=fused, mode=mode,
                                                     min_time=args.min_time)["iters"]
                    times = {j: [] for j in jobs}
                    for _, order in C.rotations(jobs, args.repeats):
                        C.gate()
                        for act, fused in order:
                            times[(act, fused)].append(w.call("run", shape=shape, act=act, fused=fused, mode=mode,
                                                              iters=iters[(act, fused)])["seconds"])
                    n, L, f, h = shape
                    case = f"({n}, {L}, {f}) -> {h} units, {mode}"
                    ref = C.median(times[("tanh", True)])
                    for (act, fused), ts in times.items():
                        rows.append({"bench": "step_loop", "case": case, "mode": mode, "shape": list(shape),
                                     "condition": "quiet", "threads": wname,
                                     "variant": f"{wname} {variant_name(act, fused)}",
                                     "median_s": C.median(ts), "times_s": ts, "iters": iters[(act, fused)],
                                     "info": w.info})
                        if not fused:
                            ratios.append(C.ratio(f"step loop [{wname}] {case}: {variant_name(act, fused)} / tanh (fused)",
                                                  C.median(ts), ref, 2.0 if mode == "fwd+bwd" else None))
                        print(f"{wname:8s} {case:40s} {variant_name(act, fused):18s} "
                              f"{C.fmt_s(C.median(ts)):>9s}  x{C.median(ts) / ref:5.2f} of fused tanh"
                              f"  load {C.loadavg()[0]}", flush=True)
    for wname in ws_names:
        mine = [q for q in ratios if q["target"] is not None and f"[{wname}]" in q["name"]
                and "tanh (step loop)" not in q["name"]]
        worst = max((q for q in mine if "flush denormals" not in q["name"]), key=lambda q: q["value"], default=None)
        if worst:
            ratios.append({**worst, "headline": True,
                           "name": f"step loop [{wname}] worst fwd+bwd ratio over shapes and activations: "
                                   + worst["name"].split("] ", 1)[1]})
    result = {"bench": "step_loop", "machine": machine, "loadavg_at_end": C.loadavg(), "repeats": args.repeats,
              "rows": rows, "ratios": ratios}
    if args.out:
        C.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
