"""Autodiff's structure: what the emitted gradient graph contains, and what it must not.

Fan-out sums are explicit `add` nodes named `__grad_<value>`; only requested targets get
gradient nodes; int/bool paths and stop_gradient are pruned; emitted graphs are ordinary,
valid, deterministic files that can be differentiated again; forward mode agrees with
reverse mode; `--dtype float32` gives float32 gradients.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from op_cases import central_diff

import gtool
from gtool.cli import main as cli_main
from gtool.format.write import save_graph
from gtool.interp import at_precision
from gtool.validate import check_file, types_of

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = ROOT / "graphs"
SMALL = ["fanout.yaml", "sum_times_y.yaml", "sin_chain.yaml", "exercise_ab.yaml", "exercise_vw.yaml",
         "relu_layer.yaml", "linear_mse.yaml", "softmax_logprob_naive.yaml", "softmax_logprob_stable.yaml",
         "broadcast_affine.json"]


def load(name: str) -> gtool.Graph:
    return gtool.load(GRAPHS / name)


def cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        cli_main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def backward_nodes(fwd: gtool.Graph, gg: gtool.Graph) -> dict:
    return {n: node for n, node in gg.nodes.items() if n not in fwd.nodes}


# fan-out and targets -----------------------------------------------------------------------


def test_fan_out_is_an_explicit_add_named_grad_value():
    g = load("fanout.yaml")
    gg = gtool.grad(g, ["x", "y"])
    assert gg.nodes["__grad_u"].op == "add" and len(gg.nodes["__grad_u"].inputs) == 2
    assert gg.nodes["__grad_y"].op == "add"  # y is read by u and by z
    assert gg.outputs == ("L", "__grad_x", "__grad_y")
    gr = gtool.gradient(g, ["x", "y"])
    assert gr.graph is gg and gr.outputs == {"x": "__grad_x", "y": "__grad_y"}
    assert sorted(c for c, _ in gr.contributions["u"]) == ["w", "z"]
    assert gr.sums["u"] == "__grad_u" and gr.total["u"] == "__grad_u"


def test_gradient_names_its_outputs_when_the_default_name_is_taken():
    """Differentiating dL/dx again: `__grad_x` is then the loss (the first derivative, 1.25), so
    the second derivative gets another name, and only the explicit mapping finds it."""
    g = load("exercise_ab.yaml")  # dL/dx = 2 y^2 (x + 1): d/dx = 2 y^2 = 0.5, d/dy = 4 y (x + 1) = -5
    gr = gtool.gradient(gtool.grad(g), ["x", "y"], of="__grad_x")
    assert gr.loss == "__grad_x" and gr.outputs["x"] != "__grad_x"
    out = gtool.run(gr.graph, outputs=list(gr.graph.outputs))
    assert float(out["__grad_x"]) == pytest.approx(1.25, rel=1e-15)
    assert float(out[gr.outputs["x"]]) == pytest.approx(0.5, rel=1e-15)
    assert float(out[gr.outputs["y"]]) == pytest.approx(-5.0, rel=1e-15)
    evolved = gr.graph.evolve(doc="copy")  # a fresh cache: nothing the mapping needs lives there
    assert dict(zip(gr.wrt, evolved.outputs[1:])) == gr.outputs


def test_three_way_fan_out_sums_every_contribution(load_text):
    g = load_text("gtool: 1\ninputs:\n  x: []\nnodes:\n  a: sin(x)\n  b: x * x\n  c: exp(x)\n  L: a + b + c\n"
                  "outputs: [L]\nloss: L\n")
    _, d = gtool.value_and_grad(g, {"x": 0.3})
    assert d["x"] == pytest.approx(np.cos(0.3) + 0.6 + np.exp(0.3), rel=1e-14)
    assert gtool.grad(g).nodes["__grad_x"].op == "add"


def _shape_of(graph, name):
    return tuple(d.evaluate({}) for d in types_of(graph)[name].shape)


@pytest.mark.parametrize("wrt, has_x", [(["W"], False), (["W", "x"], True)])
def test_only_requested_targets_get_gradient_nodes(wrt, has_x):
    g = load("relu_layer.yaml")
    gg = gtool.grad(g, wrt)
    bwd = backward_nodes(g, gg)
    assert ("__grad_x" in gg.nodes) == has_x and "__grad_b" not in gg.nodes
    x_shaped = [n for n in bwd if _shape_of(gg, n) == (2,)]
    assert bool(x_shaped) == has_x, x_shaped  # nothing computes a [2]-shaped dL/dx when not asked
    assert sum(node.op == "matmul" for node in bwd.values()) == (2 if has_x else 1)
    lin = load("linear_mse.yaml")
    ops = [node.op for node in backward_nodes(lin, gtool.grad(lin, ["W"])).values()]
    assert "neg" not in ops  # dL/dt = -e is never built when t is not a target


def test_int_bool_and_stop_gradient_paths_are_pruned(load_text):
    g = load_text("""gtool: 1
