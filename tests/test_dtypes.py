"""The dtypes beyond float64/float32/int64/int32/bool (gtool/dtypes.py, issue 12).

References are independent of gtool: NumPy 2's own promotion and arithmetic on real arrays
(int8 wrap-around is NumPy's and ONNX's behaviour), exact Python integers for the ranges,
and, for the storage-only dtypes, ONNX's reference evaluator and its conformance data.
"""

from __future__ import annotations

import importlib.util
import itertools
import json

import numpy as np
import pytest

import gtool
from gtool.datafit import misfit, scalar_misfit
from gtool.dtypes import COMPUTE_DTYPES, DTYPES, FLOAT_DTYPES, INT_DTYPES, STORAGE_DTYPES, np_dtype
from gtool.errors import GraphError, UsageError
from gtool.format.build import build_graph
from gtool.format.source import load_document
from gtool.ir import TensorType
from gtool.ops.registry import ShapeError, result_type
from gtool.shapes import infer


def graph(inputs: dict, nodes: dict, outputs=None):
    doc = {"gtool": 1, "inputs": inputs, "nodes": nodes, "outputs": outputs or [list(nodes)[-1]]}
    data, marks = load_document(json.dumps(doc, indent=1), "g.json")
    g, diags = build_graph(data, marks, "g.json")
    assert g is not None, [d.format() for d in diags]
    return g


def node(op, inputs, **attrs):
    return {"op": op, "inputs": inputs, "attrs": attrs}


def diagnostics(inputs, nodes):
    return infer(graph(inputs, nodes)).diagnostics


# promotion: NumPy 2 on real arrays is the reference ----------------------------------------------


@pytest.mark.parametrize("a, b", list(itertools.combinations_with_replacement(COMPUTE_DTYPES, 2)))
def test_promotion_of_two_tensors_is_numpys(a, b):
    want = (np.zeros(2, a) + np.zeros(2, b)).dtype
    assert result_type([TensorType((), a), TensorType((), b)]).dtype == str(want)


@pytest.mark.parametrize("dtype", COMPUTE_DTYPES)
@pytest.mark.parametrize("literal", [True, 2, 1.5])
def test_a_weak_literal_takes_the_tensors_dtype_as_numpy_2(dtype, literal):
    want = (np.zeros(2, dtype) * literal).dtype  # NumPy 2: Python scalars are weak
    lit = "bool" if isinstance(literal, bool) else "int64" if isinstance(literal, int) else "float64"
    got = result_type([TensorType((), dtype), TensorType((), lit, weak=True)])
    assert (got.dtype, got.weak) == (str(want), False)


# integer arithmetic at the width: wrap-around, as NumPy and ONNX ---------------------------------

WRAP = [("int8", [100, 127, -128], [27, 1, -1]), ("uint8", [200, 255, 0], [100, 1, 0]),
        ("int16", [32767, -32768, 5], [1, -1, 7]), ("uint16", [65535, 1, 2], [1, 2, 3]),
        ("uint32", [2**32 - 1, 5, 0], [1, 2, 0]), ("uint64", [2**64 - 1, 7, 0], [1, 1, 1])]


@pytest.mark.parametrize("dtype, x, y", WRAP)
def test_integer_add_sub_mul_wrap_around_at_the_width(dtype, x, y):
    g = graph({"x": {"shape": [3], "dtype": dtype}, "y": {"shape": [3], "dtype": dtype}},
              {"s": "x + y", "d": "x - y", "p": "x * y"}, ["s", "d", "p"])
    out = gtool.run(g, {"x": x, "y": y})
    bits, lo = np.iinfo(dtype).bits, np.iinfo(dtype).min
    for name, fn in (("s", lambda a, b: a + b), ("d", lambda a, b: a - b), ("p", lambda a, b: a * b)):
        want = [(fn(a, b) - lo) % 2**bits + lo for a, b in zip(x, y)]  # exact integers, wrapped
        assert out[name].dtype == np.dtype(dtype)
        assert out[name].tolist() == want, name


