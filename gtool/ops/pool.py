"""Pooling: max_pool and avg_pool (N-d, ONNX MaxPool / AveragePool, torch max_poolNd /
avg_poolNd), their gradient ops, and flatten (the CNN's bridge to the dense layers).

Each pool is linear in something, so its derivatives close over a pair of ops:

    y = max_pool(x)          dx = max_pool_grad(x, g)      ty = max_pool_pick(x, tx)
    avg_pool(x)              dx = avg_pool_grad(g, x)      ty = avg_pool(tx)

max_pool_pick(x, t) takes t at each window's argmax of x and max_pool_grad(x, g) adds g back
there (its adjoint in g). The tie rule, as PyTorch and ONNX: a window's gradient goes to its
*first* maximum (row-major over the window), a NaN counting as the maximum; overlapping windows
add. Padding never wins a max (it is -inf) and counts in an average only with
`count_include_pad` (never the cells ceil_mode reads past the end padding). A pool's stride
defaults to its kernel (PyTorch); the ONNX importer passes ONNX's default of 1 explicitly.
GlobalAveragePool and GlobalMaxPool are `mean` / `max` over the spatial axes (keepdims).
"""

from __future__ import annotations

import numpy as np

from ..dims import Dim
from ..ir import TensorType
from . import bounds, shape_refs
from . import window_refs as refs
from .reference import Edge
from .registry import Attr, OpDef, ShapeError, register
from .shape import shape_json
from .windows import AUTO_PAD, Plan, ints, prod, window_from_attrs

POOL = {
    "kernel": Attr("ints", None, "window size per spatial axis (one int or one per axis)", required=True),
    "stride": Attr("ints", None, "step per spatial axis; default: the kernel"),
    "padding": Attr("ints", 0, "padding: one int, one per axis, or all starts then all ends (ONNX pads)"),
    "auto_pad": AUTO_PAD,
    "dilation": Attr("ints", 1, "spacing of the window taps per spatial axis"),
    "ceil_mode": Attr("bool", False, "round the output size up (a last, partial window)"),
}
AVG = {**POOL, "count_include_pad": Attr("bool", False, "divide by the window size including padding")}


def _window(attrs: dict, n: int):
    return window_from_attrs(attrs, n, ints(attrs["kernel"], n, "kernel", 1, 1), stride_is_kernel=True)


def _pool_out(ctx, x: TensorType, attrs: dict, op: str) -> tuple:
    if x.rank < 3:
        raise ShapeError("shape-mismatch", f"{op} needs an input [N, C, *spatial] (rank >= 3), got rank {x.rank}")
    win = _window(attrs, x.rank - 2)
    for a, (pb, pe) in enumerate(zip(win.pad_begin, win.pad_end)):
        if max(pb, pe) >= win.extent[a]:
            raise ShapeError("bad-attr", f"{op} padding ({max(pb, pe)}) must be smaller than the window "
                             f"extent ({win.extent[a]}) along spatial axis {a}")
    return tuple(x.shape[:2]) + tuple(win.out_dim(a, ctx.resolve(h)) for a, h in enumerate(x.shape[2:]))


def _need_float(t: TensorType, op: str) -> None:
    if not t.dtype.startswith("float"):
        raise ShapeError("dtype-mismatch", f"{op} needs a float input, got {t.dtype}")


def _max_pool_infer(ctx, types, attrs):
    x = types[0]
    return TensorType(ctx.resolve_shape(_pool_out(ctx, x, attrs, "max_pool")), x.dtype)


def _avg_pool_infer(ctx, types, attrs):
    x = types[0]
    _need_float(x, "avg_pool")
    return TensorType(ctx.resolve_shape(_pool_out(ctx, x, attrs, "avg_pool")), x.dtype)


def _pick_infer(ctx, types, attrs):
    x, t = types
    _need_float(t, "max_pool_pick")
    ctx.same_shape(t.shape, x.shape, "max_pool_pick t must have x's shape")
    return TensorType(ctx.resolve_shape(_pool_out(ctx, x, attrs, "max_pool_pick")), t.dtype)


def _grad_like_infer(op: str, pooled: int, like: int):
    def infer(ctx, types, attrs):
        g, x = types[pooled], types[like]
        _need_float(g, op)
        ctx.same_shape(g.shape, _pool_out(ctx, x, attrs, op), f"{op} g must have the pooled shape of x")
        return TensorType(ctx.resolve_shape(x.shape), g.dtype)

    return infer


