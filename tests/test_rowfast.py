"""The plain-NumPy fast paths of log_softmax and logsumexp (gtool/ops/rowfast.py) against the
templates they stand in for, and against mpmath.

- Row layout (any axis but a short last one): the template's floats bit for bit.
- Column layout (a last axis of <= 16): within 4 ulps of the template (only a row's sum runs in
  another order), and as close to mpmath as the template on the same rows.
- Every input the fast path does not cover (NaN, +-inf max, all -inf rows, ties for the max,
  empty axes, ints, non-contiguous arrays) falls back: the registry forward is the template.
"""

from __future__ import annotations

import numpy as np
import pytest
from ulps import max_ulp, to_dtype, ulp_diff

from gtool.ops import REGISTRY, rowfast
from gtool.ops.templates import LOG_SOFTMAX, LOGSUMEXP, NumpyPrims, numpy_forward

TEMPLATE = {"log_softmax": numpy_forward(LOG_SOFTMAX), "logsumexp": numpy_forward(LOGSUMEXP)}


def _rows(rng, shape, dtype):
    """Finite logits without ties: spreads from 0.1 to 1e15, shifted by up to 1000, -inf entries."""
    x = rng.standard_normal(shape) * rng.choice([0.1, 5.0, 1000.0, 1e15]) + rng.choice([0.0, 1000.0])
    if rng.random() < 0.3 and x.shape[-1] > 1:
        x[..., 0] = -np.inf
    return x.astype(dtype)


def _both(name, x, **attrs):
    with np.errstate(all="ignore"):
        fast = getattr(rowfast, name)(x, **attrs)
        return fast, TEMPLATE[name](x, **attrs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_layout_is_the_template_bit_for_bit(dtype):
    rng = np.random.default_rng(0)
    used = 0
    for _ in range(300):
        x = _rows(rng, tuple(rng.integers(1, 7, size=rng.integers(2, 4))), dtype)
        for attrs in ({"axis": 0}, {"axis": 1}, {"axis": (0, 1)}, {"axis": None}):
            for name in ("log_softmax", "logsumexp"):
                if name == "log_softmax" and not isinstance(attrs["axis"], int):
                    continue
                fast, want = _both(name, x, **attrs)
                if fast is None:  # a tie or an all -inf row: covered by the fallback test
                    continue
                used += 1
                assert fast.dtype == want.dtype and fast.shape == want.shape
                np.testing.assert_array_equal(fast, want, err_msg=f"{name} {attrs}")
    assert used > 1000


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_column_layout_is_within_four_ulps_of_the_template(dtype):
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(300):
        x = _rows(rng, (int(rng.integers(1, 40)), int(rng.integers(1, rowfast.SHORT_ROW + 1))), dtype)
        for name, attrs in (("log_softmax", {"axis": -1}), ("log_softmax", {"axis": 1}),
                            ("logsumexp", {"axis": 1, "keepdims": True}), ("logsumexp", {"axis": -1})):
            fast, want = _both(name, x, **attrs)
            if fast is None:
                continue
            assert fast.dtype == want.dtype and fast.shape == want.shape and fast.flags.c_contiguous
            worst = max(worst, max_ulp(fast, want))
    assert worst <= 4, worst


def test_column_layout_is_as_accurate_as_the_template():
    """Against mpmath (the record's reference) on the peers benchmark's logits (1000 + 5 N(0, 1),
    128 x 10) and on wider rows, where the sums' orders differ the most."""
    mp = pytest.importorskip("mpmath")
    ref = REGISTRY["log_softmax"].reference
    rng = np.random.default_rng(2)
    for x in (1000.0 + 5.0 * rng.standard_normal((128, 10)), 3.0 * rng.standard_normal((200, 16))):
        with mp.workdps(40):
            want = to_dtype(ref(x, axis=1), np.float64, x.shape)
        fast, template = _both("log_softmax", x, axis=1)
        assert fast is not None
        err, err_template = ulp_diff(fast, want), ulp_diff(template, want)
        assert err.max() <= max(2.0, err_template.max() + 1), (err.max(), err_template.max())
        assert np.median(err) <= 1


FALLBACK = {
    "nan": [[1.0, np.nan, 2.0], [0.0, 1.0, 2.0]],
    "plus inf": [[1.0, np.inf, 2.0], [0.0, 1.0, 2.0]],
    "all minus inf": [[-np.inf, -np.inf, -np.inf], [0.0, 1.0, 2.0]],
    "tie": [[3.0, 1.0, 3.0], [0.0, 1.0, 2.0]],
    "signed zero tie": [[-0.0, 0.0, -5.0], [0.0, 1.0, 2.0]],
    "max overflows the check": [[1.7e308, 1.0, 2.0], [1.7e308, 1.0, 3.0]],
}


@pytest.mark.parametrize("case", list(FALLBACK))
@pytest.mark.parametrize("axis", [1, 0])
def test_inputs_outside_the_fast_path_run_the_template(case, axis):
    x = np.array(FALLBACK[case])
    x = x if axis == 1 else np.ascontiguousarray(x.T)  # the same rows, along axis 0
    for name in ("log_softmax", "logsumexp"):
        fast, want = _both(name, x, axis=axis)
        assert fast is None, (case, name)
        with np.errstate(all="ignore"):
            got = REGISTRY[name].forward(x, axis=axis)
        np.testing.assert_array_equal(got, want)


def test_a_range_past_the_float_max_is_the_template():
    """The near miss of the overflow check: finite maxima, but x - max overflows to -inf."""
    x = np.array([[1.7e308, -1.7e308, 0.0], [1.0, 2.0, -3.0]])
    for axis in (1, 0):
        fast, want = _both("log_softmax", x, axis=axis)
        assert fast is not None
        np.testing.assert_array_equal(fast, want)


@pytest.mark.parametrize("x", [np.zeros((0, 3)), np.zeros((3, 0)), np.arange(6.0).reshape(2, 3)[:, ::2],
                               np.array([[1, 2, 3]]), np.array(2.0)], ids=["no rows", "empty axis", "strided",
                                                                          "ints", "0-d"])
def test_other_arrays_are_left_to_the_template(x):
    assert rowfast.log_softmax(x, axis=-1 if x.ndim else None) is None


def test_the_registry_forward_takes_the_fast_path(monkeypatch):
    """The records use rowfast (else this file would test code nothing runs)."""
    x = np.array([[0.0, 1.0, 2.0]])
    monkeypatch.setattr("gtool.ops.templates.NumpyPrims", None)  # the template cannot run
    for name in ("log_softmax", "logsumexp"):
        assert np.all(np.isfinite(REGISTRY[name].forward(x, axis=1)))
    with pytest.raises(TypeError):
        REGISTRY["log_softmax"].forward(np.array([[0.0, np.nan]]), axis=1)


def test_float32_stays_float32():
    x = np.array([[1.0, 2.0, 3.5]], np.float32)
    for name in ("log_softmax", "logsumexp"):
        assert getattr(rowfast, name)(x, axis=1).dtype == np.float32
    assert NumpyPrims(np.float32).dt == np.float32