inputs:
  x: [3]
  t: {shape: [3], dtype: int64}
nodes:
  c: cast(t, dtype='float64')
  m: x > 0
  y: where(m, x, 0)
  s: stop_gradient(x)
  L: sum(y * c + s * x)
outputs: [L]
loss: L
""")
    gg = gtool.grad(g)
    assert gtool.gradient(g).wrt == ("x",)  # t is int: not a default target
    for v in ("c", "m", "s", "t"):
        assert f"__grad_{v}" not in gg.nodes
        assert not any(n.startswith(f"__bwd_{v}_") for n in gg.nodes), v
    assert gg.prune() is gg  # no dead backward nodes left behind
    x, t = np.array([-1.0, 0.5, 2.0]), np.array([3, 4, 5])
    _, d = gtool.value_and_grad(g, {"x": x, "t": t})
    np.testing.assert_allclose(d["x"], np.where(x > 0, t, 0) + x)  # s is a constant: only s * x's x counts
    with pytest.raises(gtool.UsageError) as info:
        gtool.grad(g, ["t"])
    assert info.value.code == "dtype-mismatch"


def test_a_target_the_loss_does_not_depend_on_gets_zero(load_text):
    g = load_text("gtool: 1\ninputs:\n  x: [2]\n  z: [3, 2]\n  w: {shape: [4], dtype: float32}\n"
                  "nodes:\n  L: sum(x * x)\noutputs: [L]\nloss: L\n")
    _, d = gtool.value_and_grad(g, {"x": [1.0, 2.0], "z": np.ones((3, 2)), "w": np.ones(4)}, wrt=["x", "z", "w"])
    np.testing.assert_array_equal(d["x"], [2.0, 4.0])
    assert d["z"].shape == (3, 2) and not d["z"].any() and d["z"].dtype == np.float64
    assert d["w"].shape == (4,) and not d["w"].any() and d["w"].dtype == np.float32


# emitted graphs ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SMALL + ["mlp.yaml"])
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_emitted_gradient_graphs_validate_and_reload(name, suffix, tmp_path):
    g = load(name)
    gg = gtool.grad(g)
    path = tmp_path / f"grad{suffix}"
    save_graph(gg, str(path))
    report = check_file(str(path))
    assert report.valid, [d.format() for d in report.errors]
    assert not report.warnings, [d.format() for d in report.warnings]
    again = gtool.load(path)
    assert list(again.nodes) == list(gg.nodes) and again.outputs == gg.outputs
    kw = {"random_inputs": True, "seed": 4}
    want = gtool.run(gg, **kw)
    got = gtool.run(again, **kw)
    for k in gg.outputs:
        np.testing.assert_array_equal(got[k], want[k])


def test_second_derivatives_through_the_emitted_graph(tmp_path, capsys):
    """grad of the emitted graph `--of __grad_x`: a Hessian row, checked by the closed form
    (sin_chain: dL/dx = y cos(xy)) and by FD of the first-order gradient."""
    path = tmp_path / "sin_grad.yaml"
    code, _, err = cli(capsys, "grad", GRAPHS / "sin_chain.yaml", "--emit-graph", path)
    assert code == 0, err
    code, out, err = cli(capsys, "grad", path, "--of", "__grad_x", "--wrt", "x,y", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    x, y = 0.5, 2.0
    assert doc["loss"] == {"name": "__grad_x", "value": pytest.approx(y * np.cos(x * y), rel=1e-14)}
    hx, hy = doc["gradients"]["x"]["value"], doc["gradients"]["y"]["value"]
    assert hx == pytest.approx(-y * y * np.sin(x * y), rel=1e-13)
    assert hy == pytest.approx(np.cos(x * y) - x * y * np.sin(x * y), rel=1e-13)
    g = load("sin_chain.yaml")
    fd = central_diff(lambda v: float(gtool.value_and_grad(g, v)[1]["x"]), {"x": np.array(x), "y": np.array(y)},
                      ["x", "y"], 1e-6)
    assert (hx, hy) == (pytest.approx(float(fd["x"]), rel=1e-7), pytest.approx(float(fd["y"]), rel=1e-7))


@pytest.mark.parametrize("name", ["exercise_ab.yaml", "fanout.yaml", "exercise_vw.yaml"])
def test_hessian_of_scalar_graphs_matches_fd_of_the_gradient(name, tmp_path):
    g = load(name)
    gg = gtool.grad(g)
    path = tmp_path / "g.yaml"
    save_graph(gg, str(path))
    emitted = gtool.load(path)
    names = list(gtool.gradient(g).wrt)
    rng = np.random.default_rng(5)
    feed = {n: np.array(rng.uniform(-2, 2)) for n in names}
    for a in names:
        _, h = gtool.value_and_grad(emitted, feed, wrt=names, of=f"__grad_{a}")
        fd = central_diff(lambda v, a=a: float(gtool.value_and_grad(g, v)[1][a]), feed, names, 1e-5)
        for b in names:
            assert h[b] == pytest.approx(fd[b], rel=1e-7, abs=1e-8), (a, b)


def test_emitted_files_are_byte_identical_across_runs(tmp_path):
    """Two separate processes (different hash seeds) write the same bytes."""
    outs = []
    for k, seed in enumerate(("1", "2")):
        paths = [tmp_path / f"mlp{k}.yaml", tmp_path / f"fan{k}.json"]
        for src, dst in zip(("mlp.yaml", "fanout.yaml"), paths):
            env = {**os.environ, "PYTHONHASHSEED": seed}
            subprocess.run([sys.executable, "-m", "gtool", "grad", str(GRAPHS / src), "--random-inputs",
                            "--emit-graph", str(dst)], check=True, env=env, cwd=ROOT, capture_output=True)
        outs.append([p.read_bytes() for p in paths])
    assert outs[0] == outs[1]
    assert b"__grad_W1" in outs[0][0] and b"__grad_u" in outs[0][1]


# modes and precision -----------------------------------------------------------------------


@pytest.mark.parametrize("name", SMALL)
def test_forward_mode_equals_reverse_mode(name):
    g = load(name)
    wrt = [n for n, t in g.tensors.items() if t.kind in ("input", "param") and t.dtype.startswith("float")]
    loss_r, rev = gtool.value_and_grad(g, wrt=wrt)
    loss_f, fwd = gtool.forward_mode_grad(g, wrt=wrt)
    assert loss_f == loss_r
    for n in wrt:
        np.testing.assert_allclose(fwd[n], rev[n], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["linear_mse.yaml", "broadcast_affine.json", "softmax_logprob_stable.yaml"])
def test_float32_precision_gives_float32_gradients(name, capsys):
    g = load(name)
    g32 = at_precision(g, "float32")
    loss64, d64 = gtool.value_and_grad(g)
    loss32, d32 = gtool.value_and_grad(g32)
    assert loss32 == pytest.approx(loss64, rel=1e-6)
    for n, v in d32.items():
        assert v.dtype == np.float32, n
        np.testing.assert_allclose(v, d64[n], rtol=1e-5, atol=1e-6)
    types = types_of(gtool.grad(g32)).values()
    assert all(t.dtype == "float32" for t in types if t.dtype.startswith("float") and not t.weak)
    code, out, err = cli(capsys, "grad", GRAPHS / name, "--dtype", "float32", "--format", "json")
    assert code == 0, err
    assert {v["dtype"] for v in json.loads(out)["gradients"].values()} == {"float32"}
