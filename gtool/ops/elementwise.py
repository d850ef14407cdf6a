"""Elementwise ops: unary math, binary arithmetic, comparisons, where, cast.

Each differentiable elementwise op gives, per input, one *linear map* `lin(b, v, node)`:
v times the partial derivative of the output with respect to that input, built as graph
nodes. The VJP is `sum_to(lin(g), input)` (undoing broadcasting); the JVP is the sum of
`lin(t_i)` over the inputs that carry a tangent (JAX's `defjvp` idea: one rule, both modes).
"""

from __future__ import annotations

import numpy as np

from ..ir import TensorType
from . import bounds
from .reference import INF, NAN, elementwise_ref, unary_edges
from .registry import OpDef, register, result_type
from .templates import SIGMOID, SOFTPLUS, numpy_forward


def _float_type(t: TensorType) -> TensorType:
    return t if t.dtype.startswith("float") else TensorType(t.shape, "float64", t.weak)


def _broadcast_infer(float_out: bool, bool_out: bool = False):
    def infer(ctx, types, attrs):
        shape = ctx.broadcast(*[t.shape for t in types])
        rt = result_type(types)
        if bool_out:
            return TensorType(shape, "bool")
        if float_out:
            rt = _float_type(rt)
        return TensorType(shape, rt.dtype, rt.weak)

    return infer


def _vjp_from(lins):
    def vjp(b, node, g):
        out = []
        for i, lin in enumerate(lins):
            if lin is None:
                out.append(None)
                continue
            c = lin(b, g, node)
            out.append(None if c is None else b.sum_to(c, node.inputs[i]))
        return out

    return vjp


def _jvp_from(lins):
    def jvp(b, node, tangents):
        total = None
        for lin, t in zip(lins, tangents):
            if lin is None or t is None:
                continue
            c = lin(b, t, node)
            if c is not None:
                total = c if total is None else b("add", total, c)
        return None if total is None else b.broadcast_like(total, node.name)

    return jvp


def _on_floats(forward):
    """The forward of a float op, fed floats: int and bool inputs become float64 first (the
    shape rule types the result float64). NumPy would otherwise compute exp(True) in float16
    (2.71875), or fail outright (sigmoid's in-place exp into an int buffer, -True)."""

    def fwd(*xs):
        return forward(*[_as_float(x) for x in xs])

    fwd.__wrapped__ = forward
    fwd.__doc__ = forward.__doc__
    return fwd


def _as_float(x):
    """x itself when float; a Python number stays a (weak) Python float, an array becomes float64."""
    if isinstance(x, float) or getattr(x, "dtype", np.dtype("O")).kind == "f":
        return x
    if isinstance(x, int | bool):
        return float(x)
    return np.asarray(x, np.float64)


def elementwise(name, forward, lins, *, ufunc=None, float_out=True, domain=None, doc="", group=None, **record):
    """Register an elementwise op whose derivative is given by per-input linear maps;
    `record` holds the rest of its record (reference, edges, interval, explain, ulps, view)."""
    arity = len(lins)
    if float_out:
        forward = _on_floats(forward)
    has_grad = any(lin is not None for lin in lins)
    return register(OpDef(
        name=name,
        arity=arity,
        infer=_broadcast_infer(float_out),
        forward=forward,
        vjp=_vjp_from(lins) if has_grad else None,
        jvp=_jvp_from(lins) if has_grad else None,
        ufunc=ufunc,
        group=group or ("elementwise, one input" if arity == 1 else "elementwise, two inputs"),
        doc=doc,
        domain=domain or [(-2.0, 2.0)] * arity,
        **record,
    ))


# the linear maps --------------------------------------------------------------------
# `x`, `y` are the node's inputs, `o` its output, `v` the vector being mapped.


def same(b, v, node):
    return v


def negated(b, v, node):
    return b("neg", v)


def _relu_fwd(x):
    """max(x, 0); NaN stays NaN (np.maximum propagates it: the convention, docs/backends.md)."""
    return np.maximum(x, np.zeros((), x.dtype))


def _sign_fwd(x):
    """np.sign, and a bool's sign is itself (NumPy has no bool loop for sign)."""
    if getattr(x, "dtype", None) == np.bool_ or isinstance(x, bool):
        return np.array(x, copy=True) if isinstance(x, np.ndarray) else x
    return np.sign(x)


# references: the math in mpmath (x an exact Python number; NaN in gives NaN out) ------------


def _ref(fn):
    def scalar(m, x):
        if isinstance(x, float) and x != x:
            return NAN
        return fn(m, x)

    return elementwise_ref(scalar)


