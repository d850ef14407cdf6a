"""The `cast` op: ONNX Cast semantics for every gtool dtype, storage-only ones included.

Between compute dtypes (float64/32/16, the ints, bool) a cast is NumPy's `astype`: floats
round to nearest even, float -> int truncates toward zero, int -> int wraps around at the
width (ONNX and C do the same), anything -> bool tests against zero (NaN is true).

To the storage-only dtypes (gtool/dtypes.py; ONNX Cast-19/24/25):
- float8_e4m3fn, float8_e4m3fnuz, float8_e5m2, float8_e5m2fnuz: round to nearest even; with
  `saturate` (the default) a value beyond the largest finite one, infinities included,
  becomes that largest value (with its sign) and NaN stays NaN; without it, it becomes inf
  where the type has one (e5m2) and NaN otherwise. The `fnuz` types have no -0 (it becomes 0).
- float8_e8m0fnu (a power of two, 2^-127 ... 2^127, or NaN): the exponent of the float32 value,
  its sign ignored, rounded by `round_mode` (up: any fraction rounds up, the default; down:
  truncate; nearest: a mantissa of 1.5 or more rounds up); NaN and inf become NaN; with
  `saturate` rounding never passes 2^127 (without it, it becomes NaN).
- bfloat16: round to nearest even (it has inf and NaN, like float32).
- float4_e2m1fn (0, ±0.5 ... ±6): round to nearest even, saturating at ±6 (no inf, no NaN).
- int4, uint4, int2, uint2: from floats, truncate toward zero; a value whose truncation is
  outside the range (and NaN, inf) becomes 0, as in ONNX's conformance data for Cast (ml_dtypes'
  rule; `saturate` does not apply to ints); from ints, wrap around as int -> int casts do.

From a storage-only dtype every value is exact in float32 (the ints in int64), so a cast from
one converts through that exactly, then as above. The rounding itself is ml_dtypes' (round to
nearest even, checked against the ONNX reference evaluator in tests/test_dtypes.py); the
saturation, e8m0 and int rules are written here.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import STORAGE_INTS, finfo, iinfo, is_float, is_int_like, is_storage, name_of, np_dtype
from ..ir import TensorType
from . import bounds
from .binary import _texts
from .reference import BOOL_EDGES, INF, NAN, Edge, elementwise_ref
from .registry import Attr, OpDef, register

FLOAT8 = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")


def _widened(x: np.ndarray) -> np.ndarray:
    """A storage-only array as float32 (floats) or int64 (ints): exact for every value."""
    return x.astype(np.float32 if "float" in name_of(x.dtype) else np.int64)


def cast_array(x, dtype: str, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """x as `dtype` by ONNX Cast's rules (the module docstring)."""
    x = np.asarray(x)
    if x.dtype.kind == "V":
        x = _widened(x)
    with np.errstate(invalid="ignore", over="ignore"):  # overflow to inf is a cast's defined result
        if not is_storage(dtype):
            return x.astype(dtype, copy=False)
        want = np_dtype(dtype)
        if dtype == "float8_e8m0fnu":
            return _to_e8m0(x, saturate, round_mode).view(want)
        if dtype in STORAGE_INTS:
            return _to_small_int(x, dtype).astype(want)
        if dtype in FLOAT8 and saturate:
            top = float(finfo(dtype).max)
            x = np.clip(x.astype(np.float64), -top, top)  # NaN stays NaN; +-inf become +-top
        return x.astype(want)


def _to_small_int(x: np.ndarray, dtype: str) -> np.ndarray:
    """int4 / uint4 / int2 / uint2 as int64 values: floats truncated (0 when out of range),
    ints wrapped."""
    info = iinfo(dtype)
    lo, hi = int(info.min), int(info.max)
    if x.dtype.kind == "f":
        t = np.trunc(x.astype(np.float64))
        return np.where((t >= lo) & (t <= hi), t, 0.0).astype(np.int64)  # NaN compares False: 0
    bits = hi - lo + 1
    return (x.astype(np.int64) - lo) % bits + lo  # two's-complement wrap-around at the width


