"""The executor: frees, in-place donation, plan reuse, numerics checks and data errors."""

from __future__ import annotations

import numpy as np
import pytest

import gtool
from gtool import interp
from gtool.cli import main as cli_main
from gtool.errors import GraphError, UsageError

BIG = (64, 128)  # above the executor's in-place threshold, so donation really happens


def cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        cli_main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


CHAIN = """gtool: 1
inputs:
  x: [64, 128]
params:
  W: {shape: [64, 128], init: {normal: {std: 1.0}}}
nodes:
  a: exp(x)
  b: a + 1
  c: b * W
  d: c - a
  v: reshape(d, shape=[128, 64])
  e: sin(v)
  f: transpose(e) * 2
  g: f + d
  out: sum(g)
outputs: [out, g]
"""


def _chain_reference(x, W):
    a = np.exp(x)
    d = (a + 1) * W - a
    return np.sin(d.reshape(128, 64)).T * 2 + d


# frees -------------------------------------------------------------------------------------


def test_intermediates_are_freed_right_after_their_last_use(load_text):
    g = load_text(CHAIN)
    prog = interp.program(g)
    n_tensors = len(prog.tensor_names)
    keep = set(prog.out_slots)
    last = {}
    for k, step in enumerate(prog.steps):
        for s in step.ins:
            last[s] = k
    for k, step in enumerate(prog.steps):
        want = {s for s in step.ins if last[s] == k and s >= n_tensors and s not in keep}
        assert set(step.free) == want, step.node
    freed = [s for step in prog.steps for s in step.free]
    assert len(freed) == len(set(freed))  # each slot freed once
    every = {step.out for step in prog.steps} - keep
    assert set(freed) == every  # every intermediate that is not an output is freed
    for k, step in enumerate(prog.steps):  # and never read after
        later = {s for st in prog.steps[k + 1:] for s in st.ins}
        assert not set(step.free) & later


# in-place donation -------------------------------------------------------------------------


def test_donation_never_mutates_inputs_or_params(load_text):
    g = load_text(CHAIN)
    prog = interp.program(g)
    assert any(step.donor >= 0 for step in prog.steps), "the test graph should exercise in-place steps"
    x = np.random.default_rng(0).normal(size=BIG)
    x_copy = x.copy()
    W = np.full(BIG, 0.5)
    results = [gtool.run(g, {"x": x, "W": W}) for _ in range(3)]
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(W, np.full(BIG, 0.5))  # the fed param too
    for r in results[1:]:  # the first run is the careful one; later ones use the in-place plan
        np.testing.assert_array_equal(r["g"], results[0]["g"])
        assert r["out"] == results[0]["out"]
    np.testing.assert_allclose(results[0]["g"], _chain_reference(x, 0.5), rtol=1e-12)


def test_donation_never_mutates_a_param_value_from_the_file(load_text):
    text = CHAIN.replace("init: {normal: {std: 1.0}}", "value: 0.5").replace("shape: [64, 128], value", "shape: [], value")
    text = text.replace("c: b * W", "c: b * (W + x * 0)")
    g = load_text(text)
    before = g.tensors["W"].value.copy()
    x = np.random.default_rng(1).normal(size=BIG)
    r1, r2, r3 = (gtool.run(g, {"x": x}) for _ in range(3))
    np.testing.assert_array_equal(g.tensors["W"].value, before)
    np.testing.assert_array_equal(r1["g"], r3["g"])
    np.testing.assert_allclose(r1["g"], _chain_reference(x, 0.5), rtol=1e-12)


