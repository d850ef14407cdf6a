"""`gtool convert IN OUT`: formats by extension, atomic writes, never over an input, exit codes."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

import gtool  # noqa: E402
from gtool import api  # noqa: E402
from gtool.cli import main  # noqa: E402


def cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_yaml_to_onnx(tmp_path, capsys):
    out = tmp_path / "mlp.onnx"
    status, text, err = cli(capsys, "convert", "graphs/mlp.yaml", out, "--format", "json")
    assert status == 0, err
    assert json.loads(text) == {"input": "graphs/mlp.yaml", "output": str(out), "format": "onnx", "nodes": 6,
                                "opset": 18, "onnx_nodes": len(onnx.load(str(out)).graph.node)}
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["x", "t"]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".gtool-")]  # no temporary file left


def test_yaml_to_json_and_back_is_the_same_graph(tmp_path, capsys):
    status, _, err = cli(capsys, "convert", "graphs/softmax_logprob_stable.yaml", tmp_path / "g.json")
    assert status == 0, err
    status, _, err = cli(capsys, "convert", tmp_path / "g.json", tmp_path / "g.yaml")
    assert status == 0, err
    a, b = gtool.load("graphs/softmax_logprob_stable.yaml"), gtool.load(tmp_path / "g.yaml")
    assert [(n.op, n.inputs, n.attrs) for n in a.nodes.values()] == [(n.op, n.inputs, n.attrs) for n in b.nodes.values()]
    assert api.run(a)["L"] == api.run(b)["L"]


NONFINITE = """
gtool: 1
inputs:
  x: {shape: [3]}
constants:
  lo: -.inf
  hi: .inf
  nan: {value: .nan, dtype: float32}
nodes:
  y: minimum(maximum(x, lo), hi) + 0 * nan
outputs: [y]
"""


def test_nonfinite_scalar_constants_survive_json(tmp_path, capsys):
    # JSON has no inf/NaN: they are written as strings, which the JSON reader must read back
    (tmp_path / "g.yaml").write_text(NONFINITE)
    for src, dst in (("g.yaml", "g.json"), ("g.json", "back.yaml")):
        status, _, err = cli(capsys, "convert", tmp_path / src, tmp_path / dst)
        assert status == 0, err
    a, b = gtool.load(tmp_path / "g.yaml"), gtool.load(tmp_path / "back.yaml")
    for name in ("lo", "hi", "nan"):
        ta, tb = a.tensors[name], b.tensors[name]
        assert ta.type == tb.type
        np.testing.assert_array_equal(ta.value, tb.value)
    x = {"x": np.array([-1.0, 0.0, 2.0])}
    np.testing.assert_array_equal(api.run(b, x)["y"], np.full(3, np.nan))


def test_opset_and_params(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    w = np.full((128, 10), 0.25, np.float32)
    np.savez(tmp_path / "p.npz", W2=w)
    status, _, err = cli(capsys, "convert", "graphs/mlp.yaml", out, "--opset", "17", "--params", tmp_path / "p.npz",
                         "--seed", "4")
    assert status == 0, err
    model = onnx.load(str(out))
    assert model.opset_import[0].version == 17
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(inits["W2"], w)
    np.testing.assert_array_equal(inits["W1"], api.all_values(gtool.load("graphs/mlp.yaml"), random_inputs=True,
                                                              seed=4)["W1"])


@pytest.mark.parametrize("args, code, status", [
    (["graphs/fanout.yaml", "out.txt"], "usage", 2),
    (["graphs/fanout.txt", "out.yaml"], "usage", 2),
    (["missing.yaml", "out.onnx"], "usage", 2),
    (["graphs/fanout.yaml", "out.onnx", "--opset", "12"], "usage", 2),
    (["graphs/fanout.yaml", "out.yaml", "--opset", "18"], "usage", 2),
    (["graphs/fanout.yaml", "out.onnx", "--params", "p.npz"], "bad-input", 2),
])
def test_usage_errors(args, code, status, tmp_path, capsys, monkeypatch):
    shutil.copy("graphs/fanout.yaml", tmp_path / "fanout.yaml")
    (tmp_path / "p.npz").write_bytes(np.savez.__doc__.encode()[:10])  # not a .npz archive
    monkeypatch.chdir(tmp_path)
    got, text, err = cli(capsys, "convert", *[a.replace("graphs/", "") for a in args], "--format", "json")
    assert got == status, err
    assert json.loads(text)["error"]["code"] == code
    assert not os.path.exists("out.onnx") and not os.path.exists("out.yaml")


def test_never_over_the_input(tmp_path, capsys):
    src = tmp_path / "g.yaml"
    shutil.copy("graphs/fanout.yaml", src)
    before = src.read_bytes()
    os.symlink(src, tmp_path / "same.yaml")
    for out in (src, tmp_path / "same.yaml"):
        status, _, err = cli(capsys, "convert", src, out)
        assert status == 2 and "[overwrites-input]" in err and "choose another OUT path" in err
    assert src.read_bytes() == before


def test_params_file_is_not_overwritten(tmp_path, capsys):
    params = tmp_path / "p.onnx"
    params.write_bytes(b"keep")
    status, _, err = cli(capsys, "convert", "graphs/mlp.yaml", params, "--params", params)
    assert status == 2 and "[overwrites-input]" in err
    assert params.read_bytes() == b"keep"


def test_a_graph_that_cannot_be_exported_is_exit_1(tmp_path, capsys):
    src = tmp_path / "g.yaml"
    src.write_text("gtool: 1\ninputs:\n  x: [n]\nparams:\n  w: {shape: [n], init: zeros}\nnodes:\n  y: x * w\n"
                   "outputs: [y]\n")
    status, _, err = cli(capsys, "convert", src, tmp_path / "g.onnx")
    assert status == 1 and "[onnx-export]" in err and "'w'" in err
    assert not (tmp_path / "g.onnx").exists()
    status, _, err = cli(capsys, "convert", src, tmp_path / "g.onnx", "--dim", "n=5")
    assert status == 0, err


def test_onnx_to_yaml_and_onnx_to_onnx(tmp_path, capsys):
    """The way back through the command: the same file as the original, byte for byte; and an
    .onnx re-exported (here at another opset) still runs in onnxruntime with the same outputs."""
    ort = pytest.importorskip("onnxruntime")
    assert cli(capsys, "convert", "graphs/mlp.yaml", tmp_path / "a.onnx")[0] == 0
    status, _, err = cli(capsys, "convert", tmp_path / "a.onnx", tmp_path / "back.yaml")
    assert status == 0, err
    from gtool.format.write import dumps

    assert (tmp_path / "back.yaml").read_text() == dumps(gtool.load("graphs/mlp.yaml"))
    status, _, err = cli(capsys, "convert", tmp_path / "a.onnx", tmp_path / "b.onnx", "--opset", "15")
    assert status == 0, err
    graph = gtool.load("graphs/mlp.yaml")
    feeds = {k: v for k, v in api.all_values(graph, random_inputs=True, seed=2).items() if k in ("x", "t")}
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(tmp_path / "b.onnx"), opts, providers=["CPUExecutionProvider"])
    logits, loss = session.run(None, feeds)
    want = api.run(graph, feeds)
    np.testing.assert_allclose(logits, want["logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loss, want["L"], rtol=1e-5)
