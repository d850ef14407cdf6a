"""gtool/ops/erf.py against mpmath on a dense spread of arguments (every branch and seam),
and the double-double argument that GELU relies on. The record tests cover the edge table;
this covers the fits between the seams, where a wrong coefficient would show."""

from __future__ import annotations

import mpmath
import numpy as np
from ulps import ulp_diff

from gtool.ops import erf as E

mpmath.mp.dps = 40
SEAMS = [0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 28.0]


def _points() -> np.ndarray:
    rng = np.random.default_rng(5)
    seams = np.array([np.nextafter(s, d) for s in SEAMS for d in (0.0, 100.0)] + SEAMS)
    spread = np.exp(rng.uniform(np.log(1e-8), np.log(27.5), 600))
    return np.concatenate([spread, -spread, seams, -seams, rng.uniform(-6, 6, 300)])


def _ref(fn, xs) -> np.ndarray:
    return np.array([float(fn(mpmath.mpf(float(x)))) for x in xs])


def test_erf_and_erfc_within_a_few_ulps_everywhere():
    x = _points()
    assert ulp_diff(E.erf(x), _ref(mpmath.erf, x)).max() <= 2
    assert ulp_diff(E.erfc(x), _ref(mpmath.erfc, x)).max() <= 4


def test_erfc_of_a_double_double_argument():
    """erfc(-x/sqrt 2) for GELU: with the low part the tail keeps its ulps; rounding x/sqrt 2
    alone (the near miss) is hundreds of ulps off at x = -30."""
    x = -np.exp(np.random.default_rng(6).uniform(np.log(0.5), np.log(37.0), 300))
    hi, lo = E.two_prod(x, -0.7071067811865476)
    lo = lo - x * -4.833646656726457e-17
    want = np.array([float(mpmath.erfc(-mpmath.mpf(float(v)) / mpmath.sqrt(2))) for v in x])
    assert ulp_diff(E.erfc_dd(hi, lo), want).max() <= 4
    assert ulp_diff(E.erfc(hi), want).max() > 100


def test_special_values_and_dtypes():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324])
    np.testing.assert_array_equal(E.erf(x)[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(E.erf(x)[1]) and np.isnan(E.erf(x)[4]) and E.erf(x)[5] > 0
    np.testing.assert_array_equal(E.erfc(x)[:4], [1.0, 1.0, 0.0, 2.0])
    assert E.erf(np.array([0.5], np.float32)).dtype == np.float32
    assert E.erf(np.float64(0.5)).shape == ()


def test_arrays_past_one_block_give_the_values_of_small_calls():
    """erf/erfc/erfc_dd run big arrays block by block, each block grouped by region with one
    sort: the values must be those of the same points computed alone (and hence of mpmath,
    above); blocks cut through the regions, and the seams and specials sit in several blocks."""
    rng = np.random.default_rng(8)
    n = 2 * E.CHUNK + 123
    x = rng.uniform(-30, 30, n)
    x[rng.integers(0, n, 200)] = rng.choice(SEAMS + [-s for s in SEAMS] + [np.nan, np.inf, -np.inf, 0.0, -0.0], 200)
    lo, sc = x * 1e-17, 0.5 * x
    big = (E.erf(x), E.erfc(x), E.erfc_dd(x, lo, sc))
    at = np.concatenate([rng.integers(0, n, 300), [0, E.CHUNK - 1, E.CHUNK, n - 1]])
    with np.errstate(invalid="ignore"):  # erfc_dd(inf, lo, 0.5 inf): 0 * inf, as for one point
        alone = (np.array([E.erf(x[i:i + 1])[0] for i in at]), np.array([E.erfc(x[i:i + 1])[0] for i in at]),
                 np.array([E.erfc_dd(x[i:i + 1], lo[i:i + 1], sc[i:i + 1])[0] for i in at]))
    for got, want in zip(big, alone):
        np.testing.assert_array_equal(got[at], want)
    keep = np.isfinite(x[at])
    assert ulp_diff(big[0][at][keep], _ref(mpmath.erf, x[at][keep])).max() <= 2
    two = x[:-1].reshape(2, -1)  # n - 1 is even
    np.testing.assert_array_equal(E.erfc(two), big[1][:-1].reshape(two.shape))
