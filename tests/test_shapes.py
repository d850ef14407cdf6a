"""gtool.shapes: every op's shape and dtype rule, symbolic dims, unification, --dim, and the
located, readable errors that inference gives."""

from __future__ import annotations

import json

import pytest

from gtool.cli import main
from gtool.dims import Dim, format_shape
from gtool.format.build import build_graph
from gtool.format.source import load_document
from gtool.ir import TensorType
from gtool.ops.registry import REGISTRY
from gtool.shapes import ShapeCtx, format_type, infer
from gtool.validate import check_graph

DEFAULT_INPUTS = {
    "x": ["b", "n", 4],
    "m": ["b", "n"],
    "v": ["n"],
    "s": [],
    "a": [3, 4],
    "w": [4],
    "t": {"shape": ["b"], "dtype": "int64"},
    "c": {"shape": ["b", "n"], "dtype": "bool"},
    "f": {"shape": [3], "dtype": "float32"},
    "i": {"shape": [3], "dtype": "int64"},
}


def graph_of(nodes: dict, inputs: dict | None = None, dims: dict | None = None):
    """Build (not infer) a graph from JSON-able parts; inputs default to DEFAULT_INPUTS."""
    doc = {"gtool": 1, "inputs": DEFAULT_INPUTS if inputs is None else inputs, "nodes": nodes,
           "outputs": [list(nodes)[-1]]}
    if dims:
        doc["dims"] = dims
    text = json.dumps(doc, indent=1)
    data, marks = load_document(text, "g.json")
    graph, diags = build_graph(data, marks, "g.json")
    assert graph is not None, [d.format() for d in diags]
    return graph


def run_infer(nodes: dict, inputs=None, dims=None, dim_values=None):
    return infer(graph_of(nodes, inputs, dims), dim_values)


def shape(expr, inputs=None, dims=None, dim_values=None) -> str:
    """The inferred shape of one node (shorthand string or explicit dict), as text."""
    inf = run_infer({"out": expr}, inputs, dims, dim_values)
    assert inf.ok, [d.format() for d in inf.diagnostics]
    return format_shape(inf.types["out"].shape)


def typ(expr, inputs=None) -> TensorType:
    inf = run_infer({"out": expr}, inputs)
    assert inf.ok, [d.format() for d in inf.diagnostics]
    return inf.types["out"]


def error(nodes, inputs=None, dims=None, dim_values=None):
    """The one diagnostic inference gives."""
    if not isinstance(nodes, dict):
        nodes = {"out": nodes}
    inf = run_infer(nodes, inputs, dims, dim_values)
    assert len(inf.diagnostics) == 1, [d.format() for d in inf.diagnostics]
    return inf.diagnostics[0]


# elementwise --------------------------------------------------------------------------------

UNARY = ["neg", "exp", "log", "log1p", "expm1", "sqrt", "square", "abs", "sign", "sin", "cos", "tanh", "sigmoid",
         "relu", "softplus", "identity", "stop_gradient"]
FLOAT_OUT = {"exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sigmoid", "softplus"}


@pytest.mark.parametrize("op", UNARY)
def test_unary_keeps_shape(op):
    assert shape(f"{op}(x)") == "[b, n, 4]"
    t = typ({"op": op, "inputs": ["i"]})
    assert t.shape == (Dim.const(3),)
    assert t.dtype == ("float64" if op in FLOAT_OUT else "int64")
    assert typ(f"{op}(f)").dtype == "float32"


BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum"]
REDUCTIONS = ["sum", "mean", "max", "min", "logsumexp"]
SOFTMAXES = ["softmax", "log_softmax"]
OPERATOR_SYNTAX = {"greater": "x > s", "less": "a < w", "equal": "v == v", "matmul": "p @ q"}


@pytest.mark.parametrize("op", BINARY)
def test_binary_broadcasts(op):
    assert shape({"op": op, "inputs": ["a", "w"]}) == "[3, 4]"
    assert shape({"op": op, "inputs": ["x", "s"]}) == "[b, n, 4]"
    assert shape({"op": op, "inputs": ["m", "v"]}) == "[b, n]"


@pytest.mark.parametrize("a,b_,out", [
    ([3, 4], [4], "[3, 4]"),
    ([3, 1], [1, 4], "[3, 4]"),
    (["b", 1], [1, 10], "[b, 10]"),
    ([2, 1, 3], [4, 1], "[2, 4, 3]"),
    ([], [5], "[5]"),
    ([1], ["n"], "[n]"),
    (["n", 1, "k"], [7, 1], "[n, 7, k]"),
])
def test_numpy_broadcasting(a, b_, out):
    assert shape("p + q", {"p": a, "q": b_}) == out
    assert shape("q + p", {"p": a, "q": b_}) == out


