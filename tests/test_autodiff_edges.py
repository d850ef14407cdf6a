"""Autodiff and GraphBuilder at their edges, against hand-computed gradients.

Each test pins an observable property the rest of the suite leaves free (found by
bench/mutation.py): a float32 target read together with float64 gets a float32 gradient;
same-shape gradients carry no no-op `sum_to`/`broadcast_to`; targets the loss ignores get
typed zeros (reverse and forward mode); `reshape_reshape` keeps a reshape that changes the
shape; a second derivative's target gets the plain name `__grad_<x>`, since the first-order
`__grad_x` is not part of what it differentiates.
"""

from __future__ import annotations

import numpy as np

import gtool
from gtool.rewrite import rewrite


def test_float32_target_used_with_float64_gets_a_float32_gradient(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: {shape: [3], dtype: float32}
params:
  w: {shape: [3], init: zeros}
nodes:
  L: sum(x * w)
outputs: [L]
loss: L
""")
    w = np.array([0.1, 1 / 3, 2.0 ** -30 + 1.0])  # not float32-representable: the gradient rounds once
    gr = gtool.gradient(g, ["x", "w"])
    x = np.array([1.5, -2.0, 0.25], np.float32)
    out = gtool.run(gr.graph, {"x": x, "w": w})
    gx, gw = out[gr.outputs["x"]], out[gr.outputs["w"]]
    assert gx.dtype == np.float32 and gw.dtype == np.float64
    np.testing.assert_array_equal(gx, w.astype(np.float32))  # dL/dx = w, rounded to x's dtype
    np.testing.assert_array_equal(gw, x.astype(np.float64))


def test_same_shapes_need_no_sum_to_but_broadcasting_does(load_text):
    same = load_text("""
gtool: 1
inputs:
  x: [2, 3]
  y: [2, 3]
nodes:
  L: sum(x * y)
outputs: [L]
loss: L
""")
    gg = gtool.grad(same, ["x", "y"])
    assert "sum_to" not in {n.op for n in gg.nodes.values()}
    bcast = load_text("""
gtool: 1
inputs:
  x: [2, 3]
  b: [3]
nodes:
  L: sum(x * b)
outputs: [L]
loss: L
""")
    gr = gtool.gradient(bcast, ["x", "b"])
    assert "sum_to" in {n.op for n in gr.graph.nodes.values()}
    x, b = np.arange(6.0).reshape(2, 3), np.array([2.0, -1.0, 0.5])
    out = gtool.run(gr.graph, {"x": x, "b": b})
    np.testing.assert_array_equal(out[gr.outputs["b"]], x.sum(axis=0))  # [3, 5, 7]
    np.testing.assert_array_equal(out[gr.outputs["x"]], np.broadcast_to(b, (2, 3)))


def test_targets_the_loss_ignores_get_typed_zeros(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: {shape: [2, 3], dtype: float32}
  y: [3]
nodes:
  u: exp(x)
  L: sum(y * y)
outputs: [u, L]
loss: L
""")
    gr = gtool.gradient(g, ["x", "y", "u"])
    x, y = np.ones((2, 3), np.float32), np.array([1.0, -2.0, 3.0])
    out = gtool.run(gr.graph, {"x": x, "y": y})
    for target in ("x", "u"):  # an input and an intermediate the loss never reads
        gz = out[gr.outputs[target]]
        assert gz.dtype == np.float32 and gz.shape == (2, 3) and not gz.any()
    np.testing.assert_array_equal(out[gr.outputs["y"]], 2 * y)
    # forward mode: a tangent along x moves u by exp(x) * t and leaves L alone
    jg = gtool.jvp(g, ["x"], ["u", "L"])
    t = np.full((2, 3), 0.5, np.float32)
    res = gtool.run(jg, {"x": x, "y": y, "__tan_x": t})
    assert res["__tan_L"].shape == () and res["__tan_L"] == 0.0
    np.testing.assert_allclose(res["__tan_u"], np.exp(1.0) * 0.5, rtol=1e-6)


