"""ONNX export: onnx's full checker accepts every exported model and onnxruntime, an independent
implementation of every ONNX op, computes the same outputs as gtool.

- every bundled graph in graphs/ (float64 within 1e-9, float32 within float32 rounding);
- every built-in op, on its cases from tests/op_cases.py (and float32 copies of the float ones):
  an op registered without an export rule fails `test_every_op_has_a_rule_and_cases` by name;
- the decompositions at their edges (log1p, expm1, sigmoid, softplus, logsumexp, cross_entropy)
  against NumPy / SciPy, which compute them by other formulas;
- symbolic dims (dim_param, reshape to a named dim at run time), weak scalars, mixed dtypes,
  and the errors of what cannot be exported.
"""

from __future__ import annotations

import glob
import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from op_cases import CASES  # noqa: E402

import gtool  # noqa: E402
from gtool import api  # noqa: E402
from gtool.errors import GraphError, UsageError  # noqa: E402
from gtool.onnx.export import export_model  # noqa: E402
from gtool.onnx.export_ops import RULES  # noqa: E402
from gtool.ops import REGISTRY  # noqa: E402

GRAPHS = sorted(glob.glob("graphs/*.yaml") + glob.glob("graphs/*.json"))


def ort_run(model, feeds: dict) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # inputs with a default value are initializers too: ORT warns
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: np.asarray(v) for k, v in feeds.items() if k in names})


def exported(graph, **kw):
    model = export_model(graph, **kw)
    onnx.checker.check_model(model, full_check=True)
    return model


