"""Hostile data (issue 10): numbers that do not fit their dtype, literals out of range, random
ranges that cannot be drawn from, and runs too big to allocate. Each was a silent wrong result
(exit 0 with NumPy's wrap-around or inf), an internal error, or an out-of-memory after the
allocation; each must now be a coded error (exit 1 or 2, one JSON document in json mode).

References are independent of gtool: Python integers for ranges and wrap-around, byte counts
written out by hand for memory.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from gtool import api, budget
from gtool.cli import main


def cli(capsys, *args) -> tuple[int, str, str]:
    """The command line in-process, with NumPy's RuntimeWarnings turned into failures: a warning
    on stderr is not an acceptable signal for bad data."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(SystemExit) as info:
            main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def graph(tmp_path, text: str, name: str = "g.yaml"):
    p = tmp_path / name
    p.write_text("gtool: 1\n" + text)
    return p


def one_input(tmp_path, dtype: str, extra: str = ""):
    return graph(tmp_path, f"inputs:\n  x: {{shape: [2], dtype: {dtype}{extra}}}\nnodes:\n  y: x * 1\noutputs: [y]\n",
                 f"{dtype}.yaml")


def json_error(capsys, *args) -> tuple[int, dict]:
    status, out, err = cli(capsys, *args, "--format", "json")
    assert "Traceback" not in err and "internal error" not in err, err
    return status, json.loads(out)["error"]


# 1. data that does not fit its dtype ----------------------------------------------------------------

BAD_DATA = [  # (dtype, the data as JSON, what the message must name)
    ("int64", "[1e30, 2]", "1e+30"),
    ("int64", f"[{2**63}, 2]", "outside int64's range"),  # one past the largest int64
    ("int64", "[2.5, 2]", "not a whole number"),
    ("int64", '["nan", 2]', "nan"),
    ("int32", f"[{2**31}, 2]", "outside int32's range"),  # wraps to -2**31 in NumPy
    ("int32", f"[{-2**31 - 1}, 2]", "outside int32's range"),
    ("int64", f"[{10**30}, 2]", "outside int64's range"),  # beyond int64: JSON gives a Python int
    ("float32", "[1e300, 2]", "would become inf"),
    ("float32", "[-1e39, 2]", "would become inf"),
    ("bool", "[2, 0]", "0/1"),
]


@pytest.mark.parametrize("dtype, data, named", BAD_DATA)
def test_input_flag_that_does_not_fit_its_dtype_is_refused(capsys, tmp_path, dtype, data, named):
    g = one_input(tmp_path, dtype)
    status, out, err = cli(capsys, "run", g, "--input", f"x={data}")
    assert status == 2 and "[bad-input]" in err and "node 'x'" in err and named in err, err
    assert out == ""
    status, error = json_error(capsys, "run", g, "--input", f"x={data}")
    assert status == 2 and error["code"] == "bad-input" and error["node"] == "x"


GOOD_DATA = [  # near misses: the edges of each range fit, and rounding is not an error
    ("int32", [2**31 - 1, -2**31]),
    ("int64", [2**63 - 1, -2**63]),
    ("int64", [-9.223372036854775808e18, 4.0]),  # -2**63 as a float is exactly representable
    ("float32", [float(np.finfo(np.float32).max), 1e-300]),  # the largest float32; underflow to 0 is rounding
    ("bool", [1, 0]),
]


@pytest.mark.parametrize("dtype, data", GOOD_DATA)
def test_data_at_the_edge_of_its_dtype_runs_exactly(capsys, tmp_path, dtype, data):
    g = one_input(tmp_path, dtype)
    status, out, err = cli(capsys, "run", g, "--input", f"x={json.dumps(data)}", "--format", "json")
    assert status == 0, err
    got = json.loads(out)["outputs"]["y"]["value"]
    if dtype == "float32":
        assert got[0] == float(np.finfo(np.float32).max) and got[1] == 0.0
    elif dtype == "bool":
        assert got == [1, 0] or got == [True, False]
    else:
        assert got == [int(v) for v in data]  # exact, as Python integers


