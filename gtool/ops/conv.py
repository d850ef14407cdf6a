"""Convolutions: conv (N-d, ONNX Conv / PyTorch convNd), conv_transpose (ONNX ConvTranspose)
and conv_filter (the gradient of conv in its filter).

The three are one bilinear family, each the adjoint of another in one argument, so every
VJP is one of the three (never a Python loop, never a Jacobian):

    y = conv(x, w)             dx = conv_transpose(g, w)     dw = conv_filter(x, g)
    z = conv_transpose(g, w)   dg = conv(T, w)               dw = conv_filter(T, g)
    v = conv_filter(x, g)      dx = conv_transpose(g, T)     dg = conv(x, T)

All three share one geometry (gtool/ops/windows.py): `stride`, `padding`, `auto_pad`,
`dilation`, `groups`, read as the *forward convolution's* geometry, so that conv_transpose with
the same attrs is exactly conv's adjoint (its `auto_pad` pads as that conv would; the ONNX
importer turns ConvTranspose's own auto_pad and output_shape into explicit pads). The NumPy
forwards run one image at a time: im2col (a copy of the image's windows) and one matmul
(gtool/ops/im2col.py), or, with stride 1 and few outputs per group, one matmul per kernel
offset on the padded input in place (gtool/ops/conv_offsets.py); conv_transpose is one matmul
and col2im, one contiguous add per kernel offset (im2col.transpose_images).
"""

from __future__ import annotations

import numpy as np

from ..dims import Dim, parse_dim
from ..ir import TensorType
from . import bounds
from . import window_refs as refs
from .conv_offsets import conv_by_offsets, filter_by_offsets, use_offsets
from .im2col import conv_images, filter_images, transpose_images
from .registry import Attr, KernelError, OpDef, ShapeError, register, result_type
from .shape import shape_json
from .windows import AUTO_PAD, Columns, Window, explicit_pads, ints, prod, window_from_attrs

GEOMETRY = {
    "stride": Attr("ints", 1, "step per spatial axis (one int or one per axis)"),
    "padding": Attr("ints", 0, "zero padding: one int, one per axis, or all starts then all ends (ONNX pads)"),
    "auto_pad": AUTO_PAD,
    "dilation": Attr("ints", 1, "spacing of the kernel taps per spatial axis"),
    "groups": Attr("int", 1, "channel groups (groups = channels: depthwise)"),
}


# shape rules ---------------------------------------------------------------------------------


def _const_kernel(dims, what: str) -> tuple[int, ...]:
    if not all(d.is_const for d in dims):
        raise ShapeError("shape-mismatch", f"{what} sizes must be known integers, got [{', '.join(map(str, dims))}]")
    if any(d.value < 1 for d in dims):  # a window of nothing: no output size is defined (ONNX, torch refuse it)
        raise ShapeError("shape-mismatch", f"{what} sizes must be at least 1, got [{', '.join(map(str, dims))}]")
    return tuple(d.value for d in dims)


def _float(types, op: str) -> str:
    for t in types:
        if not t.dtype.startswith("float"):
            raise ShapeError("dtype-mismatch", f"{op} needs float inputs, got {t.dtype}")
    return result_type(list(types)).dtype


def _inputs(types, op: str):
    if len(types) not in (2, 3):
        raise ShapeError("arity", f"{op} takes 2 inputs and an optional bias, got {len(types)}")
    a, w = types[:2]
    if a.rank < 3 or w.rank != a.rank:
        raise ShapeError("shape-mismatch", f"{op} needs input [N, C, *spatial] and filter [M, C / groups, *kernel] "
                         f"of the same rank (>= 3), got ranks {a.rank} and {w.rank}")
    return a, w, (types[2] if len(types) == 3 else None)


def _groups(attrs) -> int:
    g = attrs["groups"]
    if g < 1:
        raise ShapeError("bad-attr", f"attr 'groups' must be >= 1, got {g}")
    return g


def _check_channels(ctx, total: Dim, per_group: Dim, groups: int, what: str) -> None:
    if not ctx.unify(total, per_group * groups):
        raise ShapeError("shape-mismatch", f"{what}: {ctx.resolve(total)} channels, but the filter takes "
                         f"{ctx.resolve(per_group)} per group x {groups} groups")


