"""The im2col kernels of conv's forward and filter gradient (gtool/ops/conv.py): one image at a
time, its columns copied into a buffer reused for every image, then one BLAS matmul per image.

Why this layout (float32, one thread, conv2 of the MNIST CNN: 64 x 32 x 26 x 26, 3x3; see
bench/conv_bench.py and docs/backends.md):

- the columns hold the *true* output positions (prod(out), no garbage columns between rows), so
  the matmul does no wasted work and writes straight into the result (no gather copy after it);
- the forward's columns are [C * prod(kernel), P] (channel-major, as the input), and the matmul
  `W [M, C K] @ cols` has both operands row-major and untransposed: OpenBLAS's sgemm ran it at
  110-125 GFLOP/s, where a matmul per kernel offset (K = C, thin) ran at ~65 and then needed
  an add per offset;
- the filter gradient's matmul `g [M, P] @ cols^T` is 1.4x slower in OpenBLAS when cols^T is a
  transposed view (transB) than when it is a row-major [P, K C] array. So the filter gradient
  builds its columns from a channel-last copy of the input (one transposing copy per call):
  each position's row is then prod(kernel) runs of C contiguous channels.

A whole-batch im2col would be one big matmul, but it copies prod(kernel) x the input through
memory and reads it back; one image's columns (here 0.66 MB) stay in cache for the matmul
(larger images: bands of output rows, `BAND_BYTES`). Below CHANNELS_LAST channels per group the
filter gradient keeps channel-major columns (channel-last rows would be runs too short to copy).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .windows import Columns, Plan, prod


def _taps(v: np.ndarray, plan: Plan, first: int) -> np.ndarray:
    """Pick the strided output positions and the dilated kernel taps from a sliding window
    view whose window axes are last and whose output axes start at axis `first`."""
    w = plan.window
    n = len(plan.spatial)
    idx = (slice(None),) * first + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(plan.out, w.stride))
    idx += (slice(None),) * (v.ndim - first - 2 * n) + tuple(slice(None, None, d) for d in w.dilation)
    return v[idx]


def image_columns(x: np.ndarray, plan: Plan):
    """A function n -> image n's windows [C, *kernel, *out] (a view). With padding, image n
    is first copied into a zero-bordered buffer reused for every image: padding the whole
    batch first was one more pass through memory (conv3: 1.8 ms of its 8.5 ms forward)."""
    n = len(plan.spatial)
    order = (0,) + tuple(range(1 + n, 1 + 2 * n)) + tuple(range(1, 1 + n))  # [C, *out, *k] -> [C, *k, *out]
    if plan.padded == plan.spatial:
        v = plan.windows(x)
        return lambda i: v[i].transpose(order)
    pad = np.zeros(x.shape[1:2] + plan.padded, x.dtype)
    inner = pad[(slice(None),) + tuple(slice(b, b + h) for b, h in zip(plan.pad_begin, plan.spatial))]
    v = plan.windows(pad).transpose(order)

    def image(i: int) -> np.ndarray:
        np.copyto(inner, x[i])
        return v
    return image


# Bytes of columns built at a time: one image's, or a band of its output rows where that is
# more, so that the matmul reads them from cache (2 x 8 x 128 x 128, 3x3: 4.7 MB of columns an
# image; its forward took 1.2x main's per-offset time unbanded, 0.84x in bands).
BAND_BYTES = 1 << 20


def _bands(out: tuple[int, ...], row_bytes: int):
    """(first, stop) ranges of the first output axis, each about BAND_BYTES of columns."""
    rows = max(1, min(out[0], BAND_BYTES // max(1, row_bytes * prod(out[1:]))))
    return [(r, min(r + rows, out[0])) for r in range(0, out[0], rows)], rows


def conv_images(x: np.ndarray, w: np.ndarray, bias, plan: Plan, groups: int) -> np.ndarray:
    """y [N, M, *out] = conv(x, w) + bias: per image (and band of output rows), cols [G, Cg K,
    P] <- the windows, then y[n] [G, M/G, P] = W [G, M/G, Cg K] @ cols (written in place), and
    the bias added while y[n] is still in cache (a pass over the whole output afterwards cost
    0.5-1 ms in conv2)."""
    nb, c = x.shape[:2]
    m, n = w.shape[0], len(plan.spatial)
    kernel, out = plan.window.kernel, plan.out
    cols_len, inner = c // groups * prod(kernel), prod(out[1:])
    image = image_columns(x, plan)
    bands, rows = _bands(out, c * prod(kernel) * x.itemsize)
    store = np.empty(c * prod(kernel) * rows * inner, x.dtype)
    y = np.empty((nb, m) + out, x.dtype)
    wm = w.reshape(groups, m // groups, cols_len)
    ym = y.reshape(nb, groups, m // groups, prod(out))
    if bias is not None:
        bias = np.reshape(bias, (m,) + (1,) * n).astype(x.dtype, copy=False)
    for i in range(nb):
        src = image(i)  # [C, *kernel, *out]
        for r0, r1 in bands:
            buf = store[: c * prod(kernel) * (r1 - r0) * inner].reshape((c,) + kernel + (r1 - r0,) + out[1:])
            np.copyto(buf, src[(slice(None),) * (1 + n) + (slice(r0, r1),)])
            cols, dest = buf.reshape(groups, cols_len, -1), ym[i, :, :, r0 * inner: r1 * inner]
            if groups == 1:  # plain 2-D operands: one sgemm call, no stacked-matmul loop
                np.matmul(wm[0], cols[0], out=dest[0])
            else:
                np.matmul(wm, cols, out=dest)
        if bias is not None:
            y[i] += bias
    return y


def channels_last(x: np.ndarray, plan: Plan) -> np.ndarray:
    """x [N, C, *spatial] as a zero-padded channel-last copy [N, *padded, C] (one pass)."""
    lead = (slice(None),)
    moved = np.moveaxis(x, 1, -1)
    if plan.padded == plan.spatial:
        return np.ascontiguousarray(moved)
    xt = np.zeros((x.shape[0],) + plan.padded + (x.shape[1],), x.dtype)
    xt[lead + tuple(slice(b, b + h) for b, h in zip(plan.pad_begin, plan.spatial))] = moved
    return xt


def filter_images(x: np.ndarray, g: np.ndarray, plan: Plan, groups: int) -> np.ndarray:
    """dw [M, Cg, *kernel] = sum over images (and bands of output rows) of g[n] [G, M/G, P] @
    cols^T [G, P, Cg K]."""
    if x.shape[1] // groups >= CHANNELS_LAST:
        return _filter_channels_last(x, g, plan, groups)
    nb, c, m = x.shape[0], x.shape[1], g.shape[1]
    kernel, out, n = plan.window.kernel, plan.out, len(plan.spatial)
    cols_len, inner = c // groups * prod(kernel), prod(out[1:])
    image = image_columns(x, plan)
    bands, store, gm, acc, part = _filter_work(x, g, plan, groups)
    for i in range(nb):
        src = image(i)
        for r0, r1 in bands:
            buf = store[: c * prod(kernel) * (r1 - r0) * inner].reshape((c,) + kernel + (r1 - r0,) + out[1:])
            np.copyto(buf, src[(slice(None),) * (1 + n) + (slice(r0, r1),)])
            cols = buf.reshape(groups, cols_len, -1).transpose(0, 2, 1)
            acc += np.matmul(gm[i, :, :, r0 * inner: r1 * inner], cols, out=part)
    return acc.reshape((m, c // groups) + kernel)


def _filter_work(x: np.ndarray, g: np.ndarray, plan: Plan, groups: int) -> tuple:
    """What both filter-gradient paths share: the bands of output rows, one store for a band's
    columns, g per image and group [N, G, M/G, P], the accumulator [G, M/G, Cg K] and a buffer
    for each matmul's result."""
    c, m, out = x.shape[1], g.shape[1], plan.out
    k = prod(plan.window.kernel)
    bands, rows = _bands(out, c * k * x.itemsize)
    store = np.empty(c * k * rows * prod(out[1:]), x.dtype)
    gm = g.reshape(x.shape[0], groups, m // groups, prod(out))
    acc = np.zeros((groups, m // groups, c // groups * k), x.dtype)
    return bands, store, gm, acc, np.empty_like(acc)


# Channels per group from which the filter gradient builds channel-last columns: with fewer,
# each position's row is made of runs too short to copy fast (depthwise: single cells, 3.7x
# slower than channel-major columns), and the transposed operand's slower matmul costs less.
CHANNELS_LAST = 16


def _filter_channels_last(x: np.ndarray, g: np.ndarray, plan: Plan, groups: int) -> np.ndarray:
    """`filter_images` with the columns built channel-last so that the matmul's second operand
    is row-major [P, K Cg] (1.4x faster in OpenBLAS than a transposed view)."""
    nb, c = x.shape[:2]
    m, n = g.shape[1], len(plan.spatial)
    kernel, out = plan.window.kernel, plan.out
    cg = c // groups
    inner, cols_len = prod(out[1:]), prod(kernel) * cg
    xt = channels_last(x, plan)
    v = _taps(sliding_window_view(xt, plan.window.extent, axis=tuple(range(1, 1 + n))), plan, 1)  # [N,*out,C,*k]
    v = v.transpose((0,) + tuple(range(1, 1 + n)) + tuple(range(2 + n, 2 + 2 * n)) + (1 + n,))  # [N,*out,*k,C]
    v = v.reshape(v.shape[:-1] + (groups, cg))  # splitting the contiguous channel axis: still a view
    v = np.moveaxis(v, -2, 1)  # [N, G, *out, *kernel, Cg]
    bands, store, gm, acc, part = _filter_work(x, g, plan, groups)
    for i in range(nb):
        for r0, r1 in bands:
            buf = store[: c * prod(kernel) * (r1 - r0) * inner].reshape((groups, r1 - r0) + out[1:] + kernel + (cg,))
            np.copyto(buf, v[i, :, r0:r1])
            acc += np.matmul(gm[i, :, :, r0 * inner: r1 * inner], buf.reshape(groups, -1, cols_len), out=part)
    dw = acc.reshape((m,) + kernel + (cg,))
    return np.ascontiguousarray(np.moveaxis(dw, -1, 1))


def transpose_images(g: np.ndarray, w: np.ndarray, cols: Columns, groups: int) -> np.ndarray:
    """dx [N, C, *spatial] = conv_transpose(g, w) without bias: per image, the columns
    W^T g [G, K, Cg, L] by one matmul, then col2im on the flat phases (`Columns`).

    col2im adds each kernel offset's columns into its run of the flat input, phase-major
    [phases, C, phase_size]. Each channel's columns sit in a zeroed row as long as a channel's
    phase, so the add of one offset is *one* contiguous add over all channels of a group: the
    cells past a run are zeros and the adds may spill them into the next channel, phase or
    image harmlessly. NumPy adds a contiguous 1-D range ~4x faster than the same count as a
    2-D [C, L] slice. With one phase (stride 1), kernel offset 0 starts at cell 0 and covers
    the whole image: its columns are copied, not added, so the flat input needs no zero fill.
    """
    nb, m = g.shape[:2]
    cg, c, kernel_size = w.shape[1], w.shape[1] * groups, prod(w.shape[2:])
    span, size, single = cols.length, cols.phase_size, cols.phases == 1
    gbuf, gcells = cols.spread_buffer(m)  # one image's g on the runs' positions, reused
    gf = gbuf.reshape(groups, m // groups, span)
    wt = w.reshape(groups, m // groups, cg, kernel_size).transpose(0, 3, 2, 1)  # [G, K, Cg, M/G]
    wt = np.ascontiguousarray(wt).reshape(groups, kernel_size * cg, m // groups)
    buf = np.zeros((groups, kernel_size, cg, size), g.dtype)  # the cells past `span` stay 0
    runs = buf.reshape(groups, kernel_size * cg, size)[:, :, :span]
    phase, chunk, finite = c * size, cols.phases * c * size, bool(np.isfinite(w).all())
    spill = max(start for _, start in cols.taps)
    flat = (np.empty if single else np.zeros)(nb * chunk + spill, g.dtype)  # + the last spill
    for n in range(nb):
        if single:
            flat[(n + 1) * chunk: (n + 1) * chunk + spill] = 0  # where this image spills (uninitialized)
        np.copyto(gcells, g[n])
        np.matmul(wt, gf, out=runs)
        if not finite:
            cols.zero_garbage(runs)
        for k, (ph, start) in enumerate(cols.taps):
            at = n * chunk + ph * phase + start
            dest = flat[at: at + phase].reshape(groups, cg * size)
            src = buf[:, k].reshape(groups, cg * size)
            if k or not single:
                np.add(dest, src, out=dest)
            else:  # offset 0 over the zeros that image n - 1 spilled here
                np.copyto(dest, src)
    return cols.unflatten(flat[: nb * chunk].reshape(nb, cols.phases, c, size))
