"""Interval arithmetic for lint: bounds on every value, from declared `range`s and constants.

An interval is a pair (lo, hi) of floats (either may be infinite). The rules are registered
in one place here, as `REGISTRY[op].interval` of each built-in op (an op file or a plugin
that sets its own rule keeps it). A rule is called as `rule(bounds, attrs, info)`:
`bounds` are the input intervals, `attrs` the op's full attrs, `info` an `Info` with the
dtype of the result and the input shapes (ints, or None where a dim is symbolic), which
reductions need to count their elements. A rule of a plugin may take only (bounds, attrs).

Endpoints are computed with the op's own NumPy forward at the value's dtype, so the
bounds are those of floating point: exp(800) is inf in float64 and exp(90) in float32,
exp(-800) is 0. That is what lets lint tell overflow, log(0) and division by 0 apart from
the real-number picture.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .ops.registry import REGISTRY, get_op

INF = math.inf
Interval = tuple[float, float]
UNKNOWN: Interval = (-INF, INF)


@dataclass(frozen=True)
class Info:
    """What some rules need besides the bounds: the result dtype and the input shapes."""

    dtype: str = "float64"
    shapes: tuple = ()

    def count(self, k: int = 0, axes=None) -> tuple[float, float]:
        """(fewest, most) elements a reduction of input k over `axes` sums (None: all)."""
        shape = self.shapes[k] if k < len(self.shapes) else None
        if shape is None:
            return 1.0, INF
        rank = len(shape)
        if axes is None:
            picked = list(range(rank))
        else:
            picked = [a % rank for a in ([axes] if isinstance(axes, int) else axes)] if rank else []
        dims = [shape[a] for a in picked]
        if any(d is None for d in dims):
            return 1.0, INF
        n = float(math.prod(dims))
        return n, n


def _clean(lo: float, hi: float) -> Interval:
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
        fwd = get_op(name).forward
        lo, hi = bounds[0]
        return _clean(_apply(fwd, lo, info.dtype), _apply(fwd, hi, info.dtype))

    return rule


def add(bounds, attrs, info):
    (a, b), (c, d) = bounds
    with np.errstate(invalid="ignore"):
        return _clean(a + c if not (math.isinf(a) and math.isinf(c) and a != c) else -INF,
                      b + d if not (math.isinf(b) and math.isinf(d) and b != d) else INF)


def sub(bounds, attrs, info):
    (c, d) = bounds[1]
    return add([bounds[0], (-d, -c)], attrs, info)


def mul(bounds, attrs, info):
    (a, b), (c, d) = bounds
    ps = [_mul(a, c), _mul(a, d), _mul(b, c), _mul(b, d)]
    return _clean(min(ps), max(ps))


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
        return _clean(_apply(fn, max(lo, floor), info.dtype), _apply(fn, hi, info.dtype))

    return rule


def even(bounds, attrs, info, fn=np.square):
    lo, hi = bounds[0]
    if lo >= 0:
        return _clean(_apply(fn, lo, info.dtype), _apply(fn, hi, info.dtype))
    if hi <= 0:
        return _clean(_apply(fn, hi, info.dtype), _apply(fn, lo, info.dtype))
    return 0.0, max(_apply(fn, lo, info.dtype), _apply(fn, hi, info.dtype))


def power(bounds, attrs, info):
    (a, b), (c, d) = bounds
    if a > 0:
        ps = [_apply(lambda x, y=y: np.power(x, np.asarray(y, x.dtype)), x, info.dtype) for x in (a, b) for y in (c, d)]
        return _clean(min(ps), max(ps))
    if c == d and float(c).is_integer() and c >= 0:
        if int(c) % 2 == 0:
            return even([(a, b)], attrs, info, fn=lambda x: np.power(x, np.asarray(c, x.dtype)))
        return _clean(_apply(lambda x: np.power(x, np.asarray(c, x.dtype)), a, info.dtype),
                      _apply(lambda x: np.power(x, np.asarray(c, x.dtype)), b, info.dtype))
    return UNKNOWN


def pairwise(fn):
    def rule(bounds, attrs, info):
        (a, b), (c, d) = bounds
        return _clean(fn(a, c), fn(b, d))

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
    return _clean(min(los), max(his))


def logsumexp(bounds, attrs, info):
    lo, hi = bounds[0]
    nmin, nmax = info.count(0, attrs.get("axis"))
    return _clean(lo + math.log(nmin), hi + math.log(nmax) if nmax < INF else INF)


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
    return _clean(lo - hi - (math.log(nmax) if nmax < INF else INF), 0.0)


def cross_entropy(bounds, attrs, info):
    lo, hi = bounds[0]
    _, n_cls = info.count(0, -1)
    per_row = (0.0, hi - lo + (math.log(n_cls) if n_cls < INF else INF))
    if attrs.get("reduction") == "sum":
        shape = info.shapes[1] if len(info.shapes) > 1 else None
        rows = (1.0, INF) if shape is None or any(d is None for d in shape) else (float(math.prod(shape)),) * 2
        return total([per_row], {}, info, n=rows)
    return _clean(*per_row)


def matmul(bounds, attrs, info):
    prod = mul(bounds, attrs, info)
    shape = info.shapes[0] if info.shapes else None
    k = (1.0, INF) if not shape or shape[-1] is None else (float(shape[-1]),) * 2
    return total([prod], {}, info, n=k)


def size(bounds, attrs, info):
    n = info.count(0, attrs.get("axis"))
    return n


RULES: dict[str, Callable] = {
    "neg": neg, "add": add, "sub": sub, "mul": mul, "div": div, "pow": power,
    "maximum": pairwise(max), "minimum": pairwise(min),
    "log": log_like(np.log, 0.0), "log1p": log_like(np.log1p, -1.0), "sqrt": log_like(np.sqrt, 0.0),
    "square": even, "abs": lambda b, a, i: even(b, a, i, fn=np.abs), "sign": sign,
    "sin": lambda b, a, i: (-1.0, 1.0), "cos": lambda b, a, i: (-1.0, 1.0),
    "identity": same, "stop_gradient": same, "cast": same,
    "greater": unit, "less": unit, "equal": unit, "one_hot": unit,
    "where": lambda b, a, i: union(b[1:], a, i),
    "sum": total, "mean": same, "max": same, "min": same, "logsumexp": logsumexp,
    "softmax": softmax, "log_softmax": log_softmax, "cross_entropy": cross_entropy,
    "reshape": same, "transpose": same, "broadcast_to": same, "expand_dims": same, "squeeze": same,
    "slice": same, "take_along_axis": same, "concat": union, "sum_to": lambda b, a, i: total(b[:1], {}, i, n=(1.0, INF)),
    "size": size, "matmul": matmul,
}
for _name in ("exp", "expm1", "tanh", "sigmoid", "relu", "softplus"):
    RULES[_name] = increasing(_name)


def register_intervals() -> None:
    """Set each built-in op's interval rule (an op that already has one keeps it)."""
    for name, rule in RULES.items():
        op = REGISTRY.get(name)
        if op is not None and op.interval is None:
            op.interval = rule


def call_rule(rule: Callable, bounds: list[Interval], attrs: dict, info: Info) -> Interval:
    """Run an op's interval rule (two- or three-argument form); unknown on any failure."""
    try:
        takes_info = len(inspect.signature(rule).parameters) >= 3
    except (TypeError, ValueError):
        takes_info = True
    try:
        out = rule(bounds, attrs, info) if takes_info else rule(bounds, attrs)
        return _clean(float(out[0]), float(out[1]))
    except Exception:  # a plugin's rule failing must not stop lint: the value is then unbounded
        return UNKNOWN


register_intervals()
