"""Export rules for the convolution and pooling ops and their gradient ops.

float32 `conv` and `max_pool` are ONNX's Conv and MaxPool (NaN put back in the pool: onnxruntime
skips it). The rest goes through one device, a window table: for known spatial sizes, the flat
index in the padded input of every tap of every window (`window_index`). A Gather by it gives
im2col columns (float64 conv, which onnxruntime cannot run natively, and avg_pool with gtool's
counts); ScatterElements(reduction=add) by it gives col2im (conv_transpose, the pool grads); an
ArgMax over the gathered windows finds each max pool's first maximum (a NaN is the maximum).
The geometry is the records' own (gtool/ops/windows.py, imported lazily).
"""

from __future__ import annotations

import numpy as np

from ..ir import Node
from .export_nn import _attrs, _channel, _f, _static
from .export_ops import reduce, rule

# convolution and pooling ------------------------------------------------------------------------------


def window_rule(*names: str):
    """`rule`, with a window op over no channels (a 0 among its static channel counts) written
    as what it is: an empty result, or for conv/conv_transpose without input channels the bias
    (zeros without one) broadcast. onnxruntime's pools refuse a 0 channel count, and the
    im2col reshapes cannot say it (their 0s copy the batch)."""

    def deco(fn):
        def wrapped(x, node: Node) -> str:
            return _no_channels(x, node) or fn(x, node)

        wrapped.__doc__, wrapped.__name__ = fn.__doc__, fn.__name__
        return rule(*names)(wrapped)

    return deco


def _no_channels(x, node: Node) -> str | None:
    out = x.out_type(node)
    no_input = node.op in ("conv", "conv_transpose") and x.types[node.inputs[0]].shape[1] == 0
    if not (no_input or any(d == 0 for d in out.shape)):
        return None
    dt = out.dtype
    y = x.op("Expand", [x.const(np.zeros((1,) * len(out.shape), dt)), x.shape(out.shape)], dt)
    if no_input and len(node.inputs) > 2:  # the bias alone
        y = x.op("Add", [y, _channel(x, x.value(node.inputs[2], dt), len(out.shape), dt)], dt)
    return y


def _window(node: Node, x_shape, kernel, pool: bool):
    from ..ops.windows import window_from_attrs

    return window_from_attrs(_attrs(node), len(x_shape) - 2, tuple(kernel), stride_is_kernel=pool)


def _geometry(win, pool: bool) -> dict:
    """ONNX attributes of a window (auto_pad as ONNX spells it; explicit pads otherwise)."""
    attrs = {"strides": list(win.stride), "dilations": list(win.dilation)}
    if win.auto_pad == "notset":
        attrs["pads"] = list(win.pad_begin) + list(win.pad_end)
    else:
        attrs["auto_pad"] = win.auto_pad.upper()
    if pool:
        attrs["kernel_shape"] = list(win.kernel)
        attrs["ceil_mode"] = int(win.ceil_mode)
    return attrs


def _columns(x, v: str, plan, channels: int, fill: float, dt: str) -> str:
    """[N, C, P, K]: every window's taps (P output positions, K taps), by a Gather on the padded
    input flattened over its spatial axes; padding (and ceil_mode's extra cells) is `fill`."""
    pads = [0, 0] + list(plan.pad_begin) + [0, 0] + [e + x_ for e, x_ in zip(plan.pad_end, plan.extra)]
    if any(pads):
        v = x.op("Pad", [v, x.ints(pads), _f(x, fill, dt)], dt, mode="constant")
    # sizes, not -1: with an empty batch (the 0 copies N = 0) ONNX cannot solve a -1
    flat = x.op("Reshape", [v, x.ints([0, channels, int(np.prod(plan.padded))])], dt)
    return x.op("Gather", [flat, x.const(window_index(plan))], dt, axis=2)


def window_index(plan) -> np.ndarray:
    """[P, K] int64: the flat index, in the padded input, of tap k of output position p."""
    win, n = plan.window, len(plan.spatial)
    taps = np.stack(np.meshgrid(*[np.arange(k) * d for k, d in zip(win.kernel, win.dilation)], indexing="ij"), -1)
    starts = np.stack(np.meshgrid(*[np.arange(o) * s for o, s in zip(plan.out, win.stride)], indexing="ij"), -1)
    coords = starts.reshape(-1, 1, n) + taps.reshape(1, -1, n)  # [P, K, n]
    return np.ravel_multi_index(tuple(np.moveaxis(coords, -1, 0)), plan.padded).astype(np.int64)


