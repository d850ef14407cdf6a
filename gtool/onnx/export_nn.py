"""Export rules for the activations, normalizations, dropout, erf, erfc and gelu (the window
ops are in export_windows.py).

The rule of thumb: the ONNX op of the same meaning where onnxruntime runs it at the value's
dtype with gtool's numbers, a decomposition into ops it runs otherwise. onnxruntime has no
float64 kernel for Erf, Elu, Selu, LeakyRelu, HardSigmoid, Softsign, InstanceNormalization,
and ONNX float attributes are float32 (alpha = 0.01 would change a float64 result by 2e-8), so
float64 graphs get the activations as their formulas (elu and selu through the accurate expm1
of export_ops); the norms and erf / erfc / gelu are computed in float64 as gtool computes them
(its scaling, its Chebyshev fits) and rounded once for float32.
"""

from __future__ import annotations

import numpy as np

from ..ir import Node
from ..ops import REGISTRY
from .export_ops import expm1_nodes, reduce, rule


def _attrs(node: Node) -> dict:
    return REGISTRY[node.op].full_attrs(node.attrs)


def _static(shape) -> tuple[int, ...] | None:
    return tuple(d.value for d in shape) if all(d.is_const for d in shape) else None


def _f(x, value: float, dt: str) -> str:
    return x.scalar(value, dt)


# activations -------------------------------------------------------------------------------------


