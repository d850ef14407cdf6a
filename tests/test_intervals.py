"""Every interval rule is sound: for inputs inside the input intervals, the op's value lies
inside the output interval the rule gives (lint's overflow and domain findings rest on it).

Rules are reached through the registry (`REGISTRY[op].interval`), called as lint calls them
(`gtool.lint.rule_interval`: the rule, its ends rounded outward to the result's dtype).
Per op with a rule:

- a property test: seeded random input intervals (finite, one-signed, 0-crossing, a single
  point, half- and fully infinite, endpoints near ±1e308, endpoints at ±0), points sampled
  inside each (the endpoints themselves included, ±inf where the interval reaches it, and
  -0.0 where it contains 0), the op's NumPy forward run on them, and every non-NaN result
  checked against the rule's interval. NaN results (inf - inf, 0 * inf, log of a negative)
  are left out: an interval bounds the numbers a value can take.
- fixed corner examples with the exact expected interval.

A rule added to an op without a case here fails `test_every_interval_rule_is_tested`.
Ops whose forward rounds (reductions, matmul, the softmax family) are allowed a relative
slack of 1e-12 (float64) / 1e-5 (float32): the rule computes its ends in another order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import gtool.intervals  # noqa: F401  (installs the interval rules on the registry's ops)
from gtool.intervals import Info, call_rule
from gtool.lint import rule_interval
from gtool.ops import REGISTRY

INF = math.inf

# op -> (inputs, attrs); an input is ("f", shape) drawn from an interval, ("i", shape, lo, hi)
# integers in [lo, hi], or ("b", shape) booleans
UNARY = ("neg", "exp", "log", "log1p", "expm1", "sqrt", "square", "abs", "sign", "sin", "cos", "tanh", "sigmoid",
         "relu", "softplus", "identity", "stop_gradient")
ACTIVATIONS = ("erf", "erfc", "gelu", "leaky_relu", "elu", "selu", "hard_sigmoid", "softsign", "reciprocal", "floor",
               "ceil", "round")
BINARY = ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "greater", "less", "equal")
CASES: dict[str, tuple[list, dict]] = {
    **{name: ([("f", (24,))], {}) for name in UNARY + ACTIVATIONS},
    **{name: ([("f", (24,)), ("f", (24,))], {}) for name in BINARY},
    "where": ([("b", (24,)), ("f", (24,)), ("f", (24,))], {}),
    "cast": ([("f", (24,))], {"dtype": "float32"}),
    "reshape": ([("f", (4, 6))], {"shape": [6, 4]}),
    "transpose": ([("f", (4, 6))], {}),
    "broadcast_to": ([("f", (1, 6))], {"shape": [4, 6]}),
    "sum_to": ([("f", (4, 6)), ("f", (6,))], {}),
    "size": ([("f", (4, 6))], {"axis": [1]}),
    "expand_dims": ([("f", (4, 6))], {"axis": [0]}),
    "squeeze": ([("f", (1, 6))], {"axis": [0]}),
    "concat": ([("f", (4, 6)), ("f", (2, 6))], {"axis": 0}),
    "slice": ([("f", (4, 6))], {"axis": 1, "start": 1, "stop": 4}),
    "matmul": ([("f", (3, 5)), ("f", (5, 2))], {}),
    "sum": ([("f", (4, 6))], {"axis": [1]}),
    "mean": ([("f", (4, 6))], {"axis": [1]}),
    "max": ([("f", (4, 6))], {"axis": [0]}),
    "min": ([("f", (4, 6))], {}),
    "logsumexp": ([("f", (4, 6))], {"axis": [1]}),
    "one_hot": ([("i", (5,), 0, 3)], {"depth": 4}),
    "take_along_axis": ([("f", (4, 6)), ("i", (4, 2), 0, 5)], {"axis": 1}),
    "trunc_div": ([("i", (24,), -50, 50), ("i", (24,), 1, 7)], {}),
    "softmax": ([("f", (4, 6))], {}),
    "log_softmax": ([("f", (4, 6))], {"axis": 0}),
    "cross_entropy": ([("f", (5, 4)), ("i", (5,), 0, 3)], {"reduction": "sum"}),
    "layer_norm": ([("f", (4, 6)), ("f", (6,)), ("f", (6,))], {}),
    "instance_norm": ([("f", (2, 3, 4)), ("f", (3,)), ("f", (3,))], {}),
    "batch_norm": ([("f", (4, 3, 2)), ("f", (3,)), ("f", (3,)), ("f", (3,)), ("f", (3,))], {}),
    "dropout": ([("f", (4, 6))], {"training": True, "ratio": 0.25, "seed": 3}),
    # convolution and pooling (sums of products: within the rounding slack)
    "conv": ([("f", (2, 2, 5, 4)), ("f", (3, 2, 3, 2)), ("f", (3,))], {"padding": 1, "stride": 2}),
    "conv_transpose": ([("f", (2, 3, 3, 2)), ("f", (3, 2, 2, 2)), ("f", (2,))], {"stride": 2, "padding": 1}),
    "conv_filter": ([("f", (2, 2, 5, 4)), ("f", (2, 3, 3, 3))], {"kernel": [3, 2], "padding": 1, "stride": 2}),
    "max_pool": ([("f", (2, 2, 5, 4))], {"kernel": 2, "stride": 1, "padding": 1}),
    "max_pool_pick": ([("f", (2, 2, 5, 4)), ("f", (2, 2, 5, 4))], {"kernel": 3, "stride": 2}),
    "max_pool_grad": ([("f", (2, 2, 5, 4)), ("f", (2, 2, 4, 3))], {"kernel": [2, 2], "stride": 1}),
    "max_pool_indices": ([("f", (2, 2, 5, 4))], {"kernel": 2}),
    "avg_pool": ([("f", (2, 2, 5, 4))], {"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": True}),
    "avg_pool_grad": ([("f", (2, 2, 3, 2)), ("f", (2, 2, 5, 4))], {"kernel": [3, 3], "stride": 2, "padding": 1}),
    "flatten": ([("f", (2, 3, 4))], {"axis": 2}),
    # gtool/ops/indexing.py, products.py
    "tile": ([("f", (4, 6))], {"reps": [2, 1]}),
    "pad": ([("f", (4, 6))], {"pads": [1, 0, 2, 3], "value": 2.5}),
    "cumsum": ([("f", (4, 6))], {"axis": 1, "exclusive": True}),
    "argmax": ([("f", (4, 6))], {"axis": 1}),
    "argmin": ([("f", (4, 6))], {"axis": 0, "keepdims": True}),
    "prod": ([("f", (4, 3))], {"axis": [1]}),
    "greater_equal": ([("f", (24,)), ("f", (24,))], {}),
    "less_equal": ([("f", (24,)), ("f", (24,))], {}),
}
ROUNDING = frozenset({"sum", "mean", "matmul", "logsumexp", "softmax", "log_softmax", "cross_entropy", "sum_to",
                      "conv", "conv_transpose", "conv_filter", "avg_pool", "avg_pool_grad", "max_pool_grad",
                      "layer_norm", "instance_norm", "batch_norm", "dropout", "cumsum", "prod"})

# Two known gaps, found by these tests (ops/intervals are helper h5's; reported to be fixed in
# the op records). The property test steps around exactly these inputs, and the two strict
# xfail tests at the end pin each gap, so a fix shows up as an XPASS to act on.
#  - div: a divisor interval ending at 0 holds -0.0 (relu(-0.0), -x at 0), and -1 / -0.0 = +inf.
#  - mean: the forward sums before dividing, so values near the dtype's largest overflow to inf.


def _rules() -> list[str]:
    return sorted(name for name, op in REGISTRY.items() if op.interval is not None and op.plugin is None)


def test_every_interval_rule_is_tested():
    missing = [name for name in _rules() if name not in CASES]
    assert missing == [], f"interval rules without a property case in tests/test_intervals.py: {missing}"


# drawing intervals and points ------------------------------------------------------------------------


def _draw_interval(rng: np.random.Generator, dtype) -> tuple[float, float]:
    """One of the interval kinds, with endpoints representable in `dtype`."""
    big = float(np.finfo(dtype).max)
    kind = rng.integers(9)

    def num() -> float:
        return float(rng.normal() * 10.0 ** rng.uniform(-4, 3))

    if kind == 0:  # finite, any signs
        a, b = sorted((num(), num()))
    elif kind == 1:  # positive
        a, b = sorted((abs(num()), abs(num())))
    elif kind == 2:  # negative
        a, b = sorted((-abs(num()), -abs(num())))
    elif kind == 3:  # a point
        a = b = num()
    elif kind == 4:  # half-infinite
        a, b = (num(), INF) if rng.integers(2) else (-INF, num())
    elif kind == 5:
        a, b = -INF, INF
    elif kind == 6:  # near the largest float
        a, b = sorted((big * rng.uniform(0.3, 1.0) * rng.choice([-1, 1]), big * rng.uniform(0.3, 1.0)))
    elif kind == 7:  # one end at 0
        a, b = (0.0, abs(num())) if rng.integers(2) else (-abs(num()), 0.0)
    else:  # tiny, around 0
        a, b = sorted((num() * 1e-300, num() * 1e-300)) if dtype == np.float64 else sorted((num() * 1e-40, num() * 1e-40))
    a, b = float(np.asarray(a, dtype)), float(np.asarray(b, dtype))
    return (a, b) if a <= b else (b, a)


def _points(rng: np.random.Generator, lo: float, hi: float, n: int, dtype) -> np.ndarray:
    """n values in [lo, hi]: both ends, -0.0 when 0 is inside, and random interior points."""
    big = float(np.finfo(dtype).max)
    flo, fhi = max(lo, -big), min(hi, big)
    picks = [lo, hi, flo, fhi]
    if lo <= 0 <= hi:
        picks += [0.0, -0.0]
    for _ in range(n):
        u = rng.uniform()
        if rng.integers(3) == 0:  # log-uniform towards the ends, so huge intervals are not all interior
            picks.append(flo + (fhi - flo) * u ** 8 if np.isfinite(fhi - flo) else (flo if u < 0.5 else fhi) * u ** 4)
        else:
            picks.append(flo * (1 - u) + fhi * u)
    pts = np.asarray(picks, dtype=dtype)
    pts = pts[(pts >= lo) & (pts <= hi)]
    return rng.choice(pts, size=n)


def _inputs(rng, spec: list, dtype):
    arrays, bounds = [], []
    for s in spec:
        if s[0] == "f":
            lo, hi = _draw_interval(rng, dtype)
            n = math.prod(s[1])
            arrays.append(_points(rng, lo, hi, n, dtype).reshape(s[1]))
            bounds.append((lo, hi))
        elif s[0] == "i":
            _, shape, lo, hi = s
            arrays.append(rng.integers(lo, hi + 1, size=shape))
            bounds.append((float(lo), float(hi)))
        else:
            arrays.append(rng.integers(2, size=s[1]).astype(bool))
            bounds.append((0.0, 1.0))
    return arrays, bounds


def _evaluate(name: str, arrays: list, attrs: dict):
    op = REGISTRY[name]
    with np.errstate(all="ignore"):
        return np.asarray(op.forward(*arrays, **op.prepare(attrs, {})), dtype=np.float64)


def _out_dtype(name: str, attrs: dict, dtype) -> str:
    return attrs.get("dtype", np.dtype(dtype).name) if name == "cast" else np.dtype(dtype).name


def _violations(name: str, arrays: list, bounds: list, attrs: dict, dtype) -> list:
    op = REGISTRY[name]
    info = Info(_out_dtype(name, attrs, dtype), tuple(tuple(a.shape) for a in arrays))
    lo, hi = rule_interval(op.interval, bounds, op.full_attrs(attrs), info)
    out = _evaluate(name, arrays, attrs)
    vals = out[~np.isnan(out)]
    slack = 0.0
    if name in ROUNDING:
        slack = 1e-12 if dtype == np.float64 else 1e-5
    below = vals < lo - slack * abs(lo) if np.isfinite(lo) else vals < lo
    above = vals > hi + slack * abs(hi) if np.isfinite(hi) else vals > hi
    bad = vals[below | above]
    return [] if bad.size == 0 else [(bounds, (lo, hi), float(bad[0]))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_interval_rule_contains_every_value(name, dtype):
    if name not in REGISTRY or REGISTRY[name].interval is None:
        pytest.fail(f"{name} has a case here but no interval rule")
    spec, attrs = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)) + (0 if dtype == np.float64 else 1))
    found = []
    for _ in range(150):
        arrays, bounds = _inputs(rng, spec, dtype)
        if name == "div":  # the known -0.0 gap (test_known_gap_div_by_negative_zero)
            arrays[1] = np.where(arrays[1] == 0, 0.0, arrays[1]).astype(dtype)
        found += _violations(name, arrays, bounds, attrs, dtype)
    assert found == [], f"{name}: {len(found)} violations, first: inputs in {found[0][0]}, rule says " \
                        f"{found[0][1]}, the op gave {found[0][2]!r}"


# fixed corners: (op, input intervals, attrs, input shapes, dtype, the exact interval) -------------------

CORNERS = [
    ("exp", [(-INF, 0.0)], {}, [(3,)], "float64", (0.0, 1.0)),
    ("exp", [(0.0, 710.0)], {}, [(3,)], "float64", (1.0, INF)),  # exp(710) overflows in float64
    ("exp", [(0.0, 89.0)], {}, [(3,)], "float32", (1.0, INF)),  # and exp(89) in float32
    ("exp", [(0.0, 88.0)], {}, [(3,)], "float32", (1.0, float(np.exp(np.float32(88.0))))),
    ("log", [(0.0, 1.0)], {}, [(3,)], "float64", (-INF, 0.0)),
    ("log", [(-2.0, -1.0)], {}, [(3,)], "float64", (-INF, INF)),  # NaN everywhere: unknown
    ("log1p", [(-1.0, 0.0)], {}, [(3,)], "float64", (-INF, 0.0)),
    ("sqrt", [(-4.0, 9.0)], {}, [(3,)], "float64", (0.0, 3.0)),
    ("square", [(-3.0, 2.0)], {}, [(3,)], "float64", (0.0, 9.0)),
    ("square", [(-3.0, -2.0)], {}, [(3,)], "float64", (4.0, 9.0)),
    ("abs", [(-INF, -1.0)], {}, [(3,)], "float64", (1.0, INF)),
    ("neg", [(-1.0, INF)], {}, [(3,)], "float64", (-INF, 1.0)),
    ("sign", [(-2.0, 0.0)], {}, [(3,)], "float64", (-1.0, 0.0)),
    ("relu", [(-INF, INF)], {}, [(3,)], "float64", (0.0, INF)),
    ("sigmoid", [(-INF, INF)], {}, [(3,)], "float64", (0.0, 1.0)),
    ("tanh", [(-1000.0, 1000.0)], {}, [(3,)], "float64", (-1.0, 1.0)),
    ("sin", [(-INF, INF)], {}, [(3,)], "float64", (-1.0, 1.0)),
    ("add", [(1.0, INF), (-INF, 2.0)], {}, [(3,), (3,)], "float64", (-INF, INF)),
    ("add", [(1.0, 2.0), (3.0, INF)], {}, [(3,), (3,)], "float64", (4.0, INF)),
    ("sub", [(1.0, 2.0), (3.0, 5.0)], {}, [(3,), (3,)], "float64", (-4.0, -1.0)),
    ("mul", [(-2.0, 3.0), (-5.0, 4.0)], {}, [(3,), (3,)], "float64", (-15.0, 12.0)),
    ("mul", [(0.0, 0.0), (-INF, INF)], {}, [(3,), (3,)], "float64", (0.0, 0.0)),  # 0 * inf counts as 0
    ("div", [(1.0, 2.0), (0.0, 4.0)], {}, [(3,), (3,)], "float64", (0.25, INF)),
    ("div", [(0.5, 2.0), (0.0, 4.0)], {}, [(3,), (3,)], "float64", (0.125, INF)),
    ("div", [(0.0, 2.0), (0.0, INF)], {}, [(3,), (3,)], "float64", (0.0, INF)),
    ("div", [(-2.0, -0.5), (0.0, 4.0)], {}, [(3,), (3,)], "float64", (-INF, 0.0)),
    ("div", [(1.0, 2.0), (-1.0, 1.0)], {}, [(3,), (3,)], "float64", (-INF, INF)),
    ("div", [(-6.0, 3.0), (2.0, 3.0)], {}, [(3,), (3,)], "float64", (-3.0, 1.5)),
    ("pow", [(-2.0, 3.0), (2.0, 2.0)], {}, [(3,), (3,)], "float64", (0.0, 9.0)),
    ("pow", [(-2.0, 3.0), (3.0, 3.0)], {}, [(3,), (3,)], "float64", (-8.0, 27.0)),
    ("pow", [(-2.0, 3.0), (0.5, 0.5)], {}, [(3,), (3,)], "float64", (-INF, INF)),
    ("pow", [(0.5, 2.0), (-1.0, 2.0)], {}, [(3,), (3,)], "float64", (0.25, 4.0)),
    ("maximum", [(-1.0, 2.0), (0.0, 1.0)], {}, [(3,), (3,)], "float64", (0.0, 2.0)),
    ("minimum", [(-1.0, 2.0), (0.0, 1.0)], {}, [(3,), (3,)], "float64", (-1.0, 1.0)),
    ("where", [(0.0, 1.0), (-1.0, 0.0), (5.0, 6.0)], {}, [(3,), (3,), (3,)], "float64", (-1.0, 6.0)),
    ("sum", [(-1.0, 2.0)], {"axis": [1]}, [(4, 6)], "float64", (-6.0, 12.0)),
    ("sum", [(1.0, 2.0)], {}, [(None, 6)], "float64", (1.0, INF)),  # an unknown dim: 1 to inf terms
    ("mean", [(-1.0, 2.0)], {}, [(4, 6)], "float64", (-1.0, 2.0)),
    ("logsumexp", [(0.0, 1.0)], {"axis": [1]}, [(4, 6)], "float64", (math.log(6), 1 + math.log(6))),
    ("softmax", [(0.0, 1.0)], {}, [(4, 6)], "float64", (1 / (1 + 5 * math.e), 1.0)),
    ("softmax", [(-INF, 1.0)], {}, [(4, 6)], "float64", (0.0, 1.0)),
    ("log_softmax", [(0.0, 1.0)], {}, [(4, 6)], "float64", (-1 - math.log(6), 0.0)),
    ("cross_entropy", [(0.0, 1.0), (0.0, 5.0)], {"reduction": "mean"}, [(4, 6), (4,)], "float64",
     (0.0, 1 + math.log(6))),
    ("cross_entropy", [(0.0, 1.0), (0.0, 5.0)], {"reduction": "sum"}, [(4, 6), (4,)], "float64",
     (0.0, 4 * (1 + math.log(6)))),
    ("matmul", [(-1.0, 2.0), (0.0, 3.0)], {}, [(3, 5), (5, 2)], "float64", (-15.0, 30.0)),
    ("concat", [(-1.0, 0.0), (3.0, 4.0)], {"axis": 0}, [(2,), (2,)], "float64", (-1.0, 4.0)),
    ("size", [(-INF, INF)], {"axis": [1]}, [(4, 6)], "float64", (6.0, 6.0)),
    ("greater", [(-INF, INF), (-INF, INF)], {}, [(3,), (3,)], "float64", (0.0, 1.0)),
    ("one_hot", [(0.0, 3.0)], {"depth": 4}, [(5,)], "float64", (0.0, 1.0)),
    # float32 results: ends rounded outward to float32, past its largest value to inf
    ("add", [(3e38, 3e38), (3e38, 3e38)], {}, [(3,), (3,)], "float32", (float(np.finfo(np.float32).max), INF)),
    ("cast", [(0.1, 0.1)], {"dtype": "float32"}, [(3,)], "float32",
     (float(np.nextafter(np.float32(0.1), np.float32(0))), float(np.float32(0.1)))),
]


@pytest.mark.parametrize(("name", "bounds", "attrs", "shapes", "dtype", "want"), CORNERS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CORNERS)])
def test_interval_corner(name, bounds, attrs, shapes, dtype, want):
    op = REGISTRY[name]
    got = rule_interval(op.interval, bounds, op.full_attrs(attrs), Info(dtype, tuple(shapes)))
    assert got[0] == pytest.approx(want[0], rel=1e-12) and got[1] == pytest.approx(want[1], rel=1e-12), got


def test_a_failing_rule_gives_unknown_not_an_error():
    """A plugin's rule that raises must not stop lint: the value is then unbounded."""
    def broken(bounds, attrs):
        raise ZeroDivisionError

    assert call_rule(broken, [(0.0, 1.0)], {}, Info()) == (-INF, INF)
    assert call_rule(lambda b, a: (2.0, 1.0), [(0.0, 1.0)], {}, Info()) == (1.0, 2.0)  # two-argument form, ends sorted
    assert call_rule(lambda b, a: (math.nan, 1.0), [(0.0, 1.0)], {}, Info()) == (-INF, 1.0)  # a NaN end: open
    assert call_rule(lambda b, a: (0.0, math.nan), [(0.0, 1.0)], {}, Info()) == (0.0, INF)