def test_broadcast_mismatch_names_both_shapes_and_the_axis():
    d = error("p + q", {"p": [3, 4], "q": [5]})
    assert d.code == "shape-mismatch"
    assert "cannot broadcast [3, 4] with [5]" in d.message
    assert "axis -1 is 4 in one and 5 in another" in d.message
    assert d.node == "out" and d.op == "add"


def test_comparisons_and_where():
    assert typ("x > s") == TensorType((Dim.sym("b"), Dim.sym("n"), Dim.const(4)), "bool")
    assert typ("a < w").dtype == "bool"
    assert typ("v == v").dtype == "bool"
    assert shape("where(c, m, 0)") == "[b, n]"
    assert shape("where(p > 0, p, q)", {"p": [3, 1], "q": [1, 4]}) == "[3, 4]"
    d = error("where(m, m, m)")
    assert d.code == "dtype-mismatch" and "bool" in d.message


def test_weak_scalars_and_promotion():
    assert typ("f * 2").dtype == "float32"
    assert typ("f + 0.5").dtype == "float32"
    assert typ("i * 2").dtype == "int64"
    assert typ("i * 0.5").dtype == "float64"
    assert typ("f + i").dtype == "float64"
    assert typ("2 * 3").weak
    assert typ({"op": "add", "inputs": ["p", "q"]}, {"p": {"shape": [2], "dtype": "int32"},
                                                     "q": {"shape": [2], "dtype": "int64"}}).dtype == "int64"


# free and declared dims -----------------------------------------------------------------------


def test_free_dims_are_bound_by_unification():
    inf = run_infer({"z": "p + q", "u": "p * p"}, {"p": ["n"], "q": [3]})
    assert inf.ok
    assert inf.ctx.bindings == {"n": Dim.const(3)}
    assert format_shape(inf.types["z"].shape) == "[3]"
    assert format_shape(inf.types["u"].shape) == "[3]"  # resolved afterwards too
    assert format_shape(inf.types["p"].shape) == "[3]"


def test_free_dims_bind_to_expressions():
    inf = run_infer({"z": "concat(p, q, axis=0)", "u": "z + r"}, {"p": ["n"], "q": [5], "r": ["k"]})
    assert inf.ok
    assert format_shape(inf.types["u"].shape) == "[n + 5]"
    assert inf.ctx.bindings["k"] == Dim.sym("n") + 5


def test_two_free_dims_unify_with_each_other():
    inf = run_infer({"z": "p + q", "u": "z + r"}, {"p": ["n"], "q": ["k"], "r": [6]})
    assert inf.ok
    assert format_shape(inf.types["u"].shape) == "[6]"
    assert format_shape(inf.types["p"].shape) == format_shape(inf.types["q"].shape) == "[6]"


def test_a_free_dim_cannot_be_two_sizes():
    d = error({"z": "p + q", "u": "p + r"}, {"p": ["n"], "q": [3], "r": [4]})
    assert d.code == "shape-mismatch" and d.node == "u"
    assert "[3] with [4]" in d.message


def test_declared_dims_are_rigid():
    dims = {"batch": 32}
    d = error("p + q", {"p": ["batch"], "q": [32]}, dims)
    assert d.code == "shape-mismatch" and "[batch] with [32]" in d.message
    d = error("p + q", {"p": ["batch"], "q": ["other"]}, {"batch": 32, "other": 32})
    assert d.code == "shape-mismatch"
    assert shape("p + q", {"p": ["batch"], "q": [1]}, dims) == "[batch]"
    assert shape("p + q", {"p": ["batch"], "q": ["batch"]}, dims) == "[batch]"
    # a free dim still binds to a declared one
    assert shape("p + q", {"p": ["batch"], "q": ["n"]}, dims) == "[batch]"


def test_dim_values_bind_for_the_check():
    # [batch] + [4] is wrong in general, right when batch is 4
    inputs = {"p": ["batch"], "q": [4]}
    assert error("p + q", inputs, {"batch": 32}).code == "shape-mismatch"
    assert shape("p + q", inputs, {"batch": 32}, {"batch": 4}) == "[4]"
    # and a free dim given with --dim must agree with the data's shape rules
    assert error("p + q", {"p": ["n"], "q": [3]}, dim_values={"n": 4}).code == "shape-mismatch"
    assert shape("p + q", {"p": ["n"], "q": [3]}, dim_values={"n": 3}) == "[3]"


