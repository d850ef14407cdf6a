"""Store vs recompute on a deep network: peak memory and time of one forward + backward, for
gtool's --remat policies and for torch.utils.checkpoint / jax.checkpoint on the same network.

The network (issue 14): 128 layers h = tanh(h @ W + b), batch 1024, width 64, float64,
L = sum(h_last^2). Every measurement runs in a fresh process with one BLAS/compute thread
(MALLOC_MMAP_THRESHOLD_=65536, so freed buffers leave the resident set at once):

- peak: the resident-set high-water mark of one steady-state step (after two warm-up steps,
  /proc/self/clear_refs resets VmHWM) minus the resident set before it, plus the bytes of the
  inputs and params (alive in every framework); for gtool also tracemalloc's peak and the
  predicted `peak_bytes` of `gtool memory`; for jax, whose XLA runtime keeps its buffers
  between calls (the resident set does not move), XLA's own buffer assignment of the compiled
  step (`memory_analysis()`: arguments + outputs + temporaries);
- time: the median over 7 steps of the process's CPU time (time.process_time: with one
  thread, other programs on a shared machine do not inflate it as they do wall time).

    .venv/bin/python bench/memory_bench.py                        # gtool only
    PYTHONPATH=. ~/.cache/gtool-peers/venv/bin/python bench/memory_bench.py --peers
    .venv/bin/python bench/memory_bench.py --plot docs/img/memory_curve.svg  # from the saved results
    .venv/bin/python bench/memory_bench.py --timeline docs/img/memory_timeline.svg

Results go to bench/results/memory_bench.json (merged per framework), a table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's gtool, not an installed one
RESULTS = ROOT / "bench" / "results" / "memory_bench.json"
ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536",
       "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
REPEAT = 7


def _status() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


def _measure(step) -> tuple[int, float]:
    """(resident-set peak increase of one step, median CPU seconds per step)."""
    step()
    step()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status()["VmRSS"]
    step()
    peak = _status()["VmHWM"] - base
    times = []
    for _ in range(REPEAT):
        t0 = time.process_time()
        step()
        times.append(time.process_time() - t0)
    return peak, sorted(times)[REPEAT // 2]


def mlp_yaml(layers: int, batch: int, width: int) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from memory_graphs import mlp_yaml as make

    return make(layers, batch, width)


def one_gtool(policy: str, a) -> dict:
    import tempfile

    sys.path.insert(0, str(ROOT / "tests"))
    from memory_graphs import feed, measured_peak

    import gtool
    from gtool import api
    from gtool.memory.report import memory_report

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mlp.yaml"
        path.write_text(mlp_yaml(a.layers, a.batch, a.width))
        g = gtool.load(path)
    values = feed(g)
    t0 = time.perf_counter()
    rep = memory_report(g, remat=policy)
    plan_s = time.perf_counter() - t0
    held = sum(v.nbytes for v in values.values())
    peak, t = _measure(lambda: api.value_and_grad(g, values, remat=policy))
    return {"framework": "gtool", "config": policy, "peak_bytes": peak + held, "time_s": t,
            "predicted_bytes": rep.peak_bytes, "tracemalloc_bytes": measured_peak(g, values, policy),
            "recompute_flops": rep.to_json()["recompute_flops"], "plan_s": plan_s}


def one_torch(segments: int, a) -> dict:
    import torch
    from torch.utils.checkpoint import checkpoint_sequential

    torch.set_num_threads(1)
    torch.manual_seed(0)
    dt = torch.float64
    model = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(a.width, a.width, dtype=dt), torch.nn.Tanh())
                                  for _ in range(a.layers)])
    x = torch.randn(a.batch, a.width, dtype=dt)

    def step():
        model.zero_grad(set_to_none=True)
        h = model(x) if segments == 0 else checkpoint_sequential(model, segments, x, use_reentrant=False)
        (h * h).sum().backward()

    step()
    model.zero_grad(set_to_none=True)
    held = x.nbytes + sum(p.nbytes for p in model.parameters())
    peak, t = _measure(step)
    return {"framework": "torch", "config": f"checkpoint_sequential({segments})" if segments else "none",
            "peak_bytes": peak + held, "time_s": t}


def one_jax(every: int, a) -> dict:
    """every = 0: no checkpoint; -1: jax.checkpoint with dots_saveable on each layer; k > 0:
    jax.checkpoint around each segment of k layers (nothing saved inside a segment)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    ws = [jax.random.normal(jax.random.fold_in(key, i), (a.width, a.width)) / a.width ** 0.5 for i in range(a.layers)]
    bs = [jnp.zeros(a.width) for _ in range(a.layers)]
    x = jax.random.normal(key, (a.batch, a.width))

    def layer(h, w, b):
        return jnp.tanh(h @ w + b)

    def loss(params, x):
        ws, bs = params
        h = x
        if every == -1:
            f = jax.checkpoint(layer, policy=jax.checkpoint_policies.dots_saveable)
            for w, b in zip(ws, bs):
                h = f(h, w, b)
        elif every == 0:
            for w, b in zip(ws, bs):
                h = layer(h, w, b)
        else:
            def segment(h, ws, bs):
                for w, b in zip(ws, bs):
                    h = layer(h, w, b)
                return h
            seg = jax.checkpoint(segment)
            for k in range(0, a.layers, every):
                h = seg(h, ws[k:k + every], bs[k:k + every])
        return jnp.sum(h * h)

    f = jax.jit(jax.value_and_grad(loss))
    params = (ws, bs)
    mem = f.lower(params, x).compile().memory_analysis()

    def step():
        jax.block_until_ready(f(params, x))

    held = x.nbytes + sum(w.nbytes for w in ws) + sum(b.nbytes for b in bs)
    rss, t = _measure(step)
    name = {0: "none", -1: "dots_saveable"}.get(every, f"checkpoint every {every}")
    # XLA keeps its buffers between calls, so the resident set says little: its own buffer
    # assignment (arguments + outputs + temporaries of the compiled step) is the peak
    planned = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
    return {"framework": "jax", "config": name, "peak_bytes": planned, "time_s": t,
            "xla_temp_bytes": mem.temp_size_in_bytes, "rss_peak_bytes": rss + held}