@window_rule("conv")
def conv(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    ins = [x.value(i, dt) for i in node.inputs]
    xs, ws = (x.types[i].shape for i in node.inputs[:2])
    kernel = _static(ws[2:])
    win = _window(node, xs, kernel, False)
    groups = _attrs(node)["groups"]
    spatial, channels, m = _static(xs[2:]), _static(xs[1:2]), _static(ws[:1])
    if dt == "float32" or spatial is None or channels is None or m is None:
        return x.op("Conv", ins, dt, group=groups, kernel_shape=list(kernel), **_geometry(win, False))
    return _conv_im2col(x, node, ins, win.plan(spatial), channels[0], m[0], groups, dt)


def _conv_im2col(x, node: Node, ins: list[str], plan, c: int, m: int, groups: int, dt: str) -> str:
    """float64 conv: columns [N, G, P, Cg K] @ filter [G, Cg K, Mg] -> [N, M, *out] (+ bias)."""
    cols = _columns(x, ins[0], plan, c, 0.0, dt)  # [N, C, P, K]
    p, k = int(np.prod(plan.out)), int(np.prod(plan.window.kernel))
    cols = x.op("Reshape", [cols, x.ints([0, groups, c // groups, p, k])], dt)
    cols = x.op("Transpose", [cols], dt, perm=[0, 1, 3, 2, 4])
    cols = x.op("Reshape", [cols, x.ints([0, groups, p, (c // groups) * k])], dt)
    w = x.op("Reshape", [ins[1], x.ints([groups, m // groups, (c // groups) * k])], dt)
    w = x.op("Transpose", [w], dt, perm=[0, 2, 1])
    y = x.op("MatMul", [cols, w], dt)  # [N, G, P, Mg]
    y = x.op("Transpose", [y], dt, perm=[0, 1, 3, 2])
    y = x.op("Reshape", [y, x.ints([0, m] + list(plan.out))], dt)
    if len(ins) > 2:
        y = x.op("Add", [y, _channel(x, ins[2], 2 + len(plan.out), dt)], dt)
    return y


@window_rule("max_pool")
def max_pool(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    xs = x.types[node.inputs[0]].shape
    win = _window(node, xs, _ints(_attrs(node)["kernel"], len(xs) - 2), True)
    v = x.value(node.inputs[0], dt)
    out = x.op("MaxPool", [v], dt, **_geometry(win, True))
    if not dt.startswith("float"):
        return out
    nan = x.cast(x.op("Not", [x.op("Equal", [v, v], "bool")], "bool"), dt)  # onnxruntime's MaxPool skips NaN:
    has_nan = x.op("MaxPool", [nan], dt, **_geometry(win, True))  # a window holding one is NaN in gtool
    return x.op("Where", [x.op("Greater", [has_nan, _f(x, 0, dt)], "bool"), _f(x, np.nan, dt), out], dt)


def _ints(value, n: int) -> tuple[int, ...]:
    return (value,) * n if isinstance(value, int) else tuple(value)


@window_rule("avg_pool")
def avg_pool(x, node: Node) -> str:
    dt, attrs = x.out_type(node).dtype, _attrs(node)
    xs = x.types[node.inputs[0]].shape
    win = _window(node, xs, _ints(attrs["kernel"], len(xs) - 2), True)
    v = x.value(node.inputs[0], dt)
    spatial, channels = _static(xs[2:]), _static(xs[1:2])
    if spatial is None or channels is None:  # (onnxruntime's AveragePool counts ceil_mode's cells)
        return x.op("AveragePool", [v], dt, count_include_pad=int(attrs["count_include_pad"]), **_geometry(win, True))
    plan = win.plan(spatial)
    total = reduce(x, "ReduceSum", _columns(x, v, plan, channels[0], 0.0, dt), [3], False, dt)  # [N, C, P]
    ones = np.ones((1, 1) + spatial)
    counts = plan.pad(ones, 1.0 if attrs["count_include_pad"] else 0.0)
    for a, (h, b, e) in enumerate(zip(spatial, plan.pad_begin, plan.pad_end)):  # ceil_mode's extra cells
        index = [slice(None)] * counts.ndim  # never count
        index[2 + a] = slice(h + b + e, None)
        counts[tuple(index)] = 0
    n_taps = _count_taps(counts, plan)
    y = x.op("Div", [total, x.const(n_taps.astype(dt))], dt)
    return x.op("Reshape", [y, x.ints([0, channels[0]] + list(plan.out))], dt)


def _count_taps(counts: np.ndarray, plan) -> np.ndarray:
    """[P]: how many taps of each window count (the divisor of its average)."""
    return counts.reshape(-1)[window_index(plan)].sum(axis=1)


# the gradient ops: the same window tables, read backwards ---------------------------------------------


def _scatter(x, updates: str, index: np.ndarray | str, plan, channels: int, dt: str) -> str:
    """[N, C, *spatial]: updates [N, C, P K] added at their padded flat positions `index` (a
    [P K] table, or a computed [N, C, P K] tensor), the padding cropped off. ScatterElements
    with reduction=add needs opset 16."""
    if x.opset < 16:
        from .export import ExportError

        raise ExportError("onnx-export", f"op '{x.current.op}' is exported with ScatterElements(reduction=add), "
                          f"which needs opset 16 or later (not {x.opset})", node=x.current.name, op=x.current.op)
    size = int(np.prod(plan.padded))
    lead = x.op("Slice", [x.op("Shape", [updates], "int64"), x.ints([0]), x.ints([2])], "int64")
    zeros = x.op("Expand", [x.const(np.zeros((1, 1, size), dt)),
                            x.op("Concat", [lead, x.ints([size])], "int64", axis=0)], dt)
    if isinstance(index, np.ndarray):
        index = x.op("Expand", [x.const(index.reshape(1, 1, -1)), x.op("Shape", [updates], "int64")], "int64")
    full = x.op("ScatterElements", [zeros, index, updates], dt, axis=2, reduction="add")
    full = x.op("Reshape", [full, x.ints([0, channels] + list(plan.padded))], dt)
    n = len(plan.spatial)
    return x.op("Slice", [full, x.ints(plan.pad_begin), x.ints([b + h for b, h in zip(plan.pad_begin, plan.spatial)]),
                          x.ints(list(range(2, 2 + n)))], dt)


def _pool_plan(x, node: Node, k: int):
    """The window plan of a pool op on its input number k (static spatial sizes needed)."""
    from .export import ExportError

    xs = x.types[node.inputs[k]].shape
    spatial, channels = _static(xs[2:]), _static(xs[1:2])
    if spatial is None or channels is None:
        raise ExportError("onnx-export", f"op '{node.op}' needs the channel and spatial sizes as numbers for ONNX "
                          f"(got {[str(d) for d in xs[1:]]})", node=node.name, op=node.op)
    win = _window(node, xs, _ints(_attrs(node)["kernel"], len(xs) - 2), True)
    return win.plan(spatial), channels[0]


@window_rule("avg_pool_grad")
def avg_pool_grad(x, node: Node) -> str:
    """g / count per window, to every tap of it (the adjoint of the average)."""
    dt, attrs = x.out_type(node).dtype, _attrs(node)
    plan, c = _pool_plan(x, node, 1)
    g = x.op("Reshape", [x.value(node.inputs[0], dt), x.ints([0, c, int(np.prod(plan.out)), 1])], dt)  # [N, C, P, 1]
    counts = plan.pad(np.ones((1, 1) + plan.spatial), 1.0 if attrs["count_include_pad"] else 0.0)
    for a, (h, b, e) in enumerate(zip(plan.spatial, plan.pad_begin, plan.pad_end)):
        index = [slice(None)] * counts.ndim
        index[2 + a] = slice(h + b + e, None)
        counts[tuple(index)] = 0
    table = window_index(plan)
    share = x.op("Div", [g, x.const(_count_taps(counts, plan).reshape(-1, 1).astype(dt))], dt)
    share = x.op("Expand", [share, x.ints([1, 1, table.shape[0], table.shape[1]])], dt)
    return _scatter(x, x.op("Reshape", [share, x.ints([0, c, table.size])], dt), table, plan, c, dt)


def _argmax(x, node: Node, plan, c: int, dt: str) -> str:
    """[N, C, P, 1]: the tap of each window's first maximum (padding is -inf: it never wins)."""
    cols = _columns(x, x.value(node.inputs[0], dt), plan, c, -np.inf, dt)
    first = x.op("ArgMax", [cols], "int64", axis=3, keepdims=1, select_last_index=0)
    nan = x.cast(x.op("Not", [x.op("Equal", [cols, cols], "bool")], "bool"), dt)  # a NaN is the maximum
    first_nan = x.op("ArgMax", [nan], "int64", axis=3, keepdims=1, select_last_index=0)
    has_nan = reduce(x, "ReduceMax", nan, [3], True, dt)
    return x.op("Where", [x.op("Greater", [has_nan, _f(x, 0, dt)], "bool"), first_nan, first], "int64")


@window_rule("max_pool_pick")
def max_pool_pick(x, node: Node) -> str:
    """t at each window's argmax of x."""
    dt = x.out_type(node).dtype
    plan, c = _pool_plan(x, node, 0)
    am = _argmax(x, node, plan, c, x.types[node.inputs[0]].dtype)
    cols = _columns(x, x.value(node.inputs[1], dt), plan, c, 0.0, dt)
    picked = x.op("GatherElements", [cols, am], dt, axis=3)
    return x.op("Reshape", [picked, x.ints([0, c] + list(plan.out))], dt)


@window_rule("max_pool_grad")
def max_pool_grad(x, node: Node) -> str:
    """g added back at each window's argmax of x (overlapping windows add)."""
    dt = x.out_type(node).dtype
    plan, c = _pool_plan(x, node, 0)
    am = _argmax(x, node, plan, c, x.types[node.inputs[0]].dtype)  # [N, C, P, 1]
    table = window_index(plan)
    where = x.op("Expand", [x.const(table.reshape(1, 1, *table.shape)), x.op("Shape", [am], "int64")], "int64")
    p = int(np.prod(plan.out))  # not -1: an empty batch leaves ONNX nothing to solve it from
    target = x.op("Reshape", [x.op("GatherElements", [where, am], "int64", axis=3), x.ints([0, c, p])], "int64")
    g = x.op("Reshape", [x.value(node.inputs[1], dt), x.ints([0, c, p])], dt)
    return _scatter(x, g, target, plan, c, dt)


def _conv_plan(x, node: Node, spatial_of: str, kernel):
    """The plan of the forward convolution a conv_transpose / conv_filter belongs to: its
    input's spatial sizes (`spatial_of`: a gtool value) must be numbers."""
    from .export import ExportError

    xs = x.types[spatial_of].shape
    spatial = _static(xs[2:])
    if spatial is None or kernel is None:
        raise ExportError("onnx-export", f"op '{node.op}' needs the spatial and kernel sizes as numbers for ONNX "
                          f"(got {[str(d) for d in xs[2:]]})", node=node.name, op=node.op)
    return _window(node, xs, kernel, False).plan(spatial)


@window_rule("conv_transpose")
def conv_transpose(x, node: Node) -> str:
    """The adjoint of conv in its input: columns W^T g (one MatMul per group), added back at
    the window table's positions of the output (col2im), the padding cropped off."""
    from .export import ExportError

    dt = x.out_type(node).dtype
    ins = [x.value(i, dt) for i in node.inputs]
    gs, ws, out = x.types[node.inputs[0]].shape, x.types[node.inputs[1]].shape, x.out_type(node).shape
    c, mg, kernel = _static(ws[:1]), _static(ws[1:2]), _static(ws[2:])
    groups = _attrs(node)["groups"]
    if c is None or mg is None or _static(out[1:]) is None:
        raise ExportError("onnx-export", "conv_transpose needs the channel, kernel and output sizes as numbers for "
                          "ONNX", node=node.name, op=node.op)
    plan = _window(node, out, kernel, False).plan(_static(out[2:]))
    if tuple(plan.out) != _static(gs[2:]):
        raise ExportError("onnx-export", "conv_transpose's input size is not what its output's convolution gives",
                          node=node.name, op=node.op)
    c, m, p, k = c[0], mg[0] * groups, int(np.prod(plan.out)), int(np.prod(kernel))
    g = x.op("Reshape", [ins[0], x.ints([0, groups, c // groups, p])], dt)
    g = x.op("Transpose", [g], dt, perm=[0, 1, 3, 2])  # [N, G, P, Cg]
    w = x.op("Reshape", [ins[1], x.ints([groups, c // groups, mg[0] * k])], dt)
    cols = x.op("MatMul", [g, w], dt)  # [N, G, P, Mg K]
    cols = x.op("Reshape", [cols, x.ints([0, groups, p, mg[0], k])], dt)
    cols = x.op("Transpose", [cols], dt, perm=[0, 1, 3, 2, 4])  # [N, G, Mg, P, K]
    cols = x.op("Reshape", [cols, x.ints([0, m, p * k])], dt)
    y = _scatter(x, cols, window_index(plan), plan, m, dt)
    if len(ins) > 2:
        y = x.op("Add", [y, _channel(x, ins[2], len(out), dt)], dt)
    return y


@window_rule("conv_filter")
def conv_filter(x, node: Node) -> str:
    """The gradient of conv in its filter: g [G, Mg, N P] @ columns of x [G, N P, Cg K]."""
    from ..dims import parse_dim

    dt = x.out_type(node).dtype
    v, g = (x.value(i, dt) for i in node.inputs)
    xs, gs = x.types[node.inputs[0]].shape, x.types[node.inputs[1]].shape
    kernel = _static(tuple(parse_dim(d) for d in _attrs(node)["kernel"]))
    plan = _conv_plan(x, node, node.inputs[0], kernel)
    groups = _attrs(node)["groups"]
    c, m = _static(xs[1:2]), _static(gs[1:2])
    if c is None or m is None:
        from .export import ExportError

        raise ExportError("onnx-export", "conv_filter needs the channel counts as numbers for ONNX", node=node.name,
                          op=node.op)
    c, m, p, k = c[0], m[0], int(np.prod(plan.out)), int(np.prod(kernel))
    cols = _columns(x, v, plan, c, 0.0, dt)  # [N, C, P, K]
    cols = x.op("Reshape", [cols, x.ints([0, groups, c // groups, p, k])], dt)
    cols = x.op("Transpose", [cols], dt, perm=[1, 0, 3, 2, 4])  # [G, N, P, Cg, K]
    cols = x.op("Reshape", [cols, x.ints([groups, -1, (c // groups) * k])], dt)
    gg = x.op("Reshape", [g, x.ints([0, groups, m // groups, p])], dt)
    gg = x.op("Transpose", [gg], dt, perm=[1, 2, 0, 3])  # [G, Mg, N, P]
    gg = x.op("Reshape", [gg, x.ints([groups, m // groups, -1])], dt)
    dw = x.op("MatMul", [gg, cols], dt)  # [G, Mg, Cg K]
    return x.op("Reshape", [dw, x.ints([m, c // groups] + list(kernel))], dt)



def _unpadded_positions(plan, column_major: bool) -> np.ndarray:
    """[P, K] int64: tap k of window p as a flat position in the unpadded input (row-major, or
    column-major over the spatial axes); -1 for a tap in the padding (never a window's maximum)."""
    coords = np.unravel_index(window_index(plan), plan.padded)
    inside = np.ones(coords[0].shape, bool)
    real = []
    for c, b, h in zip(coords, plan.pad_begin, plan.spatial):
        inside &= (c >= b) & (c < b + h)
        real.append(np.clip(c - b, 0, h - 1))
    flat = np.ravel_multi_index(tuple(real), plan.spatial, order="F" if column_major else "C")
    return np.where(inside, flat, -1).astype(np.int64)


@window_rule("max_pool_indices")
def max_pool_indices(x, node: Node) -> str:
    """ONNX MaxPool's Indices: the flat position in x (padding excluded) of each window's first
    maximum, a NaN counting as the maximum (onnxruntime's MaxPool would skip it), over the whole
    tensor (n, c and the spatial axes), spatial axes column-major with storage_order 1."""
    plan, c = _pool_plan(x, node, 0)
    am = _argmax(x, node, plan, c, x.types[node.inputs[0]].dtype)  # [N, C, P, 1]
    table = _unpadded_positions(plan, bool(_attrs(node)["storage_order"]))
    where = x.op("Expand", [x.const(table.reshape(1, 1, *table.shape)), x.op("Shape", [am], "int64")], "int64")
    spatial = x.op("GatherElements", [where, am], "int64", axis=3)  # [N, C, P, 1]
    size = int(np.prod(plan.spatial))
    shape = x.op("Shape", [spatial], "int64")
    n_c = x.op("Slice", [shape, x.ints([0]), x.ints([2])], "int64")
    count = x.op("ReduceProd", [n_c], "int64", keepdims=0)
    zero, one = x.const(np.array(0, np.int64)), x.const(np.array(1, np.int64))
    base = x.op("Mul", [x.op("Range", [zero, count, one], "int64"), x.ints([size])], "int64")
    base = x.op("Reshape", [base, x.op("Concat", [n_c, x.ints([1, 1])], "int64", axis=0)], "int64",
                allowzero=1 if x.opset >= 14 else None)  # N and C are sizes: an empty batch is 0, not "copy"
    flat = x.op("Add", [spatial, base], "int64")
    return x.op("Reshape", [flat, x.ints([0, c] + list(plan.out))], "int64")
