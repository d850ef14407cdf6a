"""`--loss EXPR` (gtool.loss.with_loss and the flag on grad, grad-check, render, explain): the
gradients against closed forms, the new inputs' types, and every error a user can make."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gtool
from gtool.cli import main
from gtool.errors import UsageError
from gtool.loss import with_loss

LINEAR = "graphs/linear_mse.yaml"  # y = W x + b with W, x, b given in the file
W = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
X = np.array([1.0, 0.5, -1.0])
B = np.array([0.5, -0.5])
R = np.array([0.75, -2.0])

MODEL = """\
gtool: 1
name: classifier
dims: {batch: 8}
inputs:
  x: {shape: [batch, 3]}
params:
  W: {shape: [3, 4], init: {normal: {std: 1.0}}}
nodes:
  logits: x @ W
outputs: [logits]
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("loss") / "model.yaml"
    path.write_text(MODEL)
    return gtool.load(path)


def cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


# the library function -----------------------------------------------------------------------


def test_sum_of_output_times_data_closed_form():
    g = with_loss(gtool.load(LINEAR), "sum(y * r)", {"r": R})
    loss, grads = gtool.value_and_grad(g, {"r": R}, wrt=["W", "b", "x"])
    assert loss == pytest.approx(float(R @ (W @ X + B)), rel=1e-15)
    np.testing.assert_array_equal(grads["W"], np.outer(R, X))
    np.testing.assert_array_equal(grads["b"], R)
    np.testing.assert_array_equal(grads["x"], W.T @ R)


def test_cross_entropy_with_targets_from_data(model):
    rng = np.random.default_rng(3)
    x, w, t = rng.standard_normal((6, 3)), rng.standard_normal((3, 4)), np.array([0, 3, 1, 1, 2, 0])
    g = with_loss(model, "cross_entropy(logits, t)", {"t": t})
    assert g.tensors["t"].dtype == "int64" and [str(d) for d in g.tensors["t"].shape] == ["batch"]
    loss, grads = gtool.value_and_grad(g, {"x": x, "W": w, "t": t}, wrt=["W"])
    z = x @ w
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(6), t])), rel=1e-13)
    np.testing.assert_allclose(grads["W"], x.T @ ((p - np.eye(4)[t]) / 6), rtol=1e-12, atol=1e-15)


def test_the_model_keeps_its_outputs_and_a_taken_name_is_avoided(tmp_path):
    g = gtool.load(LINEAR)
    g2 = with_loss(g, "sum(y)")
    assert g2.loss == "loss" and g2.outputs == ("y", "L", "loss") and g.loss == "L"
    path = tmp_path / "named.yaml"
    path.write_text("gtool: 1\ninputs:\n  x: {shape: [2]}\nnodes:\n  loss: 2.0 * x\noutputs: [loss]\n")
    g3 = with_loss(gtool.load(path), "sum(loss * loss)")
    assert g3.loss == "loss_2"
    _, grads = gtool.value_and_grad(g3, {"x": [1.0, -3.0]}, wrt=["x"])
    np.testing.assert_array_equal(grads["x"], [8.0, -24.0])


def test_a_size_one_axis_of_the_data_broadcasts(model):
    g = with_loss(model, "sum(logits * r)", {"r": np.ones((1, 4))})
    assert [str(d) for d in g.tensors["r"].shape] == ["1", "4"]
    _, grads = gtool.value_and_grad(g, {"x": np.ones((2, 3)), "W": np.zeros((3, 4)), "r": [[1.0, 2.0, 3.0, 4.0]]},
                                    wrt=["W"])
    np.testing.assert_array_equal(grads["W"], np.tile([[2.0, 4.0, 6.0, 8.0]], (3, 1)))


def test_data_of_another_batch_size_than_the_model_is_refused_at_run(model):
    g = with_loss(model, "cross_entropy(logits, t)", {"t": np.zeros(5, np.int64)})
    with pytest.raises(UsageError) as info:
        gtool.value_and_grad(g, {"x": np.ones((6, 3)), "t": np.zeros(5, np.int64)})
    assert info.value.code == "bad-input" and "'t'" in str(info.value) and "batch" in str(info.value)


def _refused(graph, expr, data=None) -> UsageError:
    with pytest.raises(UsageError) as info:
        with_loss(graph, expr, data)
    return info.value


def test_unknown_name_suggests_the_output(model):
    e = _refused(model, "cross_entropy(logit, t)", {"t": np.zeros(8, np.int64)})
    assert e.code == "unknown-name" and "'logit'" in str(e) and "did you mean 'logits'" in str(e)


def test_a_name_without_data_says_what_is_missing(model):
    e = _refused(model, "sum(logits * r)", {"rr": np.ones(4)})
    assert e.code == "unknown-name" and "no data" in str(e) and "did you mean 'rr'" in str(e)


