"""The gradient graph as it runs (rewrite/backward.py): reverse mode's leftovers simplified.

Structure (what the simplification removes), values (closed forms, on both backends) and
the near misses each rule must leave alone.
"""

from __future__ import annotations

import numpy as np
import pytest

import gtool
from gtool import api
from gtool.cli import main
from gtool.rewrite.backward import simplify_backward
from gtool.rewrite.engine import run_rules
from gtool.rewrite.simplify import (
    BACKWARD,
    AddSelf,
    BroadcastLater,
    BroadcastOperand,
    IdentityNode,
    OuterMatmul,
    PowTwo,
    ScalarMulMul,
)

LINREG = """\
gtool: 1
inputs:
  W: [4, 3]
  b: [4]
  x: [3]
  t: [4]
nodes:
  r: W @ x + b - t
  L: 0.5 * sum(r * r)
outputs: [L]
loss: L
"""


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=4), "x": rng.normal(size=3), "t": rng.normal(size=4)}


def _key(g, node):
    return node.op, node.inputs, repr(sorted(node.attrs.items()))


def test_half_sum_of_squares_backward_is_clean(load_text):
    g = load_text(LINREG)
    raw, bw = api.grad(g, ["W", "b"]), api.backward(g, ["W", "b"])
    for gg, clean in ((raw, False), (bw, True)):
        ops = [n.op for n in gg.nodes.values()]
        keys = [_key(gg, n) for n in gg.nodes.values()]
        has_dup = len(keys) != len(set(keys))  # g * r twice
        scalar_bc = any(n.op == "broadcast_to" for n in gg.nodes.values())
        copies = [n for n in gg.nodes.values() if n.op == "identity" and n.inputs[0] not in g.nodes]
        assert (not has_dup and not scalar_bc and not copies) == clean, (ops, clean)
    # the gradient of b is r itself: one copy of a forward value (an output needs its own name)
    assert [n.inputs for n in bw.nodes.values() if n.op == "identity"] == [("r",)]
    assert api.backward(g, ["W"]).nodes["__grad_W"].op == "mul"  # the outer product, without BLAS
    assert not any(n.op == "identity" for n in api.backward(g, ["W"]).nodes.values())


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_simplified_gradients_match_closed_forms(backend, load_text):
    if backend == "numba":
        pytest.importorskip("numba")
    g = load_text(LINREG)
    d = _data()
    r = d["W"] @ d["x"] + d["b"] - d["t"]
    loss, grads = gtool.value_and_grad(g, d, wrt=["W", "b", "x", "t"], backend=backend)
    assert loss == pytest.approx(0.5 * float(r @ r), rel=1e-14)
    np.testing.assert_allclose(grads["W"], np.outer(r, d["x"]), rtol=1e-14)
    np.testing.assert_allclose(grads["b"], r, rtol=1e-14)
    np.testing.assert_allclose(grads["x"], d["W"].T @ r, rtol=1e-13)
    np.testing.assert_allclose(grads["t"], -r, rtol=1e-14)


def test_emit_graph_writes_the_simplified_backward(tmp_path, capsys, load_text):
    src = tmp_path / "linreg.yaml"
    src.write_text(LINREG)
    out = tmp_path / "bw.yaml"
    with pytest.raises(SystemExit) as exit_:
        main(["grad", str(src), "--wrt", "W,b", "--random-inputs", "--emit-graph", str(out)])
    assert exit_.value.code == 0
    capsys.readouterr()
    emitted = gtool.load(out)
    assert not any(n.op == "broadcast_to" for n in emitted.nodes.values())
    ops = [n.op for n in emitted.nodes.values()]
    assert ops.count("mul") == 2 and ops.count("square") == 1  # 0.5 * sum and the outer product; r * r squared
    d = _data(1)
    got = gtool.run(emitted, d)
    r = d["W"] @ d["x"] + d["b"] - d["t"]
    np.testing.assert_allclose(got["__grad_W"], np.outer(r, d["x"]), rtol=1e-14)


def _rules(load_text, text, rules):
    g = load_text(text)
    return run_rules(g, rules).graph


def test_scalar_mul_mul_folds_exact_products_only(load_text):
    exact = _rules(load_text, "gtool: 1\ninputs: {x: [3]}\nnodes:\n  y: 2 * (0.5 * x)\noutputs: [y]\n", [ScalarMulMul()])
    y = exact.nodes["y"]
    assert y.op == "mul" and float(exact.tensors[y.inputs[0]].value) == 1.0 and y.inputs[1] == "x"
    # 1.01 * 1.01 rounds: folding would change the last bit of some results
    inexact = _rules(load_text, "gtool: 1\ninputs: {x: [3]}\nnodes:\n  y: 1.01 * (1.01 * x)\noutputs: [y]\n", [ScalarMulMul()])
    assert inexact.nodes["y"].inputs[1] != "x"
    x = np.array([1.0, 3.0, 1e308])
    np.testing.assert_array_equal(gtool.run(inexact, {"x": x})["y"], 1.01 * (1.01 * x))


def test_broadcast_operand_needs_the_other_operand_to_give_the_shape(load_text):
    text = ("gtool: 1\ninputs: {s: [], y: [3], z: [1]}\nnodes:\n  a: broadcast_to(s, shape=[3])\n"
            "  p: a * y\n  q: a + z\noutputs: [p, q]\n")
    g = _rules(load_text, text, [BroadcastOperand()])
    assert g.nodes["p"].inputs == ("s", "y")
    assert g.nodes["q"].inputs[0] == "a"  # z is [1]: without the broadcast q would be [1], not [3]
    d = {"s": np.array(2.0), "y": np.array([1.0, 2.0, 3.0]), "z": np.array([0.5])}
    out = gtool.run(g, d)
    np.testing.assert_array_equal(out["p"], [2.0, 4.0, 6.0])
    np.testing.assert_array_equal(out["q"], [2.5, 2.5, 2.5])


