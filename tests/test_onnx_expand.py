"""ONNX ops defined by a function body load by expansion (gtool/onnx/expand.py).

References: ONNX's own reference evaluator on the unexpanded model, and closed forms written
here (Mish's derivative) for the gradients.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import gtool  # noqa: E402
from gtool.errors import GraphError  # noqa: E402
from gtool.onnx.expand import expand_functions  # noqa: E402

X = np.array([[-30.0, -3.0, -0.5, -0.0], [0.0, 0.4, 2.0, 25.0]])


def model(op: str, n_in: int = 1, opset: int = 18, dtype=TensorProto.DOUBLE, name: str = "act", **attrs):
    ins = [helper.make_tensor_value_info(f"x{i}", dtype, list(X.shape)) for i in range(n_in)]
    node = helper.make_node(op, [f"x{i}" for i in range(n_in)], ["y"], name=name, **attrs)
    graph = helper.make_graph([node], "g", ins, [helper.make_tensor_value_info("y", dtype, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def load(m, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    return gtool.load(path)


@pytest.mark.parametrize("op, n_in, opset, attrs", [
    ("Mish", 1, 18, {}),
    ("Celu", 1, 18, {}),                      # context-dependent body, default alpha
    ("Celu", 1, 18, {"alpha": 2.5}),
    ("HardSwish", 1, 18, {}),
    ("Shrink", 1, 18, {"lambd": 0.6, "bias": 0.1}),
    ("ThresholdedRelu", 1, 18, {}),           # the body's Constant takes the schema's default alpha
    ("ThresholdedRelu", 1, 18, {"alpha": 0.3}),
    ("PRelu", 2, 18, {}),
    ("Swish", 1, 24, {"alpha": 0.7}),
])
def test_expanded_op_matches_the_reference_evaluator(op, n_in, opset, attrs, tmp_path):
    m = model(op, n_in, opset, **attrs)
    feeds = {f"x{i}": X * (1 - 0.3 * i) for i in range(n_in)}
    got = gtool.run(load(m, tmp_path), feeds)["y"]
    want = ReferenceEvaluator(m).run(None, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    assert got.dtype == want.dtype


def test_expanded_nodes_are_named_under_the_original_node(tmp_path):
    g = load(model("Mish", name="mish_7"), tmp_path)
    assert [n.op for n in g.nodes.values()] == ["softplus", "tanh", "mul"]
    # the diagnostics' node index is the one in the file (node 0), the name says which part
    assert [n.doc for n in g.nodes.values()] == ["ONNX node 0 'mish_7/Softplus_0' (Softplus)",
                                                "ONNX node 0 'mish_7/Tanh_1' (Tanh)", "ONNX node 0 'mish_7/Mul_2' (Mul)"]


def test_gradient_of_an_expanded_op_matches_the_closed_form(tmp_path):
    g = load(model("Mish"), tmp_path)
    _, grads = gtool.vjp(g, {"x0": X}, cotangents={"y": np.ones_like(X)}, wrt=["x0"])
    sp = np.logaddexp(0.0, X)
    want = np.tanh(sp) + X * (1 - np.tanh(sp) ** 2) / (1 + np.exp(-X))  # d/dx x tanh(softplus x)
    np.testing.assert_allclose(grads["x0"], want, rtol=1e-12, atol=1e-15)


def test_an_op_with_a_converter_is_not_expanded():
    m = model("Elu", alpha=0.5)  # Elu has a converter (and no body to expand anyway)
    assert expand_functions(m) == (m, [0])
    m = model("Mish")
    out, origins = expand_functions(m)
    assert out is not m and m.graph.node[0].op_type == "Mish" and origins == [0, 0, 0]  # the caller's model is untouched


def test_a_body_written_for_an_older_opset_is_refused_when_its_ops_changed():
    # a hand-made check of the rule on a real schema: Celu's body (opset 12) uses Constant,
    # Div, Elu and Mul, which changed only in the types they accept since: accepted
    from gtool.onnx import expand

    schema = onnx.defs.get_schema("Celu", 18, "")
    node = helper.make_node("Celu", ["x"], ["y"])
    fn = expand._body(onnx, node, schema, 18, {"x": helper.make_tensor_type_proto(TensorProto.FLOAT, [2])})
    assert fn is not None and not expand._outdated(onnx, fn, 18)
    # the near miss: a body at opset 12 using ReduceSum (axes became an input at 13) or
    # Softmax (axis changed meaning at 13) must not be spliced into an opset-18 model
    for op in ("ReduceSum", "Softmax"):
        bad = onnx.FunctionProto()
        bad.CopyFrom(fn)
        bad.node[1].op_type = op
        assert expand._outdated(onnx, bad, 18), op


def test_an_op_without_converter_or_body_is_still_refused(tmp_path):
    m = model("Det")
    with pytest.raises(GraphError) as info:
        load(m, tmp_path)
    assert "onnx-unsupported" in str(info.value) and "Det" in str(info.value)


def test_an_expansion_onto_ops_gtool_refuses_names_the_inner_node(tmp_path):
    # MeanVarianceNormalization normalizes over axes [0, 2, 3] by default: a 2-D input is
    # refused, and the message points into the expansion
    with pytest.raises(GraphError) as info:
        load(model("MeanVarianceNormalization", name="mvn"), tmp_path)
    assert "'mvn/" in str(info.value) and "bad-axis" in str(info.value)
