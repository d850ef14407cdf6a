"""Importing .onnx models: every command accepts them, with ONNX's names, dims and nodes.

Models are built here with onnx.helper; values are checked against ONNX's own reference
evaluator (onnx.reference) or closed forms, never against gtool itself.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import gtool  # noqa: E402
from gtool import api  # noqa: E402
from gtool.cli import main  # noqa: E402
from gtool.errors import GraphError  # noqa: E402

F = TensorProto.FLOAT


def gtool_cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def save(path, nodes, inputs, outputs, inits=(), opset=17, functions=()):
    model = helper.make_model(helper.make_graph(nodes, "m", inputs, outputs, list(inits)),
                              opset_imports=[helper.make_opsetid("", opset)] +
                              ([helper.make_opsetid("local", 1)] if functions else []),
                              functions=list(functions))
    path.write_bytes(model.SerializeToString())
    return model


RNG = np.random.default_rng(5)
W1 = RNG.standard_normal((4, 3)).astype(np.float32)
B1 = RNG.standard_normal(3).astype(np.float32)
X = RNG.standard_normal((5, 4)).astype(np.float32)


@pytest.fixture
def mlp(tmp_path):
    """loss = sum(relu(x @ fc1.weight + fc1.bias)), x: [batch, 4] (dim_param batch)."""
    path = tmp_path / "mlp.onnx"
    save(path, [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="Gemm_0"),
                helper.make_node("Relu", ["h"], ["r"], name="Relu_1"),
                helper.make_node("ReduceSum", ["r"], ["loss"], name="ReduceSum_2", keepdims=0)],
         [helper.make_tensor_value_info("x", F, ["batch", 4])], [helper.make_tensor_value_info("loss", F, [])],
         [numpy_helper.from_array(W1, "fc1.weight"), numpy_helper.from_array(B1, "fc1.bias")])
    return path


def test_dim_param_is_a_named_dim_in_validate_and_shapes(mlp, capsys):
    status, out, _ = gtool_cli(capsys, "validate", mlp)
    assert status == 0, out
    status, out, _ = gtool_cli(capsys, "shapes", mlp, "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)["nodes"]}
    assert rows["h"]["shape"] == ["batch", 3] and rows["h"]["dtype"] == "float32"
    assert rows["fc1.weight"]["op"] in ("param", None) or rows["fc1.weight"]["shape"] == [4, 3]
    assert rows["loss"]["shape"] == []


def test_grad_wrt_an_initializer_by_its_onnx_name(mlp, tmp_path, capsys):
    """dL/dW = xᵀ · [h > 0] for L = sum(relu(x W + b)): the closed form, not gtool."""
    np.save(tmp_path / "x.npy", X)
    status, out, err = gtool_cli(capsys, "grad", mlp, "--wrt", "fc1.weight", "--input", f"x=@{tmp_path / 'x.npy'}",
                                 "--format", "json")
    assert status == 0, out + err
    got = np.array(json.loads(out)["gradients"]["fc1.weight"]["value"])
    h = X @ W1 + B1
    np.testing.assert_allclose(got, X.T @ (h > 0).astype(np.float32), rtol=1e-5, atol=1e-6)
    loss, grads = api.value_and_grad(gtool.load(mlp), {"x": X}, wrt=["fc1.bias"])
    np.testing.assert_allclose(grads["fc1.bias"], (h > 0).sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(loss, np.maximum(h, 0).sum(), rtol=1e-5)


def _softmax_model(path):
    return save(path, [helper.make_node("Exp", ["s"], ["e"], name="Exp_7"),
                       helper.make_node("ReduceSum", ["e", "axes"], ["z"], name="ReduceSum_8", keepdims=1),
                       helper.make_node("Div", ["e", "z"], ["p"], name="Div_9")],
                [helper.make_tensor_value_info("s", F, ["n", 10])], [helper.make_tensor_value_info("p", F, ["n", 10])],
                [numpy_helper.from_array(np.array([-1], np.int64), "axes")])


def test_lint_finds_the_naive_softmax_and_names_the_onnx_node(tmp_path, capsys):
    path = tmp_path / "naive.onnx"
    _softmax_model(path)
    status, out, _ = gtool_cli(capsys, "lint", path, "--format", "json")
    findings = json.loads(out)["files"][0]["findings"]
    found = [f for f in findings if f["code"] == "unstable-pattern"]
    assert found and found[0]["node"] == "p", findings
    assert "Div_9" in found[0]["message"]


def test_render_shows_onnx_node_names(tmp_path, capsys):
    path = tmp_path / "naive.onnx"
    _softmax_model(path)
    status, out, err = gtool_cli(capsys, "render", path, "--format", "json")
    assert status == 0, out + err
    dot = json.loads(out)["dot"]
    assert "Exp_7" in dot and "ReduceSum_8" in dot and "Div_9" in dot


def test_shape_arithmetic_with_symbolic_dims_folds_into_a_reshape(tmp_path, capsys):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape on x: [N, 6] gives [N, 2, 3]."""
    path = tmp_path / "chain.onnx"
    save(path, [helper.make_node("Shape", ["x"], ["shp"]),
                helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
                helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
                helper.make_node("Concat", ["n1", "tail"], ["target"], axis=0),
                helper.make_node("Reshape", ["x", "target"], ["y"], name="Reshape_4"),
                helper.make_node("Size", ["x"], ["count"])],
         [helper.make_tensor_value_info("x", F, ["N", 6])],
         [helper.make_tensor_value_info("y", F, ["N", 2, 3])],
         [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array([0], np.int64), "zero1"),
          numpy_helper.from_array(np.array([2, 3], np.int64), "tail")])
    status, out, _ = gtool_cli(capsys, "shapes", path, "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)["nodes"]}
    assert rows["y"]["shape"] == ["N", 2, 3] and rows["y"]["op"] == "reshape"
    x = RNG.standard_normal((7, 6)).astype(np.float32)
    np.testing.assert_array_equal(gtool.run(gtool.load(path), {"x": x})["y"], x.reshape(7, 2, 3))


def test_gather_gradient_scatters_back_to_the_table(tmp_path):
    """An embedding lookup: d sum(Gather(E, idx)) / dE counts each row's picks (repeats and
    negative indices included)."""
    path = tmp_path / "emb.onnx"
    table = RNG.standard_normal((6, 3)).astype(np.float32)
    save(path, [helper.make_node("Gather", ["emb.weight", "idx"], ["rows"], axis=0),
                helper.make_node("ReduceSum", ["rows"], ["loss"], keepdims=0)],
         [helper.make_tensor_value_info("idx", TensorProto.INT64, [2, 2])], [helper.make_tensor_value_info("loss", F, [])],
         [numpy_helper.from_array(table, "emb.weight")])
    idx = np.array([[1, 4], [-2, 0]], np.int64)  # -2 is row 4 again
    loss, grads = api.value_and_grad(gtool.load(path), {"idx": idx}, wrt=["emb.weight"])
    counts = np.zeros(6, np.float32)
    for i in idx.ravel():
        counts[i % 6] += 1
    np.testing.assert_array_equal(grads["emb.weight"], np.repeat(counts[:, None], 3, axis=1))
    np.testing.assert_allclose(loss, table[idx % 6].sum(), rtol=1e-6)


def test_integer_div_truncates_toward_zero(tmp_path):
    """ONNX Div on ints is C's: -7 / 2 = -3 (NumPy's // gives -4); exact beyond 2**53."""
    path = tmp_path / "div.onnx"
    save(path, [helper.make_node("Div", ["a", "b"], ["q"])],
         [helper.make_tensor_value_info("a", TensorProto.INT64, [5]), helper.make_tensor_value_info("b", TensorProto.INT64, [5])],
         [helper.make_tensor_value_info("q", TensorProto.INT64, [5])])
    a = np.array([-7, 7, -7, 2**62 + 1, -(2**53) - 1], np.int64)
    b = np.array([2, -2, -2, 3, 1], np.int64)
    got = gtool.run(gtool.load(path), {"a": a, "b": b})["q"]
    want = [abs(int(x)) // abs(int(y)) * (1 if (x < 0) == (y < 0) else -1) for x, y in zip(a, b)]
    assert got.tolist() == want
    assert got.tolist() != (a // b).tolist()  # the near miss: flooring differs at -7 / 2


@pytest.mark.parametrize("equation, shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ii->i", [(4, 4)]),
    ("ii", [(3, 3)]), ("i,j->ij", [(3,), (4,)]), ("ijk->kji", [(2, 3, 4)]), ("...ij,...jk->...ik", [(2, 3, 4), (4, 5)]),
    ("abc,cd,de->abe", [(2, 3, 4), (4, 5), (5, 2)]), ("ij,ij->", [(3, 4), (3, 4)]), ("bii->b", [(2, 3, 3)]),
])
def test_einsum_matches_the_onnx_reference(tmp_path, equation, shapes):
    path = tmp_path / "einsum.onnx"
    names = [f"x{k}" for k in range(len(shapes))]
    model = save(path, [helper.make_node("Einsum", names, ["y"], equation=equation)],
                 [helper.make_tensor_value_info(n, TensorProto.DOUBLE, list(s)) for n, s in zip(names, shapes)],
                 [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)], opset=13)
    feeds = {n: RNG.standard_normal(s) for n, s in zip(names, shapes)}
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    got = gtool.run(gtool.load(path), feeds)["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_opset_11_softmax_coerces_to_2d(tmp_path):
    """Before opset 13 Softmax normalises over all axes from `axis` on (coerced to 2-D).
    onnxruntime is the reference: onnx.reference applies opset 13's per-axis rule here."""
    path = tmp_path / "sm.onnx"
    model = save(path, [helper.make_node("Softmax", ["x"], ["y"], axis=1)],
                 [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 3, 4])],
                 [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2, 3, 4])], opset=11)
    ort = pytest.importorskip("onnxruntime")
    x = RNG.standard_normal((2, 3, 4))
    got = gtool.run(gtool.load(path), {"x": x})["y"]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, sess.run(None, {"x": x})[0], rtol=1e-12)
    np.testing.assert_allclose(got.sum(axis=(1, 2)), 1.0)  # not per-axis-1 rows


