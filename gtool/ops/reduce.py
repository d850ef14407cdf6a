"""Reductions: sum, mean, max, min, logsumexp (attrs `axis`, default all, and `keepdims`).

Their VJPs re-expand the upstream gradient to the input's shape (`expand_dims` where the
axes were dropped, then broadcasting does the rest). logsumexp's forward is its template
(`ops.templates.logsumexp`, max-shifted); its gradient is softmax, never autodiff through max.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..dims import Dim
from ..ir import TensorType
from . import bounds, rowfast
from .reference import INF, NAN, Edge, exact_sum, is_nan, mp_lse, rows_edges, rows_ref
from .registry import Attr, OpDef, register
from .templates import LOGSUMEXP, numpy_forward

AXIS_ATTRS = {
    "axis": Attr("axes", None, "an int, a list of ints, or null for all axes"),
    "keepdims": Attr("bool", False, "keep reduced axes as size 1"),
}


def reduce_shape(ctx, shape, axis, keepdims):
    axes = ctx.axes(axis, len(shape))
    if keepdims:
        return tuple(Dim.const(1) if k in axes else d for k, d in enumerate(shape)), axes
    return tuple(d for k, d in enumerate(shape) if k not in axes), axes


def _infer(float_out, keeps_bool=False):
    def infer(ctx, types, attrs):
        t = types[0]
        shape, _ = reduce_shape(ctx, t.shape, attrs["axis"], attrs["keepdims"])
        dtype = t.dtype
        if float_out and not dtype.startswith("float"):
            dtype = "float64"
        elif dtype == "bool" and not keeps_bool:
            dtype = "int64"  # sum counts; max and min of bools stay bool (NumPy, torch, the docs)
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
    if not axis:  # mean over no axes: each output is one element
        return b.const(1)
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


def _lse_weights(b, node):
    """softmax of x over the reduced axes, by the softmax op (exp(x - m) / sum exp(x - m)).

    Not exp(x - logsumexp): logsumexp is rounded to the ulp of the max, so for logits of
    1e15 the weights would be off by e^(rounding) (JAX's rule is exact there). Several axes
    are moved last and flattened into one, softmax'ed, and put back.
    """
    x = node.inputs[0]
    rank = b.type(x).rank
    axis = b.attrs(node)["axis"]
    axes = list(range(rank)) if axis is None else sorted({a % rank for a in ([axis] if isinstance(axis, int) else axis)})
    if not axes:  # logsumexp over no axes is x itself
        return b.broadcast_like(b.const(1), x)
    if len(axes) == 1:
        return b("softmax", x, axis=axes[0])
    from .shape import shape_json

    shape = b.type(x).shape
    kept = [k for k in range(rank) if k not in axes]
    perm = kept + axes
    xt = x if perm == list(range(rank)) else b("transpose", x, perm=perm)
    rows = Dim.const(1)
    for k in axes:
        rows = rows * shape[k]
    flat = b("reshape", xt, shape=shape_json([shape[k] for k in kept] + [rows]))  # not -1: kept may hold a 0
    w = b("reshape", b("softmax", flat, axis=-1), shape=shape_json([shape[k] for k in perm]))
    if perm == list(range(rank)):
        return w
    inv = [perm.index(k) for k in range(rank)]
    return b("transpose", w, perm=inv)


_logsumexp_vjp, _logsumexp_jvp = _weighted_rules(_lse_weights)


def _np_reduce(fn, ufunc=None):
    """`fn(x, axis, keepdims)`; on an ndarray `ufunc.reduce` itself, which `np.sum` / `np.max`
    call after a Python dispatch layer (1-2 us a call: most of a small reduction's time)."""

    def forward(x, axis=None, keepdims=False):
        if ufunc is not None and type(x) is np.ndarray:
            return ufunc.reduce(x, axis=axis, keepdims=keepdims)
        return fn(x, axis=axis, keepdims=keepdims)

    return forward


def _mean(x, axis=None, keepdims=False):
    """np.mean; over an empty axis NaN (0 / 0, as NumPy and onnx.reference), without NumPy's warning."""
    if np.size(x) == 0:
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.mean(x, axis=axis, keepdims=keepdims)
    return np.mean(x, axis=axis, keepdims=keepdims)


def empty_identity(x, top: bool):
    """What max (top=False: the identity is the bottom) or min (top=True) of nothing is, as ONNX's
    ReduceMax/ReduceMin define it: -inf/+inf for floats, the dtype's min/max for ints, False/True
    for bools. NumPy refuses such a reduction; an empty axis must still give its identity."""
    dt = np.asarray(x).dtype
    if dt == np.bool_:
        return top
    if dt.kind == "f":
        return np.inf if top else -np.inf
    info = np.iinfo(dt)
    return info.max if top else info.min


def _extreme(fn, ufunc, top: bool):
    def forward(x, axis=None, keepdims=False):
        if type(x) is np.ndarray and x.size:  # ufunc.reduce itself: no dispatch layer (see _np_reduce)
            return ufunc.reduce(x, axis=axis, keepdims=keepdims)
        if np.size(x) == 0:
            return fn(x, axis=axis, keepdims=keepdims, initial=empty_identity(x, top))
        return fn(x, axis=axis, keepdims=keepdims)

    return forward


# references and edges ------------------------------------------------------------------------


def _sum_row(m, row):
    return exact_sum(m, row)


def _mean_row(m, row):
    if not row:
        return NAN  # 0 / 0
    s = _sum_row(m, row)
    return s if isinstance(s, float) and (s != s or abs(s) == INF) else m.mpf(s) / len(row)


def _extreme_row(pick, empty):
    def row_fn(m, row):
        if not row:
            return empty  # ONNX's ReduceMax/ReduceMin of nothing (floats: -inf, +inf)
        if any(is_nan(v) for v in row):
            return NAN
        return pick(row)

    return row_fn


def _edges(ints: bool = True, overflow: bool = True) -> tuple[Edge, ...]:
    """The softmax rows under several axes; without `overflow`, no row whose sum passes the
    float max (mean sums first, as NumPy, torch and JAX do: such a mean is inf)."""
    a, b = rows_edges()
    if not overflow:
        b = b[[0, 1, 3]]
    out = [Edge((a,), {"axis": -1}), Edge((a,), {"axis": 0, "keepdims": True}), Edge((b,), {"axis": 1}),
           Edge((a.reshape(5, 2, 3),), {"axis": [0, 2]}), Edge((b,), {})]
    if ints:
        out += [Edge((np.array([[1, -7, 3], [0, 0, 0]]),), {"axis": 1}, note="int"),
                Edge((np.array([[True, False], [False, False]]),), {"axis": 0}, note="bool")]
    return tuple(out)


def _or_empty(rule, empty):
    """An interval rule for a reduction, with what it gives over an empty axis (a 0 among the
    reduced dims): max -inf, min +inf, mean NaN (any value: unknown). lint treats a dim name as
    non-empty (as it treats it as not 1 in broadcasting); a constant 0 is exact."""

    def wrapped(bnds, attrs, info):
        if info.count(0, attrs.get("axis"))[0] == 0:
            return empty(bnds[0])
        return rule(bnds, attrs, info)

    return wrapped


_EMPTY_BOUNDS = {"max": lambda b: (-INF, b[1]), "min": lambda b: (b[0], INF), "mean": lambda b: (-INF, INF),
                "logsumexp": lambda b: (-INF, -INF)}
_AXIS_TEXT = {"partial": ("1",)}
for name, fwd, vjp, jvp, float_out, doc, ref, interval, texts in (
    ("sum", _np_reduce(np.sum, np.add), _sum_vjp, _sum_jvp, False, "sum over axes", _sum_row, bounds.total,
     ("{g} broadcast back to {shape_a}",)),
    ("mean", _mean, _mean_vjp, _mean_jvp, True, "mean over axes", _mean_row, bounds.mean,
     ("{g} / n broadcast back to {shape_a}",)),
    ("max", _extreme(np.max, np.maximum, False), _extreme_vjp, _extreme_jvp, None, "max over axes; NaN if any is NaN; "
     "ties share the gradient", _extreme_row(max, -INF), bounds.same, ("{g} at the maximum (shared at ties)",)),
    ("min", _extreme(np.min, np.minimum, True), _extreme_vjp, _extreme_jvp, None, "min over axes; NaN if any is NaN; "
     "ties share the gradient", _extreme_row(min, INF), bounds.same, ("{g} at the minimum (shared at ties)",)),
    ("logsumexp", numpy_forward(LOGSUMEXP, rowfast.logsumexp), _logsumexp_vjp, _logsumexp_jvp, True,
     "log(sum(exp(x))) over axes, computed with the max shift; its gradient is softmax", mp_lse, bounds.logsumexp,
     ("{g} ⊙ softmax({a})",)),
):
    register(OpDef(name=name, arity=1, infer=_infer(bool(float_out), keeps_bool=float_out is None), forward=fwd,
                   attrs=dict(AXIS_ATTRS), vjp=vjp, jvp=jvp, group="reductions", doc=doc,
                   reference=rows_ref(ref), edges=_edges(overflow=name != "mean"),
                   interval=_or_empty(interval, _EMPTY_BOUNDS[name]) if name in _EMPTY_BOUNDS else interval,
                   explain={"partial": ("1",), "vjp": texts}, ulps=1,
                   template=LOGSUMEXP if name == "logsumexp" else None))