# NumPy forwards ------------------------------------------------------------------------------------


def _plan(x, kw) -> Plan:
    return _window(kw, np.ndim(x) - 2).plan(np.shape(x)[2:])


def _lowest(dtype):
    return -np.inf if np.dtype(dtype).kind == "f" else np.iinfo(dtype).min


def max_pool_forward(x, **kw):
    """The running maximum over the kernel offsets (np.maximum: NaN wins)."""
    plan = _plan(x, kw)
    xp = plan.pad(np.asarray(x), _lowest(np.asarray(x).dtype))
    out = None
    for _, sl in plan.offsets():
        v = xp[(slice(None), slice(None)) + sl]
        out = v.copy() if out is None else np.maximum(out, v, out=out)
    return out


def _argmax_flat(x, plan: Plan) -> np.ndarray:
    """For each window, the flat index into the padded x of its first maximum (first NaN)."""
    x = np.asarray(x)
    nb, ch = x.shape[:2]
    n = len(plan.spatial)
    win = plan.windows(plan.pad(x, _lowest(x.dtype)))  # [N, C, *out, *kernel]
    k = np.argmax(win.reshape(win.shape[: 2 + n] + (prod(plan.window.kernel),)), axis=-1)  # first max (first NaN)
    taps = np.unravel_index(k, plan.window.kernel)
    flat = np.zeros(k.shape, np.int64)
    for a in range(n):
        o = np.arange(plan.out[a]).reshape((-1,) + (1,) * (n - 1 - a))
        pos = o * plan.window.stride[a] + taps[a] * plan.window.dilation[a]
        flat = flat * plan.padded[a] + pos
    lead = (np.arange(nb * ch).reshape((nb, ch) + (1,) * n)) * prod(plan.padded)
    return flat + lead


def max_pool_pick_forward(x, t, **kw):
    plan = _plan(x, kw)
    idx = _argmax_flat(x, plan)
    return plan.pad(np.asarray(t)).reshape(-1)[idx]


def max_pool_grad_forward(x, g, **kw):
    """g added back at each window's first maximum (np.bincount: overlapping windows add)."""
    plan = _plan(x, kw)
    g = np.asarray(g)
    idx = _argmax_flat(x, plan)
    lead = tuple(np.shape(x)[:2])
    total = np.bincount(idx.reshape(-1), weights=g.reshape(-1).astype(np.float64), minlength=prod(lead + plan.padded))
    return np.ascontiguousarray(plan.crop(total.reshape(lead + plan.padded))).astype(g.dtype)


def avg_pool_forward(x, **kw):
    plan = _plan(x, kw)
    x = np.asarray(x)
    xp = plan.pad(x)
    count = plan.count(kw.get("count_include_pad", False)).astype(x.dtype)
    out = np.zeros(x.shape[:2] + plan.out, x.dtype)
    for _, sl in plan.offsets():
        out += xp[(slice(None), slice(None)) + sl]
    out /= count
    if not np.isfinite(out).all():  # a sum past the dtype's largest value: sum the shares instead
        with np.errstate(all="ignore"):
            shares = sum(xp[(slice(None), slice(None)) + sl] / count for _, sl in plan.offsets())
        out = np.where(np.isinf(out) & np.isfinite(shares), shares, out)
    return out


def avg_pool_grad_forward(g, x, **kw):
    plan = _plan(x, kw)
    g = np.asarray(g)
    share = g / plan.count(kw.get("count_include_pad", False)).astype(g.dtype)
    xp = np.zeros(np.shape(x)[:2] + plan.padded, g.dtype)
    for _, sl in plan.offsets():
        xp[(slice(None), slice(None)) + sl] += share
    return np.ascontiguousarray(plan.crop(xp))


# derivative rules ----------------------------------------------------------------------------------


def _attrs(b, node, keys) -> dict:
    a = b.attrs(node)
    return {k: a[k] for k in keys}


def _max_vjp(b, node, g):
    return [b("max_pool_grad", node.inputs[0], g, **_attrs(b, node, POOL))]


