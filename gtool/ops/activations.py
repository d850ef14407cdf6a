"""Activations and rounding: erf, erfc, gelu, leaky_relu, elu, selu, hard_sigmoid, softsign,
reciprocal, floor, ceil, round (the ONNX names Erf, Gelu, LeakyRelu, ... in gtool's spelling).

Each is an elementwise record as in elementwise.py: one linear map per input gives both the
VJP and the JVP. Ops with attrs (alpha, approximate, ...) read them through `b.attrs(node)`.
The accuracy-critical pieces:

- erf / erfc are Chebyshev fits evaluated with NumPy (ops/erf.py): vectorized, no scipy;
- gelu is 0.5 x erfc(-x / sqrt 2) (never 0.5 x (1 + erf): 1 + erf(-20) is 1 - 1 = 0), with
  x / sqrt 2 as a double-double so the tail keeps its relative accuracy; the tanh form is
  x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), whose tail is exact where
  0.5 x (1 + tanh u) cancels to 0;
- elu and selu use expm1; hard_sigmoid computes alpha x + beta as an exact product plus beta.
floor, ceil and round have derivative zero almost everywhere: like `sign`, they carry no
VJP/JVP rules, so no gradient flows through them (documented in docs/format.md).
"""

from __future__ import annotations

import math

import numpy as np

from . import bounds
from . import erf as _erf
from .elementwise import _as_float, _broadcast_infer, _jvp_from, _partial_texts, _vjp_from
from .reference import INF, NAN, Edge, elementwise_ref, unary_edges
from .registry import Attr, OpDef, register
from .templates import SIGMOID, numpy_forward

_SQRT1_2 = 0.7071067811865476  # 1/sqrt(2) rounded; the rest is carried in _SQRT1_2_LO
_SQRT1_2_LO = -4.833646656726457e-17  # 1/sqrt(2) - _SQRT1_2 (mpmath)
_TWO_OVER_SQRT_PI = 1.1283791670955126
_INV_SQRT_2PI = 0.3989422804014327
_GELU_C = 0.7978845608028654  # sqrt(2 / pi)
_GELU_A = 0.044715
_GELU_K_LO = -9.96930880911092e-17  # 2 sqrt(2 / pi) - 2 _GELU_C (mpmath)
_GELU_A_LO = 2.1960211427085595e-18  # 0.044715 - _GELU_A
_SELU_ALPHA = 1.67326319217681884765625  # ONNX's defaults (float32 values)
_SELU_GAMMA = 1.05070102214813232421875
_sigmoid = numpy_forward(SIGMOID)


def _in64(fn):
    """A forward computed in float64 for float32 and float16 inputs, rounded once at the end:
    ints and bools become float64 first, as the shape rule types them."""

    def fwd(x, **attrs):
        x = _as_float(x)
        arr = np.asarray(x)
        with np.errstate(all="ignore"):
            out = fn(arr.astype(np.float64) if arr.dtype in (np.float32, np.float16) else arr, **attrs)
        out = np.asarray(out, dtype=arr.dtype)
        return out if out.ndim else out[()]

    fwd.__doc__ = fn.__doc__
    return fwd


def _native(fn):
    """A forward computed in the input's float dtype (ints and bools as float64)."""

    def fwd(x, **attrs):
        with np.errstate(all="ignore"):
            out = np.asarray(fn(np.asarray(_as_float(x)), **attrs))
        return out if out.ndim else out[()]

    fwd.__doc__ = fn.__doc__
    return fwd


def unary(name, forward, lin, *, attrs=None, doc="", **record):
    """Register a one-input elementwise op with attrs; `lin(b, v, node)` is v times the
    derivative (None: no gradient flows, as for sign)."""
    return register(OpDef(
        name=name, arity=1, infer=_broadcast_infer(True), forward=forward, attrs=attrs or {},
        vjp=_vjp_from([lin]) if lin else None, jvp=_jvp_from([lin]) if lin else None,
        group="elementwise, one input", doc=doc, domain=record.pop("domain", [(-2.0, 2.0)]), **record))


def _ref(fn):
    """A reference from `fn(m, x, **attrs)` on exact numbers (NaN in gives NaN out)."""

    def scalar(m, x, **attrs):
        if isinstance(x, float) and x != x:
            return NAN
        return fn(m, x, **attrs)

    return elementwise_ref(scalar)


def piecewise(*turns):
    """An interval rule for an op monotone between `turns(attrs)` (points where it turns or
    kinks): the forward at the ends and at each turn inside, the least and the greatest."""

    def rule(bounds_, attrs, info):
        from .registry import get_op

        fwd = get_op(rule.op).forward
        lo, hi = bounds_[0]
        pts = [lo, hi] + [t for t in (turns[0](attrs) if turns else ()) if lo < t < hi]
        dt = info.dtype if info.dtype.startswith("float") else "float64"
        with np.errstate(all="ignore"):
            vals = [float(fwd(np.asarray(p, dt), **attrs)) for p in pts]
        if any(v != v for v in vals):
            return bounds.UNKNOWN
        return bounds.clean(min(vals), max(vals))

    return rule


def _record_rule(name, rule):
    rule.op = name
    return rule


# erf, erfc -------------------------------------------------------------------------------


def _gauss(b, x):
    """2/sqrt(pi) e^(-x^2): the derivative of erf."""
    return b("mul", b.const(_TWO_OVER_SQRT_PI), b("exp", b("neg", b("square", x))))


unary("erf", _in64(_erf.erf), lambda b, v, n: b("mul", v, _gauss(b, n.inputs[0])),
      doc="the error function (Chebyshev fits, vectorized: gtool/ops/erf.py)",
      reference=_ref(lambda m, x: m.erf(x) if abs(x) < 40 else math.copysign(1.0, x)),  # 1 - erf(40) < 1e-697
      edges=unary_edges(0.5, 0.4999999999999999, 0.84375, 5.9, 6.0, 1e-308, -2.5),
      interval=_record_rule("erf", piecewise()), ulps=2,
      explain=_partial_texts("2/√π exp(-{a}²)", vjp=("{g} ⊙ 2/√π exp(-{a}²)",)))
unary("erfc", _in64(_erf.erfc), lambda b, v, n: b("neg", b("mul", v, _gauss(b, n.inputs[0]))),
      doc="1 - erf(x), accurate in the tail (erfc(26) = 5.7e-296)",
      reference=_ref(lambda m, x: m.erfc(x) if abs(x) < 40 else (0.0 if x > 0 else 2.0)),
      edges=unary_edges(0.5, -0.5, 5.9, -6.0, 10.0, 26.5, 27.2, 28.0), interval=_record_rule("erfc", piecewise()),
      ulps=4, explain=_partial_texts("-2/√π exp(-{a}²)", vjp=("-{g} ⊙ 2/√π exp(-{a}²)",)))


# gelu --------------------------------------------------------------------------------------


def _gelu(x, approximate="none"):
    """x Phi(x) as 0.5 x erfc(-x / sqrt 2) (exact form) or x sigmoid(2u) (tanh form); the
    limit -0 at -inf (0 * inf would be NaN)."""
    if approximate == "tanh":
        out = _gelu_tanh(x)
    else:
        big = np.abs(x) < 1e300  # Dekker's split overflows past it; erfc is 0 or 2 there anyway
        hi, lo = _erf.two_prod(np.where(big, x, 0.0), -_SQRT1_2)
        hi = np.where(big, hi, -x * _SQRT1_2)
        lo = np.where(big, lo - x * _SQRT1_2_LO, 0.0)
        out = _erf.erfc_dd(hi, lo, scale=0.5 * x)
    return np.where(x == -INF, -0.0, out)


def _gelu_tanh(x):
    """x sigmoid(2u) with 2u = 2 sqrt(2/pi) x (1 + 0.044715 x^2) as a double-double (hi + lo):
    sigmoid(hi + lo) = s (1 + lo s(-hi)). Rounding 2u alone would cost |2u| ulps where the
    result is e^(2u) small (80 ulps at x = -5), the tail where this form is worth having."""
    ok = np.abs(x) < 1e10  # past it sigmoid(2u) is 0 or 1 exactly; Dekker's split would overflow
    xs = np.where(ok, x, 0.0)
    sq, sq_e = _erf.two_prod(xs, xs)
    t, t_e = _erf.two_prod(sq, _GELU_A)
    t_e += _GELU_A * sq_e + _GELU_A_LO * sq
    s = 1.0 + t  # two_sum(1, t): 1 + t exactly as s + s_e
    bb = s - 1.0
    s_e = ((1.0 - (s - bb)) + (t - bb)) + t_e
    w, w_e = _erf.two_prod(xs, s)
    w_e += xs * s_e
    hi, lo = _erf.two_prod(w, 2 * _GELU_C)
    lo += 2 * _GELU_C * w_e + _GELU_K_LO * w
    hi = np.where(ok, hi, (2 * _GELU_C) * x * (1.0 + _GELU_A * (x * x)))
    sig = _sigmoid(hi)
    return x * np.where(ok, sig + lo * sig * _sigmoid(-hi), sig)


def _gelu_lin(b, v, n):
    x = n.inputs[0]
    if b.attrs(n)["approximate"] == "tanh":  # d/dx x s(2u) = s + x s(2u) s(-2u) 2u'
        u2 = b("mul", b.const(2 * _GELU_C), b("add", x, b("mul", b.const(_GELU_A), b("mul", x, b("square", x)))))
        s = b("sigmoid", u2)
        du2 = b("mul", b.const(2 * _GELU_C), b("add", b.const(1), b("mul", b.const(3 * _GELU_A), b("square", x))))
        d = b("add", s, b("mul", b("mul", x, b("mul", s, b("sigmoid", b("neg", u2)))), du2))
    else:  # Phi(x) + x phi(x)
        phi = b("mul", b.const(_INV_SQRT_2PI), b("exp", b("mul", b.const(-0.5), b("square", x))))
        d = b("add", b("mul", b.const(0.5), b("erfc", b("mul", x, b.const(-_SQRT1_2)))), b("mul", x, phi))
    return b("mul", v, d)


def _gelu_ref(m, x, approximate="none"):
    if x == 0 or abs(x) > 80:  # Phi(-80) < 1e-1390: x itself, or -0
        return x if x >= 0 else -0.0
    x = m.mpf(x)
    if approximate == "tanh":
        u = m.sqrt(2 / m.pi) * (x + m.mpf("0.044715") * x ** 3)
        return x / (1 + m.exp(-2 * u))
    return x * m.erfc(-x / m.sqrt(2)) / 2


def _gelu_interval(b_, attrs, info):
    """Increasing past its minimum (-0.16997 near x = -0.7518, either form), decreasing
    before: the ends, and -0.1701 (a little below the minimum) when the turn is inside."""
    lo, hi = b_[0]
    ends = piecewise()
    ends.op = "gelu"
    e_lo, e_hi = ends(b_, attrs, info)
    return (min(e_lo, -0.1701) if lo < -0.7518 and hi > -0.7516 else e_lo), e_hi


def _gelu_edges():
    none = unary_edges(-20.0, -37.0, -38.5, -0.7517916243534241, 30.0, -5.0)
    tanh = tuple(Edge(e.inputs, {"approximate": "tanh"}, e.float32, e.note)
                 for e in unary_edges(-5.0, -0.75, -7.0, -12.0, 9.0))
    return none + tanh


unary("gelu", _in64(_gelu), _gelu_lin,
      attrs={"approximate": Attr("choice:none,tanh", "none", "none: x Phi(x) with erf; tanh: the tanh form")},
      doc="x Phi(x) (Phi the normal CDF); approximate=tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))",
      reference=_ref(_gelu_ref), edges=_gelu_edges(), interval=_gelu_interval, ulps=4,
      explain=_partial_texts("Φ({a}) + {a} φ({a})", vjp=("{g} ⊙ (Φ({a}) + {a} φ({a}))",)))


# relu-like -----------------------------------------------------------------------------------


def _slope_where(b, n, below):
    """v where x > 0, else `below(b, v)`: the derivative of a function with a kink at 0
    (the side x <= 0 at 0, as torch's leaky_relu and elu)."""
    return lambda v: b("where", b("greater", n.inputs[0], b.const(0)), v, below(v))


def _leaky(x, alpha=0.01):
    """x for x >= 0, alpha x below (NaN stays NaN)."""
    return np.where(x < 0, x * alpha, x)


def _elu(x, alpha=1.0):
    """x for x > 0, alpha (e^x - 1) below, by expm1 (exact near 0)."""
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def _selu(x, alpha=_SELU_ALPHA, gamma=_SELU_GAMMA):
    """gamma x for x > 0, gamma alpha (e^x - 1) below."""
    return gamma * _elu(x, alpha)


def _exp_side(b, n, v, scale):
    return b("mul", v, b("mul", b.const(scale), b("exp", n.inputs[0])))


unary("leaky_relu", _in64(_leaky),
      lambda b, v, n: _slope_where(b, n, lambda w: b("mul", w, b.const(b.attrs(n)["alpha"])))(v),
      attrs={"alpha": Attr("float", 0.01, "the slope below 0")},
      doc="x if x >= 0 else alpha x; derivative alpha at 0 (torch's)",
      reference=_ref(lambda m, x, alpha=0.01: x if x >= 0 else m.mpf(alpha) * x),
      edges=unary_edges() + (Edge((np.array([-3.0, 2.0, -0.0, -1e308, -5e-324, -INF, 0.1]),), {"alpha": -0.5}),),
      interval=_record_rule("leaky_relu", piecewise(lambda a: (0.0,))), ulps=0,
      explain=_partial_texts("1 if {a} > 0 else alpha", vjp=("{g} ⊙ (1 if {a} > 0 else alpha)",)))
unary("elu", _in64(_elu),
      lambda b, v, n: _slope_where(b, n, lambda w: _exp_side(b, n, w, b.attrs(n)["alpha"]))(v),
      attrs={"alpha": Attr("float", 1.0, "the scale of the negative side")},
      doc="x if x > 0 else alpha (e^x - 1) (expm1)",
      reference=_ref(lambda m, x, alpha=1.0: x if x > 0 else (-m.mpf(alpha) if x == -INF else m.mpf(alpha) * m.expm1(x))),
      edges=unary_edges(-1e-17, -37.0, -1e-300), interval=_record_rule("elu", piecewise(lambda a: (0.0,))), ulps=2,
      explain=_partial_texts("1 if {a} > 0 else alpha e^{a}", vjp=("{g} ⊙ (1 if {a} > 0 else alpha e^{a})",)))


def _selu_lin(b, v, n):
    a = b.attrs(n)
    inner = _slope_where(b, n, lambda w: _exp_side(b, n, w, a["alpha"]))(v)
    return b("mul", inner, b.const(a["gamma"]))


def _selu_ref(m, x, alpha=_SELU_ALPHA, gamma=_SELU_GAMMA):
    if x > 0:
        return m.mpf(gamma) * x
    return -m.mpf(gamma) * m.mpf(alpha) if x == -INF else m.mpf(gamma) * m.mpf(alpha) * m.expm1(x)


unary("selu", _in64(_selu), _selu_lin,
      attrs={"alpha": Attr("float", _SELU_ALPHA, "the scale of the negative side"),
             "gamma": Attr("float", _SELU_GAMMA, "the overall scale")},
      doc="gamma (x if x > 0 else alpha (e^x - 1)); ONNX's default alpha and gamma",
      reference=_ref(_selu_ref), edges=unary_edges(-1e-17, -37.0), ulps=3,
      interval=_record_rule("selu", piecewise(lambda a: (0.0,))),
      explain=_partial_texts("gamma (1 if {a} > 0 else alpha e^{a})", vjp=("{g} ⊙ gamma (1 if {a} > 0 else alpha e^{a})",)))


# hard_sigmoid, softsign ------------------------------------------------------------------------


def _hard_sigmoid(x, alpha=0.2, beta=0.5):
    """clip(alpha x + beta, 0, 1), alpha x + beta rounded once (an exact product first: near
    the corner x = -beta / alpha the rounded product would cancel against beta)."""
    ok = np.abs(x) < 1e290  # Dekker's split overflows past it
    p, e = _erf.two_prod(np.where(ok, x, 0.0), float(alpha))
    t = np.where(ok, (p + beta) + e, x * alpha)
    return np.minimum(np.maximum(t, 0.0), 1.0)


def _hard_sigmoid_lin(b, v, n):
    a = b.attrs(n)
    t = b("add", b("mul", n.inputs[0], b.const(a["alpha"])), b.const(a["beta"]))
    inside = b("mul", b("cast", b("greater", t, b.const(0)), dtype=b.type(v).dtype),
               b("cast", b("less", t, b.const(1)), dtype=b.type(v).dtype))
    return b("mul", v, b("mul", inside, b.const(a["alpha"])))


