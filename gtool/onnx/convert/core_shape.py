"""Converters for ONNX's core shape ops, reductions, Gather and Softmax.

Shapes are static in gtool, so the shape-valued inputs of Reshape, Expand, Slice, Squeeze,
Unsqueeze and the reductions' axes must be known at load (`static=`): a Constant, an
initializer, or folded from Shape of a tensor (then possibly with symbolic dims, which
become dim expressions in the gtool attrs).
"""

from __future__ import annotations

import numpy as np

from ...dims import Dim
from ..registry import ImportContext, OnnxNode, converter
from .core import dims_attr

_BIG = 2**31 - 1  # ends at or past this mean "to the end" (INT_MAX, INT64_MAX)


def _ints(value) -> list:
    return [v if isinstance(v, Dim) else int(v) for v in np.ravel(value).tolist()]


@converter("Transpose", strict=True)
def transpose(ctx: ImportContext, node: OnnxNode) -> list[str]:
    (x,) = ctx.inputs(node, 1)
    perm = ctx.attr(node, "perm")
    return [ctx.add("transpose", [x], {"perm": None if perm is None else list(perm)}, node)]


@converter("Concat", strict=True)
def concat(ctx: ImportContext, node: OnnxNode) -> list[str]:
    names = [ctx.name(i) for i in node.input if i]
    return [ctx.add("concat", names, {"axis": ctx.attr(node, "axis")}, node)]


@converter("Reshape", static=(1,), strict=True)
def reshape(ctx: ImportContext, node: OnnxNode) -> list[str]:
    """0 copies the input's dim (unless allowzero), -1 is solved by gtool's reshape."""
    x = ctx.name(node.input[0])
    target = _ints(ctx.static(node, 1, "the target shape"))
    xs = ctx.shape(x)
    allowzero = ctx.attr(node, "allowzero", 0)
    out = []
    for k, s in enumerate(target):
        if isinstance(s, Dim):
            out.append(s.to_json())
        elif s == 0 and not allowzero:
            if k >= len(xs):
                ctx.unsupported(node, f"shape entry {k} is 0 (copy the input's dim) but the input has rank {len(xs)}")
            out.append(xs[k].to_json())
        elif s < -1:
            ctx.unsupported(node, f"a target dim of {s} (a size is at least 0; -1 is the one inferred)")
        else:
            out.append(s)
    return [ctx.add("reshape", [x], {"shape": out}, node)]


@converter("Expand", static=(1,), strict=True)
def expand(ctx: ImportContext, node: OnnxNode) -> list[str]:
    """Bidirectional broadcasting: the result is broadcast(x.shape, shape)."""
    x = ctx.name(node.input[0])
    target = [d if isinstance(d, Dim) else Dim.const(int(d)) for d in _ints(ctx.static(node, 1, "the shape"))]
    if any(d.is_const and d.value < 0 for d in target):
        ctx.unsupported(node, f"a negative target dim in {dims_attr(target)}")
    out = ctx.shapes.broadcast(ctx.shape(x), tuple(target))
    if tuple(out) == tuple(ctx.shape(x)):
        return [ctx.add("identity", [x], {}, node)]
    return [ctx.add("broadcast_to", [x], {"shape": dims_attr(out)}, node)]


def _axes(ctx: ImportContext, node: OnnxNode, k: int) -> list[int] | None:
    """Axes from the attribute (older opsets) or from input k (newer ones); None when absent."""
    axes = ctx.attr(node, "axes")
    if axes is None and ctx.has_input(node, k):
        axes = _ints(ctx.static(node, k, "the axes"))
    return None if axes is None else [int(a) for a in axes]


@converter("Squeeze", static=(1,), strict=True)
def squeeze(ctx: ImportContext, node: OnnxNode) -> list[str]:
    x = ctx.name(node.input[0])
    return [ctx.add("squeeze", [x], {"axis": _axes(ctx, node, 1)}, node)]


@converter("Unsqueeze", static=(1,), strict=True)
def unsqueeze(ctx: ImportContext, node: OnnxNode) -> list[str]:
    x = ctx.name(node.input[0])
    axes = _axes(ctx, node, 1)
    if not axes:
        ctx.unsupported(node, "Unsqueeze without axes")
    return [ctx.add("expand_dims", [x], {"axis": axes}, node)]


# reductions ------------------------------------------------------------------------------------------


