"""Sliding-window geometry shared by the convolution and pooling ops (gtool/ops/conv.py,
gtool/ops/pool.py): attr reading, the symbolic output-size rule, the run-time pads, the window
view (im2col without copying) and its adjoint (col2im).

Per spatial axis a window has a kernel size k, a stride s, a dilation d (its extent is
`ek = d (k - 1) + 1`) and pads before and after (pb, pe). The output size is
`(h + pb + pe - ek) // s + 1` (ceil_mode rounds up), which stays a symbolic `Dim` when h is a
dim name. `auto_pad` same_upper / same_lower give `ceil(h / s)` outputs and pad what that
needs, the odd pad at the end (upper) or at the start (lower); valid pads nothing. The
forwards loop over kernel offsets (9 for a 3x3 kernel), never over pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..dims import Dim
from .registry import Attr, ShapeError

AUTO_PAD = Attr("choice:notset,same_upper,same_lower,valid", "notset",
                "notset (use padding), same_upper / same_lower (output ceil(h / stride), odd pad at the end / "
                "start) or valid (no padding)")


def ints(value, n: int, name: str, default: int, low: int) -> tuple[int, ...]:
    """An `ints` attr for n spatial axes: one int for all of them, or one per axis."""
    if value is None:
        return (default,) * n
    vals = [value] * n if isinstance(value, int) else list(value)
    if len(vals) != n:
        raise ShapeError("bad-attr", f"attr '{name}' needs 1 or {n} values (one per spatial axis), got {len(vals)}")
    if any(v < low for v in vals):
        raise ShapeError("bad-attr", f"attr '{name}' values must be >= {low}, got {value}")
    return tuple(vals)


def explicit_pads(value, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """`padding`: one int, one per axis (both sides), or 2n values (all starts, then all ends,
    as ONNX writes `pads`)."""
    if value is None:
        return (0,) * n, (0,) * n
    vals = [value] * n if isinstance(value, int) else list(value)
    if len(vals) == n:
        vals = vals + vals
    if len(vals) != 2 * n:
        raise ShapeError("bad-attr", f"attr 'padding' needs 1, {n} or {2 * n} values, got {len(vals)}")
    if any(v < 0 for v in vals):
        raise ShapeError("bad-attr", f"attr 'padding' values must be >= 0, got {value}")
    return tuple(vals[:n]), tuple(vals[n:])


@dataclass(frozen=True)
class Window:
    """The static part of a window: kernel, stride, dilation and explicit pads per axis."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_begin: tuple[int, ...]
    pad_end: tuple[int, ...]
    auto_pad: str = "notset"
    ceil_mode: bool = False

    @property
    def extent(self) -> tuple[int, ...]:
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    def out_dim(self, axis: int, h: Dim) -> Dim:
        """The output size along `axis` for input size h (symbolic where h is)."""
        s, ek = self.stride[axis], self.extent[axis]
        if h.is_const and h.value == 0:  # no window fits nothing, padding or not (torch refuses it too)
            raise ShapeError("shape-mismatch", f"spatial axis {axis} is empty (size 0): a window needs at least one "
                             "input cell")
        if self.auto_pad in ("same_upper", "same_lower"):
            return (h + (s - 1)) // s
        pb, pe = (0, 0) if self.auto_pad == "valid" else (self.pad_begin[axis], self.pad_end[axis])
        if h.is_const:
            return Dim.const(self.out_size(axis, h.value, pb, pe))
        if self.ceil_mode:
            if pe + s > ek:
                raise ShapeError("shape-mismatch", "ceil_mode with a symbolic input size needs pad_end + stride <= "
                                 "the kernel extent (else the last window may start in the padding)")
            return (h + (pb + pe - ek + 2 * s - 1)) // s
        return (h + (pb + pe - ek + s)) // s  # (h + pads - ek) // s + 1, written with one division

    def out_size(self, axis: int, h: int, pb: int, pe: int) -> int:
        """The output size for a known input size (the ceil_mode rule of ONNX and PyTorch: the
        last window must start inside the input or the start padding)."""
        s, ek = self.stride[axis], self.extent[axis]
        span = h + pb + pe - ek
        if span < 0:
            raise ShapeError("shape-mismatch", f"the window (extent {ek}) is larger than the padded input "
                             f"({h} + {pb + pe}) along spatial axis {axis}")
        if not self.ceil_mode:
            return span // s + 1
        o = -(-span // s) + 1
        if (o - 1) * s >= h + pb:
            o -= 1
        return o

    def pads(self, spatial: tuple[int, ...]) -> tuple[list[int], list[int]]:
        """The pads (begin, end) for an input of these spatial sizes (auto_pad decided here)."""
        if self.auto_pad == "valid":
            return [0] * len(spatial), [0] * len(spatial)
        if self.auto_pad == "notset":
            return list(self.pad_begin), list(self.pad_end)
        begin, end = [], []
        for h, s, ek in zip(spatial, self.stride, self.extent):
            total = max(0, (-(-h // s) - 1) * s + ek - h)
            small = total // 2
            begin.append(small if self.auto_pad == "same_upper" else total - small)
            end.append(total - begin[-1])
        return begin, end

    def plan(self, spatial: tuple[int, ...]) -> Plan:
        """Everything a kernel needs for an input of these spatial sizes."""
        pb, pe = self.pads(spatial)
        out = tuple(self.out_size(a, h, pb[a], pe[a]) for a, h in enumerate(spatial))
        # the padded length the windows read (ceil_mode may read past the end padding)
        need = tuple((o - 1) * s + ek for o, s, ek in zip(out, self.stride, self.extent))
        extra = tuple(max(0, nd - (h + b + e)) for nd, h, b, e in zip(need, spatial, pb, pe))
        return Plan(self, tuple(spatial), tuple(pb), tuple(pe), out, extra)


def window_from_attrs(attrs: dict, n: int, kernel: tuple[int, ...], *, stride_is_kernel: bool = False) -> Window:
    """A `Window` from an op's full attrs for n spatial axes and the given kernel (a pool's
    stride defaults to its kernel, as in PyTorch; a convolution's to 1)."""
    if attrs.get("stride") is None and stride_is_kernel:
        stride = tuple(kernel)
    else:
        stride = ints(attrs.get("stride"), n, "stride", 1, 1)
    pb, pe = explicit_pads(attrs.get("padding"), n)
    dilation = ints(attrs.get("dilation"), n, "dilation", 1, 1)
    return Window(tuple(kernel), stride, dilation, pb, pe, attrs.get("auto_pad") or "notset",
                  bool(attrs.get("ceil_mode", False)))


@dataclass(frozen=True)
class Plan:
    """A window on an input of known size: pads, output size, and `extra` cells read past the
    end padding (ceil_mode), which count as padding."""

    window: Window
    spatial: tuple[int, ...]
    pad_begin: tuple[int, ...]
    pad_end: tuple[int, ...]
    out: tuple[int, ...]
    extra: tuple[int, ...]

    @property
    def padded(self) -> tuple[int, ...]:
        return tuple(h + b + e + x for h, b, e, x in zip(self.spatial, self.pad_begin, self.pad_end, self.extra))

    def pad(self, x: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """x ([N, C, *spatial]) padded on every spatial side (begin; end plus extra) with `fill`."""
        if self.padded == self.spatial:
            return x
        lead = x.shape[: x.ndim - len(self.spatial)]
        out = np.full(lead + self.padded, fill, x.dtype)  # np.pad's generic code was ~3x slower
        out[(Ellipsis,) + tuple(slice(b, b + h) for b, h in zip(self.pad_begin, self.spatial))] = x
        return out

    def crop(self, xp: np.ndarray) -> np.ndarray:
        """The input region of a padded array (the inverse of `pad`)."""
        lead = xp.ndim - len(self.spatial)
        return xp[(slice(None),) * lead + tuple(slice(b, b + h) for b, h in zip(self.pad_begin, self.spatial))]

    def windows(self, xp: np.ndarray) -> np.ndarray:
        """A view [*lead, *out, *kernel] of the padded array: element (o, k) is xp[o s + k d]."""
        n = len(self.spatial)
        lead = xp.ndim - n
        w = self.window
        v = sliding_window_view(xp, w.extent, axis=tuple(range(lead, lead + n)))
        idx = (slice(None),) * lead + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(self.out, w.stride)) \
            + tuple(slice(None, None, d) for d in w.dilation)
        return v[idx]

    def offsets(self):
        """(kernel index, the slices of the padded array that kernel offset reads) for each offset."""
        w = self.window
        for kk in np.ndindex(*w.kernel):
            yield kk, tuple(slice(k * d, k * d + (o - 1) * s + 1, s)
                            for k, d, o, s in zip(kk, w.dilation, self.out, w.stride))

    def scatter(self, cols: np.ndarray, lead_shape: tuple[int, ...], dtype) -> np.ndarray:
        """col2im: cols [*kernel, *lead, *out] added back into a padded array [*lead, *padded],
        one kernel offset at a time; the input region is returned."""
        xp = np.zeros(lead_shape + self.padded, dtype)
        lead = (slice(None),) * len(lead_shape)
        for kk, sl in self.offsets():
            xp[lead + sl] += cols[kk]
        return self.crop(xp)

    def count(self, include_pad: bool) -> np.ndarray:
        """How many cells of each window [*out] lie in the input (or in the input and its
        explicit padding, never the ceil_mode extra)."""
        mask = np.zeros(self.padded)
        inner = tuple(slice(0, b + h + e) if include_pad else slice(b, b + h)
                      for b, h, e in zip(self.pad_begin, self.spatial, self.pad_end))
        mask[inner] = 1.0
        total = np.zeros(self.out)
        for _, sl in self.offsets():
            total += mask[sl]
        return total


class Columns:
    """col2im on contiguous runs (conv_transpose, gtool/ops/im2col.py).

    The padded input is split into its prod(stride) phases (space to depth: phase p of an axis
    holds the padded cells q s + p, q < Q = ceil(padded / s)), phase-major and flattened:
    [N, phases, C, phase_size]. Kernel offset k reads cell o s + k d = (o + (k d) // s) s +
    (k d) % s, i.e. one *contiguous* run of L = out[0] * prod(Q[1:]) cells in phase (k d) % s,
    from (k d) // s on (`taps`: (phase, start) per offset); the cells past the last output
    column are garbage, kept at zero on the way back (`spread_buffer`). With stride 1 there is
    one phase, the padded input itself. Adding columns back run by run is contiguous, also for
    a stride, where the strided slices of the padded input were 1.4x slower; phase-major, one
    offset's runs for all channels are one contiguous range.
    """

    def __init__(self, plan: Plan, dtype) -> None:
        self.plan, self.dtype = plan, np.dtype(dtype)
        w = plan.window
        self.kernel = w.kernel
        self.steps = tuple(w.stride)
        padded = plan.padded
        self.cells = tuple(-(-p // s) for p, s in zip(padded, self.steps))  # one phase's shape
        inner = [prod(self.cells[a + 1:]) for a in range(len(padded))]
        self.phase_size = prod(self.cells)
        self.taps = []
        for kk in np.ndindex(*w.kernel):
            taps = [k * d for k, d in zip(kk, w.dilation)]
            phase = int(np.ravel_multi_index(tuple(t % s for t, s in zip(taps, self.steps)), self.steps))
            self.taps.append((phase, sum(t // s * i for t, s, i in zip(taps, self.steps, inner))))
        self.length = plan.out[0] * inner[0]
        self.rows = (plan.out[0],) + self.cells[1:]

    @property
    def phases(self) -> int:
        return prod(self.steps)

    def _phase_parts(self, xf: np.ndarray):
        """(view of xf's cells, index of the input [N, C, *S]) pairs, xf [N, phases, C,
        phase_size]: input cell i of axis a sits in padded cell i + pb = q s + p, phase p, place
        q (stride 1: one phase, q = i + pb)."""
        body = xf.reshape(xf.shape[:1] + self.steps + xf.shape[2:3] + self.cells)
        for ph in np.ndindex(*self.steps):
            src, dst = [], []
            for p, s, b, h in zip(ph, self.steps, self.plan.pad_begin, self.plan.spatial):
                first = (p - b) % s  # the first input cell in this phase
                count = max(0, -(-(h - first) // s))
                src.append(slice(first, first + s * (count - 1) + 1, s) if count else slice(0, 0))
                q = (first + b - p) // s
                dst.append(slice(q, q + count))
            yield body[(slice(None),) + ph + (slice(None),) + tuple(dst)], (Ellipsis,) + tuple(src)

    def spread_buffer(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """A zeroed [channels, L] buffer for output-shaped values on the columns' positions,
        and its view [channels, *out] of the real output cells (what is copied in; the garbage
        cells stay zero)."""
        buf = np.zeros((channels,) + self.rows, self.dtype)
        return buf.reshape(channels, self.length), buf[(Ellipsis,) + tuple(slice(0, o) for o in self.plan.out)]

    def zero_garbage(self, runs: np.ndarray) -> None:
        """Set the garbage cells of [..., L] (columns past the last output column) to 0: W^T g
        puts 0 there, except where W holds an inf or NaN (0 * inf), which col2im would add to
        cells that no output touches."""
        rows = runs.reshape(runs.shape[:-1] + self.rows)
        for a in range(1, len(self.rows)):
            rows[(slice(None),) * (runs.ndim - 1 + a) + (slice(self.plan.out[a], None),)] = 0

    def unflatten(self, xf: np.ndarray) -> np.ndarray:
        """The input region [N, C, *spatial] of flat phases [N, phases, C, phase_size] (stride 1
        without padding: a view, no copy)."""
        nb, channels = xf.shape[0], xf.shape[2]
        if all(s == 1 for s in self.steps) and self.plan.padded == self.plan.spatial:  # the same cells
            return xf.reshape((nb, channels) + self.plan.spatial)
        out = np.empty((nb, channels) + self.plan.spatial, self.dtype)
        for cells, region in self._phase_parts(xf):
            out[region] = cells
        return out


def spatial_attr_dims(window: Window, shape) -> tuple[Dim, ...]:
    """The symbolic output spatial dims of a window over input `shape` ([N, C, *spatial])."""
    return tuple(window.out_dim(a, Dim.const(h) if isinstance(h, int) else h) for a, h in enumerate(shape[2:]))


def prod(xs) -> int:
    return math.prod(xs)