def _check_bias(ctx, bias, channels: Dim, op: str) -> None:
    if bias is not None and (bias.rank != 1 or not ctx.unify(bias.shape[0], channels)):
        raise ShapeError("shape-mismatch", f"{op} bias must be [{ctx.resolve(channels)}] (one per output channel), "
                         f"got [{', '.join(map(str, bias.shape))}]")


def _divisible(ctx, d: Dim, groups: int, what: str) -> None:
    d = ctx.resolve(d)
    if d.is_const and d.value % groups:
        raise ShapeError("shape-mismatch", f"{what} ({d.value}) must be a multiple of groups ({groups})")


def _conv_infer(ctx, types, attrs):
    x, w, bias = _inputs(types, "conv")
    g = _groups(attrs)
    n = x.rank - 2
    win = window_from_attrs(attrs, n, _const_kernel(w.shape[2:], "conv kernel"))
    _check_channels(ctx, x.shape[1], w.shape[1], g, "conv input")
    _divisible(ctx, w.shape[0], g, "conv output channels")
    _check_bias(ctx, bias, w.shape[0], "conv")
    out = tuple(win.out_dim(a, ctx.resolve(h)) for a, h in enumerate(x.shape[2:]))
    return TensorType(ctx.resolve_shape((x.shape[0], w.shape[0]) + out), _float(types, "conv"))


def _output_padding(attrs, n: int, win: Window) -> tuple[int, ...]:
    op = ints(attrs.get("output_padding"), n, "output_padding", 0, 0)
    for p, s in zip(op, win.stride):
        if p >= s:
            raise ShapeError("bad-attr", f"attr 'output_padding' must be below the stride ({s}), got {p}")
    return op


def _transpose_spatial(ctx, attrs, win: Window, insize) -> tuple[Dim, ...]:
    """conv_transpose's output spatial sizes: `output_shape`, else the natural size."""
    n = len(insize)
    if attrs.get("output_shape") is not None:
        out = tuple(parse_dim(d) for d in attrs["output_shape"])
        if len(out) != n:
            raise ShapeError("bad-attr", f"attr 'output_shape' needs {n} spatial sizes, got {len(out)}")
    else:
        op = _output_padding(attrs, n, win)
        if win.auto_pad in ("same_upper", "same_lower"):
            out = tuple(i * s for i, s in zip(insize, win.stride))
        else:
            pb, pe = ((0,) * n, (0,) * n) if win.auto_pad == "valid" else (win.pad_begin, win.pad_end)
            out = tuple((i - 1) * s + (p + ek - b - e)
                        for i, s, p, ek, b, e in zip(insize, win.stride, op, win.extent, pb, pe))
    for a, (h, i) in enumerate(zip(out, insize)):  # the conv of that size must give the input's size back
        if not ctx.unify(win.out_dim(a, ctx.resolve(h)), i):
            raise ShapeError("shape-mismatch", f"conv_transpose output size {ctx.resolve(h)} along spatial axis "
                             f"{a} does not convolve back to the input size {ctx.resolve(i)}")
    return out


def _conv_transpose_infer(ctx, types, attrs):
    gt, w, bias = _inputs(types, "conv_transpose")
    g = _groups(attrs)
    n = gt.rank - 2
    win = window_from_attrs(attrs, n, _const_kernel(w.shape[2:], "conv_transpose kernel"))
    if not ctx.unify(gt.shape[1], w.shape[0]):
        raise ShapeError("shape-mismatch", f"conv_transpose input has {ctx.resolve(gt.shape[1])} channels, the "
                         f"filter [C, M / groups, *kernel] takes {ctx.resolve(w.shape[0])}")
    _divisible(ctx, w.shape[0], g, "conv_transpose input channels")
    channels = w.shape[1] * g
    _check_bias(ctx, bias, channels, "conv_transpose")
    out = _transpose_spatial(ctx, attrs, win, tuple(ctx.resolve(d) for d in gt.shape[2:]))
    return TensorType(ctx.resolve_shape((gt.shape[0], channels) + out), _float(types, "conv_transpose"))


