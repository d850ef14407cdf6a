"""One ONNX export rule per gtool op: `rule(x, node) -> name of the value holding the result`.

`x` is the `Exporter` (gtool/onnx/export.py); the exporter then gives the result the node's
name. Ops with an ONNX op of the same meaning map to it (with Casts where NumPy would promote
mixed dtypes); the others are written as their decomposition:

- the composites whose ONNX counterpart is missing or less accurate in onnxruntime (sigmoid,
  softplus, logsumexp, cross_entropy) run gtool's own template (gtool/ops/templates.py) on
  `OnnxPrims`, a primitive namespace that emits ONNX nodes, so the exported model computes
  them step for step as gtool does;
- log1p and expm1 as the classic accurate formulas (Goldberg's and Kahan's), since ONNX has
  neither: log(1 + x) and exp(x) - 1 would lose every digit near 0;
- the shape helpers from the inferred shapes (sum_to -> ReduceSum over the broadcast axes,
  size -> a constant or ReduceProd of Shape, squeeze without axes -> the axes known to be 1),
  one_hot as Equal against a Range (a target outside 0..depth-1 gives zeros, as in gtool;
  ONNX's OneHot would wrap negative ones), take_along_axis as GatherElements after expanding
  both operands to the broadcast shape.

`tests/test_onnx_export.py` runs every op's cases through onnxruntime, so an op registered
without a rule here fails there by name.
"""

from __future__ import annotations

import numpy as np

from ..dims import Dim, parse_dim, parse_index
from ..ir import Node
from ..ops import REGISTRY
from ..ops.registry import result_type
from ..ops.templates import cross_entropy as ce_template
from ..ops.templates import log_softmax as log_softmax_template
from ..ops.templates import logsumexp as lse_template
from ..ops.templates import sigmoid as sigmoid_template
from ..ops.templates import softmax as softmax_template
from ..ops.templates import softplus as softplus_template

RULES: dict = {}


def rule(*names: str):
    def deco(fn):
        for n in names:
            RULES[n] = fn
        return fn

    return deco


def _compute(dtype: str) -> str:
    """The dtype arithmetic runs in for an output of `dtype`: bool results (NumPy's add, mul,
    max of bools are or/and) are computed on int64 and cast back."""
    return "int64" if dtype == "bool" else dtype


def _axes(value, rank: int) -> list[int] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, int) else list(value)
    return [a % rank if rank else a for a in items]


# elementwise ---------------------------------------------------------------------------------

_UNARY = {"neg": "Neg", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "abs": "Abs", "sign": "Sign", "sin": "Sin",
          "cos": "Cos", "tanh": "Tanh", "relu": "Relu"}
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "maximum": "Max", "minimum": "Min"}
_COMPARE = {"greater": "Greater", "less": "Less", "equal": "Equal"}