def test_dim_values_reach_dim_valued_attrs():
    nodes = {"out": {"op": "reshape", "inputs": ["p"], "attrs": {"shape": ["n", -1]}}}
    assert format_shape(run_infer(nodes, {"p": ["n", 4]}, dim_values={"n": 3}).types["out"].shape) == "[3, 4]"
    # and so do bindings made by unification
    nodes = {"z": "p + q", "out": {"op": "reshape", "inputs": ["p"], "attrs": {"shape": ["n"]}}}
    inf = run_infer(nodes, {"p": ["n"], "q": [3]})
    assert inf.ok and format_shape(inf.types["out"].shape) == "[3]"


def test_cli_validate_dim_flag(tmp_path, capsys):
    f = tmp_path / "g.yaml"
    f.write_text("gtool: 1\ndims: {batch: 32}\ninputs:\n  p: [batch]\n  q: [4]\nnodes:\n  z: p + q\noutputs: [z]\n")

    def status(*args):
        with pytest.raises(SystemExit) as info:
            main(["validate", *args, str(f)])
        return info.value.code, capsys.readouterr()

    code, out = status()
    assert code == 1 and "[batch] with [4]" in out.out
    code, out = status("--dim", "batch=4")
    assert code == 0, out
    code, out = status("--dim", "batch=0")
    assert code == 2 and "--dim" in out.err


# reductions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", REDUCTIONS)
@pytest.mark.parametrize("attrs,out", [
    ("", "[]"),
    (", axis=null", "[]"),
    (", axis=1", "[b, 4]"),
    (", axis=-1", "[b, n]"),
    (", axis=[0, 2]", "[n]"),
    (", axis=[-1, 0]", "[n]"),
    (", axis=1, keepdims=true", "[b, 1, 4]"),
    (", axis=[0, -1], keepdims=true", "[1, n, 1]"),
    (", keepdims=true", "[1, 1, 1]"),
])
def test_reductions(op, attrs, out):
    assert shape(f"{op}(x{attrs})") == out


def test_reduction_dtypes():
    assert typ("sum(i)").dtype == "int64"
    assert typ("mean(i)").dtype == "float64"
    assert typ("logsumexp(i)").dtype == "float64"
    assert typ("max(f)").dtype == "float32"
    assert typ("sum(c)").dtype == "int64"


@pytest.mark.parametrize("expr,code", [
    ("sum(x, axis=3)", "bad-axis"),
    ("sum(x, axis=-4)", "bad-axis"),
    ("mean(x, axis=[1, -2])", "bad-axis"),
    ("sum(s, axis=0)", "bad-axis"),
])
def test_reduction_axis_errors(expr, code):
    d = error(expr)
    assert d.code == code
    assert "out of range" in d.message or "twice" in d.message


def test_bad_axis_message():
    d = error("sum(a, axis=3)")
    assert d.message == "axis 3 is out of range for rank 2 (valid: -2..1) (inputs: [3, 4])"


# shape ops ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("expr,out", [
    ("reshape(x, shape=['b', -1])", "[b, 4 * n]"),
    ("reshape(x, shape=[-1])", "[4 * b * n]"),
    ("reshape(x, shape=[-1, 4])", "[b * n, 4]"),
    ("reshape(x, shape=['b', 'n', 2, 2])", "[b, n, 2, 2]"),
    ("reshape(x, shape=['b * n', 4])", "[b * n, 4]"),
    ("reshape(x, shape=[4, 'n', -1])", "[4, n, b]"),
    ("reshape(a, shape=[2, 6])", "[2, 6]"),
    ("reshape(a, shape=[-1, 2])", "[6, 2]"),
    ("reshape(a, shape=[12])", "[12]"),
    ("reshape(z, shape=['b + 1', -1])", "[b + 1, n]"),
    ("reshape(z, shape=[-1, 'n'])", "[b + 1, n]"),
])
def test_reshape_gives_products(expr, out):
    assert shape(expr, {**DEFAULT_INPUTS, "z": ["b + 1", "n"]}) == out


@pytest.mark.parametrize("expr,code", [
    ("reshape(a, shape=[5, -1])", "bad-reshape"),
    ("reshape(a, shape=[5, 2])", "bad-reshape"),
    ("reshape(a, shape=[-1, -1])", "bad-reshape"),
    ("reshape(x, shape=[3, -1])", "bad-reshape"),
])
def test_reshape_errors(expr, code):
    d = error(expr)
    assert d.code == code and d.op == "reshape"


def test_reshape_with_a_free_dim_binds_it():
    inf = run_infer({"out": "reshape(p, shape=[2, 3])"}, {"p": ["n"]})
    assert inf.ok and inf.ctx.bindings == {"n": Dim.const(6)}


@pytest.mark.parametrize("expr,out", [
    ("transpose(x)", "[4, n, b]"),
    ("transpose(x, perm=[1, 0, 2])", "[n, b, 4]"),
    ("transpose(x, perm=[-1, 0, 1])", "[4, b, n]"),
    ("transpose(m)", "[n, b]"),
    ("transpose(s)", "[]"),
])
def test_transpose(expr, out):
    assert shape(expr) == out


