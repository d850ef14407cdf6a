"""Every rewrite rule against graphs it must match and near misses it must not.

A pattern that matches too much rewrites a graph into a different function (`exp(x) + 1` is
not `expm1(x)`), and lint then reports a pattern that is not there. So each rule of the
registry (`RULES` and the `--expand` lowerings) has, here:

- `match`: graphs the rule must rewrite. The rewritten graph must compute the same values
  as the original on seeded random inputs (the registry-wide check that every rewrite
  preserves values), and the rule must fire, so the near misses below are not vacuous.
- `miss`: near misses, one change away from a match (another constant, another axis, the
  other operand order of a non-commutative op, a shift by something that is not the max, a
  constant that is not one-hot). The rule must not fire; a stability rule must not even
  match (lint matches without the engine's type check).

`test_every_rule_has_near_misses` fails for a rule added without both lists.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import gtool
from gtool.rewrite import rewrite
from gtool.rewrite.pattern import GraphView
from gtool.rewrite.rules import EXPANSIONS, RULES, STABILITY

# x, z square so that a reduction over the wrong axis still type-checks (and is wrong)
INPUTS = """inputs:
  x: [4, 4]
  z: [4, 4]
  v: [4]
  s: [3, 4]
  t: {shape: [3], dtype: int64, range: [0, 3]}