@rule(*_UNARY)
def unary(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a = x.value(node.inputs[0], dt)
    if dt == "bool" and node.op in ("abs", "sign", "relu"):
        return a  # |b|, sign(b) and max(b, 0) are b
    if node.op == "relu" and not dt.startswith("float"):
        return x.op("Max", [a, x.scalar(0, dt)], dt)  # onnxruntime's Relu is float-only
    return x.op(_UNARY[node.op], [a], dt)


@rule("identity", "stop_gradient")
def identity(x, node: Node) -> str:
    return x.value(node.inputs[0], x.out_type(node).dtype)  # stop_gradient's meaning is the identity forward


@rule("square")
def square(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a = x.value(node.inputs[0], _compute(dt))
    return x.cast(x.op("Mul", [a, a], _compute(dt)), dt)


@rule(*_BINARY)
def binary(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a, b = (x.value(i, _compute(dt)) for i in node.inputs)
    return x.cast(x.op(_BINARY[node.op], [a, b], _compute(dt)), dt)


@rule("trunc_div")
def trunc_div(x, node: Node) -> str:
    """ONNX's Div on integers truncates toward zero: exactly gtool's trunc_div."""
    dt = x.out_type(node).dtype
    a, b = (x.value(i, dt) for i in node.inputs)
    return x.op("Div", [a, b], dt)


@rule(*_COMPARE)
def compare(x, node: Node) -> str:
    common = result_type([x.types[i] for i in node.inputs]).dtype
    if common == "bool" and node.op != "equal":
        common = "int64"
    a, b = (x.value(i, common) for i in node.inputs)
    return x.op(_COMPARE[node.op], [a, b], "bool")


@rule("where")
def where(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    c = x.value(node.inputs[0], "bool")
    a, b = (x.value(i, dt) for i in node.inputs[1:])
    return x.op("Where", [c, a, b], dt)


@rule("cast")
def cast(x, node: Node) -> str:
    return x.value(node.inputs[0], x.out_type(node).dtype)


@rule("log1p")
def log1p(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    return log1p_nodes(x, x.value(node.inputs[0], dt), dt)


def log1p_nodes(x, a: str, dt: str) -> str:
    """Goldberg: u = 1 + a, d = u - 1; log1p(a) = a where d == 0, else log(u) * (a / d) (a / d
    is 1 where d == a: huge a, and ±inf, where a / d would be NaN)."""
    one = x.scalar(1, dt)
    u = x.op("Add", [one, a], dt)
    d = x.op("Sub", [u, one], dt)
    ratio = x.op("Where", [x.op("Equal", [d, a], "bool"), one, x.op("Div", [a, d], dt)], dt)
    body = x.op("Mul", [x.op("Log", [u], dt), ratio], dt)
    return x.op("Where", [x.op("Equal", [d, x.scalar(0, dt)], "bool"), a, body], dt)


@rule("expm1")
def expm1(x, node: Node) -> str:
    """Kahan: u = e^a; expm1(a) = a where u == 1, -1 where u - 1 == -1, else (u - 1) * a / log(u)
    (the ratio taken as 1 where u is inf, where it would be inf / inf)."""
    dt = x.out_type(node).dtype
    return expm1_nodes(x, x.value(node.inputs[0], dt), dt)


def expm1_nodes(x, a: str, dt: str) -> str:
    """Kahan's expm1 of the value `a` (see `expm1`)."""
    one = x.scalar(1, dt)
    u = x.op("Exp", [a], dt)
    d = x.op("Sub", [u, one], dt)
    inf = x.op("Equal", [u, x.scalar(np.inf, dt)], "bool")
    ratio = x.op("Where", [inf, one, x.op("Div", [a, x.op("Log", [u], dt)], dt)], dt)
    body = x.op("Mul", [d, ratio], dt)
    body = x.op("Where", [x.op("Equal", [d, x.scalar(-1, dt)], "bool"), x.scalar(-1, dt), body], dt)
    return x.op("Where", [x.op("Equal", [u, one], "bool"), a, body], dt)


# templates: gtool's own decompositions, as ONNX nodes ---------------------------------------------


class OnnxPrims:
    """The primitives of gtool/ops/templates.py as ONNX nodes of one float dtype."""

    def __init__(self, x, dtype: str) -> None:
        self.x, self.dt = x, dtype

    def _v(self, a) -> str:
        if isinstance(a, bool | int | float):
            return self.x.scalar(a, self.dt)
        return self.x.cast(a, self.dt) if self.x.dtype(a) == "bool" else a

    def _op(self, op_type: str, *args, dtype=None, **attrs) -> str:
        return self.x.op(op_type, [self._v(a) for a in args], dtype or self.dt, **attrs)

    def exp(self, a):
        return self._op("Exp", a)

    def log(self, a):
        return self._op("Log", a)

    def log1p(self, a):
        return log1p_nodes(self.x, self._v(a), self.dt)

    def neg(self, a):
        return self._op("Neg", a)

    def abs(self, a):
        return self._op("Abs", a)

    def add(self, a, b):
        return self._op("Add", a, b)

    def sub(self, a, b):
        return self._op("Sub", a, b)

    def mul(self, a, b):
        return self._op("Mul", a, b)

    def div(self, a, b):
        return self._op("Div", a, b)

    def maximum(self, a, b):
        return self._op("Max", a, b)

    def minimum(self, a, b):
        return self._op("Min", a, b)

    def where(self, c, a, b):
        return self.x.op("Where", [c, self._v(a), self._v(b)], self.dt)

    def gt(self, a, b):
        return self._op("Greater", a, b, dtype="bool")

    def ge(self, a, b):
        return self._op("GreaterOrEqual", a, b, dtype="bool")

    def eq(self, a, b):
        return self._op("Equal", a, b, dtype="bool")

    def isfinite(self, a):
        """a - a == 0: exactly the finite a (inf - inf and NaN - NaN are NaN); two ops every
        importer has, where IsInf/IsNaN/Or are three less common ones."""
        return self._op("Equal", self._op("Sub", a, a), 0.0, dtype="bool")

    def max(self, v, axes):
        """NaN where the reduced entries hold one (onnxruntime's ReduceMax skips NaN)."""
        x = self.x
        out = reduce(x, "ReduceMax", v, axes, True, self.dt)
        no_nan = reduce(x, "ReduceMin", x.cast(x.op("Equal", [v, v], "bool"), self.dt), axes, True, self.dt)
        return x.op("Where", [x.cast(no_nan, "bool"), out, x.scalar(np.nan, self.dt)], self.dt)

    def sum(self, v, axes):
        return reduce(self.x, "ReduceSum", v, axes, True, self.dt)

    def count(self, mask, axes):
        return reduce(self.x, "ReduceSum", self.x.cast(mask, self.dt), axes, True, self.dt)

    def squeeze(self, v, axes):
        if axes is None:
            return self.x.op("Reshape", [v, self.x.ints([])], self.dt)
        return self.x.op("Squeeze", [v, self.x.ints(_axes(axes, 0))], self.dt)

    def rows(self, v):
        return self.x.op("Squeeze", [v, self.x.ints([-1])], self.dt)

    def pick(self, v, t):
        x = self.x
        index = x.op("Unsqueeze", [x.cast(t, "int64"), x.ints([-1])], "int64")
        return self.rows(x.op("GatherElements", [v, index], self.dt, axis=-1))

    def total(self, v, kind):
        return reduce(self.x, "ReduceMean" if kind == "mean" else "ReduceSum", v, None, False, self.dt)


def reduce(x, op_type: str, v: str, axes, keepdims: bool, dtype: str) -> str:
    """An ONNX reduction over `axes` (None: all); an empty list reduces nothing."""
    if axes is not None and not isinstance(axes, int) and len(axes) == 0:
        return v
    keep = int(bool(keepdims))
    if axes is None:
        return x.op(op_type, [v], dtype, keepdims=keep)
    axes = [axes] if isinstance(axes, int) else list(axes)
    if x.axes_input_or_attr(op_type):
        return x.op(op_type, [v, x.ints(axes)], dtype, keepdims=keep)
    return x.op(op_type, [v], dtype, keepdims=keep, axes=axes)


@rule("sigmoid", "softplus")
def scalar_template(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    fn = sigmoid_template if node.op == "sigmoid" else softplus_template
    return fn(OnnxPrims(x, dt), x.value(node.inputs[0], dt))


@rule("logsumexp")
def logsumexp(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    attrs = REGISTRY[node.op].full_attrs(node.attrs)
    return lse_template(OnnxPrims(x, dt), x.value(node.inputs[0], dt), attrs["axis"], attrs["keepdims"])


@rule("cross_entropy")
def cross_entropy(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    attrs = REGISTRY[node.op].full_attrs(node.attrs)
    targets = x.value(node.inputs[1])
    return ce_template(OnnxPrims(x, dt), x.value(node.inputs[0], dt), targets, attrs["reduction"])


@rule("softmax", "log_softmax")
def softmax(x, node: Node) -> str:
    """gtool's templates: onnxruntime's Softmax and LogSoftmax give NaN across a row holding
    +inf, where gtool (and JAX) give NaN at the +inf entries only."""
    dt = x.out_type(node).dtype
    axis = REGISTRY[node.op].full_attrs(node.attrs)["axis"]
    fn = softmax_template if node.op == "softmax" else log_softmax_template
    return fn(OnnxPrims(x, dt), x.value(node.inputs[0], dt), axis)


# reductions -----------------------------------------------------------------------------------

_REDUCE = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax", "min": "ReduceMin"}


@rule(*_REDUCE)
def reduction(x, node: Node) -> str:
    """sum, mean, max, min. onnxruntime's ReduceMax and ReduceMin skip NaN ([1, nan, 2] -> 2);
    gtool's give NaN, so a float max or min puts NaN back where the reduced entries hold one."""
    dt = x.out_type(node).dtype
    attrs = REGISTRY[node.op].full_attrs(node.attrs)
    v = x.value(node.inputs[0], _compute(dt))
    axes, keep = attrs["axis"], attrs["keepdims"]
    out = reduce(x, _REDUCE[node.op], v, axes, keep, _compute(dt))
    if node.op in ("max", "min") and dt.startswith("float") and out != v:
        no_nan = reduce(x, "ReduceMin", x.cast(x.op("Equal", [v, v], "bool"), dt), axes, keep, dt)  # 0: a NaN
        out = x.op("Where", [x.cast(no_nan, "bool"), out, x.scalar(np.nan, dt)], dt)
    return x.cast(out, dt)


# shapes ---------------------------------------------------------------------------------------


def _in_shape(x, node: Node, k: int = 0) -> tuple[Dim, ...]:
    return x.types[node.inputs[k]].shape


@rule("reshape")
def reshape(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    dims = [Dim.const(-1) if d == -1 else parse_dim(d) for d in node.attrs["shape"]]
    return x.op("Reshape", [x.value(node.inputs[0], dt), x.shape(dims)], dt)


@rule("broadcast_to")
def broadcast_to(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    return x.op("Expand", [x.value(node.inputs[0], dt), x.shape(x.out_type(node).shape)], dt)


@rule("transpose")
def transpose(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    perm = node.attrs.get("perm")
    rank = len(_in_shape(x, node))
    return x.op("Transpose", [x.value(node.inputs[0], dt)], dt, perm=_axes(perm, rank))


@rule("expand_dims")
def expand_dims(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    return x.op("Unsqueeze", [x.value(node.inputs[0], dt), x.ints(_axes(node.attrs["axis"], 0))], dt)


@rule("squeeze")
def squeeze(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    shape = _in_shape(x, node)
    axes = node.attrs.get("axis")
    axes = [k for k, d in enumerate(shape) if d == 1] if axes is None else _axes(axes, len(shape))
    v = x.value(node.inputs[0], dt)
    return x.op("Squeeze", [v, x.ints(axes)], dt) if axes else v


@rule("concat")
def concat(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    axis = REGISTRY[node.op].full_attrs(node.attrs)["axis"]
    return x.op("Concat", [x.value(i, dt) for i in node.inputs], dt, axis=axis)


@rule("slice")
def slice_(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    start, stop = (x.dim(parse_index(node.attrs[k])) for k in ("start", "stop"))
    return x.op("Slice", [x.value(node.inputs[0], dt), start, stop, x.ints([node.attrs["axis"]])], dt)


@rule("sum_to")
def sum_to(x, node: Node) -> str:
    """ReduceSum over the axes `like` broadcasts along (its missing leading axes, and its
    size-1 axes where x is not 1), then the leading axes squeezed."""
    dt = x.out_type(node).dtype
    xs, ls = _in_shape(x, node, 0), _in_shape(x, node, 1)
    lead = len(xs) - len(ls)
    axes = list(range(lead)) + [lead + k for k, d in enumerate(ls) if d == 1 and xs[lead + k] != 1]
    v = x.value(node.inputs[0], _compute(dt))
    if not axes:
        return x.cast(v, dt)
    out = reduce(x, "ReduceSum", v, axes, True, _compute(dt))
    if lead:
        out = x.op("Squeeze", [out, x.ints(list(range(lead)))], _compute(dt))
    return x.cast(out, dt)


@rule("size")
def size(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    shape = _in_shape(x, node)
    axes = _axes(node.attrs.get("axis"), len(shape))
    dims = [shape[k] for k in (range(len(shape)) if axes is None else axes)]
    if all(d.is_const for d in dims):
        return x.scalar(float(np.prod([d.value for d in dims])), dt)
    prod = reduce(x, "ReduceProd", x.shape(dims), None, False, "int64")
    return x.cast(prod, dt)


# linear algebra, indexing -------------------------------------------------------------------------


@rule("matmul")
def matmul(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a, b = (x.value(i, _compute(dt)) for i in node.inputs)
    return x.cast(x.op("MatMul", [a, b], _compute(dt)), dt)


@rule("one_hot")
def one_hot(x, node: Node) -> str:
    """(t[..., None] == arange(depth)) as the dtype: targets outside 0..depth-1 give zeros."""
    attrs = REGISTRY[node.op].full_attrs(node.attrs)
    depth = parse_dim(attrs["depth"])
    t = x.op("Unsqueeze", [x.value(node.inputs[0], "int64"), x.ints([-1])], "int64")
    if depth.is_const:
        classes = x.ints(range(depth.value))
    else:
        n = x.op("Squeeze", [x.dim(depth), x.ints([0])], "int64")
        classes = x.op("Range", [x.scalar(0, "int64"), n, x.scalar(1, "int64")], "int64")
    return x.cast(x.op("Equal", [t, classes], "bool"), attrs["dtype"])


@rule("take_along_axis")
def take_along_axis(x, node: Node) -> str:
    """GatherElements, both operands first expanded to the broadcast of their other axes."""
    dt = x.out_type(node).dtype
    out = x.out_type(node).shape
    axis = node.attrs["axis"] % len(out)
    v, index = x.value(node.inputs[0], dt), x.value(node.inputs[1])
    for k, name in ((0, "v"), (1, "index")):
        shape = _in_shape(x, node, k)
        want = tuple(shape[axis] if j == axis else d for j, d in enumerate(out))
        if want != tuple(shape):
            src = v if name == "v" else index
            grown = x.op("Expand", [src, x.shape(want)], x.dtype(src))
            v, index = (grown, index) if name == "v" else (v, grown)
    return x.op("GatherElements", [v, index], dt, axis=axis)


from . import export_indexing, export_nn, export_norm  # noqa: E402, F401  (register the rules of the other ops)