@pytest.mark.parametrize("perm", ["[0, 1]", "[0, 0, 1]", "[0, 1, 3]", "[0, 1, 2, 3]"])
def test_transpose_bad_perm(perm):
    assert error(f"transpose(x, perm={perm})").code == "bad-axis"


def test_broadcast_to_and_sum_to():
    assert shape("broadcast_to(w, shape=[3, 4])") == "[3, 4]"
    assert shape("broadcast_to(v, shape=['b', 'n'])") == "[b, n]"
    assert shape("broadcast_to(s, shape=[2, 'k'])") == "[2, k]"
    assert error("broadcast_to(a, shape=[4])").code == "shape-mismatch"
    assert error("broadcast_to(w, shape=[3, 5])").code == "shape-mismatch"
    assert shape("sum_to(a, w)") == "[4]"
    assert shape("sum_to(x, v)", {**DEFAULT_INPUTS, "v": ["n", 1]}) == "[n, 1]"
    assert error("sum_to(w, a)").code == "shape-mismatch"


def test_size():
    t = typ("size(x, axis=1)")
    assert t.shape == () and t.dtype == "float64" and t.weak
    assert error("size(x, axis=5)").code == "bad-axis"


@pytest.mark.parametrize("expr,out", [
    ("expand_dims(m, axis=0)", "[1, b, n]"),
    ("expand_dims(m, axis=-1)", "[b, n, 1]"),
    ("expand_dims(m, axis=[0, 2])", "[1, b, 1, n]"),
    ("expand_dims(s, axis=0)", "[1]"),
    ("squeeze(p)", "[3, 4]"),
    ("squeeze(p, axis=0)", "[3, 1, 4]"),
    ("squeeze(p, axis=[0, -2])", "[3, 4]"),
])
def test_expand_dims_and_squeeze(expr, out):
    assert shape(expr, {**DEFAULT_INPUTS, "p": [1, 3, 1, 4]}) == out


def test_squeeze_errors():
    assert error("squeeze(a, axis=0)").code == "shape-mismatch"
    assert error("expand_dims(m, axis=3)").code == "bad-axis"


@pytest.mark.parametrize("expr,inputs,out", [
    ("concat(p, q, axis=1)", {"p": ["b", "n"], "q": ["b", 5]}, "[b, n + 5]"),
    ("concat(p, q, axis=-1)", {"p": ["b", "n"], "q": ["b", 5]}, "[b, n + 5]"),
    ("concat(p, q, p, axis=1)", {"p": ["b", "n"], "q": ["b", 5]}, "[b, 2 * n + 5]"),
    ("concat(p, q)", {"p": [2, 3], "q": [4, 3]}, "[6, 3]"),
    ("concat(p)", {"p": [2, 3]}, "[2, 3]"),
    ("concat(p, q, axis=0)", {"p": ["n"], "q": ["n"]}, "[2 * n]"),
])
def test_concat_adds_dims_symbolically(expr, inputs, out):
    assert shape(expr, inputs) == out


def test_concat_errors():
    d = error("concat(p, q, axis=1)", {"p": ["b", "n"], "q": [3, 5]}, {"b": 2})
    assert d.code == "shape-mismatch" and "axis 0 is b in one input and 3 in another" in d.message
    assert error("concat(p, q)", {"p": [2, 3], "q": [3]}).code == "shape-mismatch"
    assert error("concat(p, q, axis=2)", {"p": [2, 3], "q": [2, 3]}).code == "bad-axis"


def test_concat_binds_free_dims_off_the_axis():
    inf = run_infer({"out": "concat(p, q, axis=1)"}, {"p": ["b", "n"], "q": ["k", 5]})
    assert inf.ok and format_shape(inf.types["out"].shape) in ("[b, n + 5]", "[k, n + 5]")


def test_cast():
    assert typ("cast(i, dtype='float32')") == TensorType((Dim.const(3),), "float32")
    assert typ("cast(x, dtype='bool')").dtype == "bool"


def test_slice():
    nodes = {"out": {"op": "slice", "inputs": ["m"], "attrs": {"axis": 1, "start": 0, "stop": 2}}}
    assert format_shape(run_infer(nodes).types["out"].shape) == "[b, 2]"
    nodes = {"out": {"op": "slice", "inputs": ["a"], "attrs": {"axis": 1, "start": 3, "stop": 1}}}
    assert run_infer(nodes).diagnostics[0].code == "bad-axis"
    nodes = {"out": {"op": "slice", "inputs": ["a"], "attrs": {"axis": 1, "start": 1, "stop": 5}}}
    assert run_infer(nodes).diagnostics[0].code == "bad-axis"


