"""ULP distances, and rounding high-precision (mpmath) values into a float dtype.

The distance between two floats of one dtype is how many representable numbers lie between
them (0: equal; +0 and -0 are equal; NaN is 0 from NaN and infinitely far from anything
else; +inf is one step past the largest finite number). Tests compare kernels this way, not
with rtol, so a subnormal or a value near 1e308 is judged by the same yardstick as 1.0.
"""

from __future__ import annotations

import math

import numpy as np

_INT = {np.dtype(np.float64): np.int64, np.dtype(np.float32): np.int32, np.dtype(np.float16): np.int16}


def _ordered(x: np.ndarray) -> np.ndarray:
    """Floats mapped to integers in the same order: the sign-magnitude bits made monotone."""
    i = x.view(_INT[x.dtype])
    mag = (i & _INT[x.dtype]((1 << (8 * x.dtype.itemsize - 1)) - 1)).astype(np.int64)
    return np.where(i < 0, -mag, mag)


def ulp_diff(got, want) -> np.ndarray:
    """Elementwise ULP distance of two float arrays of one dtype (inf where exactly one is NaN)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.dtype.kind == "f", (got.dtype, want.dtype)
    g, w = _ordered(np.atleast_1d(got)), _ordered(np.atleast_1d(want))
    same = (g >= 0) == (w >= 0)
    # across zero the distance is |g| + |w|, which may not fit an int64: count it in uint64
    d = np.where(same, np.abs(np.where(same, g - w, 0)).astype(np.uint64),
                 np.abs(g).astype(np.uint64) + np.abs(w).astype(np.uint64)).astype(np.float64)
    gn, wn = np.isnan(np.atleast_1d(got)), np.isnan(np.atleast_1d(want))
    d[gn & wn] = 0.0
    d[gn ^ wn] = np.inf
    return d.reshape(got.shape)


def max_ulp(got, want) -> float:
    d = ulp_diff(got, want)
    return float(d.max()) if d.size else 0.0


def to_dtype(values, dtype, shape=None) -> np.ndarray:
    """mpmath values (or nested lists of them) rounded to `dtype`: through float64 first,
    which is exact to half an ulp of float64 and then at most half an ulp of float32."""
    flat = np.array([_f(v) for v in np.ravel(np.asarray(values, dtype=object))], dtype=np.float64)
    with np.errstate(over="ignore"):  # 1e308 into float32 is inf, as it should be
        out = flat.astype(dtype)
    return out.reshape(shape if shape is not None else np.shape(np.asarray(values, dtype=object)))


def _f(v) -> float:
    import mpmath

    if isinstance(v, mpmath.mpc):
        return math.nan if v.imag != 0 else float(v.real)
    return float(v)