def test_small_int_sum_stays_in_its_dtype_and_wraps():
    """ONNX ReduceSum of int8 is int8 (NumPy would give int64): the shape rule keeps int8."""
    g = graph({"x": {"shape": [3], "dtype": "int8"}}, {"s": "sum(x)"})
    out = gtool.run(g, {"x": [100, 100, -1]})["s"]
    assert out.dtype == np.int8 and int(out) == (199 + 128) % 256 - 128


@pytest.mark.parametrize("dtype", ["float16", "int8", "uint8", "int16", "uint16", "uint32", "uint64"])
def test_comparisons_and_where_on_new_dtypes(dtype):
    g = graph({"x": {"shape": [3], "dtype": dtype}, "y": {"shape": [3], "dtype": dtype}},
              {"c": "greater(x, y)", "m": "where(c, x, y)"}, ["c", "m"])
    x, y = np.array([1, 5, 3], dtype), np.array([2, 4, 3], dtype)
    out = gtool.run(g, {"x": x, "y": y})
    assert out["c"].tolist() == [False, True, False]
    assert out["m"].dtype == np.dtype(dtype) and out["m"].tolist() == [2, 5, 3]


def test_float16_arithmetic_is_float16_and_overflows_like_ieee():
    g = graph({"x": {"shape": [3], "dtype": "float16"}}, {"y": "x * x"})
    out = gtool.run(g, {"x": [1.5, 255.0, 256.0]})["y"]
    assert out.dtype == np.float16
    assert out.tolist() == [2.25, 65024.0, float("inf")]  # 256^2 = 65536 > 65504


# literals and data that do not fit: refused, never wrapped -----------------------------------------


@pytest.mark.parametrize("dtype, expr, fits", [
    ("uint8", "x + 255", True), ("uint8", "x + 256", False), ("uint8", "x - 1", True), ("uint8", "x + -1", False),
    ("int8", "x + 127", True), ("int8", "x * 128", False), ("int8", "x + -128", True),
    ("uint64", "x + 9223372036854775807", True), ("uint64", "x * -2", False),
    ("float16", "x * 65504.0", True), ("float16", "x * 65520.0", False), ("float16", "x * 1e5", False),
    ("int16", "x + 32767", True), ("int16", "x + 32768", False)])
def test_a_literal_must_fit_the_dtype_it_takes(dtype, expr, fits):
    diags = diagnostics({"x": {"shape": [2], "dtype": dtype}}, {"y": expr})
    if fits:
        assert diags == []
    else:
        assert [d.code for d in diags] == ["bad-value"] and dtype in diags[0].message


@pytest.mark.parametrize("dtype", [d for d in INT_DTYPES])
def test_data_must_fit_every_int_dtype_edges_and_near_misses(dtype):
    info = np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max)
    assert misfit("x", np.array([lo, hi], dtype=object), dtype) is None
    for bad in (lo - 1, hi + 1):
        why = misfit("x", np.array([0, bad], dtype=object), dtype)
        assert why is not None and "x[1]" in why and "range" in why
    assert scalar_misfit(hi, dtype) is None and scalar_misfit(hi + 1, dtype) is not None


def test_float16_data_limits():
    assert misfit("x", np.array([65504.0, -65504.0]), "float16") is None
    assert misfit("x", np.array([65519.0]), "float16") is None  # rounds to 65504
    assert "inf" in misfit("x", np.array([65520.0]), "float16")  # rounds to inf
    assert "inf" in misfit("x", np.array([70000]), "float16")  # an int too
    assert misfit("x", np.array([1e-8, np.inf, np.nan]), "float16") is None  # underflow, inf, nan: as written