# indexing -------------------------------------------------------------------------------------------


def test_one_hot():
    assert typ("one_hot(t, depth=10)") == TensorType((Dim.sym("b"), Dim.const(10)), "float64")
    assert shape("one_hot(t, depth='classes')") == "[b, classes]"
    assert typ("one_hot(t, depth=3, dtype='float32')").dtype == "float32"
    assert error("one_hot(m, depth=3)").code == "dtype-mismatch"


def test_take_along_axis():
    inputs = {"p": ["b", 10], "k": {"shape": ["b", 1], "dtype": "int64"}}
    assert shape("take_along_axis(p, k, axis=1)", inputs) == "[b, 1]"
    assert shape("take_along_axis(p, k, axis=-1)", inputs) == "[b, 1]"
    assert error("take_along_axis(p, p, axis=1)", inputs).code == "dtype-mismatch"
    inputs["k"] = {"shape": ["b"], "dtype": "int64"}
    assert error("take_along_axis(p, k, axis=1)", inputs).code == "shape-mismatch"


# activations, norms, dropout (gtool/ops/activations.py, gtool/ops/norm.py) ---------------------------------

ACTIVATIONS = ["erf", "erfc", "gelu", "leaky_relu", "elu", "selu", "hard_sigmoid", "softsign", "reciprocal", "floor",
               "ceil", "round"]


@pytest.mark.parametrize("op", ACTIVATIONS)
def test_activations_keep_shape_and_are_float(op):
    assert shape(f"{op}(x)") == "[b, n, 4]"
    assert typ({"op": op, "inputs": ["i"]}).dtype == "float64"
    assert typ(f"{op}(f)").dtype == "float32"


def test_activation_attrs_are_checked():
    assert typ("gelu(x, approximate='tanh')").dtype == "float64"
    for expr in ("gelu(x, approximate='erf')", "leaky_relu(x, alpha='big')", "elu(x, alpha=true)"):
        text = json.dumps({"gtool": 1, "inputs": DEFAULT_INPUTS, "nodes": {"out": expr}, "outputs": ["out"]})
        data, marks = load_document(text, "g.json")
        graph, diags = build_graph(data, marks, "g.json")
        assert graph is None and [d.code for d in diags] == ["bad-attr"], expr


def test_norm_shapes():
    ins = {"x": ["b", "c", 5], "g": [5], "gc": ["c", 5], "p": ["c"], "q": [4], "r": ["c", 1]}
    assert shape("layer_norm(x, g, g)", ins) == "[b, c, 5]"
    assert shape("layer_norm(x, gc, g, axis=1)", ins) == "[b, c, 5]"
    assert error("layer_norm(x, q, q)", ins).code == "shape-mismatch"
    assert error("layer_norm(x, gc, g)", ins).code == "shape-mismatch"  # rank 2 scale for 1 normalized axis
    assert error("layer_norm(x, g, g, axis=3)", ins).code == "bad-axis"
    assert shape("instance_norm(x, p, p)", ins) == "[b, c, 5]"
    assert shape("batch_norm(x, p, p, p, p, training=true)", ins) == "[b, c, 5]"
    assert error("batch_norm(y, p3, p3, p3, q)", {"y": ["b", 3], "p3": [3], "q": [4]}).code == "shape-mismatch"
    assert error("instance_norm(x, r, p)", ins).code == "shape-mismatch"  # not [C]
    assert error("instance_norm(g, g, g)", ins).code == "shape-mismatch"  # rank 1: no channel axis


def test_dropout_shapes():
    ins = {"x": ["b", 4], "r": [], "k": {"shape": [], "dtype": "bool"}, "v": [2]}
    assert shape("dropout(x, ratio=0.2, training=true)", ins) == "[b, 4]"
    assert shape("dropout(x, r, k)", ins) == "[b, 4]"
    assert error("dropout(x, ratio=1.0)", ins).code == "bad-attr"
    assert error("dropout(x, v)", ins).code == "dtype-mismatch"  # ratio must be a scalar
    assert error("dropout(x, r, r)", ins).code == "dtype-mismatch"  # training must be bool


def test_trunc_div():
    inputs = {"a": {"shape": [3, 1], "dtype": "int32"}, "b": {"shape": [4], "dtype": "int64"}, "f": [4]}
    assert shape("trunc_div(a, b)", inputs) == "[3, 4]"
    assert error("trunc_div(a, f)", inputs).code == "dtype-mismatch"  # floats divide with div
    assert error("trunc_div(b, a)", {"a": {"shape": [3], "dtype": "int32"}, "b": {"shape": [4], "dtype": "int64"}}).code \
        == "shape-mismatch"