def test_data_files_that_do_not_fit_are_refused(capsys, tmp_path):
    """.npy, .npz, .json and .yaml all go through the same rules."""
    i32, i64, f32 = one_input(tmp_path, "int32"), one_input(tmp_path, "int64"), one_input(tmp_path, "float32")
    np.save(tmp_path / "u64.npy", np.array([2**64 - 1, 2], dtype=np.uint64))  # -1 after NumPy's cast
    np.save(tmp_path / "f64.npy", np.array([1e300, 2.0]))
    np.savez(tmp_path / "big.npz", x=np.array([2**40, 2], dtype=np.int64))  # 0 after NumPy's cast to int32
    (tmp_path / "big.json").write_text('{"x": [1e30, 2]}')
    (tmp_path / "big.yaml").write_text(f"x: [{2**31}, 2]\n")
    cases = [(i64, "--input", f"x=@{tmp_path / 'u64.npy'}"), (f32, "--input", f"x=@{tmp_path / 'f64.npy'}"),
             (i32, "--inputs", tmp_path / "big.npz"), (i64, "--inputs", tmp_path / "big.json"),
             (i32, "--inputs", tmp_path / "big.yaml")]
    for g, flag, value in cases:
        status, out, err = cli(capsys, "run", g, flag, value)
        assert status == 2 and "[bad-input]" in err and "x[0]" in err, (flag, value, err)
        status, error = json_error(capsys, "run", g, flag, value)
        assert status == 2 and error["code"] == "bad-input"


def test_library_callers_get_the_same_rules(tmp_path):
    g = api.load(one_input(tmp_path, "int32"))
    with pytest.raises(api.UsageError) as e:
        api.run(g, {"x": np.array([2**31, 0], dtype=np.int64)})
    assert e.value.code == "bad-input"
    out = api.run(g, {"x": np.array([2**31 - 1, 0], dtype=np.int64)})["y"]
    assert out.dtype == np.int32 and out.tolist() == [2**31 - 1, 0]


@pytest.mark.parametrize("decl, named", [
    ("{value: [1e30, 2], dtype: int64}", "1e+30"),
    (f"{{value: [{2**31}, 2], dtype: int32}}", "outside int32's range"),
    ("{value: [1e300, 2], dtype: float32}", "would become inf"),
])
def test_graph_values_that_do_not_fit_are_located_errors(capsys, tmp_path, decl, named):
    g = graph(tmp_path, f"params:\n  w: {decl}\nnodes:\n  y: w * 1\noutputs: [y]\n")
    status, out, err = cli(capsys, "validate", g)
    assert status == 1 and f"{g}:3:" in out + err and "[bad-value]" in out + err and named in out + err, out + err
    status, error = json_error(capsys, "run", g)
    assert status == 1 and error["code"] == "bad-value" and error["line"] == 3


def test_a_value_that_overflows_at_dtype_float32_is_refused(capsys, tmp_path):
    g = graph(tmp_path, "params:\n  w: {value: [1e300, 2]}\nnodes:\n  y: w * 1\noutputs: [y]\n")
    status, out, err = cli(capsys, "run", g)
    assert status == 0, err  # fine in float64
    status, error = json_error(capsys, "run", g, "--dtype", "float32")
    assert status == 1 and error["code"] == "bad-value" and error["node"] == "w"


# 2. literals out of range for the dtype they meet ----------------------------------------------------

INT32_X = "inputs:\n  x: {shape: [3], dtype: int32}\n  f: {shape: [3], dtype: float32}\n"


@pytest.mark.parametrize("expr, dtype", [
    ("x + 99999999999", "int32"),
    (f"x * {2**31}", "int32"),
    ("where(x > 0, x, -99999999999)", "int32"),
    ("x + k * 1000", "int32"),  # k * 1000 = 10**11 is computed from literals, so known too
    ("f * 1e300", "float32"),
])
def test_a_literal_out_of_range_for_its_dtype_is_a_located_error(capsys, tmp_path, expr, dtype):
    g = graph(tmp_path, INT32_X + f"constants:\n  k: 100000000\nnodes:\n  y: {expr}\noutputs: [y]\n")
    status, out, err = cli(capsys, "validate", g)
    text = out + err
    assert status == 1 and "node 'y'" in text and "[bad-value]" in text and dtype in text, text
    status, error = json_error(capsys, "run", g, "--input", "x=[1, 2, 3]", "--input", "f=[1, 2, 3]")
    assert status == 1 and error["code"] == "bad-value" and error["node"] == "y" and error["line"] == 8


