"""The gradient-graph rules of rewrite/vjp_rules.py: structure (what each removes), values
(mpmath and closed forms, on the edge values, bit for bit against reverse mode's own graph)
and the near misses each must leave alone."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import gtool
from gtool import api
from gtool.rewrite.engine import run_rules
from gtool.rewrite.vjp_rules import AddNeg, MulSelf, NegIntoNumber, NegOutOfMul, ShareSigmoidSlope

EDGES = np.array([-800.0, -745.0, -740.0, -709.9, -37.0, -20.0, -1.0, -1e-300, -5e-324, -0.0, 0.0, 5e-324, 1e-8,
                  0.5, 1.0, 19.1, 36.7, 37.0, 40.0, 709.8, 800.0, np.inf, -np.inf, np.nan])

SIGMOID = "gtool: 1\ninputs: {x: [n], w: [n]}\nnodes:\n  s: sigmoid(x)\n  L: sum(s * w)\noutputs: [L]\nloss: L\n"


def _ops(g):
    return [n.op for n in g.nodes.values()]


def _bits(a):
    """The bytes of the values, NaN's sign and payload set aside (no rule promises those)."""
    a = np.array(a, np.float64)
    a[np.isnan(a)] = np.nan
    return a.tobytes()


def _sigmoid_ref(x):
    if np.isnan(x):
        return np.nan, np.nan
    with mpmath.workdps(50):
        e = mpmath.exp(-abs(mpmath.mpf(x)))
        return float(1 / (1 + mpmath.exp(-mpmath.mpf(x)))), float(e / (1 + e) ** 2)


def test_sigmoid_forward_and_backward_share_the_exponential(load_text):
    g = load_text(SIGMOID)
    raw, bw = api.grad(g, ["x"]), api.backward(g, ["x"])
    assert _ops(raw).count("exp") == 1 and "sigmoid" in _ops(raw)  # the slope's exp, beside the op
    assert "sigmoid" not in _ops(bw) and _ops(bw).count("exp") == 1 and _ops(bw).count("abs") == 1
    w = np.linspace(-2.0, 3.0, EDGES.size)
    loss, grads = gtool.value_and_grad(g, {"x": EDGES, "w": w}, wrt=["x"])
    want = gtool.run(raw, {"x": EDGES, "w": w})
    assert _bits(grads["x"]) == _bits(want["__grad_x"])  # bit for bit reverse mode's own graph
    assert _bits(loss) == _bits(want["L"])
    for k, x in enumerate(EDGES):  # and the math, in both tails (the slope is not s (1 - s) rounded)
        s, ds = _sigmoid_ref(x)
        got = grads["x"][k] / w[k]
        if np.isnan(ds):
            assert np.isnan(got)
        else:
            assert got == pytest.approx(ds, rel=4e-16, abs=2e-323), x  # a few subnormal steps
    s_all = gtool.run(g, {"x": EDGES, "w": w})  # the forward values the expanded graph gave match the op's
    assert _bits(loss) == _bits(s_all["L"])


def test_share_sigmoid_slope_values_on_random_inputs_both_backends(load_text):
    g = load_text(SIGMOID)
    rng = np.random.default_rng(7)
    x, w = rng.normal(scale=30.0, size=1000), rng.normal(size=1000)
    with mpmath.workdps(30):
        ref = np.array([float(mpmath.exp(-abs(mpmath.mpf(v))) / (1 + mpmath.exp(-abs(mpmath.mpf(v)))) ** 2) for v in x])
    for backend in ("numpy", "numba"):
        if backend == "numba":
            pytest.importorskip("numba")
        _, grads = gtool.value_and_grad(g, {"x": x, "w": w}, wrt=["x"], backend=backend)
        np.testing.assert_allclose(grads["x"], ref * w, rtol=2e-15, atol=0)


