"""Reductions: sum, mean, max, min, logsumexp (attrs `axis`, default all, and `keepdims`).

Their VJPs re-expand the upstream gradient to the input's shape (`expand_dims` where the
axes were dropped, then broadcasting does the rest). logsumexp's forward and VJP both use
the max shift, so neither overflows; its gradient is softmax, never autodiff through max.
"""

from __future__ import annotations

import numpy as np

from ..dims import Dim
from ..ir import TensorType
from .registry import Attr, OpDef, register

AXIS_ATTRS = {
    "axis": Attr("axes", None, "an int, a list of ints, or null for all axes"),
    "keepdims": Attr("bool", False, "keep reduced axes as size 1"),
}


def reduce_shape(ctx, shape, axis, keepdims):
    axes = ctx.axes(axis, len(shape))
    if keepdims:
        return tuple(Dim.const(1) if k in axes else d for k, d in enumerate(shape)), axes
    return tuple(d for k, d in enumerate(shape) if k not in axes), axes


def _infer(float_out):
    def infer(ctx, types, attrs):
        t = types[0]
        shape, _ = reduce_shape(ctx, t.shape, attrs["axis"], attrs["keepdims"])
        dtype = t.dtype
        if float_out and not dtype.startswith("float"):
            dtype = "float64"
        elif dtype == "bool":
            dtype = "int64"
        return TensorType(shape, dtype, t.weak)

    return infer


def keep(b, node, v):
    """`v` (shaped like the reduction's output) with the reduced axes put back as size 1."""
    attrs = b.attrs(node)
    if attrs["keepdims"]:
        return v
    rank = b.type(node.inputs[0]).rank
    axes = sorted(a % rank for a in ([attrs["axis"]] if isinstance(attrs["axis"], int) else attrs["axis"])) \
        if attrs["axis"] is not None else list(range(rank))
    if not axes:
        return v
    return b("expand_dims", v, axis=axes)


def _axis_attrs(b, node):
    a = b.attrs(node)
    return {"axis": a["axis"], "keepdims": a["keepdims"]}


def _sum_vjp(b, node, g):
    return [b.broadcast_like(keep(b, node, g), node.inputs[0])]


def _sum_jvp(b, node, ts):
    return None if ts[0] is None else b("sum", ts[0], **_axis_attrs(b, node))


def _count(b, node):
    a = b.attrs(node)
    axis = a["axis"]
    if axis is None or isinstance(axis, int):
        return b("size", node.inputs[0], axis=axis)
    n = None
    for ax in axis:
        s = b("size", node.inputs[0], axis=ax)
        n = s if n is None else b("mul", n, s)
    return n


def _mean_vjp(b, node, g):
    return [b.broadcast_like(keep(b, node, b("div", g, _count(b, node))), node.inputs[0])]


def _mean_jvp(b, node, ts):
    return None if ts[0] is None else b("mean", ts[0], **_axis_attrs(b, node))


def _extreme_mask(b, node):
    """Where x attains the max (min), as x's dtype, split evenly across ties."""
    x = node.inputs[0]
    hit = b("cast", b("equal", x, keep(b, node, node.name)), dtype=b.type(x).dtype)
    return b("div", hit, b("sum", hit, axis=b.attrs(node)["axis"], keepdims=True))


def _weighted_rules(weights):
    """(vjp, jvp) of a reduction whose derivative weighs each entry of x by `weights(b, node)`
    (shaped like x): the VJP is w * g broadcast back, the JVP the reduced sum of w * t."""

    def vjp(b, node, g):
        return [b("mul", weights(b, node), keep(b, node, g))]

    def jvp(b, node, ts):
        if ts[0] is None:
            return None
        return b("sum", b("mul", weights(b, node), ts[0]), **_axis_attrs(b, node))

    return vjp, jvp


_extreme_vjp, _extreme_jvp = _weighted_rules(_extreme_mask)


def log_sum_exp_parts(x, axis):
    """(m, l) with logsumexp(x) = m + l, m the max (0 for all-infinite rows) and l accurate.

    For a single axis, l = log1p(sum of exp(x - m) over all but one argmax entry): when one
    entry dominates, log(1 + tiny) would lose the tiny part to rounding, log1p keeps it. An
    all -inf row gives l = -inf (so logsumexp = -inf, never NaN).
    """
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, np.zeros((), m.dtype))
    e = np.exp(x - m)
    if isinstance(axis, tuple) and len(axis) == 1:
        axis = axis[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        if not isinstance(axis, int) or np.ndim(x) == 0:
            return m, np.log(np.sum(e, axis=axis, keepdims=True))
        top = np.expand_dims(np.argmax(x, axis=axis), axis)
        e_top = np.take_along_axis(e, top, axis)
        np.put_along_axis(e, top, 0, axis)
        rest = np.sum(e, axis=axis, keepdims=True)
        return m, np.where(e_top == 1, np.log1p(rest), np.log(e_top + rest))


def _logsumexp_fwd(x, axis=None, keepdims=False):
    m, out = log_sum_exp_parts(x, axis)
    out = out + m
    if not keepdims:
        out = np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
    return out


def _lse_weights(b, node):
    """softmax of x over the reduced axes: exp(x - logsumexp), every exponent <= 0."""
    return b("exp", b("sub", node.inputs[0], keep(b, node, node.name)))


_logsumexp_vjp, _logsumexp_jvp = _weighted_rules(_lse_weights)


def _np_reduce(fn):
    def forward(x, axis=None, keepdims=False):
        return fn(x, axis=axis, keepdims=keepdims)

    return forward


for name, fwd, vjp, jvp, float_out, doc in (
    ("sum", _np_reduce(np.sum), _sum_vjp, _sum_jvp, False, "sum over axes"),
    ("mean", _np_reduce(np.mean), _mean_vjp, _mean_jvp, True, "mean over axes"),
    ("max", _np_reduce(np.max), _extreme_vjp, _extreme_jvp, False, "max over axes; ties share the gradient"),
    ("min", _np_reduce(np.min), _extreme_vjp, _extreme_jvp, False, "min over axes; ties share the gradient"),
    ("logsumexp", _logsumexp_fwd, _logsumexp_vjp, _logsumexp_jvp, True,
     "log(sum(exp(x))) over axes, computed with the max shift; its gradient is softmax"),
):
    register(OpDef(name=name, arity=1, infer=_infer(float_out), forward=fwd, attrs=dict(AXIS_ATTRS),
                   vjp=vjp, jvp=jvp, group="reductions", doc=doc))