def test_literals_that_fit_keep_numpys_int32_arithmetic(capsys, tmp_path):
    """The near miss: 2**31 - 1 fits int32; the sum wraps as int32 arithmetic does (the user's
    computation, not a cast of the data). Comparisons with any literal are exact."""
    g = graph(tmp_path, INT32_X + "nodes:\n  y: x + 2147483647\n  c: x < 99999999999\n  d: x / 99999999999\n"
              "outputs: [y, c, d]\n")
    status, out, err = cli(capsys, "run", g, "--input", "x=[1, -5, 0]", "--input", "f=[0, 0, 0]", "--format", "json")
    assert status == 0, err
    outs = json.loads(out)["outputs"]
    wrap = [((v + 2147483647 + 2**31) % 2**32) - 2**31 for v in (1, -5, 0)]
    assert outs["y"]["value"] == wrap == [-2147483648, 2147483642, 2147483647]
    assert outs["c"]["value"] in ([True] * 3, [1] * 3)
    assert outs["d"]["value"] == pytest.approx([1 / 99999999999, -5 / 99999999999, 0.0], rel=1e-15)


numba = pytest.importorskip  # alias for readability below


def test_numba_refuses_the_same_literals_and_matches_numpy_on_wrap_around(capsys, tmp_path):
    numba("numba")
    bad = graph(tmp_path, INT32_X + "nodes:\n  y: x + 99999999999\noutputs: [y]\n", "bad.yaml")
    status, error = json_error(capsys, "run", bad, "--input", "x=[1, 2, 3]", "--input", "f=[1, 2, 3]",
                               "--backend", "numba")
    assert status == 1 and error["code"] == "bad-value"  # numba used to wrap it silently
    ok = graph(tmp_path, INT32_X + "nodes:\n  y: x * 1000000\n  s: sum(x * 1000000)\n  z: x + 2147483647\n"
               "outputs: [y, s, z]\n", "ok.yaml")
    x = [3000, 1, -5]
    status, out, err = cli(capsys, "run", ok, "--input", f"x={x}", "--input", "f=[1, 2, 3]", "--backend", "numba",
                           "--format", "json")
    assert status == 0, err
    outs = json.loads(out)["outputs"]

    def i32(v: int) -> int:
        return ((v + 2**31) % 2**32) - 2**31

    assert outs["y"]["value"] == [i32(v * 1000000) for v in x]
    assert outs["s"]["value"] == i32(sum(i32(v * 1000000) for v in x))
    assert outs["z"]["value"] == [i32(v + 2147483647) for v in x]


# 3. random ranges and inits ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, rng, named", [
    ("float64", "[-inf, inf]", "not finite"),
    ("int64", "[-1e30, 1e30]", "outside int64's range"),
    ("int32", "[0, 1e12]", "outside int32's range"),
    ("float32", "[0, 1e300]", "would become inf"),
    ("int64", "[0.2, 0.8]", "holds no integer"),
])
def test_random_inputs_from_a_range_that_cannot_be_drawn_from(capsys, tmp_path, dtype, rng, named):
    g = one_input(tmp_path, dtype, f", range: {rng}")
    status, out, err = cli(capsys, "run", g, "--random-inputs")
    assert status == 2 and "[bad-input]" in err and "node 'x'" in err and named in err, err
    status, error = json_error(capsys, "run", g, "--random-inputs")
    assert status == 2 and error["code"] == "bad-input" and error["line"] == 3


def test_the_widest_finite_range_is_drawn_from(capsys, tmp_path):
    """[-1e308, 1e308] is wider than float64 can subtract (NumPy raised OverflowError)."""
    g = one_input(tmp_path, "float64", ", range: [-1e308, 1e308]")
    status, out, err = cli(capsys, "run", g, "--random-inputs", "--format", "json")
    assert status == 0, err
    values = json.loads(out)["outputs"]["y"]["value"]
    assert all(isinstance(v, float) and -1e308 <= v <= 1e308 for v in values) and len(set(values)) == 2


