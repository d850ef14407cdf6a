"""Export rules for tile, pad, cumsum, argmax, argmin, prod, greater_equal and less_equal.

Most map to the ONNX op of the same meaning. The differences: pad's crops (negative pads) are
one Slice before the Pad, and mode wrap (an ONNX Pad mode only since opset 19) is written as
Slices and a Concat per axis; argmax and argmin put NaN first as gtool (and NumPy) do, where
onnxruntime's ArgMax skips NaN: where a reduced set holds a NaN, the result is the ArgMax of
the NaN mask. Bools are computed on int64 (or int32 for ArgMax) where onnxruntime has no bool
kernel, and cast back.
"""

from __future__ import annotations

import numpy as np

from ..ir import Node
from ..ops import REGISTRY
from ..ops.indexing import pad_parts
from ..ops.registry import result_type
from .export_ops import reduce, rule

_END = np.iinfo(np.int64).max  # a Slice end past the last entry


def _attrs(node: Node) -> dict:
    return REGISTRY[node.op].full_attrs(node.attrs)


def _rank(x, node: Node) -> int:
    return len(x.types[node.inputs[0]].shape)


@rule("tile")
def tile(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    reps = _attrs(node)["reps"]
    reps = [reps] if isinstance(reps, int) else list(reps)
    return x.op("Tile", [x.value(node.inputs[0], dt), x.ints(reps)], dt)


@rule("pad")
def pad(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a = _attrs(node)
    rank = _rank(x, node)
    parts = pad_parts(a["pads"], rank)
    comp = "int64" if dt == "bool" else dt
    v = x.value(node.inputs[0], comp)
    crop = [(k, max(-pb, 0), max(-pe, 0)) for k, (pb, pe) in enumerate(parts) if pb < 0 or pe < 0]
    if crop:
        v = x.op("Slice", [v, x.ints([c[1] for c in crop]), x.ints([-c[2] if c[2] else _END for c in crop]),
                           x.ints([c[0] for c in crop])], comp)
    grow = [(max(pb, 0), max(pe, 0)) for pb, pe in parts]
    if not any(pb or pe for pb, pe in grow):
        return x.cast(v, dt)
    if a["mode"] == "wrap":
        for k, (pb, pe) in enumerate(grow):
            pieces = ([x.op("Slice", [v, x.ints([-pb]), x.ints([_END]), x.ints([k])], comp)] if pb else []) + [v]
            if pe:
                pieces.append(x.op("Slice", [v, x.ints([0]), x.ints([pe]), x.ints([k])], comp))
            v = v if len(pieces) == 1 else x.op("Concat", pieces, comp, axis=k)
        return x.cast(v, dt)
    pads = x.ints([pb for pb, _ in grow] + [pe for _, pe in grow])
    ins = [v, pads] + ([x.scalar(a["value"], comp)] if a["mode"] == "constant" else [])
    return x.cast(x.op("Pad", ins, comp, mode=a["mode"]), dt)


@rule("cumsum")
def cumsum(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a = _attrs(node)
    axis = x.const(np.array(a["axis"] % _rank(x, node), np.int64))
    return x.op("CumSum", [x.value(node.inputs[0], dt), axis], dt, exclusive=int(a["exclusive"]),
                reverse=int(a["reverse"]))


@rule("argmax", "argmin")
def arg(x, node: Node) -> str:
    a = _attrs(node)
    axis, keep, last = a["axis"] % _rank(x, node), int(a["keepdims"]), int(a["select_last_index"])
    in_dt = x.input_dtype(node, 0)
    v = x.value(node.inputs[0], "int32" if in_dt == "bool" else in_dt)
    op_type = "ArgMax" if node.op == "argmax" else "ArgMin"
    out = x.op(op_type, [v], "int64", axis=axis, keepdims=keep, select_last_index=last)
    if not in_dt.startswith("float"):
        return out
    nan = x.cast(x.op("Not", [x.op("Equal", [v, v], "bool")], "bool"), "int32")
    first_nan = x.op("ArgMax", [nan], "int64", axis=axis, keepdims=keep, select_last_index=last)
    any_nan = x.cast(reduce(x, "ReduceMax", nan, [axis], keep, "int32"), "bool")
    return x.op("Where", [any_nan, first_nan, out], "int64")


@rule("prod")
def prod(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a = _attrs(node)
    return reduce(x, "ReduceProd", x.value(node.inputs[0], dt), a["axis"], a["keepdims"], dt)


@rule("greater_equal", "less_equal")
def compare(x, node: Node) -> str:
    common = result_type([x.types[i] for i in node.inputs]).dtype
    common = "int64" if common == "bool" else common
    a, b = (x.value(i, common) for i in node.inputs)
    return x.op("GreaterOrEqual" if node.op == "greater_equal" else "LessOrEqual", [a, b], "bool")