def test_feeding_data_that_does_not_fit_is_a_usage_error():
    g = graph({"x": {"shape": [2], "dtype": "uint8"}}, {"y": "x + 1"})
    with pytest.raises(UsageError) as e:
        gtool.run(g, {"x": [1, -1]})
    assert "x[1]" in str(e.value.diagnostic.message) and "uint8" in e.value.diagnostic.message


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "uint32", "uint64", "float16"])
def test_random_inputs_and_inits_in_every_dtype(dtype):
    doc = {"gtool": 1, "inputs": {"x": {"shape": [50], "dtype": dtype, "range": [0, 100]}},
           "params": {"w": {"shape": [50], "dtype": dtype, "init": "ones"}},
           "nodes": {"y": "x * w"}, "outputs": ["y"]}
    data, marks = load_document(json.dumps(doc), "g.json")
    g, _ = build_graph(data, marks, "g.json")
    y = gtool.run(g, random_inputs=True, seed=3)["y"]
    assert y.dtype == np.dtype(dtype) and y.min() >= 0 and y.max() <= 100
    assert len(np.unique(y)) > 5


def test_a_random_range_past_the_dtype_is_refused():
    g = graph({"x": {"shape": [2], "dtype": "int8", "range": [0, 200]}}, {"y": "x + 1"})
    with pytest.raises(UsageError, match="int8"):
        gtool.run(g, random_inputs=True)


# storage-only dtypes ------------------------------------------------------------------------------

needs_ml_dtypes = pytest.mark.skipif(importlib.util.find_spec("ml_dtypes") is None, reason="needs ml_dtypes")


@needs_ml_dtypes
def test_every_dtype_has_a_numpy_dtype_and_the_lists_are_disjoint():
    assert len(set(DTYPES)) == len(DTYPES) == 8 + 3 + 1 + len(STORAGE_DTYPES)
    for d in DTYPES:
        assert np_dtype(d).itemsize >= 1
    assert set(FLOAT_DTYPES).isdisjoint(STORAGE_DTYPES)


@needs_ml_dtypes
@pytest.mark.parametrize("dtype", list(STORAGE_DTYPES))
def test_storage_dtypes_move_but_never_compute(dtype):
    inputs = {"x": {"shape": [2, 3], "dtype": dtype}, "y": {"shape": [2, 3], "dtype": dtype}}
    moves = {"r": "reshape(x, shape=[3, 2])", "t": "transpose(x)", "c": node("concat", ["x", "y"], axis=0),
             "s": node("slice", ["c"], axis=0, start=1, stop=3), "e": "expand_dims(s, axis=0)", "q": "squeeze(e)",
             "i": "identity(q)", "f": "cast(i, dtype=float32)"}
    assert diagnostics(inputs, moves) == []
    for expr in ("x + y", "x * 2", "exp(x)", "sum(x)", "matmul(x, transpose(y))", "greater(x, y)"):
        diags = diagnostics(inputs, {"z": expr})
        assert [d.code for d in diags] == ["storage-only-dtype"], expr
        assert dtype in diags[0].message and "cast" in diags[0].message


@needs_ml_dtypes
def test_mixing_a_storage_dtype_with_another_is_refused_even_in_data_movement():
    inputs = {"x": {"shape": [2], "dtype": "bfloat16"}, "y": {"shape": [2], "dtype": "float32"}}
    diags = diagnostics(inputs, {"c": node("concat", ["x", "y"], axis=0)})
    assert [d.code for d in diags] == ["storage-only-dtype"]
    with pytest.raises(ShapeError):
        result_type([TensorType((), "float8_e4m3fn"), TensorType((), "float8_e5m2")])


@needs_ml_dtypes
def test_storage_data_in_and_out_of_a_run():
    g = graph({"x": {"shape": [4], "dtype": "float8_e4m3fn"}},
              {"t": "reshape(x, shape=[2, 2])", "f": "cast(t, dtype=float32)"}, ["t", "f"])
    out = gtool.run(g, {"x": [0.5, -448.0, 1.125, 0.001953125]})
    assert out["t"].dtype == np_dtype("float8_e4m3fn")
    assert out["f"].tolist() == [[0.5, -448.0], [1.125, 0.001953125]]
    with pytest.raises(UsageError, match="largest finite value 448"):
        gtool.run(g, {"x": [0.5, 449.0, 0, 0]})  # would saturate, or become NaN: refused
    with pytest.raises(UsageError, match="no infinities"):
        gtool.run(g, {"x": [0.5, np.inf, 0, 0]})