def _to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    """float8_e8m0fnu bytes (the biased exponent) of x, read as float32 (ONNX defines it there)."""
    bits = np.asarray(x, np.float32).view(np.uint32)
    exp = ((bits >> 23) & 0xFF).astype(np.int32)
    frac = bits & 0x7FFFFF
    special = exp == 0xFF  # inf and NaN: NaN
    if round_mode == "up":
        up = frac > 0
    elif round_mode == "nearest":  # the guard bit, and (round or sticky bits, or a normal number)
        up = ((frac >> 22) & 1 == 1) & (((frac & 0x3FFFFF) > 0) | (exp > 0))
    else:
        up = np.zeros(exp.shape, bool)
    up &= ~special
    if saturate:
        up &= exp != 0xFE
    return np.where(special, 0xFF, exp + up).astype(np.uint8)


def _cast_infer(ctx, types, attrs):
    return TensorType(types[0].shape, attrs["dtype"])


def _cast_vjp(b, node, g):
    x = node.inputs[0]
    if not is_float(b.type(x).dtype) or not is_float(b.type(node.name).dtype):
        return [None]
    return [b("cast", g, dtype=b.type(x).dtype)]


def _cast_jvp(b, node, ts):
    if ts[0] is None or not is_float(b.type(node.name).dtype) or not is_float(b.type(node.inputs[0]).dtype):
        return None
    return b("cast", ts[0], dtype=b.type(node.name).dtype)


def _cast_ref(m, x, dtype, saturate=True, round_mode="up"):
    """x in the target dtype: floats are rounded by the test (to nearest), ints truncate
    toward zero (and wrap around at the width, from ints), bools test against zero (NaN is true)."""
    if dtype == "bool":
        return bool(x != 0)
    if is_int_like(dtype):
        v = int(x)
        if isinstance(x, int) and not isinstance(x, bool):
            info = iinfo(dtype)
            span = int(info.max) - int(info.min) + 1
            v = (v - int(info.min)) % span + int(info.min)
        return v
    return x


def _cast_edges():
    f = np.array([0.0, -0.0, 5e-324, 1e-45, 1.401298464324817e-45, 7e-46, 3.4028235677973366e38, 3.4028236e38,
                  1e308, -1e308, 0.1, 1 / 3, INF, -INF, NAN])
    finite = np.array([0.0, -0.0, 0.5, -0.5, 1.9999, -2.5, 1e9, -1e9, 2.0**40])
    small = np.array([0.0, -0.0, 0.5, -0.5, 1.9999, -2.5, 100.0, -128.0, 127.9])
    half = np.array([0.0, -0.0, 6e-8, 2.9e-8, 3e-8, 6.1e-5, 65504.0, 65519.9, 65520.0, 1e5, 1 / 3, INF, -INF, NAN])
    return (Edge((f,), {"dtype": "float32"}), Edge((f,), {"dtype": "float64"}), Edge((f,), {"dtype": "bool"}),
            Edge((finite,), {"dtype": "int64"}), Edge((finite[:-1],), {"dtype": "int32"}),
            Edge((half,), {"dtype": "float16"}), Edge((small,), {"dtype": "int8"}),
            Edge((np.abs(small[:-2]),), {"dtype": "uint8"}),
            Edge((np.array([0, 1, -1, 2**53 + 1], np.int64),), {"dtype": "float64"}, note="int"),
            Edge((np.array([0, 1, -1, 2**24 + 1], np.int64),), {"dtype": "float32"}, note="int"),
            Edge((np.array([0, 1, -1, 2049, 65504, 65519], np.int64),), {"dtype": "float16"}, note="int"),
            Edge((np.array([0, 1, -1, 127, 128, 255, 256, -129], np.int64),), {"dtype": "int8"}, note="int wraps"),
            Edge((np.array([0, 1, -1, 255, 256, 65535], np.int64),), {"dtype": "uint8"}, note="int wraps"),
            Edge((BOOL_EDGES.copy(),), {"dtype": "float32"}, note="bool"))


register(OpDef(name="cast", arity=1, infer=_cast_infer, forward=cast_array, storage=True,
               attrs={"dtype": Attr("dtype", None, "the target dtype", required=True),
                      "saturate": Attr("bool", True, "float8 targets: out-of-range values (and inf) become the "
                                       "largest finite value, not inf or NaN (ONNX Cast's saturate)"),
                      "round_mode": Attr("choice:up,down,nearest", "up", "float8_e8m0fnu targets: how the exponent "
                                         "rounds (ONNX Cast-24's round_mode)")},
               vjp=_cast_vjp, jvp=_cast_jvp, view=True, group="shape", doc="convert to another dtype (ONNX Cast)",
               reference=elementwise_ref(_cast_ref), edges=_cast_edges(),
               interval=bounds.same, explain=_texts(("1",), ("cast({g})",)), ulps=0))