def test_share_sigmoid_slope_near_misses(load_text):
    # no gradient flows through the sigmoid (w only): no slope to share, the op stays
    g = load_text(SIGMOID)
    assert "sigmoid" in _ops(api.backward(g, ["w"]))
    # the slope of another tensor's sigmoid is not this one's
    text = ("gtool: 1\ninputs: {x: [3], y: [3]}\nnodes:\n  a: sigmoid(x)\n  e: exp(-abs(y))\n  L: sum(a + e)\n"
            "outputs: [L]\nloss: L\n")
    out = run_rules(load_text(text), [ShareSigmoidSlope()]).graph
    assert "sigmoid" in _ops(out)
    # an int input: the op converts it first; left alone
    text = ("gtool: 1\ninputs: {k: {shape: [3], dtype: int64}}\nnodes:\n  a: sigmoid(k)\n  e: exp(-abs(k))\n"
            "  L: sum(a + e)\noutputs: [L]\n")
    out = run_rules(load_text(text), [ShareSigmoidSlope()]).graph
    assert "sigmoid" in _ops(out)


def _rules(load_text, text, rules):
    return run_rules(load_text(text), rules).graph


def test_mul_self_is_square_bit_for_bit(load_text):
    g = _rules(load_text, "gtool: 1\ninputs: {x: [n], y: [n], k: {shape: [n], dtype: int64}}\nnodes:\n"
               "  a: x * x\n  b: x * y\n  c: k * k\noutputs: [a, b, c]\n", [MulSelf()])
    assert g.nodes["a"].op == "square"
    assert g.nodes["b"].op == "mul" and g.nodes["c"].op == "mul"  # near misses: two values, ints
    with np.errstate(all="ignore"):
        want = EDGES * EDGES
    out = gtool.run(g, {"x": EDGES, "y": EDGES[::-1].copy(), "k": np.arange(EDGES.size)})
    assert _bits(out["a"]) == _bits(want)


NEGS = """\
gtool: 1
inputs: {a: [n], b: [n], c: [n]}
nodes:
  p: -a * b
  q: 2 * (-c)
  r: b + (-c)
  s: a - (-c)
  t: -b
  u: t * a
  v: t * c
outputs: [p, q, r, s, u, v]
"""


def test_negations_fold_bit_for_bit(load_text):
    g = load_text(NEGS)
    out = run_rules(g, [NegOutOfMul(), NegIntoNumber(), AddNeg()]).graph
    assert out.nodes["p"].op == "neg" and out.nodes[out.nodes["p"].inputs[0]].op == "mul"
    q = out.nodes["q"]
    assert q.op == "mul" and float(out.tensors[q.inputs[0]].value) == -2.0 and q.inputs[1] == "c"
    assert (out.nodes["r"].op, out.nodes["r"].inputs) == ("sub", ("b", "c"))
    assert (out.nodes["s"].op, out.nodes["s"].inputs) == ("add", ("a", "c"))
    # near miss: -b is read twice, moving it would add a negation
    assert out.nodes["u"].inputs[0] == "t" and out.nodes["v"].inputs[0] == "t"
    rng = np.random.default_rng(1)
    d = {"a": rng.permutation(EDGES), "b": rng.permutation(EDGES), "c": rng.permutation(EDGES)}
    d["a"][:3], d["b"][:3], d["c"][:3] = [0.0, -0.0, 3.0], [-0.0, 0.0, 0.0], [0.0, -0.0, -0.0]
    with np.errstate(all="ignore"):
        want = {"p": -d["a"] * d["b"], "q": 2 * -d["c"], "r": d["b"] + -d["c"], "s": d["a"] - -d["c"]}
    got = gtool.run(out, d)
    for k, v in want.items():
        assert _bits(got[k]) == _bits(v), k  # signed zeros included


def test_exp_of_square_backward_has_no_negation(load_text):
    g = load_text("gtool: 1\ninputs: {x: [n]}\nnodes:\n  L: sum(exp(-(x * x)))\noutputs: [L]\nloss: L\n")
    bw = api.backward(g, ["x"])
    assert _ops(bw).count("neg") == 1  # the forward's; the backward's -2 x e^(-x^2) has none
    x = np.array([-3.0, -0.5, -0.0, 0.0, 1e-200, 0.7, 2.0, 30.0, np.inf, np.nan])
    _, grads = gtool.value_and_grad(g, {"x": x}, wrt=["x"])
    with np.errstate(all="ignore"):
        want = -2.0 * x * np.exp(-(x * x))
    np.testing.assert_array_equal(grads["x"], want)


