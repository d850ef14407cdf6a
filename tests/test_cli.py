"""The command line: every way of giving data, every output format, exit codes, plugins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from gtool.cli import main
from gtool.format.source import load_file
from gtool.ops import registry

ROOT = Path(__file__).resolve().parent.parent

GRAPH = """\
gtool: 1
name: data_paths
inputs:
  x: {shape: [n]}
  s: {shape: [], value: 2.0}
params:
  W: {shape: [2, n], init: {normal: {std: 1.0}}}
nodes:
  y: (W @ x) * s
  L: sum(y ** 2)
outputs: [y, L]
loss: L
"""
X = np.array([1.0, -2.0, 0.5])
W = np.array([[0.5, 1.0, -1.0], [2.0, 0.0, 1.5]])


def expected(x=X, w=W, s=2.0):
    y = (w @ x) * s
    return y, float(np.sum(y ** 2)), np.outer(2 * y * s, x), w.T @ (2 * y * s)


def gtool_cli(capsys, *args) -> tuple[int, str, str]:
    """Run the command line in-process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def ok_json(capsys, *args) -> dict:
    status, out, err = gtool_cli(capsys, *args, "--format", "json")
    assert status == 0, out + err
    return json.loads(out)


@pytest.fixture
def graph(tmp_path) -> Path:
    f = tmp_path / "g.yaml"
    f.write_text(GRAPH)
    np.save(tmp_path / "w.npy", W)
    return f


# version, schema, shapes --------------------------------------------------------------------------


def test_python_m_gtool_version():
    r = subprocess.run([sys.executable, "-m", "gtool", "--version"], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 0
    assert r.stdout.startswith("gtool, version ")


def test_schema_command_prints_the_published_schema(capsys):
    status, out, _ = gtool_cli(capsys, "schema")
    assert status == 0
    published = ROOT / "schemas" / "gtool-graph-v1.schema.json"
    assert json.loads(out) == json.loads(published.read_text())
    jsonschema.Draft202012Validator.check_schema(json.loads(out))


def test_packaged_schema_is_byte_identical_to_the_published_one():
    published = (ROOT / "schemas" / "gtool-graph-v1.schema.json").read_bytes()
    packaged = (ROOT / "gtool" / "schema" / "gtool-graph-v1.schema.json").read_bytes()
    assert packaged == published, "copy schemas/gtool-graph-v1.schema.json to gtool/schema/"


def test_bundled_graphs_satisfy_the_schema():
    validator = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "gtool-graph-v1.schema.json").read_text()))
    for path in (ROOT / "graphs").iterdir():
        data, _ = load_file(str(path))  # YAML 1.2 scalars, as editors with the schema read them
        assert not list(validator.iter_errors(data)), path.name


def test_shapes_json_follows_the_spec(capsys):
    doc = ok_json(capsys, "shapes", ROOT / "graphs" / "mlp.yaml")
    assert set(doc) == {"path", "nodes"}
    assert doc["path"].endswith("mlp.yaml")
    rows = {r["name"]: r for r in doc["nodes"]}
    for r in doc["nodes"]:
        assert set(r) == {"name", "op", "inputs", "shape", "dtype", "line"}
    assert rows["logits"] == {"name": "logits", "op": "add", "inputs": ["__logits_1", "b2"],
                              "shape": ["batch", 10], "dtype": "float32", "line": 26}
    assert rows["L"]["shape"] == [] and rows["L"]["op"] == "cross_entropy"
    assert rows["x"]["op"] == "input" and rows["W1"]["op"] == "param"


def test_shapes_text_table(capsys):
    status, out, _ = gtool_cli(capsys, "shapes", ROOT / "graphs" / "mlp.yaml")
    assert status == 0
    header = out.splitlines()[0].split()
    assert header == ["name", "op", "inputs", "shape", "dtype", "line"]
    assert any(line.split()[:2] == ["logits", "add"] and "[batch, 10]" in line for line in out.splitlines())