def _max_jvp(b, node, ts):
    return None if ts[0] is None else b("max_pool_pick", node.inputs[0], ts[0], **_attrs(b, node, POOL))


def _pick_vjp(b, node, g):
    return [None, b("max_pool_grad", node.inputs[0], g, **_attrs(b, node, POOL))]


def _pick_jvp(b, node, ts):
    return None if ts[1] is None else b("max_pool_pick", node.inputs[0], ts[1], **_attrs(b, node, POOL))


def _mgrad_vjp(b, node, g):
    return [None, b("max_pool_pick", node.inputs[0], g, **_attrs(b, node, POOL))]


def _mgrad_jvp(b, node, ts):
    return None if ts[1] is None else b("max_pool_grad", node.inputs[0], ts[1], **_attrs(b, node, POOL))


def _avg_vjp(b, node, g):
    return [b("avg_pool_grad", g, node.inputs[0], **_attrs(b, node, AVG))]


def _avg_jvp(b, node, ts):
    return None if ts[0] is None else b("avg_pool", ts[0], **_attrs(b, node, AVG))


def _agrad_vjp(b, node, g):
    return [b("avg_pool", g, **_attrs(b, node, AVG)), None]


def _agrad_jvp(b, node, ts):
    return None if ts[0] is None else b("avg_pool_grad", ts[0], node.inputs[1], **_attrs(b, node, AVG))


def _avg_interval(bounds_, attrs, info):
    lo, hi = bounds_[0]
    if attrs.get("count_include_pad"):  # padding averages in zeros
        return min(lo, 0.0), max(hi, 0.0)
    return lo, hi


def _grad_interval(k: int):
    def rule(bounds_, attrs, info):
        """Each input cell receives g (or g / count) from 0 to prod(kernel) windows."""
        kernel = attrs["kernel"]
        n = float(prod(kernel)) if isinstance(kernel, list | tuple) else float("inf")
        return bounds.total([bounds_[k]], {}, info, n=(0.0, n))

    return rule


# records --------------------------------------------------------------------------------------------

register(OpDef("max_pool", 1, _max_pool_infer, max_pool_forward, attrs=dict(POOL), vjp=_max_vjp, jvp=_max_jvp,
               group="pooling", doc="the maximum of each window (N-d; NaN wins; padding never does)",
               reference=refs.max_pool, edges=refs.POOL_EDGES, interval=bounds.same,
               explain={"vjp": ("{g} sent to each window's first maximum of {a}",)}, ulps=0))
register(OpDef("max_pool_pick", 2, _pick_infer, max_pool_pick_forward, attrs=dict(POOL), vjp=_pick_vjp,
               jvp=_pick_jvp, group="pooling", doc="t at each window's first maximum of x (max_pool's JVP)",
               reference=refs.max_pool_pick, edges=refs.MAX_POOL_PICK_EDGES,
               interval=lambda bs, attrs, info: bs[1],
               explain={"vjp": ("nothing (the argmax is piecewise constant)", "{g} sent to the windows' maxima of {a}")},
               ulps=0))
register(OpDef("max_pool_grad", 2, _grad_like_infer("max_pool_grad", 1, 0), max_pool_grad_forward,
               attrs=dict(POOL), vjp=_mgrad_vjp, jvp=_mgrad_jvp, group="pooling",
               doc="g added back at each window's first maximum of x (max_pool's VJP)",
               reference=refs.max_pool_grad, edges=refs.MAX_POOL_GRAD_EDGES, interval=_grad_interval(1),
               explain={"vjp": ("nothing (the argmax is piecewise constant)", "{g} at the windows' maxima of {a}")},
               ulps=1))
register(OpDef("avg_pool", 1, _avg_pool_infer, avg_pool_forward, attrs=dict(AVG), vjp=_avg_vjp, jvp=_avg_jvp,
               group="pooling", doc="the mean of each window (N-d; padding counts only with count_include_pad)",
               reference=refs.avg_pool, edges=refs.AVG_POOL_EDGES, interval=_avg_interval,
               explain={"vjp": ("{g} / window size, spread over each window",)}, ulps=1))
