"""gtool.vjp: gradients of a model with no loss, one cotangent per output (as jax.vjp and
torch.autograd.grad with grad_outputs). References: closed forms written with NumPy, and central
differences of <y(p), c> in float64, never gtool's own gradient."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gtool
from gtool.errors import UsageError

GRAPH = """\
gtool: 1
name: two_outputs
inputs:
  x: {shape: [n, 3]}
params:
  W: {shape: [3, 4], init: {normal: {std: 1.0}}}
  b: {shape: [4], init: {normal: {std: 1.0}}}
nodes:
  h: tanh(x @ W + b)
  y: h * h
  m: sum(h, axis=1)
  i: greater(m, 0.0)
outputs: [h, y]
"""

RNG = np.random.default_rng(7)
X = RNG.standard_normal((5, 3))
W = RNG.standard_normal((3, 4))
B = RNG.standard_normal(4)
CH = RNG.standard_normal((5, 4))
CY = RNG.standard_normal((5, 4))


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    path = tmp_path_factory.mktemp("vjp") / "g.yaml"
    path.write_text(GRAPH.replace("outputs: [h, y]", "outputs: [h, y, i]"))
    return gtool.load(path)


def closed_form(x=X, w=W, b=B, ch=CH, cy=CY):
    """h = tanh(xW + b), y = h^2: dL/dh = ch + 2 h cy, dL/da = dL/dh (1 - h^2)."""
    h = np.tanh(x @ w + b)
    ga = (ch + 2 * h * cy) * (1 - h ** 2)
    return h, h * h, {"W": x.T @ ga, "b": ga.sum(0), "x": ga @ w.T}


def test_two_outputs_match_the_closed_form(graph):
    outs, grads = gtool.vjp(graph, {"x": X, "W": W, "b": B}, {"h": CH, "y": CY}, wrt=["W", "b", "x"])
    h, y, want = closed_form()
    assert set(outs) == {"h", "y", "i"}  # every output of the graph, not only the seeded ones
    np.testing.assert_allclose(outs["h"], h, rtol=1e-13)
    np.testing.assert_allclose(outs["y"], y, rtol=1e-13)
    for k in want:
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-12, atol=1e-14)


def test_an_output_without_cotangent_contributes_nothing(graph):
    _, grads = gtool.vjp(graph, {"x": X, "W": W, "b": B}, {"y": CY}, wrt="W")
    _, _, want = closed_form(ch=np.zeros_like(CH))
    np.testing.assert_allclose(grads["W"], want["W"], rtol=1e-12)


def test_against_central_differences(graph):
    """<y(W), c> differentiated numerically: independent of every VJP rule."""
    def inner(w):
        h = np.tanh(X @ w + B)
        return np.sum(h * CH) + np.sum(h * h * CY)

    _, grads = gtool.vjp(graph, {"x": X, "W": W, "b": B}, {"h": CH, "y": CY}, wrt=["W"])
    num = np.zeros_like(W)
    for idx in np.ndindex(*W.shape):
        e = np.zeros_like(W)
        e[idx] = 1e-6
        num[idx] = (inner(W + e) - inner(W - e)) / 2e-6
    np.testing.assert_allclose(grads["W"], num, rtol=1e-7, atol=1e-9)


def test_numba_backend_agrees():
    """The VJP graph is an ordinary graph, so it runs compiled (a small one: numba compiles each)."""
    pytest.importorskip("numba")
    g = gtool.load("graphs/linear_mse.yaml")
    c = np.array([0.25, -3.0])
    _, grads = gtool.vjp(g, cotangents={"y": c}, wrt=["W", "x"], backend="numba")
    np.testing.assert_array_equal(grads["W"], np.outer(c, [1.0, 0.5, -1.0]))
    np.testing.assert_array_equal(grads["x"], np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]]).T @ c)


def test_linear_graph_file_closed_form():
    """graphs/linear_mse.yaml: y = W x + b, so the VJP with c is (c x^T, W^T c, c)."""
    g = gtool.load("graphs/linear_mse.yaml")
    c = np.array([0.25, -3.0])
    _, grads = gtool.vjp(g, cotangents={"y": c}, wrt=["W", "x", "b"])
    w, x = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]]), np.array([1.0, 0.5, -1.0])
    np.testing.assert_array_equal(grads["W"], np.outer(c, x))
    np.testing.assert_array_equal(grads["x"], w.T @ c)
    np.testing.assert_array_equal(grads["b"], c)


def test_a_target_the_outputs_ignore_gets_zeros(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("gtool: 1\ninputs:\n  x: {shape: [2]}\n  z: {shape: [3], dtype: float32}\n"
                    "nodes:\n  y: 3.0 * x\n  w: 2.0 * z\noutputs: [y, w]\n")
    _, grads = gtool.vjp(gtool.load(path), {"x": [1.0, 2.0], "z": np.ones(3, np.float32)},
                         {"y": np.array([1.0, 1.0])}, wrt=["x", "z"])
    np.testing.assert_array_equal(grads["x"], [3.0, 3.0])
    assert grads["z"].dtype == np.float32 and not grads["z"].any()


def test_float32_model_gives_float32_gradients(graph, tmp_path):
    path = tmp_path / "g32.yaml"
    path.write_text(GRAPH.replace("{shape: [n, 3]}", "{shape: [n, 3], dtype: float32}")
                    .replace("init: {normal", "dtype: float32, init: {normal"))
    g = gtool.load(path)
    f32 = {"x": X.astype(np.float32), "W": W.astype(np.float32), "b": B.astype(np.float32)}
    _, grads = gtool.vjp(g, f32, {"h": CH.astype(np.float32)}, wrt=["W"])
    _, _, want = closed_form(X.astype(np.float32), W.astype(np.float32), B.astype(np.float32),
                             CH.astype(np.float32), np.zeros_like(CY))
    assert grads["W"].dtype == np.float32
    np.testing.assert_allclose(grads["W"], want["W"], rtol=2e-5, atol=1e-6)


# errors ------------------------------------------------------------------------------------


def _error(graph, **kw) -> UsageError:
    kw.setdefault("inputs", {"x": X})
    with pytest.raises(UsageError) as info:
        gtool.vjp(graph, **kw)
    return info.value


def test_unknown_output_suggests_the_nearest(graph):
    e = _error(graph, cotangents={"yy": CY})
    assert e.code == "unknown-name" and "'yy'" in str(e) and "did you mean 'y'" in str(e)


def test_cotangent_of_the_wrong_shape_names_the_bound_dims(graph):
    e = _error(graph, cotangents={"y": CY[:4]})
    assert e.code == "shape-mismatch"
    assert "[4, 4]" in str(e) and "[n, 4] = [5, 4]" in str(e)


def test_cotangent_does_not_broadcast(graph):
    """The near miss: (1, 4) would broadcast against y, but a cotangent has exactly y's shape."""
    e = _error(graph, cotangents={"y": CY[:1]})
    assert e.code == "shape-mismatch"
    e = _error(graph, cotangents={"y": CY.reshape(5, 4, 1)})
    assert e.code == "shape-mismatch"


