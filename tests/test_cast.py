"""`cast` to and from the storage-only dtypes against ONNX: its conformance data for Cast
(onnx.backend.test.case.node.cast) and its reference evaluator on edge values (zeros, ties,
subnormals, the largest finite value and the first value past it, inf, NaN), both saturate
modes and the three float8_e8m0fnu rounding modes. Bits are compared, not values: -0 vs 0 and
a NaN where a number was expected both count.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import gtool
from gtool.dtypes import STORAGE_DTYPES, name_of
from gtool.format.build import build_graph
from gtool.format.source import load_document
from gtool.ops.cast import cast_array

onnx = pytest.importorskip("onnx")
ml_dtypes = pytest.importorskip("ml_dtypes")
from onnx import helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402


def cast_graph(src: str, attrs: dict):
    doc = {"gtool": 1, "inputs": {"x": {"shape": ["n"], "dtype": src}},
           "nodes": {"y": {"op": "cast", "inputs": ["x"], "attrs": attrs}}, "outputs": ["y"]}
    data, marks = load_document(json.dumps(doc), "g.json")
    g, diags = build_graph(data, marks, "g.json")
    assert g is not None, [d.format() for d in diags]
    return g


def run_cast(x: np.ndarray, dtype: str, **attrs) -> np.ndarray:
    flat = np.ascontiguousarray(x).reshape(-1)
    return gtool.run(cast_graph(name_of(x.dtype), {"dtype": dtype, **attrs}), {"x": flat})["y"].reshape(x.shape)


def same_bits(got: np.ndarray, want: np.ndarray) -> None:
    """Equal dtype and equal values; NaN matches NaN (its payload aside), and 0 / -0 differ."""
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    g = got.astype(np.float64) if got.dtype.kind in "fV" else got
    w = want.astype(np.float64) if want.dtype.kind in "fV" else want
    if got.dtype.kind in "fV":
        both_nan = np.isnan(g) & np.isnan(w)
        ok = both_nan | ((g == w) & (np.signbit(g) == np.signbit(w)))
    else:
        ok = g == w
    bad = np.flatnonzero(~ok)
    assert bad.size == 0, f"at {bad[:5].tolist()}: got {g.ravel()[bad[:5]]}, want {w.ravel()[bad[:5]]}"


# ONNX's conformance data for Cast ------------------------------------------------------------------


def _onnx_cast_cases():
    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import onnx.backend.test.case.node.cast  # noqa: F401  (registers its cases)
    return [t for t in node_cases._NodeTestCases if t.name.startswith("test_cast_")]


CASES = _onnx_cast_cases()


def test_the_conformance_cases_are_all_here():
    assert len(CASES) >= 60 and any("FLOAT8E8M0" in t.name for t in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda t: t.name)
def test_onnx_cast_conformance(case):
    node = case.model.graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    (inputs, outputs), = case.data_sets
    x, want = numpy_helper.to_array(inputs[0]), numpy_helper.to_array(outputs[0])
    gattrs = {"saturate": bool(attrs.get("saturate", 1))}
    if "round_mode" in attrs:
        gattrs["round_mode"] = attrs["round_mode"].decode()
    got = run_cast(x, name_of(helper.tensor_dtype_to_np_dtype(attrs["to"])), **gattrs)
    same_bits(got, want)


# ONNX's reference evaluator on edge values ---------------------------------------------------------

TO_ONNX = {"bfloat16": "BFLOAT16", "float8_e4m3fn": "FLOAT8E4M3FN", "float8_e4m3fnuz": "FLOAT8E4M3FNUZ",
           "float8_e5m2": "FLOAT8E5M2", "float8_e5m2fnuz": "FLOAT8E5M2FNUZ", "float8_e8m0fnu": "FLOAT8E8M0",
           "float4_e2m1fn": "FLOAT4E2M1", "int4": "INT4", "uint4": "UINT4", "int2": "INT2", "uint2": "UINT2"}


def edge_values(dtype: str) -> np.ndarray:
    """Zeros, the smallest subnormal and half of it (a tie to even), the largest finite value,
    the tie just past it and the value past that, inf, NaN, and random values of every scale."""
    info = ml_dtypes.finfo(STORAGE_DTYPES[dtype])
    top, tiny = float(info.max), float(info.smallest_subnormal)
    eps = float(info.eps)
    vals = [0.0, -0.0, tiny, -tiny, tiny / 2, tiny * 1.5, top, -top, top * (1 + eps / 4), top * (1 + eps / 2),
            -top * (1 + eps / 2), top * 1.01, top * 4, 1.0 + eps / 2, 1.0 + eps * 1.5, np.inf, -np.inf, np.nan,
            1e-30, 1e30, 0.1, -1 / 3]
    rng = np.random.default_rng(12)
    vals += list(rng.normal(size=40) * 10.0 ** rng.integers(-8, 8, 40))
    with np.errstate(over="ignore"):  # top * 4 is inf in float32 for bfloat16: fine, inf is an edge too
        return np.array(vals, np.float32)


def onnx_cast(x: np.ndarray, dtype: str, **attrs) -> np.ndarray:
    to = getattr(onnx.TensorProto, TO_ONNX[dtype])
    src = helper.np_dtype_to_tensor_dtype(x.dtype)
    node = helper.make_node("Cast", ["x"], ["y"], to=to, **attrs)
    g = helper.make_graph([node], "c", [helper.make_tensor_value_info("x", src, [x.size])],
                          [helper.make_tensor_value_info("y", to, [x.size])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 25)])
    return ReferenceEvaluator(model).run(None, {"x": x})[0]


FLOAT8 = ["float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"]


@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("dtype", FLOAT8)
def test_float8_against_the_reference_evaluator(dtype, saturate):
    x = edge_values(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = onnx_cast(x, dtype, saturate=int(saturate))
        x16 = x.astype(np.float16)
        want16 = onnx_cast(x16, dtype, saturate=int(saturate))
    same_bits(run_cast(x, dtype, saturate=saturate), want)
    same_bits(run_cast(x16, dtype, saturate=saturate), want16)


@pytest.mark.parametrize("dtype", ["bfloat16", "float4_e2m1fn"])
def test_bfloat16_and_float4_against_the_reference_evaluator(dtype):
    x = edge_values(dtype)
    same_bits(run_cast(x, dtype), onnx_cast(x, dtype))


@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("mode", ["up", "down", "nearest"])
def test_float8e8m0_rounding_modes_against_the_reference_evaluator(mode, saturate):
    x = np.array([1.0, 1.5, 1.4999999, 1.75, 0.75, 3.0, 2.0**-127, 2.0**-126 * 0.75, 0.0, -0.0, -3.0, 2.0**127,
                  3.0e38, np.finfo(np.float32).max, np.inf, -np.inf, np.nan, 1e-40, 2.0**-149], np.float32)
    same_bits(run_cast(x, "float8_e8m0fnu", saturate=saturate, round_mode=mode),
              onnx_cast(x, "float8_e8m0fnu", saturate=int(saturate), round_mode=mode))


def test_float8e8m0_closed_form():
    """Powers of two by hand: up rounds 3 to 4, down to 2, nearest 1.4 to 1 and 1.5 to 2."""
    x = np.array([3.0, 1.4, 1.5, 0.75, 2.0**127 * 1.5], np.float32)
    f = lambda **a: cast_array(x, "float8_e8m0fnu", **a).astype(np.float64).tolist()  # noqa: E731
    assert f(round_mode="up") == [4.0, 2.0, 2.0, 1.0, 2.0**127]  # saturated: not NaN
    assert f(round_mode="down") == [2.0, 1.0, 1.0, 0.5, 2.0**127]
    assert f(round_mode="nearest") == [4.0, 1.0, 2.0, 1.0, 2.0**127]
    assert np.isnan(cast_array(x, "float8_e8m0fnu", saturate=False).astype(np.float64)[-1])


@pytest.mark.parametrize("dtype", ["int4", "uint4", "int2", "uint2"])
def test_small_ints_against_the_reference_evaluator_in_range(dtype):
    info = ml_dtypes.iinfo(STORAGE_DTYPES[dtype])
    x = np.arange(int(info.min), int(info.max) + 1).astype(np.float32)
    x = np.concatenate([x, x + 0.25, x - 0.25 * np.sign(x)]).clip(info.min, info.max)  # truncation toward zero
    same_bits(run_cast(x, dtype), onnx_cast(x, dtype))
    ints = np.arange(int(info.min), int(info.max) + 1).astype(np.int8)
    same_bits(run_cast(ints, dtype), onnx_cast(ints, dtype))


def test_small_ints_zero_floats_past_the_range_and_wrap_ints():
    """Past the range: a float becomes 0 (ONNX's conformance data: -9 -> 0, but -8.9 -> -8),
    an int wraps around at the width as int8 -> int4 does in C."""
    x = np.array([7.9, -8.9, 8.0, -9.0, 100.0, np.inf, -np.inf, np.nan, -0.5, 3.99, 4.0], np.float32)
    assert cast_array(x, "int4").astype(np.int64).tolist() == [7, -8, 0, 0, 0, 0, 0, 0, 0, 3, 4]
    assert cast_array(x, "uint2").astype(np.int64).tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0]
    assert cast_array(np.array([8, -9, 16, 127], np.int8), "int4").astype(np.int64).tolist() == [-8, 7, 0, -1]
    assert cast_array(np.array([4, 5, 255], np.uint8), "uint2").astype(np.int64).tolist() == [0, 1, 3]


@pytest.mark.parametrize("dtype", list(STORAGE_DTYPES))
def test_from_every_storage_dtype_to_float32_and_float16_is_exact(dtype):
    if "float" in dtype:
        x = cast_array(edge_values(dtype), dtype)
    else:
        info = ml_dtypes.iinfo(STORAGE_DTYPES[dtype])
        x = cast_array(np.arange(int(info.min), int(info.max) + 1), dtype)
    wide = x.astype(np.float32)  # ml_dtypes: every storage value is exact in float32
    same_bits(run_cast(x, "float32"), wide)
    with np.errstate(over="ignore"):
        same_bits(run_cast(x, "float16"), wide.astype(np.float16))


def test_cast_between_two_storage_dtypes_goes_through_float32():
    x = cast_array(np.array([1.0, 0.1, 448.0, -3.5, 1e-3], np.float32), "bfloat16")
    same_bits(run_cast(x, "float8_e4m3fn"), cast_array(x.astype(np.float32), "float8_e4m3fn"))


def test_no_gradient_flows_through_a_storage_cast():
    doc = {"gtool": 1, "inputs": {"x": [3]}, "nodes": {"q": "cast(x, dtype=float8_e4m3fn)", "y": "cast(q, dtype=float64)",
                                                      "l": "sum(y * x)"}, "outputs": ["l"]}
    data, marks = load_document(json.dumps(doc), "g.json")
    g, _ = build_graph(data, marks, "g.json")
    grads = gtool.value_and_grad(g, {"x": [1.0, 2.0, 500.0]}, wrt=["x"])[1]
    # d/dx sum(q(x) * x) with q's gradient cut: q(x) itself (500 saturates to 448)
    assert grads["x"].tolist() == [1.0, 2.0, 448.0]
