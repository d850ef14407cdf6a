"""Blocked elementwise groups in the generated plan (gtool/fuse.py): the same numbers as the
plain steps, bit for bit (the ufuncs are elementwise, so a block of an array gives the block
of the result), the loop only where it applies, and the plain steps when the data does not
allow it (a non-contiguous array)."""

from __future__ import annotations

import numpy as np
import pytest

from gtool import api, fuse, interp

MIN_SIZE = fuse.MIN_SIZE
N = 2 * fuse.BLOCK * 5 + 123  # past MIN_SIZE, and not a multiple of the block

GRAPH = f"""gtool: 1
inputs:
  x: {{shape: [{N}], dtype: DT}}
  y: {{shape: [{N}], dtype: DT}}
nodes:
  a: tanh(x) * sigmoid(y) + exp(-(x * x)) / (1 + abs(y))
  b: softplus(x - y) + sqrt(abs(x)) * cos(y) - sin(x) + log1p(abs(y)) + expm1(-abs(x))
  c: maximum(x, y) - minimum(x, 0.5) + square(y) * 2
  d: log(abs(x) + 1e-3) - neg(y)
  L: sum(a * b + c * d)
outputs: [L, a, c]
loss: L
"""


def _run(load_text, text, data, monkeypatch, fused: bool):
    monkeypatch.setattr(fuse, "MIN_SIZE", MIN_SIZE if fused else 1 << 62)
    g = load_text(text)
    for _ in range(2):  # the second run is the generated plan
        out = api.run(g, data)
        loss, grads = api.value_and_grad(g, data, wrt=["x", "y"])
    sources = [fn.source for key in list(g.cache) if key[0] == "program" for fn in g.cache[key]._fast.values()]
    return out, loss, grads, sources


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_blocked_groups_give_the_plain_steps_numbers_bit_for_bit(load_text, monkeypatch, dtype):
    rng = np.random.default_rng(0)
    data = {"x": (rng.standard_normal(N) * 3).astype(dtype), "y": (rng.standard_normal(N) * 30).astype(dtype)}
    data["x"][:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 800.0]
    text = GRAPH.replace("DT", dtype)
    with np.errstate(all="ignore"):
        plain = _run(load_text, text, data, monkeypatch, fused=False)
        fused = _run(load_text, text, data, monkeypatch, fused=True)
    assert not any("_fusable_inputs" in s for s in plain[3])
    assert any("for _a in range" in s for s in fused[3])  # the forward and the gradient plans
    for name in plain[0]:
        np.testing.assert_array_equal(fused[0][name], plain[0][name])
        assert fused[0][name].dtype == plain[0][name].dtype
    assert fused[1] == plain[1] or (np.isnan(fused[1]) and np.isnan(plain[1]))
    for name in ("x", "y"):
        np.testing.assert_array_equal(fused[2][name], plain[2][name])


def test_a_non_contiguous_input_runs_the_plain_steps(load_text):
    text = ("gtool: 1\ninputs:\n  x: [300, 300]\nnodes:\n  y: exp(-(x * x)) + tanh(x)\n  L: sum(y)\n"
            "outputs: [y, L]\n")
    g = load_text(text)
    x = np.random.default_rng(1).standard_normal((300, 300))
    want = np.exp(-(x * x)) + np.tanh(x)
    for data in (x, np.asfortranarray(x), x, x[:, ::-1][:, ::-1]):
        out = api.run(g, {"x": data})
        np.testing.assert_array_equal(out["y"], want)
    prog = interp.program(g)
    assert any("_fusable_inputs" in fn.source for fn in prog._fast.values())


def test_small_arrays_and_mixed_shapes_are_not_grouped(load_text):
    text = ("gtool: 1\ninputs:\n  x: [100]\n  w: [70000, 1]\n  v: [70000, 3]\nnodes:\n  a: exp(x) * 2 + 1\n"
            "  b: (v * w + v) * 3\n  L: sum(a) + sum(b)\noutputs: [L]\n")
    g = load_text(text)
    rng = np.random.default_rng(2)
    data = {"x": rng.standard_normal(100), "w": rng.standard_normal((70000, 1)), "v": rng.standard_normal((70000, 3))}
    for _ in range(2):
        out = api.run(g, data)
    want = np.sum(np.exp(data["x"]) * 2 + 1) + np.sum((data["v"] * data["w"] + data["v"]) * 3)
    assert out["L"] == want
    prog = interp.program(g)
    source = next(iter(prog._fast.values())).source
    assert "_fusable_inputs" in source and source.count("_fusable_inputs") == 1  # only (b's) last two steps
