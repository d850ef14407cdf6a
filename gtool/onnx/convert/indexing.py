"""Converters for Tile, Pad, CumSum, ArgMax, ArgMin, ReduceProd, GreaterOrEqual, LessOrEqual
and Or (which the `_expanded` bodies of GreaterOrEqual and LessOrEqual use).

Repeats, pads, the pad value and axes, and CumSum's axis are inputs in ONNX; gtool shapes are
static, so they must be known at load (`static=`), as in exported models.
"""

from __future__ import annotations

import numpy as np

from ...dims import Dim
from ..registry import ImportContext, OnnxNode, converter
from .core_shape import _ints, _reduce


@converter("Tile", static=(1,), strict=True)
def tile(ctx: ImportContext, node: OnnxNode) -> list[str]:
    x = ctx.name(node.input[0])
    reps = _ints(ctx.static(node, 1, "the repeats"))
    if any(isinstance(r, Dim) or r < 1 for r in reps):
        ctx.unsupported(node, f"repeats {reps} (gtool needs constant counts >= 1: dims are >= 1)")
    return [ctx.add("tile", [x], {"reps": [int(r) for r in reps]}, node)]


def _pad_value(ctx: ImportContext, node: OnnxNode) -> float | int:
    """The constant fill: attribute `value` before opset 11, else the optional input 2."""
    if ctx.opset < 11:
        return ctx.attr(node, "value", 0.0)
    t = ctx.tensors.get(ctx.alias.get(node.input[2], "")) if ctx.has_input(node, 2) else None
    if t is not None and t.kind == "param" and t.value is not None:
        v = t.value  # a float initializer (a param to gtool): the fill is its value, read at load
    else:
        v = ctx.static(node, 2, "the constant value", np.array(0))
    if np.size(v) != 1:
        ctx.unsupported(node, f"a constant value of shape {list(np.shape(v))} (ONNX wants a scalar)")
    v = np.ravel(v)[0]
    if isinstance(v, Dim) or (isinstance(v, float | np.floating) and np.isnan(v)):
        ctx.unsupported(node, f"the constant value {v}")
    return bool(v) if isinstance(v, np.bool_) else int(v) if isinstance(v, np.integer) else float(v)


@converter("Pad", static=(1, 2, 3), strict=True)
def pad(ctx: ImportContext, node: OnnxNode) -> list[str]:
    """pads (attribute `pads`/`paddings` before opset 11, then input 1) over all axes, or over
    input 3's axes since opset 18; mode constant, reflect, edge and (opset 19) wrap."""
    x = ctx.name(node.input[0])
    rank = len(ctx.shape(x))
    if ctx.opset < 11:
        raw = ctx.attr(node, "pads", None) or ctx.attr(node, "paddings", None)
    else:
        raw = _ints(ctx.static(node, 1, "the pads"))
    if raw is None or any(isinstance(p, Dim) for p in raw):
        ctx.unsupported(node, "pads that are not constant ints")
    raw = [int(p) for p in raw]
    axes = list(range(rank))
    if ctx.opset >= 18 and ctx.has_input(node, 3):
        axes = [int(a) for a in _ints(ctx.static(node, 3, "the axes"))]
        if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
            ctx.unsupported(node, f"axes {axes} for rank {rank}")
    if len(raw) != 2 * len(axes):
        ctx.unsupported(node, f"{len(raw)} pads for {len(axes)} axes (ONNX wants two per axis)")
    pads = [0] * (2 * rank)
    for k, a in enumerate(axes):
        pads[a % rank], pads[rank + a % rank] = raw[k], raw[len(axes) + k]
    mode = ctx.attr(node, "mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        ctx.unsupported(node, f"mode {mode!r}")
    value = _pad_value(ctx, node) if mode == "constant" else 0.0
    return [ctx.add("pad", [x], {"pads": pads, "mode": mode, "value": value}, node)]


@converter("CumSum", static=(1,), strict=True)
def cumsum(ctx: ImportContext, node: OnnxNode) -> list[str]:
    x = ctx.name(node.input[0])
    axis = _ints(ctx.static(node, 1, "the axis"))
    if len(axis) != 1 or isinstance(axis[0], Dim):
        ctx.unsupported(node, f"axis {axis} (ONNX wants one int)")
    return [ctx.add("cumsum", [x], {"axis": int(axis[0]), "exclusive": bool(ctx.attr(node, "exclusive", 0)),
                                    "reverse": bool(ctx.attr(node, "reverse", 0))}, node)]


def _arg(gop: str):
    def conv(ctx: ImportContext, node: OnnxNode) -> list[str]:
        (x,) = ctx.inputs(node, 1)
        return [ctx.add(gop, [x], {"axis": ctx.attr(node, "axis", 0), "keepdims": bool(ctx.attr(node, "keepdims", 1)),
                                   "select_last_index": bool(ctx.attr(node, "select_last_index", 0))}, node)]

    return conv


converter("ArgMax", strict=True)(_arg("argmax"))
converter("ArgMin", strict=True)(_arg("argmin"))
converter("ReduceProd", static=(1,), strict=True)(_reduce("prod"))


def _compare(gop: str):
    def conv(ctx: ImportContext, node: OnnxNode) -> list[str]:
        a, b = ctx.inputs(node, 2)
        return [ctx.add(gop, [a, b], {}, node)]

    return conv


converter("GreaterOrEqual", strict=True)(_compare("greater_equal"))
converter("LessOrEqual", strict=True)(_compare("less_equal"))


@converter("Or", strict=True)
def or_(ctx: ImportContext, node: OnnxNode) -> list[str]:
    """a or b on bools as where(a, a, b) (broadcast like ONNX's Or)."""
    a, b = ctx.inputs(node, 2)
    return [ctx.add("where", [a, a, b], {}, node)]
