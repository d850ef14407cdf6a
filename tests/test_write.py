"""gtool.format.write: written graphs read back to the same graph, byte for byte the same
every time, with floats exact, in YAML and JSON, and written atomically."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from gtool import api
from gtool.errors import UsageError
from gtool.format.write import dumps, graph_to_data, save_graph, write_atomic
from gtool.validate import check_file, load

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = sorted(p for p in (ROOT / "graphs").iterdir() if p.suffix in (".yaml", ".yml", ".json"))
FORMATS = ["yaml", "json"]


def roundtrip(graph, tmp_path: Path, fmt: str, name: str = "out"):
    path = tmp_path / f"{name}.{fmt}"
    save_graph(graph, str(path))
    report = check_file(str(path))
    assert report.valid, [d.format() for d in report.errors]
    assert report.warnings == [], [d.format() for d in report.warnings]
    return load(path), path


def outputs(graph) -> dict:
    return api.run(graph, random_inputs=True, seed=7)


def assert_same_values(a: dict, b: dict):
    assert list(a) == list(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape, k
        np.testing.assert_array_equal(x, y, err_msg=k)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.name)
def test_graphs_round_trip(path, fmt, tmp_path):
    graph = load(path)
    again, written = roundtrip(graph, tmp_path, fmt)
    assert list(again.nodes) == list(graph.nodes)
    assert again.outputs == graph.outputs and again.loss == graph.loss
    for name, t in graph.tensors.items():
        assert again.tensors[name].type == t.type, name
        assert again.tensors[name].init == t.init and again.tensors[name].range == t.range
    for name, node in graph.nodes.items():
        other = again.nodes[name]
        assert (other.op, other.inputs, other.shape) == (node.op, node.inputs, node.shape)
    assert_same_values(outputs(graph), outputs(again))
    # a written file written again is the same bytes (a fixed point)
    assert dumps(again, fmt) == written.read_text()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.name)
def test_gradient_graphs_round_trip(path, fmt, tmp_path):
    graph = load(path)
    gg = api.grad(graph)
    again, _ = roundtrip(gg, tmp_path, fmt)
    assert again.outputs == gg.outputs
    assert_same_values(outputs(gg), outputs(again))
    # and the written gradient graph gives the gradients of the original
    loss, grads = api.value_and_grad(graph, random_inputs=True, seed=7)
    out = outputs(again)
    assert float(out[gg.outputs[0]]) == loss
    for w, name in zip(grads, gg.outputs[1:]):
        np.testing.assert_array_equal(out[name], grads[w])


@pytest.mark.parametrize("fmt", FORMATS)
def test_output_is_byte_identical_across_runs(fmt):
    for path in GRAPHS:
        graph = load(path)
        first = dumps(graph, fmt)
        assert dumps(load(path), fmt) == first
        assert dumps(api.grad(load(path)), fmt) == dumps(api.grad(graph), fmt)


def test_written_nodes_are_explicit_and_in_topological_order(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("gtool: 1\ninputs:\n  x: [3]\nnodes:\n  L: sum(h)\n  h: relu(x * 2 + 1)\noutputs: [L]\n")
    data = graph_to_data(load(f))
    names = list(data["nodes"])
    assert names[-2:] == ["h", "L"] and len(names) == 4 and all(n.startswith("__h_") for n in names[:2])
    assert all(isinstance(v, dict) and set(v) >= {"op", "inputs"} for v in data["nodes"].values())
    text = dumps(load(f))
    assert f"  h: {{op: relu, inputs: [{names[1]}]}}" in text


FLOATS = [0.1, 1 / 3, 2 / 3, 1e-300, 5e-324, 1.7976931348623157e308, -0.0, 123456789.123456789, 1e22, 2.5e-8,
          math.pi, -math.e, 100.0, 1e16, 0.30000000000000004]


@pytest.mark.parametrize("fmt", FORMATS)
def test_floats_round_trip_exactly(tmp_path, fmt):
    values = FLOATS + [math.inf, -math.inf, math.nan]
    f = tmp_path / "g.yaml"
    f.write_text("gtool: 1\nconstants:\n"
                 f"  v: {{value: {json.dumps(FLOATS)}}}\n"
                 "  w: {value: [.inf, -.inf, .nan]}\n"
                 "  k: 0.1\n  i: 3\n  b: {value: true}\n"
                 "  m: {value: [[1, 2], [3, 4]], dtype: int32}\n"
                 "  f: {value: [0.1, 0.2], dtype: float32}\n"
                 "inputs:\n  x: {shape: [2], range: [-.inf, 1e-12]}\n"
                 "nodes:\n  o: concat(v, w)\n  p: m * i\n  q: f * k + x\n  r: where(b, q, 0)\noutputs: [o, p, r]\n")
    graph = load(f)
    again, written = roundtrip(graph, tmp_path, fmt)
    got = again.tensors["v"].value.tolist() + again.tensors["w"].value.tolist()
    for a, b_ in zip(values, got):
        assert (math.isnan(a) and math.isnan(b_)) or (a == b_ and math.copysign(1, a) == math.copysign(1, b_)), (a, b_)
    assert again.tensors["x"].range == (-math.inf, 1e-12)
    for name in ("k", "i", "b", "m", "f"):
        assert again.tensors[name].type == graph.tensors[name].type, name
        np.testing.assert_array_equal(again.tensors[name].value, graph.tensors[name].value)
    text = written.read_text()
    assert "0.30000000000000004" in text and "5e-324" in text
    if fmt == "json":
        assert '"nan"' in text and '"-inf"' in text and "NaN" not in text and "Infinity" not in text
        json.loads(text)
    else:
        assert ".nan" in text and "-.inf" in text


def test_atomic_write_leaves_no_temp_files(tmp_path):
    graph = load(ROOT / "graphs" / "fanout.yaml")
    target = tmp_path / "out.yaml"
    save_graph(graph, str(target))
    save_graph(graph, str(target))  # overwriting is fine (it is not the input)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.yaml"]


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.yaml"
    target.write_text("old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(UsageError, match="disk full"):  # a clean error for the CLI, not a traceback
        write_atomic(str(target), "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.yaml"]


def test_save_graph_refusals(tmp_path):
    graph = load(ROOT / "graphs" / "fanout.yaml")
    src = tmp_path / "g.yaml"
    src.write_text((ROOT / "graphs" / "fanout.yaml").read_text())
    with pytest.raises(UsageError, match="refusing to overwrite"):
        save_graph(graph, str(src), protect=(str(src),))
    with pytest.raises(UsageError):
        save_graph(graph, str(tmp_path / "g.txt"))
    with pytest.raises(UsageError):
        save_graph(graph, str(tmp_path / "no" / "such" / "g.yaml"))


STORAGE_OUT = """
gtool: 1
inputs:
  x: {shape: [4], dtype: float32}
