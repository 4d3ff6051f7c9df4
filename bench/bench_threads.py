"""Why the thread setting matters on a small machine: per-op cost with 1 vs torch's default threads.

torch runs an operation on several intra-op threads (one per core by default) when it is big
enough to split; every such parallel region needs all its threads scheduled. When another
process keeps a core busy, a thread waits for its time slice and a microsecond operation takes
a scheduler tick. This measures, in one worker process per thread setting, quiet and with
``--busy`` busy-loop processes running:

    addmm 64x64         a (64, 64) @ (64, 64) + bias: the 64-unit recurrence step at batch 64
    tanh 4096x64        an element-wise op big enough to be split across threads
    rnn_tanh (1,12,1)   the tutorial's forward, batch 1
    rnn_tanh (1024,12,1) a predict chunk of the tutorial model

and the machine's capacity: a pure-Python loop alone and beside one busy process (a ratio of
~1 means a second core is really there; ~2 means the two vCPUs share one core's time).

    python bench/bench_threads.py
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import _common as C

SPIN = "import time\nt=time.perf_counter()\ns=0\nfor i in range(3_000_000): s+=i\nprint(time.perf_counter()-t)"


def worker(args):
    info = C.setup_torch(args.threads)
    import torch
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(64, 64, generator=g) for _ in range(3))
    big = torch.randn(4096, 64, generator=g)
    w_ih, w_hh, bias, zero = torch.randn(3, 1), torch.randn(3, 3), torch.zeros(3), torch.zeros(3)
    x1, x1k = torch.rand(1, 12, 1), torch.rand(1024, 12, 1)
    ops = {
        "addmm 64x64": lambda: torch.addmm(c, a, b),
        "tanh 4096x64": lambda: torch.tanh(big),
        "rnn_tanh (1,12,1)->3": lambda: torch.rnn_tanh(x1, torch.zeros(1, 1, 3), [w_ih, w_hh, bias, zero],
                                                       True, 1, 0.0, False, False, True),
        "rnn_tanh (1024,12,1)->3": lambda: torch.rnn_tanh(x1k, torch.zeros(1, 1024, 3), [w_ih, w_hh, bias, zero],
                                                          True, 1, 0.0, False, False, True),
    }

    def run(req):
        f = ops[req["op"]]
        with torch.no_grad():
            for _ in range(50):
                f()
            n = req["iters"]
            t0 = time.perf_counter()
            for _ in range(n):
                f()
        return {"seconds": (time.perf_counter() - t0) / n}

    return info, {"run": run}


ITERS = {"addmm 64x64": 2000, "tanh 4096x64": 300, "rnn_tanh (1,12,1)->3": 1000, "rnn_tanh (1024,12,1)->3": 200}


def spin() -> float:
    cp = subprocess.run([sys.executable, "-c", SPIN], capture_output=True, text=True)
    return float(cp.stdout)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", default="default", help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=5, help="repeats per op (default 5)")
    p.add_argument("--busy", type=int, default=1, help="busy-loop processes for the loaded condition (default 1)")
    p.add_argument("--out", default=None, help="write the results JSON here")
    args = p.parse_args(argv)
    if args.serve:
        args.threads = None if args.threads == "default" else int(args.threads)
        C.serve(lambda: worker(args))
        return 0
    machine = C.machine_info()
    print(f"bench_threads: nproc {machine['nproc']}, load {machine['loadavg_at_start']}", flush=True)
    rows, ratios = [], []
    def spins():
        out = []
        for _ in range(3):
            C.gate()
            out.append(spin())
        return statistics.median(out)
    capacity = {"alone_s": spins()}
    with C.cpu_hogs(args.busy or 1):
        capacity["beside_busy_s"] = spins()
    capacity["slowdown"] = capacity["beside_busy_s"] / capacity["alone_s"]
    print(f"capacity: pure-Python loop alone {capacity['alone_s']:.3f} s, beside {args.busy or 1} busy process(es) "
          f"{capacity['beside_busy_s']:.3f} s (x{capacity['slowdown']:.2f})")
    specs = {"torch-t1": ["bench/bench_threads.py", "--serve", "--threads", "1"],
             "torch-tdef": ["bench/bench_threads.py", "--serve", "--threads", "default"]}
    with C.workers(specs) as ws:
        conds = [("quiet", 0)] + ([(f"busy{args.busy}", args.busy)] if args.busy else [])
        for cond, n_busy in conds:
            with C.cpu_hogs(n_busy):
                times = {(w, op): [] for w in ws for op in ITERS}
                for _, order in C.rotations(list(times), args.repeats):
                    C.gate()
                    for w, op in order:
                        times[(w, op)].append(ws[w].call("run", op=op, iters=ITERS[op])["seconds"])
            for (w, op), ts in times.items():
                rows.append({"bench": "threads", "case": op, "condition": cond, "variant": w,
                             "median_s": statistics.median(ts), "times_s": ts, "info": ws[w].info})
            for op in ITERS:
                t1 = statistics.median(times[("torch-t1", op)])
                td = statistics.median(times[("torch-tdef", op)])
                ratios.append(C.ratio(f"threads [{cond}] {op}: default threads / 1 thread", td, t1, None))
                print(f"{cond:6s} {op:26s} 1 thread {C.fmt_s(t1):>9s}   default ({ws['torch-tdef'].info['intra_op_threads']}) "
                      f"{C.fmt_s(td):>9s}   x{td / t1:.1f}", flush=True)
    result = {"bench": "threads", "machine": machine, "loadavg_at_end": C.loadavg(), "capacity": capacity,
              "rows": rows, "ratios": ratios}
    if args.out:
        C.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