def test_view_ops_never_donate_and_their_bases_are_not_overwritten(load_text):
    """`r` is a view of `a`; `a + 1` is a's last use but must not write into a's buffer."""
    g = load_text("""gtool: 1
inputs:
  x: [64, 128]
nodes:
  i: identity(x)
  y0: i * 3
  a: exp(x)
  r: reshape(a, shape=[128, 64])
  y: a + 1
  z: r * 2
  s: stop_gradient(y)
  w: s - 1
  out: sum(y0) + sum(y) + sum(z) + sum(w)
outputs: [out, z, y0]
""")
    prog = interp.program(g)
    view_slots = {step.out for step in prog.steps if gtool.ops.REGISTRY[step.op].view}
    view_bases = {s for step in prog.steps if gtool.ops.REGISTRY[step.op].view for s in step.ins}
    for step in prog.steps:
        if step.donor >= 0:
            assert step.ins[step.donor] not in view_slots | view_bases, step.node
    x = np.random.default_rng(2).normal(size=BIG)
    x_copy = x.copy()
    for _ in range(3):
        out = gtool.run(g, {"x": x})
        np.testing.assert_array_equal(x, x_copy)
        np.testing.assert_allclose(out["z"], 2 * np.exp(x).reshape(128, 64), rtol=1e-15)
        np.testing.assert_allclose(out["y0"], 3 * x, rtol=1e-15)
        want = 3 * x.sum() + (np.exp(x) + 1).sum() + 2 * np.exp(x).sum() + np.exp(x).sum()
        assert out["out"] == pytest.approx(want, rel=1e-12)


def test_repeated_runs_reuse_the_compiled_plan(load_text, monkeypatch):
    g = load_text(CHAIN)
    built = []
    original = interp.Program.__init__

    def counting(self, *a, **kw):
        built.append(1)
        original(self, *a, **kw)

    monkeypatch.setattr(interp.Program, "__init__", counting)
    x = np.zeros(BIG)
    for _ in range(3):
        gtool.run(g, {"x": x})
    assert len(built) == 1
    prog = interp.program(g)
    assert g.cache[("program", g.outputs, "numpy")] is prog
    gtool.run(g, {"x": x})
    assert interp.program(g) is prog and len(built) == 1
    gtool.value_and_grad(g, {"x": x}, wrt=["x", "W"], of="out")
    gtool.value_and_grad(g, {"x": x}, wrt=["x", "W"], of="out")
    assert len(built) == 2  # one more plan, for the gradient graph, built once


# numerics and data errors ------------------------------------------------------------------

NAN_GRAPH = """gtool: 1
inputs:
  x: [3]
nodes:
  a: x * 2
  b: log(a)
  c: sqrt(b)
  L: sum(c + sqrt(log(a)))
outputs: [L]
loss: L
"""


def test_check_numerics_names_the_first_nan_node(load_text, tmp_path, capsys):
    g = load_text(NAN_GRAPH)
    x = np.array([-1.0, 1.0, 2.0])
    assert np.isnan(gtool.run(g, {"x": x})["L"])  # without the check: a NaN result, no error
    with pytest.raises(GraphError) as info:
        gtool.run(g, {"x": x}, check_numerics=True)
    d = info.value.diagnostic
    assert (d.code, d.node, d.op, d.line) == ("non-finite", "b", "log", 6)
    assert "NaN" in d.message
    with pytest.raises(GraphError) as info:
        gtool.value_and_grad(g, {"x": x}, check_numerics=True)
    assert info.value.diagnostic.node == "b"
    path = tmp_path / "nan.yaml"
    path.write_text(NAN_GRAPH)
    code, _, err = cli(capsys, "run", path, "--input", "x=[-1, 1, 2]", "--check-numerics")
    assert code == 1
    assert f"{path}:6:" in err and "node 'b' (log)" in err and "[non-finite]" in err
    code, _, err = cli(capsys, "run", path, "--input", "x=[1, 1, 2]", "--check-numerics")
    assert code == 0, err


def test_check_numerics_names_the_owner_of_an_anonymous_node(load_text):
    g = load_text(NAN_GRAPH.replace("  b: log(a)\n  c: sqrt(b)\n", "  b: log(a) * 1\n  c: sqrt(b)\n"))
    with pytest.raises(GraphError) as info:
        gtool.run(g, {"x": [-1.0, 1.0, 2.0]}, check_numerics=True)
    d = info.value.diagnostic
    assert (d.node, d.op, d.line) == ("b", "log", 6)


def test_missing_input_names_it(load_text, tmp_path, capsys):
    g = load_text("gtool: 1\ninputs:\n  xs: [3]\n  ys: []\nnodes:\n  L: sum(xs * ys)\noutputs: [L]\n")
    with pytest.raises(UsageError) as info:
        gtool.run(g, {"xs": [1.0, 2.0, 3.0]})
    assert info.value.code == "missing-input" and "'ys'" in str(info.value) and "'xs'" not in info.value.diagnostic.message
    path = tmp_path / "m.yaml"
    path.write_text("gtool: 1\ninputs:\n  xs: [3]\nnodes:\n  L: sum(xs)\noutputs: [L]\n")
    code, _, err = cli(capsys, "run", path)
    assert code == 2 and "'xs'" in err and "missing-input" in err


