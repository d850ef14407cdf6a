"""Indexing-style ops: tile, pad, cumsum, argmax, argmin.

tile, pad and cumsum are linear, so each JVP is the op applied to the tangent (pad with a
fill of 0: its fill value is a constant, not a function of x). Their VJPs are ordinary graph
ops: tile's is a reshape that splits each tiled axis into (copies, size) and a sum over the
copies; pad's slices the padding off and, for reflect/edge/wrap, folds each border strip back
onto the entries it copied (reversed slices for reflect, a sum for edge, a shifted strip for
wrap), added in place with zeros around it; cumsum's is a cumsum in the other direction.
argmax and argmin give int64 indices: no gradient (tests/test_records.py NON_DIFFERENTIABLE).
Dims stay symbolic: tile multiplies them (`[n, 3]` by reps `[2, 1]` is `[2 * n, 3]`), pad
adds constants (`[n, 3]` by one on each side is `[n + 2, 5]`).
"""

from __future__ import annotations

import numpy as np

from ..dims import Dim
from ..dtypes import is_int
from ..ir import TensorType
from . import bounds
from .indexing_refs import EDGES, argext_ref, cumsum_ref, pad_ref, tile_ref
from .registry import Attr, KernelError, OpDef, ShapeError, register


def _ints(value) -> list[int]:
    return [value] if isinstance(value, int) else list(value)


def _json(d) -> int | str:
    return d.to_json() if isinstance(d, Dim) else int(d)


def _linear_jvp(b, node, ts):
    return None if ts[0] is None else b(node.op, ts[0], **node.attrs)


# tile ---------------------------------------------------------------------------------------


def _tile_infer(ctx, types, attrs):
    t = types[0]
    reps = _ints(attrs["reps"])
    if len(reps) != t.rank or any(r < 1 for r in reps):
        raise ShapeError("bad-attr", f"tile needs one repeat count >= 1 per axis of the input (rank {t.rank}), "
                         f"got reps {reps}")
    return TensorType(tuple(d * r for d, r in zip(t.shape, reps)), t.dtype, t.weak)


def _tile_vjp(b, node, g):
    """Each tiled axis of g split into (copies, size) by a reshape, then summed over the copies."""
    shape = b.type(node.inputs[0]).shape
    reps = _ints(b.attrs(node)["reps"])
    if all(r == 1 for r in reps):
        return [g]
    split, axes = [], []
    for r, d in zip(reps, shape):
        if r != 1:
            axes.append(len(split))
            split.append(r)
        split.append(_json(d))
    return [b("sum", b("reshape", g, shape=split), axis=axes)]


register(OpDef("tile", 1, _tile_infer, lambda x, reps: np.tile(x, reps), storage=True,
               attrs={"reps": Attr("ints", None, "copies along each axis (one int >= 1 per axis)", required=True)},
               vjp=_tile_vjp, jvp=_linear_jvp, group="shape", doc="repeat the whole tensor reps[k] times along axis k",
               reference=tile_ref, edges=EDGES["tile"], interval=bounds.same, ulps=0,
               explain={"vjp": ("{g} summed over the copies, back to {shape_a}",)}))


# pad ------------------------------------------------------------------------------------------

PAD_MODES = "constant,reflect,edge,wrap"


def pad_parts(pads, rank: int) -> list[tuple[int, int]]:
    """ONNX's layout [begin_0, ..., begin_r-1, end_0, ..., end_r-1] as (begin, end) per axis."""
    pads = _ints(pads)
    if len(pads) != 2 * rank:
        raise ShapeError("bad-attr", f"pad needs 2 * rank = {2 * rank} pads (all the begins, then all the ends), "
                         f"got {len(pads)}: {pads}")
    return [(pads[k], pads[rank + k]) for k in range(rank)]


def _pad_limit(mode: str, kept):
    """The widest border `mode` can fill from `kept` entries (reflect skips the edge entry)."""
    return None if mode in ("constant", "edge") else kept - 1 if mode == "reflect" else kept


def _pad_infer(ctx, types, attrs):
    t = types[0]
    mode, value = attrs["mode"], attrs["value"]
    out = []
    for k, ((pb, pe), d) in enumerate(zip(pad_parts(attrs["pads"], t.rank), t.shape)):
        kept = ctx.resolve(d - max(-pb, 0) - max(-pe, 0))
        if kept.is_const and kept.value < 1:
            raise ShapeError("bad-attr", f"pads {pb} and {pe} crop all of axis {k} (size {d})")
        limit = _pad_limit(mode, kept)
        if limit is not None and limit.is_const and max(pb, pe) > limit.value:
            raise ShapeError("bad-attr", f"{mode} padding of {max(pb, pe)} on axis {k} needs at least "
                             f"{max(pb, pe) + (mode == 'reflect')} entries there, the axis has {kept}")
        out.append(ctx.resolve(d + pb + pe))
    if mode == "constant" and ((t.dtype == "bool" and value not in (0, 1)) or
                               (is_int(t.dtype) and not float(value).is_integer())):
        raise ShapeError("bad-attr", f"pad value {value} does not fit the {t.dtype} input")
    return TensorType(tuple(out), t.dtype, t.weak)


