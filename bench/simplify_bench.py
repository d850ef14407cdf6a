"""Time of `simplify_backward` (the gradient graph's simplification, rewrite/backward.py) on
big graphs (issue 15: the numba warm start of the peers' 2,000-op chain must fit in 1 s).

    .venv/bin/python bench/simplify_bench.py [--repeat 9] [--only chain2000]
    GTOOL_SRC=/path/to/old/checkout .venv/bin/python bench/simplify_bench.py   # another gtool

Each workload's gradient graph is built once; simplify_backward then runs `repeat` times on
it (a fresh call each time: the api's cache is bypassed). Shown: the median and the minimum
of time.perf_counter, the node counts before and after, and the result's fingerprint (what
tests/test_simplify_same.py pins, so a faster engine is seen to give the same graphs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, os.environ.get("GTOOL_SRC") or str(ROOT))

import simplify_cases as sc  # noqa: E402


def workloads() -> dict:
    """name -> a function giving the forward graph."""
    both = {**sc.big(), **sc.bundled()}
    return {k: both[k] for k in ("chain2000", "signs300", "mlp128", "transformer_block", "cnn_digits")}


def main() -> None:
    from gtool import api
    from gtool.rewrite.backward import simplify_backward

    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--only", default=None)
    args = p.parse_args()
    print(f"gtool from {Path(api.__file__).parent}")
    for name, make in workloads().items():
        if args.only and args.only != name:
            continue
        gg = api.gradient(make()).graph
        times, out = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = simplify_backward(gg)
            times.append(time.perf_counter() - t0)
        print(f"{name:18s} nodes {len(gg.nodes):6d} -> {len(out.nodes):6d}  median {statistics.median(times):8.4f} s"
              f"  min {min(times):8.4f} s  fingerprint {sc.fingerprint(out)}", flush=True)


if __name__ == "__main__":
    main()
