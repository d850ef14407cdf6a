"""The im2col kernels of conv, conv_transpose and conv_filter (gtool/ops/im2col.py) on every
path they take: channel-major and channel-last filter columns (fewer / at least
CHANNELS_LAST channels per group), col2im's one-add-per-offset with spills into the next
channel, group and image, strides by phases, dilation, asymmetric padding, 1-D to 3-D.
References: the mpmath loop references (gtool/ops/window_refs.py) in float64, and for a
float32 layer of the MNIST CNN's size a float64 sum of shifted einsums (a different formula)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from gtool.ops import window_refs
from gtool.ops.conv import conv_filter_forward, conv_forward, conv_transpose_forward
from gtool.ops.conv_offsets import use_offsets
from gtool.ops.im2col import CHANNELS_LAST
from gtool.ops.windows import window_from_attrs

CASES = {  # name: (x shape, w shape, attrs); the path each takes is checked below
    "offsets_pad": ((2, 16, 5, 4), (3, 16, 3, 3), {"padding": 1}),
    "offsets_groups_dilation": ((2, 32, 5, 3), (4, 16, 3, 2), {"groups": 2, "dilation": [2, 1],
                                                              "padding": [1, 0, 2, 1]}),
    "channels_last_pad": ((2, CHANNELS_LAST, 3, 2), (17, CHANNELS_LAST, 3, 2), {"padding": 1}),
    "groups_stride_dilation": ((2, 34, 6, 4), (4, 17, 3, 2), {"groups": 2, "stride": [2, 1], "dilation": [2, 1],
                                                             "padding": [1, 0, 2, 1]}),
    "one_d": ((3, 20, 9), (2, 20, 4), {"stride": 3, "padding": 2, "dilation": 2}),
    "three_d_offsets": ((2, 16, 3, 2, 3), (2, 16, 2, 2, 3), {"padding": 1}),
    "three_d_columns": ((2, 3, 4, 3, 5), (4, 3, 2, 2, 3), {"padding": [1, 0, 1, 0, 1, 2]}),
    "depthwise_same": ((2, 3, 5, 5), (3, 1, 3, 3), {"groups": 3, "auto_pad": "same_upper"}),
    "few_channels": ((2, 3, 6, 5), (4, 3, 2, 3), {"stride": 2, "padding": [0, 1]}),
    "one_by_one": ((2, 16, 3, 3), (5, 16, 1, 1), {"stride": 2}),
    "kernel_is_input": ((2, 17, 3, 3), (2, 17, 3, 3), {}),
}
PATHS = {"offsets_pad": "offsets", "offsets_groups_dilation": "offsets", "three_d_offsets": "offsets",
         "kernel_is_input": "offsets", "channels_last_pad": "channels_last", "groups_stride_dilation": "channels_last",
         "one_d": "channels_last", "one_by_one": "channels_last", "three_d_columns": "channel_major",
         "depthwise_same": "channel_major", "few_channels": "channel_major"}


def _path(case) -> str:
    xs, ws, attrs = CASES[case]
    plan = window_from_attrs(attrs, len(xs) - 2, ws[2:]).plan(xs[2:])
    groups = attrs.get("groups", 1)
    if use_offsets(plan, ws[1], ws[0] // groups):
        return "offsets"
    return "channels_last" if ws[1] >= CHANNELS_LAST else "channel_major"


def test_the_cases_cover_every_path():
    assert {case: _path(case) for case in CASES} == PATHS


def _arrays(case, seed=0):
    xs, ws, attrs = CASES[case]
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    g = rng.standard_normal(conv_forward(x, w, **attrs).shape)
    return x, w, g, attrs


def _ref(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


@functools.cache
def _refs(case):
    """The loop references' y, dx, dw for a case (mpmath: computed once per case)."""
    x, w, g, attrs = _arrays(case)
    out = {"output_shape": list(x.shape[2:])}
    return (_ref(window_refs.conv(x, w, **attrs)), _ref(window_refs.conv_transpose(g, w, **attrs, **out)),
            _ref(window_refs.conv_filter(x, g, w.shape[2:], **attrs)))