def test_an_init_that_overflows_its_dtype_is_refused(capsys, tmp_path):
    g = graph(tmp_path, "params:\n  w: {shape: [2], dtype: float32, init: {normal: {mean: 0, std: 1e300}}}\n"
              "nodes:\n  y: w * 1\noutputs: [y]\n")
    status, error = json_error(capsys, "run", g)
    assert status == 1 and error["code"] == "bad-init" and error["node"] == "w"
    g = graph(tmp_path, "params:\n  w: {shape: [2], init: {uniform: {low: -1e308, high: 1e308}}}\n"
              "nodes:\n  y: w * 1\noutputs: [y]\n", "wide.yaml")
    status, out, err = cli(capsys, "run", g, "--format", "json")
    assert status == 0 and all(abs(v) <= 1e308 for v in json.loads(out)["outputs"]["y"]["value"]), err


# 4. memory bombs, refused before allocating -------------------------------------------------------------

BOMBS = [
    ("params:\n  w: {shape: [1000000, 1000000], init: zeros}\nnodes:\n  y: sum(w)\n", "w", 10**12),
    ("inputs:\n  t: {shape: [4], dtype: int64, range: [0, 3]}\nnodes:\n"
     "  h: {op: one_hot, inputs: [t], attrs: {depth: 100000000000}}\n  y: sum(h)\n", "h", 4 * 10**11),
    ("inputs:\n  x: [1]\nnodes:\n  b: {op: broadcast_to, inputs: [x], attrs: {shape: [100000, 100000, 100000]}}\n"
     "  y: sum(b)\n", "b", 10**15),  # a view: nothing to allocate, but 10**15 additions
]


@pytest.mark.parametrize("text, node, count", BOMBS)
def test_a_value_with_absurdly_many_elements_is_refused_before_running(capsys, tmp_path, text, node, count):
    g = graph(tmp_path, text + "outputs: [y]\n")
    status, out, err = cli(capsys, "run", g, "--random-inputs")
    assert status == 2 and "[too-many-elements]" in err and f"node '{node}'" in err and f"{count:,}" in err, err
    status, error = json_error(capsys, "run", g, "--random-inputs")
    assert status == 2 and error["code"] == "too-many-elements" and error["node"] == node
    status, error = json_error(capsys, "grad", g, "--random-inputs") if node == "w" else (2, error)
    assert status == 2 and error["code"] == "too-many-elements"


PEAK = """\
params:
  w: {shape: [500, 500], init: ones}
nodes:
  a: w * 2
  b: w * 3
  y: sum(a + b)
outputs: [y]
"""
# by hand: w, a, b are 500 * 500 * 8 = 2,000,000 bytes each; a + b is a fourth while a, b live:
# peak = 8,000,000 bytes (7.63 MiB); no single value is over 2 MB


def test_the_peak_of_a_run_is_checked_against_max_memory(capsys, tmp_path):
    g = graph(tmp_path, PEAK)
    status, out, err = cli(capsys, "run", g, "--max-memory", "7MiB")
    assert status == 2 and "[too-much-memory]" in err and "7.0 MiB of --max-memory" in err, err
    status, error = json_error(capsys, "run", g, "--max-memory", "7MB")
    assert status == 2 and error["code"] == "too-much-memory" and error["node"] == "w"
    status, out, err = cli(capsys, "run", g, "--max-memory", "8000000", "--format", "json")  # exactly the peak
    assert status == 0 and json.loads(out)["outputs"]["y"]["value"] == 500 * 500 * 5, err


def test_the_limits_come_from_the_environment_and_bad_limits_are_usage_errors(capsys, tmp_path, monkeypatch):
    g = graph(tmp_path, PEAK)
    monkeypatch.setenv("GTOOL_MAX_MEMORY", "1MiB")
    status, error = json_error(capsys, "run", g)
    assert status == 2 and error["code"] == "too-much-memory" and "GTOOL_MAX_MEMORY" in error["message"]
    status, out, err = cli(capsys, "run", g, "--max-memory", "1GiB")  # the flag wins
    assert status == 0, err
    monkeypatch.setenv("GTOOL_MAX_ELEMENTS", "1000")
    status, error = json_error(capsys, "run", g, "--max-memory", "1GiB")
    assert status == 2 and error["code"] == "too-many-elements" and "250,000 elements" in error["message"]
    for flag, value in (("--max-memory", "lots"), ("--max-memory", "0"), ("--max-elements", "-3")):
        status, error = json_error(capsys, "run", g, flag, value)
        assert status == 2 and error["code"] == "usage"