# linear algebra -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("p,q,out", [
    ([3, 4], [4], "[3]"),
    ([4], [4, 5], "[5]"),
    ([4], [4], "[]"),
    ([3, 4], [4, 5], "[3, 5]"),
    (["b", "n"], ["n", 10], "[b, 10]"),
    (["k", "b", "n"], ["n", "m"], "[k, b, m]"),
    ([2, 1, 3, 4], [5, 4, 6], "[2, 5, 3, 6]"),
    (["b", 3, 4], [4], "[b, 3]"),
    ([4], ["b", 4, 2], "[b, 2]"),
])
def test_matmul(p, q, out):
    assert shape("p @ q", {"p": p, "q": q}) == out


def test_matmul_binds_the_inner_dim():
    inf = run_infer({"out": "p @ q"}, {"p": ["b", "n"], "q": [7, 10]})
    assert inf.ok and inf.ctx.bindings == {"n": Dim.const(7)}


def test_matmul_errors():
    d = error("p @ q", {"p": [3, 4], "q": [3]})
    assert d.code == "matmul-mismatch" and d.op == "matmul"
    assert "[3, 4] @ [3] (4 vs 3)" in d.message
    assert error("p @ q", {"p": [], "q": [3]}).code == "matmul-mismatch"
    assert error("p @ q", {"p": [2, 3, 4], "q": [5, 4, 6]}).code == "shape-mismatch"
    assert error("p @ q", {"p": ["b", "n"], "q": ["k", 10]}, {"n": 3, "k": 3}).code == "matmul-mismatch"


# neural nets ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", SOFTMAXES)
def test_softmax(op):
    assert shape(f"{op}(x)") == "[b, n, 4]"
    assert shape(f"{op}(x, axis=0)") == "[b, n, 4]"
    assert typ(f"{op}(i)").dtype == "float64"
    assert typ(f"{op}(f)").dtype == "float32"
    assert error(f"{op}(x, axis=3)").code == "bad-axis"
    assert error(f"{op}(s)").code == "bad-axis"


def test_cross_entropy():
    inputs = {"z": ["b", 10], "t": {"shape": ["b"], "dtype": "int64"}}
    assert typ("cross_entropy(z, t)", inputs) == TensorType((), "float64")
    assert shape("cross_entropy(z, t, reduction='sum')", inputs) == "[]"
    assert shape("cross_entropy(z, t, reduction='none')", inputs) == "[b]"
    inputs3 = {"z": ["b", "s", 10], "t": {"shape": ["b", "s"], "dtype": "int32"}}
    assert shape("cross_entropy(z, t, reduction='none')", inputs3) == "[b, s]"


def test_cross_entropy_errors():
    d = error("cross_entropy(z, t)", {"z": [8, 10], "t": {"shape": [8, 10], "dtype": "int64"}})
    assert d.code == "shape-mismatch" and "logits.shape[:-1]" in d.message and "[8, 10] vs [8]" in d.message
    d = error("cross_entropy(z, t)", {"z": [8, 10], "t": [8]})
    assert d.code == "dtype-mismatch" and "targets" in d.message
    assert error("cross_entropy(z, t)", {"z": [], "t": {"shape": [], "dtype": "int64"}}).code == "shape-mismatch"
    inputs = {"z": ["b", 10], "t": {"shape": ["n"], "dtype": "int64"}}
    inf = run_infer({"out": "cross_entropy(z, t)"}, inputs)
    assert inf.ok and inf.types["t"].shape == inf.types["z"].shape[:1]


# declared node shapes and error locations ---------------------------------------------------------------


DECLARED = """\
gtool: 1
inputs:
  x: {shape: [b, 3]}
  W: {shape: [3, 10]}
nodes:
  h:
    op: matmul
    inputs: [x, W]
    shape: [b, 12]
  y: relu(h)
outputs: [y]
"""


def check_text(text: str, path: str = "g.yaml", dim_values=None):
    data, marks = load_document(text, path)
    graph, diags = build_graph(data, marks, path)
    assert graph is not None, [d.format() for d in diags]
    _, errors, warnings = check_graph(graph, dim_values)
    return errors, warnings


def test_declared_shape_mismatch_is_located_and_readable():
    errors, _ = check_text(DECLARED)
    assert len(errors) == 1  # y, which reads h, is not reported again
    d = errors[0]
    assert d.code == "shape-mismatch"
    assert d.message.startswith("inferred [b, 10] but declared [b, 12]")
    assert "(inputs: [b, 3], [3, 10])" in d.message
    assert (d.path, d.line, d.column, d.pointer, d.node, d.op) == ("g.yaml", 6, 3, "/nodes/h", "h", "matmul")
    assert d.format().startswith("g.yaml:6:3: error: node 'h' (matmul): inferred [b, 10] but declared [b, 12]")