def test_broadcast_later_moves_a_broadcast_past_a_number(load_text):
    text = "gtool: 1\ninputs: {s: []}\nnodes:\n  a: broadcast_to(s, shape=[3])\n  p: a * 1.5\noutputs: [p]\n"
    g = _rules(load_text, text, [BroadcastLater()])
    p = g.nodes["p"]
    assert p.op == "broadcast_to" and g.nodes[p.inputs[0]].op == "mul"
    np.testing.assert_array_equal(gtool.run(g, {"s": np.array(2.0)})["p"], [3.0, 3.0, 3.0])


def test_add_self_and_identity(load_text):
    g = _rules(load_text, "gtool: 1\ninputs: {x: [2]}\nnodes:\n  a: exp(x)\n  b: identity(a)\n  y: b + b\n  z: identity(a)\n"
               "outputs: [y, z]\n", [AddSelf(), IdentityNode()])
    assert g.nodes["y"].op == "mul" and g.nodes["y"].inputs[1] == "a"
    assert g.nodes["z"].op == "identity"  # an output keeps its name
    x = np.array([0.3, 700.0])  # exp(700) + exp(700) and 2 * exp(700): both finite, equal
    np.testing.assert_array_equal(gtool.run(g, {"x": x})["y"], np.exp(x) + np.exp(x))


LESSON = {
    "a1": ("gtool: 1\ninputs: {x: [], y: []}\nnodes:\n  L: (x + y) * y\noutputs: [L]\nloss: L\n",
           lambda x, y: {"x": y, "y": x + 2 * y}),
    "a3": ("gtool: 1\ninputs: {x: [], y: []}\nnodes:\n  a: x * y\n  b: a + y\n  L: b ** 2\noutputs: [L]\nloss: L\n",
           lambda x, y: {"x": 2 * (x * y + y) * y, "y": 2 * (x * y + y) * (x + 1)}),
}


@pytest.mark.parametrize("name", sorted(LESSON))
def test_lesson_backward_has_no_seed_multiplications(name, load_text):
    text, closed = LESSON[name]
    g = load_text(text)
    bw = api.backward(g)
    seed = [n for n, t in api.grad(g).tensors.items() if n.startswith("__grad_")]
    assert not any(s in node.inputs for node in bw.nodes.values() for s in seed)
    for x, y in ((2.0, 3.0), (-1.5, 0.25), (0.0, -0.0)):
        _, grads = gtool.value_and_grad(g, {"x": np.array(x), "y": np.array(y)})
        for k, v in closed(x, y).items():
            assert float(grads[k]) == v


def test_simplify_backward_keeps_outputs_and_is_a_fixed_point(load_text):
    g = api.grad(load_text(LINREG))
    once = simplify_backward(g)
    assert once.outputs == g.outputs and once.loss == g.loss
    twice = simplify_backward(once)
    assert list(twice.nodes) == list(once.nodes)
    assert BACKWARD[-1].name == "dce"


def test_pow_two_is_a_multiply_bit_for_bit(load_text):
    g = _rules(load_text, "gtool: 1\ninputs: {x: [9], n: {shape: [2], dtype: int64}}\nnodes:\n  y: x ** 2\n"
               "  z: x ** 3\n  w: x ** 2.5\n  k: n ** 2\noutputs: [y, z, w, k]\n", [PowTwo()])
    assert g.nodes["y"].op == "mul" and g.nodes["y"].inputs == ("x", "x")
    assert [g.nodes[n].op for n in ("z", "w", "k")] == ["pow", "pow", "pow"]  # near misses: other powers, ints
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 1e-160, 1.4e154, -3.3])
    with np.errstate(all="ignore"):
        want = np.power(x, 2)
    out = gtool.run(g, {"x": x, "n": np.array([3, -4])})
    np.testing.assert_array_equal(out["y"], want)
    assert out["y"].tobytes() == want.tobytes()


def test_outer_matmul_is_a_broadcast_multiply(load_text):
    g = _rules(load_text, "gtool: 1\ninputs: {a: [4, 1], b: [1, 3], c: [4, 2], d: [2, 3]}\nnodes:\n"
               "  y: a @ b\n  z: c @ d\noutputs: [y, z]\n", [OuterMatmul()])
    assert g.nodes["y"].op == "mul" and g.nodes["z"].op == "matmul"  # inner size 2: a sum, left alone
    rng = np.random.default_rng(3)
    d = {"a": rng.normal(size=(4, 1)) * 1e200, "b": rng.normal(size=(1, 3)) * 1e200, "c": rng.normal(size=(4, 2)),
         "d": rng.normal(size=(2, 3))}
    d["a"][0, 0], d["b"][0, 1] = np.nan, -0.0
    with np.errstate(all="ignore"):
        want, outer = d["a"] @ d["b"], np.outer(d["a"], d["b"])
    got = gtool.run(g, d)["y"]
    np.testing.assert_array_equal(got, want)  # same values (NaN, inf from overflow, zeros)
    assert got.tobytes() == outer.tobytes()  # and -0.0 where a product is -0.0 (matmul's sum starts at +0.0)
    assert np.signbit(got[1:, 1]).tolist() == (d["a"][1:, 0] > 0).tolist() and not np.signbit(want[1:, 1]).any()