def test_wrong_data_shape_names_the_dim(load_text):
    g = load_text("gtool: 1\ninputs:\n  x: [batch, 3]\n  y: [batch]\nnodes:\n  L: sum(x) + sum(y)\noutputs: [L]\n")
    with pytest.raises(UsageError) as info:
        gtool.run(g, {"x": np.zeros((5, 3)), "y": np.zeros(4)})
    assert info.value.code == "bad-input"
    msg = info.value.diagnostic.message
    assert "batch" in msg and "5" in msg and "4" in msg
    with pytest.raises(UsageError) as info:
        gtool.run(g, {"x": np.zeros((5, 4)), "y": np.zeros(5)})
    assert info.value.code == "bad-input" and "axis 1" in info.value.diagnostic.message
    with pytest.raises(UsageError) as info:
        gtool.run(g, {"x": np.zeros(5), "y": np.zeros(5)})
    assert info.value.code == "bad-input" and "rank" in info.value.diagnostic.message


def test_unknown_wrt_suggests_the_nearest_name(load_text, tmp_path, capsys):
    text = "gtool: 1\ninputs:\n  weight: [3]\n  bias: []\nnodes:\n  L: sum(weight) * bias\noutputs: [L]\nloss: L\n"
    g = load_text(text)
    with pytest.raises(UsageError) as info:
        gtool.grad(g, ["wieght"])
    assert info.value.code == "unknown-name" and "did you mean 'weight'" in info.value.diagnostic.hint
    path = tmp_path / "w.yaml"
    path.write_text(text)
    code, _, err = cli(capsys, "grad", path, "--wrt", "bais", "--input", "weight=[1,2,3]", "--input", "bias=2")
    assert code == 2 and "did you mean 'bias'" in err


def test_non_scalar_loss_is_a_usage_error(load_text):
    g = load_text("gtool: 1\ninputs:\n  x: [3]\nnodes:\n  y: x * 2\n  L: sum(y)\noutputs: [y, L]\n")
    with pytest.raises(UsageError) as info:
        gtool.grad(g)  # no `loss:` and the first output is [3]
    assert info.value.code == "non-scalar-loss" and "'y'" in info.value.diagnostic.message
    assert gtool.value_and_grad(g, {"x": [1.0, 2.0, 3.0]}, of="L")[1]["x"].tolist() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("bad", [5, 7, -1])
def test_cross_entropy_target_out_of_range_names_the_node(load_text, bad):
    g = load_text("""gtool: 1
inputs:
  logits: [3, 5]
  t: {shape: [3], dtype: int64}
nodes:
  L: cross_entropy(logits, t)
outputs: [L]
loss: L
""")
    feed = {"logits": np.zeros((3, 5)), "t": [0, bad, 1]}
    for call in (lambda: gtool.run(g, feed), lambda: gtool.value_and_grad(g, feed)):
        with pytest.raises(GraphError) as info:
            call()
        d = info.value.diagnostic
        assert (d.code, d.node, d.op, d.line) == ("bad-target", "L", "cross_entropy", 6)
        assert str(bad) in d.message
    assert gtool.run(g, {**feed, "t": [0, 4, 1]})["L"] == pytest.approx(np.log(5.0))


def test_dims_are_bound_from_the_data(load_text):
    g = load_text("""gtool: 1
inputs:
  x: [batch, 3]
params:
  W: {shape: [3, 2], init: ones}
nodes:
  h: x @ W
  flat: reshape(h, shape=[batch * 2])
  L: sum(flat)
outputs: [h, flat, L]
""")
    for n in (5, 7, 5):
        x = np.arange(n * 3, dtype=float).reshape(n, 3)
        out = gtool.run(g, {"x": x})
        assert out["h"].shape == (n, 2) and out["flat"].shape == (2 * n,)
        np.testing.assert_array_equal(out["h"], x @ np.ones((3, 2)))
        _, d = gtool.value_and_grad(g, {"x": x}, wrt=["W", "x"], of="L")
        np.testing.assert_array_equal(d["W"], np.repeat(x.sum(axis=0)[:, None], 2, axis=1))
        assert d["x"].shape == (n, 3)
