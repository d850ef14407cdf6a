"""tile, pad, cumsum, argmax/argmin, prod, greater_equal/less_equal beyond the registry-wide
tests (tests/test_ops.py, test_records.py): values and gradients against stored PyTorch
results, closed-form gradients (how many times pad copies each entry; prod at zeros, where
prod / x is NaN), symbolic dims through the backward pass, the shorthand, and errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gtool
from gtool.errors import GraphError

DATA = np.load(Path(__file__).parent / "data" / "torch_indexing" / "torch_indexing.npz")

# name -> (gtool op, attrs): the cases of tests/data/torch_indexing/make.py
TORCH_CASES = {
    "pad_reflect": ("pad", {"pads": [0, 0, 1, 2, 0, 0, 2, 1], "mode": "reflect"}),
    "pad_reflect_1d": ("pad", {"pads": [0, 0, 3, 0, 0, 3], "mode": "reflect"}),
    "pad_edge": ("pad", {"pads": [0, 0, 2, 3, 0, 0, 4, 0], "mode": "edge"}),
    "pad_wrap": ("pad", {"pads": [0, 0, 1, 2, 0, 0, 0, 3], "mode": "wrap"}),
    "pad_constant_crop": ("pad", {"pads": [0, 1, -1, 0, -2, 2], "value": 0.5}),
    "tile": ("tile", {"reps": [2, 1, 3]}),
    "cumsum": ("cumsum", {"axis": 1}),
    "cumsum_reverse": ("cumsum", {"axis": 0, "reverse": True}),
    "prod_zeros": ("prod", {"axis": 1}),
    "prod_all": ("prod", {}),
}


def _one_node(op: str, attrs: dict, shape, out_shape) -> str:
    node = json.dumps({"op": op, "inputs": ["x"], "attrs": attrs})
    return (f"gtool: 1\ninputs:\n  x: {list(shape)}\n  R: {list(out_shape)}\nnodes:\n  out: {node}\n"
            "  L: sum(out * R)\noutputs: [out, L]\nloss: L\n")


@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_values_and_gradients_match_pytorch(name, load_text):
    op, attrs = TORCH_CASES[name]
    x, want, r = DATA[f"{name}/in"], DATA[f"{name}/out"], DATA[f"{name}/R"]
    g = load_text(_one_node(op, attrs, x.shape, want.shape))
    out = gtool.run(g, {"x": x, "R": r})["out"]
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-13)
    _, grads = gtool.value_and_grad(g, {"x": x, "R": r}, wrt=["x"])
    np.testing.assert_allclose(grads["x"], DATA[f"{name}/grad"], rtol=1e-12, atol=1e-12, err_msg=name)


def _grad_of_sum(load_text, expr: str, x: np.ndarray, dims: str = "[4]") -> np.ndarray:
    g = load_text(f"gtool: 1\ninputs:\n  x: {dims}\nnodes:\n  y: {expr}\n  L: sum(y)\noutputs: [L]\nloss: L\n")
    return gtool.value_and_grad(g, {"x": x}, wrt=["x"])[1]["x"]


@pytest.mark.parametrize("expr,counts", [
    # [a b c d] -> reflect (2, 2): [c b | a b c d | c b]
    ('pad(x, pads=[2, 2], mode="reflect")', [1, 3, 3, 1]),
    # edge (3, 1): [a a a | a b c d | d]
    ('pad(x, pads=[3, 1], mode="edge")', [4, 1, 1, 2]),
    # wrap (3, 1): [b c d | a b c d | a]
    ('pad(x, pads=[3, 1], mode="wrap")', [2, 2, 2, 2]),
    # wrap (4, 4): two whole extra copies
    ('pad(x, pads=[4, 4], mode="wrap")', [3, 3, 3, 3]),
    # crop one at the front, reflect one at the end: [b c d | c]
    ('pad(x, pads=[-1, 1], mode="reflect")', [0, 1, 2, 1]),
    # constant: the border holds no entry of x
    ('pad(x, pads=[2, 5], value=9.0)', [1, 1, 1, 1]),
    ("tile(x, reps=[3])", [3, 3, 3, 3]),
    ("cumsum(x, axis=0)", [4, 3, 2, 1]),
    ("cumsum(x, axis=0, exclusive=true)", [3, 2, 1, 0]),
    ("cumsum(x, axis=0, exclusive=true, reverse=true)", [0, 1, 2, 3]),
])
def test_gradient_counts_the_copies(expr, counts, load_text):
    """d sum(f(x)) / d x_i is how many outputs hold x_i: counted by hand from the definition."""
    got = _grad_of_sum(load_text, expr, np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(got, counts)


def test_prod_gradient_is_exact_at_zeros(load_text):
    """The product of the other entries: 0 / 0 = NaN for prod / x at a zero (the near miss)."""
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.5, -2.0, 4.0], [0.0, -0.0, 0.0]])
    want = np.array([[0.0, 6.0, 0.0], [0.0, 0.0, 0.0], [-8.0, 6.0, -3.0], [0.0, 0.0, 0.0]])
    got = _grad_of_sum(load_text, "prod(x, axis=1)", x, dims="[4, 3]")
    np.testing.assert_array_equal(got, want)
    with np.errstate(all="ignore"):
        near_miss = np.prod(x, axis=1, keepdims=True) / x
    assert np.isnan(near_miss).any() and not np.isnan(got).any()
    g = load_text("gtool: 1\ninputs:\n  x: [4, 3]\nnodes:\n  y: prod(x, axis=1)\noutputs: [y]\n")
    tangent = gtool.run(gtool.jvp(g, wrt=["x"], of=["y"]), {"x": x, "__tan_x": np.ones_like(x)})["__tan_y"]
    np.testing.assert_array_equal(tangent, want.sum(axis=1))


def test_symbolic_dims_through_the_backward_pass(load_text):
    """The VJPs place strips with zeros of symbolic size (n - 2, ...): one graph for every n."""
    text = """gtool: 1
