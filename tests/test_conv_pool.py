"""Convolution and pooling beyond the registry-wide tests (tests/test_ops.py, test_records.py):
values and gradients against stored PyTorch results, the max-pool tie rule and its near miss,
symbolic output sizes, the shorthand aliases, errors, and the CNN example graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gtool
from gtool.errors import GraphError

DATA = np.load(Path(__file__).parent / "data" / "torch_conv" / "torch_conv.npz")

# name -> (gtool op, attrs, number of inputs): the same cases as tests/data/torch_conv/make.py
TORCH_CASES = {
    "conv2d_s2_p1_bias": ("conv", {"stride": 2, "padding": 1}, 3),
    "conv2d_dil_groups": ("conv", {"dilation": [2, 1], "groups": 2, "padding": [2, 0]}, 3),
    "conv2d_wide_groups": ("conv", {"padding": 1, "groups": 2}, 3),  # 16 channels a group: per-offset matmuls
    "conv1d_s3": ("conv", {"stride": 3, "padding": 2}, 2),
    "conv3d": ("conv", {"stride": [1, 2, 1], "padding": 1}, 3),
    "conv_transpose2d": ("conv_transpose", {"stride": 2, "padding": 1, "output_padding": 1}, 3),
    "conv_transpose2d_groups_dil": ("conv_transpose", {"groups": 2, "dilation": 2, "stride": [1, 3]}, 2),
    "max_pool2d_ties": ("max_pool", {"kernel": 3, "stride": 2, "padding": 1}, 1),
    "max_pool2d_ceil_dil": ("max_pool", {"kernel": 2, "stride": 2, "dilation": 2, "ceil_mode": True}, 1),
    "max_pool1d_ties": ("max_pool", {"kernel": 4, "stride": 1}, 1),
    "avg_pool2d_incl": ("avg_pool", {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                                     "count_include_pad": True}, 1),
    "avg_pool2d_excl": ("avg_pool", {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, 1),
}


def _one_node(op: str, attrs: dict, shapes, out_shape) -> str:
    import json

    lines = ["gtool: 1", "inputs:"] + [f"  a{k}: {list(s)}" for k, s in enumerate(shapes)]
    lines += [f"  R: {list(out_shape)}", "nodes:",
              f"  out: {json.dumps({'op': op, 'inputs': [f'a{k}' for k in range(len(shapes))], 'attrs': attrs})}",
              "  L: sum(out * R)", "outputs: [out, L]", "loss: L"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_values_and_gradients_match_pytorch(name, load_text):
    op, attrs, n = TORCH_CASES[name]
    ins = [DATA[f"{name}/in{k}"] for k in range(n)]
    want, r = DATA[f"{name}/out"], DATA[f"{name}/R"]
    g = load_text(_one_node(op, attrs, [a.shape for a in ins], want.shape))
    feed = {**{f"a{k}": a for k, a in enumerate(ins)}, "R": r}
    out = gtool.run(g, feed)["out"]
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    _, grads = gtool.value_and_grad(g, feed, wrt=[f"a{k}" for k in range(n)])
    for k in range(n):
        np.testing.assert_allclose(grads[f"a{k}"], DATA[f"{name}/grad{k}"], rtol=1e-12, atol=1e-12,
                                   err_msg=f"{name}: gradient of input {k}")


POOL_1D = """gtool: 1
inputs:
  x: [1, 1, 4]
  g: [1, 1, 3]
nodes:
  y: max_pool1d(x, kernel=2, stride=1)
  L: sum(y * g)
outputs: [y, L]
loss: L
"""


def test_max_pool_gradient_goes_to_the_first_maximum(load_text):
    """Windows [1, 3], [3, 3], [3, 2]: the tied middle window sends its gradient to the first 3."""
    g = load_text(POOL_1D)
    gv = np.array([[[1.0, 10.0, 100.0]]])
    _, d = gtool.value_and_grad(g, {"x": np.array([[[1.0, 3.0, 3.0, 2.0]]]), "g": gv}, wrt=["x"])
    np.testing.assert_array_equal(d["x"], [[[0.0, 11.0, 100.0, 0.0]]])
    # the near miss: the second 3 one ulp larger is the middle window's maximum
    x = np.array([[[1.0, 3.0, np.nextafter(3.0, 4.0), 2.0]]])
    _, d = gtool.value_and_grad(g, {"x": x, "g": gv}, wrt=["x"])
    np.testing.assert_array_equal(d["x"], [[[0.0, 1.0, 110.0, 0.0]]])


def test_max_pool_nan_wins_and_takes_the_gradient(load_text):
    g = load_text(POOL_1D)
    x = np.array([[[1.0, np.nan, 3.0, -np.inf]]])
    out = gtool.run(g, {"x": x, "g": np.ones((1, 1, 3))})["y"]
    assert np.isnan(out[0, 0, :2]).all() and out[0, 0, 2] == 3.0
    _, d = gtool.value_and_grad(g, {"x": x, "g": np.array([[[1.0, 10.0, 100.0]]])}, wrt=["x"])
    np.testing.assert_array_equal(d["x"], [[[0.0, 11.0, 100.0, 0.0]]])


SYMBOLIC = """gtool: 1
inputs:
  x: [n, 3, h, w]