def _gtool_configs(a) -> list[str]:
    """none, sqrt, cheap and budgets spread between sqrt's predicted peak and none's."""
    import tempfile

    import gtool
    from gtool.memory.report import memory_report

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mlp.yaml"
        path.write_text(mlp_yaml(a.layers, a.batch, a.width))
        g = gtool.load(path)
    low, top = (memory_report(g, remat=p).peak_bytes for p in ("sqrt", "none"))
    budgets = [int(low + (top - low) * f) for f in (0.05, 0.15, 0.3, 0.5, 0.75)]
    return ["none", "sqrt", "cheap"] + [f"budget={b}" for b in budgets]


def _run_one(framework: str, config: str, a) -> dict:
    cmd = [sys.executable, __file__, "--one", framework, config, "--layers", str(a.layers), "--batch", str(a.batch),
           "--width", str(a.width)]
    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"framework": framework, "config": config, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| framework | config | peak (MiB) | x none | time (ms) | x none | predicted (MiB) | error |",
             "|---|---|---|---|---|---|---|---|"]
    base = {r["framework"]: r for r in rows if r.get("config") == "none" and "error" not in r}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['framework']} | {r['config']} | failed: {r['error']} | | | | | |")
            continue
        b = base.get(r["framework"])
        pred = r.get("predicted_bytes")
        err = f"{(pred / r['tracemalloc_bytes'] - 1) * 100:+.1f}% (tracemalloc)" if pred else ""
        lines.append(f"| {r['framework']} | {r['config']} | {r['peak_bytes'] / 2**20:.1f} | "
                     f"{r['peak_bytes'] / b['peak_bytes']:.2f} | {r['time_s'] * 1e3:.0f} | "
                     f"{r['time_s'] / b['time_s']:.2f} | {pred / 2**20 if pred else '':{'.1f' if pred else ''}} | {err} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
    """Time (relative to each framework's own `none`) against peak memory, one line per framework."""
    sys.path.insert(0, str(ROOT))
    from gtool.memory.svg import line_plot

    series = []
    for fw in ("gtool", "torch", "jax"):
        rs = [r for r in rows if r["framework"] == fw and "error" not in r]
        base = next((r for r in rs if r["config"] == "none"), None)
        if not base:
            continue
        pts = sorted((r["peak_bytes"], r["time_s"] / base["time_s"]) for r in rs)
        frontier, best = [], float("inf")  # the curve: the fastest plan at or under each peak
        for m, t in pts:
            if t < best:
                frontier.append((m, t))
                best = t
        series.append((f"{fw} ({len(rs)} plans)", [(float(m), t) for m, t in frontier]))
    svg = line_plot(series, "128-layer tanh MLP, batch 1024, width 64, float64: time vs peak memory",
                    "peak memory of one forward + backward", "time / the framework's own no-remat time",
                    y_bytes=False, x_bytes=True, points=True)
    Path(path).write_text(svg)


def timeline(a, path: str) -> None:
    """Live bytes over one run of the deep MLP under none, sqrt and cheap (gtool's predictions)."""
    import tempfile

    import gtool
    from gtool.memory.report import memory_report
    from gtool.memory.svg import timeline_svg

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "mlp.yaml"
        f.write_text(mlp_yaml(a.layers, a.batch, a.width))
        g = gtool.load(f)
    reports = [memory_report(g, remat=p) for p in ("none", "sqrt")]
    low, top = reports[1].peak_bytes, reports[0].peak_bytes
    reports.append(memory_report(g, remat=f"budget={(low + top) // 2}"))
    Path(path).write_text(timeline_svg(reports, f"{a.layers}-layer tanh MLP: live bytes over forward + backward"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--one", nargs=2, metavar=("FRAMEWORK", "CONFIG"), help=argparse.SUPPRESS)
    p.add_argument("--layers", type=int, default=128)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--peers", action="store_true", help="Measure torch and jax (run with the peers venv).")
    p.add_argument("--only", default="torch,jax", help="With --peers: which of torch,jax.")
    p.add_argument("--plot", metavar="OUT.svg", help="Draw the saved results and exit.")
    p.add_argument("--timeline", metavar="OUT.svg", help="Draw live bytes over a run per policy and exit.")
    a = p.parse_args()
    if a.timeline:
        timeline(a, a.timeline)
        return
    if a.one:
        fw, config = a.one
        fn = {"gtool": lambda: one_gtool(config, a), "torch": lambda: one_torch(int(config), a),
              "jax": lambda: one_jax(int(config), a)}[fw]
        print(json.dumps(fn()))
        return
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    if a.plot:
        plot(saved, a.plot)
        print(table(saved))
        return
    if a.peers:
        jobs = [("torch", str(k)) for k in (0, 2, 4, 8, 11, 16, 32, 64)] if "torch" in a.only else []
        jobs += [("jax", str(k)) for k in (0, -1, 4, 8, 11, 16, 32)] if "jax" in a.only else []
    else:
        jobs = [("gtool", c) for c in _gtool_configs(a)]
    rows = []
    for fw, config in jobs:
        r = _run_one(fw, config, a)
        print(json.dumps(r), file=sys.stderr)
        rows.append(r)
    done = {r["framework"] for r in rows}
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else []  # again: another run may have written
    saved = [r for r in saved if r["framework"] not in done] + rows
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
    print(table(saved))


if __name__ == "__main__":
    main()