@needs_ml_dtypes
def test_storage_int_data_limits():
    assert misfit("x", np.array([-8, 7]), "int4") is None
    assert "int4" in misfit("x", np.array([8]), "int4")
    assert misfit("x", np.array([0, 3]), "uint2") is None and misfit("x", np.array([4]), "uint2") is not None
    assert misfit("x", np.array([-2.0, 1.0]), "int2") is None and "whole" in misfit("x", np.array([0.5]), "int2")


@needs_ml_dtypes
def test_float8e8m0_and_float4_data_limits():
    assert misfit("x", np.array([2.0**-127, 0.25, 2.0**127]), "float8_e8m0fnu") is None
    assert "positive" in misfit("x", np.array([0.0]), "float8_e8m0fnu")
    assert "positive" in misfit("x", np.array([-1.0]), "float8_e8m0fnu")
    assert misfit("x", np.array([6.0, -6.0, 0.5]), "float4_e2m1fn") is None
    assert "largest" in misfit("x", np.array([6.5]), "float4_e2m1fn")
    assert "NaN" in misfit("x", np.array([np.nan]), "float4_e2m1fn")


@needs_ml_dtypes
def test_a_storage_dtype_in_a_file_validates(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("gtool: 1\ninputs:\n  x: {shape: [2], dtype: bfloat16}\n"
                 "nodes:\n  y: cast(x, dtype=float8_e5m2, saturate=false)\n  z: x + 1\noutputs: [y]\n")
    with pytest.raises(GraphError) as e:
        gtool.load(p)
    assert [d.code for d in e.value.diagnostics] == ["storage-only-dtype"]
    assert e.value.diagnostics[0].line == 6


# the numba backend: the new ints compile (and wrap as NumPy does), float16 and storage are refused


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "uint32", "uint64"])
def test_numba_computes_the_new_ints_exactly_as_numpy(dtype):
    pytest.importorskip("numba")
    nodes = {"a": "x + y", "b": "x * y - y", "n": "neg(x)", "m": "maximum(x, y)", "s": "sum(a, axis=0)",
             "w": "where(greater(x, y), x, abs(y))", "k": "x * 3 + 1", "c": "cast(s, dtype=int8)",
             "p": "matmul(x, transpose(y))"}
    g = graph({"x": {"shape": [4, 3], "dtype": dtype}, "y": {"shape": [4, 3], "dtype": dtype}}, nodes, list(nodes))
    info = np.iinfo(dtype)
    rng = np.random.default_rng(5)
    data = {k: rng.integers(info.min, info.max, (4, 3), dtype=dtype, endpoint=True) for k in "xy"}
    data["x"][0, :] = [info.max, info.min, 0]  # wrap-around at both ends
    want = gtool.run(g, data)
    got = gtool.run(g, data, backend="numba")
    for k in nodes:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float8_e4m3fn", "int4"])
def test_numba_refuses_float16_and_storage_dtypes_naming_them(dtype):
    pytest.importorskip("numba")
    if dtype != "float16" and importlib.util.find_spec("ml_dtypes") is None:
        pytest.skip("needs ml_dtypes")
    nodes = {"y": "reshape(x, shape=[4])", "z": "cast(y, dtype=float32)"}
    g = graph({"x": {"shape": [2, 2], "dtype": dtype}}, nodes, ["z"])
    with pytest.raises(UsageError) as e:
        gtool.run(g, {"x": [[1, 0], [1, 1]]}, backend="numba")
    assert e.value.diagnostic.code == "unsupported-dtype" and dtype in e.value.diagnostic.message


# lint: float16's overflow at 65504 ------------------------------------------------------------------


def lint_codes(inputs, nodes):
    from gtool.lint import lint_graph

    return {f.diag.node: (f.diag.code, f.diag.severity) for f in lint_graph(graph(inputs, nodes, list(nodes))).findings}


