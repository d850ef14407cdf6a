"""ONNX export rules of the convolution and pooling ops (gtool/ops/conv.py, gtool/ops/pool.py).

conv, max_pool, avg_pool and flatten map to Conv, MaxPool, AveragePool and Flatten. The ops
ONNX lacks are written as what they are:

- conv_transpose -> ConvTranspose with explicit pads and output_padding (gtool's auto_pad and
  output_shape decided here from the static sizes: ONNX's own would pad differently);
- conv_filter (conv's gradient in w) -> Conv with the roles swapped: the batch becomes the
  channels (x as [C, N, *S], g as the filter [M, N, *out]), stride and dilation trade places,
  then the kernel's cells are sliced and transposed to [M, C, *kernel]; per group, concatenated;
- max_pool_pick / max_pool_grad -> MaxPool's Indices (flat, first maximum) with Gather /
  ScatterElements(reduction=add) on the flattened tensor;
- avg_pool_grad -> g divided by the window counts (a constant) through a depthwise
  ConvTranspose with a filter of ones, cropped or padded to x's size.
Sizes a rule needs as numbers (pads under auto_pad, counts) must be static: else ExportError.
"""

from __future__ import annotations

import numpy as np

from ..ir import Node
from ..ops import REGISTRY
from ..ops.windows import ints, window_from_attrs
from .export import ExportError
from .export_ops import rule


def _static(x, name: str, node: Node) -> tuple[int, ...]:
    shape = x.types[name].shape
    if not all(d.is_const for d in shape):
        raise ExportError("onnx-export", f"{node.op} needs static sizes to export (this one needs its pads and "
                          f"window counts as numbers), got [{', '.join(map(str, shape))}]", node=node.name,
                          op=node.op, **node.loc.where())
    return tuple(d.value for d in shape)


def _attrs(node: Node) -> dict:
    return REGISTRY[node.op].full_attrs(node.attrs)


def _plan(node: Node, attrs: dict, spatial, kernel, *, pool: bool):
    return window_from_attrs(attrs, len(spatial), tuple(kernel), stride_is_kernel=pool).plan(tuple(spatial))


def _window(x, node: Node, attrs: dict, kernel, *, pool: bool) -> dict:
    """ONNX's window attributes; SAME auto_pad passed on (ONNX pads it as gtool does)."""
    win = window_from_attrs(attrs, len(kernel), tuple(kernel), stride_is_kernel=pool)
    out = {"strides": list(win.stride), "dilations": list(win.dilation), "kernel_shape": list(kernel)}
    if win.auto_pad == "notset":
        out["pads"] = list(win.pad_begin) + list(win.pad_end)
    else:
        out["auto_pad"] = win.auto_pad.upper()
    if pool:
        out["ceil_mode"] = int(win.ceil_mode)
    return out


def _kernel(x, name: str, node: Node) -> tuple[int, ...]:
    return tuple(d.value for d in x.types[name].shape[2:])  # the shape rule made them constants