def _reduce(gop: str, pre: str | None = None, post: str | None = None):
    """ONNX ReduceX: axes (attribute, or input 1 since opset 13/18), keepdims (default 1),
    noop_with_empty_axes (no axes: reduce all, or with the flag, return the input)."""

    def conv(ctx: ImportContext, node: OnnxNode) -> list[str]:
        x = ctx.name(node.input[0])
        axes = _axes(ctx, node, 1)
        noop = ctx.attr(node, "noop_with_empty_axes", 0)
        if not axes:
            if noop:
                return [ctx.add("identity", [x], {}, node)]
            axes = None
        y = ctx.add(pre, [x], {}, node) if pre else x
        y = ctx.add(gop, [y], {"axis": axes, "keepdims": bool(ctx.attr(node, "keepdims", 1))}, node)
        if post:
            y = ctx.add(post, [y], {}, node)
        dtype = ctx.type(x).dtype
        if ctx.type(y).dtype != dtype:  # ReduceMean of ints: ONNX keeps the input's type
            y = ctx.add("cast", [y], {"dtype": dtype}, node)
        return [y]

    return conv


for _op, _args in {"ReduceSum": ("sum",), "ReduceMean": ("mean",), "ReduceMax": ("max",), "ReduceMin": ("min",),
                   "ReduceLogSumExp": ("logsumexp",), "ReduceSumSquare": ("sum", "square"),
                   "ReduceL1": ("sum", "abs"), "ReduceL2": ("sum", "square", "sqrt"),
                   "ReduceLogSum": ("sum", None, "log")}.items():
    converter(_op, static=(1,), strict=True)(_reduce(*_args))


# softmax ----------------------------------------------------------------------------------------------


def _softmax(gop: str):
    """Opset 13+: along `axis` (default -1). Before 13: the input is coerced to 2-D at `axis`
    (default 1), [prod(shape[:axis]), prod(shape[axis:])], and normalised along the second."""

    def conv(ctx: ImportContext, node: OnnxNode) -> list[str]:
        (x,) = ctx.inputs(node, 1)
        if ctx.opset >= 13:
            return [ctx.add(gop, [x], {"axis": ctx.attr(node, "axis", -1)}, node)]
        xs = ctx.shape(x)
        ax = ctx.attr(node, "axis", 1) % max(len(xs), 1)
        if ax == len(xs) - 1:
            return [ctx.add(gop, [x], {"axis": -1}, node)]
        lead, rest = Dim.const(1), Dim.const(1)
        for k, d in enumerate(xs):
            lead, rest = (lead * d, rest) if k < ax else (lead, rest * d)
        flat = ctx.add("reshape", [x], {"shape": dims_attr([lead, rest])}, node)
        y = ctx.add(gop, [flat], {"axis": -1}, node)
        return [ctx.add("reshape", [y], {"shape": dims_attr(xs)}, node)]

    return conv


converter("Softmax", strict=True)(_softmax("softmax"))
converter("LogSoftmax", strict=True)(_softmax("log_softmax"))


# indexing ---------------------------------------------------------------------------------------------


def take(ctx: ImportContext, node: OnnxNode, x: str, index: str, axis: int) -> str:
    """np.take(x, index, axis) (ONNX Gather) by gtool's take_along_axis: the index is laid
    along `axis` as a column that broadcasts over the other axes, then reshaped to
    x.shape[:axis] + index.shape + x.shape[axis+1:]."""
    xs, ish = ctx.shape(x), ctx.shape(index)
    rank = len(xs)
    ax = axis % rank if -rank <= axis < rank else ctx.unsupported(node, f"axis {axis} for rank {rank}")
    k = Dim.const(1)
    for d in ish:
        k = k * d
    column = [1] * ax + [k] + [1] * (rank - ax - 1)
    if list(ish) != column:
        index = ctx.add("reshape", [index], {"shape": dims_attr(column)}, node)
    y = ctx.add("take_along_axis", [x, index], {"axis": ax}, node)
    out = list(xs[:ax]) + list(ish) + list(xs[ax + 1:])
    if list(ctx.shape(y)) != out:
        y = ctx.add("reshape", [y], {"shape": dims_attr(out)}, node)
    return y


@converter("Gather", strict=True)
def gather(ctx: ImportContext, node: OnnxNode) -> list[str]:
    x, index = ctx.inputs(node, 2)
    return [take(ctx, node, x, index, ctx.attr(node, "axis", 0))]


