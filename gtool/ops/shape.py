"""Shape ops: reshape, transpose, broadcast_to, expand_dims, squeeze, concat, slice, and the
gradient helpers sum_to and size.

All of them are linear, so each JVP is the op itself applied to the tangent; each VJP is
the op that undoes it (transpose by the inverse perm, broadcast_to by sum_to, concat by
slices). Dims stay symbolic: concat of [b, n] and [b, 5] is [b, n + 5].
"""

from __future__ import annotations

import math

import numpy as np

from ..dims import Dim, format_shape, parse_dim, parse_index
from ..ir import TensorType
from . import bounds
from . import shape_refs as refs
from .registry import Attr, OpDef, ShapeError, register


def _product(shape) -> Dim:
    out = Dim.const(1)
    for d in shape:
        out = out * d
    return out


def _divide(total: Dim, known: Dim) -> Dim | None:
    """total / known when it is exact for every binding (polynomial division), else None;
    None too for a constant known <= 0, which no reshape target has."""
    if known.is_const and known.value <= 0:
        return None
    return total.exact_div(known)


def _shape_attr(value) -> tuple:
    return tuple(-1 if (d == -1 and not isinstance(d, bool)) else parse_dim(d) for d in value)


def shape_json(shape) -> list:
    """A symbolic shape as a `shape` attr value (ints and dim-expression strings)."""
    return [d.to_json() for d in shape]


# reshape -------------------------------------------------------------------------------


def _reshape_infer(ctx, types, attrs):
    t = types[0]
    target = _shape_attr(attrs["shape"])
    total = ctx.resolve(_product(t.shape))
    holes = [k for k, d in enumerate(target) if d == -1 and not isinstance(d, Dim)]
    if len(holes) > 1:
        raise ShapeError("bad-reshape", "reshape allows at most one -1 in shape")
    known = _product([d for d in target if isinstance(d, Dim)])
    src = format_shape(t.shape)
    want = "[" + ", ".join(str(d) for d in target) + "]"
    if holes:
        q = _divide(total, known)
        if q is None or (q.is_const and q.value < 0):
            raise ShapeError("bad-reshape", f"cannot reshape {src} ({total} elements) to {want}")
        return TensorType(tuple(q if d == -1 and not isinstance(d, Dim) else d for d in target), t.dtype)
    if not ctx.unify(total, known):
        raise ShapeError("bad-reshape", f"cannot reshape {src} ({total} elements) to {want} ({known} elements)")
    return TensorType(target, t.dtype)


def _reshape_vjp(b, node, g):
    return [b("reshape", g, shape=shape_json(b.type(node.inputs[0]).shape))]


def _linear_jvp(b, node, ts):
    """The JVP of a linear op in its first input: the op applied to the tangent."""
    if ts[0] is None:
        return None
    return b(node.op, ts[0], *node.inputs[1:], **node.attrs)


register(OpDef("reshape", 1, _reshape_infer, lambda x, shape: np.reshape(x, shape),
               storage=True, attrs={"shape": Attr("shape", None, "the new shape; one -1 is inferred", required=True)},
               vjp=_reshape_vjp, jvp=_linear_jvp, view=True, group="shape", doc="same elements, new shape",
               reference=refs.reshape, edges=refs.EDGES["reshape"], interval=bounds.same, ulps=0,
               explain={"vjp": ('reshape({g}, {shape_a})',)}))


# transpose -------------------------------------------------------------------------------


def _perm(ctx, perm, rank):
    if perm is None:
        return tuple(reversed(range(rank)))
    if len(perm) != rank:
        raise ShapeError("bad-axis", f"perm {perm} has {len(perm)} entries for rank {rank}")
    p = tuple(ctx.axis(a, rank, "perm entry") for a in perm)
    if sorted(p) != list(range(rank)):
        raise ShapeError("bad-axis", f"perm {perm} is not a permutation of the axes")
    return p


def _transpose_infer(ctx, types, attrs):
    t = types[0]
    p = _perm(ctx, attrs["perm"], t.rank)
    return TensorType(tuple(t.shape[k] for k in p), t.dtype, t.weak)


def _transpose_vjp(b, node, g):
    rank = b.type(node.inputs[0]).rank
    perm = b.attrs(node)["perm"]
    p = [a % rank for a in perm] if perm is not None else list(reversed(range(rank)))
    inv = [0] * rank
    for k, a in enumerate(p):
        inv[a] = k
    return [b("transpose", g, perm=inv)]


register(OpDef("transpose", 1, _transpose_infer, lambda x, perm=None: np.transpose(x, perm),
               storage=True, attrs={"perm": Attr("perm", None, "the axis order; default reversed")},
               vjp=_transpose_vjp, jvp=_linear_jvp, view=True, group="shape", doc="permute axes",
               reference=refs.transpose, edges=refs.EDGES["transpose"], interval=bounds.same, ulps=0,
               explain={"vjp": ('transpose({g}) with the inverse perm',)}))


# broadcast_to / sum_to ---------------------------------------------------------------------