def pad_forward(x, pads, mode="constant", value=0.0):
    """Negative pads crop first (every axis), then np.pad adds the positive ones."""
    x = np.asarray(x)
    parts = pad_parts(pads, x.ndim)
    x = x[tuple(slice(max(-pb, 0), n - max(-pe, 0)) for (pb, pe), n in zip(parts, x.shape))]
    width = [(max(pb, 0), max(pe, 0)) for pb, pe in parts]
    for (pb, pe), n in zip(width, x.shape):
        limit = _pad_limit(mode, n)
        if n < 1 or (limit is not None and max(pb, pe) > limit):
            raise KernelError("bad-input", f"{mode} padding of {max(pb, pe)} does not fit an axis of {n} entries")
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=np.asarray(value).astype(x.dtype))
    return np.pad(x, width, mode=mode)


def _place(b, v: str, ax: int, start, total) -> str:
    """v laid into zeros of size `total` along ax, from `start` on (concat with zero blocks)."""
    shape = b.type(v).shape
    size = shape[ax]
    before, after = Dim.const(0) + start, Dim.const(0) + total - start - size
    dtype = b.type(v).dtype

    def zeros(n):
        return b.zeros([n if k == ax else d for k, d in enumerate(shape)], dtype)

    pieces = ([zeros(before)] if before != Dim.const(0) else []) + [v]
    if after != Dim.const(0):
        pieces.append(zeros(after))
    return pieces[0] if len(pieces) == 1 else b("concat", *pieces, axis=ax)


def _cut(b, v: str, ax: int, start, stop) -> str:
    return b("slice", v, axis=ax, start=_json(start), stop=_json(stop))


def _reversed(b, v: str, ax: int, n: int) -> str:
    """v reversed along ax (n entries, a constant): n one-entry slices concatenated backwards."""
    if n == 1:
        return v
    return b("concat", *[_cut(b, v, ax, n - 1 - j, n - j) for j in range(n)], axis=ax)


def _unpad_axis(b, g: str, ax: int, pb: int, pe: int, mode: str, n) -> str:
    """The VJP of padding one axis of n entries by (pb, pe) >= 0: the middle of g, plus each
    border strip folded back onto the entries it copied."""
    total = pb + n + pe
    out = _cut(b, g, ax, pb, pb + n)
    if mode == "constant":
        return out
    folded = []
    if pb:
        left = _cut(b, g, ax, 0, pb)
        folded.append({"edge": lambda: _place(b, b("sum", left, axis=ax, keepdims=True), ax, 0, n),
                       "reflect": lambda: _place(b, _reversed(b, left, ax, pb), ax, 1, n),
                       "wrap": lambda: _place(b, left, ax, n - pb, n)}[mode]())
    if pe:
        right = _cut(b, g, ax, pb + n, total)
        folded.append({"edge": lambda: _place(b, b("sum", right, axis=ax, keepdims=True), ax, n - 1, n),
                       "reflect": lambda: _place(b, _reversed(b, right, ax, pe), ax, n - 1 - pe, n),
                       "wrap": lambda: _place(b, right, ax, 0, n)}[mode]())
    for f in folded:
        out = b("add", out, f)
    return out


def _pad_vjp(b, node, g):
    """Undo the forward in reverse: the pads axis by axis from the last, then the crops."""
    x = node.inputs[0]
    a = b.attrs(node)
    shape = b.type(x).shape
    parts = pad_parts(a["pads"], len(shape))
    for ax in reversed(range(len(shape))):
        pb, pe = parts[ax]
        if pb > 0 or pe > 0:
            kept = shape[ax] - max(-pb, 0) - max(-pe, 0)
            g = _unpad_axis(b, g, ax, max(pb, 0), max(pe, 0), a["mode"], kept)
    for ax, (pb, pe) in enumerate(parts):
        if pb < 0 or pe < 0:
            g = _place(b, g, ax, max(-pb, 0), shape[ax])
    return [g]


def _pad_jvp(b, node, ts):
    if ts[0] is None:
        return None
    return b("pad", ts[0], **{**node.attrs, "value": 0.0})


def _pad_interval(bnds, attrs, info):
    if attrs.get("mode", "constant") == "constant" and any(p > 0 for p in _ints(attrs["pads"])):
        v = float(attrs.get("value") or 0.0)
        return min(bnds[0][0], v), max(bnds[0][1], v)
    return bnds[0]


