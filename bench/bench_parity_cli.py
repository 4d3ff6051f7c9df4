"""``torchrnn-parity MODEL_FILE`` from process start to verdict, and what its import costs.

Times, as subprocess wall time (median of ``--repeats``):

    cli       torchrnn-parity <fixture>       (``python -m parity.cli`` when the console script
                                               is not installed: the same code path)
    import    python -c "import parity"       measured inside the process, and whether
                                               tensorflow / keras ended up in sys.modules
    after     parity.cli.main([fixture]) in-process: tensorflow / keras in sys.modules afterwards?
    baselines python -c pass, import numpy, import torch, import h5py, import tensorflow
              (the floor, and what --keras or a stray import would add)

and lists the ten slowest imports of ``import parity.cli`` (``python -X importtime``).
The contract: the CLI answers in under 3 s and never imports TensorFlow.

    python bench/bench_parity_cli.py
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import _common as C

DEFAULT_FIXTURES = ["tests/fixtures/keras/demo_tanh.keras", "tests/fixtures/keras/stacked.keras"]

PROBE = """
import json, sys, time
t0 = time.perf_counter()
import parity
t_import = time.perf_counter() - t0
after_import = {m: m in sys.modules for m in ("tensorflow", "keras", "torch", "h5py")}
verdict = None
if len(sys.argv) > 1:
    import io, contextlib
    from parity.cli import main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        verdict = main([sys.argv[1]])
print(json.dumps({"import_s": t_import, "after_import": after_import, "exit": verdict,
                  "after_cli": {m: m in sys.modules for m in ("tensorflow", "keras")}}))
"""


def wall(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    cp = subprocess.run(cmd, capture_output=True, text=True, cwd=C.ROOT)
    return time.perf_counter() - t0, cp


def cli_command(fixture: str) -> list[str]:
    exe = shutil.which("torchrnn-parity")
    return [exe, fixture] if exe else [sys.executable, "-m", "parity.cli", fixture]


def importtime_top(module: str, n: int = 10) -> list[dict]:
    """The slowest cross-package imports under ``import module``, from ``python -X importtime``.

    An entry is a module imported by a module of another top-level package (``torch`` imported
    by ``parity.check``); its time is cumulative over everything it imported.
    """
    cp = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                        text=True, cwd=C.ROOT)
    pending, edges = [], []           # importtime prints children before their parent
    for line in cp.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum_us, raw = line[len("import time:"):].split("|")
        name = raw.strip()
        depth = (len(raw) - len(raw.lstrip()) - 1) // 2
        children = []
        while pending and pending[-1][0] > depth:
            children.append(pending.pop())
        for d, child, cum in children:
            if d == depth + 1 and child.split(".")[0] != name.split(".")[0]:
                edges.append({"module": child, "imported_by": name, "cumulative_s": cum})
        pending.append((depth, name, int(cum_us) / 1e6))
    return sorted(edges, key=lambda r: -r["cumulative_s"])[:n]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("fixtures", nargs="*", default=DEFAULT_FIXTURES, help="Keras model files (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="runs per measurement (default 5)")
    p.add_argument("--no-tf-baseline", dest="tf_baseline", action="store_false",
                   help="skip timing `import tensorflow`")
    p.add_argument("--out", default=None, help="write the results JSON here")
    args = p.parse_args(argv)
    machine = C.machine_info()
    print(f"bench_parity_cli: nproc {machine['nproc']}, load {machine['loadavg_at_start']}", flush=True)

    baselines = {"python -c pass": "pass", "import numpy": "import numpy", "import h5py": "import h5py",
                 "import torch": "import torch"}
    if args.tf_baseline:
        baselines["import tensorflow"] = "import tensorflow"
    jobs = [("cli", f) for f in args.fixtures] + [("probe", f) for f in args.fixtures[:1]] + \
           [("baseline", k) for k in baselines]
    for job in jobs:  # warm the page cache
        kind, what = job
        if kind == "cli":
            wall(cli_command(what))
    times = {j: [] for j in jobs}
    probes = []
    for _, order in C.rotations(jobs, args.repeats):
        for kind, what in order:
            C.gate()
            if kind == "cli":
                dt, cp = wall(cli_command(what))
                if cp.returncode != 0 or "PARITY" not in cp.stdout:
                    raise RuntimeError(f"parity CLI failed on {what} (exit {cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
            elif kind == "probe":
                dt, cp = wall([sys.executable, "-c", PROBE, what])
                if cp.returncode != 0:
                    raise RuntimeError(f"probe failed:\n{cp.stderr}")
                probes.append(json.loads(cp.stdout.strip().splitlines()[-1]))
            else:
                dt, cp = wall([sys.executable, "-c", baselines[what]])
            times[(kind, what)].append(dt)

    rows = []
    for (kind, what), ts in times.items():
        label = {"cli": f"{' '.join(Path(c).name for c in cli_command(what)[:-1])} {Path(what).name}",
                 "probe": f"python -c 'import parity; parity.cli.main([{Path(what).name}])'",
                 "baseline": f"python -c '{baselines.get(what, '')}'"}[kind]
        rows.append({"bench": "parity_cli", "case": kind, "variant": label, "median_s": C.median(ts), "times_s": ts,
                     "condition": "quiet"})
    import_s = C.median([pr["import_s"] for pr in probes])
    tf_imported = any(pr["after_import"]["tensorflow"] or pr["after_cli"]["tensorflow"] for pr in probes)
    keras_imported = any(pr["after_import"]["keras"] or pr["after_cli"]["keras"] for pr in probes)
    rows.append({"bench": "parity_cli", "case": "import", "variant": "import parity (in-process)",
                 "median_s": import_s, "times_s": [pr["import_s"] for pr in probes], "condition": "quiet"})
    cli_rows = [r for r in rows if r["case"] == "cli"]
    ratios = [{"name": f"parity CLI wall time, {r['variant']} (s, target < 3)", "value": r["median_s"], "target": 3.0,
               "met": r["median_s"] < 3.0, "note": "absolute seconds, not a ratio", "headline": True} for r in cli_rows]
    ratios.append({"name": "tensorflow imported by `import parity` or the CLI (must be False)",
                   "value": tf_imported, "target": False, "met": not tf_imported, "note": f"keras imported: {keras_imported}",
                   "headline": True})
    result = {"bench": "parity_cli", "machine": machine, "loadavg_at_end": C.loadavg(), "repeats": args.repeats,
              # the command with the interpreter's or script's name only, no machine path
              "cli_command": [Path(c).name if i == 0 else c for i, c in enumerate(cli_command("MODEL_FILE"))],
              "rows": rows, "ratios": ratios,
              "tensorflow_imported": tf_imported, "keras_imported": keras_imported, "probes": probes,
              "importtime_top": importtime_top("parity.cli")}
    for r in rows:
        print(f"{r['case']:8s} {r['variant']:60s} {C.fmt_s(r['median_s']):>9s}")
    print(f"tensorflow imported: {tf_imported}; keras imported: {keras_imported}")
    print("slowest imports under `import parity.cli` (cumulative):")
    for r in result["importtime_top"]:
        print(f"  {r['module']:30s} (by {r['imported_by']:20s}) {C.fmt_s(r['cumulative_s'])}")
    if args.out:
        C.write_json(args.out, result)
    return 1 if tf_imported else 0


if __name__ == "__main__":
    sys.exit(main())