"""
CONSTANTS = {  # included when a case names them
    "onehot": "[[0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]]",
    "twohot": "[[0, 1, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]]",  # a row with two ones
    "smooth": "[[0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7], [0.7, 0.1, 0.1, 0.1]]",  # label smoothing
    "colhot": "[[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]]",  # one-hot along axis 0, not the class axis
    "ones4": "[1, 1, 2, 1]",  # not every element is 1
    "zeros4": "[0, 0, 1e-300, 0]",
    "idx": "[[1], [3], [0]]",
}
INT_CONSTANTS = {"idx"}

SHIFT = "stop_gradient(max(x, axis=1, keepdims=true))"

CASES: dict[str, dict[str, list[str]]] = {
    "logsumexp": {
        "match": ["y: log(sum(exp(x), axis=1))", "y: log(sum(exp(x)))",
                  # shifted, but not by x's max: exp still overflows
                  "y: log(sum(exp(x - stop_gradient(min(x, axis=1, keepdims=true))), axis=1))",
                  "y: log(sum(exp(x - stop_gradient(max(z, axis=1, keepdims=true))), axis=1))"],
        "miss": [f"y: log(sum(exp(x - {SHIFT}), axis=1))",  # already max-shifted (what --expand writes)
                 "y: log(sum(exp(x - max(x, axis=1, keepdims=true)), axis=1))",
                 "y: log(mean(exp(x), axis=1))",  # logsumexp - log n: another function
                 "y: log(max(exp(x), axis=1))",
                 "y: log(sum(exp(x), axis=1) + 1)",
                 "y: log(sum(expm1(x), axis=1))",
                 "y: log(sum(2 * exp(x), axis=1))",
                 "y: log1p(sum(exp(x), axis=1))"],
    },
    "softmax": {
        "match": ["y: exp(x) / sum(exp(x), axis=-1, keepdims=true)", "y: exp(x) / sum(exp(x), axis=0)"],
        "miss": ["y: exp(x) / sum(exp(x), axis=1)",  # no keepdims: divides row i by the sum of row j
                 "y: exp(x) / sum(exp(z), axis=-1, keepdims=true)",
                 "y: exp(z) / sum(exp(x), axis=-1, keepdims=true)",
                 "y: exp(x) / (sum(exp(x), axis=-1, keepdims=true) + 1)",
                 "y: exp(x) / sum(exp(x), keepdims=true)",  # over every axis: not one softmax axis
                 f"y: exp(x - {SHIFT}) / sum(exp(x - {SHIFT}), axis=1, keepdims=true)",
                 "y: sum(exp(x), axis=-1, keepdims=true) / exp(x)"],
    },
    "log_softmax": {
        "match": ["y: log(softmax(x))", "y: log(exp(x) / sum(exp(x), axis=-1, keepdims=true))"],
        "miss": ["y: log(softmax(x) + 1e-9)", "y: log(2 * softmax(x))", "y: log(1 - softmax(x))",
                 "y: log(exp(x) / sum(exp(x), axis=1))",  # the wrong-axis division is no softmax
                 "y: log(sigmoid(x))"],
    },
    "log_softmax_lse": {
        "match": ["y: x - logsumexp(x, axis=-1, keepdims=true)", "y: x - logsumexp(x, axis=0)"],
        "miss": ["y: x - logsumexp(z, axis=-1, keepdims=true)",
                 "y: x - logsumexp(x, axis=1)",  # no keepdims: subtracts row j's lse from row i
                 "y: logsumexp(x, axis=-1, keepdims=true) - x",
                 "y: x + logsumexp(x, axis=-1, keepdims=true)",
                 "y: x - logsumexp(x, keepdims=true)"],
    },
    "exp_log_softmax": {
        "match": ["y: exp(log_softmax(x))", "y: exp(log_softmax(x, axis=0))"],
        "miss": ["y: exp(log_softmax(x) + 1)", "y: exp(-log_softmax(x))", "y: expm1(log_softmax(x))",
                 "y: exp(log_softmax(x) * 2)"],
    },
    "softplus": {
        "match": ["y: log(1 + exp(x))", "y: log(exp(x) + 1)", "y: log1p(exp(x))"],
        "miss": ["y: log(2 + exp(x))", "y: log(1 - exp(x))", "y: log(1 + 2 * exp(x))", "y: log(1 + expm1(x))",
                 "y: log1p(exp(x) + 1)", "y: log1p(-exp(x))", "y: log(ones4 + exp(x))"],
    },
    "log1p": {
        "match": ["y: log(1 + x)", "y: log(x + 1)", "y: log(1 + x * x)"],
        "miss": ["y: log(2 + x)", "y: log(1 - x)", "y: log(x - 1)", "y: log(1.0000001 + x)", "y: log(x + x)",
                 "y: log(1 * x)", "y: log(ones4 + x)", "y: log1p(1 + x)"],
    },
    "expm1": {
        "match": ["y: exp(x) - 1", "y: exp(x) + -1", "y: -1 + exp(x)"],
        "miss": ["y: exp(x) + 1", "y: exp(x) - 2", "y: 1 - exp(x)", "y: exp(x) - -1", "y: exp(x) - x",
                 "y: exp(x) - ones4", "y: exp(x) * 1", "y: expm1(x) - 1", "y: exp(x - 1)"],
    },
    "log_sigmoid": {
        "match": ["y: log(sigmoid(x))"],
        "miss": ["y: log(1 + sigmoid(x))", "y: log(2 * sigmoid(x))", "y: log(tanh(x))", "y: log1p(sigmoid(x))",
                 "y: log(sigmoid(x) + 0)", "y: sigmoid(log(x))"],
    },
    "log1m_sigmoid": {
        "match": ["y: log(1 - sigmoid(x))"],
        "miss": ["y: log(2 - sigmoid(x))", "y: log(sigmoid(x) - 1)", "y: log(1 + sigmoid(x))",
                 "y: log(1 - tanh(x))", "y: log(ones4 - sigmoid(x))", "y: log(1 - sigmoid(x) * 2)"],
    },
    "one_minus_sigmoid": {
        "match": ["y: 1 - sigmoid(x)"],
        "miss": ["y: sigmoid(x) - 1", "y: 2 - sigmoid(x)", "y: 1 - tanh(x)", "y: 1 + sigmoid(x)",
                 "y: ones4 - sigmoid(x)", "y: 1 - sigmoid(x) * 2"],
    },
    "sigmoid": {
        "match": ["y: exp(x) / (1 + exp(x))", "y: 1 / (1 + exp(-x))", "y: exp(x) / (exp(x) + 1)"],
        "miss": ["y: 1 / (1 + exp(x))",  # sigmoid(-x): matching it as sigmoid(x) flips the sign
                 "y: exp(x) / (2 + exp(x))", "y: exp(x) / (1 + exp(z))", "y: exp(z) / (1 + exp(x))",
                 "y: 2 / (1 + exp(-x))", "y: exp(-x) / (1 + exp(x))", "y: (1 + exp(x)) / exp(x)",
                 "y: 1 / (1 - exp(-x))"],
    },
    "log_softmax_pick": {
        "match": ["y: log(sum(softmax(s) * onehot, axis=-1))", "y: log(sum(softmax(s) * one_hot(t, depth=4), axis=-1))",
                  "y: log(take_along_axis(softmax(s), idx, axis=-1))"],
        "miss": ["y: log(sum(softmax(s) * twohot, axis=-1))",  # two ones: a sum of probabilities
                 "y: log(sum(softmax(s) * smooth, axis=-1))",
                 "y: log(sum(softmax(s) * colhot, axis=-1))",
                 "y: log(sum(softmax(s) * onehot, axis=0))",  # summed across rows
                 "y: log(sum(softmax(s, axis=0) * onehot, axis=-1))",  # softmax over the other axis
                 "y: log(sum(softmax(s) * onehot, axis=-1) + 1)",
                 "y: log(sum(sigmoid(s) * onehot, axis=-1))",
                 "y: log(take_along_axis(softmax(s, axis=0), idx, axis=-1))"],
    },
    "cross_entropy": {
        "match": ["y: -sum(onehot * log_softmax(s))", "y: -mean(sum(one_hot(t, depth=4) * log_softmax(s), axis=-1))",
                  "y: -sum(take_along_axis(log_softmax(s), expand_dims(t, axis=-1), axis=-1))",
                  # reduction of the negated pick: one fused op with reduction 'mean', not a per-row one
                  ("y: mean(-take_along_axis(log_softmax(s), expand_dims(t, axis=-1), axis=-1))", "cross_entropy")],
        "miss": ["y: -sum(smooth * log_softmax(s))",  # label smoothing: not one-hot
                 "y: -sum(twohot * log_softmax(s))",
                 "y: sum(onehot * log_softmax(s))",  # no minus: the log-likelihood, not the loss
                 "y: -sum(onehot * log_softmax(s, axis=0))",  # the class axis is not the last
                 "y: -sum(onehot * log_softmax(s), axis=0)",  # summed over rows only
                 "y: -max(onehot * log_softmax(s))",
                 "y: -sum(onehot * log(softmax(s) + 1e-9))",
                 "y: -sum(colhot * log_softmax(s))"],
    },
    "fold": {
        "match": ["y: x + 2 * 3"],
        "miss": ["y: x * 2", "y: exp(x)", "y: broadcast_to(2, shape=[100, 100])"],  # > 4096 elements: kept
    },
    "cse": {
        "match": ["a: exp(x)\n  b: exp(x)\n  y: a + b", "a: sum(x, axis=1)\n  b: sum(x, axis=1)\n  y: a * b"],
        "miss": ["a: exp(x)\n  b: exp(z)\n  y: a + b", "a: sum(x, axis=0)\n  b: sum(x, axis=1)\n  y: a * b",
                 "a: x + 1\n  b: x + 2\n  y: a * b", "a: x - z\n  b: z - x\n  y: a * b",
                 "a: softmax(x, axis=0)\n  b: softmax(x, axis=1)\n  y: a + b"],
    },
    "mul_one": {
        "match": ["y: exp(x * 1)", "y: exp(1 * x)", "y: exp(x / 1)"],
        "miss": ["y: exp(x * 2)", "y: exp(x / 2)", "y: exp(1 / x)", "y: exp(x * 1.0000001)", "y: exp(x * ones4)",
                 "y: exp(x * 0)", "y: exp(v * ones4)"],
    },
    "add_zero": {
        "match": ["y: exp(x + 0)", "y: exp(0 + x)", "y: exp(x - 0)"],
        "miss": ["y: exp(0 - x)",  # -x, not x
                 "y: exp(x + 1e-300)", "y: exp(x * 0)", "y: exp(x + zeros4)", "y: exp(x - 1)"],
    },
    "neg_neg": {
        "match": ["y: exp(-(-x))"],
        "miss": ["y: exp(-x)", "y: exp(-abs(-x))", "y: exp(-(0 - x))", "y: exp(-(x - 0))"],
    },
    "transpose_transpose": {
        "match": ["y: transpose(transpose(s))", "y: transpose(transpose(x, perm=[1, 0]), perm=[1, 0])"],
        "miss": ["y: transpose(s)", "y: transpose(exp(transpose(s)))", "y: transpose(reshape(transpose(s), shape=[3, 4]))"],
    },
    "reshape_reshape": {
        "match": ["y: reshape(reshape(s, shape=[12]), shape=[4, 3])", "y: reshape(reshape(s, shape=[12]), shape=[3, 4])"],
        "miss": ["y: reshape(s, shape=[12])", "y: reshape(transpose(reshape(s, shape=[4, 3])), shape=[12])",
                 "y: reshape(exp(reshape(s, shape=[12])), shape=[4, 3])"],
    },
    "dce": {
        "match": ["tmp: exp(x)\n  y: x + 1"],
        "miss": ["tmp: exp(x)\n  y: tmp + 1", "y: exp(x)"],
    },
    "expand_logsumexp": {
        "match": ["y: logsumexp(x, axis=1)", "y: logsumexp(x, axis=0, keepdims=true)"],
        "miss": ["y: log_softmax(x)", "y: softmax(x)", "y: log(sum(exp(x), axis=1))"],
    },
}


def graph(load_text, nodes: str) -> gtool.Graph:
    """The standard inputs, the constants the text names, the nodes; output y."""
    consts = [k for k in CONSTANTS if re.search(rf"\b{k}\b", nodes)]
    text = "gtool: 1\n" + INPUTS
    if consts:
        text += "constants:\n" + "".join(
            f"  {k}: {{value: {CONSTANTS[k]}, dtype: {'int64' if k in INT_CONSTANTS else 'float64'}}}\n" for k in consts)
    return load_text(text + "nodes:\n  " + nodes + "\noutputs: [y]\n")


RULE_BY_NAME = {r.name: r for r in RULES + EXPANSIONS}


def test_every_rule_has_near_misses():
    """A rule added to the registry without positives and near misses fails here."""
    assert set(CASES) == set(RULE_BY_NAME), set(RULE_BY_NAME) ^ set(CASES)
    for name, case in CASES.items():
        assert case["match"] and len(case["miss"]) >= 2, name


def _params(kind: str):
    """(rule, text, op y must have afterwards or None); a case is a text or (text, op)."""
    return [pytest.param(name, *(text if isinstance(text, tuple) else (text, None)), id=f"{name}-{i}")
            for name, case in CASES.items() for i, text in enumerate(case[kind])]


def _feed(g: gtool.Graph, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    feed = {}
    for name, t in g.tensors.items():
        if t.kind != "input":
            continue
        shape = tuple(d.value for d in t.type.shape)
        feed[name] = rng.integers(0, 4, size=shape) if t.dtype == "int64" else rng.normal(size=shape) * 3
    return feed


@pytest.mark.parametrize(("name", "text", "root_op"), _params("match"))
def test_rule_fires_and_preserves_values(load_text, name, text, root_op):
    g = graph(load_text, text)
    r = rewrite(g, [RULE_BY_NAME[name]])
    assert name in {a.rule for a in r.applied}, text
    assert root_op is None or r.graph.nodes["y"].op == root_op, r.graph.nodes["y"]
    for seed in range(3):
        feed = _feed(g, seed)
        with np.errstate(all="ignore"):
            want, got = gtool.run(g, feed)["y"], gtool.run(r.graph, feed)["y"]
        finite = np.isfinite(want)
        assert np.array_equal(np.isfinite(got), finite), text
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize(("name", "text", "_"), _params("miss"))
def test_rule_does_not_fire_on_a_near_miss(load_text, name, text, _):
    g = graph(load_text, text)
    rule = RULE_BY_NAME[name]
    r = rewrite(g, [rule])
    assert r.applied == [], f"{name} rewrote a near miss: {text}"
    if rule in STABILITY:  # lint matches without the engine: the pattern itself must refuse
        view = GraphView(g)
        hits = [n for n, node in g.nodes.items() if node.op in rule.roots and rule.match(view, node) is not None]
        assert hits == [], f"{name} matches {hits} in {text}"