def _check_broadcastable(ctx, small, big, what):
    if len(small) > len(big):
        raise ShapeError("shape-mismatch", f"{what}: {format_shape(small)} has more axes than {format_shape(big)}")
    out = ctx.broadcast(small, big)
    if len(out) != len(big) or not all(ctx.resolve(a) == ctx.resolve(b_) for a, b_ in zip(out, big)):
        raise ShapeError("shape-mismatch", f"{what}: {format_shape(small)} does not broadcast to {format_shape(big)}")


def _broadcast_to_infer(ctx, types, attrs):
    t = types[0]
    target = tuple(parse_dim(d) for d in attrs["shape"])
    _check_broadcastable(ctx, t.shape, target, "broadcast_to")
    return TensorType(ctx.resolve_shape(target), t.dtype)


register(OpDef("broadcast_to", 1, _broadcast_to_infer, lambda x, shape: np.broadcast_to(x, shape),
               storage=True, attrs={"shape": Attr("shape", None, "the target shape", required=True)},
               vjp=lambda b, node, g: [b.sum_to(g, node.inputs[0])], jvp=_linear_jvp, view=True,
               group="shape", doc="repeat along broadcast axes (a read-only view)",
               reference=refs.broadcast_to, edges=refs.EDGES["broadcast_to"], interval=bounds.same, ulps=0,
               explain={"vjp": ('sum_to({g}, {shape_a})',)}))


def _sum_to_infer(ctx, types, attrs):
    x, like = types
    _check_broadcastable(ctx, like.shape, x.shape, "sum_to")
    return TensorType(like.shape, x.dtype, x.weak)


def sum_to_forward(x, like):
    """Sum x down to like's shape: the adjoint of broadcasting."""
    shape = np.shape(like)
    if np.shape(x) == shape:
        return x
    lead = np.ndim(x) - len(shape)
    axes = tuple(range(lead)) + tuple(
        k + lead for k, d in enumerate(shape) if d == 1 and np.shape(x)[k + lead] != 1
    )
    return np.sum(x, axis=axes, keepdims=True).reshape(shape) if axes else np.reshape(x, shape)


register(OpDef("sum_to", 2, _sum_to_infer, sum_to_forward, view=True,
               vjp=lambda b, node, g: [b.broadcast_like(g, node.inputs[0]), None],
               jvp=lambda b, node, ts: None if ts[0] is None else b("sum_to", ts[0], node.inputs[1]),
               group="shape helpers for gradients", doc="sum x down to the shape of like (undoes broadcasting)",
               reference=refs.sum_to, edges=refs.EDGES["sum_to"], interval=bounds.sum_to, ulps=0,
               explain={"vjp": ('{g} broadcast to {shape_a}',)}))


def _size_infer(ctx, types, attrs):
    t = types[0]
    ctx.axes(attrs["axis"], t.rank)
    return TensorType((), "float64", weak=True)


def _size_forward(x, axis=None):
    shape = np.shape(x)
    if axis is None:
        return float(math.prod(shape))
    axes = [axis] if isinstance(axis, int) else axis
    return float(math.prod(shape[a] for a in axes))


register(OpDef("size", 1, _size_infer, _size_forward,
               storage=True, attrs={"axis": Attr("axes", None, "an axis, a list of axes, or null for all")},
               group="shape helpers for gradients", doc="element count along axis, as a (weak) float scalar",
               reference=refs.size, edges=refs.EDGES["size"], interval=bounds.size, ulps=0))


# expand_dims / squeeze ---------------------------------------------------------------------


def _axes_list(axis):
    return [axis] if isinstance(axis, int) else list(axis)


def _expand_infer(ctx, types, attrs):
    t = types[0]
    axes = _axes_list(attrs["axis"])
    rank = t.rank + len(axes)
    norm = sorted(ctx.axis(a, rank) for a in axes)
    if len(set(norm)) != len(norm):
        raise ShapeError("bad-axis", f"expand_dims axis {attrs['axis']} repeats an axis")
    it = iter(t.shape)
    return TensorType(tuple(Dim.const(1) if k in norm else next(it) for k in range(rank)), t.dtype, t.weak)


def _back_to_input_shape(b, node, g):
    return [b("reshape", g, shape=shape_json(b.type(node.inputs[0]).shape))]


register(OpDef("expand_dims", 1, _expand_infer, lambda x, axis: np.expand_dims(x, axis),
               storage=True, attrs={"axis": Attr("axes", None, "where the new size-1 axes go", required=True)},
               vjp=_back_to_input_shape, jvp=_linear_jvp, view=True, group="shape", doc="insert size-1 axes",
               reference=refs.expand_dims, edges=refs.EDGES["expand_dims"], interval=bounds.same, ulps=0,
               explain={"vjp": ('reshape({g}, {shape_a})',)}))


