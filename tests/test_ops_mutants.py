"""Op gradients at the places a planted bug hides: hand-computed against the definitions.

take_along_axis along a non-last axis with negative indices (the scatter-add goes through
transposes and index + n), maximum/minimum ties (half the gradient to each side, none to
the loser), and division's gradient with respect to the divisor.
"""

from __future__ import annotations

import numpy as np

import gtool


def _grads(graph, feed: dict, wrt: list[str]) -> dict:
    gr = gtool.gradient(graph, wrt)
    out = gtool.run(gr.graph, feed)
    return {w: out[gr.outputs[w]] for w in wrt}


def test_take_along_axis_gradient_on_axis_0_with_negative_and_repeated_indices(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: [3, 2]
  i: {shape: [4, 2], dtype: int64}
  w: [4, 2]
nodes:
  p: {op: take_along_axis, inputs: [x, i], attrs: {axis: 0}}
  L: sum(p * w)
outputs: [L]
loss: L
""")
    x = np.arange(6.0).reshape(3, 2)
    i = np.array([[0, -1], [-1, 2], [-3, 1], [2, -1]])
    w = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    got = _grads(g, {"x": x, "i": i, "w": w}, ["x", "w"])
    want = np.zeros((3, 2))  # dL/dx[r, c] = sum of w[k, c] over the picks i[k, c] = r (mod 3)
    for k in range(4):
        for c in range(2):
            want[i[k, c] % 3, c] += w[k, c]
    np.testing.assert_array_equal(got["x"], want)  # [[6, 0], [0, 6], [10, 14]]
    np.testing.assert_array_equal(got["w"], np.take_along_axis(x, i, 0))


def test_maximum_and_minimum_split_ties_and_give_the_loser_nothing(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: [4]
  y: [4]
nodes:
  L: sum(maximum(x, y) * 3 + minimum(x, y))
outputs: [L]
loss: L
""")
    x, y = np.array([1.0, 2.0, 5.0, -0.0]), np.array([1.0, 3.0, 4.0, 0.0])
    got = _grads(g, {"x": x, "y": y}, ["x", "y"])
    # per element: tie -> 3/2 + 1/2 each; x < y -> x gets min's 1, y max's 3; x > y -> the reverse
    np.testing.assert_array_equal(got["x"], [2.0, 1.0, 3.0, 2.0])
    np.testing.assert_array_equal(got["y"], [2.0, 3.0, 1.0, 2.0])


def test_division_gradients_are_the_quotient_rule(load_text):
    g = load_text("""
gtool: 1
inputs:
  a: [3]
  b: [3]
nodes:
  L: sum(a / b)
outputs: [L]
loss: L
""")
    a, b = np.array([1.0, -2.0, 3.0]), np.array([2.0, 4.0, -0.5])
    got = _grads(g, {"a": a, "b": b}, ["a", "b"])
    np.testing.assert_allclose(got["a"], [0.5, 0.25, -2.0], rtol=1e-15)  # 1 / b
    np.testing.assert_allclose(got["b"], [-0.25, 0.125, -12.0], rtol=1e-15)  # -a / b^2


def test_take_along_axis_gradient_on_the_middle_axis_of_a_rank_3_tensor(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: [2, 3, 2]
  i: {shape: [2, 2, 2], dtype: int64}
  w: [2, 2, 2]
nodes:
  p: {op: take_along_axis, inputs: [x, i], attrs: {axis: -2}}
  L: sum(p * w)
outputs: [L]
loss: L
""")
    x = np.arange(12.0).reshape(2, 3, 2)
    i = np.array([[[0, -1], [2, 2]], [[-3, 1], [-2, 0]]])
    w = np.arange(1.0, 9.0).reshape(2, 2, 2)
    got = _grads(g, {"x": x, "i": i, "w": w}, ["x"])
    want = np.zeros((2, 3, 2))
    for a, k, c in np.ndindex(2, 2, 2):  # each pick adds its weight back where it was taken from
        want[a, i[a, k, c] % 3, c] += w[a, k, c]
    np.testing.assert_array_equal(got["x"], want)


def test_pow_with_a_constant_exponent_is_c_x_to_the_c_minus_1(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: [3]
nodes:
  L: sum(x ** 3 + x ** 2 + x ** 0.5 + x ** -1)
outputs: [L]
loss: L
""")
    x = np.array([0.25, 1.0, 4.0])
    got = _grads(g, {"x": x}, ["x"])["x"]
    np.testing.assert_allclose(got, 3 * x**2 + 2 * x + 0.5 / np.sqrt(x) - 1 / x**2, rtol=1e-14)
