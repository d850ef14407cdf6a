"""Converters for ONNX's core ops: arithmetic, math, reductions, shape ops, casts, constants.

Each converter reads the ONNX node through the context and returns the gtool name of each
output (or a NumPy array for an output whose value is known at load, such as Shape's).
docs/onnx.md has the table of what maps to what.
"""

from __future__ import annotations

import numpy as np

from ...dims import Dim
from ..dtypes import gtool_dtype
from ..registry import ImportContext, OnnxNode, converter

# elementwise ops with the same meaning in both --------------------------------------------------

_UNARY = {"Neg": "neg", "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Tanh": "tanh", "Sigmoid": "sigmoid",
          "Relu": "relu", "Abs": "abs", "Sin": "sin", "Cos": "cos", "Softplus": "softplus"}
_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Equal": "equal", "Greater": "greater", "Less": "less"}


def _unary(gop: str):
    def conv(ctx: ImportContext, node: OnnxNode) -> list[str]:
        (x,) = ctx.inputs(node, 1)
        return [ctx.add(gop, [x], {}, node)]

    return conv


def _binary(gop: str):
    def conv(ctx: ImportContext, node: OnnxNode) -> list[str]:
        a, b = ctx.inputs(node, 2)
        return [ctx.add(gop, [a, b], {}, node)]

    return conv


for _op, _gop in _UNARY.items():
    converter(_op, strict=True)(_unary(_gop))
for _op, _gop in _BINARY.items():
    converter(_op, strict=True)(_binary(_gop))


def dims_attr(shape) -> list:
    """A shape as a gtool shape attr: ints, and dim expressions as text."""
    return [d.to_json() if isinstance(d, Dim) else int(d) for d in shape]


def _dtype(ctx: ImportContext, name: str) -> str:
    return ctx.type(name).dtype


@converter("Identity", skips={
    "test_identity_sequence": "a sequence-typed input: gtool values are tensors only",
    "test_identity_opt": "an optional-typed input: gtool values are tensors only"}, strict=True)
def identity(ctx: ImportContext, node: OnnxNode) -> list[str]:
    (x,) = ctx.inputs(node, 1)
    return [ctx.add("identity", [x], {}, node)]


@converter("Div", strict=True)
def div(ctx: ImportContext, node: OnnxNode) -> list[str]:
    """Float division is `div`; on integers ONNX truncates toward zero (C), which `trunc_div` does
    (NumPy's // floors: -7 // 2 is -4, ONNX gives -3)."""
    a, b = ctx.inputs(node, 2)
    if _dtype(ctx, a).startswith(("int", "uint")):
        return [ctx.add("trunc_div", [a, b], {}, node)]
    return [ctx.add("div", [a, b], {}, node)]


@converter("Pow", strict=True)
def pow_(ctx: ImportContext, node: OnnxNode) -> list[str]:
    """ONNX Pow's result has the base's type whatever the exponent's (float32 ** int64 is float32,
    int64 ** float32 is int64): gtool promotes, then the result is cast back to the base's dtype."""
    a, b = ctx.inputs(node, 2)
    y = ctx.add("pow", [a, b], {}, node)
    if _dtype(ctx, y) != _dtype(ctx, a):
        y = ctx.add("cast", [y], {"dtype": _dtype(ctx, a)}, node)
    return [y]


@converter("Not", strict=True)
def not_(ctx: ImportContext, node: OnnxNode) -> list[str]:
    (x,) = ctx.inputs(node, 1)
    return [ctx.add("equal", [x, ctx.const(np.array(False))], {}, node)]


@converter("Where", strict=True)
def where(ctx: ImportContext, node: OnnxNode) -> list[str]:
    c, a, b = ctx.inputs(node, 3)
    return [ctx.add("where", [c, a, b], {}, node)]


@converter("MatMul", strict=True)
def matmul(ctx: ImportContext, node: OnnxNode) -> list[str]:
    a, b = ctx.inputs(node, 2)
    return [ctx.add("matmul", [a, b], {}, node)]


@converter("Gemm", strict=True)
def gemm(ctx: ImportContext, node: OnnxNode) -> list[str]:
    """Y = alpha * A' B' + beta * C, with A' = A or Aᵀ (transA), B' likewise."""
    a, b, c = ctx.inputs(node, 3)
    if ctx.attr(node, "transA", 0):
        a = ctx.add("transpose", [a], {"perm": [1, 0]}, node)
    if ctx.attr(node, "transB", 0):
        b = ctx.add("transpose", [b], {"perm": [1, 0]}, node)
    y = ctx.add("matmul", [a, b], {}, node)
    dtype = _dtype(ctx, y)
    alpha, beta = ctx.attr(node, "alpha", 1.0), ctx.attr(node, "beta", 1.0)
    if alpha != 1.0:
        y = ctx.add("mul", [y, ctx.const(np.array(alpha, dtype))], {}, node)
    if c is not None:
        if beta != 1.0:
            c = ctx.add("mul", [c, ctx.const(np.array(beta, dtype))], {}, node)
        y = ctx.add("add", [y, c], {}, node)
    return [y]


# variadic ------------------------------------------------------------------------------------------


def _fold_inputs(ctx: ImportContext, node: OnnxNode, gop: str) -> str:
    names = [ctx.name(i) for i in node.input if i]
    if not names:
        ctx.unsupported(node, "no inputs")
    acc = names[0]
    for n in names[1:]:
        acc = ctx.add(gop, [acc, n], {}, node)
    return acc if len(names) > 1 else ctx.add("identity", [acc], {}, node)


