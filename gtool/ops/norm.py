"""Normalization and dropout: layer_norm, instance_norm, batch_norm, dropout.

All three norms normalize x over some axes, xhat = (x - mean) / sqrt(var + epsilon) (var the
population variance), then scale and shift: layer_norm over the axes from `axis` on, with
scale and bias shaped like those trailing axes; instance_norm over the spatial axes (2, ...)
and batch_norm with `training` over the batch and spatial axes (0, 2, ...), both with
per-channel scale and bias on axis 1; batch_norm at inference uses the given running mean
and var instead of the batch's.

The forward is careful where a textbook one is not: x is scaled by a power of two (exact) so
that sums of squares cannot overflow at 1e200, and the mean is a double-double
(m + mean(x - m)), so a row [1e8, 1e8 + 1, 1e8 + 2] normalizes without cancelling. float32
inputs are computed in float64 and rounded once. The VJP of the normalization is the
symmetric projection r (g - mean(g) - xhat mean(g xhat)) with r = 1 / sqrt(var + eps): the
JVP is the same map, applied to the tangent (both built from graph ops; they overflow past
|x - mean| ~ 1e154, where var does). Dropout multiplies by a seeded mask / (1 - ratio).
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import TensorType
from . import bounds
from .reference import INF, NAN, Edge, is_nan, mp, rows_edges
from .registry import Attr, KernelError, OpDef, ShapeError, register

EPS = {"epsilon": Attr("float", 1e-5, "added to the variance (0 gives NaN for a constant row)")}


# the normalization, forward ----------------------------------------------------------------


def normalized(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) over `axes`, in float64 (see the module docstring)."""
    x = np.asarray(x, np.float64)
    if x.size == 0:  # no rows, or rows of nothing: an empty result either way (np.mean would warn)
        return x.copy()
    with np.errstate(all="ignore"):
        big = np.max(np.abs(x), axis=axes, keepdims=True, initial=0.0)
        e = np.where(np.isfinite(big) & (big > 0), np.frexp(np.where(np.isfinite(big), big, 1.0))[1], 0)
        xs = np.ldexp(x, -e)  # exact: 0.5 <= max |xs| < 1 (but where it underflows: 1e-300 apart)
        hi = np.mean(xs, axis=axes, keepdims=True)
        d = xs - hi
        xc = d - np.mean(d, axis=axes, keepdims=True)
        var = np.mean(xc * xc, axis=axes, keepdims=True)
        eps_s = np.ldexp(np.float64(eps), -2 * e)  # eps in the scaled units: inf for rows of 1e-300
        return np.where(np.isinf(eps_s), np.ldexp(xc, e) / math.sqrt(eps), xc / np.sqrt(var + eps_s))