register(OpDef("pad", 1, _pad_infer, pad_forward, storage=True,
               attrs={"pads": Attr("ints", None, "[begin per axis..., end per axis...]; negative pads crop",
                                   required=True),
                      "mode": Attr(f"choice:{PAD_MODES}", "constant", "how the border is filled"),
                      "value": Attr("float", 0.0, "the fill of mode constant")},
               vjp=_pad_vjp, jvp=_pad_jvp, group="shape",
               doc="pad (or, with negative pads, crop) each axis: constant, reflect (mirror without the edge "
                   "entry), edge (repeat it) or wrap (periodic)",
               reference=pad_ref, edges=EDGES["pad"], interval=_pad_interval, ulps=0,
               explain={"vjp": ("{g} without the border (reflect/edge/wrap: the border folded back), "
                                "back to {shape_a}",)}))


# cumsum ---------------------------------------------------------------------------------------


def _cumsum_infer(ctx, types, attrs):
    t = types[0]
    ctx.axis(attrs["axis"], t.rank)
    return TensorType(t.shape, "int64" if t.dtype == "bool" else t.dtype, t.weak)


def cumsum_forward(x, axis, exclusive=False, reverse=False):
    """Sequential running sums in the input's dtype (int32 stays int32; bools count as int64)."""
    x = np.asarray(x)
    dtype = np.int64 if x.dtype == bool else x.dtype
    if reverse:
        x = np.flip(x, axis)
    out = np.cumsum(x, axis=axis, dtype=dtype)
    if exclusive:
        n = out.shape[axis]
        head = np.zeros_like(np.take(out, [0], axis=axis))
        out = np.concatenate([head, np.take(out, range(n - 1), axis=axis)], axis=axis)
    return np.flip(out, axis) if reverse else out


def _cumsum_vjp(b, node, g):
    """The adjoint of a running sum is the running sum the other way (exclusive stays so)."""
    a = b.attrs(node)
    return [b("cumsum", g, axis=a["axis"], exclusive=a["exclusive"], reverse=not a["reverse"])]


def _cumsum_interval(bnds, attrs, info):
    _, nmax = info.count(0, attrs["axis"])
    lo, hi = bounds.total(bnds, {}, info, n=(1.0, nmax))
    return (min(lo, 0.0), max(hi, 0.0)) if attrs.get("exclusive") else (lo, hi)


register(OpDef("cumsum", 1, _cumsum_infer, cumsum_forward,
               attrs={"axis": Attr("int", None, "the axis to sum along", required=True),
                      "exclusive": Attr("bool", False, "leave each entry out of its own sum (the first is 0)"),
                      "reverse": Attr("bool", False, "sum from the end of the axis")},
               vjp=_cumsum_vjp, jvp=_linear_jvp, group="reductions",
               doc="running sums along an axis (exclusive: of the entries before; reverse: from the end)",
               reference=cumsum_ref, edges=EDGES["cumsum"], interval=_cumsum_interval, ulps=0,
               explain={"vjp": ("the running sum of {g} in the other direction",)}))


# argmax / argmin ---------------------------------------------------------------------------------


def _arg_infer(ctx, types, attrs):
    t = types[0]
    if t.rank == 0:
        raise ShapeError("bad-axis", "argmax and argmin need an input of rank 1 or more")
    ax = ctx.axis(attrs["axis"], t.rank)
    if attrs["keepdims"]:
        return TensorType(tuple(Dim.const(1) if k == ax else d for k, d in enumerate(t.shape)), "int64")
    return TensorType(tuple(d for k, d in enumerate(t.shape) if k != ax), "int64")


def _arg_forward(fn):
    def forward(x, axis=-1, keepdims=False, select_last_index=False):
        x = np.asarray(x)
        if select_last_index:
            out = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
        else:
            out = fn(x, axis=axis)
        out = np.asarray(out, dtype=np.int64)
        return np.expand_dims(out, axis) if keepdims else out

    return forward


def _arg_interval(bnds, attrs, info):
    _, nmax = info.count(0, attrs.get("axis", -1))
    return 0.0, nmax - 1


for _name, _fn, _word in (("argmax", np.argmax, "largest"), ("argmin", np.argmin, "smallest")):
    register(OpDef(_name, 1, _arg_infer, _arg_forward(_fn),
                   attrs={"axis": Attr("int", -1, "the axis to search"),
                          "keepdims": Attr("bool", False, "keep the axis as size 1"),
                          "select_last_index": Attr("bool", False, "at ties, the last index (else the first)")},
                   group="indexing", doc=f"int64 index of the {_word} entry along an axis; a NaN counts as "
                   f"{_word} (NumPy); no gradient", reference=argext_ref(_name == "argmax"), edges=EDGES[_name],
                   interval=_arg_interval, ulps=0))
