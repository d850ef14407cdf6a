"""Indexing and neural-net ops: one_hot, take_along_axis, softmax, log_softmax, cross_entropy.

Stable by construction: softmax and log_softmax shift by the max in the forward pass, and
their VJPs are written with softmax itself; cross_entropy's VJP is softmax - one_hot. No
rewrite pass is needed for these to be safe on logits of 1000.
"""

from __future__ import annotations

import numpy as np

from ..dims import format_shape, parse_dim
from ..dtypes import is_float, is_int, np_dtype
from ..ir import TensorType
from . import bounds, rowfast
from .reference import INF, NAN, Edge, exact_sum, is_nan, mp, mp_lse_parts, rows_edges, rows_ref
from .registry import Attr, KernelError, OpDef, ShapeError, register
from .templates import CROSS_ENTROPY, LOG_SOFTMAX, SOFTMAX, numpy_forward


def _need_int(t: TensorType, what: str) -> None:
    if not is_int(t.dtype):
        raise ShapeError("dtype-mismatch", f"{what} must be an integer dtype (int64, int32, uint8, ...), got {t.dtype}")


# one_hot --------------------------------------------------------------------------------


def _one_hot_infer(ctx, types, attrs):
    t = types[0]
    _need_int(t, "one_hot targets")
    return TensorType(t.shape + (parse_dim(attrs["depth"]),), attrs["dtype"])


def _one_hot_forward(targets, depth, dtype="float64"):
    return (np.asarray(targets)[..., None] == np.arange(depth)).astype(np_dtype(dtype))


register(OpDef("one_hot", 1, _one_hot_infer, _one_hot_forward,
               attrs={"depth": Attr("dim", None, "number of classes (an int or a dim)", required=True),
                      "dtype": Attr("dtype", "float64", "the output dtype")},
               group="indexing", doc="targets -> one-hot rows, class axis last (values outside [0, depth) give zero rows)",
               reference=lambda t, depth, dtype="float64": _one_hot_ref(t, depth),
               edges=(Edge((np.array([0, 2, -1, 3, 7]),), {"depth": 3}),
                      Edge((np.array([[1, 0], [4, 3]], np.int32),), {"depth": 4, "dtype": "float32"})),
               interval=bounds.unit, ulps=0))


def _one_hot_ref(t, depth):
    t = np.asarray(t, dtype=object)
    out = np.empty(t.shape + (depth,), dtype=object)
    for idx in np.ndindex(*out.shape):
        out[idx] = 1.0 if t[idx[:-1]] == idx[-1] else 0.0
    return out


# take_along_axis ---------------------------------------------------------------------------


def _take_infer(ctx, types, attrs):
    x, idx = types
    _need_int(idx, "take_along_axis index")
    if x.rank != idx.rank:
        raise ShapeError("shape-mismatch",
                         f"take_along_axis needs x and index of one rank: {format_shape(x.shape)} vs {format_shape(idx.shape)}")
    ax = ctx.axis(attrs["axis"], x.rank)
    rest = ctx.broadcast(tuple(d for k, d in enumerate(x.shape) if k != ax),
                         tuple(d for k, d in enumerate(idx.shape) if k != ax))
    out = list(rest)
    out.insert(ax, idx.shape[ax])
    return TensorType(tuple(out), x.dtype, x.weak)


def _take_ref(x, index, axis):
    """By index arithmetic: out[pos] = x[pos with pos[axis] = index[pos]] (broadcast; negative
    indices count from the end)."""
    x, index = np.asarray(x, dtype=object), np.asarray(index)
    ax = axis % x.ndim
    rest = np.broadcast_shapes(*[tuple(s for k, s in enumerate(a.shape) if k != ax) for a in (x, index)])
    out = np.empty(rest[:ax] + (index.shape[ax],) + rest[ax:], dtype=object)
    for pos in np.ndindex(*out.shape):
        ipos = tuple(0 if index.shape[k] == 1 and k != ax else p for k, p in enumerate(pos))
        xpos = [0 if x.shape[k] == 1 else p for k, p in enumerate(pos)]
        xpos[ax] = int(index[ipos]) % x.shape[ax]
        out[pos] = x[tuple(xpos)]
    return out


def _take_forward(x, index, axis):
    n = np.shape(x)[axis]
    if index.size and (index.min() < -n or index.max() >= n):
        raise KernelError("bad-input", f"take_along_axis index out of range for axis size {n}")
    return np.take_along_axis(x, index, axis)


def _moved_last(b, v, ax, rank):
    if ax == rank - 1:
        return v
    perm = [k for k in range(rank) if k != ax] + [ax]
    return b("transpose", v, perm=perm)