def test_model_local_functions_are_inlined(tmp_path):
    path = tmp_path / "fn.onnx"
    fn = helper.make_function("local", "AddMul", ["a", "b"], ["c"],
                              [helper.make_node("Add", ["a", "b"], ["t"]), helper.make_node("Mul", ["t", "b"], ["c"])],
                              [helper.make_opsetid("", 17)])
    save(path, [helper.make_node("AddMul", ["x", "y"], ["z"], domain="local")],
         [helper.make_tensor_value_info("x", F, [3]), helper.make_tensor_value_info("y", F, [3])],
         [helper.make_tensor_value_info("z", F, [3])], functions=[fn])
    x, y = np.float32([1, 2, 3]), np.float32([4, 5, -6])
    np.testing.assert_array_equal(gtool.run(gtool.load(path), {"x": x, "y": y})["z"], (x + y) * y)


def test_content_sniffing_loads_a_model_without_the_extension(mlp, tmp_path):
    other = tmp_path / "model.bin"
    other.write_bytes(mlp.read_bytes())
    assert set(gtool.load(other).tensors) >= {"x", "fc1.weight", "fc1.bias"}


# diagnostics -------------------------------------------------------------------------------


def test_an_unsupported_op_names_file_node_index_and_name(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    save(path, [helper.make_node("Relu", ["x"], ["r"], name="Relu_0"),
                helper.make_node("Det", ["r"], ["y"], name="Det_12")],
         [helper.make_tensor_value_info("x", F, [3, 3])], [helper.make_tensor_value_info("y", F, [])])
    status, out, err = gtool_cli(capsys, "validate", path)
    assert status == 1
    assert f"{path}: error: node 1 'Det_12' (Det): op Det (opset 17) has no gtool converter [onnx-unsupported]" in out + err


def test_a_shape_computed_at_run_time_is_refused_not_guessed(tmp_path):
    path = tmp_path / "m.onnx"
    save(path, [helper.make_node("Reshape", ["x", "s"], ["y"], name="Reshape_3")],
         [helper.make_tensor_value_info("x", F, [6]), helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
         [helper.make_tensor_value_info("y", F, None)])
    with pytest.raises(GraphError) as info:
        gtool.load(path)
    d = info.value.diagnostic
    assert d.code == "onnx-unsupported" and "node 0 'Reshape_3'" in d.message and "known at load" in d.message


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_malformed_file_is_a_clear_error(mlp, tmp_path, damage, capsys):
    blob = mlp.read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes({"truncated": blob[: len(blob) // 2], "garbage": b"\x08\x07 not a model at all \xff\xfe",
                     "empty": b""}[damage])
    status, out, err = gtool_cli(capsys, "validate", bad)
    assert status == 1, out + err
    assert "[onnx-bad-model]" in out + err and "Traceback" not in out + err


def test_without_the_onnx_package_an_onnx_path_is_exit_2_naming_the_extra(mlp, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)
    status, out, err = gtool_cli(capsys, "validate", mlp)
    assert status == 2
    assert "gtool[onnx]" in out + err


def test_the_size_cap_is_checked_before_reading(mlp, monkeypatch, capsys):
    from gtool.onnx import importer

    monkeypatch.setattr(importer, "MAX_ONNX_BYTES", 100)
    status, out, err = gtool_cli(capsys, "validate", mlp)
    assert status == 2 and "larger than" in out + err


# attribute-vs-input changes between opsets, against onnxruntime ----------------------------------

I64 = TensorProto.INT64


def _init(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


OPSET_CASES = {
    "ReduceSum-11-attr": (11, helper.make_node("ReduceSum", ["x"], ["y"], axes=[1], keepdims=0), []),
    "ReduceSum-13-input": (13, helper.make_node("ReduceSum", ["x", "ax"], ["y"], keepdims=1), [_init("ax", [-1, 0])]),
    "ReduceSum-13-noop": (13, helper.make_node("ReduceSum", ["x"], ["y"], noop_with_empty_axes=1), []),
    "ReduceMean-13-attr": (13, helper.make_node("ReduceMean", ["x"], ["y"], axes=[0, 2]), []),
    "ReduceMean-18-input": (18, helper.make_node("ReduceMean", ["x", "ax"], ["y"], keepdims=0), [_init("ax", [2])]),
    "ReduceMax-13-attr": (13, helper.make_node("ReduceMax", ["x"], ["y"], axes=[1], keepdims=0), []),
    "ReduceMax-18-all": (18, helper.make_node("ReduceMax", ["x"], ["y"]), []),
    "ReduceLogSumExp-13-attr": (13, helper.make_node("ReduceLogSumExp", ["x"], ["y"], axes=[-1]), []),
    "ReduceLogSumExp-18-input": (18, helper.make_node("ReduceLogSumExp", ["x", "ax"], ["y"]), [_init("ax", [0])]),
    "Squeeze-11-attr": (11, helper.make_node("Squeeze", ["x1"], ["y"], axes=[1]), []),
    "Squeeze-13-input": (13, helper.make_node("Squeeze", ["x1", "ax"], ["y"]), [_init("ax", [-2])]),
    "Unsqueeze-11-attr": (11, helper.make_node("Unsqueeze", ["x"], ["y"], axes=[0, 4]), []),
    "Unsqueeze-13-input": (13, helper.make_node("Unsqueeze", ["x", "ax"], ["y"]), [_init("ax", [1, -1])]),
    "Clip-6-attrs": (6, helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.25), []),
    "Clip-13-max-only": (13, helper.make_node("Clip", ["x", "", "hi"], ["y"]),
                         [numpy_helper.from_array(np.array(0.3, np.float32), "hi")]),
    "Slice-9-attrs": (9, helper.make_node("Slice", ["x"], ["y"], starts=[1, -3], ends=[100, -1], axes=[1, 2]), []),
    "Slice-13-steps": (13, helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"]),
                       [_init("st", [-1, 0]), _init("en", [-100, 5]), _init("ax", [2, 1]), _init("sp", [-2, 2])]),
    "Split-11-attr": (11, helper.make_node("Split", ["x"], ["z", "y"], axis=2, split=[1, 3]), []),
    "Split-18-num_outputs": (18, helper.make_node("Split", ["x"], ["z", "y"], axis=1, num_outputs=2), []),
    "Softmax-11-last": (11, helper.make_node("Softmax", ["x"], ["y"], axis=-1), []),
    "LogSoftmax-11-coerced": (11, helper.make_node("LogSoftmax", ["x"], ["y"]), []),
}


@pytest.mark.parametrize("case", list(OPSET_CASES))
def test_attribute_and_input_forms_match_onnxruntime(tmp_path, case):
    ort = pytest.importorskip("onnxruntime")
    opset, node, inits = OPSET_CASES[case]
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    feeds = {"x1": x[:, :1, :]} if node.input[0] == "x1" else {"x": x}
    name = node.input[0]
    model = helper.make_model(helper.make_graph([node], "m", [helper.make_tensor_value_info(name, F, list(feeds[name].shape))],
                                                [helper.make_tensor_value_info("y", F, None)], inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = gtool.run(gtool.load(path), feeds)["y"]
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attr, value", [
    ("value_float", 2.5), ("value_floats", [1.5, -2.0]), ("value_int", -7), ("value_ints", [3, 4, 5]),
    ("value", numpy_helper.from_array(np.array([[1.0, 2.0]], np.float64), "c")),
    ("sparse_value", helper.make_sparse_tensor(numpy_helper.from_array(np.array([5.0, 6.0], np.float32), "v"),
                                               numpy_helper.from_array(np.array([1, 3], np.int64), "i"), [4])),
])
def test_every_constant_form_matches_the_reference(tmp_path, attr, value):
    node = helper.make_node("Constant", [], ["c"], **{attr: value})
    model = helper.make_model(helper.make_graph([node, helper.make_node("Identity", ["c"], ["y"])], "m", [],
                                                [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)]),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "c.onnx"
    path.write_bytes(model.SerializeToString())
    if attr == "sparse_value":  # the reference evaluator returns its own SparseTensor here: the dense value by hand
        want = np.array([0.0, 5.0, 0.0, 6.0], np.float32)
    else:
        want = ReferenceEvaluator(model).run(None, {})[0]
    got = gtool.run(gtool.load(path))["y"]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_a_pytorch_export_with_a_dynamic_batch_runs_at_any_batch(capsys):
    """torch.onnx.export with dynamic_axes writes x.reshape(x.shape[0], -1) as
    Shape -> Gather -> Unsqueeze -> Concat -> Reshape; it folds into reshape [batch, 6], and
    values and gradients match torch's (tests/data/onnx/make_dynamic_model.py) at two batches."""
    from pathlib import Path

    here = Path(__file__).parent / "data" / "onnx"
    path, data = here / "torch_dynamic_float64.onnx", np.load(here / "torch_dynamic_float64.npz")
    status, out, _ = gtool_cli(capsys, "shapes", path, "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)["nodes"]}
    assert rows["x"]["shape"] == ["batch", 2, 3] and rows["y"]["shape"] == ["batch", 4]
    graph = gtool.load(path)
    for b in (3, 7):
        got = gtool.run(graph, {"x": data[f"input:x:{b}"]})["y"]
        np.testing.assert_allclose(got, data[f"output:y:{b}"], rtol=1e-12, atol=1e-14)
    _, grads = gtool.vjp(graph, {"x": data["input:x:3"]}, cotangents={"y": data["cot:y:3"]}, wrt=["fc.weight"])
    np.testing.assert_allclose(grads["fc.weight"], data["grad:fc.weight:3"], rtol=1e-12, atol=1e-14)


def test_every_truncation_and_bit_flip_is_a_graph_error_never_a_crash(mlp, tmp_path):
    """Damaged files (cut at every 7th byte, one byte flipped at every 5th) either load or
    raise GraphError: no other exception escapes."""
    blob = mlp.read_bytes()
    bad = tmp_path / "bad.onnx"
    damaged = [blob[:k] for k in range(0, len(blob), 7)]
    damaged += [blob[:k] + bytes([blob[k] ^ 0x5A]) + blob[k + 1:] for k in range(0, len(blob), 5)]
    for data in damaged:
        bad.write_bytes(data)
        try:
            gtool.load(bad)
        except GraphError:
            pass


@pytest.mark.parametrize("value, code, text", [
    ("not a list", "onnx-bad-model", "Mismatched attribute type in 'T_0 : perm'"),  # the checker's
    ([5, 7], "bad-axis", "node 0 'T_0' (Transpose): perm entry 5 is out of range for rank 2"),  # gtool's shape rule
])
def test_a_bad_attribute_is_refused_with_the_node_named(tmp_path, value, code, text):
    path = tmp_path / "m.onnx"
    node = helper.make_node("Transpose", ["x"], ["y"], name="T_0")
    node.attribute.append(helper.make_attribute("perm", value))
    save(path, [node], [helper.make_tensor_value_info("x", F, [2, 3])], [helper.make_tensor_value_info("y", F, [3, 2])])
    with pytest.raises(GraphError) as info:
        gtool.load(path)
    assert info.value.code == code and text in str(info.value)


def test_a_symbolic_shape_used_as_data_is_computed_at_run_time(tmp_path):
    """mean over a dynamic batch written as sum / Cast(Shape(x)[0]), and Shape(x) as an
    output: both follow the batch size of the run."""
    path = tmp_path / "dyn.onnx"
    save(path, [helper.make_node("Shape", ["x"], ["shp"]),
                helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
                helper.make_node("Cast", ["n"], ["nf"], to=F),
                helper.make_node("ReduceSum", ["x", "zero1"], ["s"], keepdims=0),
                helper.make_node("Div", ["s", "nf"], ["m"])],
         [helper.make_tensor_value_info("x", F, ["N", 4])],
         [helper.make_tensor_value_info("m", F, [4]), helper.make_tensor_value_info("shp", TensorProto.INT64, [2])],
         [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array([0], np.int64), "zero1")])
    graph = gtool.load(path)
    for n in (3, 5):
        x = RNG.standard_normal((n, 4)).astype(np.float32)
        out = gtool.run(graph, {"x": x})
        np.testing.assert_allclose(out["m"], x.sum(axis=0) / np.float32(n), rtol=1e-6)
        assert out["shp"].dtype == np.int64 and out["shp"].tolist() == [n, 4]


def test_cast_attributes_reach_gtools_cast(tmp_path):
    """Cast's saturate and round_mode (opset 25) are passed to gtool's cast, never dropped."""
    path = tmp_path / "m.onnx"
    save(path, [helper.make_node("Cast", ["a"], ["y"], name="Cast_5", to=TensorProto.DOUBLE, round_mode="down",
                                 saturate=0)],
         [helper.make_tensor_value_info("a", F, [2, 3])], [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2, 3])],
         opset=25)
    node = gtool.load(path).nodes["y"]
    assert node.op == "cast" and node.attrs["round_mode"] == "down" and node.attrs["saturate"] is False


def test_a_folder_argument_includes_onnx_models(mlp, tmp_path, capsys):
    (tmp_path / "other.yaml").write_text("gtool: 1\ninputs: {x: {shape: [2]}}\nnodes: {y: 2 * x}\noutputs: [y]\n")
    (tmp_path / "notes.txt").write_text("not a graph")
    status, out, err = gtool_cli(capsys, "validate", tmp_path, "--format", "json")
    assert status == 0, err
    files = sorted(f["path"].rsplit("/", 1)[-1] for f in json.loads(out)["files"])
    assert files == ["mlp.onnx", "other.yaml"]
