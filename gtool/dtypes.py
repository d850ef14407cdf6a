"""gtool's dtypes by name: which are floats, ints, bool, and which are storage-only.

Three families:

- compute dtypes: float64, float32, float16, the signed and unsigned ints of 8 to 64 bits,
  and bool. Every op that accepts their kind computes in them, with NumPy's (and ONNX's)
  semantics: integer arithmetic wraps around at the width (int8 127 + 1 is -128).
- storage-only dtypes (ONNX's exotic types, held by the `ml_dtypes` package): bfloat16, the
  float8 variants, float8_e8m0fnu, float4_e2m1fn, and the 4- and 2-bit ints. They may be stored,
  moved (reshape, transpose, concat, slice, ...) and converted with `cast`, never computed
  with: inference refuses arithmetic on them (code `storage-only-dtype`).

The names are NumPy's, and for the storage-only dtypes ml_dtypes' (`float8_e4m3fn`,
`float8_e8m0fnu`, `float4_e2m1fn`; ONNX's FLOAT8E4M3FN, FLOAT8E8M0, FLOAT4E2M1), so a dtype
name is `str(array.dtype)` and ONNX's own NumPy helpers name the same types. `np_dtype` maps a
name to its NumPy dtype, importing `ml_dtypes` only when a storage-only dtype is used, so the
core never loads it.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

FLOAT_DTYPES = ("float64", "float32", "float16")
SIGNED_DTYPES = ("int64", "int32", "int16", "int8")
UNSIGNED_DTYPES = ("uint64", "uint32", "uint16", "uint8")
INT_DTYPES = SIGNED_DTYPES + UNSIGNED_DTYPES
COMPUTE_DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",)

# gtool name -> the ml_dtypes type that holds it (the same name: kept as a table so a name
# could differ from ml_dtypes' without touching the code that looks types up)
STORAGE_DTYPES: dict[str, str] = {
    "bfloat16": "bfloat16",
    "float8_e4m3fn": "float8_e4m3fn",
    "float8_e4m3fnuz": "float8_e4m3fnuz",
    "float8_e5m2": "float8_e5m2",
    "float8_e5m2fnuz": "float8_e5m2fnuz",
    "float8_e8m0fnu": "float8_e8m0fnu",
    "float4_e2m1fn": "float4_e2m1fn",
    "int4": "int4",
    "uint4": "uint4",
    "int2": "int2",
    "uint2": "uint2",
}
STORAGE_FLOATS = tuple(n for n in STORAGE_DTYPES if "float" in n)
STORAGE_INTS = tuple(n for n in STORAGE_DTYPES if "float" not in n)
DTYPES = COMPUTE_DTYPES + tuple(STORAGE_DTYPES)

INSTALL = "pip install 'gtool[onnx]' (the storage-only dtypes come from the ml_dtypes package)"
_BY_NUMPY = {v: k for k, v in STORAGE_DTYPES.items()}


def is_float(dtype: str) -> bool:
    """A float dtype gtool computes in (float64, float32, float16): differentiable, has eps."""
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    """A signed or unsigned int dtype gtool computes in (8 to 64 bits)."""
    return dtype in INT_DTYPES


def is_storage(dtype: str) -> bool:
    """A storage-only dtype: stored, moved and cast, never computed with."""
    return dtype in STORAGE_DTYPES


def is_float_like(dtype: str) -> bool:
    """A float dtype of either family (cast's float rules: round to nearest, NaN stays NaN)."""
    return dtype in FLOAT_DTYPES or dtype in STORAGE_FLOATS


def is_int_like(dtype: str) -> bool:
    return dtype in INT_DTYPES or dtype in STORAGE_INTS


def ml_dtypes_module():
    """The ml_dtypes package, or a usage error saying how to install it."""
    try:
        import ml_dtypes
    except ImportError:
        raise UsageError("missing-extra", "the storage-only dtypes (bfloat16, float8..., int4, ...) need the "
                         "ml_dtypes package", hint=INSTALL) from None
    return ml_dtypes


def have_ml_dtypes() -> bool:
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        return False
    return True


def np_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype of a gtool dtype name (storage-only ones through ml_dtypes)."""
    name = STORAGE_DTYPES.get(dtype)
    if name is None:
        return np.dtype(dtype)
    return np.dtype(getattr(ml_dtypes_module(), name))


def npz_safe(array: np.ndarray) -> np.ndarray:
    """`array` as a .npz file can hold it: a storage-only dtype widened, exactly, to the
    compute dtype that contains it (the floats to float32, int4/int2 to int8, uint4/uint2 to
    uint8). NumPy would store ml_dtypes' types as raw void bytes ('V2') that neither NumPy
    users nor gtool's own `--inputs` can read back as numbers.
    """
    name = name_of(array.dtype)
    if name not in STORAGE_DTYPES:
        return array
    wide = "float32" if name in STORAGE_FLOATS else ("uint8" if name.startswith("u") else "int8")
    return array.astype(wide)


def name_of(dtype) -> str:
    """The gtool name of a NumPy dtype (`float8_e4m3fn` -> `float8_e4m3fn`)."""
    s = str(np.dtype(dtype))
    return _BY_NUMPY.get(s, s)


def finfo(dtype: str):
    """finfo of a float dtype of either family (max, smallest subnormal, eps)."""
    if dtype in STORAGE_DTYPES:
        return ml_dtypes_module().finfo(np_dtype(dtype))
    return np.finfo(dtype)


def iinfo(dtype: str):
    """iinfo of an int dtype of either family (min, max)."""
    if dtype in STORAGE_DTYPES:
        return ml_dtypes_module().iinfo(np_dtype(dtype))
    return np.iinfo(dtype)