def test_declared_shape_binds_free_dims_and_matches_symbolically():
    text = DECLARED.replace("[b, 12]", "[b, 10]")
    assert check_text(text) == ([], [])
    text = DECLARED.replace("x: {shape: [b, 3]}", "x: {shape: [b, k]}").replace("[b, 12]", "[b, 10]")
    assert check_text(text) == ([], [])
    text = DECLARED.replace("[b, 12]", "['b * 1', 10]")
    assert check_text(text) == ([], [])


def test_error_inside_an_expression_points_at_its_owner():
    text = "gtool: 1\ninputs:\n  p: [3, 4]\n  q: [5]\nnodes:\n  ok: p * 2\n  z: relu(p + q) * 2\noutputs: [z, ok]\n"
    errors, _ = check_text(text)
    assert len(errors) == 1
    d = errors[0]
    assert (d.node, d.line, d.column, d.pointer, d.op) == ("z", 7, 3, "/nodes/z", "add")
    assert "[3, 4] with [5]" in d.message


def test_one_mistake_one_error():
    text = ("gtool: 1\ninputs:\n  p: [3, 4]\n  q: [5]\nnodes:\n  a: p + q\n  b: a * 2\n  c: sum(b)\n"
            "  d: c + a\noutputs: [d]\n")
    errors, _ = check_text(text)
    assert [e.node for e in errors] == ["a"]


def test_independent_mistakes_are_all_reported():
    text = ("gtool: 1\ninputs:\n  p: [3, 4]\n  q: [5]\nnodes:\n  a: p + q\n  b: p @ q\n  c: sum(p, axis=2)\n"
            "outputs: [a, b, c]\n")
    errors, _ = check_text(text)
    assert [(e.node, e.code) for e in errors] == [("a", "shape-mismatch"), ("b", "matmul-mismatch"), ("c", "bad-axis")]


def test_non_scalar_loss():
    text = "gtool: 1\ninputs:\n  p: [3]\nnodes:\n  h: p * 2\noutputs: [h]\nloss: h\n"
    errors, _ = check_text(text)
    assert len(errors) == 1 and errors[0].code == "non-scalar-loss"
    assert (errors[0].line, errors[0].column, errors[0].pointer, errors[0].node) == (7, 1, "/loss", "h")
    assert "[3]" in errors[0].message


# the unifier on its own ---------------------------------------------------------------------------------------


def test_shape_ctx_unify():
    ctx = ShapeCtx(rigid={"batch"})
    n, k, batch = Dim.sym("n"), Dim.sym("k"), Dim.sym("batch")
    assert ctx.unify(n + 1, Dim.const(5))
    assert ctx.resolve(n) == 4
    assert not ctx.unify(n, Dim.const(3))
    assert not ctx.unify(batch, Dim.const(32))
    assert ctx.unify(k, batch) and ctx.resolve(k) == batch
    assert not ctx.unify(Dim.sym("j") + 5, Dim.const(5))  # would make j = 0
    assert ctx.broadcast((n, Dim.const(1)), (Dim.const(1), k)) == (Dim.const(4), batch)
    assert ShapeCtx.axis(-1, 3) == 2
    assert ctx.axes(None, 2) == (0, 1)
    assert format_type(TensorType((n,), "float32", True)) == "[n] float32 (weak)"


# every op is covered ------------------------------------------------------------------------------------------


def test_every_registered_op_has_a_shape_test():
    """Each built-in op of the registry appears in this file's cases (plugins and test ops excepted)."""
    import re
    from pathlib import Path

    text = Path(__file__).read_text()
    used = set(re.findall(r"\b([a-z_0-9]+)\(", text)) | set(re.findall(r'"op": "([a-z_]+)"', text))
    used |= set(UNARY) | set(BINARY) | set(REDUCTIONS) | set(SOFTMAXES) | set(ACTIVATIONS)
    used |= {op for op, expr in OPERATOR_SYNTAX.items() if expr in text}
    builtin = [name for name, op in REGISTRY.items() if op.plugin is None and op.infer.__module__.startswith("gtool.ops")]
    missing = sorted(name for name in builtin if name not in used)
    assert not missing, f"ops without a shape test: {missing}"


# convolution and pooling (gtool/ops/conv.py, gtool/ops/pool.py) -----------------------------------------

WIN = {"x": ["n", 3, "h", "w"], "W": [8, 3, 3, 3], "V": [6, 1, 3, 3], "g": ["n", 8, "h", "w"], "y": [2, 3, 9, 8],
       "p": [2, 3, 4, 4], "z": [2, 8, 5, 4]}