def assert_same(want: np.ndarray, got: np.ndarray, what: str) -> None:
    """Same dtype and shape; float64 within 1e-9 (relative, and 1e-12 of the values' largest
    magnitude for entries near 0), float32 within 1e-5 (and 2e-6 of the largest: onnxruntime's
    float32 MatMul sums in another order); ints and bools exactly; NaN where gtool has NaN."""
    want, got = np.asarray(want), np.asarray(got)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, gtool {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, gtool {want.shape}"
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    rtol, atol = (1e-9, 1e-12) if want.dtype == np.float64 else (1e-5, 2e-6)
    scale = np.max(np.abs(want[np.isfinite(want)]), initial=0.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, equal_nan=True, err_msg=what)


def graph_inputs(graph, seed: int = 1) -> dict:
    values = api.all_values(graph, random_inputs=True, seed=seed)
    return {n: values[n] for n in graph.of_kind("input")}


@pytest.mark.parametrize("path", GRAPHS)
def test_bundled_graph_exports_and_runs_in_onnxruntime(path):
    graph = gtool.load(path)
    model = exported(graph)
    feeds = graph_inputs(graph)
    want = api.run(graph, feeds)
    got = ort_run(model, feeds)
    assert [o.name for o in model.graph.output] == list(graph.outputs)
    for name, value in zip(graph.outputs, got):
        assert_same(want[name], value, f"{path}: {name}")


def test_bundled_graphs_keep_their_interface():
    graph = gtool.load("graphs/mlp.yaml")
    model = exported(graph)
    inputs = {i.name: i for i in model.graph.input}
    assert list(inputs) == ["x", "t"]
    x_dims = [d.dim_param or d.dim_value for d in inputs["x"].type.tensor_type.shape.dim]
    assert x_dims == ["batch", 784]
    assert inputs["x"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert inputs["t"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert {i.name for i in model.graph.initializer} >= {"W1", "b1", "W2", "b2"}
    assert model.graph.doc_string == graph.doc
    (node,) = [n for n in model.graph.node if "L" in n.output]
    assert node.doc_string == graph.nodes["L"].doc


def test_params_are_the_values_gtool_runs_with():
    """Params without a value are drawn from their init as `gtool run` draws them (same seed)."""
    graph = gtool.load("graphs/mlp.yaml")
    for seed in (0, 3):
        model = exported(graph, seed=seed)
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        values = api.all_values(graph, random_inputs=True, seed=seed)
        np.testing.assert_array_equal(inits["W1"], values["W1"])
    given = np.full((128, 10), 0.5, np.float32)
    model = exported(graph, params={"W2": given})
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(inits["W2"], given)


# every op ------------------------------------------------------------------------------------

def _as_float32(case):
    from dataclasses import replace

    if not any(i.dtype == "float64" for i in case.inputs):
        return None
    if case.op == "cast" and case.attrs.get("dtype") == "float32":
        return None
    return replace(case, inputs=tuple(replace(i, dtype="float32") if i.dtype == "float64" else i
                                      for i in case.inputs))


def combined(items) -> tuple[str, dict, list[str]]:
    """One graph for many one-node cases (one export and one onnxruntime session for them all,
    which keeps this file fast): `items` are (label, op, attrs, {input: array}); node `o<k>`
    computes case k from inputs `c<k>_<j>`. Returns the YAML, the feeds, and the labels."""
    lines, nodes, feeds, labels = ["gtool: 1", "inputs:"], [], {}, []
    for k, (label, op, attrs, arrays) in enumerate(items):
        names = []
        for j, arr in enumerate(arrays.values()):
            name = f"c{k}_{j}"
            feeds[name] = arr = np.asarray(arr)
            lines.append(f"  {name}: {{shape: {list(arr.shape)}, dtype: {arr.dtype}}}")
            names.append(name)
        node = {"op": op, "inputs": names, **({"attrs": attrs} if attrs else {})}
        nodes.append(f"  o{k}: {json.dumps(node)}")
        labels.append(label)
    outputs = ", ".join(f"o{k}" for k in range(len(items)))
    return "\n".join(lines + ["nodes:"] + nodes + [f"outputs: [{outputs}]"]) + "\n", feeds, labels


def check_combined(items, load_text) -> None:
    """gtool and onnxruntime on a combined graph: every case's output the same (assert_same)."""
    text, feeds, labels = combined(items)
    graph = load_text(text)
    want = api.run(graph, feeds)
    got = ort_run(exported(graph), feeds)
    for k, (label, value) in enumerate(zip(labels, got)):
        assert_same(want[f"o{k}"], value, label)


OPS_WITH_CASES = sorted(CASES)


@pytest.mark.parametrize("op", OPS_WITH_CASES)
def test_op_exports(op, load_text):
    """Every case of the op (tests/op_cases.py), in float64 and as float32 copies."""
    cases = CASES[op] + [c for c in map(_as_float32, CASES[op]) if c is not None]
    items = [(f"{c.id} {'/'.join(i.dtype for i in c.inputs)}", c.op, c.attrs, c.arrays()) for c in cases]
    check_combined(items, load_text)


def test_every_op_has_a_rule_and_cases():
    builtin = [n for n, op in REGISTRY.items() if op.plugin is None]
    missing = [n for n in builtin if n not in RULES]
    assert not missing, f"ops without an ONNX export rule (gtool/onnx/export_ops.py): {missing}"
    untested = [n for n in builtin if n not in CASES]
    assert not untested, f"ops without cases in tests/op_cases.py (so their export is untested): {untested}"


# decompositions at their edges -----------------------------------------------------------------

EDGE = np.array([0.0, -0.0, 1e-300, -1e-300, 5e-324, 1e-20, -1e-20, 1e-10, -1e-10, 1e-5, -1e-5, 0.5, -0.5, 1.0,
                 -1.0, 2.0, 30.0, -30.0, 700.0, -700.0, 710.0, -745.0, 1e300, -1e300, np.inf, -np.inf, np.nan])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("op, reference", [
    ("log1p", np.log1p), ("expm1", np.expm1),
    ("sigmoid", lambda x: __import__("scipy.special", fromlist=["expit"]).expit(x)),
    ("softplus", lambda x: np.logaddexp(0, x)),
])
def test_decompositions_at_the_edges(op, reference, dtype, load_text):
    graph = load_text(f"gtool: 1\ninputs:\n  x: {{shape: [n], dtype: {dtype}}}\nnodes:\n  y: {op}(x)\noutputs: [y]\n")
    x = EDGE.astype(dtype) if dtype == "float64" else EDGE[np.abs(np.nan_to_num(EDGE)) < 3e38].astype(dtype)
    model = exported(graph)
    (got,) = ort_run(model, {"x": x})
    with np.errstate(all="ignore"):
        want = reference(x).astype(dtype)
    # within 2 ulps of the reference (NumPy's and SciPy's own functions), NaN where it is NaN
    ulp = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    close = (err <= 2 * ulp) | (got == want) | (np.isnan(got) & np.isnan(want))
    assert close.all(), f"{op} {dtype}: x={x[~close]}, onnxruntime {got[~close]}, reference {want[~close]}"


def test_logsumexp_and_cross_entropy_at_huge_logits(load_text):
    """gtool's own stable template runs in ONNX: 1e15 logits and -inf entries stay exact."""
    graph = load_text("gtool: 1\ninputs:\n  x: [3, 3]\n  t: {shape: [3], dtype: int64}\nnodes:\n"
                      "  l: logsumexp(x, axis=-1)\n  c: cross_entropy(x, t, reduction='none')\noutputs: [l, c]\n")
    x = np.array([[1e15, 1e15 + 2, 0.0], [1000.0, 999.0, -np.inf], [-np.inf, -np.inf, -np.inf]])
    t = np.array([0, 1, 2])
    got_l, got_c = ort_run(exported(graph), {"x": x, "t": t})
    # closed forms: log(1 + e^-2) above 1e15+2; log(1 + e^-1) above 1000; -inf for a row of -inf
    want_l = np.array([1e15 + 2 + np.log1p(np.exp(-2.0)), 1000 + np.log1p(np.exp(-1.0)), -np.inf])
    np.testing.assert_allclose(got_l, want_l, rtol=1e-15)
    np.testing.assert_allclose(got_c[:2], [2 + np.log1p(np.exp(-2.0)), 1 + np.log1p(np.exp(-1.0))], rtol=1e-12)
    assert np.isnan(got_c[2])  # -log softmax of a row of -inf: NaN, as gtool


# dims, dtypes, weak scalars --------------------------------------------------------------------


def test_named_dims_are_dim_params_and_shapes_follow_at_run_time(load_text):
    graph = load_text("gtool: 1\ndims: {batch: 4}\ninputs:\n  x: {shape: [batch, 6]}\nnodes:\n"
                      "  r: {op: reshape, inputs: [x], attrs: {shape: [batch, 2, -1]}}\n"
                      "  c: concat(x, x, axis=0)\n"
                      "  b: {op: broadcast_to, inputs: [x], attrs: {shape: [3, batch, 6]}}\n"
                      "  s: {op: slice, inputs: [c], attrs: {axis: 0, start: 1, stop: 'batch + 1'}}\n"
                      "  n: size(c)\n  o: one_hot(cast(sum(x, axis=1) > 0, dtype='int64'), depth='batch')\n"
                      "outputs: [r, b, s, n, o]\n")
    model = exported(graph)
    (x_in,) = model.graph.input
    assert x_in.type.tensor_type.shape.dim[0].dim_param == "batch"
    for batch in (4, 7):  # one model, any batch: the attrs' dims are read from x's shape
        x = np.random.default_rng(batch).standard_normal((batch, 6))
        want = api.run(graph, {"x": x}, dims={"batch": batch})
        for name, got in zip(graph.outputs, ort_run(model, {"x": x})):
            assert_same(want[name], got, f"{name} at batch={batch}")


def test_weak_scalars_take_the_dtype_they_meet(load_text):
    graph = load_text("gtool: 1\ninputs:\n  x: {shape: [3], dtype: float32}\n  i: {shape: [3], dtype: int32}\n"
                      "constants:\n  half: 0.5\nnodes:\n  a: x * half + 2\n  b: i * 2 + 1\n  c: i * half\n"
                      "  d: i / i\n  e: x + cast(i, dtype='float64')\n  f: (x > 0) * (i > 0)\n  k: half * 4\n"
                      "outputs: [a, b, c, d, e, f, k]\n")
    model = exported(graph)
    feeds = {"x": np.array([1.5, -2.0, 0.1], np.float32), "i": np.array([1, 2, 3], np.int32)}
    want = api.run(graph, feeds)
    for name, got in zip(graph.outputs, ort_run(model, feeds)):
        assert_same(want[name], got, name)
    dtypes = {name: np.asarray(want[name]).dtype for name in graph.outputs}
    assert (dtypes["a"], dtypes["b"], dtypes["c"], dtypes["d"], dtypes["f"]) == \
        (np.float32, np.int32, np.float64, np.float64, np.bool_)


def test_outputs_that_are_inputs_or_repeated(load_text):
    graph = load_text("gtool: 1\ninputs:\n  x: [2]\nconstants:\n  k: {value: [1.0, 2.0]}\nnodes:\n  y: x + k\n"
                      "outputs: [y, x, k, y]\n")
    model = exported(graph)
    got = ort_run(model, {"x": np.array([3.0, 4.0])})
    np.testing.assert_array_equal(got[0], [4.0, 6.0])
    np.testing.assert_array_equal(got[1], [3.0, 4.0])
    np.testing.assert_array_equal(got[2], [1.0, 2.0])
    np.testing.assert_array_equal(got[3], [4.0, 6.0])
    from gtool.onnx.meta import read

    assert set(read(model)["renamed"].values()) == {"x", "k", "y"}


def test_gradient_graphs_export(load_text):
    """What `grad --emit-graph` writes (sum_to, broadcast_to, take_along_axis, one_hot ...)
    exports too, and onnxruntime computes the same gradients."""
    graph = gtool.load("graphs/mlp.yaml")
    gr = api.gradient(graph)
    feeds = graph_inputs(graph)
    want = api.run(gr.graph, feeds)
    model = exported(gr.graph)
    for name, got in zip(gr.graph.outputs, ort_run(model, feeds)):
        assert_same(want[name], got, name)


# metadata and errors ----------------------------------------------------------------------------


def test_metadata_holds_what_onnx_has_no_field_for():
    from gtool.onnx.meta import read

    graph = gtool.load("graphs/mlp.yaml")
    doc = read(exported(graph))
    assert doc["loss"] == "L" and doc["dims"] == {"batch": 32} and doc["name"] == "mlp"
    assert doc["tensors"]["t"]["range"] == [0, 9] and doc["tensors"]["x"]["doc"] == "flattened 28x28 images"
    assert doc["tensors"]["W1"]["init"] == {"glorot": {}} and not doc["tensors"]["W1"]["has_value"]
    assert doc["nodes"]["L"]["op"] == "cross_entropy" and doc["nodes"]["L"]["shape"] == []
    json.dumps(doc)


def test_param_with_unsized_dim_is_refused(load_text):
    graph = load_text("gtool: 1\ninputs:\n  x: [n]\nparams:\n  w: {shape: [n], init: zeros}\nnodes:\n"
                      "  y: x * w\noutputs: [y]\n")
    with pytest.raises(GraphError) as e:
        export_model(graph)
    assert e.value.code == "onnx-export" and "'w'" in str(e.value)
    model = exported(graph, dims={"n": 3})  # with the dim bound it has a value
    assert [d for d in model.graph.initializer[0].dims] == [3]


def test_bad_opset_is_a_usage_error():
    graph = gtool.load("graphs/fanout.yaml")
    with pytest.raises(UsageError):
        export_model(graph, opset=12)


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
def test_other_opsets(opset):
    """Reductions take axes as an attribute before opset 18 and as an input from it."""
    graph = gtool.load("graphs/mlp.yaml")
    model = exported(graph, opset=opset)
    assert model.opset_import[0].version == opset
    feeds = graph_inputs(graph)
    want = api.run(graph, feeds)
    for name, got in zip(graph.outputs, ort_run(model, feeds)):
        assert_same(want[name], got, name)


def test_a_dim_only_inside_an_expression_is_solved(load_text):
    """n is read as (size - 1) / 2 from an input of shape [2 * n + 1]."""
    graph = load_text("gtool: 1\ninputs:\n  x: ['2 * n + 1']\nnodes:\n  y: {op: slice, inputs: [x], attrs: "
                      "{axis: 0, start: 0, stop: n}}\noutputs: [y]\n")
    model = exported(graph)
    for n in (1, 4):
        x = np.arange(2 * n + 1, dtype=np.float64)
        (got,) = ort_run(model, {"x": x})
        np.testing.assert_array_equal(got, x[:n])


def test_an_op_without_a_rule_is_refused_by_name(load_text, monkeypatch):
    graph = load_text("gtool: 1\ninputs:\n  x: [2]\nnodes:\n  y: tanh(x)\noutputs: [y]\n")
    monkeypatch.delitem(RULES, "tanh")
    with pytest.raises(GraphError) as e:
        export_model(graph)
    assert e.value.code == "onnx-export" and "'tanh'" in str(e.value) and e.value.diagnostic.node == "y"


@pytest.mark.parametrize("op", ["max", "min", "sum", "mean", "logsumexp"])
def test_reductions_at_nan_and_inf(op, load_text):
    """gtool's NaN propagation survives onnxruntime (whose ReduceMax alone skips NaN)."""
    graph = load_text(f"gtool: 1\ninputs:\n  x: [4, 3]\nnodes:\n  r: {op}(x, axis=1)\n  a: {op}(x)\noutputs: [r, a]\n")
    x = np.array([[1.0, np.nan, 2.0], [np.inf, 1.0, -np.inf], [-np.inf, -np.inf, -np.inf], [3.0, -1.0, 0.5]])
    want = api.run(graph, {"x": x})
    for name, got in zip(graph.outputs, ort_run(exported(graph), {"x": x})):
        assert_same(want[name], got, f"{op}: {name}")
    numpy = {"max": np.max, "min": np.min, "sum": np.sum, "mean": np.mean}.get(op)
    if numpy is not None:  # and gtool agrees with NumPy there
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(want["r"], numpy(x, axis=1))


def test_every_op_is_in_the_docs_table():
    """docs/onnx.md's export table names every built-in op (a new op's rule gets its row)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "onnx.md").read_text()
    section = text[text.index("### gtool op -> ONNX"):text.index("### Metadata")]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    named = {w.strip("`") for cell in rows for w in cell.replace(",", " ").split()}
    missing = [n for n, op in REGISTRY.items() if op.plugin is None and n not in named]
    assert not missing, f"ops missing from docs/onnx.md's export table: {missing}"


# the records' edge tables: the values every backend is held to ------------------------------------

EDGE_OPS = sorted(name for name, op in REGISTRY.items() if op.plugin is None and op.edges)


def _edge_items(name: str, dtype: str) -> list:
    items = []
    for k, edge in enumerate(REGISTRY[name].edges):
        if dtype == "float32" and not edge.float32:
            continue
        arrays = {}
        for j, arr in enumerate(edge.inputs):
            arr = np.asarray(arr)
            arrays[j] = arr.astype(dtype) if arr.dtype == np.float64 else arr
        items.append((f"{name} edge {k} ({edge.note or 'floats'}) {dtype}", name, edge.attrs, arrays))
    return items


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", EDGE_OPS)
def test_edge_table_in_onnxruntime(name, dtype, load_text):
    """The op's edge table (the values every gtool backend is held to) through onnxruntime.
    An edge gtool refuses at run time (an error case of the table) is checked on its own."""
    items = _edge_items(name, dtype)
    try:
        check_combined(items, load_text)
        return
    except GraphError:
        pass
    for item in items:
        try:
            api.run(load_text(combined([item])[0]), combined([item])[1])
        except GraphError:
            continue  # refused by gtool: nothing to compare
        check_combined([item], load_text)
