"""gtool.format.expr: the node shorthand grammar, its naming, and every refused form."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtool.errors import GraphError
from gtool.format.expr import (
    MAX_DEPTH,
    MAX_LENGTH,
    ExprConst,
    ExprNode,
    parse_expression,
)


def parse(text: str, owner: str = "L"):
    return parse_expression(text, owner)


def shape(text: str, owner: str = "L"):
    """(op, inputs, attrs) per node and {name: value} of constants, for compact asserts."""
    nodes, consts = parse(text, owner)
    return [(n.name, n.op, n.inputs, n.attrs) for n in nodes], {c.name: c.value for c in consts}


def refused(text: str, owner: str = "L") -> GraphError:
    with pytest.raises(GraphError) as info:
        parse(text, owner)
    err = info.value
    assert err.code == "bad-expression"
    assert err.diagnostic.node == owner
    return err


# ------------------------------------------------------------------------------------
# the grammar and its mapping onto ops


def test_precedence_neg_of_pow():
    assert shape("-x ** 2") == (
        [("__L_2", "pow", ("x", "__L_1"), {}), ("L", "neg", ("__L_2",), {})],
        {"__L_1": 2},
    )


def test_precedence_mul_over_add():
    assert shape("a + b * c")[0] == [
        ("__L_1", "mul", ("b", "c"), {}),
        ("L", "add", ("a", "__L_1"), {}),
    ]


def test_matmul_then_add():
    assert shape("x @ W + b")[0] == [
        ("__L_1", "matmul", ("x", "W"), {}),
        ("L", "add", ("__L_1", "b"), {}),
    ]


def test_associativity():
    assert shape("a - b - c")[0] == [
        ("__L_1", "sub", ("a", "b"), {}),
        ("L", "sub", ("__L_1", "c"), {}),
    ]
    assert shape("a ** b ** c")[0] == [
        ("__L_1", "pow", ("b", "c"), {}),
        ("L", "pow", ("a", "__L_1"), {}),
    ]
    assert shape("a / b @ c * d")[0] == [
        ("__L_1", "div", ("a", "b"), {}),
        ("__L_2", "matmul", ("__L_1", "c"), {}),
        ("L", "mul", ("__L_2", "d"), {}),
    ]


def test_parentheses():
    assert shape("(a + b) * c")[0] == [
        ("__L_1", "add", ("a", "b"), {}),
        ("L", "mul", ("__L_1", "c"), {}),
    ]


def test_where_with_comparison_and_constants():
    nodes, consts = shape("where(x > 0, x, 0)")
    assert nodes == [
        ("__L_2", "greater", ("x", "__L_1"), {}),
        ("L", "where", ("__L_2", "x", "__L_3"), {}),
    ]
    assert consts == {"__L_1": 0, "__L_3": 0}


@pytest.mark.parametrize(
    ("text", "op"), [("a > b", "greater"), ("a < b", "less"), ("a == b", "equal")]
)
def test_comparisons(text, op):
    assert shape(text)[0] == [("L", op, ("a", "b"), {})]


def test_comparison_is_lowest():
    assert shape("a + 1 > b * 2")[0] == [
        ("__L_2", "add", ("a", "__L_1"), {}),
        ("__L_4", "mul", ("b", "__L_3"), {}),
        ("L", "greater", ("__L_2", "__L_4"), {}),
    ]


def test_parenthesized_comparison_is_an_atom():
    assert shape("(a > b) == c")[0] == [
        ("__L_1", "greater", ("a", "b"), {}),
        ("L", "equal", ("__L_1", "c"), {}),
    ]


@pytest.mark.parametrize(
    ("text", "nodes"),
    [
        ("sum(x, axis=1, keepdims=true)", [("L", "sum", ("x",), {"axis": 1, "keepdims": True})]),
        ("softmax(h, axis=-1)", [("L", "softmax", ("h",), {"axis": -1})]),
        ("transpose(x, perm=[1, 0])", [("L", "transpose", ("x",), {"perm": [1, 0]})]),
        ("cast(t, dtype='float64')", [("L", "cast", ("t",), {"dtype": "float64"})]),
        ('cast(t, dtype="int32")', [("L", "cast", ("t",), {"dtype": "int32"})]),
        ("reshape(x, shape=[b, -1])", [("L", "reshape", ("x",), {"shape": ["b", -1]})]),
        ("one_hot(t, depth=n_cls)", [("L", "one_hot", ("t",), {"depth": "n_cls"})]),
        ("broadcast_to(x, shape=[b, n * 5])", [("L", "broadcast_to", ("x",), {"shape": ["b", "n * 5"]})]),
        ("f(x, shape=[n+5, (n - 1)//2, 2*b])", [("L", "f", ("x",), {"shape": ["n + 5", "(n - 1) // 2", "2 * b"]})]),
        ("sum(x, axis=null)", [("L", "sum", ("x",), {"axis": None})]),
        ("sum(x, axis=None, keepdims=False)", [("L", "sum", ("x",), {"axis": None, "keepdims": False})]),
        ("sum(x, axis=[0, -1], keepdims=True)", [("L", "sum", ("x",), {"axis": [0, -1], "keepdims": True})]),
        ("f(x, eps=1e-5, k=-2.5, m=[[1, 2], [3]], s=[])",
         [("L", "f", ("x",), {"eps": 1e-5, "k": -2.5, "m": [[1, 2], [3]], "s": []})]),
        ("cross_entropy(logits, t, reduction='none')", [("L", "cross_entropy", ("logits", "t"), {"reduction": "none"})]),
        ("concat(a, b, c, axis=1)", [("L", "concat", ("a", "b", "c"), {"axis": 1})]),
        ("f()", [("L", "f", (), {})]),
        ("sum_to(x, like)", [("L", "sum_to", ("x", "like"), {})]),
    ],
)  # fmt: skip
def test_calls_and_attrs(text, nodes):
    assert shape(text)[0] == nodes


def test_nested_calls_and_naming():
    nodes, consts = shape("relu(x @ W1 + b1)", owner="h1")
    assert nodes == [
        ("__h1_1", "matmul", ("x", "W1"), {}),
        ("__h1_2", "add", ("__h1_1", "b1"), {}),
        ("h1", "relu", ("__h1_2",), {}),
    ]
    assert consts == {}


def test_one_counter_for_nodes_and_constants_in_post_order():
    nodes, consts = parse("2 * x + exp(-y) / 3", owner="z")
    assert [(n.name, n.op) for n in nodes] == [
        ("__z_2", "mul"),
        ("__z_3", "neg"),
        ("__z_4", "exp"),
        ("__z_6", "div"),
        ("z", "add"),
    ]
    assert consts == [ExprConst("__z_1", 2), ExprConst("__z_5", 3)]
    assert nodes[-1].name == "z"  # the owner's node is last


def test_dependency_order():
    nodes, consts = parse("where(a > b, sum(a * b, axis=0), -(a - b))")
    defined = {c.name for c in consts}
    for n in nodes:
        for i in n.inputs:
            assert not i.startswith("__") or i in defined
        defined.add(n.name)
    assert nodes[-1].name == "L" and nodes[-1].op == "where"


def test_bare_name_is_identity():
    assert shape("x") == ([("L", "identity", ("x",), {})], {})
    assert shape("  (x)  ") == ([("L", "identity", ("x",), {})], {})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("2.5", 2.5),
        ("1e-12", 1e-12),
        ("-3", -3),
        ("-0.5", -0.5),
        ("true", True),
        ("false", False),
    ],
)
def test_bare_number_is_identity_of_a_constant(text, value):
    nodes, consts = shape(text)
    assert nodes == [("L", "identity", ("__L_1",), {})]
    assert consts == {"__L_1": value}
    assert type(consts["__L_1"]) is type(value)


def test_negative_literal_folds_but_negation_does_not():
    assert shape("x * -2") == ([("L", "mul", ("x", "__L_1"), {})], {"__L_1": -2})
    assert shape("2 ** -1") == ([("L", "pow", ("__L_1", "__L_2"), {})], {"__L_1": 2, "__L_2": -1})
    assert shape("-x") == ([("L", "neg", ("x",), {})], {})
    assert shape("x ** -y")[0] == [("__L_1", "neg", ("y",), {}), ("L", "pow", ("x", "__L_1"), {})]
    # -3 ** 2 is -(3 ** 2): the minus applies to the power, not to the literal
    assert shape("-3 ** 2") == (
        [("__L_3", "pow", ("__L_1", "__L_2"), {}), ("L", "neg", ("__L_3",), {})],
        {"__L_1": 3, "__L_2": 2},
    )
    assert shape("--x")[0] == [("__L_1", "neg", ("x",), {}), ("L", "neg", ("__L_1",), {})]


def test_booleans_as_positional_constants():
    assert shape("where(c, true, False)") == (
        [("L", "where", ("c", "__L_1", "__L_2"), {})],
        {"__L_1": True, "__L_2": False},
    )


def test_multiline_text():
    assert shape("a +\n  b")[0] == [("L", "add", ("a", "b"), {})]
    assert shape("f(x,\n  axis=1)\n")[0] == [("L", "f", ("x",), {"axis": 1})]


def test_hash_inside_a_string_attr_is_text():
    assert shape("f(x, s='a#b')")[0] == [("L", "f", ("x",), {"s": "a#b"})]


def test_dataclasses():
    nodes, consts = parse("x + 1")
    node = nodes[0]
    assert isinstance(node, ExprNode) and isinstance(consts[0], ExprConst)
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.op = "sub"  # type: ignore[misc]
    hash(node)  # attrs is left out of the hash
    assert node == ExprNode("L", "add", ("x", "__L_1"), {})


# ------------------------------------------------------------------------------------
# refused forms


@pytest.mark.parametrize(
    ("text", "words", "column"),
    [
        ("x // 2", "'//' is not supported", 3),
        ("x % 2", "'%' is not supported", 3),
        ("a & b", "'&' is not supported", 3),
        ("a | b", "'|' is not supported", 3),
        ("a << 1", "'<<' is not supported", 3),
        ("(a)  //  b", "'//'", 6),
        ("  x // 2", "'//'", 5),
        ("   x +", "ends too early", 7),
        ("a and b", "boolean operators", 1),
        ("a or b", "boolean operators", 1),
        ("not a", "boolean operators", 1),
        ("a < b < c", "chained comparisons", 7),
        ("a != b", "'!=' is not supported", 3),
        ("a >= b", "'>=' is not supported", 3),
        ("a <= b", "'<=' is not supported", 3),
        ("a is b", "'is' is not supported", 3),
        ("a in b", "'in' is not supported", 3),
        ("x.T", "attribute access", 1),
        ("np.exp(x)", "attribute access", 1),
        ("a[0]", "indexing", 1),
        ("a[1:2]", "indexing", 1),
        ("lambda: 1", "lambda", 1),
        ("f'{x}'", "f-strings", 1),
        ("f(x, s=f'{y}')", "attr 's'", 8),
        ("a if c else b", "conditional", 1),
        ("{1: 2}", "dicts", 1),
        ("{a}", "sets", 1),
        ("a, b", "tuples", 1),
        ("(y := 1)", "assignment", 2),
        ("[x for x in y]", "comprehensions", 1),
        ("f(*a)", "unpacking", 3),
        ("f(**a)", "unpacking", 3),
        ("+x", "unary '+'", 1),
        ("~x", "unary '~'", 1),
        ("[1, 2]", "lists are only allowed as attr values", 1),
        ("'text'", "strings are only allowed as attr values", 1),
        ("x + 'a'", "strings are only allowed", 5),
        ("null", "null is only allowed", 1),
        ("f(None)", "None is only allowed", 3),
        ("1j", "complex", 1),
        ("f(a=1, b)", "positional argument follows keyword argument", 9),
        ("f(a=1, a=2)", "'a' is given twice", 8),
        ("f(x, axis=g(x))", "attr 'axis'", 11),
        ("f(x, axis=-y)", "attr 'axis'", 11),
        ("f(x, shape=[n + 1.5])", "attr 'shape'", 13),
        ("f(x, shape=[n / 2])", "attr 'shape'", 13),
        ("f(x, k=(1, 2))", "attr 'k'", 8),
        ("f(x, k={'a': 1})", "attr 'k'", 8),
        ("(x + 1", "'(' was never closed", 1),
        ("x + 1)", "unmatched ')'", 6),
        ("f(x", "was never closed", 2),
        ("x +", "ends too early", 4),
        ("x = 1", "invalid syntax", 3),
        ("x # comment", "comments", 3),
        ("caf\u00e9 + 1", "not a valid name", 1),
        ("\u00e9\u00e9 // 2", "'//'", 4),
        ("f\u00e9(x)", "not a valid op name", 1),
    ],
)
def test_refused_forms(text, words, column):
    err = refused(text)
    msg = err.diagnostic.message
    assert words in msg
    assert repr(text) in msg  # the expression is quoted
    assert f"(column {column})" in msg


def test_operator_message_lists_the_operators():
    msg = refused("x // 2").diagnostic.message
    assert "+ - * / @ **" in msg and "> < ==" in msg
    assert "> < ==" in refused("a >= b").diagnostic.message


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty(text):
    assert "empty" in refused(text).diagnostic.message


def test_multiline_error_gives_line_and_column():
    assert "(line 2, column 2)" in refused("x\n // y").diagnostic.message


def test_not_a_string():
    assert "expected a string" in refused(12).diagnostic.message  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("(" * 10_000 + "x" + ")" * 10_000, "longer than"),
        ("x" * (MAX_LENGTH + 1), "longer than"),
        ("(" * 150 + "x" + ")" * 150, "nested more than"),
        ("f(" * 150 + "x" + ")" * 150, "nested more than"),
        ("[" * 150, "nested more than"),
        ("-" * 9_999 + "x", "nested more than"),
        ("-" * 100_000 + "x", "longer than"),
        ("+".join(["a"] * 3_000), "nested more than"),
        ("a" + "**a" * 2_000, "nested more than"),
        ("f(x, k=" + "[" * 120 + "]" * 120 + ")", "nested more than"),
        ("1" * 5_000, "too many digits"),
        ("x\x00", "null bytes"),
        ("x + \ud800", "not valid Unicode"),
    ],
    ids=["parens-20k", "long-name", "parens", "calls", "brackets", "unary", "unary-100k",
         "sum-chain", "pow-chain", "attr-lists", "long-int", "nul", "surrogate"],
)  # fmt: skip
def test_huge_inputs_are_clean_errors(text, words):
    msg = refused(text).diagnostic.message
    assert words in msg
    assert len(msg) < 400  # the quote is shortened


def test_depth_limit_boundary():
    ok = "(" * (MAX_DEPTH - 1) + "x" + ")" * (MAX_DEPTH - 1)
    assert shape(ok)[0] == [("L", "identity", ("x",), {})]
    chain = "+".join(["a"] * (MAX_DEPTH - 2))
    assert parse(chain)[0][-1].name == "L"


# ------------------------------------------------------------------------------------
# properties

_names = st.sampled_from(["x", "y", "W", "b_1", "_t"])
_numbers = st.integers(min_value=0, max_value=10**6) | st.floats(
    min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False
)


def _expressions():
    leaf = _names | _numbers.map(repr)
    binop = st.sampled_from(["+", "-", "*", "/", "@", "**"])

    def extend(inner):
        return (
            st.tuples(inner, binop, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
            | inner.map(lambda e: f"-{e}")
            | st.tuples(
                st.sampled_from(["exp", "relu", "sum"]), st.lists(inner, min_size=1, max_size=3)
            ).map(lambda t: f"{t[0]}({', '.join(t[1])}, axis=-1)")
            | st.tuples(inner, st.sampled_from([">", "<", "=="]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            )
        )

    return st.recursive(leaf, extend, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(_expressions())
def test_generated_expressions_parse_into_a_well_formed_dag(text):
    nodes, consts = parse(text, owner="out")
    names = [n.name for n in nodes] + [c.name for c in consts]
    assert len(names) == len(set(names))
    assert nodes[-1].name == "out"
    generated = sorted(int(n.rsplit("_", 1)[1]) for n in names if n.startswith("__out_"))
    assert generated == list(range(1, len(generated) + 1))  # one counter, no gaps
    defined = {c.name for c in consts}
    for n in nodes:
        for i in n.inputs:
            assert not i.startswith("__") or i in defined
        defined.add(n.name)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="xyf01.()[],=+-*/@<>!%&|~'\"#:;{} \n\\eE_jTa\u00e9", max_size=40))
def test_random_text_only_raises_bad_expression(text):
    try:
        nodes, _ = parse(text)
    except GraphError as e:
        assert e.code == "bad-expression"
        assert re.search(r"cannot parse expression", e.diagnostic.message)
    else:
        assert nodes[-1].name == "L"