def _take_vjp(b, node, g):
    """Scatter-add g back along the axis, as one_hot(index) weighted by g, summed over picks.

    Negative indices count from the end (the forward accepts them): they are mapped to
    index + n first, else one_hot would give them zero rows and drop their gradient.
    """
    x, idx = node.inputs
    rank = b.type(x).rank
    ax = b.attrs(node)["axis"] % rank
    depth = b.type(x).shape[ax]
    n = b("cast", b("size", x, axis=ax), dtype=b.type(idx).dtype)
    idx = b("where", b("less", idx, b.const(0)), b("add", idx, n), idx)
    oh = b("one_hot", _moved_last(b, idx, ax, rank), depth=depth.to_json(), dtype=b.type(x).dtype)
    picked = b("sum", b("mul", oh, b("expand_dims", _moved_last(b, g, ax, rank), axis=-1)), axis=-2)
    if ax != rank - 1:
        perm = [k for k in range(rank) if k != ax] + [ax]
        inv = [0] * rank
        for k, a in enumerate(perm):
            inv[a] = k
        picked = b("transpose", picked, perm=inv)
    return [b.sum_to(picked, x), None]


register(OpDef("take_along_axis", 2, _take_infer, _take_forward,
               storage=True, attrs={"axis": Attr("int", None, "the axis to pick along", required=True)},
               vjp=_take_vjp,
               jvp=lambda b, node, ts: None if ts[0] is None else b("take_along_axis", ts[0], node.inputs[1], **node.attrs),
               group="indexing", doc="pick values along an axis by integer index (NumPy's take_along_axis); "
               "negative indices count from the end", reference=_take_ref,
               edges=(Edge((np.array([[INF, NAN, -0.0], [5e-324, -1e308, 1.0]]), np.array([[-1, 0, 2], [-3, 1, -2]])),
                           {"axis": 1}),
                      Edge((np.array([[INF, NAN], [-0.0, 2.0]]), np.array([[-1, 0]])), {"axis": 0})),
               interval=bounds.same, explain={"vjp": ("{g} added back at the picked places",)}, ulps=0))


# softmax / log_softmax ----------------------------------------------------------------------

AXIS = {"axis": Attr("int", -1, "the class axis")}


def _same_float_infer(ctx, types, attrs):
    t = types[0]
    ctx.axis(attrs["axis"], t.rank)
    return TensorType(t.shape, t.dtype if is_float(t.dtype) else "float64", t.weak)


softmax_forward = numpy_forward(SOFTMAX)  # the template (ops/templates.py) on NumPy arrays


def _softmax_vjp(b, node, g):
    y, ax = node.name, b.attrs(node)["axis"]
    return [b("mul", y, b("sub", g, b("sum", b("mul", g, y), axis=ax, keepdims=True)))]


def _softmax_jvp(b, node, ts):
    return None if ts[0] is None else _softmax_vjp(b, node, ts[0])[0]  # the Jacobian is symmetric


def _log_softmax_vjp(b, node, g):
    ax = b.attrs(node)["axis"]
    p = b("exp", node.name)
    return [b("sub", g, b("mul", p, b("sum", g, axis=ax, keepdims=True)))]


def _log_softmax_jvp(b, node, ts):
    if ts[0] is None:
        return None
    ax = b.attrs(node)["axis"]
    return b("sub", ts[0], b("sum", b("mul", b("exp", node.name), ts[0]), axis=ax, keepdims=True))


def _log_softmax_row(m, row):
    """x - logsumexp(x) exactly, with the conventions of the max-shifted template: NaN in a
    row, or a row of only -inf, gives NaN everywhere; a +inf logit gives NaN there and -inf
    (softmax: 0) at the finite entries (the limit would be 0 and -inf: JAX gives NaN too)."""
    if not row:  # an empty axis: an empty result
        return []
    if any(is_nan(v) for v in row) or all(v == -INF for v in row):
        return [NAN] * len(row)
    if INF in row:
        return [NAN if v == INF else -INF for v in row]
    top, rest = mp_lse_parts(m, row)
    return [-INF if v == -INF else (m.mpf(v) - top) - rest for v in row]


def _softmax_row(m, row):
    return [v if is_nan(v) else (0.0 if v == -INF else m.exp(v)) for v in _log_softmax_row(m, row)]


def _softmax_edges():
    a, b = rows_edges()
    return (Edge((a,), {"axis": -1}), Edge((a,), {"axis": 0}), Edge((b,), {"axis": 1}),
            Edge((np.array([[1, -7, 3], [0, 0, 0]]),), note="int"), Edge((np.array([[True, False]]),), note="bool"))