@pytest.mark.xfail(strict=True, reason="div rule: a divisor interval ending at 0 holds -0.0 (gap known, see above)")
def test_known_gap_div_by_negative_zero():
    assert _violations("div", [np.array([-1.0]), np.array([-0.0])], [(-1.0, -1.0), (0.0, 1.0)], {}, np.float64) == []


def test_mean_whose_sum_can_overflow_has_an_open_end():
    # six entries of 1.5e308: the sum overflows, so the mean is inf, outside [1e308, 1.7e308]
    big = np.full((1, 6), 1.5e308)
    assert _violations("mean", [big], [(1e308, 1.7e308)], {"axis": [1]}, np.float64) == []
    assert _violations("mean", [-big], [(-1.7e308, -1e308)], {"axis": [1]}, np.float64) == []
    assert _violations("mean", [(big / 1e270).astype(np.float32)], [(1e37, 3e38)], {"axis": [1]}, np.float32) == []
    # near miss: entries whose 6-fold sum stays finite keep the closed interval
    assert call_rule(REGISTRY["mean"].interval, [(1.0, 2e307)], {"axis": [1]}, Info("float64", ((1, 6),))) == (1.0, 2e307)
    assert call_rule(REGISTRY["mean"].interval, [(1.0, 4e307)], {"axis": [1]}, Info("float64", ((1, 6),))) == (1.0, INF)