def test_lint_finds_float16_overflow_with_the_near_miss():
    inputs = {"a": {"shape": [3], "dtype": "float16", "range": [-256, 256]},
              "b": {"shape": [3], "dtype": "float16", "range": [-255, 255]},
              "w": {"shape": [3], "range": [0, 65000]}, "v": {"shape": [3], "range": [0, 65520]},
              "u": {"shape": [3], "dtype": "float16"}}
    found = lint_codes(inputs, {"p": "a * a", "q": "b * b", "c": "cast(w, dtype=float16)",
                                "d": "cast(v, dtype=float16)", "e": "exp(b)", "f": "u * u"})
    assert found["p"] == ("overflow", "error")  # 256^2 = 65536 rounds to inf in float16
    assert "q" not in found  # 255^2 = 65025 fits
    # 65520 rounds to inf; lint rounds interval ends outward, so 65519 (which rounds to 65504) is flagged too
    assert "c" not in found and found["d"] == ("overflow", "error")
    assert found["e"] == ("exp-overflow", "error")  # exp(255) in float16 (it overflows above 11.09)
    assert "f" not in found  # no range on u: nothing is known, no finding (u itself is unbounded)


def test_lint_does_not_flag_float32_or_float64_for_the_same_values():
    inputs = {"a": {"shape": [3], "dtype": "float32", "range": [-256, 256]}}
    assert lint_codes(inputs, {"p": "a * a"}) == {}


# grad-check in float16: its own tolerances ---------------------------------------------------------


@pytest.fixture
def bad_ops():
    from pathlib import Path

    from gtool.commands.common import load_plugin
    from gtool.ops.registry import REGISTRY

    before = dict(REGISTRY)
    plugins = Path(__file__).parent / "plugins"
    load_plugin(str(plugins / "bad_ops.py"))
    yield plugins
    REGISTRY.clear()
    REGISTRY.update(before)


def test_grad_check_in_float16_passes_right_rules_and_fails_wrong_ones(bad_ops):
    from pathlib import Path

    for path in (bad_ops / "cube_ok.yaml", bad_ops / "bias_ok.yaml", Path(__file__).parent.parent / "graphs" / "mlp.yaml"):
        res = gtool.grad_check(gtool.load(path), dtype="float16")
        assert res and all(r.passed for r in res), path.name
    for name, target in (("scaled.yaml", "w"), ("transposed.yaml", "A"), ("nosum.yaml", "b")):
        res = {r.wrt: r for r in gtool.grad_check(gtool.load(bad_ops / name), dtype="float16")}
        assert not res[target].passed, name


def test_without_ml_dtypes_a_storage_dtype_is_refused_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ml_dtypes", None)  # import ml_dtypes now fails
    p = tmp_path / "g.yaml"
    p.write_text("gtool: 1\ninputs:\n  x: {shape: [2], dtype: bfloat16}\nnodes:\n  y: identity(x)\noutputs: [y]\n")
    with pytest.raises(GraphError) as e:
        gtool.load(p)
    d = e.value.diagnostics[0]
    assert (d.code, d.line) == ("missing-extra", 3) and "gtool[onnx]" in d.message
    p.write_text("gtool: 1\ninputs:\n  x: [2]\nnodes:\n  y: cast(x, dtype=int4)\noutputs: [y]\n")
    with pytest.raises(GraphError, match="ml_dtypes"):
        gtool.load(p)
    with pytest.raises(UsageError, match="gtool\\[onnx\\]"):
        np_dtype("float8_e4m3fn")


def test_lint_knows_int_arithmetic_wraps_around():
    """int8 x in [100, 127]: x + 100 wraps to negative values, so log of it is a finding (the
    near miss: x + 0 stays within int8 and its log is proven safe)."""
    inputs = {"x": {"shape": [3], "dtype": "int8", "range": [100, 127]}}
    found = lint_codes(inputs, {"a": "x + 100", "la": "log(cast(a, dtype=float64))",
                                "b": "x + 0", "lb": "log(cast(b, dtype=float64))"})
    assert found == {"la": ("log-domain", "error")}
    # and the data agree: 127 + 100 wraps to -29
    g = graph(inputs, {"a": "x + 100"})
    assert gtool.run(g, {"x": [100, 127, 110]})["a"].tolist() == [-56, -29, -46]
