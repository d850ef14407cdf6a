"""Integer arithmetic with C's semantics, for models from other frameworks.

`trunc_div` is integer division rounding toward zero, as C, ONNX's Div on integers, and
torch's `div(rounding_mode="trunc")` do. NumPy's `//` floors instead (-7 // 2 is -4; C
gives -3), and gtool's `div` is true division (ints give float64), so neither can stand in
for it exactly once values pass 2**53.
"""

from __future__ import annotations

import numpy as np

from ..ir import TensorType
from .reference import Edge, elementwise_ref
from .registry import KernelError, OpDef, ShapeError, register, result_type


def _is_int(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


def _infer(ctx, types, attrs):
    for t in types:
        if not _is_int(t.dtype):
            raise ShapeError("dtype-mismatch", f"trunc_div divides integers, got {t.dtype} (use div for floats)")
    shape = ctx.broadcast(*[t.shape for t in types])
    rt = result_type(types)
    return TensorType(shape, rt.dtype, rt.weak)


def _forward(a, b):
    """Floor division corrected by one where the remainder is non-zero and the signs differ."""
    if np.any(np.equal(b, 0)):
        raise KernelError("bad-input", "integer division by zero (trunc_div)")
    with np.errstate(over="ignore"):  # INT_MIN / -1 wraps, as in C on every common machine
        q = np.floor_divide(a, b)
        fix = (np.remainder(a, b) != 0) & (np.less(a, 0) != np.less(b, 0))
        return q + fix.astype(np.asarray(q).dtype)


def _ref(m, x, y):
    """Exact on Python ints: |x| // |y| with the sign of x·y."""
    x, y = int(x), int(y)
    q = abs(x) // abs(y)
    return q if (x < 0) == (y < 0) else -q


def _interval(bounds, attrs, info):
    """|x / y| <= |x| for a non-zero integer y."""
    (lo, hi) = bounds[0]
    m = max(abs(lo), abs(hi))
    return -m, m


register(OpDef(
    "trunc_div", 2, _infer, _forward, group="integer",
    doc="integer division rounding toward zero (C, ONNX Div on ints); a zero divisor is an error",
    reference=elementwise_ref(_ref), interval=_interval, ulps=0,
    edges=(Edge((np.array([7, -7, 7, -7, 0, 1, -1, 6, -6, 2**62 + 1, -(2**63) + 1, 2**53 + 1]),
                 np.array([2, 2, -2, -2, 3, 1, 1, 3, -3, 3, 7, 2]))),
           Edge((np.array([[9, -9], [100, -100]], np.int32), np.array([4, -7], np.int32)))),
))
