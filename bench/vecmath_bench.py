"""The numba backend's vector math (gtool/backends/vecmath.py) against NumPy: ns per element in
a loop as the generated code runs it, and the ULP distance from NumPy (libm here).

    .venv/bin/python bench/vecmath_bench.py [--n 1048576] [--reps 15]

Prints one row per (function, argument range): min time of `reps` runs, NumPy's on the same
array, and the largest and the count of nonzero ULP differences (`*`: in a loop that stays
scalar, where the generated code uses it). Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from numba import njit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's gtool

from gtool.backends.vecmath import sexp, vcos, vexp, vsin, vtanh  # noqa: E402


def _loop(fn):
    @njit(error_model="numpy")
    def run(x, out):
        for i in range(x.size):
            out[i] = fn(x[i])

    return run


def _scalar_loop(fn):
    """fn in a loop LLVM keeps scalar (an in-order sum, as in the generated row loops): where
    the generated code calls `sexp`. Its branch around libm only pays off there."""

    @njit(error_model="numpy")
    def run(x, out):
        acc = 0.0
        for i in range(x.size):
            y = fn(x[i])
            acc += y
            out[i] = y
        return acc

    return run


def ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    def key(v):
        i = v.view(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFFFFFFFFFF), i)

    d = np.abs(key(a) - key(b)).astype(np.float64)
    return np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, d)


def best(fn, reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1 << 20)
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    n = a.n
    rows = [
        ("vexp", vexp, np.exp, "N(0,1)", rng.standard_normal(n)),
        ("vexp", vexp, np.exp, "-x^2", -rng.standard_normal(n) ** 2),
        ("vexp", vexp, np.exp, "U(-800,-746) (zero)", rng.uniform(-800, -746, n)),
        ("sexp*", sexp, np.exp, "U(-800,-746) (zero)", rng.uniform(-800, -746, n)),
        ("sexp*", sexp, np.exp, "N(0,1)", rng.standard_normal(n)),
        ("vtanh", vtanh, np.tanh, "U(-20,20)", rng.uniform(-20, 20, n)),
        ("vsin", vsin, np.sin, "U(-10,10)", rng.uniform(-10, 10, n)),
        ("vsin", vsin, np.sin, "U(-1.6e6,1.6e6)", rng.uniform(-1.6e6, 1.6e6, n)),
        ("vcos", vcos, np.cos, "U(-10,10)", rng.uniform(-10, 10, n)),
    ]
    print(f"{'function':8} {'arguments':22} {'ns/elem':>8} {'NumPy':>8} {'max ulp':>8} {'ulp>0':>8}")
    for name, fn, ref, what, x in rows:
        out = np.empty_like(x)
        loop = (_scalar_loop if name.endswith("*") else _loop)(fn)
        t = best(lambda: loop(x, out), a.reps)  # noqa: B023 - used at once
        with np.errstate(all="ignore"):
            tr = best(lambda: ref(x), a.reps)  # noqa: B023
            d = ulps(out, ref(x))
        print(f"{name:8} {what:22} {1e9 * t / n:8.2f} {1e9 * tr / n:8.2f} {d.max():8.0f} {int((d > 0).sum()):8d}")


if __name__ == "__main__":
    main()
