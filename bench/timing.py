"""Timing helpers shared by the benchmarks: medians of time.perf_counter, tracemalloc peaks."""

from __future__ import annotations

import time
import tracemalloc


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def time_median(fn, repeat: int, clock=time.perf_counter) -> float:
    """Median wall time of `fn()` over `repeat` calls, after one warm-up call (plan, caches);
    `clock=time.process_time`: this process's CPU time instead (steadier on a shared machine)."""
    fn()
    samples = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return median(samples)


def peak_bytes(fn) -> int:
    """tracemalloc peak of one call of `fn()` (after a warm-up call)."""
    fn()
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak
