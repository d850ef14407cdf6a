"""ONNX export rules of the activation, normalization and dropout ops (gtool/ops/activations.py,
gtool/ops/norm.py), registered into export_ops.RULES.

- erf and erfc are written as gtool's own Chebyshev fits (gtool/ops/erf.py) in ONNX nodes,
  computed in float64: onnxruntime has no float64 Erf, and 1 - Erf would lose the tail that
  erfc and GELU need. gelu is 0.5 x erfc(-x / sqrt 2) on those nodes (or x sigmoid(2u) with
  gtool's sigmoid template for approximate=tanh). So an exported model computes them as
  gtool does, in every runtime, at the cost of ~250 small nodes per erf.
- leaky_relu, elu, selu, hard_sigmoid, softsign: Where/Mul/Max/Min (elu's e^x - 1 by Kahan's
  expm1), since onnxruntime implements LeakyRelu, Elu and the rest for float32 only.
- the norms as ReduceMean arithmetic (LayerNormalization needs opset 17, and instance and batch
  normalization have no float64 kernel in onnxruntime); dropout in training mode with the
  uniform draws of its seed as a constant (mask = draws >= ratio), so the exported model drops
  exactly the entries gtool drops; this needs a shape known at export.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Node
from ..ops import erf as fits
from ..ops.norm import dropout_draws
from ..ops.templates import sigmoid as sigmoid_template
from .export import ExportError
from .export_ops import OnnxPrims, expm1_nodes, reduce, rule

# erf / erfc ---------------------------------------------------------------------------------------


def _horner(x, coef, u: str, dt: str) -> str:
    r = x.scalar(coef[-1], dt)
    for c in coef[-2::-1]:
        r = x.op("Add", [x.op("Mul", [r, u], dt), x.scalar(c, dt)], dt)
    return r


def _erf_parts(x, a: str) -> tuple[str, str, str]:
    """(|a| < 0.5, erf(a) there, erfc(|a|) for |a| >= 0.5), all float64."""
    dt = "float64"
    ax = x.op("Abs", [a], dt)
    u = x.op("Sub", [x.op("Mul", [x.op("Mul", [a, a], dt), x.scalar(8.0, dt)], dt), x.scalar(1.0, dt)], dt)
    small = x.op("Mul", [a, _horner(x, fits.SMALL, u, dt)], dt)
    s = x.op("Div", [x.scalar(1.0, dt), ax], dt)
    h = None
    for lo, hi, coef in reversed(fits.TAIL):
        scale, shift = 2.0 / (1.0 / lo - 1.0 / hi), (1.0 / lo + 1.0 / hi) / (1.0 / lo - 1.0 / hi)
        ui = x.op("Sub", [x.op("Mul", [s, x.scalar(scale, dt)], dt), x.scalar(shift, dt)], dt)
        hi_poly = _horner(x, coef, ui, dt)
        h = hi_poly if h is None else x.op("Where", [x.op("Less", [ax, x.scalar(hi, dt)], "bool"), hi_poly, h], dt)
    gauss = x.op("Exp", [x.op("Neg", [x.op("Mul", [ax, ax], dt)], dt)], dt)
    tail = x.op("Div", [x.op("Mul", [gauss, h], dt), ax], dt)
    return x.op("Less", [ax, x.scalar(0.5, dt)], "bool"), small, tail


def erf_nodes(x, a: str) -> str:
    inner, small, tail = _erf_parts(x, a)
    outer = x.op("Mul", [x.op("Sign", [a], "float64"), x.op("Sub", [x.scalar(1.0, "float64"), tail], "float64")],
                 "float64")
    return x.op("Where", [inner, small, outer], "float64")


def erfc_nodes(x, a: str) -> str:
    dt = "float64"
    inner, small, tail = _erf_parts(x, a)
    outer = x.op("Where", [x.op("Greater", [a, x.scalar(0.0, dt)], "bool"), tail,
                           x.op("Sub", [x.scalar(2.0, dt), tail], dt)], dt)
    return x.op("Where", [inner, x.op("Sub", [x.scalar(1.0, dt), small], dt), outer], dt)


def _in64(fn):
    """A rule computing in float64 and casting the result to the output dtype."""

    def rule_fn(x, node: Node) -> str:
        dt = x.out_type(node).dtype
        return x.cast(fn(x, x.value(node.inputs[0], "float64"), node), dt)

    return rule_fn


rule("erf")(_in64(lambda x, a, node: erf_nodes(x, a)))
rule("erfc")(_in64(lambda x, a, node: erfc_nodes(x, a)))


def _gelu(x, a: str, node: Node) -> str:
    dt = "float64"
    if node.attrs.get("approximate", "none") == "tanh":
        cube = x.op("Mul", [x.scalar(0.044715, dt), x.op("Mul", [a, x.op("Mul", [a, a], dt)], dt)], dt)
        u2 = x.op("Mul", [x.scalar(2 * 0.7978845608028654, dt), x.op("Add", [a, cube], dt)], dt)
        out = x.op("Mul", [a, sigmoid_template(OnnxPrims(x, dt), u2)], dt)
    else:
        arg = x.op("Mul", [a, x.scalar(-1 / math.sqrt(2), dt)], dt)
        out = x.op("Mul", [x.op("Mul", [a, x.scalar(0.5, dt)], dt), erfc_nodes(x, arg)], dt)
    # gelu(-inf) = -0 (the products above give -inf * 0 = NaN there)
    minus_inf = x.op("Equal", [a, x.scalar(-np.inf, dt)], "bool")
    return x.op("Where", [minus_inf, x.scalar(-0.0, dt), out], dt)


rule("gelu")(_in64(_gelu))


# relu-like and friends --------------------------------------------------------------------------------


def _elementwise(fn):
    def rule_fn(x, node: Node) -> str:
        dt = x.out_type(node).dtype
        attrs = {k: v for k, v in node.attrs.items() if v is not None}
        return fn(x, x.value(node.inputs[0], dt), dt, **attrs)

    return rule_fn


def _below_zero(x, a, dt, negative: str) -> str:
    """a where a > 0, else `negative` (NaN stays NaN: a > 0 is false there, and the branch is NaN)."""
    return x.op("Where", [x.op("Greater", [a, x.scalar(0.0, dt)], "bool"), a, negative], dt)


@rule("leaky_relu")
def leaky_relu(x, node: Node) -> str:
    return _elementwise(lambda x, a, dt, alpha=0.01: x.op(
        "Where", [x.op("Less", [a, x.scalar(0.0, dt)], "bool"), x.op("Mul", [a, x.scalar(alpha, dt)], dt), a], dt))(x, node)


def _elu_nodes(x, a, dt, alpha=1.0):
    neg = x.op("Min", [a, x.scalar(0.0, dt)], dt)
    return _below_zero(x, a, dt, x.op("Mul", [expm1_nodes(x, neg, dt), x.scalar(alpha, dt)], dt))


rule("elu")(_elementwise(_elu_nodes))
rule("selu")(_elementwise(lambda x, a, dt, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875:
                          x.op("Mul", [_elu_nodes(x, a, dt, alpha), x.scalar(gamma, dt)], dt)))


@rule("hard_sigmoid")
def hard_sigmoid(x, node: Node) -> str:
    def nodes(x, a, dt, alpha=0.2, beta=0.5):
        t = x.op("Add", [x.op("Mul", [a, x.scalar(alpha, dt)], dt), x.scalar(beta, dt)], dt)
        return x.op("Min", [x.op("Max", [t, x.scalar(0.0, dt)], dt), x.scalar(1.0, dt)], dt)

    return _elementwise(nodes)(x, node)


@rule("softsign")
def softsign(x, node: Node) -> str:
    def nodes(x, a, dt):
        ratio = x.op("Div", [a, x.op("Add", [x.scalar(1.0, dt), x.op("Abs", [a], dt)], dt)], dt)
        inf = x.op("Equal", [x.op("Abs", [a], dt), x.scalar(np.inf, dt)], "bool")
        return x.op("Where", [inf, x.op("Sign", [a], dt), ratio], dt)

    return _elementwise(nodes)(x, node)


rule("reciprocal")(_elementwise(lambda x, a, dt: x.op("Div", [x.scalar(1.0, dt), a], dt)))
for _name, _onnx in (("floor", "Floor"), ("ceil", "Ceil"), ("round", "Round")):
    rule(_name)(_elementwise(lambda x, a, dt, _op=_onnx: x.op(_op, [a], dt)))


# normalization ---------------------------------------------------------------------------------------


def _normalized(x, a: str, axes: list[int], eps: float, dt: str) -> str:
    """As gtool's forward (gtool/ops/norm.py): x scaled by a power of two near its largest
    magnitude (exact; squares cannot overflow at 1e200), the mean as hi + mean(x - hi) (no
    cancellation at 1e15)."""
    big = reduce(x, "ReduceMax", x.op("Abs", [a], dt), axes, True, dt)
    usable = x.op("And", [x.op("Greater", [big, x.scalar(0.0, dt)], "bool"),
                          x.op("Equal", [x.op("Sub", [big, big], dt), x.scalar(0.0, dt)], "bool")], "bool")
    log2 = x.op("Floor", [x.op("Mul", [x.op("Log", [x.op("Where", [usable, big, x.scalar(1.0, dt)], dt)], dt),
                                        x.scalar(1 / math.log(2), dt)], dt)], dt)
    big = x.op("Pow", [x.scalar(2.0, dt), log2], dt)  # a power of two: the scaling is exact
    xs = x.op("Div", [a, big], dt)
    d = x.op("Sub", [xs, reduce(x, "ReduceMean", xs, axes, True, dt)], dt)
    xc = x.op("Sub", [d, reduce(x, "ReduceMean", d, axes, True, dt)], dt)
    var = reduce(x, "ReduceMean", x.op("Mul", [xc, xc], dt), axes, True, dt)
    eps_s = x.op("Div", [x.op("Div", [x.scalar(eps, dt), big], dt), big], dt)
    scaled = x.op("Div", [xc, x.op("Sqrt", [x.op("Add", [var, eps_s], dt)], dt)], dt)
    tiny = x.op("Div", [x.op("Mul", [xc, big], dt), x.scalar(math.sqrt(eps) if eps > 0 else 0.0, dt)], dt)
    return x.op("Where", [x.op("Equal", [eps_s, x.scalar(np.inf, dt)], "bool"), tiny, scaled], dt)


def _channel(x, p: str, rank: int, dt: str) -> str:
    return x.op("Unsqueeze", [p, x.ints(list(range(1, rank - 1)))], dt) if rank > 2 else p


def _affine(x, xhat: str, scale: str, bias: str, dt: str) -> str:
    return x.op("Add", [x.op("Mul", [xhat, scale], dt), bias], dt)


@rule("layer_norm")
def layer_norm(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a, scale, bias = (x.value(i, dt) for i in node.inputs)
    rank = len(x.types[node.inputs[0]].shape)
    axis = node.attrs.get("axis", -1) % rank
    xhat = _normalized(x, a, list(range(axis, rank)), float(node.attrs.get("epsilon", 1e-5)), dt)
    return _affine(x, xhat, scale, bias, dt)


@rule("instance_norm")
def instance_norm(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a, scale, bias = (x.value(i, dt) for i in node.inputs)
    rank = len(x.types[node.inputs[0]].shape)
    xhat = _normalized(x, a, list(range(2, rank)), float(node.attrs.get("epsilon", 1e-5)), dt)
    return _affine(x, xhat, _channel(x, scale, rank, dt), _channel(x, bias, rank, dt), dt)


@rule("batch_norm")
def batch_norm(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a, scale, bias, mean, var = (x.value(i, dt) for i in node.inputs)
    rank = len(x.types[node.inputs[0]].shape)
    eps = float(node.attrs.get("epsilon", 1e-5))
    if node.attrs.get("training"):
        xhat = _normalized(x, a, [0] + list(range(2, rank)), eps, dt)
    else:
        den = x.op("Sqrt", [x.op("Add", [_channel(x, var, rank, dt), x.scalar(eps, dt)], dt)], dt)
        xhat = x.op("Div", [x.op("Sub", [a, _channel(x, mean, rank, dt)], dt), den], dt)
    return _affine(x, xhat, _channel(x, scale, rank, dt), _channel(x, bias, rank, dt), dt)


# dropout ------------------------------------------------------------------------------------------------


@rule("dropout")
def dropout(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a = x.value(node.inputs[0], dt)
    attrs = {"ratio": 0.5, "seed": 0, "training": False, **{k: v for k, v in node.attrs.items() if v is not None}}
    if len(node.inputs) == 1 and (not attrs["training"] or attrs["ratio"] == 0):
        return x.op("Identity", [a], dt)
    shape = x.types[node.inputs[0]].shape
    if not all(d.is_const for d in shape):
        raise ExportError("onnx-export", "dropout in training mode needs a shape known at export (its mask is "
                          "written as a constant)", node=node.name, op=node.op, **node.loc.where())
    draws = dropout_draws(tuple(d.value for d in shape), attrs["seed"])
    ratio = x.value(node.inputs[1], "float64") if len(node.inputs) > 1 else x.scalar(attrs["ratio"], "float64")
    keep = x.op("GreaterOrEqual", [x.const(draws, "float64"), ratio], "bool")
    scaled = x.cast(x.op("Div", [x.value(node.inputs[0], "float64"), x.op("Sub", [x.scalar(1.0, "float64"), ratio],
                                                                          "float64")], "float64"), dt)
    out = x.op("Where", [keep, scaled, x.scalar(0.0, dt)], dt)
    if len(node.inputs) > 2:
        return x.op("Where", [x.value(node.inputs[2], "bool"), out, a], dt)
    if len(node.inputs) == 2 and not attrs["training"]:
        return x.op("Identity", [a], dt)
    return out