def test_the_check_runs_once_per_bindings_not_per_call(tmp_path, monkeypatch):
    g = api.load(graph(tmp_path, "inputs:\n  x: [n]\nnodes:\n  y: sum(x * 2)\noutputs: [y]\n"))
    calls = []
    real = budget.check_plan
    monkeypatch.setattr(budget, "check_plan", lambda *a: calls.append(1) or real(*a))
    for _ in range(5):
        assert float(api.run(g, {"x": np.ones(3)})["y"]) == 6.0
    assert len(calls) == 1
    api.run(g, {"x": np.ones(4)})  # new bindings (n = 4): checked again
    assert len(calls) == 2
    with budget.limited(max_elements=3), pytest.raises(api.UsageError) as e:
        api.run(g, {"x": np.ones(4)})  # new limits: checked again, and refused
    assert e.value.code == "too-many-elements"


def test_parse_size_units():
    assert budget.parse_size("2GiB") == 2 * 2**30 == budget.parse_size("2g")
    assert budget.parse_size("1.5 MB") == 1_500_000
    assert budget.parse_size("1e9") == 10**9


def test_a_kernel_out_of_memory_is_a_located_error(tmp_path):
    """The estimate leaves out kernels' scratch space: a MemoryError inside a kernel must still
    be a coded error at the node (a JSON error in json mode), not a bare 'out of memory'."""
    from gtool import interp

    g = api.load(graph(tmp_path, "inputs:\n  x: [3]\nnodes:\n  y: exp(x)\noutputs: [y]\n"))
    prog = interp.program(g)

    def no_memory(*args, **kwargs):
        raise MemoryError

    prog.steps[0].kernel = no_memory
    with pytest.raises(api.UsageError) as e:
        api.run(g, {"x": np.ones(3)})
    assert e.value.code == "too-much-memory" and e.value.diagnostic.node == "y" and e.value.diagnostic.line == 5


# the rules against an independent reference: Python integers and struct's float32 packing ------------

def _fits_reference(v, dtype: str) -> bool:
    import math
    import struct

    if dtype == "bool":
        return v in (0, 1)
    if dtype.startswith("int"):
        bits = int(dtype[3:])
        whole = isinstance(v, int) or (math.isfinite(v) and v.is_integer())
        return whole and -(2 ** (bits - 1)) <= v <= 2 ** (bits - 1) - 1
    if dtype == "float32" and isinstance(v, float) and math.isfinite(v):
        try:
            struct.pack("<f", v)  # raises OverflowError where the float32 would be inf
        except OverflowError:
            return False
    return True


def test_the_fit_rules_match_python_arithmetic():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gtool.datafit import misfit

    edges = [2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**63 - 1, 2**63, -2**63, -2**63 - 1, 0, 1, 2]
    ints = st.one_of(st.sampled_from(edges), st.integers(-2**70, 2**70))
    floats = st.one_of(st.sampled_from([3.4028234663852886e38, 3.4028235677973366e38, 3.402823567797337e38, 1e300,
                                        2.0**63, -2.0**63, 2.0**31, 0.5, float("nan"), float("inf")]),
                       st.floats(allow_nan=True, allow_infinity=True))

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(st.lists(ints, min_size=1, max_size=4), st.lists(floats, min_size=1, max_size=4)),
           st.sampled_from(["int32", "int64", "float32", "float64", "bool"]))
    def check(values, dtype):
        big = any(isinstance(v, int) and not -2**63 <= v < 2**63 for v in values)
        arr = np.array(values, dtype=object) if big else np.asarray(values)
        if arr.dtype.kind == "u":  # a lone uint64 list; the reference sees the same numbers
            values = [int(v) for v in arr]
        expected = all(_fits_reference(v, dtype) for v in values)
        assert (misfit("x", arr, dtype) is None) == expected, (values, dtype, misfit("x", arr, dtype))

    check()