def test_syntax_error_has_a_caret_under_the_column(model):
    e = _refused(model, "sum(logits *)")
    assert e.code == "bad-expression"
    line, caret = e.diagnostic.hint.split("\n")
    assert line == "sum(logits *)"
    # the hint is printed after "    hint: ": the caret must sit under the ')' there
    assert len(caret) - 1 == len("    hint: ") + line.index(")")
    printed = str(e).split("\n")
    assert printed[-1].index("^") == printed[-2].index(")")


def test_non_scalar_loss(model):
    e = _refused(model, "logits * 2.0")
    assert e.code == "non-scalar-loss" and "[batch, 4]" in str(e) and "sum(" in e.diagnostic.hint


def test_integer_loss_and_unknown_op_and_bad_attr(model):
    assert _refused(model, "sum(t)", {"t": np.arange(3)}).code == "dtype-mismatch"
    e = _refused(model, "summ(logits)")
    assert e.code == "unknown-op" and "did you mean 'sum'" in str(e)
    assert _refused(model, "sum(logits, axs=1)").code == "bad-attr"
    assert _refused(model, "sum(logits, axis=3)").code == "bad-axis"


def test_shapes_that_do_not_fit_the_model(model):
    e = _refused(model, "sum(logits * r)", {"r": np.ones((8, 5))})
    assert e.code == "shape-mismatch" and "--loss" in str(e)


def test_unsupported_data_dtype(model):
    assert _refused(model, "sum(logits * r)", {"r": np.ones(4, np.complex64)}).code == "bad-input"


# the flag --------------------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "batch.npz"
    np.savez(path, r=R)
    return path


def test_grad_flag_matches_the_closed_form(capsys, data):
    status, out, err = cli(capsys, "grad", LINEAR, "--loss", "sum(y * r)", "--inputs", data, "--wrt", "W,x",
                           "--format", "json")
    assert status == 0, err
    doc = json.loads(out)
    assert doc["loss"]["name"] == "loss"
    np.testing.assert_array_equal(doc["gradients"]["W"]["value"], np.outer(R, X))
    np.testing.assert_array_equal(doc["gradients"]["x"]["value"], W.T @ R)


def test_grad_flag_with_dtype_casts_the_loss_too(capsys, data):
    status, out, err = cli(capsys, "grad", LINEAR, "--loss", "sum(y * r)", "--inputs", data, "--dtype", "float32",
                           "--format", "json")
    assert status == 0, err
    assert json.loads(out)["gradients"]["W"]["dtype"] == "float32"


def test_grad_check_render_explain_take_the_flag(capsys, data):
    status, out, err = cli(capsys, "grad-check", LINEAR, "--loss", "sum(y * r)", "--inputs", data)
    assert status == 0, out + err
    status, out, err = cli(capsys, "render", LINEAR, "--loss", "sum(y * r)", "--inputs", data, "--grads")
    assert status == 0, err
    assert '"loss"' in out or "loss" in out.split("digraph", 1)[1]
    status, out, err = cli(capsys, "explain", LINEAR, "--loss", "sum(y * r)", "--inputs", data)
    assert status == 0, err
    assert "gradients of loss" in out and "g ⊙ r" in out


def test_flag_errors_exit_2(capsys, data):
    status, _, err = cli(capsys, "grad", LINEAR, "--loss", "sum(y * rr)", "--inputs", data)
    assert status == 2 and "[unknown-name]" in err and "did you mean 'r'" in err
    status, _, err = cli(capsys, "grad", LINEAR, "--loss", "sum(y * r", "--inputs", data)
    assert status == 2 and "[bad-expression]" in err and "^" in err
    status, _, err = cli(capsys, "grad", LINEAR, "--loss", "y", "--of", "L")
    assert status == 2 and "--of" in err
    status, _, err = cli(capsys, "grad-check", LINEAR, "--loss", "y * r", "--inputs", data)
    assert status == 2 and "[non-scalar-loss]" in err


def test_backquoted_names_that_are_not_identifiers():
    """ONNX names need not be identifiers (torch names unnamed outputs `19`, or `output.1`)."""
    from gtool.ir import Node

    g = gtool.load(LINEAR)
    rename = {"y": "out.1"}
    nodes = {}
    for node in g.nodes.values():
        n = Node(rename.get(node.name, node.name), node.op, tuple(rename.get(i, i) for i in node.inputs), node.attrs,
                 loc=node.loc, owner=node.owner)
        nodes[n.name] = n
    g = g.evolve(nodes=nodes, outputs=("out.1", "L"))
    g2 = with_loss(g, "sum(`out.1` * `r.0`)", {"r.0": R})
    _, grads = gtool.value_and_grad(g2, {"r.0": R}, wrt=["W"])
    np.testing.assert_array_equal(grads["W"], np.outer(R, X))
    e = _refused(g, "sum(`out.2` * r)", {"r": R})
    assert e.code == "unknown-name" and "'out.2'" in str(e) and "did you mean 'out.1'" in str(e)
    e = _refused(g, "sum(`out.1` *)")
    assert e.code == "bad-expression" and e.diagnostic.hint.split("\n")[0] == "sum(`out.1` *)"
