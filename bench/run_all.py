"""Run every benchmark and write ``bench/results/results.json`` and ``bench/results/results.md``.

    python bench/run_all.py                  # the full run (about 15 minutes on 2 cores)
    python bench/run_all.py --quick          # a smoke test: 2 epochs, 1-2 repeats (numbers meaningless)
    python bench/run_all.py --render-only    # rebuild results.md from results.json

Benchmarks are noisy on a shared machine: run this when nothing else is running. Before each
benchmark the CPU use of other processes is sampled (3 s of /proc/stat) and, when it is above
``--max-busy``, the run waits (up to ``--wait`` seconds) for it to drop; what was seen is recorded.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import _common as C

BENCHES = {
    "threads": ("bench_threads.py", [], ["--repeats", "1"]),
    "fit": ("bench_fit.py", [], ["--epochs", "2", "--repeats", "1", "--busy-repeats", "1"]),
    "inference": ("bench_inference.py", ["--busy", "1", "--repeats", "3"], ["--repeats", "1"]),
    "step_loop": ("bench_step_loop.py", [], ["--repeats", "2", "--min-time", "0.05"]),
    "parity_cli": ("bench_parity_cli.py", [], ["--repeats", "2"]),
    "profile": ("profile_step.py", ["all", "--threads", "1"], ["phases", "--threads", "1"]),
}


def run(names, quick: bool, max_busy: float, wait: float, extra: dict) -> dict:
    results = {"machine": C.machine_info(), "benches": {}, "loads": {}}
    for name in names:
        script, full, quick_args = BENCHES[name]
        q = C.check_quiet(max_busy, wait)
        results["loads"][name] = {"before": q["loadavg"], "others_cpu_busy_before": q["cpu_busy"]}
        if not q["quiet"]:
            print(f"warning: other processes keep {q['cpu_busy']:.0%} of the CPUs busy before {name}; "
                  f"numbers will be noisy", flush=True)
        out = C.LOGS / f"{name}.json"      # the parts; results.json holds them all
        cmd = [sys.executable, str(C.BENCH / script), *(quick_args if quick else full), *extra.get(name, []),
               "--out", str(out)]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=C.ROOT)
        results["loads"][name]["after"] = C.loadavg()
        results["loads"][name]["wall_s"] = round(time.time() - t0, 1)
        part = json.loads(out.read_text())
        part.setdefault("rows", [])
        part.setdefault("ratios", [])
        results["benches"][name] = part
    results["git_at_end"] = C.git_state()  # the code may move under a long run on a shared tree
    results["quick"] = quick
    results["gate"] = {"max_busy": C.GATE_BUSY, "wait_s": C.GATE_WAIT}
    return results


# --------------------------------------------------------------------------- markdown

def _fmt_ratio(q: dict) -> str:
    v = q["value"]
    if isinstance(v, bool):
        return str(v)
    return f"{v:.3f}" if "s, target" not in q["name"] else f"{v:.2f} s"


def _target(q: dict) -> str:
    t = q["target"]
    if t is None:
        return ""
    if isinstance(t, bool):
        return str(t)
    return "< 3 s" if "s, target" in q["name"] else f"<= {t}"


def _met(q: dict) -> str:
    return "" if q["met"] is None else ("yes" if q["met"] else "**no**")


def _versions(results: dict) -> tuple[str, list[str]]:
    seen, lines = {}, []
    for b in results["benches"].values():
        for r in b["rows"]:
            info = r.get("info")
            if not info:
                continue
            key = r["variant"].split(" ")[0]
            if key in seen:
                continue
            seen[key] = info
            if info["framework"] in ("torch", "numpy"):
                lines.append(f"- `{key}`: torch {info['torch']}, intra-op threads {info['intra_op_threads']} "
                             f"(setting: {info['threads_setting']}), inter-op {info['inter_op_threads']}")
            else:
                lines.append(f"- `{key}`: TensorFlow {info['tensorflow']}, Keras {info['keras']} "
                             f"(backend {info['backend']}), intra-op {info['intra_op_threads']} "
                             f"(setting: {info['threads_setting']}; 0 = one per core), inter-op {info['inter_op_threads']}")
    torch_v = next((i["torch"] for i in seen.values() if i["framework"] == "torch"), "?")
    tf_v = next((f"TensorFlow {i['tensorflow']} / Keras {i['keras']}" for i in seen.values()
                 if i["framework"] == "keras"), "?")
    return f"torch {torch_v}, {tf_v}", lines


def _tree(git: dict) -> str:
    """The torchrnn/ and parity/ trees of a recorded commit (older results carry only the commit)."""
    if git.get("code_tree"):
        return git["code_tree"]
    try:
        out = subprocess.run(["git", "rev-parse", f"{git.get('head')}:torchrnn", f"{git.get('head')}:parity"],
                             capture_output=True, text=True, cwd=C.ROOT, timeout=10).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        out = []
    return " ".join(t[:7] for t in out) or str(git.get("head"))


def _code_moved(start: dict, end: dict | None) -> bool:
    """True when torchrnn/ or parity/ changed between the start and the end of a run (a commit
    that touched only the README, tests or bench/ does not count)."""
    if not end:
        return False
    return _tree(start) != _tree(end) or start.get("dirty_code") != end.get("dirty_code")


def render(results: dict) -> str:
    m = results["machine"]
    vers, thread_lines = _versions(results)
    out = ["# torchrnn benchmarks", ""]
    if results.get("quick"):
        out += ["**QUICK SMOKE RUN: 2 epochs, 1-2 repeats. These numbers are not the benchmark.**", ""]
    g = m.get("git", {})
    out += [f"Machine: {m['cpu']}, nproc {m['nproc']}, {m['platform']}, Python {m['python']}; {vers}.",
            f"Code: commit {g.get('head', '?')}" + (f", with uncommitted changes to {', '.join(g['dirty_code'])}"
                                                    if g.get("dirty_code") else " (clean)") + ".",
            *([f"**The code under test changed during the run** (commit {results['git_at_end']['head']} at the end): "
               "benchmarks started later ran the newer code."]
              if _code_moved(g, results.get("git_at_end")) else []),
            "Commit each benchmark started on (and the torchrnn/ parity/ trees, where recorded): " + ", ".join(
                f"{k} {b.get('machine', {}).get('git', {}).get('head', '?')}"
                + f" [{_tree(b.get('machine', {}).get('git', {}))}]"
                for k, b in results["benches"].items()) + ".",
            f"Run {m['time']}. Reproduce: `python bench/run_all.py` (see bench/README.md).", "",
            "Contenders (each in its own process; `t1` = 1 intra-op thread, `tdef` = the framework's default):", "",
            *thread_lines, "",
            (f"Every timed repeat waited (up to {results['gate']['wait_s']:.0f} s) until other processes used at most "
             f"{results['gate']['max_busy']:.0%} of the CPUs (1-s samples of /proc/stat)." if results.get("gate") else ""),
            "",
            "Other processes' CPU use just before each benchmark (3-s sample; 1.0 = every core busy), and load "
            "average (1, 5, 15 min) before / after: " + "; ".join(
                f"{k} {v.get('others_cpu_busy_before', float('nan')):.2f}, {v['before']} / {v.get('after')}"
                for k, v in results["loads"].items()), "",
            "## Targets (ratios torchrnn / Keras from the same run; medians)", "",
            "| measure | value | target | met |", "|---|---|---|---|"]
    for b in results["benches"].values():
        for q in b["ratios"]:
            if q.get("headline"):
                out.append(f"| {q['name']}{' (' + q['note'] + ')' if q.get('note') else ''} | {_fmt_ratio(q)} | "
                           f"{_target(q)} | {_met(q)} |")
    out += ["", "<details><summary>All ratios</summary>", "", "| measure | value | target | met |", "|---|---|---|---|"]
    for b in results["benches"].values():
        for q in b["ratios"]:
            if not q.get("headline"):
                out.append(f"| {q['name']}{' (' + q['note'] + ')' if q.get('note') else ''} | {_fmt_ratio(q)} | "
                           f"{_target(q)} | {_met(q)} |")
    out += ["", "</details>"]
    merged = [(k, b["merged_from_run"], (b.get("git") or {}).get("head")) for k, b in results["benches"].items()
              if b.get("merged_from_run")]
    if merged:
        out += ["", "Parts of this file come from different runs (`run_all.py --merge`): " + "; ".join(
            f"{k}: run {t}, commit {h}" for k, t, h in merged) + "."]
    out += ["", "## Absolute medians", ""]
    fit = results["benches"].get("fit")
    if fit:
        out += [f"### Tutorial fit ({fit['epochs']} epochs, batch size 1, 187 windows; "
                f"median of {fit['repeats']} fresh-model fits after a warm-up)", "",
                "`busyN` = the same measurement with N busy-loop processes running (another job on the machine).", "",
                "| condition | contender | fit median | first epoch | steady epoch | final loss (per repeat) | "
                "others' CPU before each repeat |",
                "|---|---|---|---|---|---|---|"]
        for r in fit["rows"]:
            out.append(f"| {r['condition']} | {r['variant']} | {C.fmt_s(r['median_s'])} | {C.fmt_s(r['first_epoch_s'])} "
                       f"| {C.fmt_s(r['steady_epoch_s'] or float('nan'))} | "
                       f"{', '.join(f'{v:.4f}' for v in r['final_loss'])} | "
                       f"{', '.join(f'{v:.2f}' for v in r.get('others_busy_before', []))} |")
        out.append("")
    inf = results["benches"].get("inference")
    if inf:
        out += [f"### Inference (median of {inf['repeats']} calls after a warm-up call; same weights both sides)", "",
                "| condition | case | contender and batch size | median | max abs diff vs torch (first 1000) |",
                "|---|---|---|---|---|"]
        for r in inf["rows"]:
            diff = "-" if r["max_abs_diff_vs_torch"] is None else f"{r['max_abs_diff_vs_torch']:.1e}"
            out.append(f"| {r['condition']} | {r['case']} | {r['variant']} | {C.fmt_s(r['median_s'])} | {diff} |")
        out.append("")
    st = results["benches"].get("step_loop")
    if st:
        out += [f"### Step loop vs fused, one `SimpleRNN` layer (median of {st['repeats']})", "",
                "| threads | case | tanh (fused) | tanh (step loop) | linear (step loop) | sigmoid (step loop) | "
                "sigmoid (step loop, flush denormals) |",
                "|---|---|---|---|---|---|---|"]
        groups: dict = {}
        for r in st["rows"]:
            groups.setdefault((r["threads"], r["case"]), {})[r["variant"].split(" ", 1)[1]] = r["median_s"]
        for (th, case), v in groups.items():
            ref = v.get("tanh (fused)")
            cells = [f"{C.fmt_s(v[k])}" + (f" ({v[k] / ref:.2f}x)" if ref and k != "tanh (fused)" else "")
                     for k in ("tanh (fused)", "tanh (step loop)", "linear (step loop)", "sigmoid (step loop)",
                               "sigmoid (step loop, flush denormals)") if k in v]
            out.append(f"| {th} | {case} | " + " | ".join(cells) + " |")
        out.append("")
    pc = results["benches"].get("parity_cli")
    if pc:
        out += [f"### Parity CLI (subprocess wall time, median of {pc['repeats']})", "",
                f"Command: `{' '.join(pc['cli_command'])}`. TensorFlow imported: **{pc['tensorflow_imported']}**, "
                f"Keras imported: **{pc['keras_imported']}**.", "",
                "| what | median |", "|---|---|"]
        for r in pc["rows"]:
            out.append(f"| {r['variant']} | {C.fmt_s(r['median_s'])} |")
        out += ["", "Slowest cross-package imports under `import parity.cli` (cumulative, `python -X importtime`): "
                + ", ".join(f"{r['module']} (by {r['imported_by']}) {C.fmt_s(r['cumulative_s'])}"
                            for r in pc["importtime_top"][:6]), ""]
    th = results["benches"].get("threads")
    if th:
        cap = th["capacity"]
        out += ["### Threads: one operation, 1 intra-op thread vs torch's default (`bench/bench_threads.py`)", "",
                f"Capacity check: a pure-Python loop takes {cap['alone_s']:.3f} s alone and {cap['beside_busy_s']:.3f} s "
                f"beside one busy process (x{cap['slowdown']:.2f}; ~1 means a second core is really available).", "",
                "| condition | operation | 1 thread | default threads | default / 1 |", "|---|---|---|---|---|"]
        by = {(r["condition"], r["case"], r["variant"]): r["median_s"] for r in th["rows"]}
        for cond, op in dict.fromkeys((r["condition"], r["case"]) for r in th["rows"]):
            t1, td = by[(cond, op, "torch-t1")], by[(cond, op, "torch-tdef")]
            out.append(f"| {cond} | {op} | {C.fmt_s(t1)} | {C.fmt_s(td)} | {td / t1:.1f}x |")
        out.append("")
    pr = results["benches"].get("profile")
    if pr:
        out += [f"## Profile of the batch-size-1 training step (threads {pr['torch']['intra_op_threads']}; "
                "`python bench/profile_step.py all`)", ""]
        if "phases" in pr:
            ph = pr["phases"]
            out += ["| phase | us per step | share |", "|---|---|---|"]
            out += [f"| {k} | {v:.1f} | {ph['share'][k] * 100:.1f}% |" for k, v in ph["us_per_step"].items()]
            out += [f"| wall (one step of fit's loop) | {ph['wall_us_per_step']:.1f} | |", ""]
        if "ops" in pr:
            o = pr["ops"]
            out += [f"torch.profiler: {o['aten_ops_per_step']:.0f} ATen ops and {o['autograd_nodes_per_step']:.0f} "
                    "autograd nodes per step. Top self-CPU entries: " + ", ".join(
                        f"{e['op']} x{e['calls_per_step']:.0f}" for e in o["top_self_cpu"][:8]), ""]
        if "prototypes" in pr:
            out += ["Prototypes (bench/profile_step.py; interleaved in one process; weights after one epoch "
                    "compared with the current code):", "",
                    "| prototype | us per step | vs current | max abs weight diff after 1 epoch |", "|---|---|---|---|"]
            out += [f"| {k} | {v['us_per_step']:.1f} | {v['vs_current']:.2f} | {v['max_abs_weight_diff_after_epoch']:.1e} |"
                    for k, v in pr["prototypes"].items()]
            out.append("")
        if "inference" in pr:
            out += ["Inference prototypes (1 thread):", "", "| case | variant | median |", "|---|---|---|"]
            for case, vs in pr["inference"].items():
                out += [f"| {case} | {k} | {C.fmt_s(v['median_s'])} |" for k, v in vs.items()]
            out.append("")
    return "\n".join(out) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benches", nargs="*", default=list(BENCHES), help=f"which (default all: {' '.join(BENCHES)})")
    p.add_argument("--quick", action="store_true", help="a smoke test: short runs, numbers not meaningful")
    p.add_argument("--max-busy", type=float, default=0.1,
                   help="before each benchmark, wait until other processes use at most this fraction of the CPUs "
                        "(measured over 3 s from /proc/stat; default 0.1)")
    p.add_argument("--wait", type=float, default=300, help="seconds to wait for a quiet machine (default 300)")
    p.add_argument("--render-only", action="store_true", help="rebuild results.md from results.json")
    p.add_argument("--merge", action="store_true",
                   help="replace only the benchmarks run now in an existing results.json (e.g. re-run `fit` after a "
                        "code change); the markdown then says which parts come from which run")
    p.add_argument("--results-dir", default=None,
                   help="where results.json/.md go (default bench/results, or bench/results/quick with --quick)")
    args = p.parse_args(argv)
    from pathlib import Path
    rdir = Path(args.results_dir or (C.RESULTS / "quick" if args.quick else C.RESULTS))
    if args.render_only:
        results = json.loads((rdir / "results.json").read_text())
    else:
        results = run(args.benches, args.quick, args.max_busy, args.wait, {})
        if args.merge and (rdir / "results.json").exists():
            old = json.loads((rdir / "results.json").read_text())
            for name in results["benches"]:
                results["benches"][name]["merged_from_run"] = results["machine"]["time"]
                results["benches"][name]["git"] = results["machine"]["git"]
            for name, part in old["benches"].items():
                if name not in results["benches"]:
                    part.setdefault("merged_from_run", old["machine"]["time"])
                    part.setdefault("git", old["machine"].get("git"))
                    results["benches"][name] = part
                    results["loads"].setdefault(name, old["loads"].get(name, {}))
            results["benches"] = {k: results["benches"][k] for k in BENCHES if k in results["benches"]}
        C.write_json(rdir / "results.json", results)
    (rdir / "results.md").write_text(render(results))
    print(f"wrote {rdir / 'results.json'} and {rdir / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