@rule("reciprocal", "floor", "ceil", "round")
def rounding(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    op = {"reciprocal": "Reciprocal", "floor": "Floor", "ceil": "Ceil", "round": "Round"}[node.op]
    return x.op(op, [x.value(node.inputs[0], dt)], dt)


@rule("leaky_relu")
def leaky_relu(x, node: Node) -> str:
    dt, a = x.out_type(node).dtype, _attrs(node)["alpha"]
    v = x.value(node.inputs[0], dt)
    if dt == "float32":
        return x.op("LeakyRelu", [v], dt, alpha=float(a))
    return x.op("Where", [x.op("Less", [v, _f(x, 0, dt)], "bool"), x.op("Mul", [v, _f(x, a, dt)], dt), v], dt)


def _elu_body(x, v: str, alpha: float, dt: str) -> str:
    """x where x > 0, else alpha expm1(x) (NaN stays NaN: the comparison is false, expm1 NaN)."""
    neg = x.op("Mul", [expm1_nodes(x, v, dt), _f(x, alpha, dt)], dt)
    return x.op("Where", [x.op("Greater", [v, _f(x, 0, dt)], "bool"), v, neg], dt)


@rule("elu")
def elu(x, node: Node) -> str:
    dt, a = x.out_type(node).dtype, _attrs(node)["alpha"]
    v = x.value(node.inputs[0], dt)
    if dt == "float32":
        return x.op("Elu", [v], dt, alpha=float(a))
    return _elu_body(x, v, a, dt)


@rule("selu")
def selu(x, node: Node) -> str:
    dt, attrs = x.out_type(node).dtype, _attrs(node)
    v = x.value(node.inputs[0], dt)
    if dt == "float32":
        return x.op("Selu", [v], dt, alpha=float(attrs["alpha"]), gamma=float(attrs["gamma"]))
    return x.op("Mul", [_elu_body(x, v, attrs["alpha"], dt), _f(x, attrs["gamma"], dt)], dt)


@rule("hard_sigmoid")
def hard_sigmoid(x, node: Node) -> str:
    dt, attrs = x.out_type(node).dtype, _attrs(node)
    v = x.value(node.inputs[0], dt)
    if dt == "float32":
        return x.op("HardSigmoid", [v], dt, alpha=float(attrs["alpha"]), beta=float(attrs["beta"]))
    lin = x.op("Add", [x.op("Mul", [v, _f(x, attrs["alpha"], dt)], dt), _f(x, attrs["beta"], dt)], dt)
    return x.op("Max", [x.op("Min", [lin, _f(x, 1, dt)], dt), _f(x, 0, dt)], dt)


@rule("softsign")
def softsign(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    v = x.value(node.inputs[0], dt)
    body = x.op("Div", [v, x.op("Add", [_f(x, 1, dt), x.op("Abs", [v], dt)], dt)], dt)
    inf = x.op("Equal", [x.op("Abs", [v], dt), _f(x, np.inf, dt)], "bool")  # inf / inf: the sign instead
    return x.op("Where", [inf, x.op("Sign", [v], dt), body], dt)


# normalization, dropout -----------------------------------------------------------------------------


def _normalized(x, v: str, axes: list[int], eps: float) -> str:
    """(v - mean) / sqrt(var + eps) over `axes` in float64, as gtool/ops/norm.py computes it:
    v scaled by a power of two s near its largest magnitude (so squares of 1e200 cannot overflow), eps by
    s^2; where eps / s^2 is inf (rows of 1e-300) the result is (v - mean) / sqrt(eps)."""
    f = "float64"
    big = reduce(x, "ReduceMax", x.op("Abs", [v], f), axes, True, f)
    usable = x.op("And", [x.op("Equal", [x.op("Sub", [big, big], f), _f(x, 0, f)], "bool"),
                          x.op("Greater", [big, _f(x, 0, f)], "bool")], "bool")
    # a power of two near big (exact to divide by: 1e15 + 1 scaled by 1e15 itself would round)
    log2 = x.op("Floor", [x.op("Div", [x.op("Log", [big], f), _f(x, float(np.log(2.0)), f)], f)], f)
    s = x.op("Where", [usable, x.op("Pow", [_f(x, 2.0, f), log2], f), _f(x, 1, f)], f)
    xs = x.op("Div", [v, s], f)
    mean = reduce(x, "ReduceMean", xs, axes, True, f)
    xc = x.op("Sub", [xs, mean], f)
    xc = x.op("Sub", [xc, reduce(x, "ReduceMean", xc, axes, True, f)], f)  # the mean's rounding, again
    var = reduce(x, "ReduceMean", x.op("Mul", [xc, xc], f), axes, True, f)
    eps_s = x.op("Div", [_f(x, eps, f), x.op("Mul", [s, s], f)], f) if eps else _f(x, 0.0, f)  # (0 / 0 at 1e-300)
    scaled = x.op("Div", [xc, x.op("Sqrt", [x.op("Add", [var, eps_s], f)], f)], f)
    tiny = x.op("Div", [x.op("Mul", [xc, s], f), _f(x, float(np.sqrt(eps)), f)], f)
    return x.op("Where", [x.op("Equal", [eps_s, _f(x, np.inf, f)], "bool"), tiny, scaled], f)


def _channel(x, p: str, rank: int, dt: str) -> str:
    """A per-channel [C] tensor shaped [C, 1, ...] to broadcast along axis 1."""
    if rank <= 2:
        return p
    return x.op("Unsqueeze", [p, x.ints(list(range(1, rank - 1)))], dt)


@rule("layer_norm")
def layer_norm(x, node: Node) -> str:
    """In float64 (float32 rounded once at the end), as gtool computes every norm."""
    dt, attrs = x.out_type(node).dtype, _attrs(node)
    v, scale, bias = (x.value(i, "float64") for i in node.inputs)
    rank = len(x.types[node.inputs[0]].shape)
    y = _normalized(x, v, list(range(attrs["axis"] % rank, rank)), attrs["epsilon"])
    return x.cast(x.op("Add", [x.op("Mul", [y, scale], "float64"), bias], "float64"), dt)


@rule("instance_norm")
def instance_norm(x, node: Node) -> str:
    dt, attrs = x.out_type(node).dtype, _attrs(node)
    v, scale, bias = (x.value(i, "float64") for i in node.inputs)
    rank = len(x.types[node.inputs[0]].shape)
    y = _normalized(x, v, list(range(2, rank)), attrs["epsilon"])
    y = x.op("Add", [x.op("Mul", [y, _channel(x, scale, rank, "float64")], "float64"),
                     _channel(x, bias, rank, "float64")], "float64")
    return x.cast(y, dt)


@rule("batch_norm")
def batch_norm(x, node: Node) -> str:
    """Inference: (x - mean) / sqrt(var + eps) * scale + bias with the given running statistics;
    training: the batch's (over axes 0, 2, ...). In float64, as gtool."""
    f = "float64"
    dt, attrs = x.out_type(node).dtype, _attrs(node)
    v, scale, bias, mean, var = (x.value(i, f) for i in node.inputs)
    rank = len(x.types[node.inputs[0]].shape)
    eps = attrs["epsilon"]
    if attrs["training"]:
        y = _normalized(x, v, [0] + list(range(2, rank)), eps)
    else:
        m, s = _channel(x, mean, rank, f), _channel(x, var, rank, f)
        y = x.op("Div", [x.op("Sub", [v, m], f), x.op("Sqrt", [x.op("Add", [s, _f(x, eps, f)], f)], f)], f)
    y = x.op("Add", [x.op("Mul", [y, _channel(x, scale, rank, f)], f), _channel(x, bias, rank, f)], f)
    return x.cast(y, dt)


@rule("dropout")
def dropout(x, node: Node) -> str:
    """At inference the identity. In training, where the shape is known, gtool's own mask: its
    uniform draws (NumPy's PCG64 from `seed`) are a constant, kept where >= ratio (the ratio
    may be a run-time input), and x / (1 - ratio) in float64 rounded once, as gtool computes it.
    With symbolic dims ONNX's Dropout, whose generator differs from gtool's."""
    dt, attrs = x.out_type(node).dtype, _attrs(node)
    v = x.value(node.inputs[0], dt)
    given = list(node.inputs[1:])
    if not given and not attrs["training"]:
        return v
    ratio = x.value(given[0], "float64") if given else x.scalar(attrs["ratio"], "float64")
    training = x.value(given[1], "bool") if len(given) > 1 else x.const(np.asarray(bool(attrs["training"])))
    shape = _static(x.types[node.inputs[0]].shape)
    if shape is None:
        return x.op("Dropout", [v, x.cast(ratio, dt), training], dt, seed=int(attrs["seed"]))
    draws = x.const(np.random.default_rng(attrs["seed"]).random(shape))
    keep = x.op("GreaterOrEqual", [draws, ratio], "bool")
    kept = x.op("Div", [x.cast(v, "float64"), x.op("Sub", [x.scalar(1, "float64"), ratio], "float64")], "float64")
    dropped = x.op("Where", [keep, x.cast(kept, dt), x.scalar(0, dt)], dt)
    return x.op("Where", [training, dropped, v], dt)


@rule("flatten")
def flatten(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    rank = len(x.types[node.inputs[0]].shape)
    axis = _attrs(node)["axis"]
    return x.op("Flatten", [x.value(node.inputs[0], dt)], dt, axis=axis + rank if axis < 0 else axis)


# erf, erfc, gelu: gtool's own Chebyshev fits (gtool/ops/erf.py) as ONNX nodes, in float64 -----------


def _horner(x, coefs, u: str) -> str:
    """sum c_k u^k for per-element coefficient vectors `coefs` (names), highest last."""
    r = coefs[-1]
    for c in coefs[-2::-1]:
        r = x.op("Add", [x.op("Mul", [r, u], "float64"), c], "float64")
    return r


def _tail_erfc(x, a: str) -> str:
    """erfc(a) for a in [0.5, 28): h(1/a) e^(-a^2) / a with the fit of a's interval (its
    coefficients gathered per element) and e^(-a^2) from Dekker's exact square of a."""
    from ..ops.erf import TAIL

    f = "float64"
    width = max(len(c) for _, _, c in TAIL)
    table = np.zeros((len(TAIL), width))
    for i, (_, _, coef) in enumerate(TAIL):
        table[i, :len(coef)] = coef
    lows = np.array([lo for lo, _, _ in TAIL])
    scale = np.array([2.0 / (1.0 / lo - 1.0 / hi) for lo, hi, _ in TAIL])
    shift = np.array([(1.0 / lo + 1.0 / hi) / (1.0 / lo - 1.0 / hi) for lo, hi, _ in TAIL])
    above = x.op("GreaterOrEqual", [x.op("Unsqueeze", [a, x.ints([-1])], f), x.const(lows)], "bool")
    idx = x.op("Sub", [reduce(x, "ReduceSum", x.cast(above, "int64"), [-1], False, "int64"), x.scalar(1, "int64")],
               "int64")
    idx = x.op("Max", [idx, x.scalar(0, "int64")], "int64")  # below 0.5: any row (masked later)
    u = x.op("Sub", [x.op("Div", [x.op("Gather", [x.const(scale), idx], f, axis=0), a], f),
                     x.op("Gather", [x.const(shift), idx], f, axis=0)], f)
    coefs = [x.op("Gather", [x.const(np.ascontiguousarray(table[:, j])), idx], f, axis=0) for j in range(width)]
    h = _horner(x, coefs, u)
    sq = x.op("Mul", [a, a], f)
    c = x.op("Mul", [a, x.scalar(134217729.0, f)], f)  # Veltkamp's split of a
    ah = x.op("Sub", [c, x.op("Sub", [c, a], f)], f)
    al = x.op("Sub", [a, ah], f)
    e = x.op("Sub", [x.op("Mul", [ah, ah], f), sq], f)
    e = x.op("Add", [e, x.op("Mul", [x.op("Mul", [ah, al], f), x.scalar(2.0, f)], f)], f)
    e = x.op("Add", [e, x.op("Mul", [al, al], f)], f)  # a^2 = sq + e exactly
    h = x.op("Div", [x.op("Mul", [h, x.op("Sub", [x.scalar(1.0, f), e], f)], f), a], f)
    return x.op("Mul", [h, x.op("Exp", [x.op("Neg", [sq], f)], f)], f)


def _small_erf(x, v: str) -> str:
    """erf(v) for |v| < 0.5: v S(8 v^2 - 1)."""
    from ..ops.erf import SMALL

    f = "float64"
    u = x.op("Sub", [x.op("Mul", [x.op("Mul", [v, v], f), x.scalar(8.0, f)], f), x.scalar(1.0, f)], f)
    return x.op("Mul", [v, _horner(x, [x.scalar(c, f) for c in SMALL], u)], f)


def _select(x, cases: list[tuple[str, str]], default: str) -> str:
    """The value of the first true condition (Where chain), else `default`."""
    out = default
    for cond, value in reversed(cases):
        out = x.op("Where", [cond, value, out], "float64")
    return out


def erf_nodes(x, v: str, complement: bool) -> str:
    """erf(v) or erfc(v) of a float64 value, as gtool/ops/erf.py computes them."""
    f = "float64"
    a = x.op("Abs", [v], f)
    lt = lambda p, q: x.op("Less", [p, x.scalar(q, f)], "bool")  # noqa: E731
    ge = lambda p, q: x.op("GreaterOrEqual", [p, x.scalar(q, f)], "bool")  # noqa: E731
    small, tail = _small_erf(x, v), _tail_erfc(x, a)
    negative = lt(v, 0.0)
    if not complement:
        big = x.op("Sub", [x.scalar(1.0, f), tail], f)
        signed = x.op("Where", [negative, x.op("Neg", [big], f), big], f)
        one = x.op("Where", [negative, x.scalar(-1.0, f), x.scalar(1.0, f)], f)
        out = _select(x, [(lt(a, 0.5), small), (lt(a, 6.0), signed)], one)
    else:
        cases = [(lt(a, 0.5), x.op("Sub", [x.scalar(1.0, f), small], f)),
                 (ge(v, 28.0), x.scalar(0.0, f)), (ge(v, 0.5), tail),
                 (x.op("LessOrEqual", [v, x.scalar(-6.0, f)], "bool"), x.scalar(2.0, f))]
        out = _select(x, cases, x.op("Sub", [x.scalar(2.0, f), tail], f))
    return x.op("Where", [x.op("Equal", [v, v], "bool"), out, v], f)  # NaN stays NaN


@rule("erf", "erfc")
def erf(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    return x.cast(erf_nodes(x, x.value(node.inputs[0], "float64"), node.op == "erfc"), dt)


@rule("gelu")
def gelu(x, node: Node) -> str:
    """0.5 x erfc(-x / sqrt 2) (the exact form), or x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715
    x^3) (tanh), in float64 (rounded once for float32, as gtool); -0 at -inf."""
    from ..ops.activations import _GELU_A, _GELU_C, _SQRT1_2
    from ..ops.templates import sigmoid as sigmoid_template
    from .export_ops import OnnxPrims

    f, dt = "float64", x.out_type(node).dtype
    v = x.value(node.inputs[0], f)
    if _attrs(node)["approximate"] == "tanh":
        cube = x.op("Mul", [x.op("Mul", [v, v], f), v], f)
        u2 = x.op("Mul", [x.op("Add", [v, x.op("Mul", [cube, x.scalar(_GELU_A, f)], f)], f),
                          x.scalar(2 * _GELU_C, f)], f)
        out = x.op("Mul", [v, sigmoid_template(OnnxPrims(x, f), u2)], f)
    else:
        z = x.op("Mul", [v, x.scalar(-_SQRT1_2, f)], f)
        out = x.op("Mul", [x.op("Mul", [v, x.scalar(0.5, f)], f), erf_nodes(x, z, True)], f)
    out = x.op("Where", [x.op("Equal", [v, x.scalar(-np.inf, f)], "bool"), x.scalar(-0.0, f), out], f)
    return x.cast(out, dt)


from . import export_windows  # noqa: E402, F401  (registers the conv and pool rules)