@pytest.mark.parametrize("band", [None, "one_row", "two_rows"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_three_kernels_match_the_loop_references(case, band, monkeypatch):
    """band: im2col's columns built one or two output rows at a time (the last band shorter
    where the rows are odd), as for large images."""
    from gtool.ops import im2col

    x, w, g, attrs = _arrays(case)
    if band is not None:
        if PATHS[case] == "offsets":
            pytest.skip("no columns, no bands")
        row = x.shape[1] * int(np.prod(w.shape[2:])) * x.itemsize * int(np.prod(g.shape[3:]))
        monkeypatch.setattr(im2col, "BAND_BYTES", row if band == "one_row" else 2 * row)
    y, dx, dw = _refs(case)
    np.testing.assert_allclose(conv_forward(x, w, **attrs), y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv_transpose_forward(g, w, output_shape=list(x.shape[2:]), **attrs), dx,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv_filter_forward(x, g, kernel=w.shape[2:], **attrs), dw, rtol=1e-12, atol=1e-12)


def test_channels_per_group_on_both_sides_of_the_filter_layout_switch():
    """cg = CHANNELS_LAST - 1 (channel-major columns) and CHANNELS_LAST (channel-last) agree
    with the reference: the switch is a speed choice only."""
    rng = np.random.default_rng(1)
    for cg in (CHANNELS_LAST - 1, CHANNELS_LAST):
        x, g = rng.standard_normal((2, 2 * cg, 4, 4)), rng.standard_normal((2, 4, 3, 2))
        attrs = {"groups": 2, "stride": [1, 2], "padding": [0, 1]}
        np.testing.assert_allclose(conv_filter_forward(x, g, kernel=[2, 3], **attrs),
                                   _ref(window_refs.conv_filter(x, g, [2, 3], **attrs)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["channels_last_pad", "groups_stride_dilation", "three_d_offsets", "one_d"])
def test_an_infinite_weight_reaches_only_the_cells_it_touches(case):
    """W^T g is 0 * inf = NaN in the columns' garbage cells; col2im must not add those into
    cells no output reaches, nor spill them into the next channel or image (the loop
    reference: those cells are exact zeros). Before the fix: NaN at the rows' starts."""
    x, w, g, attrs = _arrays(case, seed=2)
    w = w.copy()
    w.flat[w.size // 2] = np.inf
    out = {"output_shape": list(x.shape[2:])}
    with np.errstate(invalid="ignore"):
        got = conv_transpose_forward(g, w, **attrs, **out)
    want = _ref(window_refs.conv_transpose(g, w, **attrs, **out))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])


def test_each_image_and_channel_gets_only_its_own_columns():
    """A NaN in image 1's g reaches image 1 only (col2im's adds spill zeros into the next
    image's cells, never values), and a NaN in channel 0's filter reaches channel 0 only."""
    x, w, g, attrs = _arrays("offsets_pad", seed=3)
    g = g.copy()
    g[1, 0, 0, 0] = np.nan
    with np.errstate(invalid="ignore"):
        dx = conv_transpose_forward(g, w, output_shape=list(x.shape[2:]), **attrs)
    hit = np.zeros(dx.shape, bool)
    hit[1, :, :2, :2] = True  # output (0, 0) with padding 1 reads input cells 0 and 1 per axis
    np.testing.assert_array_equal(np.isnan(dx), hit)


def _shifted_einsum(x, w, pad):
    """conv by its definition: the sum over taps (i, j) of w[:, :, i, j] times the shifted x."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    oh, ow = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
    return sum(np.einsum("nchw,mc->nmhw", xp[:, :, i:i + oh, j:j + ow], w[:, :, i, j])
               for i in range(kh) for j in range(kw))


def test_float32_cnn_layer_against_a_float64_shifted_sum():
    """conv2 of the MNIST CNN (32 -> 64 channels, 3x3) on a small batch, in float32: forward,
    dx and dW within float32 rounding of the float64 definition (the torch-match tests hold
    rtol 2e-4; here 1e-5 relative to the largest value). dx is the forward conv of g padded by
    2 with the flipped, transposed filter; dW sums x's shifted windows times g."""
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((3, 32, 11, 10)), rng.standard_normal((64, 32, 3, 3))
    g = rng.standard_normal((3, 64, 9, 8))
    x32, w32, g32 = (a.astype(np.float32) for a in (x, w, g))
    y = conv_forward(x32, w32)
    dx = conv_transpose_forward(g32, w32, output_shape=[11, 10])
    dw = conv_filter_forward(x32, g32, kernel=[3, 3])
    assert y.dtype == dx.dtype == dw.dtype == np.float32
    want_dx = _shifted_einsum(g, np.flip(w, (2, 3)).transpose(1, 0, 2, 3), 2)
    want_dw = np.stack([np.stack([np.einsum("nchw,nmhw->mc", x[:, :, i:i + 9, j:j + 8], g) for j in range(3)], -1)
                        for i in range(3)], -2)
    for got, want in ((y, _shifted_einsum(x, w, 0)), (dx, want_dx), (dw, want_dw)):
        assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


class _NanEmpty:
    """numpy, except that `empty` hands back memory filled with signaling NaNs (garbage a
    reused block may hold; adding 0 to a quiet NaN raises nothing)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=float):
        bits = {4: (np.uint32, 0x7FA00000), 8: (np.uint64, 0x7FF4000000000000)}[np.dtype(dtype).itemsize]
        return np.full(shape, bits[1], bits[0]).view(dtype)


def test_col2im_never_reads_uninitialized_memory(monkeypatch):
    """The flat input is allocated without a zero fill; the cells an image's adds spill into
    (the next image's first cells, or the tail) are zeroed first. Without that, an add of 0 to
    NaN garbage raised 'invalid value' under errstate(all='raise') (seen in the benchmark; the
    values were right, overwritten later)."""
    from gtool.ops import im2col

    rng = np.random.default_rng(6)
    g, w = rng.standard_normal((3, 4, 5, 6)), rng.standard_normal((4, 2, 3, 3))
    want = _ref(window_refs.conv_transpose(g, w, output_shape=[7, 8]))
    monkeypatch.setattr(im2col, "np", _NanEmpty())
    with np.errstate(all="raise"):
        got = conv_transpose_forward(g, w, output_shape=[7, 8])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
