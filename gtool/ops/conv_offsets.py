"""conv's forward and filter gradient by kernel offsets, without columns (stride 1): one
matmul per kernel offset on the runs of the flat padded input read in place (`Columns`).

im2col (gtool/ops/im2col.py) copies Cg * prod(kernel) values per output position and then
does M / G multiply-adds per copied value; an offset's matmul copies nothing but its result
[M / G, L] is added to the others (prod(kernel) adds of M / G values per position), and its
inner dimension is only Cg. So the offsets win where the outputs per group are few against
the channels (M / G <= Cg) and Cg is wide enough for the thin matmuls (>= 16): a 3-D conv 16 ->
16 channels was 1.4x slower by im2col, a 2-D 32 -> 16 one 1.45x; the MNIST CNN's 32 -> 64 conv
is 1.5x faster by im2col.
"""

from __future__ import annotations

import numpy as np

from .windows import Columns, Plan

MIN_CHANNELS = 16


def use_offsets(plan: Plan, per_group: int, outputs_per_group: int) -> bool:
    """Whether conv / conv_filter run by kernel offsets (see the module docstring)."""
    return all(s == 1 for s in plan.window.stride) and MIN_CHANNELS <= per_group >= outputs_per_group


def _flat(x: np.ndarray, cols: Columns) -> np.ndarray:
    """x [N, C, *S] zero-padded and flattened per channel, with room for the last run: [N, C,
    size]; kernel offset k reads [start_k, start_k + L)."""
    plan = cols.plan
    size = max(cols.phase_size, max(start for _, start in cols.taps) + cols.length)
    xf = np.zeros(x.shape[:2] + (size,), x.dtype)
    body = xf[:, :, : cols.phase_size].reshape(x.shape[:2] + plan.padded)
    body[(Ellipsis,) + tuple(slice(b, b + h) for b, h in zip(plan.pad_begin, plan.spatial))] = x
    return xf


def conv_by_offsets(x: np.ndarray, w: np.ndarray, bias, cols: Columns, groups: int) -> np.ndarray:
    """y[n] = sum over kernel offsets k of W[:, :, k] @ (image n's run at offset k), by group,
    then the output cells taken out of the runs (+ the bias)."""
    nb = x.shape[0]
    m, cg = w.shape[:2]
    xf, span = _flat(x, cols), cols.length
    wk = np.ascontiguousarray(np.moveaxis(w.reshape(groups, m // groups, cg, -1), 3, 0))  # [K, G, M/G, Cg]
    full = np.empty((nb, groups, m // groups, span), x.dtype)
    tmp = np.empty(full.shape[1:], x.dtype)
    for n in range(nb):
        xg = xf[n].reshape(groups, cg, -1)
        for k, (_, at) in enumerate(cols.taps):
            np.matmul(wk[k], xg[:, :, at: at + span], out=full[n] if k == 0 else tmp)
            if k:
                full[n] += tmp
    rows = full.reshape((nb, m) + cols.rows)
    y = np.ascontiguousarray(rows[(Ellipsis,) + tuple(slice(0, o) for o in cols.plan.out)])
    if bias is not None:
        y += np.reshape(bias, (-1,) + (1,) * (y.ndim - 2)).astype(y.dtype, copy=False)
    return y


def filter_by_offsets(x: np.ndarray, g: np.ndarray, cols: Columns, groups: int) -> np.ndarray:
    """dw[:, :, k] = sum over images of g[n] (on the runs' positions) @ (run at offset k)^T."""
    nb, c = x.shape[:2]
    m, cg = g.shape[1], c // groups
    xf, span = _flat(x, cols), cols.length
    gbuf, gcells = cols.spread_buffer(m)
    gf = gbuf.reshape(groups, m // groups, span)
    acc = np.zeros((len(cols.taps), groups, m // groups, cg), x.dtype)
    part = np.empty(acc.shape[1:], x.dtype)
    for n in range(nb):
        np.copyto(gcells, g[n])
        xg = xf[n].reshape(groups, cg, -1)
        for k, (_, at) in enumerate(cols.taps):
            acc[k] += np.matmul(gf, xg[:, :, at: at + span].transpose(0, 2, 1), out=part)
    return np.ascontiguousarray(np.moveaxis(acc, 0, -1)).reshape((m, cg) + cols.plan.window.kernel)


__all__ = ["use_offsets", "conv_by_offsets", "filter_by_offsets"]