def test_cotangent_of_the_wrong_dtype(graph):
    e = _error(graph, cotangents={"y": CY.astype(np.float32)})
    assert e.code == "dtype-mismatch" and "float32" in str(e) and "astype('float64')" in str(e)
    e = _error(graph, cotangents={"y": CY > 0})
    assert e.code == "dtype-mismatch"
    e = _error(graph, cotangents={"y": [[True] * 4] * 5})
    assert e.code == "dtype-mismatch"


def test_plain_lists_take_the_output_dtype(graph):
    _, grads = gtool.vjp(graph, {"x": X, "W": W, "b": B}, {"y": CY.tolist()}, wrt=["b"])
    _, _, want = closed_form(ch=np.zeros_like(CH))
    np.testing.assert_allclose(grads["b"], want["b"], rtol=1e-12)


def test_cotangent_for_a_bool_output(graph):
    e = _error(graph, cotangents={"i": np.ones(5)})
    assert e.code == "dtype-mismatch" and "'i'" in str(e) and "bool" in str(e)


def test_wrt_must_be_float_and_known(graph):
    assert _error(graph, cotangents={"y": CY}, wrt=["i"]).code == "dtype-mismatch"
    e = _error(graph, cotangents={"y": CY}, wrt=["WW"])
    assert e.code == "unknown-name" and "did you mean 'W'" in str(e)


def test_missing_cotangents(graph):
    assert _error(graph, cotangents=None).code == "usage"
    assert _error(graph, cotangents={}).code == "usage"


def test_dot_product_with_forward_mode(graph):
    """<c, J t> by forward mode (the JVP rules) equals <J^T c, t> by vjp (the VJP rules)."""
    rng = np.random.default_rng(11)
    tw, tx = rng.standard_normal(W.shape), rng.standard_normal(X.shape)
    tg = gtool.jvp(graph, ["W", "x"], ["h", "y"])
    out = gtool.run(tg, {"x": X, "W": W, "b": B, "__tan_W": tw, "__tan_x": tx})
    forward = np.sum(CH * out["__tan_h"]) + np.sum(CY * out["__tan_y"])
    _, grads = gtool.vjp(graph, {"x": X, "W": W, "b": B}, {"h": CH, "y": CY}, wrt=["W", "x"])
    assert np.sum(grads["W"] * tw) + np.sum(grads["x"] * tx) == pytest.approx(forward, rel=1e-12)


@settings(max_examples=15, deadline=None)
@given(a=st.floats(-4, 4), seed=st.integers(0, 2**16))
def test_vjp_is_linear_in_the_cotangents(graph, a, seed):
    """J^T (a c1 + c2) = a J^T c1 + J^T c2: the cotangent enters once, as the seed."""
    rng = np.random.default_rng(seed)
    c1, c2 = rng.standard_normal((2, 5, 4))
    data = {"x": X, "W": W, "b": B}
    _, g1 = gtool.vjp(graph, data, {"y": c1}, wrt=["W", "x"])
    _, g2 = gtool.vjp(graph, data, {"y": c2}, wrt=["W", "x"])
    _, g = gtool.vjp(graph, data, {"y": a * c1 + c2}, wrt=["W", "x"])
    for k in ("W", "x"):
        np.testing.assert_allclose(g[k], a * g1[k] + g2[k], rtol=1e-10, atol=1e-12)


def test_an_input_given_a_cotangent_passes_it_through(graph):
    """A seeded value that is also a target gets its cotangent plus what flows back into it."""
    cx = RNG.standard_normal(X.shape)
    _, grads = gtool.vjp(graph, {"x": X, "W": W, "b": B}, {"x": cx, "h": CH}, wrt=["x"])
    _, _, want = closed_form(cy=np.zeros_like(CY))
    np.testing.assert_allclose(grads["x"], cx + want["x"], rtol=1e-12, atol=1e-14)


def test_unknown_wrt_is_named_without_a_command_line_flag(graph):
    # the library has no `--wrt` flag: the message names the argument as the caller wrote it
    e = _error(graph, cotangents={"y": CY}, wrt=["Ww"])
    assert e.code == "unknown-name" and "error: wrt: no value named 'Ww'" in str(e) and "--wrt" not in str(e)