@converter("Slice", static=(1, 2, 3, 4), strict=True)
def slice_(ctx: ImportContext, node: OnnxNode) -> list[str]:
    """Per axis: step 1 is gtool's slice; other steps (negative ones too) pick the indices
    with take_along_axis. Starts and ends are clamped as ONNX (and Python) clamp them."""
    x = ctx.name(node.input[0])
    if ctx.opset < 10:  # starts, ends, axes were attributes; no steps
        starts, ends = ctx.attr(node, "starts"), ctx.attr(node, "ends")
        axes, steps = ctx.attr(node, "axes", list(range(len(starts)))), [1] * len(starts)
    else:
        starts = _ints(ctx.static(node, 1, "starts"))
        ends = _ints(ctx.static(node, 2, "ends"))
        axes = _ints(ctx.static(node, 3, "axes", np.arange(len(starts))))
        steps = _ints(ctx.static(node, 4, "steps", np.ones(len(starts), np.int64)))
    y = x
    for s, e, a, st in zip(starts, ends, axes, steps):
        xs = ctx.shape(y)
        rank = len(xs)
        if not -rank <= a < rank or st == 0 or isinstance(s, Dim) or isinstance(e, Dim):
            ctx.unsupported(node, f"slice axis {a}, start {s}, end {e}, step {st} (rank {rank})")
        a %= rank
        y = _slice_axis(ctx, node, y, xs[a], a, rank, s, e, st)
    return [y if y != x else ctx.add("identity", [x], {}, node)]


def _slice_axis(ctx, node, y: str, d: Dim, a: int, rank: int, s: int, e: int, st: int) -> str:
    if not d.is_const:
        if st != 1 or s < -_BIG or (0 <= e < _BIG and e < 0):
            ctx.unsupported(node, f"a slice with step {st} along a symbolic dim {d}")
        start = s if s >= 0 else d + s
        stop = d if e >= _BIG else (e if e >= 0 else d + e)
        return ctx.add("slice", [y], {"axis": a, "start": _index(start), "stop": _index(stop)}, node)
    n = d.value
    picked = range(*slice(s, e, st).indices(n))
    if len(picked) == n and st == 1:
        return y
    if st == 1 or len(picked) == 0:  # an empty slice: any start, as a step-1 slice of size 0
        start = min(picked.start, n) if len(picked) else 0
        return ctx.add("slice", [y], {"axis": a, "start": start, "stop": start + len(picked)}, node)
    shape = [1] * rank
    shape[a] = len(picked)
    index = ctx.const(np.array(list(picked), dtype=np.int64).reshape(shape))
    return ctx.add("take_along_axis", [y, index], {"axis": a}, node)


def _index(v) -> int | str:
    return v.to_json() if isinstance(v, Dim) else int(v)


@converter("Split", static=(1,), strict=True)
def split(ctx: ImportContext, node: OnnxNode) -> list[str]:
    """Pieces along `axis` as gtool slices. Sizes: input 1 (opset 13+) or the `split`
    attribute (before 13); without them equal parts, one per output, or since opset 18
    `num_outputs` parts of ceil(n / num_outputs) (the last one smaller)."""
    x = ctx.name(node.input[0])
    xs = ctx.shape(x)
    rank = len(xs)
    axis = ctx.attr(node, "axis", 0)
    if not -rank <= axis < rank:
        ctx.unsupported(node, f"axis {axis} for rank {rank}")
    axis %= rank
    d = xs[axis]
    outputs = len(node.output)
    sizes = ctx.attr(node, "split") if ctx.opset < 13 else None
    parts = ctx.attr(node, "num_outputs", outputs)
    if sizes is None and ctx.has_input(node, 1):
        sizes = _ints(ctx.static(node, 1, "the split sizes"))
    if sizes is None and not d.is_const:
        ctx.unsupported(node, f"equal parts of a symbolic dim {d}")
    if sizes is None:
        n = d.value
        size = -(-n // parts)
        if ctx.opset < 18 and n % parts:
            ctx.unsupported(node, f"{n} does not split into {parts} equal parts")
        sizes = [min(size, n - k * size) for k in range(parts)]
    if len(sizes) != outputs or any(s < 0 for s in sizes) or (d.is_const and sum(sizes) != d.value):
        ctx.unsupported(node, f"split sizes {list(sizes)} for {outputs} outputs along a dim of {d}")
    out, start = [], 0
    for s in sizes:
        stop = start + s
        out.append(ctx.add("slice", [x], {"axis": axis, "start": _index(start), "stop": _index(stop)}, node))
        start = stop
    return out