@converter("Max", strict=True)
def max_(ctx: ImportContext, node: OnnxNode) -> list[str]:
    return [_fold_inputs(ctx, node, "maximum")]


@converter("Min", strict=True)
def min_(ctx: ImportContext, node: OnnxNode) -> list[str]:
    return [_fold_inputs(ctx, node, "minimum")]


@converter("Sum", strict=True)
def sum_(ctx: ImportContext, node: OnnxNode) -> list[str]:
    return [_fold_inputs(ctx, node, "add")]


@converter("Mean", strict=True)
def mean_(ctx: ImportContext, node: OnnxNode) -> list[str]:
    total = _fold_inputs(ctx, node, "add")
    n = len([i for i in node.input if i])
    if n == 1:
        return [total]
    return [ctx.add("div", [total, ctx.const(np.array(n, _dtype(ctx, total)))], {}, node)]


@converter("Clip", strict=True)
def clip(ctx: ImportContext, node: OnnxNode) -> list[str]:
    """min(max(x, lo), hi), as NumPy's clip (lo > hi gives hi); bounds are inputs since opset 11."""
    x = ctx.name(node.input[0])
    if ctx.opset < 11:
        lo, hi = ctx.attr(node, "min"), ctx.attr(node, "max")
        dtype = _dtype(ctx, x)
        lo = None if lo is None else ctx.const(np.array(lo, dtype))
        hi = None if hi is None else ctx.const(np.array(hi, dtype))
    else:
        lo = ctx.name(node.input[1]) if ctx.has_input(node, 1) else None
        hi = ctx.name(node.input[2]) if ctx.has_input(node, 2) else None
    y = x
    if lo is not None:
        y = ctx.add("maximum", [y, lo], {}, node)
    if hi is not None:
        y = ctx.add("minimum", [y, hi], {}, node)
    return [y if y != x else ctx.add("identity", [x], {}, node)]


# casts and constants ---------------------------------------------------------------------------------


def _cast_to(ctx: ImportContext, node: OnnxNode, x: str, dtype: str) -> str:
    """gtool's cast has ONNX's semantics, `saturate` (float8 targets) and `round_mode`
    (float8_e8m0fnu targets) included, so both attributes pass through."""
    saturate = bool(ctx.attr(node, "saturate", 1))
    round_mode = ctx.attr(node, "round_mode", "up")
    if _dtype(ctx, x) == dtype:
        return ctx.add("identity", [x], {}, node)
    return ctx.add("cast", [x], {"dtype": dtype, "saturate": saturate, "round_mode": round_mode}, node)


@converter("Cast", strict=True)
def cast(ctx: ImportContext, node: OnnxNode) -> list[str]:
    (x,) = ctx.inputs(node, 1)
    return [_cast_to(ctx, node, x, gtool_dtype(ctx.attr(node, "to"), ctx, "Cast's target type 'to'"))]


@converter("CastLike", strict=True)
def cast_like(ctx: ImportContext, node: OnnxNode) -> list[str]:
    x, like = ctx.inputs(node, 2)
    return [_cast_to(ctx, node, x, _dtype(ctx, like))]


_CONSTANT_ATTRS = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                   "value_ints": np.int64}


@converter("Constant", strict=True)
def constant(ctx: ImportContext, node: OnnxNode) -> list:
    """Its value, known at load (normally folded before any converter runs)."""
    ctx.read.update(a.name for a in node.attribute)
    for a in node.attribute:
        if a.name == "value":
            return [ctx.attr(node, "value")]
        if a.name in _CONSTANT_ATTRS:
            return [np.array(ctx.attr(node, a.name), dtype=_CONSTANT_ATTRS[a.name])]
        if a.name == "sparse_value":
            return [_dense(a.sparse_tensor)]
        if a.name in ("value_string", "value_strings"):
            ctx.unsupported(node, "a string constant: gtool tensors hold numbers and bools only")
    ctx.unsupported(node, f"a Constant with attributes {[a.name for a in node.attribute]}")
    return []


def _dense(sparse) -> np.ndarray:
    """A SparseTensorProto as a dense array (indices flat, or one row of coordinates each)."""
    from onnx import numpy_helper

    values, index = numpy_helper.to_array(sparse.values), numpy_helper.to_array(sparse.indices)
    dims = tuple(sparse.dims)
    out = np.zeros(int(np.prod(dims, dtype=np.int64)), dtype=values.dtype)
    flat = index if index.ndim == 1 else np.ravel_multi_index(tuple(index.T), dims)
    out[flat] = values
    return out.reshape(dims)


@converter("Shape", strict=True)
def shape(ctx: ImportContext, node: OnnxNode) -> list:
    """Known at load: ints for static dims, gtool dims (symbolic) otherwise."""
    from ..fold import as_shape_value

    (x,) = ctx.inputs(node, 1)
    dims = ctx.shape(x)
    start, end = ctx.attr(node, "start", 0), ctx.attr(node, "end", None)
    return [as_shape_value(list(dims)[slice(start, end)])]


@converter("Size", strict=True)
def size(ctx: ImportContext, node: OnnxNode) -> list:
    from ..fold import as_shape_value

    (x,) = ctx.inputs(node, 1)
    total = Dim.const(1)
    for d in ctx.shape(x):
        total = total * d
    return [as_shape_value([total]).reshape(())]
