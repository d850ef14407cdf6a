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
- to bool: only 0, 1, true and false.

These functions know numbers and dtypes only; callers add the name, location and code.
"""

from __future__ import annotations

import numpy as np

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
    want = np.dtype(dtype)
    kind = arr.dtype.kind
    if arr.dtype == want or arr.size == 0 or kind == "b":
        return None
    if want.kind == "b":
        bad = ~np.isin(arr, (0, 1))
        if bad.any():
            where, v = _at(name, arr, bad)
            return f"{where} is {_show(v)}, not 0/1 or true/false (the dtype is bool)"
        return None
    if want.kind in "iu":
        return _int_misfit(name, arr, want)
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


def _int_misfit(name: str, arr: np.ndarray, want: np.dtype) -> str | None:
    info = np.iinfo(want)
    span = f"outside {want}'s range [{info.min}, {info.max}]"
    if arr.dtype.kind == "O":  # Python ints too long for int64, maybe with floats: check as Python numbers
        return _objects_misfit(name, arr, want, span)
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
        if np.can_cast(arr.dtype, want):
            return None
        lo, hi = int(arr.min()), int(arr.max())
        if info.min <= lo and hi <= info.max:
            return None
        bad = (arr < info.min) | (arr > info.max)  # NumPy 2 compares mixed signedness exactly
    if bad.any():
        where, v = _at(name, arr, bad)
        return f"{where} is {_show(v)}, {span}"
    return None


def _objects_misfit(name: str, arr: np.ndarray, want: np.dtype, span: str) -> str | None:
    info = np.iinfo(want)
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
    if arr.dtype.kind == "O":
        return np.array(arr.tolist(), dtype=dtype), None
    return arr.astype(dtype, copy=False), None