def _squeeze_infer(ctx, types, attrs):
    t = types[0]
    if attrs["axis"] is None:
        axes = [k for k, d in enumerate(t.shape) if d == 1]
    else:
        axes = ctx.axes(attrs["axis"], t.rank)
        for a in axes:
            if not ctx.unify(t.shape[a], Dim.const(1)):
                raise ShapeError("shape-mismatch", f"squeeze: axis {a} has size {t.shape[a]}, not 1")
    return TensorType(tuple(d for k, d in enumerate(t.shape) if k not in axes), t.dtype, t.weak)


register(OpDef("squeeze", 1, _squeeze_infer, lambda x, axis=None: np.squeeze(x, axis),
               storage=True, attrs={"axis": Attr("axes", None, "the size-1 axes to drop; null drops all")},
               vjp=_back_to_input_shape, jvp=_linear_jvp, view=True, group="shape", doc="drop size-1 axes",
               reference=refs.squeeze, edges=refs.EDGES["squeeze"], interval=bounds.same, ulps=0,
               explain={"vjp": ('reshape({g}, {shape_a})',)}))


# concat / slice ------------------------------------------------------------------------------


def _concat_infer(ctx, types, attrs):
    from .registry import result_type

    rank = types[0].rank
    if any(t.rank != rank for t in types):
        ranks = ", ".join(format_shape(t.shape) for t in types)
        raise ShapeError("shape-mismatch", f"concat needs inputs of one rank: {ranks}")
    ax = ctx.axis(attrs["axis"], rank)
    out = list(types[0].shape)
    for t in types[1:]:
        for k in range(rank):
            if k == ax:
                out[k] = out[k] + t.shape[k]
            elif not ctx.unify(out[k], t.shape[k]):
                raise ShapeError(
                    "shape-mismatch",
                    f"concat on axis {attrs['axis']}: axis {k} is {ctx.resolve(out[k])} in one input "
                    f"and {ctx.resolve(t.shape[k])} in another",
                )
    rt = result_type(types)
    return TensorType(ctx.resolve_shape(out), rt.dtype)


def _concat_vjp(b, node, g):
    ax = b.attrs(node)["axis"]
    start = Dim.const(0)
    out = []
    for x in node.inputs:
        stop = start + b.type(x).shape[ax % b.type(x).rank]
        out.append(b("slice", g, axis=ax, start=start.to_json(), stop=stop.to_json()))
        start = stop
    return out


def _concat_jvp(b, node, ts):
    if all(t is None for t in ts):
        return None
    parts = [t if t is not None else b.zeros_like(x) for t, x in zip(ts, node.inputs)]
    return b("concat", *parts, **node.attrs)


register(OpDef("concat", None, _concat_infer, lambda *xs, axis=0: np.concatenate(xs, axis=axis),
               storage=True, attrs={"axis": Attr("int", 0, "the axis to join along")},
               vjp=_concat_vjp, jvp=_concat_jvp, group="shape", doc="join tensors along an axis",
               reference=refs.concat, edges=refs.EDGES["concat"], interval=bounds.union, ulps=0,
               explain={"vjp": ("this input's slice of {g}",)}))


def _slice_infer(ctx, types, attrs):
    t = types[0]
    ax = ctx.axis(attrs["axis"], t.rank)
    start, stop = parse_index(attrs["start"]), parse_index(attrs["stop"])
    size, rest = ctx.resolve(stop - start), ctx.resolve(t.shape[ax] - stop)
    if (size.is_const and size.value < 0) or (rest.is_const and rest.value < 0):  # start == stop: empty, allowed
        raise ShapeError("bad-axis", f"slice {start}:{stop} of axis {attrs['axis']} (size {t.shape[ax]}) ends before "
                         "it starts or is out of range")
    return TensorType(tuple(stop - start if k == ax else d for k, d in enumerate(t.shape)), t.dtype, t.weak)


def _slice_forward(x, axis, start, stop):
    index = [slice(None)] * np.ndim(x)
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def _slice_vjp(b, node, g):
    """Put g back in place: zeros before and after it along the axis."""
    a = b.attrs(node)
    shape = b.type(node.inputs[0]).shape
    ax = a["axis"] % len(shape)
    start, stop = parse_index(a["start"]), parse_index(a["stop"])
    dtype = b.type(g).dtype

    def zeros(n):
        return b.zeros([n if k == ax else d for k, d in enumerate(shape)], dtype)

    pieces = ([zeros(start)] if start != 0 else []) + [g]
    if stop != shape[ax]:
        pieces.append(zeros(shape[ax] - stop))
    return [pieces[0] if len(pieces) == 1 else b("concat", *pieces, axis=ax)]


register(OpDef("slice", 1, _slice_infer, _slice_forward,
               storage=True, attrs={"axis": Attr("int", None, "the axis", required=True),
                      "start": Attr("index", None, "first index", required=True),
                      "stop": Attr("index", None, "one past the last index", required=True)},
               vjp=_slice_vjp, jvp=_linear_jvp, view=True, group="shape",
               doc="x[start:stop] along axis (gtool extension: the VJP of concat)",
               reference=refs.slice_, edges=refs.EDGES["slice"], interval=bounds.same, ulps=0,
               explain={"vjp": ('{g} put back in zeros of {shape_a}',)}))
