"""The correctness holes an outside review found (issue 11), one test per bug class.

Each test compares with an independent truth: a closed form, or mpmath at 60 digits rounded
into the dtype and compared in ULPs (tests/ulps.py), never with the function under test.
The numba checks share compiled graphs (one compile per graph per process).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from ulps import max_ulp, to_dtype

from gtool import api

mpmath.mp.dps = 60


def graph(load_text, inputs: dict, nodes: dict, outputs, loss=None, dims=None):
    """A graph from dicts of YAML snippets (inputs: name -> type text; nodes: name -> expression)."""
    lines = ["gtool: 1"]
    if dims:
        lines.append("dims: {" + ", ".join(f"{k}: {v}" for k, v in dims.items()) + "}")
    lines.append("inputs:")
    lines += [f"  {k}: {v}" for k, v in inputs.items()]
    lines.append("nodes:")
    lines += [f"  {k}: {v}" for k, v in nodes.items()]
    lines.append(f"outputs: [{', '.join(outputs)}]")
    if loss:
        lines.append(f"loss: {loss}")
    return load_text("\n".join(lines) + "\n")


def numba_or_skip():
    pytest.importorskip("numba")
    return ["numpy", "numba"]


# gradients of shape and reduction ops -------------------------------------------------------------


def test_take_along_axis_negative_index_gets_its_gradient(load_text):
    g = graph(load_text, {"x": "[3]", "i": "{shape: [2], dtype: int64}"},
              {"y": "take_along_axis(x, i, axis=0)", "L": "sum(y * y)"}, ["L"], "L")
    x, i = np.array([1.0, 2.0, 3.0]), np.array([-1, 2])
    _, grads = api.value_and_grad(g, {"x": x, "i": i}, wrt=["x"])
    np.testing.assert_array_equal(grads["x"], [0.0, 0.0, 12.0])  # d/dx (x2^2 + x2^2) = 4 x2
    _, fwd = api.forward_mode_grad(g, {"x": x, "i": i}, wrt=["x"])
    np.testing.assert_array_equal(fwd["x"], grads["x"])


def test_concat_gradient_along_a_named_dim(load_text):
    g = graph(load_text, {"x": "[n]", "z": "[3]"}, {"y": "concat(x, z, axis=0)", "L": "sum(y * y)"},
              ["L"], "L", dims={"n": 2})
    x, z = np.array([1.0, -2.0]), np.array([0.5, 3.0, 4.0])
    _, grads = api.value_and_grad(g, {"x": x, "z": z}, wrt=["x", "z"])
    np.testing.assert_array_equal(grads["x"], 2 * x)
    np.testing.assert_array_equal(grads["z"], 2 * z)


def test_mean_over_no_axes_is_the_identity_and_so_is_its_gradient(load_text):
    g = graph(load_text, {"x": "[3]"}, {"y": "{op: mean, inputs: [x], attrs: {axis: []}}", "L": "sum(y * y)"},
              ["L"], "L")
    x = np.array([1.0, -2.0, 0.5])
    loss, grads = api.value_and_grad(g, {"x": x}, wrt=["x"])
    assert loss == 5.25
    np.testing.assert_array_equal(grads["x"], 2 * x)


def test_max_of_bool_is_bool(load_text):
    g = graph(load_text, {"x": "{shape: [3], dtype: bool}"}, {"y": "max(x)", "z": "min(x)", "s": "sum(x)"},
              ["y", "z", "s"])
    out = api.run(g, {"x": np.array([False, True, False])})
    assert out["y"].dtype == np.bool_ and out["y"] and out["z"].dtype == np.bool_ and not out["z"]
    assert out["s"].dtype == np.int64 and out["s"] == 1


# float ops on int and bool inputs ------------------------------------------------------------------

FLOAT_OPS = {
    "exp": mpmath.exp, "sigmoid": lambda v: 1 / (1 + mpmath.exp(-v)), "tanh": mpmath.tanh,
    "softplus": lambda v: mpmath.log(1 + mpmath.exp(v)), "log1p": lambda v: mpmath.log(1 + v),
    "sqrt": mpmath.sqrt, "expm1": mpmath.expm1, "sin": mpmath.sin,
}


@pytest.mark.parametrize("dtype", ["bool", "int64", "int32"])
def test_float_ops_on_int_and_bool_compute_in_float64(load_text, dtype):
    ops = list(FLOAT_OPS)
    g = graph(load_text, {"x": f"{{shape: [2], dtype: {dtype}}}"},
              {**{f"y_{op}": f"{op}(x)" for op in ops}, "s": "softmax(x)", "ls": "log_softmax(x)", "l": "logsumexp(x)"},
              [f"y_{op}" for op in ops] + ["s", "ls", "l"])
    x = np.array([1, 0]).astype(dtype)
    out = api.run(g, {"x": x})
    for op in ops:
        want = to_dtype([FLOAT_OPS[op](mpmath.mpf(int(v))) for v in x], np.float64)
        assert out[f"y_{op}"].dtype == np.float64
        assert max_ulp(out[f"y_{op}"], want) <= 1, (op, out[f"y_{op}"], want)
    lse = mpmath.log(mpmath.e + 1)
    assert max_ulp(out["l"], to_dtype(lse, np.float64)) <= 1
    assert max_ulp(out["ls"], to_dtype([1 - lse, -lse], np.float64)) <= 1
    assert max_ulp(out["s"], to_dtype([mpmath.e / (mpmath.e + 1), 1 / (mpmath.e + 1)], np.float64)) <= 1


def test_sign_of_bool_is_itself(load_text):
    g = graph(load_text, {"x": "{shape: [2], dtype: bool}"}, {"y": "sign(x)"}, ["y"])
    out = api.run(g, {"x": np.array([True, False])})["y"]
    assert out.dtype == np.bool_ and out.tolist() == [True, False]


# large logits ----------------------------------------------------------------------------------------


def _lse(row) -> mpmath.mpf:
    return mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))


def _log_softmax_ref(rows, dtype):
    return to_dtype([[mpmath.mpf(float(v)) - _lse(r) for v in r] for r in rows], dtype)


LOGITS = {
    "f64": (np.array([[1e15, 1e15], [1e8, 1e8 + 1], [1000.0, -1000.0]]), np.float64),
    "f32": (np.array([[300.0, 300.5, 299.25], [1e8, 1e8, -3.0], [-1000.0, -999.0, -1001.0]], np.float32), np.float32),
}


@pytest.mark.parametrize("which", sorted(LOGITS))
def test_log_softmax_and_cross_entropy_exact_for_large_logits(load_text, which):
    x, dtype = LOGITS[which]
    name = np.dtype(dtype).name
    rows, cols = x.shape
    g = graph(load_text, {"x": f"{{shape: [{rows}, {cols}], dtype: {name}}}", "t": f"{{shape: [{rows}], dtype: int64}}"},
              {"ls": "log_softmax(x)", "ce": "cross_entropy(x, t, reduction='none')", "lse": "logsumexp(x, axis=-1)"},
              ["ls", "ce", "lse"])
    t = np.array([0, 1, 0])
    want = _log_softmax_ref(x, dtype)
    lse = to_dtype([_lse(r) for r in x], dtype)
    for backend in numba_or_skip():
        out = api.run(g, {"x": x, "t": t}, backend=backend)
        assert max_ulp(out["ls"], want) <= 2, (backend, out["ls"], want)
        assert max_ulp(out["ce"], -want[np.arange(rows), t]) <= 2, (backend, out["ce"])
        assert max_ulp(out["lse"], lse) <= 1, (backend, out["lse"], lse)


def test_logsumexp_derivatives_are_exact_for_large_logits(load_text):
    """Both modes weigh by softmax(x), exact to an ulp; exp(x - logsumexp) is off by e^(ulp(1e15)/2)."""
    x = np.array([1e15, 1e15 + 0.125, 1e15 - 0.375, 1e15 + 0.5])
    w = [mpmath.exp(mpmath.mpf(float(v)) - _lse(x)) for v in x]
    want = to_dtype(w, np.float64)
    for attrs in ("", ", axis=0", ", axis=[0]"):
        g = graph(load_text, {"x": "[4]"}, {"L": f"logsumexp(x{attrs})"}, ["L"], "L")
        _, grads = api.value_and_grad(g, {"x": x}, wrt=["x"])
        assert max_ulp(grads["x"], want) <= 4, (attrs, grads["x"], want)
        _, fwd = api.forward_mode_grad(g, {"x": x}, wrt=["x"])
        assert max_ulp(fwd["x"], want) <= 4, (attrs, fwd["x"], want)
    g2 = graph(load_text, {"x": "[2, 2]"}, {"L": "sum(logsumexp(x, axis=[0, 1]))"}, ["L"], "L")
    _, grads = api.value_and_grad(g2, {"x": x.reshape(2, 2)}, wrt=["x"])
    assert max_ulp(grads["x"].ravel(), want) <= 4


# dtypes of gradients, pow ------------------------------------------------------------------------------


def test_gradient_of_a_float32_input_is_float32(load_text):
    g = graph(load_text, {"x": "{shape: [3], dtype: float32}", "y": "[3]"}, {"L": "sum(x * y)"}, ["L"], "L")
    y = np.array([0.1, 0.2, 1 / 3])
    _, grads = api.value_and_grad(g, {"x": np.ones(3, np.float32), "y": y}, wrt=["x"])
    assert grads["x"].dtype == np.float32
    np.testing.assert_array_equal(grads["x"], y.astype(np.float32))  # rounded once, to nearest


def test_pow_gradients_where_the_derivative_exists(load_text):
    g = graph(load_text, {"x": "[4]", "y": "[4]"}, {"L": "sum(x ** y)"}, ["L"], "L")
    x, y = np.array([0.0, 0.0, 2.0, 0.0]), np.array([0.0, 2.5, 1.0, 1.0])
    _, grads = api.value_and_grad(g, {"x": x, "y": y}, wrt=["x", "y"])
    # d/dx x^0 = 0 (also at 0); d/dx x^2.5 = 2.5 x^1.5 = 0 at 0; d/dx x = 1
    np.testing.assert_array_equal(grads["x"], [0.0, 0.0, 1.0, 1.0])
    # d/dy 0^y = 0 for y > 0; d/dy 2^1 = 2 log 2; at (0, 0) NaN-free too (JAX gives 0)
    np.testing.assert_array_equal(grads["y"], [0.0, 0.0, float(2 * mpmath.log(2)), 0.0])


def test_pow_at_minus_inf_follows_ieee(load_text):
    """C/IEEE pow: (-inf)^y is +inf for y > 0 not an odd integer, -inf for odd, +0 for y < 0."""
    g = graph(load_text, {"x": "[5]", "y": "[5]"}, {"p": "x ** y", "h": "x ** 0.5"}, ["p", "h"])
    x = np.full(5, -np.inf)
    y = np.array([0.5, 3.0, 2.0, -0.5, -3.0])
    for backend in numba_or_skip():
        out = api.run(g, {"x": x, "y": y}, backend=backend)
        np.testing.assert_array_equal(out["p"], [np.inf, -np.inf, np.inf, 0.0, -0.0], err_msg=backend)
        assert np.signbit(out["p"][4]) and not np.signbit(out["p"][3])
        np.testing.assert_array_equal(out["h"], np.full(5, np.inf), err_msg=backend)


# empty axes, sigmoid tails, numba primitives ----------------------------------------------------------


def test_softmax_family_over_an_empty_axis(load_text):
    g = graph(load_text, {"x": "[2, n]"}, {"s": "softmax(x)", "ls": "log_softmax(x)", "l": "logsumexp(x, axis=1)"},
              ["s", "ls", "l"])
    for backend in numba_or_skip():
        out = api.run(g, {"x": np.zeros((2, 0))}, backend=backend)
        assert out["s"].shape == (2, 0) and out["ls"].shape == (2, 0)
        np.testing.assert_array_equal(out["l"], [-np.inf, -np.inf])  # log of an empty sum


def test_sigmoid_subnormal_tail_with_a_nan_elsewhere(load_text):
    g = graph(load_text, {"x": "[3]"}, {"y": "sigmoid(x)"}, ["y"])
    x = np.array([-740.0, np.nan, -720.0])
    want = to_dtype([mpmath.exp(-740) / (1 + mpmath.exp(-740)), mpmath.nan, mpmath.exp(-720)], np.float64)
    out = api.run(g, {"x": x})["y"]
    assert out[0] > 0 and max_ulp(out, want) <= 1, (out, want)


def test_numba_expm1_and_relu_at_the_edges(load_text):
    """expm1 of tiny x is x (exp(x) - 1 cancels to a few digits); relu(NaN) is NaN (the convention)."""
    backends = numba_or_skip()
    g = graph(load_text, {"x": "[6]"}, {"e": "expm1(x)", "r": "relu(x)", "a": "abs(x)"}, ["e", "r", "a"])
    x = np.array([1e-10, -3e-12, 1e-300, 5e-324, np.nan, -0.0])
    want = to_dtype([mpmath.expm1(mpmath.mpf(float(v))) if not np.isnan(v) else mpmath.nan for v in x], np.float64)
    for backend in backends:
        out = api.run(g, {"x": x}, backend=backend)
        assert max_ulp(out["e"], want) <= 1, (backend, out["e"])
        assert np.isnan(out["r"][4]) and np.isnan(out["a"][4]), backend
        np.testing.assert_array_equal(out["r"][:4], [1e-10, 0.0, 1e-300, 5e-324])