def test_shapes_with_symbolic_arithmetic(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("gtool: 1\ninputs:\n  a: [b, n]\n  c: [b, 5]\nnodes:\n  z: concat(a, c, axis=1)\n"
                 "  r: reshape(z, shape=[-1])\noutputs: [r]\n")
    rows = {r["name"]: r for r in ok_json(capsys, "shapes", f)["nodes"]}
    assert rows["z"]["shape"] == ["b", "n + 5"]
    assert rows["r"]["shape"] == ["b * n + 5 * b"]


# run: every way of giving data --------------------------------------------------------------------------


def check_run(doc, x=X, w=W, s=2.0):
    y, loss, _, _ = expected(x, w, s)
    assert set(doc) == {"outputs"}
    assert list(doc["outputs"]) == ["y", "L"]
    assert doc["outputs"]["y"]["shape"] == [2] and doc["outputs"]["y"]["dtype"] == "float64"
    np.testing.assert_allclose(doc["outputs"]["y"]["value"], y)
    assert doc["outputs"]["L"] == {"shape": [], "dtype": "float64", "value": pytest.approx(loss)}


def test_run_with_input_flags(graph, capsys):
    doc = ok_json(capsys, "run", graph, "--input", "x=[1, -2, 0.5]", "--input", f"W=@{graph.parent / 'w.npy'}")
    check_run(doc)
    doc = ok_json(capsys, "run", graph, "--input", "x=[1, -2, 0.5]", "--input", f"W=@{graph.parent / 'w.npy'}",
                  "--input", "s=1.5")
    check_run(doc, s=1.5)


@pytest.mark.parametrize("kind", ["npz", "json", "yaml"])
def test_run_with_an_inputs_file(graph, capsys, kind):
    f = graph.parent / f"data.{kind}"
    if kind == "npz":
        np.savez(f, x=X, W=W, s=np.float64(3.0))
    elif kind == "json":
        f.write_text(json.dumps({"x": X.tolist(), "W": W.tolist(), "s": 3.0}))
    else:
        f.write_text(f"x: {X.tolist()}\nW: {W.tolist()}\ns: 3.0\n")
    check_run(ok_json(capsys, "run", graph, "--inputs", f), s=3.0)
    # a flag given beside the file wins
    check_run(ok_json(capsys, "run", graph, "--inputs", f, "--input", "s=1.0"), s=1.0)


def test_inputs_file_with_non_finite_strings(graph, capsys):
    f = graph.parent / "data.json"
    f.write_text(json.dumps({"x": [1.0, "inf", 0.5], "W": W.tolist()}))
    doc = ok_json(capsys, "run", graph, "--inputs", f)
    assert doc["outputs"]["L"]["value"] in ("inf", "nan")


def test_run_with_random_inputs_is_seeded(graph, capsys):
    a = ok_json(capsys, "run", graph, "--random-inputs", "--dim", "n=4", "--seed", "3")
    b = ok_json(capsys, "run", graph, "--random-inputs", "--dim", "n=4", "--seed", "3")
    c = ok_json(capsys, "run", graph, "--random-inputs", "--dim", "n=4", "--seed", "4")
    assert a == b
    assert a != c
    assert a["outputs"]["y"]["shape"] == [2]


def test_params_come_from_init_and_inputs_from_data(graph, capsys):
    """W is drawn from its init (seeded) when not given; n is bound by the data for x."""
    a = ok_json(capsys, "run", graph, "--input", "x=[1, 2, 3, 4, 5]")
    b = ok_json(capsys, "run", graph, "--input", "x=[1, 2, 3, 4, 5]", "--seed", "1")
    assert a["outputs"]["y"]["shape"] == [2] and a != b


def test_run_output_file(graph, capsys):
    out = graph.parent / "out.npz"
    status, _, _ = gtool_cli(capsys, "run", graph, "--input", "x=[1, -2, 0.5]", "--input",
                             f"W=@{graph.parent / 'w.npy'}", "-o", out)
    assert status == 0
    y, loss, _, _ = expected()
    with np.load(out, allow_pickle=False) as z:
        assert sorted(z.files) == ["L", "y"]
        np.testing.assert_allclose(z["y"], y)
        assert float(z["L"]) == pytest.approx(loss)
    status, _, err = gtool_cli(capsys, "run", graph, "--random-inputs", "--dim", "n=2", "-o", graph.parent / "o.txt")
    assert status == 2 and ".npz" in err


def test_run_in_float32(graph, capsys):
    doc = ok_json(capsys, "run", graph, "--input", "x=[1, -2, 0.5]", "--input", f"W=@{graph.parent / 'w.npy'}",
                  "--dtype", "float32")
    assert doc["outputs"]["y"]["dtype"] == "float32" and doc["outputs"]["L"]["dtype"] == "float32"
    np.testing.assert_allclose(doc["outputs"]["y"]["value"], expected()[0], rtol=1e-6)


def test_run_text_output(capsys):
    status, out, _ = gtool_cli(capsys, "run", ROOT / "graphs" / "fanout.yaml")
    assert status == 0
    assert out.splitlines()[0].split() == ["name", "shape", "dtype", "value"]
    assert out.splitlines()[2].split() == ["L", "[]", "float64", "15"]


def test_non_finite_values_are_strings_in_json(tmp_path, capsys):
    f = tmp_path / "nf.yaml"
    f.write_text("gtool: 1\ninputs:\n  x: {shape: [3], value: [0.0, -1.0, 1000.0]}\nnodes:\n  a: log(x)\n"
                 "  b: exp(x)\noutputs: [a, b]\n")
    status, out, _ = gtool_cli(capsys, "run", f, "--format", "json")
    assert status == 0
    doc = json.loads(out)
    assert doc["outputs"]["a"]["value"][:2] == ["-inf", "nan"]
    assert doc["outputs"]["b"]["value"][2] == "inf"
    assert "NaN" not in out and "Infinity" not in out
    status, out, err = gtool_cli(capsys, "run", f, "--check-numerics")
    assert status == 1
    assert "node 'a' (log)" in err and "[non-finite]" in err and f"{f}:5:3" in err


# grad -------------------------------------------------------------------------------------------------------


def test_grad_json_follows_the_spec(graph, capsys):
    args = ["grad", graph, "--input", "x=[1, -2, 0.5]", "--input", f"W=@{graph.parent / 'w.npy'}"]
    doc = ok_json(capsys, *args)
    _, loss, dw, dx = expected()
    assert set(doc) == {"loss", "gradients"}
    assert doc["loss"] == {"name": "L", "value": pytest.approx(loss)}
    assert list(doc["gradients"]) == ["W"]  # params by default
    assert doc["gradients"]["W"]["shape"] == [2, 3] and doc["gradients"]["W"]["dtype"] == "float64"
    np.testing.assert_allclose(doc["gradients"]["W"]["value"], dw)
    doc = ok_json(capsys, *args, "--wrt", "x,W")
    assert list(doc["gradients"]) == ["x", "W"]
    np.testing.assert_allclose(doc["gradients"]["x"]["value"], dx)
    forward = ok_json(capsys, *args, "--wrt", "x,W", "--mode", "forward")
    for k in ("x", "W"):
        np.testing.assert_allclose(forward["gradients"][k]["value"], doc["gradients"][k]["value"], rtol=1e-12)
    assert forward["loss"]["value"] == pytest.approx(doc["loss"]["value"])


def test_grad_output_file_and_float32(graph, capsys):
    out = graph.parent / "g.npz"
    args = ["grad", graph, "--input", "x=[1, -2, 0.5]", "--input", f"W=@{graph.parent / 'w.npy'}"]
    status, _, _ = gtool_cli(capsys, *args, "-o", out)
    assert status == 0
    with np.load(out, allow_pickle=False) as z:
        assert sorted(z.files) == ["L", "grad_W"]
        np.testing.assert_allclose(z["grad_W"], expected()[2])
    doc = ok_json(capsys, *args, "--dtype", "float32")
    assert doc["gradients"]["W"]["dtype"] == "float32"
    np.testing.assert_allclose(doc["gradients"]["W"]["value"], expected()[2], rtol=1e-5)


def test_grad_text_output(capsys):
    status, out, _ = gtool_cli(capsys, "grad", ROOT / "graphs" / "fanout.yaml", "--wrt", "x,y")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "loss L = 15"
    assert lines[3].split() == ["dL/dx", "[]", "float64", "8"]
    assert lines[4].split() == ["dL/dy", "[]", "float64", "11"]


def test_emit_graph_and_second_derivative(tmp_path, capsys):
    out = tmp_path / "fanout_grad.yaml"
    status, _, err = gtool_cli(capsys, "grad", ROOT / "graphs" / "fanout.yaml", "--wrt", "x", "--emit-graph", out)
    assert status == 0 and "written" in err
    status, _, _ = gtool_cli(capsys, "validate", out)
    assert status == 0
    doc = ok_json(capsys, "run", out)
    assert doc["outputs"]["__grad_x"]["value"] == 8.0
    second = ok_json(capsys, "grad", out, "--of", "__grad_x", "--wrt", "x")
    assert second["loss"] == {"name": "__grad_x", "value": 8.0}
    assert second["gradients"]["x"]["value"] == 2.0  # d2L/dx2 = 2 (L = (x + y) y + (x + y)^2)
    # the same through the other format
    out_json = tmp_path / "fanout_grad.json"
    gtool_cli(capsys, "grad", ROOT / "graphs" / "fanout.yaml", "--wrt", "x", "--emit-graph", out_json)
    assert ok_json(capsys, "grad", out_json, "--of", "__grad_x", "--wrt", "x")["gradients"]["x"]["value"] == 2.0


def test_emit_graph_refuses_to_overwrite_the_input(tmp_path, capsys):
    f = tmp_path / "fanout.yaml"
    text = (ROOT / "graphs" / "fanout.yaml").read_text()
    f.write_text(text)
    status, _, err = gtool_cli(capsys, "grad", f, "--emit-graph", f)
    assert status == 2 and "refusing to overwrite" in err
    assert f.read_text() == text
    status, _, err = gtool_cli(capsys, "grad", f, "--emit-graph", tmp_path / "g.txt")
    assert status == 2


# exit codes -------------------------------------------------------------------------------------------------


def test_exit_codes(graph, capsys):
    status, _, err = gtool_cli(capsys, "run", graph.parent / "missing.yaml")
    assert status == 2 and "no such file" in err
    status, _, err = gtool_cli(capsys, "run", graph)
    assert status == 2 and "'x'" in err and "missing-input" in err
    status, _, err = gtool_cli(capsys, "run", graph, "--bogus")
    assert status == 2 and "--bogus" in err
    status, _, err = gtool_cli(capsys, "run", graph, "--format", "xml")
    assert status == 2
    status, _, err = gtool_cli(capsys, "run", ROOT / "tests" / "data" / "invalid" / "cycle.yaml")
    assert status == 1 and "[cycle]" in err
    status, _, err = gtool_cli(capsys, "grad", graph, "--input", "x=[1,2,3]", "--wrt", "nope")
    assert status == 2
    status, _, err = gtool_cli(capsys, "run", graph, "--input", "x=[[1, 2], [3]]")
    assert status == 2 and "x" in err
    status, _, err = gtool_cli(capsys, "run", graph, "--input", "x=[1, 2", "--input", "W=@nope.npy")
    assert status == 2
    status, _, err = gtool_cli(capsys, "run", graph, "--input", "x=[1, 2, 3]", "--input", "W=[[1, 2], [3, 4]]")
    assert status == 2 and "W" in err
    status, _, err = gtool_cli(capsys, "run", graph, "--inputs", graph.parent / "none.npz")
    assert status == 2
    status, _, err = gtool_cli(capsys, "run", graph, "--random-inputs", "--dim", "n=x")
    assert status == 2
    status, _, err = gtool_cli(capsys, "validate")
    assert status == 2
    for out in (err,):
        assert "Traceback" not in out


def test_errors_with_json_format_keep_stdout_one_document(graph, capsys):
    status, out, err = gtool_cli(capsys, "run", graph, "--format", "json")
    assert status == 2
    doc = json.loads(out)
    assert doc["error"]["code"] == "missing-input"


# plugins ------------------------------------------------------------------------------------------------------

PLUGIN = '''\
"""A test plugin: triple(x) = 3 x."""
import numpy as np

from gtool.ops.registry import OpDef, register


def _infer(ctx, types, attrs):
    return types[0]


register(OpDef(
    "triple_test_op", 1, _infer, lambda x: 3 * x,
    vjp=lambda b, node, g: [b("mul", g, b.const(3.0))],
    jvp=lambda b, node, ts: None if ts[0] is None else b("mul", ts[0], b.const(3.0)),
    doc="3 x",
))
'''

PLUGIN_GRAPH = """\
gtool: 1
inputs:
  x: {shape: [2], value: [1.0, 2.0]}
nodes:
  y: triple_test_op(x)
  L: sum(y * x)
outputs: [y, L]
loss: L
"""


@pytest.fixture
def plugin(tmp_path):
    p = tmp_path / "myops.py"
    p.write_text(PLUGIN)
    g = tmp_path / "uses_plugin.yaml"
    g.write_text(PLUGIN_GRAPH)
    yield p, g
    registry.REGISTRY.pop("triple_test_op", None)


def test_plugin_ops_run_and_differentiate(plugin, capsys):
    p, g = plugin
    status, out, err = gtool_cli(capsys, "validate", g)
    assert status == 1
    assert "unknown op 'triple_test_op'" in out and "--plugin" in out
    status, _, _ = gtool_cli(capsys, "validate", "--plugin", p, g)
    assert status == 0
    doc = ok_json(capsys, "run", "--plugin", p, g)
    assert doc["outputs"]["y"]["value"] == [3.0, 6.0]
    assert doc["outputs"]["L"]["value"] == 15.0
    grad = ok_json(capsys, "grad", "--plugin", p, g)
    assert grad["gradients"]["x"]["value"] == [6.0, 12.0]  # L = 3 sum(x^2)
    forward = ok_json(capsys, "grad", "--plugin", p, g, "--mode", "forward")
    assert forward["gradients"]["x"]["value"] == [6.0, 12.0]
    assert registry.REGISTRY["triple_test_op"].plugin == str(p)


def test_broken_plugin_is_a_usage_error(tmp_path, capsys):
    p = tmp_path / "broken.py"
    p.write_text("raise RuntimeError('boom')\n")
    status, _, err = gtool_cli(capsys, "validate", "--plugin", p, ROOT / "graphs" / "fanout.yaml")
    assert status == 2 and "boom" in err and "Traceback" not in err
    status, _, err = gtool_cli(capsys, "validate", "--plugin", tmp_path / "none.py", ROOT / "graphs" / "fanout.yaml")
    assert status == 2