register(OpDef("softmax", 1, _same_float_infer, softmax_forward, attrs=dict(AXIS), template=SOFTMAX,
               vjp=_softmax_vjp, jvp=_softmax_jvp, group="neural nets", doc="exp(x) / sum(exp(x)), max-shifted",
               reference=rows_ref(_softmax_row, default_axis=-1, keep_rows=True), edges=_softmax_edges(),
               interval=bounds.softmax, explain={"vjp": ("{out} ⊙ ({g} - sum({g} ⊙ {out}))",)}, ulps=2))
register(OpDef("log_softmax", 1, _same_float_infer, numpy_forward(LOG_SOFTMAX, rowfast.log_softmax), attrs=dict(AXIS),
               template=LOG_SOFTMAX,
               vjp=_log_softmax_vjp, jvp=_log_softmax_jvp, group="neural nets",
               doc="(x - m) - log(sum(exp(x - m))), m the max: stable for logits of 1e15",
               reference=rows_ref(_log_softmax_row, default_axis=-1, keep_rows=True), edges=_softmax_edges(),
               interval=bounds.log_softmax, explain={"vjp": ("{g} - softmax({a}) sum({g})",)}, ulps=2))


# cross_entropy ---------------------------------------------------------------------------------


def _ce_infer(ctx, types, attrs):
    logits, targets = types
    if logits.rank < 1:
        raise ShapeError("shape-mismatch", "cross_entropy logits need a class axis (rank >= 1)")
    if not is_float(logits.dtype):
        raise ShapeError("dtype-mismatch", f"cross_entropy logits must be float, got {logits.dtype}")
    _need_int(targets, "cross_entropy targets")
    ctx.same_shape(targets.shape, logits.shape[:-1], "cross_entropy targets must have logits.shape[:-1]")
    shape = () if attrs["reduction"] != "none" else ctx.resolve_shape(targets.shape)
    return TensorType(shape, logits.dtype)


_ce_template = numpy_forward(CROSS_ENTROPY)


def _ce_forward(logits, targets, reduction="mean"):
    """Targets checked (a located error), then the template (ops/templates.py)."""
    n_cls = np.shape(logits)[-1]
    t = np.asarray(targets)
    if t.size and (t.min() < 0 or t.max() >= n_cls):
        bad = t[(t < 0) | (t >= n_cls)].flat[0]
        raise KernelError("bad-target", f"cross_entropy target {bad} is out of range [0, {n_cls})")
    return _ce_template(logits, t, reduction)


def _ce_vjp(b, node, g):
    logits, targets = node.inputs
    lt = b.type(logits)
    red = b.attrs(node)["reduction"]
    delta = b("sub", b("softmax", logits, axis=-1),
              b("one_hot", targets, depth=lt.shape[-1].to_json(), dtype=lt.dtype))
    if red == "none":
        scale = b("expand_dims", g, axis=-1)
    elif red == "sum":
        scale = g
    else:
        scale = b("div", g, b("size", targets))
    return [b("mul", delta, scale), None]


def _ce_ref(logits, targets, reduction="mean"):
    m = mp()
    logp = rows_ref(_log_softmax_row, default_axis=-1, keep_rows=True)(logits)
    t = np.asarray(targets)
    per = np.empty(t.shape, dtype=object)
    for pos in np.ndindex(*t.shape):
        v = logp[pos + (int(t[pos]),)]
        per[pos] = -v
    if reduction == "none":
        return per
    total = exact_sum(m, list(per.flat))
    return total if reduction == "sum" or is_nan(total) or abs(total) == INF else total / m.mpf(per.size)


def _ce_edges():
    a, b = rows_edges()
    ta, tb = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]), np.array([1, 0, 2, 0])
    return (Edge((a, ta), {"reduction": "none"}), Edge((b, tb), {"reduction": "none"}),
            Edge((a[:4], ta[:4]), {"reduction": "mean"}), Edge((a[:4], ta[:4]), {"reduction": "sum"}))


def _ce_jvp(b, node, ts):
    if ts[0] is None:
        return None
    logits, targets = node.inputs
    t = ts[0]
    expected = b("sum", b("mul", b("softmax", logits, axis=-1), t), axis=-1)
    picked = b("take_along_axis", t, b("expand_dims", targets, axis=-1), axis=-1)
    per = b("sub", expected, b("squeeze", picked, axis=-1))
    red = b.attrs(node)["reduction"]
    return per if red == "none" else b(red, per)


register(OpDef("cross_entropy", 2, _ce_infer, _ce_forward,
               attrs={"reduction": Attr("choice:mean,sum,none", "mean", "mean, sum or none")},
               vjp=_ce_vjp, jvp=_ce_jvp, group="neural nets",
               doc="logsumexp(logits) - logits[target] over the last axis; integer targets",
               reference=_ce_ref, edges=_ce_edges(), interval=bounds.cross_entropy, template=CROSS_ENTROPY,
               explain={"vjp": ("(softmax({a}) - one_hot({b})) ⊙ {g}{per}",)}, ulps=2))