def test_vjp_runs_the_simplified_gradient_graph(load_text):
    """gtool.vjp's gradient graph goes through the same simplification as value_and_grad's."""
    g = load_text("gtool: 1\ninputs: {x: [n], w: [n]}\nnodes:\n  y: sigmoid(x) * w\n  z: exp(-(x * x))\n"
                  "outputs: [y, z]\n")
    x = np.array([-745.0, -30.0, -1.0, -0.0, 0.5, 36.7, 40.0, np.inf, np.nan])
    w, cy, cz = np.linspace(0.5, 2.0, x.size), np.linspace(-1.0, 1.0, x.size), np.full(x.size, 3.0)
    outs, grads = gtool.vjp(g, {"x": x, "w": w}, {"y": cy, "z": cz}, wrt=["x"])
    gr = g.cache[("vjp", ("y", "z"), ("x",))]
    ran = gr.graph.cache["backward"]
    assert "sigmoid" not in _ops(ran) and _ops(ran).count("neg") == 2  # -|x| and the forward's -(x^2)
    with mpmath.workdps(50):
        want = []
        for v, wv, a, b in zip(x, w, cy, cz):
            if np.isnan(v):
                want.append(np.nan)
                continue
            e = mpmath.exp(-abs(mpmath.mpf(v)))
            q = mpmath.mpf(v) ** 2
            want.append(float(a * wv * e / (1 + e) ** 2 + b * (-2 * mpmath.mpf(v)) * mpmath.exp(-q)))
    np.testing.assert_allclose(grads["x"], want, rtol=4e-15, atol=1e-320)
    raw = gtool.run(gr.graph, {"x": x, "w": w, **{gr.cotangents["y"]: cy, gr.cotangents["z"]: cz}})
    assert _bits(grads["x"]) == _bits(raw[gr.outputs["x"]])


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_share_sigmoid_slope_keeps_the_bits_in_narrow_floats(dtype, load_text):
    typed = f"{{shape: [n], dtype: {dtype}}}"
    g = load_text(SIGMOID.replace("{x: [n], w: [n]}", f"{{x: {typed}, w: {typed}}}"))
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(scale=20.0, size=500), [-105.0, -88.0, -17.3, 0.0, -0.0, 16.0, 88.0, 104.0,
                                                          np.inf, -np.inf, np.nan]]).astype(dtype)
    w = rng.normal(size=x.size).astype(dtype)
    assert "sigmoid" not in _ops(api.backward(g, ["x"]))
    loss, grads = gtool.value_and_grad(g, {"x": x, "w": w}, wrt=["x"])
    raw = gtool.run(api.grad(g, ["x"]), {"x": x, "w": w})
    assert grads["x"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(grads["x"], raw["__grad_x"])
    assert _bits(loss) == _bits(gtool.run(g, {"x": x, "w": w})["L"])  # NaN: x holds one


def test_negations_of_small_values_stay(load_text):
    """Each application costs the engine a scan of the graph; a negation of a few numbers
    costs less than a microsecond a run: below BIG elements, the sign rules leave it."""
    from gtool.rewrite.vjp_rules import BIG

    small = NEGS.replace("{a: [n], b: [n], c: [n]}", "{a: [3], b: [3], c: [3]}")
    out = run_rules(load_text(small), [NegOutOfMul(), NegIntoNumber(), AddNeg()]).graph
    assert [out.nodes[k].op for k in ("p", "q", "r", "s")] == ["mul", "mul", "add", "sub"]
    big = NEGS.replace("{a: [n], b: [n], c: [n]}", f"{{a: [{BIG}], b: [{BIG}], c: [{BIG}]}}")
    out = run_rules(load_text(big), [NegOutOfMul(), NegIntoNumber(), AddNeg()]).graph
    assert [out.nodes[k].op for k in ("p", "q", "r", "s")] == ["neg", "mul", "sub", "add"]
