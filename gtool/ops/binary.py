"""Elementwise ops of two or three inputs: arithmetic, pow, maximum/minimum, comparisons
and where (cast is in cast.py). Each record holds its forward, linear maps (see elementwise.py), reference
(mpmath, with IEEE's special values spelled out), edge table, interval rule and explain text.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import TensorType
from . import bounds
from .elementwise import _broadcast_infer, elementwise, negated, same
from .reference import INF, NAN, Edge, binary_edges, elementwise_ref, nan_in
from .registry import OpDef, ShapeError, register, result_type


def _ints(*xs) -> bool:
    return all(isinstance(x, int) for x in xs)  # bools are ints too


def _arith(fn):
    """A reference for + - *: exact on ints, mpmath on floats (inf - inf and 0 * inf are NaN)."""

    def scalar(m, x, y):
        if _ints(x, y):
            return fn(int(x), int(y))
        if nan_in(x, y):
            return NAN
        return fn(m.mpf(x), m.mpf(y))

    return elementwise_ref(scalar)


def _div_ref(m, x, y):
    if nan_in(x, y) or (x == 0 and y == 0) or (abs(x) == INF and abs(y) == INF):
        return NAN
    if y == 0:
        return math.copysign(INF, x) * math.copysign(1.0, y)
    return m.mpf(x) / m.mpf(y)


def _odd(y) -> bool:
    return float(y).is_integer() and abs(y) < 2.0**53 and int(y) % 2 == 1


def _pow_ref(m, x, y):
    """IEEE / C99 pow: x^0 = 1 and 1^y = 1 (even for NaN), signed zeros and infinities."""
    if _ints(x, y):
        return int(x) ** int(y)
    fx, fy = float(x), float(y)  # for the special cases (x, y may be mpf: mpmath.diff calls this)
    if fy == 0 or fx == 1:
        return 1.0
    if nan_in(fx, fy):
        return NAN
    if fx == 0:
        if fy < 0:
            return math.copysign(INF, fx) if _odd(fy) else INF
        return math.copysign(0.0, fx) if _odd(fy) else 0.0
    if abs(fx) == INF or abs(fy) == INF:
        return math.pow(fx, fy)  # C99's rules for infinities (no exception for these)
    if fx < 0 and not fy.is_integer():
        return NAN
    return m.power(m.mpf(x), m.mpf(y))


def _extreme(pick):
    return elementwise_ref(lambda m, x, y: NAN if nan_in(x, y) else pick(x, y))


def _texts(partials, vjp) -> dict:
    return {"partial": partials, "vjp": vjp}


elementwise("add", np.add, [same, same], ufunc=np.add, float_out=False, doc="x + y", reference=_arith(lambda a, b: a + b),
            edges=binary_edges(), interval=bounds.add, explain=_texts(("1", "1"), ("{g}", "{g}")), ulps=0)
elementwise("sub", np.subtract, [same, negated], ufunc=np.subtract, float_out=False, doc="x - y",
            reference=_arith(lambda a, b: a - b), edges=binary_edges(), interval=bounds.sub,
            explain=_texts(("1", "-1"), ("{g}", "-{g}")), ulps=0)
elementwise("mul", np.multiply, [lambda b, v, n: b("mul", v, n.inputs[1]), lambda b, v, n: b("mul", v, n.inputs[0])],
            ufunc=np.multiply, float_out=False, doc="x * y", reference=_arith(lambda a, b: a * b),
            edges=binary_edges(), interval=bounds.mul, explain=_texts(("{b}", "{a}"), ("{g} ⊙ {b}", "{g} ⊙ {a}")), ulps=0)
elementwise("div", np.true_divide,
            [lambda b, v, n: b("div", v, n.inputs[1]), lambda b, v, n: b("neg", b("div", b("mul", v, n.name), n.inputs[1]))],
            ufunc=np.true_divide, domain=[(-2.0, 2.0), (0.5, 2.0)], doc="x / y (true division)",
            reference=elementwise_ref(_div_ref), edges=binary_edges(), interval=bounds.div,
            explain=_texts(("1 / {b}", "-{a} / {b} ** 2"), ("{g} / {b}", "-{g} ⊙ {out} / {b}")), ulps=0)


def _const_value(b, name):
    """The value of a scalar constant input, or None (used to specialise pow's derivative)."""
    t = b.tensors.get(name)
    if t is None or t.kind != "constant" or t.value is None or np.ndim(t.value) != 0:
        return None
    return float(t.value)


def _pow_base_lin(b, v, n):
    """v * y * x^(y-1), and 0 where y = 0 (d/dx x^0 = 0 even at x = 0, where y * x^(y-1) is
    0 * inf: JAX's rule); for a constant exponent c: v * c * x^(c-1), and v * 2x when c = 2."""
    x, y = n.inputs
    c = _const_value(b, y)
    if c is None:
        jac = b("mul", y, b("pow", x, b("sub", y, b.const(1))))
        return b("mul", v, b("where", b("equal", y, b.const(0)), b.const(0), jac))
    if c == 0:
        return None
    if c == 1:
        return v
    if c == 2:
        return b("mul", v, b("mul", b.const(2), x))
    return b("mul", v, b("mul", b.const(c), b("pow", x, b.const(c - 1))))


def _pow_exp_lin(b, v, n):
    """v * log(x) * x^y, with log(1) = 0 in place of log(0) at x = 0: 0^y is 0 for every
    y > 0, so its derivative in y is 0, not -inf * 0 = NaN (JAX's rule)."""
    x = n.inputs[0]
    safe = b("where", b("equal", x, b.const(0)), b.const(1), x)
    return b("mul", v, b("mul", b("log", safe), n.name))


def _pow_fwd(x, y):
    """np.power, with IEEE pow's (-inf)^y = +inf for y > 0 not an odd integer (NumPy gives
    NaN for non-integer y; C's pow, numba, CUDA and JAX give +inf)."""
    out = np.power(x, y)
    if getattr(out, "dtype", np.dtype("O")).kind == "f" and np.any(np.isneginf(x)):
        fix = np.isneginf(x) & (np.asarray(y) > 0) & np.isnan(out)
        if np.any(fix):
            out = np.where(fix, np.asarray(np.inf, out.dtype), out)
    return out


elementwise("pow", _pow_fwd, [_pow_base_lin, _pow_exp_lin], float_out=False, domain=[(0.5, 2.0), (-1.5, 1.5)],
            doc="x ** y; IEEE pow at the edges ((-inf) ** 0.5 = inf; x ** 0 = 1)", reference=elementwise_ref(_pow_ref),
            edges=binary_edges((-INF, 3.0), (-INF, -3.0), (-0.0, -3.0), (-0.0, 3.0), (-2.0, 3.0), (-8.0, 1 / 3),
                               (0.0, -INF), (-1.0, INF), (2.0, 1024.0), (2.0, -1075.0), int_y=[2, 3, 0, 1, 2]),
            interval=bounds.power,
            explain=_texts(("{b} * {a} ** ({b} - 1)", "log({a}) * {out}"), ("{g} ⊙ {b} {a}^({b} - 1)", "{g} ⊙ log({a}) ⊙ {out}")),
            ulps=1)


def _pick(cmp):
    """d max(x, y)/dx: 1 where x wins, 1/2 at ties (a symmetric subgradient), else 0."""

    def lin(b, v, n, first=True):
        x, y = n.inputs if first else n.inputs[::-1]
        half = b("mul", b.const(0.5), v)
        return b("where", b(cmp, x, y), v, b("where", b("equal", x, y), half, b.const(0)))

    return [lin, lambda b, v, n: lin(b, v, n, first=False)]


_TIE = "1 if {a} > {b}, 1/2 if {a} == {b}, else 0"
elementwise("maximum", np.maximum, _pick("greater"), ufunc=np.maximum, float_out=False,
            doc="the larger of x and y; NaN if either is NaN; ties split the gradient evenly",
            reference=_extreme(max), edges=binary_edges((1.0, 1.0), (-0.0, 0.0)), interval=bounds.pairwise(max),
            explain=_texts((_TIE, _TIE.replace("{a}", "{x}").replace("{b}", "{a}").replace("{x}", "{b}")),
                           ("{g} where {a} wins (half at ties)", "{g} where {b} wins (half at ties)")), ulps=0)
elementwise("minimum", np.minimum, _pick("less"), ufunc=np.minimum, float_out=False,
            doc="the smaller of x and y; NaN if either is NaN; ties split the gradient evenly",
            reference=_extreme(min), edges=binary_edges((1.0, 1.0), (-0.0, 0.0)), interval=bounds.pairwise(min),
            explain=_texts((_TIE.replace(">", "<"), _TIE.replace(">", "<").replace("{a}", "{x}").replace("{b}", "{a}")
                            .replace("{x}", "{b}")),
                           ("{g} where {a} wins (half at ties)", "{g} where {b} wins (half at ties)")), ulps=0)

for _name, _fn, _cmp in (("greater", np.greater, lambda x, y: x > y), ("less", np.less, lambda x, y: x < y),
                         ("equal", np.equal, lambda x, y: x == y)):
    register(OpDef(name=_name, arity=2, infer=_broadcast_infer(False, bool_out=True), forward=_fn, ufunc=_fn,
                   group="comparison (not differentiable, bool out)", doc=f"{_name}(x, y), elementwise, bool",
                   domain=[(-2.0, 2.0)] * 2, reference=elementwise_ref(lambda m, x, y, c=_cmp: c(x, y)),
                   edges=binary_edges((1.0, 1.0), (-0.0, 0.0)), interval=bounds.unit, ulps=0))


def _where_infer(ctx, types, attrs):
    c, a, b = types
    if c.dtype != "bool":
        raise ShapeError("dtype-mismatch", f"where's condition must be bool, got {c.dtype}")
    shape = ctx.broadcast(c.shape, a.shape, b.shape)
    rt = result_type([a, b])
    return TensorType(shape, rt.dtype, rt.weak and c.weak)


def _where_vjp(b, node, g):
    c, x, y = node.inputs
    zero = b.const(0)
    return [None, b.sum_to(b("where", c, g, zero), x), b.sum_to(b("where", c, zero, g), y)]


def _where_jvp(b, node, ts):
    c = node.inputs[0]
    if ts[1] is None and ts[2] is None:
        return None
    zero = b.const(0)
    out = b("where", c, ts[1] if ts[1] is not None else zero, ts[2] if ts[2] is not None else zero)
    return b.broadcast_like(out, node.name)


register(OpDef(name="where", arity=3, infer=_where_infer, forward=np.where, storage=True, vjp=_where_vjp, jvp=_where_jvp,
               group="selection", doc="where(cond, a, b): a where cond is true, else b",
               reference=elementwise_ref(lambda m, c, x, y: x if c else y),
               edges=(Edge((np.array([True, False, True, False]), np.array([NAN, NAN, -0.0, INF]),
                            np.array([1.0, -INF, 5e-324, NAN]))),),
               interval=bounds.where,
               explain={"vjp": (None, "where({a}, {g}, 0)", "where({a}, 0, {g})")}, ulps=0))