nodes:
  b: cast(x, dtype=bfloat16)
  q: cast(x, dtype=int4)
  u: cast(abs(x), dtype=uint2)
outputs: [b, q, u]
"""

STORAGE_IN = """
gtool: 1
inputs:
  b: {shape: [4], dtype: bfloat16}
  q: {shape: [4], dtype: int4}
  u: {shape: [4], dtype: uint2}
nodes:
  s: cast(b, dtype=float64) + cast(q, dtype=float64) + cast(u, dtype=float64)
outputs: [s]
"""


def test_run_output_npz_holds_storage_dtypes_as_numbers(tmp_path, capsys):
    # NumPy stores ml_dtypes' types as void bytes ('V2'): -o must write numbers that NumPy
    # reads and that `--inputs` feeds back to the same storage dtypes
    pytest.importorskip("ml_dtypes")
    from gtool.cli import main

    (tmp_path / "out.yaml").write_text(STORAGE_OUT)
    (tmp_path / "in.yaml").write_text(STORAGE_IN)
    out = tmp_path / "o.npz"
    with pytest.raises(SystemExit) as info:
        main(["run", str(tmp_path / "out.yaml"), "--input", "x=[1.5, 3.14159, -2, 2.5]", "-o", str(out)])
    assert info.value.code == 0
    with np.load(out, allow_pickle=False) as data:
        saved = {k: data[k] for k in data.files}
    assert {k: str(v.dtype) for k, v in saved.items()} == {"b": "float32", "q": "int8", "u": "uint8"}
    np.testing.assert_array_equal(saved["b"], [1.5, 3.140625, -2, 2.5])  # bfloat16 keeps 8 bits of mantissa
    np.testing.assert_array_equal(saved["q"], [1, 3, -2, 2])  # float -> int truncates, as ONNX Cast
    np.testing.assert_array_equal(saved["u"], [1, 3, 2, 2])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["run", str(tmp_path / "in.yaml"), "--inputs", str(out), "--format", "json"])
    assert info.value.code == 0
    assert json.loads(capsys.readouterr().out)["outputs"]["s"]["value"] == [3.5, 9.140625, -2.0, 6.5]
