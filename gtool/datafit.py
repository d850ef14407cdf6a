"""Does a number fit the dtype it is stored in? One set of rules for every way data arrives.

NumPy casts silently: 1e30 into int64 gives -2**63, 3e9 into int32 wraps, a uint64 above
2**63 turns negative in int64, 1e300 becomes inf in float32. gtool refuses all of these, and
keeps the casts that lose nothing a user could notice (the rules in docs/format.md, "Data
and dtypes"):

- to a float dtype: ints and bools are fine (rounded to the nearest float); a finite float
  must stay finite (rounding and underflow to 0 are fine, overflow to inf is not);
  nan/inf stay what they are;
- to an int dtype: every value must be a whole number inside the dtype's range (so no
  nan or inf, no 2.5, no 2**63 in int64);
- to bool: only 0, 1, true and false;
- to a storage-only float (bfloat16, float8..., float4_e2m1fn): as to a float, and more: a finite
  value must lie within the dtype's largest finite value (float4_e2m1fn and the float8 `fn` types
  would saturate or turn it into NaN), NaN and inf only where the dtype has them, and
  float8_e8m0fnu holds only positive numbers;
- to a storage-only int (int4, uint4, int2, uint2): as to an int.

These functions know numbers and dtypes only; callers add the name, location and code.
"""

from __future__ import annotations

import numpy as np

from .dtypes import finfo, iinfo, is_storage, name_of, np_dtype

_F32_MAX = float(np.finfo(np.float32).max)


def _at(name: str, arr: np.ndarray, mask: np.ndarray) -> tuple[str, object]:
    """`x[1, 2]` (or `x` for a scalar) and the value there, for the first True of `mask`."""
    idx = np.unravel_index(int(np.argmax(mask)), arr.shape) if arr.ndim else ()
    where = f"{name}[{', '.join(map(str, idx))}]" if idx else name
    return where, arr[idx] if idx else arr[()]


