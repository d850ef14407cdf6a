"""matmul with NumPy semantics (1-D, 2-D and batched), and its VJP as graph nodes.

dL/dA = g Bᵀ and dL/dB = Aᵀ g (never an explicit Jacobian). 1-D operands are lifted to
2-D inside the rule (as NumPy does) and the result is reshaped back; batch broadcasting is
undone with sum_to.
"""

from __future__ import annotations

import numpy as np

from ..dims import format_shape
from ..ir import TensorType
from . import bounds, shape_refs
from .registry import OpDef, ShapeError, register, result_type
from .shape import shape_json


def _matmul_infer(ctx, types, attrs):
    a, b = types
    if a.rank == 0 or b.rank == 0:
        raise ShapeError("matmul-mismatch", "matmul needs inputs of rank 1 or more; use mul for scalars")
    sa = a.shape if a.rank > 1 else (1,) + a.shape
    sb = b.shape if b.rank > 1 else b.shape + (1,)
    from ..dims import Dim

    sa = tuple(Dim.const(d) if isinstance(d, int) else d for d in sa)
    sb = tuple(Dim.const(d) if isinstance(d, int) else d for d in sb)
    if not ctx.unify(sa[-1], sb[-2]):
        raise ShapeError(
            "matmul-mismatch",
            f"matmul inner dims differ: {format_shape(a.shape)} @ {format_shape(b.shape)} "
            f"({ctx.resolve(sa[-1])} vs {ctx.resolve(sb[-2])})",
        )
    batch = ctx.broadcast(sa[:-2], sb[:-2])
    out = batch + ((sa[-2],) if a.rank > 1 else ()) + ((sb[-1],) if b.rank > 1 else ())
    rt = result_type([a, b])
    return TensorType(ctx.resolve_shape(out), rt.dtype)


def _swap_last(b, x):
    rank = b.type(x).rank
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    return b("transpose", x, perm=perm)


def _matmul_vjp(bl, node, g):
    a, b = node.inputs
    ra, rb = bl.type(a).rank, bl.type(b).rank
    a2 = a if ra > 1 else bl("expand_dims", a, axis=0)
    b2 = b if rb > 1 else bl("expand_dims", b, axis=-1)
    g2 = g
    if ra == 1:
        g2 = bl("expand_dims", g2, axis=-2 if rb > 1 else -1)
    if rb == 1:
        g2 = bl("expand_dims", g2, axis=-1)
    da = bl.sum_to(bl("matmul", g2, _swap_last(bl, b2)), a2)
    db = bl.sum_to(bl("matmul", _swap_last(bl, a2), g2), b2)
    if ra == 1:
        da = bl("reshape", da, shape=shape_json(bl.type(a).shape))
    if rb == 1:
        db = bl("reshape", db, shape=shape_json(bl.type(b).shape))
    return [da, db]


def _matmul_jvp(bl, node, ts):
    a, b = node.inputs
    terms = []
    if ts[0] is not None:
        terms.append(bl("matmul", ts[0], b))
    if ts[1] is not None:
        terms.append(bl("matmul", a, ts[1]))
    if not terms:
        return None
    out = terms[0] if len(terms) == 1 else bl("add", *terms)
    return bl.broadcast_like(out, node.name)


register(OpDef("matmul", 2, _matmul_infer, np.matmul, vjp=_matmul_vjp, jvp=_matmul_jvp,
               group="linear algebra", doc="matrix product with NumPy semantics (1-D, 2-D, batched)",
               reference=shape_refs.matmul, edges=shape_refs.EDGES["matmul"], interval=bounds.matmul,
               explain={"vjp": ("{g} {b}ᵀ", "{a}ᵀ {g}")}, ulps=1))