def _sign_ref(m, x):
    if isinstance(x, bool) or x != x:
        return x
    return (x > 0) - (x < 0) if isinstance(x, int) else (1.0 if x > 0 else -1.0 if x < 0 else x)


def _finite(name: str):
    """mpmath's `name` at finite x; NaN at ±inf (sin, cos)."""
    return lambda m, x: NAN if abs(x) == INF else getattr(m, name)(x)


def _lin(f):
    """A linear map v * f(b, node) (f builds d(out)/d(input) as graph nodes)."""
    return lambda b, v, n: b("mul", v, f(b, n))


def _partial_texts(*partials: str, vjp: tuple[str, ...]) -> dict:
    return {"partial": partials, "vjp": vjp}


elementwise("neg", np.negative, [negated], ufunc=np.negative, float_out=False, doc="-x",
            reference=_ref(lambda m, x: -x), edges=unary_edges(bools=False), interval=bounds.neg,
            explain=_partial_texts("-1", vjp=("-{g}",)), ulps=0)
elementwise("exp", np.exp, [_lin(lambda b, n: n.name)], ufunc=np.exp, doc="e^x",
            reference=_ref(lambda m, x: m.exp(x)), edges=unary_edges(709.78, -745.13, 1e-17, 88.72, -87.3),
            interval=bounds.increasing("exp"), explain=_partial_texts("exp({a}) = {out}", vjp=("{g} ⊙ {out}",)))
elementwise("log", np.log, [lambda b, v, n: b("div", v, n.inputs[0])], ufunc=np.log, domain=[(0.2, 3.0)],
            doc="natural log", reference=_ref(lambda m, x: NAN if x < 0 else -INF if x == 0 else m.log(x)),
            edges=unary_edges(1.0000000000000002, 0.9999999999999999, 2.0), interval=bounds.log_like(np.log, 0.0),
            explain=_partial_texts("1 / {a}", vjp=("{g} / {a}",)))
elementwise("log1p", np.log1p, [lambda b, v, n: b("div", v, b("add", n.inputs[0], b.const(1)))],
            ufunc=np.log1p, domain=[(-0.5, 2.0)], doc="log(1 + x), accurate for small x",
            reference=_ref(lambda m, x: NAN if x < -1 else -INF if x == -1 else m.log1p(x)),
            edges=unary_edges(-0.9999999999999999, 1e-300), interval=bounds.log_like(np.log1p, -1.0),
            explain=_partial_texts("1 / (1 + {a})", vjp=("{g} / (1 + {a})",)))
elementwise("expm1", np.expm1, [_lin(lambda b, n: b("exp", n.inputs[0]))], ufunc=np.expm1,
            doc="exp(x) - 1, accurate for small x", reference=_ref(lambda m, x: -1.0 if x == -INF else m.expm1(x)),
            edges=unary_edges(1e-17, -1e-17, 1e-5, -37.0), interval=bounds.increasing("expm1"),
            explain=_partial_texts("exp({a})", vjp=("{g} ⊙ exp({a})",)))  # not out + 1: it cancels for x << 0
elementwise("sqrt", np.sqrt, [lambda b, v, n: b("div", v, b("mul", b.const(2), n.name))], ufunc=np.sqrt,
            domain=[(0.2, 3.0)], doc="square root", reference=_ref(lambda m, x: NAN if x < 0 else m.sqrt(x)),
            edges=unary_edges(4.0, 2.0), interval=bounds.log_like(np.sqrt, 0.0),
            explain=_partial_texts("1 / (2 * {out})", vjp=("{g} / (2 {out})",)), ulps=0)
elementwise("square", np.square, [_lin(lambda b, n: b("mul", b.const(2), n.inputs[0]))], ufunc=np.square,
            float_out=False, doc="x * x", reference=_ref(lambda m, x: m.mpf(x) ** 2),
            edges=unary_edges(1.3407807929942596e154, bools=False), interval=bounds.even,
            explain=_partial_texts("2 * {a}", vjp=("2 {g} ⊙ {a}",)), ulps=0)
elementwise("abs", np.abs, [_lin(lambda b, n: b("sign", n.inputs[0]))], ufunc=np.abs, float_out=False,
            doc="|x|; subgradient 0 at 0; abs(NaN) is NaN", reference=_ref(lambda m, x: abs(x)),
            edges=unary_edges(bools=False), interval=bounds.absolute,
            explain=_partial_texts("sign({a})", vjp=("{g} ⊙ sign({a})",)), ulps=0)
