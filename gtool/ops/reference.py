"""The pieces of an op record that say what the op *should* compute: high-precision references
and edge-value tables.

A reference is written from the math with mpmath, never with the NumPy function the op
registers: `reference(*inputs, **attrs)` takes NumPy object arrays of exact Python numbers
(floats keep their sign of zero, ints and bools stay ints and bools; the attrs are the full,
prepared attrs) and returns an object array (or one number) of mpmath values, which the
tests round into the dtype under test and compare in ULPs. mpmath is imported lazily: only
tests and bench/ulp_report.py call references (`pip install 'gtool[precision]'`).

An edge table lists `Edge`s: input arrays holding the values where kernels go wrong (±0,
subnormals, ±1e308, ±inf, NaN, kinks, logits of ±1000, int and bool inputs, ...). The tests
run each built-in op's table on every backend, in float64 and float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

INF, NAN = math.inf, math.nan
DIGITS = 60  # significant digits of the references: far beyond float64's 17

# float edge values for elementwise ops (float32 runs cast them: 5e-324 -> 0, 1e308 -> inf)
FLOAT_EDGES = (0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, 1e-45, 1e-40, 1e-10, -1e-10, 0.5,
               -0.5, 1.0, -1.0, 3.0, -3.0, 20.0, 88.5, -103.0, 100.0, -100.0, 710.0, -746.0, 1000.0, -1000.0,
               1e15, -1e15, 1e308, -1e308, INF, -INF, NAN)
# pairs for binary ops: every value against every other
PAIR_EDGES = (0.0, -0.0, 5e-324, 1e-300, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, 1e15, 1e308, -1e308, INF, -INF, NAN)
INT_EDGES = np.array([0, 1, -1, 7, -7], np.int64)
BOOL_EDGES = np.array([False, True])


@dataclass(frozen=True)
class Edge:
    """One row of an edge table: the op's inputs (float inputs in float64; a float32 run casts
    them) and attrs. `float32: False` keeps the case out of float32 runs."""

    inputs: tuple[np.ndarray, ...]
    attrs: dict = field(default_factory=dict)
    float32: bool = True
    note: str = ""


def mp():
    """mpmath at DIGITS significant digits or more (lazily imported; a clear error without
    it): a caller inside `mpmath.workdps(160)` (the rewrite verifier) keeps its 160."""
    try:
        import mpmath
    except ImportError:  # pragma: no cover - the dev extra installs it
        raise ImportError("op references need mpmath: pip install 'gtool[precision]'") from None
    mpmath.mp.dps = max(mpmath.mp.dps, DIGITS)
    return mpmath


def exact(x) -> Any:
    """A NumPy number as the exact Python number (float32 -> the same value as a float)."""
    if isinstance(x, np.bool_ | bool):
        return bool(x)
    if isinstance(x, np.integer | int):
        return int(x)
    return float(x)


def to_objects(x) -> np.ndarray:
    """An array as an object array of exact Python numbers."""
    a = np.asarray(x)
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(*a.shape):
        out[idx] = exact(a[idx])
    return out


def mpf(x):
    """An exact Python number as an mpf (mpmath has no -0.0: a signed zero becomes 0)."""
    return mp().mpf(float(x))


def elementwise_ref(fn: Callable) -> Callable:
    """A reference from a scalar rule `fn(m, *xs)` (m: mpmath; xs: exact Python numbers; may
    return an mpf, a Python float for IEEE special cases, or a complex for NaN), broadcast."""

    def ref(*inputs, **attrs):
        m = mp()
        arrays = np.broadcast_arrays(*[np.asarray(i, dtype=object) for i in inputs])
        out = np.empty(arrays[0].shape if arrays else (), dtype=object)
        for idx in np.ndindex(*out.shape):
            out[idx] = fn(m, *[a[idx] for a in arrays], **attrs)
        return out

    ref.scalar = fn
    return ref


def is_nan(x) -> bool:
    return not isinstance(x, int) and x != x  # floats and mpf (ints, bools: never NaN)


def nan_in(*xs) -> bool:
    return any(is_nan(x) for x in xs)


def unary_edges(*extra: float, values=FLOAT_EDGES, ints: bool = True, bools: bool = True) -> tuple[Edge, ...]:
    """The standard float edges plus op-specific ones (kinks), and int and bool inputs."""
    out = [Edge((np.array(values + tuple(extra), np.float64),))]
    if ints:
        out.append(Edge((INT_EDGES.copy(),), note="int"))
    if bools:
        out.append(Edge((BOOL_EDGES.copy(),), note="bool"))
    return tuple(out)


def binary_edges(*extra_pairs: tuple[float, float], values=PAIR_EDGES, int_y=None) -> tuple[Edge, ...]:
    """Every pair of the pair edges (a 16 x 16 grid), op-specific pairs, and int inputs."""
    a, b = np.meshgrid(np.array(values), np.array(values), indexing="ij")
    xs, ys = [a.ravel()], [b.ravel()]
    if extra_pairs:
        xs.append(np.array([p[0] for p in extra_pairs]))
        ys.append(np.array([p[1] for p in extra_pairs]))
    return (Edge((np.concatenate(xs), np.concatenate(ys))),
            Edge((INT_EDGES.copy(), INT_EDGES[::-1].copy() if int_y is None else np.asarray(int_y)), note="int"))


def rows_edges() -> tuple[np.ndarray, ...]:
    """Rows of logits for the softmax family: ±1000, 1e15, ties, ±inf, NaN, tiny spreads."""
    return (
        np.array([[1000.0, -1000.0, 0.0], [1e15, 1e15, 1e15 - 0.125], [1e8, 1e8 + 1, -3.0],
                  [300.0, 300.5, 299.25], [-INF, -INF, -INF], [-INF, 1.0, 2.0], [2.0, 2.0, 2.0],
                  [1e-300, 5e-324, -0.0], [-1000.0, -1000.0, -1001.0], [40.0, -40.0, 0.0]]),
        np.array([[INF, 1.0, 2.0], [NAN, 1.0, 2.0], [1e308, 1e308, 1.0], [-1e308, 1e308, 0.0]]),
    )


def rows_ref(row_fn: Callable, *, default_axis=None, keep_rows: bool = False) -> Callable:
    """A reference for an op over axes (reductions; softmax with keep_rows): the axes are
    moved last and flattened, `row_fn(m, list of exact numbers)` is applied per row (giving
    one value, or a list for keep_rows), and the shape is put back."""

    def ref(x, axis=default_axis, keepdims=False, **attrs):
        m = mp()
        x = np.asarray(x, dtype=object)
        rank = x.ndim
        axes = list(range(rank)) if axis is None else sorted({a % rank for a in ([axis] if isinstance(axis, int) else axis)})
        kept = [k for k in range(rank) if k not in axes]
        moved = np.transpose(x, kept + axes)
        lead = [x.shape[k] for k in kept]
        rows = moved.reshape((*lead, math.prod(x.shape[k] for k in axes))) if rank else moved.reshape(1)  # no -1: 0 rows
        out = np.empty((*lead, rows.shape[-1]) if keep_rows else tuple(lead), dtype=object)
        for idx in np.ndindex(*lead):
            r = row_fn(m, list(rows[idx]), **attrs)
            if keep_rows:
                out[idx] = np.array(r, dtype=object)
                continue
            out[idx] = r
        if keep_rows:
            inv = np.argsort(kept + axes)
            return np.transpose(out.reshape([x.shape[k] for k in kept + axes]), inv)
        if keepdims:
            out = out.reshape([1 if k in axes else d for k, d in enumerate(x.shape)])
        return out

    return ref


def mp_lse(m, row) -> Any:
    """log(sum(exp(row))) exactly (NaN in: NaN; +inf in: inf; empty or all -inf: -inf)."""
    if any(is_nan(v) for v in row):
        return NAN
    if any(v == INF for v in row):
        return INF
    parts = mp_lse_parts(m, row)
    return -INF if parts is None else parts[0] + parts[1]


def mp_lse_parts(m, row):
    """(top, rest) with logsumexp = top + rest, for rows of finite values and -inf (None if
    all are -inf). Kept apart because top + rest would round at 1e308 even with 60 digits."""
    finite = [m.mpf(v) for v in row if v != -INF]
    if not finite:
        return None
    top = max(finite)
    return top, m.log(m.fsum(m.exp(v - top) for v in finite))


def exact_sum(m, values) -> Any:
    """The exact sum (ints stay ints; NaN, or +inf with -inf, is NaN; an infinity wins)."""
    values = list(values)
    if all(isinstance(v, int) for v in values):
        return sum(int(v) for v in values)
    if any(is_nan(v) for v in values) or (any(v == INF for v in values) and any(v == -INF for v in values)):
        return NAN
    for big in (INF, -INF):
        if any(v == big for v in values):
            return big
    return m.fsum(m.mpf(v) for v in values)


def refill(x, shape) -> np.ndarray:
    """x's elements in C order laid out in `shape` (reshape, expand_dims, squeeze), by hand."""
    x = np.asarray(x, dtype=object)
    flat = [x[i] for i in np.ndindex(*x.shape)]
    out = np.empty(tuple(shape), dtype=object)
    for k, idx in enumerate(np.ndindex(*out.shape)):
        out[idx] = flat[k]
    return out
