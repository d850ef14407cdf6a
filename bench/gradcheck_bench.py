"""Benchmark (not a test): grad-check cost, full vs fast mode, on graphs/mlp.yaml.

    python3 bench/gradcheck_bench.py [--batch 32] [--repeat 5] [--skip-full W1]

One row per target: elements, then loss evaluations and wall time in full mode (every element
perturbed: 2 evaluations each) and in fast mode (4 random directions), and the time ratio.
Fast-mode times are medians of --repeat runs; full mode runs once (it is the slow one).
BLAS is pinned to one thread before NumPy loads, so the figures do not depend on what else
the machine runs; each evaluation is one run of the compiled plan of the nodes below the target.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gtool  # noqa: E402
from gtool import report  # noqa: E402


def _ratio(r: float) -> str:
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5, help="fast-mode runs (median reported)")
    ap.add_argument("--skip-full", default="", metavar="A,B", help="targets not to run in full mode (too slow)")
    args = ap.parse_args()
    dims = {"batch": args.batch}
    graph = gtool.load(ROOT / "graphs" / "mlp.yaml", dims)
    skip = {s for s in args.skip_full.split(",") if s}
    targets = gtool.autodiff.default_wrt(graph)

    start = time.perf_counter()
    todo = [t for t in targets if t not in skip]
    full = {r.wrt: r for r in gtool.grad_check(graph, wrt=todo, mode="full", dims=dims)} if todo else {}
    full_wall = time.perf_counter() - start
    fast_runs, fast_walls = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        fast_runs.append({r.wrt: r for r in gtool.grad_check(graph, mode="fast", dims=dims)})
        fast_walls.append(time.perf_counter() - start)

    rows = []
    for t in targets:
        fast = fast_runs[0][t]
        fast_s = statistics.median(run[t].seconds for run in fast_runs)
        f = full.get(t)
        rows.append([t, fast.size, f.evaluations if f else "skipped", f"{f.seconds:.3f}" if f else "-",
                     fast.evaluations, f"{fast_s:.4f}", _ratio(f.seconds / fast_s) if f else "-",
                     "ok" if (f is None or f.passed) and fast.passed else "FAIL"])
    total_full = sum(r.evaluations for r in full.values())
    total_fast = sum(r.evaluations for r in fast_runs[0].values())
    rows.append(["all", sum(r[1] for r in rows), total_full, f"{full_wall:.3f}", total_fast,
                 f"{statistics.median(fast_walls):.4f}", _ratio(full_wall / statistics.median(fast_walls)), ""])
    print(f"grad-check on graphs/mlp.yaml, batch {args.batch}, float64, one BLAS thread "
          f"(fast: 4 directions, median of {args.repeat}; wall times include setup)")
    print(report.table(["target", "elements", "full evals", "full s", "fast evals", "fast s", "full/fast", "result"],
                       rows))


if __name__ == "__main__":
    main()
