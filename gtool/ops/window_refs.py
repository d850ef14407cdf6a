"""References and edge tables of the convolution and pooling ops: direct loops over every
output element and every kernel tap, in exact arithmetic (mpmath sums of exact products), on
tiny inputs. They share no code with the forwards (not even the window geometry of
gtool/ops/windows.py): the sizes and pads are recomputed here from the ONNX operator text.
"""

from __future__ import annotations

import math

import numpy as np

from .reference import INF, NAN, Edge, exact_sum, is_nan, mp
from .shape_refs import _times


def _per_axis(v, n: int, default: int) -> list[int]:
    if v is None:
        return [default] * n
    return [v] * n if isinstance(v, int) else list(v)


def geometry(spatial, kernel, kw: dict, *, pool: bool = False):
    """(stride, dilation, pads begin, pads end, output sizes) for these input sizes, from the
    ONNX spec: out = floor or ceil((h + pads - d (k - 1) - 1) / s) + 1; SAME pads to ceil(h / s)."""
    n = len(spatial)
    stride = list(kernel) if pool and kw.get("stride") is None else _per_axis(kw.get("stride"), n, 1)
    dil = _per_axis(kw.get("dilation"), n, 1)
    pads = _per_axis(kw.get("padding"), n, 0)
    pads = pads + pads if len(pads) == n else pads
    auto = kw.get("auto_pad") or "notset"
    begin, end, out = [], [], []
    for a, h in enumerate(spatial):
        ext = dil[a] * (kernel[a] - 1) + 1
        if auto in ("same_upper", "same_lower"):
            o = math.ceil(h / stride[a])
            total = max(0, (o - 1) * stride[a] + ext - h)
            lo = total // 2 if auto == "same_upper" else total - total // 2
            begin.append(lo)
            end.append(total - lo)
        elif auto == "valid":
            begin.append(0)
            end.append(0)
        else:
            begin.append(pads[a])
            end.append(pads[n + a])
        span = (h + begin[a] + end[a] - ext) / stride[a]
        o = (math.ceil(span) if kw.get("ceil_mode") else math.floor(span)) + 1
        if kw.get("ceil_mode") and (o - 1) * stride[a] >= h + begin[a]:
            o -= 1  # the last window must start inside the input or its start padding
        out.append(o)
    return stride, dil, begin, end, out


def _taps(o, kernel, stride, dil, begin):
    """(kernel index, input position) of each tap of the window at output position o."""
    for kk in np.ndindex(*kernel):
        yield kk, tuple(oo * s + k * d - b for oo, s, k, d, b in zip(o, stride, kk, dil, begin))


def _inside(pos, spatial) -> bool:
    return all(0 <= p < h for p, h in zip(pos, spatial))


