"""References and edge tables of the shape ops, by index arithmetic on object arrays (never
the NumPy function an op registers): each says where every output element comes from.

The edge inputs hold -0.0, subnormals, ±inf and NaN: data movement must keep them bit for
bit (the tests compare these ops at 0 ULPs).
"""

from __future__ import annotations

import math

import numpy as np

from .reference import INF, NAN, Edge, exact_sum, mp, refill

SPECIAL = np.array([[-0.0, 5e-324, INF], [NAN, -1e308, 1.0]])


def _axes(axis, rank) -> list[int]:
    if axis is None:
        return list(range(rank))
    return sorted({a % rank for a in ([axis] if isinstance(axis, int) else axis)})


def reshape(x, shape):
    x = np.asarray(x, dtype=object)
    shape = list(shape)
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        shape[shape.index(-1)] = x.size // known
    return refill(x, shape)


def transpose(x, perm=None):
    x = np.asarray(x, dtype=object)
    perm = [p % x.ndim for p in perm] if perm is not None else list(reversed(range(x.ndim)))
    out = np.empty(tuple(x.shape[p] for p in perm), dtype=object)
    for idx in np.ndindex(*out.shape):
        src = [0] * x.ndim
        for k, p in enumerate(perm):
            src[p] = idx[k]
        out[idx] = x[tuple(src)]
    return out


def broadcast_to(x, shape):
    x = np.asarray(x, dtype=object)
    out = np.empty(tuple(shape), dtype=object)
    lead = len(shape) - x.ndim
    for idx in np.ndindex(*out.shape):
        out[idx] = x[tuple(0 if d == 1 else idx[lead + k] for k, d in enumerate(x.shape))]
    return out


def sum_to(x, like):
    """Each output element is the exact sum of the inputs that broadcast onto it."""
    m = mp()
    x, shape = np.asarray(x, dtype=object), np.shape(like)
    lead = x.ndim - len(shape)
    parts: dict[tuple, list] = {idx: [] for idx in np.ndindex(*shape)}
    for idx in np.ndindex(*x.shape):
        parts[tuple(0 if d == 1 else idx[lead + k] for k, d in enumerate(shape))].append(x[idx])
    out = np.empty(shape, dtype=object)
    for idx, values in parts.items():
        out[idx] = exact_sum(m, values)
    return out


def size(x, axis=None):
    return float(math.prod(np.shape(x)[a] for a in _axes(axis, np.ndim(x))))


def expand_dims(x, axis):
    x = np.asarray(x)
    rank = x.ndim + (1 if isinstance(axis, int) else len(axis))
    where = _axes(axis, rank)
    it = iter(x.shape)
    return refill(x, [1 if k in where else next(it) for k in range(rank)])


def squeeze(x, axis=None):
    x = np.asarray(x)
    drop = [k for k, d in enumerate(x.shape) if d == 1] if axis is None else _axes(axis, x.ndim)
    return refill(x, [d for k, d in enumerate(x.shape) if k not in drop])


def concat(*xs, axis=0):
    xs = [np.asarray(x, dtype=object) for x in xs]
    ax = axis % xs[0].ndim
    shape = list(xs[0].shape)
    shape[ax] = sum(x.shape[ax] for x in xs)
    out = np.empty(tuple(shape), dtype=object)
    for idx in np.ndindex(*out.shape):
        k, j = 0, idx[ax]
        while j >= xs[k].shape[ax]:
            j -= xs[k].shape[ax]
            k += 1
        out[idx] = xs[k][idx[:ax] + (j,) + idx[ax + 1:]]
    return out


def slice_(x, axis, start, stop):
    x = np.asarray(x, dtype=object)
    ax = axis % x.ndim
    shape = list(x.shape)
    shape[ax] = stop - start
    out = np.empty(tuple(shape), dtype=object)
    for idx in np.ndindex(*out.shape):
        out[idx] = x[idx[:ax] + (idx[ax] + start,) + idx[ax + 1:]]
    return out


def matmul(a, b):
    """Exact dot products (NumPy semantics for 1-D operands and batch broadcasting)."""
    m = mp()
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    a2 = a.reshape((1,) + a.shape) if a.ndim == 1 else a
    b2 = b.reshape(b.shape + (1,)) if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    out = np.empty(batch + (a2.shape[-2], b2.shape[-1]), dtype=object)
    for idx in np.ndindex(*out.shape):
        ia = tuple(0 if d == 1 else idx[len(batch) - len(a2.shape[:-2]) + k] for k, d in enumerate(a2.shape[:-2]))
        ib = tuple(0 if d == 1 else idx[len(batch) - len(b2.shape[:-2]) + k] for k, d in enumerate(b2.shape[:-2]))
        row, col = a2[ia + (idx[-2],)], b2[ib + (slice(None), idx[-1])]
        out[idx] = exact_sum(m, [_times(m, p, q) for p, q in zip(row, col)])
    if a.ndim == 1:
        out = out[..., 0, :]
    if b.ndim == 1:
        out = out[..., 0]
    return out


def _times(m, p, q):
    if isinstance(p, int) and isinstance(q, int):
        return p * q
    if p != p or q != q:
        return NAN
    if (abs(p) == INF and q == 0) or (abs(q) == INF and p == 0):
        return NAN
    if abs(p) == INF or abs(q) == INF:
        return math.copysign(INF, p) * math.copysign(1.0, q)
    return m.mpf(p) * m.mpf(q)


EDGES = {
    "reshape": (Edge((SPECIAL,), {"shape": [3, -1]}),),
    "transpose": (Edge((SPECIAL,), {}), Edge((SPECIAL.reshape(1, 2, 3),), {"perm": [2, 0, 1]})),
    "broadcast_to": (Edge((SPECIAL[:1],), {"shape": [2, 2, 3]}),),
    "sum_to": (Edge((SPECIAL, np.zeros((1, 3))),), Edge((np.array([[1e308, 1e308], [-0.0, -0.0]]), np.zeros(2)),)),
    "size": (Edge((SPECIAL,), {"axis": 1}),),
    "expand_dims": (Edge((SPECIAL,), {"axis": [0, 2]}),),
    "squeeze": (Edge((SPECIAL.reshape(2, 1, 3),), {}),),
    "concat": (Edge((SPECIAL, SPECIAL[:, :1]), {"axis": 1}),),
    "slice": (Edge((SPECIAL,), {"axis": 1, "start": 1, "stop": 3}),),
    "matmul": (Edge((np.array([[1e308, 1e308], [INF, 0.0], [NAN, 1.0], [-0.0, -0.0]]), np.array([[1.0], [1.0]])),),
               Edge((np.array([1.0, 2.0, 3.0]), np.array([4.0, -5.0, 2.0])),),
               Edge((np.array([[2, -3]]), np.array([[4], [5]])), note="int")),
}
