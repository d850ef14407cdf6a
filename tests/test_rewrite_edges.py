"""Common-subexpression elimination keys scalar constants by value, and nothing else.

Two nodes that read different constant tensors holding the same scalar compute the same
thing and are merged; two nodes that read params (or inputs) with equal initial values are
not, since a param's value is data, not part of the graph's meaning.
"""

from __future__ import annotations

import numpy as np

import gtool
from gtool.rewrite import rewrite


def test_cse_merges_equal_scalar_constants_but_not_equal_params(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: [3]
constants:
  c1: {value: 2.0}
  c2: {value: 2.0}
  m: {value: [1.0, 2.0, 3.0]}
params:
  p: {shape: [], value: 1.0}
  q: {shape: [], value: 1.0}
nodes:
  a: exp(x * c1)
  b: exp(x * c2)
  u: x * p
  v: x * q
  w: x * m
  s: a + b
  t: u + v
outputs: [s, t, w]
""")
    r = rewrite(g)
    assert "cse" in {a.rule for a in r.applied}
    # b computes what a computes: one exp is left
    assert sum(n.op == "exp" for n in r.graph.nodes.values()) == 1
    x = np.array([0.5, -1.0, 2.0])
    out = gtool.run(r.graph, {"x": x, "p": np.array(1.0), "q": np.array(3.0)})
    np.testing.assert_allclose(out["s"], 2 * np.exp(2 * x), rtol=1e-15)
    np.testing.assert_array_equal(out["t"], 4 * x)  # x p + x q with p = 1, q = 3: u and v not merged
    np.testing.assert_array_equal(out["w"], x * [1.0, 2.0, 3.0])


def test_log_softmax_pick_fires_on_a_rank_1_hand_written_softmax(load_text):
    """log(sum(exp(s) / sum(exp(s)) * onehot)) for one row: the probability of class 1 is
    e^-1000 / (1 + e^-1000 + 1), which underflows to 0 (log: -inf) unless the rule rewrites it
    to log_softmax picked at 1: -1000 - log(2 + e^-1000) = -1000 - log 2."""
    g = load_text("""
gtool: 1
inputs:
  s: [3]
constants:
  oh: {value: [0.0, 1.0, 0.0]}
nodes:
  e: exp(s)
  p: e / sum(e)
  L: log(sum(p * oh))
outputs: [L]
""")
    r = rewrite(g)
    assert "log_softmax_pick" in {a.rule for a in r.applied}
    out = gtool.run(r.graph, {"s": np.array([0.0, -1000.0, 0.0])})
    assert out["L"] == -1000.0 - np.log(2.0)