register(OpDef("avg_pool_grad", 2, _grad_like_infer("avg_pool_grad", 0, 1), avg_pool_grad_forward,
               attrs=dict(AVG), vjp=_agrad_vjp, jvp=_agrad_jvp, group="pooling",
               doc="g / window size spread back over each window of x (avg_pool's VJP; x gives the shape)",
               reference=refs.avg_pool_grad, edges=refs.AVG_POOL_GRAD_EDGES, interval=_grad_interval(0),
               explain={"vjp": ("avg_pool({g})", "nothing (x gives only the shape)")}, ulps=2))


# max_pool_indices -------------------------------------------------------------------------------


def _indices_infer(ctx, types, attrs):
    if attrs["storage_order"] not in (0, 1):
        raise ShapeError("bad-attr", f"attr 'storage_order' must be 0 or 1, got {attrs['storage_order']}")
    return TensorType(ctx.resolve_shape(_pool_out(ctx, types[0], attrs, "max_pool_indices")), "int64")


def max_pool_indices_forward(x, storage_order=0, **kw):
    """ONNX MaxPool's Indices: the flat position in x (padding not counted) of each window's
    first maximum; storage_order 1 numbers each image's cells column-major."""
    plan = _plan(x, kw)
    x = np.asarray(x)
    idx = _argmax_flat(x, plan)
    nc, cell = np.divmod(idx, prod(plan.padded))
    coords = np.unravel_index(cell, plan.padded)
    sizes = plan.spatial[::-1] if storage_order else plan.spatial
    coords = coords[::-1] if storage_order else coords
    flat = np.zeros_like(idx)
    for c, b, h in zip(coords, (plan.pad_begin[::-1] if storage_order else plan.pad_begin), sizes):
        flat = flat * h + (c - b)
    return nc * prod(plan.spatial) + flat


register(OpDef("max_pool_indices", 1, _indices_infer, max_pool_indices_forward,
               attrs={**POOL, "storage_order": Attr("int", 0, "0: row-major cell numbers, 1: column-major")},
               group="pooling", doc="where each window's first maximum is: its flat index in x (ONNX MaxPool's "
               "Indices; int64)", reference=refs.max_pool_indices, edges=refs.POOL_EDGES[:3] + (
                   Edge((refs.POOL_EDGES[1].inputs[0],), {**refs.POOL_EDGES[1].attrs, "storage_order": 1}),),
               interval=lambda bs, attrs, info: (0.0, float("inf")), ulps=0))


# flatten -------------------------------------------------------------------------------------------


def _flatten_infer(ctx, types, attrs):
    t = types[0]
    a = attrs["axis"]
    if not -t.rank <= a <= t.rank:
        raise ShapeError("bad-axis", f"flatten axis {a} is out of range for rank {t.rank}")
    a = a + t.rank if a < 0 else a
    lead, rest = Dim.const(1), Dim.const(1)
    for d in t.shape[:a]:
        lead = lead * d
    for d in t.shape[a:]:
        rest = rest * d
    return TensorType(ctx.resolve_shape((lead, rest)), t.dtype, t.weak)


def _flatten_forward(x, axis=1):
    x = np.asarray(x)
    a = axis + x.ndim if axis < 0 else axis
    return x.reshape(prod(x.shape[:a]), prod(x.shape[a:]))


def _flatten_ref(x, axis=1):
    x = np.asarray(x, dtype=object)
    a = axis + x.ndim if axis < 0 else axis
    return shape_refs.reshape(x, [prod(x.shape[:a]), prod(x.shape[a:])])


register(OpDef("flatten", 1, _flatten_infer, _flatten_forward,
               attrs={"axis": Attr("int", 1, "axes before it make the rows, the rest the columns (ONNX Flatten)")},
               vjp=lambda b, node, g: [b("reshape", g, shape=shape_json(b.type(node.inputs[0]).shape))],
               jvp=lambda b, node, ts: None if ts[0] is None else b("flatten", ts[0], **node.attrs),
               view=True, group="shape", doc="reshape to 2-D [prod(shape[:axis]), prod(shape[axis:])]",
               reference=_flatten_ref,
               edges=(Edge((shape_refs.SPECIAL.reshape(1, 2, 3),), {}), Edge((shape_refs.SPECIAL,), {"axis": 0}),
                      Edge((shape_refs.SPECIAL.reshape(2, 1, 3),), {"axis": -1})),
               interval=bounds.same, ulps=0, explain={"vjp": ("reshape({g}, {shape_a})",)}))