def _hard_sigmoid_ref(m, x, alpha=0.2, beta=0.5):
    if abs(x) == INF:
        t = x * alpha if alpha != 0 else m.mpf(beta)
    else:
        t = m.mpf(alpha) * x + m.mpf(beta)
    return 0.0 if t <= 0 else 1.0 if t >= 1 else t


def _hs_turns(a):
    return tuple((c - a["beta"]) / a["alpha"] for c in (0.0, 1.0)) if a["alpha"] else ()


unary("hard_sigmoid", _in64(_hard_sigmoid), _hard_sigmoid_lin,
      attrs={"alpha": Attr("float", 0.2, "the slope"), "beta": Attr("float", 0.5, "the offset")},
      doc="max(0, min(1, alpha x + beta)); derivative alpha strictly inside, 0 at and past the corners",
      reference=_ref(_hard_sigmoid_ref), edges=unary_edges(-2.5, 2.5, -2.4999999999999996, 2.4999999999999996),
      interval=_record_rule("hard_sigmoid", piecewise(_hs_turns)), ulps=1,
      explain=_partial_texts("alpha if 0 < alpha {a} + beta < 1 else 0",
                             vjp=("{g} ⊙ alpha [0 < alpha {a} + beta < 1]",)))


def _softsign(x):
    """x / (1 + |x|); +-1 at +-inf (inf / inf would be NaN)."""
    return np.where(np.isinf(x), np.sign(x), x / (1 + np.abs(x)))


unary("softsign", _in64(_softsign),
      lambda b, v, n: b("div", v, b("square", b("add", b.const(1), b("abs", n.inputs[0])))),
      doc="x / (1 + |x|)", reference=_ref(lambda m, x: math.copysign(1.0, x) if abs(x) == INF else x / (1 + m.mpf(abs(x)))),
      edges=unary_edges(9007199254740992.0), interval=_record_rule("softsign", piecewise()), ulps=2,
      explain=_partial_texts("1 / (1 + |{a}|)²", vjp=("{g} / (1 + |{a}|)²",)))


# reciprocal and rounding ----------------------------------------------------------------------


def _recip_ref(m, x):
    if x == 0:
        return math.copysign(INF, x)
    return math.copysign(0.0, x) if abs(x) == INF else 1 / m.mpf(x)


def _recip_interval(b_, attrs, info):
    """Decreasing on each side of 0; an interval reaching 0 holds -0.0 too (1/-0 = -inf)."""
    lo, hi = b_[0]
    if lo <= 0 <= hi:
        return bounds.UNKNOWN
    return bounds.div([(1.0, 1.0), (lo, hi)], attrs, info)


unary("reciprocal", _native(lambda x: np.reciprocal(x)),
      lambda b, v, n: b("neg", b("mul", v, b("square", n.name))),
      doc="1 / x (1/±0 = ±inf)", reference=_ref(_recip_ref), edges=unary_edges(3.0, 1e-310),
      interval=_recip_interval, ulps=0, domain=[(0.3, 3.0)],
      explain=_partial_texts("-1 / {a}²", vjp=("-{g} ⊙ {out}²",)))


def _rounding_ref(fn):
    def scalar(m, x):
        if isinstance(x, int) or abs(x) == INF or x == 0:
            return float(x)
        return math.copysign(float(fn(x)), x)  # -0.4 rounds to -0

    return scalar


for _name, _fn, _exact, _doc in (
    ("floor", np.floor, math.floor, "the largest integer <= x"),
    ("ceil", np.ceil, math.ceil, "the smallest integer >= x"),
    ("round", np.round, round, "the nearest integer, halves to even (2.5 -> 2, as ONNX and NumPy)"),
):
    unary(_name, _native(_fn), None, doc=_doc + "; derivative zero almost everywhere, so no gradient flows",
          reference=_ref(_rounding_ref(_exact)), edges=unary_edges(0.5, 1.5, 2.5, -2.5, -0.5, 0.49999999999999994,
                                                                   4503599627370495.5),
          interval=_record_rule(_name, piecewise()), ulps=0)