@pytest.mark.parametrize("expr,out", [
    ("conv(x, W)", "[n, 8, h - 2, w - 2]"),
    ("conv(x, W, stride=2, padding=1)", "[n, 8, ((h + 1) // 2), ((w + 1) // 2)]"),
    ("conv(x, W, auto_pad=same_upper, stride=2)", "[n, 8, ((h + 1) // 2), ((w + 1) // 2)]"),
    ("conv(x, W, dilation=2, padding=[2, 0])", "[n, 8, h, w - 4]"),
    ("conv(y, V, groups=3)", "[2, 6, 7, 6]"),
    ("conv_transpose(g, W, padding=1)", "[n, 3, h, w]"),
    ("conv_transpose(z, W, stride=2, output_padding=1)", "[2, 3, 12, 10]"),
    ("conv_transpose(z, W, stride=2, output_shape=[11, 10])", "[2, 3, 11, 10]"),
    ("conv_filter(y, z, kernel=[3, 3], stride=[2, 2], padding=1)", "[8, 3, 3, 3]"),
    ("max_pool(x, kernel=2)", "[n, 3, (h // 2), (w // 2)]"),
    ("max_pool(y, kernel=2, ceil_mode=true)", "[2, 3, 5, 4]"),
    ("max_pool_indices(y, kernel=3, stride=2, padding=1)", "[2, 3, 5, 4]"),
    ("avg_pool(y, kernel=[3, 2], stride=1, auto_pad=same_lower)", "[2, 3, 9, 8]"),
    ("max_pool_pick(y, y, kernel=2)", "[2, 3, 4, 4]"),
    ("max_pool_grad(y, p, kernel=2)", "[2, 3, 9, 8]"),
    ("avg_pool_grad(p, y, kernel=2)", "[2, 3, 9, 8]"),
    ("flatten(x)", "[n, 3 * h * w]"),
    ("flatten(x, axis=0)", "[1, 3 * h * n * w]"),
])
def test_window_ops_keep_dims_symbolic(expr, out):
    assert shape(expr, WIN) == out


# tile, pad, cumsum, argmax, argmin, prod, greater_equal, less_equal (gtool/ops/indexing.py, products.py)

IDX = {"x": ["n", 3], "y": [3], "z": [2, 5]}


@pytest.mark.parametrize("expr,out", [
    ("tile(x, reps=[2, 1])", "[2 * n, 3]"),
    ("tile(x, reps=[1, 4])", "[n, 12]"),
    ("pad(x, pads=[1, 0, 1, 2])", "[n + 2, 5]"),
    ("pad(x, pads=[-1, 1, 0, 1], mode=reflect)", "[n - 1, 5]"),
    ("pad(z, pads=[0, -2, 1, 3], mode=wrap)", "[3, 6]"),
    ("cumsum(x, axis=0, reverse=true)", "[n, 3]"),
    ("argmax(x)", "[n]"),
    ("argmin(x, axis=0, keepdims=true)", "[1, 3]"),
    ("prod(x, axis=1)", "[n]"),
    ("prod(x)", "[]"),
    ("greater_equal(x, y)", "[n, 3]"),
    ("less_equal(y, z)", None),
])
def test_indexing_ops_keep_dims_symbolic(expr, out):
    if out is None:
        assert error(expr, IDX).code == "shape-mismatch"
    else:
        assert shape(expr, IDX) == out


@pytest.mark.parametrize("expr,code", [
    ("tile(x, reps=[2])", "bad-attr"),
    ("tile(x, reps=[0, 1])", "bad-attr"),
    ("pad(x, pads=[1, 1])", "bad-attr"),
    ("pad(z, pads=[0, 0, 0, 5], mode=reflect)", "bad-attr"),
    ("pad(z, pads=[0, 0, 0, 4], mode=reflect)", None),
    ("pad(z, pads=[0, 6, 0, 0], mode=wrap)", "bad-attr"),
    ("pad(z, pads=[-1, 0, -1, 0])", "bad-attr"),
    ("cumsum(x, axis=2)", "bad-axis"),
    ("argmax(x, axis=-3)", "bad-axis"),
])
def test_indexing_op_errors(expr, code):
    if code is None:
        assert shape(expr, IDX) == "[2, 9]"
    else:
        assert error(expr, IDX).code == code


@pytest.mark.parametrize("expr,code", [
    ("conv(y, W, groups=2)", "shape-mismatch"),
    ("conv(y, W, stride=[1, 2, 3])", "bad-attr"),
    ("max_pool(y, kernel=2, padding=2)", "bad-attr"),
    ("conv_transpose(z, W, stride=2, output_shape=[13, 10])", "shape-mismatch"),
    ("max_pool_grad(y, y, kernel=2)", "shape-mismatch"),
])
def test_window_op_errors(expr, code):
    assert error(expr, WIN).code == code