def _conv_filter_infer(ctx, types, attrs):
    if len(types) != 2:
        raise ShapeError("arity", f"conv_filter takes 2 inputs (x, g), got {len(types)}")
    x, gt = types
    g = _groups(attrs)
    if x.rank < 3 or gt.rank != x.rank:
        raise ShapeError("shape-mismatch", "conv_filter needs x [N, C, *spatial] and g [N, M, *out] of one rank")
    kernel = _const_kernel(tuple(parse_dim(d) for d in attrs["kernel"]), "conv_filter kernel")
    n = x.rank - 2
    if len(kernel) != n:
        raise ShapeError("bad-attr", f"attr 'kernel' needs {n} sizes, got {len(kernel)}")
    win = window_from_attrs(attrs, n, kernel)
    ctx.same(x.shape[0], gt.shape[0], "shape-mismatch", "conv_filter x and g need the same batch size")
    _divisible(ctx, x.shape[1], g, "conv_filter input channels")
    _divisible(ctx, gt.shape[1], g, "conv_filter output channels")
    for a, h in enumerate(x.shape[2:]):
        if not ctx.unify(win.out_dim(a, ctx.resolve(h)), gt.shape[2 + a]):
            raise ShapeError("shape-mismatch", f"conv_filter g has {ctx.resolve(gt.shape[2 + a])} positions along "
                             f"spatial axis {a}, the convolution of x gives {win.out_dim(a, ctx.resolve(h))}")
    out = (gt.shape[1], ctx.resolve(x.shape[1]) // g) + tuple(Dim.const(k) for k in kernel)
    return TensorType(ctx.resolve_shape(out), _float(types, "conv_filter"))


# NumPy forwards ------------------------------------------------------------------------------


def _window(kw: dict, n: int, kernel) -> Window:
    return window_from_attrs(kw, n, tuple(kernel))


def _bias(out: np.ndarray, b) -> np.ndarray:
    if b is not None:
        out += np.reshape(b, (-1,) + (1,) * (out.ndim - 2)).astype(out.dtype, copy=False)
    return out


def _operands(a, w, kw: dict, kernel):
    """Both operands at their common dtype, and the `Window`."""
    dt = np.result_type(a, w)
    a, w = np.asarray(a, dt), np.asarray(w, dt)
    win = _window(kw, a.ndim - 2, kernel)
    return a, w, win, dt


def conv_forward(x, w, b=None, *, stride=1, padding=0, auto_pad="notset", dilation=1, groups=1):
    """im2col + matmul, one image at a time (+ the bias, broadcast over batch and positions)."""
    x, w, win, dt = _operands(x, w, dict(stride=stride, padding=padding, auto_pad=auto_pad, dilation=dilation),
                              w.shape[2:])
    plan = win.plan(x.shape[2:])
    if x.size == 0 or w.size == 0:  # no images, channels or filters: sums of nothing (and the bias)
        return _bias(np.zeros((x.shape[0], w.shape[0]) + tuple(plan.out), dt), b)
    if use_offsets(plan, w.shape[1], w.shape[0] // groups):
        return conv_by_offsets(x, w, b, Columns(plan, dt), groups)
    return conv_images(x, w, b, plan, groups)


def _transpose_out_spatial(insize, win: Window, output_shape, output_padding) -> tuple[int, ...]:
    n = len(insize)
    if output_shape is not None:
        return tuple(output_shape)
    op = ints(output_padding, n, "output_padding", 0, 0)
    if win.auto_pad in ("same_upper", "same_lower"):
        return tuple(i * s for i, s in zip(insize, win.stride))
    pb, pe = ((0,) * n, (0,) * n) if win.auto_pad == "valid" else (win.pad_begin, win.pad_end)
    return tuple((i - 1) * s + p + ek - b_ - e for i, s, p, ek, b_, e in zip(insize, win.stride, op, win.extent, pb, pe))


def conv_transpose_forward(g, w, b=None, *, stride=1, padding=0, auto_pad="notset", dilation=1, groups=1,
                           output_padding=0, output_shape=None):
    """The adjoint of conv in x: per image, columns W^T g by one matmul, then col2im."""
    g, w, win, dt = _operands(g, w, dict(stride=stride, padding=padding, auto_pad=auto_pad, dilation=dilation),
                              w.shape[2:])
    spatial = _transpose_out_spatial(g.shape[2:], win, output_shape, output_padding)
    plan = win.plan(spatial)
    if plan.out != tuple(g.shape[2:]):
        raise KernelError("shape-mismatch", f"conv_transpose output {list(spatial)} does not convolve back to the "
                          f"input size {list(g.shape[2:])}")
    if g.size == 0 or w.size == 0:
        return _bias(np.zeros((g.shape[0], groups * w.shape[1]) + tuple(spatial), dt), b)
    return _bias(transpose_images(g, w, Columns(plan, dt), groups), b)


def conv_filter_forward(x, g, *, kernel, stride=1, padding=0, auto_pad="notset", dilation=1, groups=1):
    """dL/dw of conv: the sum over images of g (by group) times the image's columns."""
    x, g, win, dt = _operands(x, g, dict(stride=stride, padding=padding, auto_pad=auto_pad, dilation=dilation),
                              tuple(kernel))
    if x.size == 0 or g.size == 0:
        return np.zeros((g.shape[1], x.shape[1] // groups) + tuple(kernel), dt)
    plan = win.plan(x.shape[2:])
    if use_offsets(plan, x.shape[1] // groups, g.shape[1] // groups):
        return filter_by_offsets(x, g, Columns(plan, dt), groups)
    return filter_images(x, g, plan, groups)


# VJP and JVP rules ---------------------------------------------------------------------------------


def _geometry(b, node) -> dict:
    a = b.attrs(node)
    return {k: a[k] for k in GEOMETRY}


def _spatial_json(b, name) -> list:
    return shape_json(b.type(name).shape[2:])


def _bias_grad(b, g, rank: int):
    return b("sum", g, axis=[0] + list(range(2, rank)))


def _conv_vjp(b, node, g):
    x, w = node.inputs[:2]
    geo = _geometry(b, node)
    out = [b("conv_transpose", g, w, output_shape=_spatial_json(b, x), **geo),
           b("conv_filter", x, g, kernel=_spatial_json(b, w), **geo)]
    if len(node.inputs) == 3:
        out.append(_bias_grad(b, g, b.type(x).rank))
    return out


def _sum_terms(b, terms, like):
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    out = terms[0]
    for t in terms[1:]:  # the bias tangent [M, 1, ...] comes last: it broadcasts onto the sum
        out = b("add", out, t)
    return b.broadcast_like(out, like)


def _bias_tangent(b, node, ts):
    if len(ts) < 3 or ts[2] is None:
        return None
    return b("expand_dims", ts[2], axis=list(range(1, b.type(node.name).rank - 1)))


def _conv_jvp(b, node, ts):
    x, w = node.inputs[:2]
    geo = _geometry(b, node)
    terms = [None if ts[0] is None else b("conv", ts[0], w, **geo),
             None if ts[1] is None else b("conv", x, ts[1], **geo), _bias_tangent(b, node, ts)]
    return _sum_terms(b, terms, node.name)


def _transpose_attrs(b, node) -> dict:
    return {**_geometry(b, node), "output_shape": _spatial_json(b, node.name)}


def _conv_transpose_vjp(b, node, g):
    gi, w = node.inputs[:2]
    geo = _geometry(b, node)
    out = [b("conv", g, w, **geo), b("conv_filter", g, gi, kernel=_spatial_json(b, w), **geo)]
    if len(node.inputs) == 3:
        out.append(_bias_grad(b, g, b.type(gi).rank))
    return out


def _conv_transpose_jvp(b, node, ts):
    gi, w = node.inputs[:2]
    attrs = _transpose_attrs(b, node)
    terms = [None if ts[0] is None else b("conv_transpose", ts[0], w, **attrs),
             None if ts[1] is None else b("conv_transpose", gi, ts[1], **attrs), _bias_tangent(b, node, ts)]
    return _sum_terms(b, terms, node.name)


def _conv_filter_vjp(b, node, g):
    x, gi = node.inputs
    geo = _geometry(b, node)
    return [b("conv_transpose", gi, g, output_shape=_spatial_json(b, x), **geo), b("conv", x, g, **geo)]


def _conv_filter_jvp(b, node, ts):
    x, gi = node.inputs
    attrs = {**_geometry(b, node), "kernel": b.attrs(node)["kernel"]}
    terms = [None if ts[0] is None else b("conv_filter", ts[0], gi, **attrs),
             None if ts[1] is None else b("conv_filter", x, ts[1], **attrs)]
    return _sum_terms(b, terms, node.name)


# interval rules ----------------------------------------------------------------------------


def _terms_interval(bs, n: float):
    """A sum of up to n products of one value from each of two intervals (padding adds zeros)."""
    lo, hi = bounds.mul(bs[:2], {}, None)
    return bounds.total([(min(lo, 0.0), max(hi, 0.0))], {}, None, n=(n, n))


def _count(shape, pick) -> float:
    """The product of some known dims (inf when the shape or one of them is unknown)."""
    if shape is None or any(d is None for d in shape):
        return float("inf")
    return float(pick(shape))


def _with_bias(bs, iv):
    return bounds.add([iv, bs[2]], {}, None) if len(bs) == 3 else iv


def _shape(info, k):
    return info.shapes[k] if info.shapes and len(info.shapes) > k else None


def _conv_interval(bs, attrs, info):
    return _with_bias(bs, _terms_interval(bs, _count(_shape(info, 1), lambda w: prod(w[1:]))))


def _conv_transpose_interval(bs, attrs, info):
    n = _count(_shape(info, 1), lambda w: w[0] // attrs["groups"] * prod(w[2:]))
    return _with_bias(bs, _terms_interval(bs, n))


def _conv_filter_interval(bs, attrs, info):
    return _terms_interval(bs, _count(_shape(info, 1), lambda g: g[0] * prod(g[2:])))


# records --------------------------------------------------------------------------------------

_FORMS = "(x [N, C, *spatial], w [M, C / groups, *kernel], optional bias [M])"

register(OpDef("conv", None, _conv_infer, conv_forward, attrs=dict(GEOMETRY), vjp=_conv_vjp, jvp=_conv_jvp,
               group="convolution", doc=f"N-d convolution (cross-correlation, as ONNX Conv and torch convNd) {_FORMS}",
               reference=refs.conv, edges=refs.CONV_EDGES, interval=_conv_interval,
               explain={"vjp": ("conv_transpose({g}, {b})", "conv_filter({a}, {g})", "sum of {g} over batch and "
                                "positions")}, ulps=1))
register(OpDef("conv_transpose", None, _conv_transpose_infer, conv_transpose_forward,
               attrs={**GEOMETRY,
                      "output_padding": Attr("ints", 0, "cells added at the end of each spatial axis (< stride)"),
                      "output_shape": Attr("shape", None, "the output's spatial sizes (instead of output_padding)")},
               vjp=_conv_transpose_vjp, jvp=_conv_transpose_jvp, group="convolution",
               doc="transposed convolution (ONNX ConvTranspose): the adjoint of conv with the same filter and attrs "
                   "(g [N, C, *in], w [C, M / groups, *kernel], optional bias [M])",
               reference=refs.conv_transpose, edges=refs.CONV_TRANSPOSE_EDGES, interval=_conv_transpose_interval,
               explain={"vjp": ("conv({g}, {b})", "conv_filter({g}, {a})", "sum of {g} over batch and positions")},
               ulps=1))
register(OpDef("conv_filter", 2, _conv_filter_infer, conv_filter_forward,
               attrs={**GEOMETRY, "kernel": Attr("shape", None, "the filter's spatial sizes", required=True)},
               vjp=_conv_filter_vjp, jvp=_conv_filter_jvp, group="convolution",
               doc="the gradient of conv in its filter: sum over batch and positions of g times the windows of x "
                   "(x [N, C, *spatial], g [N, M, *out] -> [M, C / groups, *kernel])",
               reference=refs.conv_filter, edges=refs.CONV_FILTER_EDGES, interval=_conv_filter_interval,
               explain={"vjp": ("conv_transpose({b}, {g})", "conv({a}, {g})")}, ulps=1))

__all__ = ["conv_forward", "conv_transpose_forward", "conv_filter_forward", "explicit_pads"]
