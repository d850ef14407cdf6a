"""ONNX element types <-> gtool dtypes: the one table every part of the importer uses.

An ONNX type maps to a NumPy dtype name; it is usable when gtool's core has that dtype
(`ir.DTYPES`, read at call time, so dtypes added to the core are picked up here without
an edit). Anything else is refused as `onnx-unsupported`, naming the type.
"""

from __future__ import annotations

from typing import Any

#: TensorProto.DataType value -> (ONNX name, NumPy / ml_dtypes dtype name or None)
ONNX_TYPES: dict[int, tuple[str, str | None]] = {
    1: ("FLOAT", "float32"),
    2: ("UINT8", "uint8"),
    3: ("INT8", "int8"),
    4: ("UINT16", "uint16"),
    5: ("INT16", "int16"),
    6: ("INT32", "int32"),
    7: ("INT64", "int64"),
    8: ("STRING", None),
    9: ("BOOL", "bool"),
    10: ("FLOAT16", "float16"),
    11: ("DOUBLE", "float64"),
    12: ("UINT32", "uint32"),
    13: ("UINT64", "uint64"),
    14: ("COMPLEX64", "complex64"),
    15: ("COMPLEX128", "complex128"),
    16: ("BFLOAT16", "bfloat16"),
    17: ("FLOAT8E4M3FN", "float8_e4m3fn"),
    18: ("FLOAT8E4M3FNUZ", "float8_e4m3fnuz"),
    19: ("FLOAT8E5M2", "float8_e5m2"),
    20: ("FLOAT8E5M2FNUZ", "float8_e5m2fnuz"),
    21: ("UINT4", "uint4"),
    22: ("INT4", "int4"),
    23: ("FLOAT4E2M1", "float4_e2m1fn"),
    24: ("FLOAT8E8M0", "float8_e8m0fnu"),
    25: ("UINT2", "uint2"),
    26: ("INT2", "int2"),
}

_BY_DTYPE = {np_name: code for code, (_, np_name) in ONNX_TYPES.items() if np_name}


def core_dtypes() -> tuple[str, ...]:
    from ..ir import DTYPES

    return DTYPES


def onnx_type_name(code: int) -> str:
    return ONNX_TYPES.get(code, (f"type {code}", None))[0]


def supported(code: int) -> bool:
    """Whether gtool's core can hold values of this ONNX element type."""
    np_name = ONNX_TYPES.get(code, ("", None))[1]
    return np_name is not None and np_name in core_dtypes()


def gtool_dtype(code: int, ctx: Any = None, what: str = "a value") -> str:
    """The gtool dtype of an ONNX element type, or GraphError onnx-unsupported (via ctx)."""
    if supported(code):
        return ONNX_TYPES[code][1]
    message = (f"{what} has ONNX type {onnx_type_name(code)}, which gtool does not have "
               f"(gtool dtypes: {', '.join(core_dtypes())})")
    if ctx is not None:
        raise ctx.error("onnx-unsupported", message)
    from ..errors import GraphError

    raise GraphError("onnx-unsupported", message)


def gtool_dtype_of_numpy(dtype, ctx: Any = None) -> str:
    """The gtool dtype of a NumPy array's dtype (refused like `gtool_dtype` when gtool lacks it)."""
    name = str(dtype)
    if name in core_dtypes():
        return name
    return gtool_dtype(_BY_DTYPE.get(name, 0), ctx, f"a {name} value")


def onnx_type(dtype: str) -> int:
    """The ONNX element type of a gtool dtype (for export)."""
    return _BY_DTYPE[dtype]
