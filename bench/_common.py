"""Shared plumbing for the benchmarks: machine facts, workers, CPU hogs, medians, JSON.

Why workers: torchrnn and Keras are timed in *separate* long-lived processes (one per framework
and thread setting) that the driver asks for one repeat at a time, in rotating order. So the
measurements of one run are interleaved (a burst of load from another process hits every
contender, not just one), each framework keeps its warm caches between repeats, and neither
runtime's thread pools or allocator share a process with the other's.

Protocol (JSON lines): the worker prints ``{"ready": true, "info": {...}}`` after its setup, then
answers every request line ``{"cmd": "run", ...}`` with one JSON line; ``{"cmd": "quit"}`` ends it.
A worker's own stdout (and TensorFlow's C++ logging) is redirected to its log file, so only
protocol lines reach the driver.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs"

# Benchmark this checkout, whether or not the package is installed.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# TensorFlow's C++ INFO/WARNING chatter goes to the worker logs either way; keep it short.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """Facts about the machine and this process's Python; framework versions come from workers."""
    return {
        "nproc": os.cpu_count(),
        "sched_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": loadavg(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                                           "TF_NUM_INTEROP_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                if k in os.environ},
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git": git_state(),
    }


def git_state() -> dict:
    """The commit benchmarked, and uncommitted changes to the code under test (if any)."""
    def git(*a):
        try:
            return subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"head": git("rev-parse", "--short", "HEAD"),
            # the trees of the code under test: a commit elsewhere (README, tests, bench) leaves them alone
            "code_tree": " ".join(t[:7] for t in git("rev-parse", "HEAD:torchrnn", "HEAD:parity").split()),
            "dirty_code": [ln[3:] for ln in git("status", "--porcelain", "--", "torchrnn", "parity").splitlines()]}


# --------------------------------------------------------------------------- framework setup

def setup_torch(threads: int | None) -> dict:
    """Set torch's intra-op threads (None: leave torch's default, one per core) and describe them."""
    import torch
    if threads is not None:
        torch.set_num_threads(int(threads))
    return {"framework": "torch", "torch": torch.__version__, "intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(),
            "threads_setting": "default" if threads is None else int(threads),
            "parallel_info": _parallel_backend(torch)}


def _parallel_backend(torch) -> str:
    info = torch.__config__.parallel_info()
    keep = [ln.strip() for ln in info.splitlines() if ln.strip().startswith(("ATen parallel backend", "MKL_NUM",
                                                                             "OMP_NUM", "Intra-op", "mkl", "MKL"))]
    return "; ".join(keep)


def setup_tf(threads: int | None) -> dict:
    """Import Keras 3 on TensorFlow; optionally pin TF's intra-op threads (0/None = TF's default)."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf
    if threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    import keras
    tf.get_logger().setLevel("ERROR")
    return {"framework": "keras", "tensorflow": tf.__version__, "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "threads_setting": "default" if threads is None else int(threads),
            "note": "TF reports 0 for 'default': one intra-op thread per core"}


# --------------------------------------------------------------------------- workers

def serve(setup):
    """Worker side: ``setup() -> (info, handlers)``; answer requests until 'quit'.

    ``handlers`` maps a command name to ``fn(request) -> dict``.
    """
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                      # anything else written to stdout (C or Python) goes to the log
    sys.stdout = sys.stderr
    try:
        info, handlers = setup()
        proto.write(json.dumps({"ready": True, "info": info}) + "\n")
        for line in sys.stdin:
            req = json.loads(line)
            if req.get("cmd") == "quit":
                break
            try:
                out = handlers[req["cmd"]](req)
                proto.write(json.dumps({"ok": True, **out}) + "\n")
            except Exception as e:  # report, keep serving
                import traceback
                traceback.print_exc()
                proto.write(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}) + "\n")
    except Exception as e:
        import traceback
        traceback.print_exc()
        proto.write(json.dumps({"ready": False, "error": f"{type(e).__name__}: {e}"}) + "\n")


class Worker:
    """Driver side of :func:`serve`: one subprocess, one request at a time."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None):
        self.name = name
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, bufsize=1, cwd=ROOT,
                                     env={**os.environ, **(env or {})})
        hello = self._read()
        if not hello.get("ready"):
            raise RuntimeError(f"worker {name} failed to start: {hello.get('error')} (log: {self.log_path})")
        self.info = hello["info"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} died (exit {self.proc.poll()}); see {self.log_path}:\n"
                               + self.log_path.read_text()[-2000:])
        return json.loads(line)

    def call(self, cmd: str, **kw) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        out = self._read()
        if not out.get("ok"):
            raise RuntimeError(f"worker {self.name}: {out.get('error')} (log: {self.log_path})")
        return out

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@contextmanager
def workers(specs: dict[str, list[str]]):
    """Start every worker (name -> argv), yield {name: Worker}, always stop them."""
    started: dict[str, Worker] = {}
    try:
        for name, argv in specs.items():
            started[name] = Worker(name, argv)
        yield started
    finally:
        for w in started.values():
            w.close()


