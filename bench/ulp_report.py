"""Worst ULP distance of the numba backend from the NumPy backend, per op: values, VJPs and
JVPs, float64 and float32, over every op's edge table and random inputs (the cases of
tests/edge_graph.py). Prints a markdown table; not a test (CI runs a subset:
tests/test_backend_ulps.py).

    .venv/bin/python bench/ulp_report.py            # about 4 minutes of CPU (numba compiles)
    .venv/bin/python bench/ulp_report.py --dtype float64

Derivative columns give the worst ULPs and, in brackets where it matters, the worst absolute
error: rules written with the output (tanh' = 1 - y^2) differ by a last-ulp of the forward
cancelled down to a tiny result, millions of ULPs of that result but 1e-16 absolutely.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's gtool, not an installed one
sys.path.insert(0, str(ROOT / "tests"))

from backend_ulps import compare  # noqa: E402


def _cell(row: dict, kind: str) -> str:
    if kind not in row:
        return "-"
    text = f"{row[kind]:.0f}"
    if kind + "_abs" in row and row[kind] > 16:
        text += f" ({row[kind + '_abs']:.1e})"
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=["float64", "float32", "both"], default="both")
    ap.add_argument("--backend", default="numba")
    args = ap.parse_args(argv)
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    folder = tempfile.mkdtemp(prefix="gtool-ulp-report-")
    results = {dt: compare(args.backend, np.dtype(dt).type, folder) for dt in dtypes}
    ops = sorted(set().union(*[set(r) for r in results.values()]))
    head = ["op"] + [f"{k} {dt[-2:]}" for dt in dtypes for k in ("value", "vjp", "jvp")]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for op in ops:
        cells = [op]
        for dt in dtypes:
            row = results[dt].get(op, {})
            cells += [_cell(row, "value"), _cell(row, "vjp"), _cell(row, "jvp")]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
