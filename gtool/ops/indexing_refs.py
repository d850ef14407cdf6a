"""References and edge tables of tile, pad, cumsum, argmax and argmin (gtool/ops/indexing.py).

Written by index arithmetic on object arrays of exact numbers, from the definitions: tile's
out[i] = x[i mod d]; pad's source index per axis (the crop offset, then reflect = mirror
without the edge entry, edge = clamp, wrap = mod); cumsum's exact sums of the entries before
(and at) each position; argmax's first (or last) position of the largest entry, a NaN
counting as largest. Never the NumPy functions the ops run.
"""

from __future__ import annotations

import numpy as np

from .reference import INF, NAN, Edge, exact_sum, is_nan, mp


def tile_ref(x, reps):
    x = np.asarray(x, dtype=object)
    reps = [reps] if isinstance(reps, int) else list(reps)
    out = np.empty(tuple(d * r for d, r in zip(x.shape, reps)), dtype=object)
    for idx in np.ndindex(*out.shape):
        out[idx] = x[tuple(i % d for i, d in zip(idx, x.shape))]
    return out


def _source(j: int, begin: int, crop: int, n: int, mode: str) -> int | None:
    """The input index (before cropping) that output index j copies along one axis, or None
    for the constant fill. `begin` >= 0 is the pad before, `crop` the entries cropped, `n`
    the entries kept."""
    i = j - begin
    if not 0 <= i < n:
        if mode == "constant":
            return None
        if mode == "edge":
            i = 0 if i < 0 else n - 1
        elif mode == "reflect":
            i = -i if i < 0 else 2 * (n - 1) - i
        else:  # wrap
            i %= n
    return crop + i


def pad_ref(x, pads, mode="constant", value=0.0):
    x = np.asarray(x, dtype=object)
    rank = x.ndim
    pads = list(pads)
    axes = []
    for k in range(rank):
        pb, pe = pads[k], pads[rank + k]
        n = x.shape[k] - max(-pb, 0) - max(-pe, 0)
        axes.append((max(pb, 0), max(-pb, 0), n, n + max(pb, 0) + max(pe, 0)))
    out = np.empty(tuple(a[3] for a in axes), dtype=object)
    for idx in np.ndindex(*out.shape):
        src = [_source(j, b, c, n, mode) for j, (b, c, n, _) in zip(idx, axes)]
        out[idx] = value if any(s is None for s in src) else x[tuple(src)]
    return out


def _along_last(x, axis):
    """x with `axis` moved last, and the permutation that puts it back."""
    rank = x.ndim
    ax = axis % rank
    perm = [k for k in range(rank) if k != ax] + [ax]
    return np.transpose(x, perm), list(np.argsort(perm))


def cumsum_ref(x, axis, exclusive=False, reverse=False):
    m = mp()
    x = np.asarray(x, dtype=object)
    moved, back = _along_last(x, axis)
    out = np.empty(moved.shape, dtype=object)
    n = moved.shape[-1]
    for idx in np.ndindex(*moved.shape[:-1]):
        row = [v if not isinstance(v, bool) else int(v) for v in moved[idx]]
        for i in range(n):
            picked = [row[j] for j in range(n) if (j > i if reverse else j < i) or (j == i and not exclusive)]
            out[idx + (i,)] = exact_sum(m, picked) if picked else 0
    return np.transpose(out, back)


def argext_ref(largest: bool):
    def ref(x, axis=-1, keepdims=False, select_last_index=False):
        x = np.asarray(x, dtype=object)
        moved, _ = _along_last(x, axis)
        out = np.empty(moved.shape[:-1], dtype=object)
        for idx in np.ndindex(*out.shape):
            row = list(moved[idx])
            nans = [j for j, v in enumerate(row) if is_nan(v)]
            if nans:
                hits = nans
            else:
                best = max(row) if largest else min(row)
                hits = [j for j, v in enumerate(row) if v == best]
            out[idx] = hits[-1] if select_last_index else hits[0]
        if keepdims:
            out = np.expand_dims(out, axis % x.ndim)
        return out

    return ref


# edge tables ---------------------------------------------------------------------------------

_SPECIAL = np.array([[INF, NAN, -0.0, 1.0], [5e-324, -1e308, 2.0, -3.0], [-INF, 1e-300, 0.5, 1e308]])
_INTS = np.array([[1, -7, 3], [0, 2, 5]])
_BOOLS = np.array([[True, False], [False, False]])

# rows whose running sums are exact or round the same in any order (no cancellation after a
# rounding): infinities meeting, NaN, overflow, subnormals absorbed by 1.0
_SUMS = np.array([[1.0, INF, -INF, 2.0], [NAN, 1.0, 2.0, 3.0], [-0.0, 0.5, 0.25, -1e308],
                  [1e308, 1e308, 1.0, 1.0], [5e-324, 5e-324, 5e-324, 1.0]])

# ties (first or last), -0.0 against 0.0, subnormals, infinities, NaN anywhere in a row
_ARGS = np.array([[1.0, NAN, 3.0, NAN], [-INF, -INF, -1e308, -INF], [2.0, 2.0, -0.0, 0.0],
                  [5e-324, 0.0, -5e-324, 5e-324], [INF, 1.0, INF, -INF]])


def _arg_edges() -> tuple[Edge, ...]:
    out = []
    for last in (False, True):
        out += [Edge((_ARGS,), {"axis": 1, "select_last_index": last}),
                Edge((_ARGS,), {"axis": 0, "keepdims": True, "select_last_index": last})]
    return tuple(out + [Edge((np.array([[3, -7, 3], [0, 0, 5]]),), {"axis": -1}, note="int"),
                        Edge((np.array([[3, -7, 3], [0, 0, 5]], np.int32),), {"axis": 0, "select_last_index": True},
                             note="int32"),
                        Edge((_BOOLS,), {"axis": 1}, note="bool")])


EDGES = {
    "tile": (Edge((_SPECIAL,), {"reps": [2, 3]}), Edge((_SPECIAL[:, :2].reshape(3, 1, 2),), {"reps": [1, 2, 1]}),
             Edge((_INTS,), {"reps": [1, 2]}, note="int"), Edge((_BOOLS,), {"reps": [3, 1]}, note="bool")),
    "pad": (Edge((_SPECIAL,), {"pads": [1, 0, 2, 1], "value": 1.5}),
            Edge((_SPECIAL,), {"pads": [1, 2, 2, 1], "mode": "reflect"}),
            Edge((_SPECIAL,), {"pads": [2, 3, 1, 2], "mode": "edge"}),
            Edge((_SPECIAL,), {"pads": [3, 1, 2, 4], "mode": "wrap"}),
            Edge((_SPECIAL,), {"pads": [-1, 1, 0, -2], "mode": "reflect"}),
            Edge((_SPECIAL,), {"pads": [0, -1, -1, 2], "value": -2.5}),
            Edge((_INTS,), {"pads": [1, 1, 0, 2], "value": 7}, note="int"),
            Edge((_BOOLS,), {"pads": [0, 1, 1, 0], "value": 1}, note="bool")),
    "cumsum": tuple(Edge((_SUMS,), {"axis": ax, "exclusive": ex, "reverse": rv})
                    for ax in (1, 0) for ex in (False, True) for rv in (False, True)) + (
        Edge((_INTS,), {"axis": 1, "reverse": True}, note="int"),
        Edge((_INTS.astype(np.int32),), {"axis": 0, "exclusive": True}, note="int32"),
        Edge((_BOOLS,), {"axis": 1}, note="bool")),
    "argmax": _arg_edges(),
    "argmin": _arg_edges(),
}