params:
  W: {shape: [8, 3, 3, 3], init: {normal: {std: 0.1}}}
nodes:
  y: conv2d(x, W, stride=2, padding=1)
  p: max_pool2d(y, kernel=2, ceil_mode=true)
  a: avg_pool2d(y, kernel=3, stride=1, auto_pad=same_upper)
  f: flatten(p)
outputs: [p, a, f]
"""


def test_output_sizes_stay_symbolic_and_evaluate_per_run(load_text):
    from gtool.validate import types_of

    g = load_text(SYMBOLIC)
    t = types_of(g)
    assert [str(d) for d in t["y"].shape] == ["n", "8", "((h + 1) // 2)", "((w + 1) // 2)"]
    assert [str(d) for d in t["a"].shape] == [str(d) for d in t["y"].shape]
    assert str(t["f"].shape[1]) == str(t["p"].shape[1] * t["p"].shape[2] * t["p"].shape[3])
    for h, w in ((9, 4), (10, 7)):
        out = gtool.run(g, {"x": np.ones((2, 3, h, w))})
        oh, ow = (h + 1) // 2, (w + 1) // 2
        assert out["p"].shape == (2, 8, -(-oh // 2), -(-ow // 2))
        assert out["a"].shape == (2, 8, oh, ow)


ERRORS = [
    ("conv2d(x, W, padding=[1, 2, 3])", "bad-attr", "needs 1, 2 or 4 values"),
    ("conv2d(x, V)", "shape-mismatch", "channels"),
    ("conv2d(x, W, groups=2)", "shape-mismatch", "groups"),
    ("conv2d(x, W, stride=0)", "bad-attr", "stride"),
    ("conv2d(x, K)", "shape-mismatch", "larger than the padded input"),
    ("max_pool2d(x, kernel=2, padding=2)", "bad-attr", "smaller than the window"),
    ("conv_transpose2d(x, T, stride=2, output_padding=2)", "bad-attr", "below the stride"),
    ("conv2d(i, W)", "dtype-mismatch", "float"),
    ("conv2d(v, W)", "shape-mismatch", "rank"),
]


@pytest.mark.parametrize("expr,code,text", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_geometry_is_a_located_error(expr, code, text, load_text):
    src = f"""gtool: 1
inputs:
  x: [2, 3, 5, 5]
  i: {{shape: [2, 3, 5, 5], dtype: int64}}
  v: [3, 5]
  W: [4, 3, 3, 3]
  V: [4, 2, 3, 3]
  K: [4, 3, 7, 7]
  T: [3, 2, 3, 3]
nodes:
  y: {expr}
outputs: [y]
"""
    with pytest.raises(GraphError) as e:
        load_text(src)
    d = e.value.diagnostics[0]
    assert d.code == code and text in d.message and d.line == 11, (d.code, d.message, d.line)


def test_conv_near_miss_sizes_are_accepted(load_text):
    """The window exactly as large as the padded input: one output position (not an error)."""
    g = load_text("gtool: 1\ninputs:\n  x: [1, 3, 5, 5]\n  K: [4, 3, 7, 7]\nnodes:\n"
                  "  y: conv2d(x, K, padding=1)\noutputs: [y]\n")
    x, k = np.ones((1, 3, 5, 5)), np.ones((4, 3, 7, 7))
    np.testing.assert_array_equal(gtool.run(g, {"x": x, "K": k})["y"], np.full((1, 4, 1, 1), 75.0))


def test_cnn_digits_grad_checks_in_both_modes_and_to_second_order():
    """The example CNN: reverse mode against finite differences, forward mode against
    reverse mode, and Hessian-vector products (the VJPs of the gradient ops themselves)."""
    from gtool.gradcheck import grad_check

    g = gtool.load(Path(__file__).resolve().parent.parent / "graphs" / "cnn_digits.yaml")
    for kw in ({}, {"against": "forward"}, {"order": 2, "wrt": ["W1", "W2"], "directions": 2}):
        results = grad_check(g, **kw)
        assert results and all(r.passed for r in results), (kw, [(r.wrt, r.passed) for r in results])


def test_avg_pool_of_huge_values_does_not_overflow(load_text):
    """The window sum of 1e308s overflows; their mean does not (found by tests/test_intervals.py)."""
    g = load_text("gtool: 1\ninputs:\n  x: [1, 1, 4]\nnodes:\n  y: avg_pool1d(x, kernel=2)\noutputs: [y]\n")
    out = gtool.run(g, {"x": np.array([[[1e308, 1.5e308, -1e308, 4.0]]])})["y"]
    np.testing.assert_array_equal(out, [[[1.25e308, (-1e308 + 4.0) / 2]]])