inputs:
  x: [n, 3]
nodes:
  p: pad(x, pads=[2, 1, 1, 1], mode="reflect")
  w: pad(p, pads=[-1, 2, 0, 0], mode="wrap")
  e: pad(w, pads=[1, 0, 0, 3], mode="edge")
  t: tile(e, reps=[2, 1])
  c: cumsum(t, axis=0, exclusive=true)
  q: prod(c, axis=1)
  L: sum(q * q)
outputs: [L]
loss: L
"""
    g = load_text(text)
    for n in (3, 5):
        x = np.random.default_rng(n).uniform(-0.5, 0.5, (n, 3))
        results = gtool.grad_check(g, {"x": x}, mode="full")
        assert results and all(r.passed for r in results), results


def test_shorthand_and_types(load_text):
    g = load_text("""gtool: 1
inputs:
  x: {shape: [n, 3], dtype: int32}
  f: [n, 3]
nodes:
  c: cumsum(x, axis=1, reverse=true)
  a: argmax(f, axis=0, keepdims=true)
  m: argmin(f)
  p: prod(x)
  b: greater_equal(f, 0.5)
  l: less_equal(x, 2)
outputs: [c, a, m, p, b, l]
""")
    x = np.array([[1, -2, 3], [4, 0, 2]], np.int32)
    f = np.array([[0.5, np.nan, 1.0], [2.0, 2.0, -1.0]])
    out = gtool.run(g, {"x": x, "f": f})
    assert out["c"].dtype == np.int32 and out["c"].tolist() == [[2, 1, 3], [6, 2, 2]]
    assert out["a"].dtype == np.int64 and out["a"].tolist() == [[1, 0, 0]]  # NaN counts as the largest
    assert out["m"].tolist() == [1, 2]  # ... and as the smallest
    assert out["p"].dtype == np.int32 and int(out["p"]) == 0
    assert out["b"].tolist() == [[True, False, True], [True, True, False]]  # NaN >= 0.5 is false
    assert out["l"].tolist() == [[True, True, False], [False, True, True]]


@pytest.mark.parametrize("node,code", [
    ('pad(x, pads=[1, 1, 1], mode="edge")', "bad-attr"),
    ('pad(x, pads=[1, 1, 1, 1], mode="mirror")', "bad-attr"),
    ('pad(x, pads=[0, 3, 0, 3], mode="reflect")', "bad-attr"),  # 3 entries: reflect reaches 2
    ("tile(x, reps=[1, -1])", "bad-attr"),
    ("argmax(x, axis=2)", "bad-axis"),
    ("cumsum(x)", "bad-attr"),  # axis is required
])
def test_bad_attrs_are_diagnosed(node, code, load_text):
    with pytest.raises(GraphError) as e:
        load_text(f"gtool: 1\ninputs:\n  x: [2, 3]\nnodes:\n  y: {node}\noutputs: [y]\n")
    assert e.value.diagnostics[0].code == code


def test_reflect_past_a_symbolic_axis_fails_at_run_time(load_text):
    g = load_text('gtool: 1\ninputs:\n  x: [n]\nnodes:\n  y: pad(x, pads=[2, 0], mode="reflect")\noutputs: [y]\n')
    assert gtool.run(g, {"x": np.arange(3.0)})["y"].tolist() == [2.0, 1.0, 0.0, 1.0, 2.0]
    with pytest.raises(GraphError) as e:
        gtool.run(g, {"x": np.arange(2.0)})  # the near miss: 2 entries reflect only 1
    assert e.value.diagnostics[0].code == "bad-input"


def test_a_pytorch_export_loads_runs_and_differentiates():
    """tests/data/torch_indexing/model.onnx (torch.onnx, float64): Pad reflect and replicate, Tile,
    CumSum, ReduceProd, ArgMax, GreaterOrEqual, LessOrEqual; torch's outputs and gradients."""
    pytest.importorskip("onnx")
    g = gtool.load(Path(__file__).parent / "data" / "torch_indexing" / "model.onnx")
    x = DATA["model/x"]
    out, grads = gtool.vjp(g, {"x": x}, {"p": DATA["model/R"]}, wrt=["x", "w"])
    np.testing.assert_allclose(out["p"], DATA["model/p"], rtol=1e-12)
    for name in ("a", "ge", "le"):
        assert out[name].dtype == DATA[f"model/{name}"].dtype
        np.testing.assert_array_equal(out[name], DATA[f"model/{name}"], err_msg=name)
    np.testing.assert_allclose(grads["x"], DATA["model/grad_x"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["w"], DATA["model/grad_w"], rtol=1e-9, atol=1e-12)