def conv(x, w, b=None, **kw):
    """y[n, m, o] = b[m] + sum over the group's channels c and taps k of w[m, c, k] x[n, c, o s + k d - pad]."""
    m_ = mp()
    x, w = np.asarray(x, dtype=object), np.asarray(w, dtype=object)
    nb, _, *spatial = x.shape
    mo, cg, *kernel = w.shape
    groups = kw.get("groups", 1)
    stride, dil, begin, _, out_sz = geometry(spatial, kernel, kw)
    out = np.empty((nb, mo, *out_sz), dtype=object)
    for n in range(nb):
        for m in range(mo):
            c0 = (m // (mo // groups)) * cg
            for o in np.ndindex(*out_sz):
                terms = [] if b is None else [b[m]]
                for kk, pos in _taps(o, kernel, stride, dil, begin):
                    if _inside(pos, spatial):
                        terms += [_times(m_, w[(m, c) + kk], x[(n, c0 + c) + pos]) for c in range(cg)]
                out[(n, m) + o] = exact_sum(m_, terms or [0.0])
    return out


def conv_transpose(g, w, b=None, output_shape=None, output_padding=0, **kw):
    """z[n, c, i] = b[c] + sum of w[m, c, k] g[n, m, o] over every (m, o, k) with o s + k d - pad = i."""
    m_ = mp()
    g, w = np.asarray(g, dtype=object), np.asarray(w, dtype=object)
    nb, mi, *insize = g.shape
    _, cg, *kernel = w.shape
    groups = kw.get("groups", 1)
    n = len(insize)
    stride = _per_axis(kw.get("stride"), n, 1)
    dil = _per_axis(kw.get("dilation"), n, 1)
    if output_shape is None:
        opad = _per_axis(output_padding, n, 0)
        if (kw.get("auto_pad") or "notset") in ("same_upper", "same_lower"):
            output_shape = [i * s for i, s in zip(insize, stride)]
        else:
            pads = _per_axis(kw.get("padding"), n, 0) if kw.get("auto_pad") != "valid" else [0] * n
            pads = pads + pads if len(pads) == n else pads
            output_shape = [(i - 1) * s + p + d * (k - 1) + 1 - pads[a] - pads[n + a]
                            for a, (i, s, p, d, k) in enumerate(zip(insize, stride, opad, dil, kernel))]
    begin = geometry(list(output_shape), kernel, kw)[2]
    parts: dict = {}
    for nn in range(nb):
        for m in range(mi):
            c0 = (m // (mi // groups)) * cg
            for o in np.ndindex(*insize):
                for kk, pos in _taps(o, kernel, stride, dil, begin):
                    if _inside(pos, output_shape):
                        for c in range(cg):
                            parts.setdefault((nn, c0 + c) + pos, []).append(_times(m_, w[(m, c) + kk], g[(nn, m) + o]))
    out = np.empty((nb, groups * cg, *output_shape), dtype=object)
    for idx in np.ndindex(*out.shape):
        out[idx] = exact_sum(m_, parts.get(idx, [0.0]) + ([] if b is None else [b[idx[1]]]))
    return out


def conv_filter(x, g, kernel, **kw):
    """v[m, c, k] = sum over n and o of g[n, m, o] x[n, group's c, o s + k d - pad]."""
    m_ = mp()
    x, g = np.asarray(x, dtype=object), np.asarray(g, dtype=object)
    nb, ci, *spatial = x.shape
    mo = g.shape[1]
    groups = kw.get("groups", 1)
    cg = ci // groups
    stride, dil, begin, _, out_sz = geometry(spatial, list(kernel), kw)
    out = np.empty((mo, cg, *kernel), dtype=object)
    for m in range(mo):
        c0 = (m // (mo // groups)) * cg
        for c in range(cg):
            for kk in np.ndindex(*kernel):
                terms = []
                for n in range(nb):
                    for o in np.ndindex(*out_sz):
                        pos = tuple(oo * s + k * d - b for oo, s, k, d, b in zip(o, stride, kk, dil, begin))
                        if _inside(pos, spatial):
                            terms.append(_times(m_, g[(n, m) + o], x[(n, c0 + c) + pos]))
                out[(m, c) + kk] = exact_sum(m_, terms or [0.0])
    return out


# pooling ---------------------------------------------------------------------------------------


def _pool_windows(x, kernel, kw):
    """(output sizes, {(n, c, o): [input positions of the window's taps inside the input]},
    {(n, c, o): the window's tap count for count_include_pad})."""
    nb, ch, *spatial = x.shape
    kernel = _per_axis(kernel, len(spatial), 1)
    stride, dil, begin, end, out_sz = geometry(spatial, kernel, kw, pool=True)
    inside, padded = {}, {}
    for n in range(nb):
        for c in range(ch):
            for o in np.ndindex(*out_sz):
                taps = [pos for _, pos in _taps(o, kernel, stride, dil, begin)]
                inside[(n, c) + o] = [(n, c) + p for p in taps if _inside(p, spatial)]
                padded[(n, c) + o] = sum(all(-b <= p < h + e for p, h, b, e in zip(t, spatial, begin, end))
                                         for t in taps)
    return out_sz, inside, padded


def _first_max(x, cells):
    """The cell of the window's maximum: the first NaN if any, else the first of the largest."""
    for cell in cells:
        if is_nan(x[cell]):
            return cell
    best = cells[0]
    for cell in cells[1:]:
        if x[cell] > x[best]:
            best = cell
    return best


def max_pool(x, kernel, **kw):
    x = np.asarray(x, dtype=object)
    out_sz, inside, _ = _pool_windows(x, kernel, kw)
    out = np.empty(x.shape[:2] + tuple(out_sz), dtype=object)
    for idx, cells in inside.items():
        out[idx] = x[_first_max(x, cells)]
    return out


def max_pool_pick(x, t, kernel, **kw):
    x, t = np.asarray(x, dtype=object), np.asarray(t, dtype=object)
    out_sz, inside, _ = _pool_windows(x, kernel, kw)
    out = np.empty(x.shape[:2] + tuple(out_sz), dtype=object)
    for idx, cells in inside.items():
        out[idx] = t[_first_max(x, cells)]
    return out


def max_pool_indices(x, kernel, storage_order=0, **kw):
    x = np.asarray(x, dtype=object)
    out_sz, inside, _ = _pool_windows(x, kernel, kw)
    out = np.empty(x.shape[:2] + tuple(out_sz), dtype=object)
    nb, ch, *spatial = x.shape
    for idx, cells in inside.items():
        n, c, *pos = _first_max(x, cells)
        if storage_order:  # column-major within the image
            pos, spatial_ = pos[::-1], spatial[::-1]
        else:
            spatial_ = spatial
        flat = 0
        for p, h in zip(pos, spatial_):
            flat = flat * h + p
        out[idx] = (n * ch + c) * math.prod(spatial) + flat
    return out


def max_pool_grad(x, g, kernel, **kw):
    m = mp()
    x, g = np.asarray(x, dtype=object), np.asarray(g, dtype=object)
    _, inside, _ = _pool_windows(x, kernel, kw)
    parts: dict = {}
    for idx, cells in inside.items():
        parts.setdefault(_first_max(x, cells), []).append(g[idx])
    out = np.empty(x.shape, dtype=object)
    for idx in np.ndindex(*x.shape):
        out[idx] = exact_sum(m, parts.get(idx, [0.0]))
    return out


def _divisor(idx, inside, padded, kw) -> int:
    return padded[idx] if kw.get("count_include_pad") else len(inside[idx])


def avg_pool(x, kernel, **kw):
    m = mp()
    x = np.asarray(x, dtype=object)
    out_sz, inside, padded = _pool_windows(x, kernel, kw)
    out = np.empty(x.shape[:2] + tuple(out_sz), dtype=object)
    for idx, cells in inside.items():
        s = exact_sum(m, [x[c] for c in cells])
        out[idx] = s if is_nan(s) or abs(s) == INF else s / _divisor(idx, inside, padded, kw)
    return out


def avg_pool_grad(g, x, kernel, **kw):
    m = mp()
    g, x = np.asarray(g, dtype=object), np.asarray(x, dtype=object)
    _, inside, padded = _pool_windows(x, kernel, kw)
    parts: dict = {}
    for idx, cells in inside.items():
        v = g[idx]
        share = v if is_nan(v) or abs(v) == INF else m.mpf(v) / _divisor(idx, inside, padded, kw)
        for c in cells:
            parts.setdefault(c, []).append(share)
    out = np.empty(x.shape, dtype=object)
    for idx in np.ndindex(*x.shape):
        out[idx] = exact_sum(m, parts.get(idx, [0.0]))
    return out


# edge tables: sums that are exact in float32 (small integers, halves), except where ±inf or
# NaN meets a zero tap or the two infinities meet --------------------------------------------------

_X = np.array([[[[1.0, -2.0, 3.0, 0.5], [INF, 1.0, 0.0, -1.0], [2.0, NAN, -3.0, 4.0], [0.25, 1.0, -0.5, 2.0]]]])
_W = np.array([[[[1.0, 0.0], [-1.0, 2.0]]], [[[0.5, 1.0], [0.0, -2.0]]]])
_X1 = np.array([[[1.0, 2.0, -4.0, 0.5, 8.0], [-1.0, 1e30, 3.0, -2.0, 0.0]]])  # [1, 2, 5]
_W1 = np.array([[[1.0, -1.0], [0.5, 0.0]], [[2.0, 1.0], [0.0, -1.0]], [[1.0, 1.0], [1.0, 1.0]]])  # [3, 2, 2]

CONV_EDGES = (
    Edge((_X, _W), {"padding": 1}),
    Edge((_X, _W, np.array([0.5, -INF])), {"stride": 2, "padding": [0, 1, 1, 0]}),
    Edge((_X1, _W1), {"dilation": 2, "padding": 1}, note="1d"),
    Edge((_X1, _W1, np.array([1.0, 2.0, -1.0])), {"auto_pad": "same_lower", "stride": 2}, note="1d"),
    Edge((np.concatenate([_X1, -_X1], axis=1), np.array([[[1.0, 2.0], [0.5, -1.0]], [[-1.0, 0.5], [1.0, 1.0]]])),
         {"groups": 2}, note="groups"),
)
CONV_TRANSPOSE_EDGES = (
    Edge((_X, np.array([[[[1.0, 0.0], [-1.0, 2.0]]]])), {"stride": 2, "padding": 1, "output_padding": 1}),
    Edge((_X1, _W1.transpose(1, 0, 2).copy()), {"stride": 3, "dilation": 2}, note="1d"),
    Edge((_X1, _W1[:2, :1], np.array([1.0, -2.0])), {"groups": 2, "auto_pad": "same_upper", "stride": 2},
         note="groups"),
)
CONV_FILTER_EDGES = (
    Edge((_X, np.array([[[[1.0, 2.0], [0.5, -1.0]], [[0.0, 1.0], [1.0, 1.0]]]])),
         {"kernel": [3, 3], "stride": 2, "padding": 1}),
    Edge((_X1, np.array([[[1.0, -1.0, 2.0], [0.0, 0.5, 1.0]]])), {"kernel": [2], "padding": [1, 0], "stride": 2},
         note="1d"),
)
_P = np.array([[[[1.0, -2.0, 3.0, 3.0, 0.5], [-INF, 1.0, 0.0, -1.0, 2.0], [2.0, NAN, -3.0, 4.0, 1.0],
                 [0.25, 1.0, -0.5, 2.0, INF], [-1.0, -1.0, -2.0, 8.0, 1e30]]]])
POOL_EDGES = (
    Edge((_P,), {"kernel": [2, 2]}),
    Edge((_P,), {"kernel": [3, 3], "stride": 2, "padding": 1}),
    Edge((_P,), {"kernel": [2, 3], "stride": [2, 1], "ceil_mode": True, "padding": [0, 1, 0, 0]}),
    Edge((_P,), {"kernel": [2, 2], "dilation": 2, "stride": 1}),
    Edge((_P[:, :, 1],), {"kernel": [2], "auto_pad": "same_upper", "stride": 2}, note="1d"),
)
_T = np.array([[[[1.0, 2.0, -1.0, 4.0, 0.5], [3.0, -INF, 1.0, 1.0, 2.0], [0.5, 1.0, NAN, 2.0, 1.0],
                 [1.0, 1.0, 1.0, 8.0, 1.0], [2.0, 2.0, -2.0, 1.0, 1.0]]]])
_Q = np.array([[[[2.0, 1.0, 4.0], [-1.0, NAN, 1.0], [INF, 0.5, -3.0]]]])
MAX_POOL_PICK_EDGES = tuple(Edge((_P, _T), e.attrs) for e in POOL_EDGES[:4])
MAX_POOL_GRAD_EDGES = (Edge((_P, _Q), {"kernel": [3, 3], "stride": 2, "padding": 1}),
                       Edge((_P, _Q[:, :, :2, :2]), {"kernel": [3, 3], "stride": 2}),
                       Edge((_P, np.ones((1, 1, 4, 4))), {"kernel": [2, 2], "stride": 1}))
AVG_POOL_EDGES = POOL_EDGES + (
    Edge((_P,), {"kernel": [3, 3], "stride": 2, "padding": 1, "count_include_pad": True}),
    Edge((_P,), {"kernel": [2, 3], "stride": [2, 1], "ceil_mode": True, "padding": [0, 1, 0, 0],
                 "count_include_pad": True}),
)
AVG_POOL_GRAD_EDGES = (Edge((_Q, _P), {"kernel": [3, 3], "stride": 2, "padding": 1}),
                       Edge((_Q, _P), {"kernel": [3, 3], "stride": 2, "padding": 1, "count_include_pad": True}),
                       Edge((_Q[:, :, :2, :2] * 4, _P), {"kernel": [2, 2], "stride": 2}))