def test_slice_gradient_pads_with_zeros(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: [5]
nodes:
  s: {op: slice, inputs: [x], attrs: {axis: 0, start: 1, stop: 3}}
  L: sum(s * s)
outputs: [L]
loss: L
""")
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    gr = gtool.gradient(g, ["x"])
    np.testing.assert_array_equal(gtool.run(gr.graph, {"x": x})[gr.outputs["x"]], [0.0, 4.0, 6.0, 0.0, 0.0])


def test_reshape_reshape_keeps_a_reshape_that_changes_the_shape(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: [2, 3]
nodes:
  a: {op: reshape, inputs: [x], attrs: {shape: [6]}}
  b: {op: reshape, inputs: [a], attrs: {shape: [3, 2]}}
  c: {op: reshape, inputs: [a], attrs: {shape: [2, 3]}}
outputs: [b, c]
""")
    r = rewrite(g)
    x = np.arange(6.0).reshape(2, 3)
    out = gtool.run(r.graph, {"x": x})
    assert out["b"].shape == (3, 2)
    np.testing.assert_array_equal(out["b"], [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    np.testing.assert_array_equal(out["c"], x)
    assert r.graph.nodes["c"].inputs == ("x",) and r.graph.nodes["c"].op == "identity"  # back to x: no reshape
    # the rule's documented example: reshape(reshape(x, [6]), [3, 2]) = reshape(x, [3, 2])
    assert r.graph.nodes["b"].op == "reshape" and r.graph.nodes["b"].inputs == ("x",)
    assert "a" not in r.graph.nodes


def test_second_derivative_target_gets_the_plain_gradient_name(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: []
  y: []
nodes:
  L: x * x * y
outputs: [L]
loss: L
""")
    first = gtool.gradient(g, ["x", "y"])  # __grad_y = x^2, __grad_x = 2xy
    second = gtool.gradient(first.graph, ["x"], of=first.outputs["y"])  # d/dx x^2 = 2x
    assert second.outputs == {"x": "__grad_x"}
    out = gtool.run(second.graph, {"x": np.array(3.0), "y": np.array(5.0)})
    assert out["__grad_x"] == 6.0


def test_differentiating_a_gradient_output_by_its_own_target_keeps_both_apart(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: []
  y: []
nodes:
  L: x * x * y
outputs: [L]
loss: L
""")
    first = gtool.gradient(g, ["x"])  # __grad_x = 2xy
    second = gtool.gradient(first.graph, ["x", "y"], of=first.outputs["x"])  # 2y and 2x
    assert second.loss == first.outputs["x"] and first.outputs["x"] not in second.outputs.values()
    out = gtool.run(second.graph, {"x": np.array(3.0), "y": np.array(5.0)})
    assert out[second.loss] == 30.0
    assert out[second.outputs["x"]] == 10.0 and out[second.outputs["y"]] == 6.0


def test_forward_mode_zero_tangents_keep_float32_and_concat_pads_them(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: {shape: [2], dtype: float32}
  z: {shape: [3], dtype: float32}
nodes:
  v: z * z
  c: {op: concat, inputs: [x, z], attrs: {axis: 0}}
outputs: [v, c]
""")
    jg = gtool.jvp(g, ["x"])
    x, z = np.array([1.0, 2.0], np.float32), np.array([3.0, 4.0, 5.0], np.float32)
    res = gtool.run(jg, {"x": x, "z": z, "__tan_x": np.array([0.5, -1.0], np.float32)})
    assert res["__tan_v"].dtype == np.float32 and res["__tan_v"].shape == (3,) and not res["__tan_v"].any()
    assert res["__tan_c"].dtype == np.float32
    np.testing.assert_array_equal(res["__tan_c"], [0.5, -1.0, 0.0, 0.0, 0.0])  # z has no tangent: zeros
