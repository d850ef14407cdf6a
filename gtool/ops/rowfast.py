"""Plain-NumPy fast paths of the row templates (ops/templates.py) for rows with a finite max.

The templates run on `NumpyPrims`: one Python method call per primitive, selects written as
`where`, and the non-finite cases (NaN, +-inf rows, empty axes) handled on every call. On the
small batches of a training step (128 x 10 logits) those calls are most of the time. When
every row's max is finite and occurs once (the usual case) the template's selects all pick
one side, and the same primitive calls, with the selects dropped, compute the same thing:

    template                                   here (row maxima finite, no ties)
    m = where(isfinite(mx), mx, 0)             m = mx
    where(top, 0, e), top = (x == mx)          e * (d < 0)    (e = 1 exactly where d = 0)
    count(top) - 1                             0
    where(finite, log1p(rest), mx)             log1p(rest)

A fast path returns None (the template runs) on a non-finite row max (NaN, +-inf, an all
-inf row, an empty axis), a row whose max occurs twice, an empty or non-contiguous array.

Two layouts. NumPy reduces a short last axis one row at a time (an inner loop per row: 10 us
of CPU for the max of 128 x 10, 5 us for a sum). Rows of up to `SHORT_ROW` (16) along the last
axis are therefore copied to columns (n x rows, contiguous), where each reduction is a few
vectorized passes, and the result is copied back: the same operations, except that the sum
of a row's rest is accumulated in order instead of NumPy's pairwise blocks, so a value can
differ from the template's in the last bits (tests/test_rowfast.py: <= 4 ulps of the
template, and the record's ulps of mpmath). Every other axis takes the row layout, whose
floats are the template's bit for bit.
"""

from __future__ import annotations

import numpy as np

from ..quiet import hush, unhush

SHORT_ROW = 16  # a last axis up to this long is reduced in the column layout (sequential sums: short)


def _usable(x) -> bool:
    return type(x) is np.ndarray and x.dtype.kind == "f" and x.size > 0 and x.ndim > 0 and x.flags.c_contiguous


def _columns(x: np.ndarray, axis) -> bool:
    return type(axis) is int and x.ndim > 1 and axis % x.ndim == x.ndim - 1 and x.shape[-1] <= SHORT_ROW


def _parts(x: np.ndarray, axis):
    """(mx, l, d) with logsumexp = mx + l and d = x - mx, reduced over `axis` (kept), or None."""
    mx = np.maximum.reduce(x, axis=axis, keepdims=True)
    total = np.add.reduce(mx, axis=None)  # NaN or inf when some row max is not finite (or overflows)
    if not total - total == 0:
        return None
    token = hush()  # x - mx may overflow to -inf (a range over the float max), as in the template
    try:
        d = x - mx
        lower = d < 0
        if np.count_nonzero(lower) != x.size - mx.size:  # a tie for some row's max: the template counts
            return None
        e = np.exp(d)
        rest = np.add.reduce(np.multiply(e, lower, out=e), axis=axis, keepdims=True)
        return mx, np.log1p(rest, out=rest), d
    finally:
        unhush(token)


def log_softmax(x, axis=-1):
    """(x - m) - l, or None."""
    if not _usable(x):
        return None
    if _columns(x, axis):
        n = x.shape[-1]
        parts = _parts(np.ascontiguousarray(x.reshape(-1, n).T), 0)
        if parts is None:
            return None
        _, rest, d = parts
        return np.ascontiguousarray(np.subtract(d, rest, out=d).T).reshape(x.shape)
    parts = _parts(x, axis)
    if parts is None:
        return None
    _, rest, d = parts
    return np.subtract(d, rest, out=d)


def logsumexp(x, axis=None, keepdims=False):
    """l + m, or None."""
    if not _usable(x):
        return None
    columns = _columns(x, axis)
    parts = _parts(np.ascontiguousarray(x.reshape(-1, x.shape[-1]).T), 0) if columns else _parts(x, axis)
    if parts is None:
        return None
    m, rest, _ = parts
    out = np.add(rest, m, out=rest)
    if columns:
        return out.reshape(x.shape[:-1] + ((1,) if keepdims else ()))
    if keepdims:
        return out
    return np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