def rotations(names: list[str], repeats: int):
    """Rep r visits the contenders starting at index r (so nobody always goes first)."""
    for r in range(repeats):
        k = r % len(names)
        yield r, names[k:] + names[:k]


# --------------------------------------------------------------------------- load

@contextmanager
def cpu_hogs(n: int):
    """Run ``n`` busy-loop processes (the 'another helper is running its tests' condition).

    Only the processes started here are stopped, by their own pid.
    """
    global _HOGS
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    _HOGS += n
    try:
        time.sleep(0.5 if n else 0)
        yield procs
    finally:
        _HOGS -= n
        for p in procs:
            p.kill()
            p.wait()


def cpu_busy(seconds: float = 3.0) -> float:
    """Fraction of all CPUs busy over the next ``seconds`` (from /proc/stat), 0..1.

    Taken between benchmarks, when none of ours runs, it is the load of the others; unlike the
    load average it does not remember our own previous benchmark.
    """
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v), idle
    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
    except OSError:
        return float("nan")
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


# Gate for every timed repeat: wait (up to GATE_WAIT s) until other processes use at most
# GATE_BUSY of the CPUs. Our own busy-loop processes are allowed for. Set GATE_WAIT=0 to disable.
GATE_BUSY = float(os.environ.get("BENCH_GATE_BUSY", "0.15"))
GATE_WAIT = float(os.environ.get("BENCH_GATE_WAIT", "120"))
_HOGS = 0


def gate() -> float:
    """Wait for a quiet moment before one timed repeat; return the busy fraction seen last.

    Between repeats none of our workers runs, so what /proc/stat shows is other processes (plus
    our own busy loops in a 'busy' condition, which are subtracted).
    """
    if GATE_WAIT <= 0:
        return float("nan")
    deadline = time.time() + GATE_WAIT
    own = _HOGS / (os.cpu_count() or 1)
    while True:
        busy = max(0.0, cpu_busy(1.0) - own)
        if busy <= GATE_BUSY or time.time() >= deadline:
            return round(busy, 3)


def check_quiet(max_busy: float, wait: float = 0.0) -> dict:
    """Wait up to ``wait`` seconds until other processes use at most ``max_busy`` of the CPUs."""
    deadline = time.time() + wait
    while True:
        busy = cpu_busy()
        if busy <= max_busy or time.time() >= deadline:
            return {"cpu_busy": round(busy, 3), "loadavg": loadavg(), "quiet": busy <= max_busy}
        time.sleep(5)


# --------------------------------------------------------------------------- output

def write_json(path: str | Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def fmt_s(s: float) -> str:
    if s != s:
        return "n/a"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def print_rows(rows: list[dict], keys=("case", "variant", "median_s")) -> None:
    for r in rows:
        print("  ".join(fmt_s(r[k]) if k.endswith("_s") else str(r.get(k, "")) for k in keys))


def ratio(name: str, num: float, den: float, target: float | None, note: str = "", headline: bool = False) -> dict:
    """``num / den`` against a target (met when <= target); headline ratios lead the results table."""
    v = num / den if den else float("nan")
    return {"name": name, "value": v, "target": target, "met": None if target is None else bool(v <= target),
            "note": note, "headline": headline}