def _channel(p: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel [C] parameter shaped to broadcast along axis 1 of a rank-`rank` x."""
    return np.reshape(p, (-1,) + (1,) * (rank - 2)) if rank > 2 else p


def _out_dtype(*xs) -> np.dtype:
    return np.result_type(*[np.asarray(x).dtype for x in xs if np.asarray(x).dtype.kind == "f"] or [np.float64])


def _ln_axes(rank: int, axis: int) -> tuple[int, ...]:
    return tuple(range(axis % rank, rank))


def _layer_norm(x, scale, bias, axis=-1, epsilon=1e-5):
    dt = _out_dtype(x, scale, bias)
    x = np.asarray(x)
    with np.errstate(all="ignore"):
        y = normalized(x, _ln_axes(x.ndim, axis), epsilon) * np.asarray(scale, np.float64) + np.asarray(bias, np.float64)
    return y.astype(dt)


def _spatial(rank: int, batch: bool) -> tuple[int, ...]:
    return ((0,) if batch else ()) + tuple(range(2, rank))


def _instance_norm(x, scale, bias, epsilon=1e-5):
    dt = _out_dtype(x, scale, bias)
    x = np.asarray(x)
    with np.errstate(all="ignore"):
        y = normalized(x, _spatial(x.ndim, False), epsilon) * _channel(np.asarray(scale, np.float64), x.ndim) \
            + _channel(np.asarray(bias, np.float64), x.ndim)
    return y.astype(dt)


def _batch_norm(x, scale, bias, mean, var, epsilon=1e-5, training=False):
    dt = _out_dtype(x, scale, bias, mean, var)
    x = np.asarray(x)
    r = x.ndim
    sc, b = (_channel(np.asarray(p, np.float64), r) for p in (scale, bias))
    with np.errstate(all="ignore"):
        if training:
            xhat = normalized(x, _spatial(r, True), epsilon)
        else:
            m, v = (_channel(np.asarray(p, np.float64), r) for p in (mean, var))
            xhat = (x.astype(np.float64) - m) / np.sqrt(v + epsilon)
        return (xhat * sc + b).astype(dt)


# shape rules ----------------------------------------------------------------------------------


def _float_out(types) -> str:
    floats = [t.dtype for t in types if t.dtype.startswith("float")]
    return "float64" if "float64" in floats or not floats else "float32"


def _layer_norm_infer(ctx, types, attrs):
    x, scale, bias = types
    ax = ctx.axis(attrs["axis"], x.rank)
    for p, what in ((scale, "scale"), (bias, "bias")):
        if p.rank > x.rank - ax:
            raise ShapeError("shape-mismatch", f"layer_norm {what} has rank {p.rank}, more than the "
                                               f"{x.rank - ax} normalized axes")
        ctx.same_shape(ctx.broadcast(x.shape, p.shape), x.shape, f"layer_norm {what} must broadcast to x")
    return TensorType(x.shape, _float_out(types), x.weak)


def _channel_infer(name, n_params):
    def infer(ctx, types, attrs):
        x = types[0]
        if x.rank < 2:
            raise ShapeError("shape-mismatch", f"{name} needs x of rank >= 2 ([N, C, ...]), got rank {x.rank}")
        for k, p in enumerate(types[1:1 + n_params]):
            if p.rank != 1:
                raise ShapeError("shape-mismatch", f"{name} input {k + 1} must be one value per channel ([C]), "
                                                   f"got rank {p.rank}")
            ctx.same(p.shape[0], x.shape[1], "shape-mismatch", f"{name} input {k + 1} has {p.shape[0]} values "
                                                                f"for {x.shape[1]} channels")
        return TensorType(x.shape, _float_out(types), x.weak)

    return infer


# derivative rules ----------------------------------------------------------------------------


def _stats(b, x, axes, eps):
    """(xhat, r) as graph nodes: the normalized x and 1 / sqrt(var + eps)."""
    xc = b("sub", x, b("mean", x, axis=list(axes), keepdims=True))
    var = b("mean", b("square", xc), axis=list(axes), keepdims=True)
    r = b("div", b.const(1), b("sqrt", b("add", var, b.const(eps))))
    return b("mul", xc, r), r


def _project(b, xhat, r, axes, v):
    """r (v - mean(v) - xhat mean(v xhat)): the Jacobian of the normalization (symmetric)."""
    m1 = b("mean", v, axis=list(axes), keepdims=True)
    m2 = b("mean", b("mul", v, xhat), axis=list(axes), keepdims=True)
    return b("mul", r, b("sub", b("sub", v, m1), b("mul", xhat, m2)))


def _expand(b, p, rank):
    """A [C] parameter as [C, 1, ...] for x of this rank."""
    return b("expand_dims", p, axis=list(range(1, rank - 1))) if rank > 2 else p


def _ln_vjp(b, node, g):
    x, scale, bias = node.inputs
    a = b.attrs(node)
    axes = _ln_axes(b.type(x).rank, a["axis"])
    xhat, r = _stats(b, x, axes, a["epsilon"])
    return [_project(b, xhat, r, axes, b("mul", g, scale)), b.sum_to(b("mul", g, xhat), scale), b.sum_to(g, bias)]


def _ln_jvp(b, node, ts):
    x, scale, bias = node.inputs
    a = b.attrs(node)
    axes = _ln_axes(b.type(x).rank, a["axis"])
    xhat, r = _stats(b, x, axes, a["epsilon"])
    terms = []
    if ts[0] is not None:
        terms.append(b("mul", _project(b, xhat, r, axes, ts[0]), scale))
    if ts[1] is not None:
        terms.append(b("mul", xhat, ts[1]))
    if ts[2] is not None:
        terms.append(ts[2])
    return _total(b, terms, node.name)


def _total(b, terms, like):
    if not terms:
        return None
    out = terms[0]
    for t in terms[1:]:
        out = b("add", out, t)
    return b.broadcast_like(out, like)


def _channel_rules(batch: bool):
    """VJP and JVP of instance_norm (batch False) and training-mode batch_norm (batch True)."""

    def vjp(b, node, g):
        x, scale, bias = node.inputs[:3]
        rank = b.type(x).rank
        axes = _spatial(rank, batch)
        red = list((0,) + tuple(range(2, rank)))
        xhat, r = _stats(b, x, axes, b.attrs(node)["epsilon"])
        out = [_project(b, xhat, r, axes, b("mul", g, _expand(b, scale, rank))),
               b("sum", b("mul", g, xhat), axis=red), b("sum", g, axis=red)]
        return out + [None] * (len(node.inputs) - 3)

    def jvp(b, node, ts):
        x, scale = node.inputs[:2]
        rank = b.type(x).rank
        axes = _spatial(rank, batch)
        xhat, r = _stats(b, x, axes, b.attrs(node)["epsilon"])
        terms = []
        if ts[0] is not None:
            terms.append(b("mul", _project(b, xhat, r, axes, ts[0]), _expand(b, scale, rank)))
        if ts[1] is not None:
            terms.append(b("mul", xhat, _expand(b, ts[1], rank)))
        if ts[2] is not None:
            terms.append(_expand(b, ts[2], rank))
        return _total(b, terms, node.name)

    return vjp, jvp


_in_vjp, _in_jvp = _channel_rules(batch=False)
_bn_train_vjp, _bn_train_jvp = _channel_rules(batch=True)


def _bn_parts(b, node):
    """(rank, rc, r, xc, reduced axes): rc = 1 / sqrt(var + eps) per channel, r = rc as [C, 1, ...]."""
    x, scale, bias, mean, var = node.inputs
    rank = b.type(x).rank
    rc = b("div", b.const(1), b("sqrt", b("add", var, b.const(b.attrs(node)["epsilon"]))))
    xc = b("sub", x, _expand(b, mean, rank))
    return rank, rc, _expand(b, rc, rank), xc, [0] + list(range(2, rank))


def _bn_vjp(b, node, g):
    if b.attrs(node)["training"]:
        return _bn_train_vjp(b, node, g)
    scale = node.inputs[1]
    rank, rc, r, xc, red = _bn_parts(b, node)
    gs = b("mul", g, _expand(b, b("mul", scale, rc), rank))  # d/dx
    dvar = b("mul", b("sum", b("mul", gs, xc), axis=red), b("mul", b.const(-0.5), b("square", rc)))
    return [gs, b("sum", b("mul", g, b("mul", xc, r)), axis=red), b("sum", g, axis=red),
            b("neg", b("sum", gs, axis=red)), dvar]


def _bn_jvp(b, node, ts):
    if b.attrs(node)["training"]:
        return _bn_train_jvp(b, node, ts)
    scale = node.inputs[1]
    rank, _, r, xc, _ = _bn_parts(b, node)
    sr = b("mul", _expand(b, scale, rank), r)
    terms = []
    if ts[0] is not None:
        terms.append(b("mul", ts[0], sr))
    if ts[1] is not None:
        terms.append(b("mul", b("mul", xc, r), _expand(b, ts[1], rank)))
    if ts[2] is not None:
        terms.append(_expand(b, ts[2], rank))
    if ts[3] is not None:
        terms.append(b("neg", b("mul", _expand(b, ts[3], rank), sr)))
    if ts[4] is not None:
        half = b("mul", b.const(-0.5), b("mul", b("square", r), sr))
        terms.append(b("mul", b("mul", xc, half), _expand(b, ts[4], rank)))
    return _total(b, terms, node.name)


# references (mpmath, by rows) --------------------------------------------------------------------


def _row_norm(m, row, eps):
    """The normalized row exactly; NaN everywhere if the row holds NaN or an infinity."""
    if not row:  # an empty axis: nothing to normalize
        return []
    if any(is_nan(v) or abs(v) == INF for v in row):
        return [NAN] * len(row)
    vals = [m.mpf(v) for v in row]
    mu = m.fsum(vals) / len(vals)
    var = m.fsum((v - mu) ** 2 for v in vals) / len(vals)
    den = m.sqrt(var + m.mpf(eps))
    if den == 0:
        return [NAN] * len(row)
    return [(v - mu) / den for v in vals]


def _norm_ref(x, axes, eps):
    """The normalization over `axes` of an object array, as an object array."""
    x = np.asarray(x, dtype=object)
    kept = [k for k in range(x.ndim) if k not in axes]
    moved = np.transpose(x, kept + list(axes))
    lead = moved.shape[:len(kept)]
    rows = moved.reshape(lead + (math.prod(moved.shape[len(kept):]),))  # not -1: lead may hold a 0
    out = np.empty(rows.shape, dtype=object)
    m = mp()
    for idx in np.ndindex(*lead):
        out[idx] = np.array(_row_norm(m, list(rows[idx]), eps), dtype=object)
    return np.transpose(out.reshape(moved.shape), np.argsort(kept + list(axes)))


def _affine_ref(xhat, scale, bias):
    out = np.empty(xhat.shape, dtype=object)
    m = mp()
    sc, bi = np.broadcast_to(scale, xhat.shape), np.broadcast_to(bias, xhat.shape)
    for idx in np.ndindex(*xhat.shape):
        v = xhat[idx]
        out[idx] = NAN if any(is_nan(u) for u in (v, sc[idx], bi[idx])) else v * m.mpf(sc[idx]) + m.mpf(bi[idx])
    return out


def _ln_ref(x, scale, bias, axis=-1, epsilon=1e-5):
    x = np.asarray(x, dtype=object)
    return _affine_ref(_norm_ref(x, _ln_axes(x.ndim, axis), epsilon), np.asarray(scale, dtype=object),
                       np.asarray(bias, dtype=object))


def _in_ref(x, scale, bias, epsilon=1e-5):
    x = np.asarray(x, dtype=object)
    return _affine_ref(_norm_ref(x, _spatial(x.ndim, False), epsilon), _channel(np.asarray(scale, dtype=object), x.ndim),
                       _channel(np.asarray(bias, dtype=object), x.ndim))


def _standardized(m, x, mean, var, eps):
    """(x - mean) / sqrt(var + eps) for one value, with IEEE's infinities (mean, var finite)."""
    if any(is_nan(v) for v in (x, mean, var)) or abs(mean) == INF or abs(var) == INF or var + eps < 0:
        return NAN
    den = m.sqrt(m.mpf(var) + m.mpf(eps))
    if abs(x) == INF:
        return x
    num = m.mpf(x) - m.mpf(mean)
    if den == 0:
        return NAN if num == 0 else math.copysign(INF, num)
    return num / den


def _bn_ref(x, scale, bias, mean, var, epsilon=1e-5, training=False):
    x = np.asarray(x, dtype=object)
    r = x.ndim
    if training:
        xhat = _norm_ref(x, _spatial(r, True), epsilon)
    else:
        m = mp()
        mb, vb = (np.broadcast_to(_channel(np.asarray(p, dtype=object), r), x.shape) for p in (mean, var))
        xhat = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(*x.shape):
            xhat[idx] = _standardized(m, x[idx], mb[idx], vb[idx], epsilon)
    return _affine_ref(xhat, _channel(np.asarray(scale, dtype=object), r), _channel(np.asarray(bias, dtype=object), r))


# interval rules -----------------------------------------------------------------------------------


def _xhat_bound(n_max: float, eps: float) -> float:
    """|xhat| <= sqrt(n - 1) for a row of n (equality: one value apart from the rest)."""
    return math.sqrt(n_max - 1) if n_max < INF else INF


def _affine_interval(xb, scale_b, bias_b, info):
    return bounds.add([bounds.mul([xb, scale_b], {}, info), bias_b], {}, info)


def _ln_interval(b_, attrs, info):
    shape = info.shapes[0] if info.shapes else None
    axes = None if shape is None else list(_ln_axes(len(shape), attrs["axis"]))
    _, n = info.count(0, axes)
    s = _xhat_bound(n, attrs["epsilon"])
    return _affine_interval((-s, s), b_[1], b_[2], info)


def _channel_interval(batch):
    def rule(b_, attrs, info):
        shape = info.shapes[0] if info.shapes else None
        axes = None if shape is None else list(_spatial(len(shape), batch or attrs.get("training", False)))
        _, n = info.count(0, axes)
        if not batch or attrs.get("training"):
            s = _xhat_bound(n, attrs["epsilon"])
            return _affine_interval((-s, s), b_[1], b_[2], info)
        (vlo, vhi) = b_[4]
        eps = attrs["epsilon"]
        rmax = INF if vlo + eps <= 0 else 1 / math.sqrt(vlo + eps)
        rmin = 0.0 if vhi == INF else 1 / math.sqrt(max(vhi + eps, 1e-300))
        xc = bounds.sub([b_[0], b_[3]], {}, info)
        return _affine_interval(bounds.mul([xc, (rmin, rmax)], {}, info), b_[1], b_[2], info)

    return rule


# edges -----------------------------------------------------------------------------------------


def _edges():
    a, big = rows_edges()
    rows = np.concatenate([a, big])  # ±1000, 1e15 spreads, ties, ±inf, NaN, 1e308
    sc, bi = np.array([2.0, -0.5, 1.0]), np.array([10.0, 0.0, -3.0])  # biases that xhat sc cannot cancel
    x4 = np.concatenate([a, big]).reshape(2, 7, 3)[:, :6].reshape(2, 3, 2, 3)
    ch, cb = np.array([1.5, -1.0, 0.5]), np.array([10.0, 0.0, -10.0])
    rm, rv = np.array([0.5, -1e3, 0.0]), np.array([4.0, 1e-3, 0.0])
    return {
        "layer_norm": (Edge((rows, sc, bi)), Edge((rows, sc, bi), {"epsilon": 0.0}),
                       Edge((x4, np.array(2.0), np.array(0.5)), {"axis": 1}),
                       Edge((np.array([[1e-300, 5e-324, 0.0, -1e-310]]), np.ones(4), np.zeros(4)), {"epsilon": 1e-12})),
        "instance_norm": (Edge((x4, ch, cb)), Edge((x4, ch, cb), {"epsilon": 0.0})),
        "batch_norm": (Edge((x4, ch, cb, rm, rv)), Edge((x4, ch, cb, rm, rv), {"epsilon": 0.0}),
                       Edge((x4, ch, cb, rm, rv), {"training": True}),
                       Edge((a[:4].copy(), ch, cb, rm, rv), {"training": True})),
    }


EDGES = _edges()

register(OpDef("layer_norm", 3, _layer_norm_infer, _layer_norm,
               attrs={"axis": Attr("int", -1, "the first normalized axis: axes axis..rank-1 are normalized"),
                      **EPS},
               vjp=_ln_vjp, jvp=_ln_jvp, group="normalization",
               doc="(x - mean) / sqrt(var + epsilon) * scale + bias over the axes from `axis` on "
                   "(scale, bias broadcast to them)",
               reference=_ln_ref, edges=EDGES["layer_norm"], interval=_ln_interval, ulps=4,
               explain={"vjp": ("r (g' - mean(g') - x̂ mean(g' x̂)), g' = {g} ⊙ {b}", "sum of {g} ⊙ x̂", "sum of {g}")}))
register(OpDef("instance_norm", 3, _channel_infer("instance_norm", 2), _instance_norm, attrs=dict(EPS),
               vjp=_in_vjp, jvp=_in_jvp, group="normalization",
               doc="per sample and channel over the spatial axes (2, ...): (x - mean) / sqrt(var + epsilon) "
                   "* scale[c] + bias[c]",
               reference=_in_ref, edges=EDGES["instance_norm"], interval=_channel_interval(False), ulps=4,
               explain={"vjp": ("r (g' - mean(g') - x̂ mean(g' x̂)), g' = {g} ⊙ {b}[c]", "sum of {g} ⊙ x̂",
                                "sum of {g}")}))
register(OpDef("batch_norm", 5, _channel_infer("batch_norm", 4), _batch_norm,
               attrs={**EPS, "training": Attr("bool", False, "normalize with the batch's mean and var (over axes "
                                              "0, 2, ...) instead of the given running ones")},
               vjp=_bn_vjp, jvp=_bn_jvp, group="normalization",
               doc="inputs x [N, C, ...], scale, bias, mean, var [C]: (x - mean[c]) / sqrt(var[c] + epsilon) "
                   "* scale[c] + bias[c]; training: the batch's statistics",
               reference=_bn_ref, edges=EDGES["batch_norm"], interval=_channel_interval(True), ulps=4,
               explain={"vjp": ("{g} ⊙ scale r", "sum of {g} ⊙ x̂", "sum of {g}", "-sum of {g} ⊙ scale r",
                                "-½ r³ sum of {g} ⊙ scale (x - mean)")}))


# dropout ---------------------------------------------------------------------------------------------


def dropout_draws(shape, seed: int) -> np.ndarray:
    """The uniform [0, 1) draws behind dropout's mask: NumPy's PCG64 generator seeded with `seed`."""
    return np.random.default_rng(seed).random(shape)


def dropout_mask(shape, ratio: float, seed: int) -> np.ndarray:
    """The kept entries: draws >= ratio."""
    return dropout_draws(shape, seed) >= ratio


def _dropout(x, *given, ratio=0.5, seed=0, training=False):
    """x, or x * mask / (1 - ratio); `given` = (ratio, training) as run-time inputs (ONNX's)."""
    x = np.asarray(x)
    ratio, training = _dropout_args(given, ratio, training)
    if not training or ratio == 0:
        return x
    keep = dropout_mask(x.shape, ratio, seed)
    with np.errstate(over="ignore"):
        kept = (x.astype(np.float64) / (1.0 - ratio)).astype(x.dtype)  # one rounding in float32 too
    return np.where(keep, kept, np.zeros((), x.dtype))


def _dropout_args(given, ratio, training):
    if given:
        ratio = float(given[0])
        if not 0 <= ratio < 1:
            raise KernelError("bad-input", f"dropout ratio must be in [0, 1), got {ratio}")
    if len(given) > 1:
        training = bool(given[1])
    return ratio, training


def _dropout_infer(ctx, types, attrs):
    if not 0 <= attrs["ratio"] < 1:
        raise ShapeError("bad-attr", f"dropout ratio must be in [0, 1), got {attrs['ratio']}")
    if len(types) > 3:
        raise ShapeError("arity", f"dropout takes x and at most ratio and training, got {len(types)} inputs")
    for t, what, ok in zip(types[1:], ("ratio", "training"), (lambda d: d.startswith("float"), lambda d: d == "bool")):
        if t.rank != 0 or not ok(t.dtype):
            raise ShapeError("dtype-mismatch", f"dropout {what} must be a {'float' if what == 'ratio' else 'bool'} "
                                               f"scalar, got {t.dtype} of rank {t.rank}")
    t = types[0]
    return TensorType(t.shape, t.dtype if t.dtype.startswith("float") else "float64", t.weak)


def _ratio_partial(b, node, v):
    """d y / d ratio times v: y / (1 - ratio) where training (x m / (1 - r) is all that moves)."""
    if len(node.inputs) < 2 or (len(node.inputs) < 3 and not b.attrs(node)["training"]):
        return None
    d = b("div", node.name, b("sub", b.const(1), node.inputs[1]))
    if len(node.inputs) > 2:
        d = b("mul", d, b("cast", node.inputs[2], dtype=b.type(node.name).dtype))
    return b("mul", d, v)


def _dropout_vjp(b, node, g):
    dr = _ratio_partial(b, node, g)
    out = [b("dropout", g, *node.inputs[1:], **node.attrs)]
    if len(node.inputs) > 1:
        out.append(None if dr is None else b("sum", dr))
    return out + [None] * (len(node.inputs) - len(out))


def _dropout_jvp(b, node, ts):
    terms = []
    if ts[0] is not None:
        terms.append(b("dropout", ts[0], *node.inputs[1:], **node.attrs))
    if len(ts) > 1 and ts[1] is not None:
        dr = _ratio_partial(b, node, ts[1])
        if dr is not None:
            terms.append(dr)
    return _total(b, terms, node.name)


def _dropout_ref(x, *given, ratio=0.5, seed=0, training=False):
    x = np.asarray(x, dtype=object)
    ratio, training = _dropout_args([float(v) if i == 0 else bool(v) for i, v in enumerate(given)], ratio, training)
    if not training:
        return x.copy()
    keep = dropout_mask(x.shape, ratio, seed)
    m = mp()
    out = np.empty(x.shape, dtype=object)
    for idx in np.ndindex(*x.shape):
        v = x[idx]
        out[idx] = 0.0 if not keep[idx] else v if is_nan(v) or abs(v) == INF else m.mpf(v) / (1 - m.mpf(ratio))
    return out


def _dropout_interval(b_, attrs, info):
    lo, hi = b_[0]
    if len(b_) < 3 and not attrs["training"]:
        return lo, hi
    r_hi = b_[1][1] if len(b_) > 1 else attrs["ratio"]
    s = 1 / (1 - r_hi) if r_hi < 1 else INF
    return bounds.clean(min(bounds._mul(lo, s), lo, 0.0), max(bounds._mul(hi, s), hi, 0.0))


_FLOATS = (0.0, -0.0, 5e-324, 1.5, -3.0, 1e308, -1e308, INF, -INF, NAN)
register(OpDef("dropout", None, _dropout_infer, _dropout,
               attrs={"ratio": Attr("float", 0.5, "the fraction dropped, in [0, 1)"),
                      "seed": Attr("int", 0, "the mask's seed: the same mask on every run"),
                      "training": Attr("bool", False, "false: the identity (inference)")},
               vjp=_dropout_vjp, jvp=_dropout_jvp, group="normalization", view=True,
               doc="x at inference; training: x * mask / (1 - ratio), mask a seeded draw keeping 1 - ratio "
                   "of the entries (linear in x: its VJP and JVP are dropout with the same mask); optional "
                   "inputs ratio (float scalar) and training (bool scalar) override the attrs at run time",
               reference=_dropout_ref, interval=_dropout_interval, ulps=1,
               edges=(Edge((np.array(_FLOATS),)),
                      Edge((np.array(_FLOATS * 4).reshape(4, 10),), {"training": True, "ratio": 0.3, "seed": 7}),
                      Edge((np.array(_FLOATS),), {"training": True, "ratio": 0.0}),
                      Edge((np.array(_FLOATS * 2), np.array(0.25), np.array(True)), {"seed": 3}),
                      Edge((np.array(_FLOATS), np.array(0.25), np.array(False)))),
               explain={"vjp": ("{g} ⊙ mask / (1 - ratio)", "sum of {g} ⊙ {out} / (1 - ratio)", "none")}))