def _show(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    return repr(v) if not isinstance(v, int) or abs(v) < 10**24 else f"{str(v)[:12]}... ({len(str(abs(v)))} digits)"


def misfit(name: str, arr: np.ndarray, dtype) -> str | None:
    """Why `arr` cannot be stored as `dtype` (naming the first bad element), or None if it can.

    `arr` is a NumPy array of bools, ints, uints or floats, or an object array of Python
    ints (JSON numbers beyond int64). Equal dtypes cost nothing.
    """
    want = np_dtype(str(dtype)) if isinstance(dtype, str) else np.dtype(dtype)
    if arr.dtype == want or arr.size == 0 or arr.dtype.kind == "b":
        return None
    if arr.dtype.kind == "V":  # a storage-only array (ml_dtypes): its values are exact in float32 / int64
        arr = arr.astype(np.float32 if "float" in name_of(arr.dtype) else np.int64)
    kind = arr.dtype.kind
    if is_storage(name_of(want)):
        return _storage_misfit(name, arr, name_of(want))
    if want.kind == "b":
        bad = ~np.isin(arr, (0, 1))
        if bad.any():
            where, v = _at(name, arr, bad)
            return f"{where} is {_show(v)}, not 0/1 or true/false (the dtype is bool)"
        return None
    if want.kind in "iu":
        return _int_misfit(name, arr, want)
    if want.kind == "f" and want.itemsize == 2 and kind == "O":
        arr = arr.astype(np.float64)
    if kind in "iu" and want.itemsize == 2:  # ints into float16 (largest 65504): 70000 would become inf
        big = np.abs(arr.astype(np.float64)) > float(np.finfo(want).max)
        if big.any():
            where, v = _at(name, arr, big)
            return f"{where} is {_show(v)}, beyond {want}'s largest finite value {np.finfo(want).max} (it would become inf)"
    if kind == "f" and arr.dtype.itemsize > want.itemsize:  # float64 -> float32: overflow is the danger
        with np.errstate(over="ignore"):
            bad = np.isinf(arr.astype(want)) & np.isfinite(arr)
        if bad.any():
            where, v = _at(name, arr, bad)
            return (f"{where} is {_show(v)}, beyond {want}'s largest finite value {np.finfo(want).max} "
                    "(it would become inf)")
    if kind == "O":  # Python ints too long for int64: a float64 holds up to about 1.8e308
        for k, v in enumerate(arr.ravel()):
            if abs(v) > float(np.finfo(want).max):
                where, _ = _at(name, arr, np.arange(arr.size).reshape(arr.shape) == k)
                return f"{where} is {_show(v)}, beyond {want}'s largest finite value {np.finfo(want).max}"
    return None


def _storage_misfit(name: str, arr: np.ndarray, dtype: str) -> str | None:
    """The rules for the storage-only dtypes (see the module docstring)."""
    if "float" not in dtype:
        return _int_misfit(name, arr, dtype)
    if arr.dtype.kind == "O":
        arr = arr.astype(np.float64)  # Python ints beyond int64: far beyond every storage float's range
    wide = arr.astype(np.float64)
    top = float(finfo(dtype).max)
    with np.errstate(all="ignore"):
        back = wide.astype(np_dtype(dtype)).astype(np.float64)
    finite = np.isfinite(wide)
    checks = ((finite & (np.abs(wide) > top), f"beyond {dtype}'s largest finite value {top:g}"),
              (finite & ~np.isfinite(back), f"which {dtype} cannot hold (it holds only positive numbers)"),
              (np.isnan(wide) & ~np.isnan(back), f"and {dtype} has no NaN"),
              (np.isinf(wide) & ~(back == wide), f"and {dtype} has no infinities"))
    for bad, why in checks:
        if bad.any():
            where, v = _at(name, wide, bad)
            return f"{where} is {_show(v)}, {why}"
    return None


def _int_misfit(name: str, arr: np.ndarray, want) -> str | None:
    info = iinfo(want) if isinstance(want, str) else np.iinfo(want)
    want = want if isinstance(want, str) else str(want)
    span = f"outside {want}'s range [{info.min}, {info.max}]"
    if arr.dtype.kind == "O":  # Python ints too long for int64, maybe with floats: check as Python numbers
        return _objects_misfit(name, arr, info, want, span)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            where, v = _at(name, arr, bad)
            return f"{where} is {_show(v)}, which no integer dtype can hold"
        bad = arr != np.trunc(arr)
        if bad.any():
            where, v = _at(name, arr, bad)
            return f"{where} is {_show(v)}, not a whole number (the dtype is {want})"
        # the bounds as floats are exact powers of two: min itself fits, 2**63 (or 2**31) does not
        bad = (arr < float(info.min)) | (arr >= float(info.max) + 1.0)
    else:
        if not is_storage(want) and np.can_cast(arr.dtype, want):
            return None
        lo, hi = int(arr.min()), int(arr.max())
        if info.min <= lo and hi <= info.max:
            return None
        bad = (arr < info.min) | (arr > info.max)  # NumPy 2 compares mixed signedness exactly
    if bad.any():
        where, v = _at(name, arr, bad)
        return f"{where} is {_show(v)}, {span}"
    return None


def _objects_misfit(name: str, arr: np.ndarray, info, want: str, span: str) -> str | None:
    for k, v in enumerate(arr.ravel()):
        if isinstance(v, float) and not np.isfinite(v):
            why = "which no integer dtype can hold"
        elif isinstance(v, float) and not v.is_integer():
            why = f"not a whole number (the dtype is {want})"
        elif not info.min <= v <= info.max:
            why = span
        else:
            continue
        where, _ = _at(name, arr, np.arange(arr.size).reshape(arr.shape) == k)
        return f"{where} is {_show(v)}, {why}"
    return None


def scalar_misfit(value, dtype: str) -> str | None:
    """Why the number `value` (a literal) cannot take `dtype` ("outside int32's range ..."), or None."""
    if isinstance(value, bool):
        return None
    if dtype == "int32" and isinstance(value, int) and -2**31 <= value < 2**31:
        return None  # the common cases, without NumPy (inference checks every literal it meets)
    if dtype == "float32" and isinstance(value, (int, float)) and not abs(value) > _F32_MAX:
        return None  # nan compares False: it stays nan, as written
    big = isinstance(value, int) and not -2**63 <= value < 2**63
    why = misfit("", np.asarray(value, object) if big else np.asarray(value), dtype)
    return None if why is None else why.split(", ", 1)[1]


def fitted(name: str, arr: np.ndarray, dtype) -> tuple[np.ndarray | None, str | None]:
    """(arr as `dtype`, None), or (None, the reason it does not fit)."""
    why = misfit(name, arr, dtype)
    if why is not None:
        return None, why
    want = np_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    if arr.dtype.kind == "O":
        if want.kind == "V":  # ml_dtypes types take no Python ints directly
            return np.array(arr.tolist(), np.float64 if "float" in name_of(want) else np.int64).astype(want), None
        return np.array(arr.tolist(), dtype=want), None
    if want.kind == "V" and arr.dtype.kind == "V" and arr.dtype != want:  # one ml_dtypes type to another
        arr = arr.astype(np.float32 if "float" in name_of(arr.dtype) else np.int64)
    with np.errstate(invalid="ignore", over="ignore"):  # checked above: only rounding (and its warnings) is left
        return arr.astype(want, copy=False), None
