"""Plain-NumPy fast paths of the row templates (ops/templates.py) for rows with a finite max.

The templates run on `NumpyPrims`: one Python method call per primitive, selects written as
`where`, and the non-finite cases (NaN, +-inf rows, empty axes) handled on every call. On the
small batches of a training step (128 x 10 logits) those calls are most of the time. When
every row's max is finite (the usual case) the non-finite branches all pick the same side,
so the same primitive calls in the same order, with the selects dropped, give the same
floats, bit for bit:

    template                                   here (all row maxima finite)
    m = where(isfinite(mx), mx, 0)             m = mx
    where(top, 0, e), top = (x == mx)          e * (d < 0)    (e = 1 exactly where d = 0)
    count(top) - 1                             0: one max per row, else the template runs
    where(finite, log1p(rest), mx)             log1p(rest)

`tests/test_rowfast.py` holds each fast path to its template with `array_equal` (edges, ties,
huge logits, -inf entries, float32) and checks that every other input falls back to it.
A fast path returns None where it does not apply: a non-finite row max (NaN, +-inf, an
all -inf row, an empty axis), a row whose max occurs twice, no elements, or a non-contiguous
array (the reductions would then sum in another order than the template's fresh arrays).
Row reductions over a short last axis cost ~0.1 us a row in NumPy (one inner loop each): the
path does two (max, sum of the rest), as hand-written NumPy does; the tie test is one count
over the whole array instead of a third (count(top) per row).
"""

from __future__ import annotations

import numpy as np

from ..quiet import hush, unhush


def lse_parts(x: np.ndarray, axis):
    """(m, l, d) of `templates.lse_parts` with its primitives' floats, or None (see the module)."""
    if not (type(x) is np.ndarray and x.dtype.kind == "f" and x.size and x.ndim and x.flags.c_contiguous):
        return None
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
    parts = lse_parts(x, axis)
    if parts is None:
        return None
    _, rest, d = parts
    return np.subtract(d, rest, out=d)


def logsumexp(x, axis=None, keepdims=False):
    """l + m, or None."""
    parts = lse_parts(x, axis)
    if parts is None:
        return None
    m, rest, _ = parts
    out = np.add(rest, m, out=rest)
    if keepdims:
        return out
    return np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