@rule("conv")
def conv(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a = _attrs(node)
    w = _window(x, node, a, _kernel(x, node.inputs[1], node), pool=False)
    return x.op("Conv", [x.value(i, dt) for i in node.inputs], dt, group=a["groups"], **w)


def _onnx_window(plan) -> dict:
    w = plan.window
    return {"strides": list(w.stride), "dilations": list(w.dilation),
            "pads": list(plan.pad_begin) + list(plan.pad_end), "kernel_shape": list(w.kernel)}


@rule("conv_transpose")
def conv_transpose(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a = _attrs(node)
    ws = _static(x, node.inputs[1], node)
    out = _static(x, node.name, node)
    plan = _plan(node, a, out[2:], ws[2:], pool=False)
    natural = [s * (i - 1) + ek - b - e for s, i, ek, b, e in
               zip(plan.window.stride, plan.out, plan.window.extent, plan.pad_begin, plan.pad_end)]
    return x.op("ConvTranspose", [x.value(i, dt) for i in node.inputs], dt, group=a["groups"],
                output_padding=[h - n for h, n in zip(out[2:], natural)], **_onnx_window(plan))


def _slice(x, v: str, starts, ends, axes, dt: str) -> str:
    return x.op("Slice", [v, x.ints(starts), x.ints(ends), x.ints(axes)], dt)


@rule("conv_filter")
def conv_filter(x, node: Node) -> str:
    """dW[m, c, k] = sum over n, o of g[n, m, o] x[n, c, o s + k d - pb]: a Conv of x as [C, N, *S]
    with g as the filter [M, N, *out], stride d and dilation s, end pads to reach every tap."""
    dt = x.out_type(node).dtype
    a = _attrs(node)
    xs, gs = _static(x, node.inputs[0], node), _static(x, node.inputs[1], node)
    kernel = tuple(int(k) for k in a["kernel"])
    n = len(kernel)
    plan = _plan(node, a, xs[2:], kernel, pool=False)
    w = plan.window
    pe = [max(0, (k - 1) * d + (o - 1) * s + 1 - b - h)
          for k, d, o, s, b, h in zip(kernel, w.dilation, plan.out, w.stride, plan.pad_begin, xs[2:])]
    perm = [1, 0] + list(range(2, 2 + n))
    groups = a["groups"]
    cg, mg = xs[1] // groups, gs[1] // groups
    xv, gv = x.value(node.inputs[0], dt), x.value(node.inputs[1], dt)
    parts = []
    for gi in range(groups):
        xg = xv if groups == 1 else _slice(x, xv, [gi * cg], [(gi + 1) * cg], [1], dt)
        gg = gv if groups == 1 else _slice(x, gv, [gi * mg], [(gi + 1) * mg], [1], dt)
        y = x.op("Conv", [x.op("Transpose", [xg], dt, perm=perm), x.op("Transpose", [gg], dt, perm=perm)], dt,
                 strides=list(w.dilation), dilations=list(w.stride), pads=list(plan.pad_begin) + pe)
        y = _slice(x, y, [0] * n, list(kernel), list(range(2, 2 + n)), dt)  # [C/G, M/G, *kernel]
        parts.append(x.op("Transpose", [y], dt, perm=perm))
    return parts[0] if groups == 1 else x.op("Concat", parts, dt, axis=0)


def _pool_kernel(x, node: Node, attrs: dict, k: int = 0) -> tuple[int, ...]:
    return ints(attrs["kernel"], len(x.types[node.inputs[k]].shape) - 2, "kernel", 1, 1)


def _pool_plan(x, node: Node, attrs: dict, k: int):
    xs = _static(x, node.inputs[k], node)
    return xs, _plan(node, attrs, xs[2:], _pool_kernel(x, node, attrs, k), pool=True)


@rule("max_pool")
def max_pool(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a = _attrs(node)
    return x.op("MaxPool", [x.value(node.inputs[0], dt)], dt, **_window(x, node, a, _pool_kernel(x, node, a), pool=True))


def _argmax(x, node: Node, storage_order: int = 0) -> tuple[str, tuple[int, ...]]:
    """MaxPool's Indices: flat positions in x (padding excluded) of each window's first max."""
    dt = x.types[node.inputs[0]].dtype
    a = _attrs(node)
    xs = tuple(x.types[node.inputs[0]].shape)
    w = _window(x, node, a, _pool_kernel(x, node, a), pool=True)
    if storage_order:
        w["storage_order"] = storage_order
    values = x.fresh(x._owner_base())
    x.dtypes[values] = dt
    idx = x.fresh(x._owner_base())
    node_proto = x.onnx.helper.make_node("MaxPool", [x.value(node.inputs[0], dt)], [values, idx], name=idx, **w)
    x.nodes.append(node_proto)
    x.groups.setdefault(node.name, []).append(node_proto)
    x.dtypes[idx] = "int64"
    return idx, xs


@rule("max_pool_pick")
def max_pool_pick(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    idx, _ = _argmax(x, node)
    flat = x.op("Reshape", [x.value(node.inputs[1], dt), x.ints([-1])], dt)
    return x.op("Gather", [flat, idx], dt, axis=0)


@rule("max_pool_grad")
def max_pool_grad(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    if x.opset < 16:
        raise ExportError("onnx-export", "max_pool_grad needs ScatterElements with reduction=add (opset 16 or "
                          "later)", node=node.name, op=node.op, **node.loc.where())
    idx, _ = _argmax(x, node)
    xs = _static(x, node.inputs[0], node)
    flat = lambda v, t: x.op("Reshape", [v, x.ints([-1])], t)  # noqa: E731
    zeros = x.const(np.zeros(int(np.prod(xs)), dt))
    out = x.op("ScatterElements", [zeros, flat(idx, "int64"), flat(x.value(node.inputs[1], dt), dt)], dt,
               axis=0, reduction="add")
    return x.op("Reshape", [out, x.ints(list(xs))], dt)


@rule("max_pool_indices")
def max_pool_indices(x, node: Node) -> str:
    idx, _ = _argmax(x, node, _attrs(node)["storage_order"])
    return x.op("Identity", [idx], "int64")


@rule("avg_pool")
def avg_pool(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    a = _attrs(node)
    w = _window(x, node, a, _pool_kernel(x, node, a), pool=True)
    if any(d != 1 for d in w["dilations"]) and x.opset < 19:
        raise ExportError("onnx-export", "avg_pool with dilation needs AveragePool of opset 19 or later (--opset 19)",
                          node=node.name, op=node.op, **node.loc.where())
    if x.opset < 19:
        w.pop("dilations")
    v = x.value(node.inputs[0], dt)
    if a["ceil_mode"] and a["count_include_pad"]:  # gtool never counts ceil_mode's cells past the end padding
        _, plan = _pool_plan(x, node, a, 0)
        if any(plan.extra):
            total = x.op("AveragePool", [v], dt, count_include_pad=0, **w)
            return x.op("Mul", [total, x.const((plan.count(False) / plan.count(True)).astype(dt))], dt)
    return x.op("AveragePool", [v], dt, count_include_pad=int(a["count_include_pad"]), **w)


@rule("avg_pool_grad")
def avg_pool_grad(x, node: Node) -> str:
    """g / counts spread over each window: a depthwise ConvTranspose with a filter of ones."""
    dt = x.out_type(node).dtype
    a = _attrs(node)
    xs, plan = _pool_plan(x, node, a, 1)
    win = plan.window
    share = x.op("Div", [x.value(node.inputs[0], dt), x.const(plan.count(a["count_include_pad"]).astype(dt))], dt)
    ones = x.const(np.ones((xs[1], 1) + win.kernel, dt))
    pe = [max(0, s * (o - 1) + ek - b - h) for s, o, ek, b, h in
          zip(win.stride, plan.out, win.extent, plan.pad_begin, xs[2:])]
    out = x.op("ConvTranspose", [share, ones], dt, group=xs[1], strides=list(win.stride),
               dilations=list(win.dilation), pads=list(plan.pad_begin) + pe, kernel_shape=list(win.kernel))
    short = [h - (s * (o - 1) + ek - b - e) for h, s, o, ek, b, e in
             zip(xs[2:], win.stride, plan.out, win.extent, plan.pad_begin, pe)]
    if any(short):  # the last cells no window reads: zeros
        n = len(short)
        out = x.op("Pad", [out, x.ints([0] * (n + 2) + [0, 0] + short)], dt)
    return out


@rule("flatten")
def flatten(x, node: Node) -> str:
    dt = x.out_type(node).dtype
    return x.op("Flatten", [x.value(node.inputs[0], dt)], dt, axis=_attrs(node)["axis"])
