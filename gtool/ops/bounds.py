"""Interval rules: the shapes of rule that op records use for `interval` (lint's bounds).

A rule is called as `rule(bounds, attrs, info)`: `bounds` the input intervals (lo, hi) (either
may be infinite), `attrs` the op's full attrs, `info` a `gtool.intervals.Info` with the dtype
of the result and the input shapes, which reductions need to count their elements. Endpoints
are computed with the op's own NumPy forward at the value's dtype, so the bounds are those of
floating point: exp(800) is inf in float64 and exp(90) in float32, exp(-800) is 0. That is
what lets lint tell overflow, log(0) and division by 0 apart from the real-number picture.
Each op's record names its rule (next to its forward), so adding an op touches one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

INF = math.inf
Interval = tuple[float, float]
UNKNOWN: Interval = (-INF, INF)


def clean(lo: float, hi: float) -> Interval:
    lo = -INF if math.isnan(lo) else float(lo)
    hi = INF if math.isnan(hi) else float(hi)
    return (lo, hi) if lo <= hi else (hi, lo)


def _apply(fn: Callable, x: float, dtype: str) -> float:
    with np.errstate(all="ignore"):
        return float(np.asarray(fn(np.asarray(x, dtype=dtype if dtype.startswith("float") else "float64"))))


def _mul(a: float, b: float) -> float:
    return 0.0 if a == 0 or b == 0 else a * b  # 0 * inf is 0 for bounds


# shapes of rules --------------------------------------------------------------------------------


def increasing(name: str):
    """A monotone increasing elementwise op: the forward at the endpoints."""

    def rule(bounds, attrs, info):
        from .registry import get_op

        fwd = get_op(name).forward
        lo, hi = bounds[0]
        return clean(_apply(fwd, lo, info.dtype), _apply(fwd, hi, info.dtype))

    return rule


def add(bounds, attrs, info):
    (a, b), (c, d) = bounds
    with np.errstate(invalid="ignore"):
        return clean(a + c if not (math.isinf(a) and math.isinf(c) and a != c) else -INF,
                      b + d if not (math.isinf(b) and math.isinf(d) and b != d) else INF)


def sub(bounds, attrs, info):
    (c, d) = bounds[1]
    return add([bounds[0], (-d, -c)], attrs, info)


def mul(bounds, attrs, info):
    (a, b), (c, d) = bounds
    ps = [_mul(a, c), _mul(a, d), _mul(b, c), _mul(b, d)]
    return clean(min(ps), max(ps))


def div(bounds, attrs, info):
    (a, b), (c, d) = bounds
    if c <= 0 <= d:
        if a >= 0 and c >= 0:
            return (0.0 if d == INF else a / d if d > 0 else 0.0), INF
        if b <= 0 and c >= 0:
            return -INF, 0.0
        return UNKNOWN
    with np.errstate(all="ignore"):  # the divisor keeps one sign: the extremes are at the corners
        qs = [float(np.divide(x, y)) for x in (a, b) for y in (c, d)]
    if any(math.isnan(q) for q in qs):  # inf / inf
        return UNKNOWN
    return min(qs), max(qs)


def neg(bounds, attrs, info):
    lo, hi = bounds[0]
    return -hi, -lo


def log_like(fn, floor):
    """log / log1p / sqrt: increasing where defined; inputs below the domain give NaN."""

    def rule(bounds, attrs, info):
        lo, hi = bounds[0]
        if hi < floor:
            return UNKNOWN  # NaN everywhere
        return clean(_apply(fn, max(lo, floor), info.dtype), _apply(fn, hi, info.dtype))

    return rule


def even(bounds, attrs, info, fn=np.square):
    lo, hi = bounds[0]
    if lo >= 0:
        return clean(_apply(fn, lo, info.dtype), _apply(fn, hi, info.dtype))
    if hi <= 0:
        return clean(_apply(fn, hi, info.dtype), _apply(fn, lo, info.dtype))
    return 0.0, max(_apply(fn, lo, info.dtype), _apply(fn, hi, info.dtype))


def power(bounds, attrs, info):
    (a, b), (c, d) = bounds
    if a > 0:
        ps = [_apply(lambda x, y=y: np.power(x, np.asarray(y, x.dtype)), x, info.dtype) for x in (a, b) for y in (c, d)]
        return clean(min(ps), max(ps))
    if c == d and float(c).is_integer() and c >= 0:
        if int(c) % 2 == 0:
            return even([(a, b)], attrs, info, fn=lambda x: np.power(x, np.asarray(c, x.dtype)))
        return clean(_apply(lambda x: np.power(x, np.asarray(c, x.dtype)), a, info.dtype),
                      _apply(lambda x: np.power(x, np.asarray(c, x.dtype)), b, info.dtype))
    return UNKNOWN


def pairwise(fn):
    def rule(bounds, attrs, info):
        (a, b), (c, d) = bounds
        return clean(fn(a, c), fn(b, d))

    return rule


def same(bounds, attrs, info):
    return bounds[0]


def union(bounds, attrs, info):
    return min(b[0] for b in bounds), max(b[1] for b in bounds)


def unit(bounds, attrs, info):
    return 0.0, 1.0


def sign(bounds, attrs, info):
    lo, hi = bounds[0]
    return float(np.sign(lo)), float(np.sign(hi))


def total(bounds, attrs, info, n=None):
    """sum: n elements, n between the fewest and the most the shapes allow."""
    lo, hi = bounds[0]
    nmin, nmax = n or info.count(0, attrs.get("axis"))
    los = [_mul(lo, nmin), _mul(lo, nmax)]
    his = [_mul(hi, nmin), _mul(hi, nmax)]
    return clean(min(los), max(his))


# the most elements an array can hold (8 bytes each, 2**63 bytes): the count an unknown dim is
# assumed not to exceed when asking whether a sum can overflow
_MOST_ELEMENTS = 2.0 ** 60


def mean(bounds, attrs, info):
    """mean: within its inputs' bounds, except that the sum it divides may overflow first (n
    entries near the dtype's largest value give inf, not their mean): an end whose n-fold sum
    can pass the largest value is open."""
    lo, hi = bounds[0]
    n = min(info.count(0, attrs.get("axis"))[1], _MOST_ELEMENTS)
    dt = info.dtype if info.dtype.startswith("float") else "float64"
    big = float(np.finfo(dt).max)
    return (-INF if lo < 0 and n * lo < -big else lo), (INF if hi > 0 and n * hi > big else hi)


def logsumexp(bounds, attrs, info):
    lo, hi = bounds[0]
    nmin, nmax = info.count(0, attrs.get("axis"))
    return clean(lo + math.log(nmin), hi + math.log(nmax) if nmax < INF else INF)


def softmax(bounds, attrs, info):
    lo, hi = bounds[0]
    _, nmax = info.count(0, attrs.get("axis", -1))
    if math.isinf(lo) or math.isinf(hi) or nmax == INF:
        return 0.0, 1.0
    with np.errstate(all="ignore"):
        low = float(1 / (1 + (nmax - 1) * np.exp(np.asarray(hi - lo, info.dtype))))
    return low, 1.0


def log_softmax(bounds, attrs, info):
    lo, hi = bounds[0]
    _, nmax = info.count(0, attrs.get("axis", -1))
    return clean(lo - hi - (math.log(nmax) if nmax < INF else INF), 0.0)


def cross_entropy(bounds, attrs, info):
    lo, hi = bounds[0]
    _, n_cls = info.count(0, -1)
    per_row = (0.0, hi - lo + (math.log(n_cls) if n_cls < INF else INF))
    if attrs.get("reduction") == "sum":
        shape = info.shapes[1] if len(info.shapes) > 1 else None
        rows = (1.0, INF) if shape is None or any(d is None for d in shape) else (float(math.prod(shape)),) * 2
        return total([per_row], {}, info, n=rows)
    return clean(*per_row)


def matmul(bounds, attrs, info):
    prod = mul(bounds, attrs, info)
    shape = info.shapes[0] if info.shapes else None
    k = (1.0, INF) if not shape or shape[-1] is None else (float(shape[-1]),) * 2
    return total([prod], {}, info, n=k)


def size(bounds, attrs, info):
    n = info.count(0, attrs.get("axis"))
    return n


def cos_sin(bounds, attrs, info):
    return -1.0, 1.0


def where(bounds, attrs, info):
    return union(bounds[1:], attrs, info)


def sum_to(bounds, attrs, info):
    return total(bounds[:1], {}, info, n=(1.0, INF))


def absolute(bounds, attrs, info):
    return even(bounds, attrs, info, fn=np.abs)
