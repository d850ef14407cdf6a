"""prod (ONNX ReduceProd) over axes, with a gradient that is exact where the input has zeros,
and the comparisons greater_equal and less_equal.

d prod / d x_i is the product of the *other* entries. prod / x_i gives NaN at a zero (0 / 0)
and loses the gradient of the zero itself, so the VJP counts the zeros z of each reduced set
instead and uses p, the product of its nonzero entries: the weight of x_i is p / x_i when
z = 0, p at the one zero when z = 1 (every other weight is 0 there), and 0 when z >= 2.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import TensorType
from . import bounds
from .elementwise import _broadcast_infer
from .reduce import AXIS_ATTRS, _weighted_rules, reduce_shape
from .reference import INF, NAN, Edge, binary_edges, elementwise_ref, is_nan, rows_ref
from .registry import OpDef, register


def _prod_infer(ctx, types, attrs):
    t = types[0]
    shape, _ = reduce_shape(ctx, t.shape, attrs["axis"], attrs["keepdims"])
    return TensorType(shape, "int64" if t.dtype == "bool" else t.dtype, t.weak)


def prod_forward(x, axis=None, keepdims=False):
    """np.prod in the input's dtype (NumPy would widen int32 to int64; bools multiply as int64)."""
    x = np.asarray(x)
    return np.prod(x, axis=axis, keepdims=keepdims, dtype=np.int64 if x.dtype == bool else x.dtype)


def _others(b, node):
    """The product of the other entries of x's reduced set, for each entry (shaped like x)."""
    x = node.inputs[0]
    a = b.attrs(node)
    zero = b("equal", x, b.const(0))
    count = b("sum", b("cast", zero, dtype=b.type(x).dtype), axis=a["axis"], keepdims=True)
    safe = b("where", zero, b.const(1), x)
    p = b("prod", safe, axis=a["axis"], keepdims=True)
    at_zero = b("where", b("equal", count, b.const(1)), p, b.const(0))
    elsewhere = b("where", b("equal", count, b.const(0)), b("div", p, safe), b.const(0))
    return b("where", zero, at_zero, elsewhere)


_prod_vjp, _prod_jvp = _weighted_rules(_others)


def _prod_row(m, row):
    """The exact product: NaN with a NaN or with 0 * inf; a signed zero or infinity otherwise
    when one is present (the sign from every entry's sign bit, -0.0 included)."""
    if all(isinstance(v, int) for v in row):
        return math.prod(int(v) for v in row)
    if any(is_nan(v) for v in row):
        return NAN
    zero, inf = any(v == 0 for v in row), any(abs(v) == INF for v in row)
    if zero and inf:
        return NAN
    sign = math.prod(math.copysign(1.0, float(v)) for v in row)
    if zero or inf:
        return math.copysign(0.0 if zero else INF, sign)
    return m.fprod([m.mpf(float(v)) for v in row])


def _prod_interval(bnds, attrs, info):
    """n entries in [lo, hi], n between the fewest and most the shapes allow."""
    lo, hi = bnds[0]
    nmin, nmax = info.count(0, attrs.get("axis"))
    dt = info.dtype if info.dtype.startswith("float") else "float64"  # float32 overflows where float64 does not
    with np.errstate(all="ignore"):
        powers = [float(np.power(np.asarray(abs(v), dt), np.asarray(n, dt))) for v in (lo, hi) for n in (nmin, nmax)]
    if lo >= 0:
        return bounds.clean(min(powers), max(powers))
    big = max(powers)
    return -big, big


_PRODS = np.array([[2.0, -0.5, 3.0], [0.0, INF, 1.0], [-0.0, 2.0, -3.0], [NAN, 0.0, 1.0], [1e308, 10.0, 1.0],
                   [1e-300, 1e-300, 7.0], [-INF, -2.0, 0.5], [0.1, 0.2, 0.3], [5e-324, 0.5, 1.0], [-1.0, -1.0, -1.0]])


register(OpDef("prod", 1, _prod_infer, prod_forward, attrs=dict(AXIS_ATTRS), vjp=_prod_vjp, jvp=_prod_jvp,
               group="reductions", doc="product over axes; its gradient is exact where entries are 0",
               reference=rows_ref(_prod_row), interval=_prod_interval, ulps=2,
               edges=(Edge((_PRODS,), {"axis": 1}), Edge((_PRODS[:4],), {"axis": 0, "keepdims": True}),
                      Edge((_PRODS.reshape(5, 2, 3),), {"axis": [0, 2]}), Edge((_PRODS[:3, :2],), {}),
                      Edge((np.array([[1, -7, 3], [0, 2, 5]]),), {"axis": 1}, note="int"),
                      Edge((np.array([[2, -7], [3, 4]], np.int32),), {"axis": 0}, note="int32"),
                      Edge((np.array([[True, False], [True, True]]),), {"axis": 1}, note="bool")),
               explain={"partial": ("the product of the other entries",),
                        "vjp": ("{g} times the product of the other entries (exact at zeros)",)}))


# comparisons ------------------------------------------------------------------------------------

for _name, _fn, _cmp in (("greater_equal", np.greater_equal, lambda x, y: x >= y),
                         ("less_equal", np.less_equal, lambda x, y: x <= y)):
    register(OpDef(name=_name, arity=2, infer=_broadcast_infer(False, bool_out=True), forward=_fn, ufunc=_fn,
                   group="comparison (not differentiable, bool out)", doc=f"{_name}(x, y), elementwise, bool "
                   "(false where either is NaN)", domain=[(-2.0, 2.0)] * 2,
                   reference=elementwise_ref(lambda m, x, y, c=_cmp: False if is_nan(x) or is_nan(y) else c(x, y)),
                   edges=binary_edges((1.0, 1.0), (-0.0, 0.0)), interval=bounds.unit, ulps=0))