elementwise("sign", _sign_fwd, [None], float_out=False, doc="-1, 0 or 1; its derivative is zero, so no gradient flows",
            reference=elementwise_ref(_sign_ref), edges=unary_edges(), interval=bounds.sign, ulps=0)
elementwise("sin", np.sin, [_lin(lambda b, n: b("cos", n.inputs[0]))], ufunc=np.sin, doc="sine",
            reference=_ref(_finite("sin")), edges=unary_edges(3.141592653589793, 1e22),
            interval=bounds.cos_sin, explain=_partial_texts("cos({a})", vjp=("{g} ⊙ cos({a})",)))
elementwise("cos", np.cos, [lambda b, v, n: b("neg", b("mul", v, b("sin", n.inputs[0])))], ufunc=np.cos, doc="cosine",
            reference=_ref(_finite("cos")), edges=unary_edges(1.5707963267948966, 1e22),
            interval=bounds.cos_sin, explain=_partial_texts("-sin({a})", vjp=("-{g} ⊙ sin({a})",)))
elementwise("tanh", np.tanh, [_lin(lambda b, n: b("sub", b.const(1), b("square", n.name)))], ufunc=np.tanh,
            doc="hyperbolic tangent", reference=_ref(lambda m, x: m.tanh(x)),
            edges=unary_edges(0.625, 0.6249999999999999, 19.1, 40.0, 1e-8), interval=bounds.increasing("tanh"),
            explain=_partial_texts("1 - {out} ** 2", vjp=("{g} ⊙ (1 - {out}²)",)))
# sigmoid' = t / (1 + t)^2 with t = e^-|x| (even in x; t <= 1 never overflows): exact to a few
# ulps in both tails, in 6 passes. The former s(x) s(-x) ran a second sigmoid (9 passes);
# s (1 - s) from the output would lose the right tail (1 - s rounds to 0 or 2^-53 past x ~ 20).
def _sigmoid_slope(b, n):
    t = b("exp", b("neg", b("abs", n.inputs[0])))
    return b("div", t, b("square", b("add", b.const(1), t)))


elementwise("sigmoid", numpy_forward(SIGMOID), [_lin(_sigmoid_slope)],
            doc="1 / (1 + e^-x), stable; derivative e^-|x| / (1 + e^-|x|)^2",
            reference=_ref(lambda m, x: 1 / (1 + m.exp(-m.mpf(x)))), edges=unary_edges(-740.0, -745.0, 36.7, 37.0),
            interval=bounds.increasing("sigmoid"), ulps=2, template=SIGMOID,
            explain=_partial_texts("{out} * (1 - {out})", vjp=("{g} ⊙ {out} ⊙ (1 - {out})",)))
elementwise("relu", _relu_fwd,
            [lambda b, v, n: b("mul", v, b("cast", b("greater", n.inputs[0], b.const(0)), dtype=b.type(v).dtype))],
            float_out=False, doc="max(x, 0); subgradient 0 at 0; relu(NaN) is NaN (the VJP multiplies by the 0/1 "
            "mask: 10x faster than where)", reference=_ref(lambda m, x: x if x > 0 else type(x)(0)),
            edges=unary_edges(bools=False), interval=bounds.increasing("relu"),
            explain=_partial_texts("1 if {a} > 0 else 0", vjp=("{g} ⊙ ({a} > 0)",)), ulps=0)
elementwise("softplus", numpy_forward(SOFTPLUS), [_lin(lambda b, n: b("sigmoid", n.inputs[0]))],
            doc="log(1 + e^x), stable", reference=_ref(lambda m, x: m.log1p(m.exp(x))),
            edges=unary_edges(-37.0, 33.3, 709.8, 800.0), interval=bounds.increasing("softplus"), template=SOFTPLUS,
            ulps=2,  # NumPy's float32 SIMD exp and log1p are 1 ulp each (logaddexp used libm)
            explain=_partial_texts("sigmoid({a})", vjp=("{g} ⊙ sigmoid({a})",)))
elementwise("identity", lambda x: x, [same], float_out=False, doc="x", view=True, storage=True, reference=_ref(lambda m, x: x),
            edges=unary_edges(), interval=bounds.same, explain=_partial_texts("1", vjp=("{g}",)), ulps=0)
register(OpDef(name="stop_gradient", arity=1, infer=_broadcast_infer(False), forward=lambda x: x, view=True, storage=True,
               group="elementwise, one input", doc="x in the forward pass; no gradient flows through it",
               domain=[(-2.0, 2.0)], reference=_ref(lambda m, x: x), edges=unary_edges(), interval=bounds.same,
               ulps=0))
