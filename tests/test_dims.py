"""gtool.dims: symbolic dims as integer polynomials (text forms, arithmetic, evaluation)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtool.dims import Dim, as_dim, format_shape, parse_dim, parse_index

b, n, m = Dim.sym("b"), Dim.sym("n"), Dim.sym("m")


@pytest.mark.parametrize("text,expected", [
    (3, "3"),
    ("batch", "batch"),
    ("n + 5", "n + 5"),
    ("5 + n", "n + 5"),
    ("2 * b", "2 * b"),
    ("b * 2", "2 * b"),
    ("n * b", "b * n"),
    ("n - 1", "n - 1"),
    ("(n + 1) * (n - 1)", "n * n - 1"),
    ("n + n", "2 * n"),
    ("n - n + 3", "3"),
    ("(2 * n + 4) // 2", "n + 2"),
    ("(n + 1) // 2", "((n + 1) // 2)"),
    ("n // 1", "n"),
    ("12 // 5", "2"),
    ("  n+5  ", "n + 5"),
])
def test_parse_and_str(text, expected):
    assert str(parse_dim(text)) == expected


@pytest.mark.parametrize("bad", [-1, "-1 + 0", "2 - 3", "n - n - 1", True, 1.5, None, "", "  ", "n +", "n ** 2",
                                 "-1", "+n", "f(n)", "n / 2", "n // m", "n // 0", "x.y", "n[0]", "é", "\x00",
                                 "n" * 201, "[1]", "True", "None", "1.0", [3]])
def test_parse_refuses(bad):
    with pytest.raises(ValueError):
        parse_dim(bad)


def test_messages_say_what_a_dim_is():
    with pytest.raises(ValueError, match="non-negative integer, got -1"):
        parse_dim(-1)
    assert parse_dim(0) == 0 and parse_dim("n - n") == 0 and parse_dim("2 - 2") == 0  # an empty axis
    with pytest.raises(ValueError, match="= -1"):
        parse_dim("2 - 3")
    with pytest.raises(ValueError, match="only names, integers"):
        parse_dim("n ** 2")


def test_too_complex_products_are_refused_not_expanded():
    text = " * ".join(["(a + b + c + d + e + f + g + h + i + j)"] * 4)
    with pytest.raises(ValueError, match="too complex"):
        parse_dim(text)


def test_parse_index_allows_zero():
    assert parse_index(0) == 0
    assert parse_index("n - 1") == n - 1
    with pytest.raises(ValueError):
        parse_index(-1)
    with pytest.raises(ValueError):
        parse_index("1 - 2")


def test_dim_objects_pass_through():
    d = n + 5
    assert parse_dim(d) is d
    assert as_dim(d) is d
    assert as_dim(3) == 3
    with pytest.raises(TypeError):
        as_dim(True)
    with pytest.raises(TypeError):
        as_dim(1.5)


def test_arithmetic():
    assert b + 0 == b
    assert (b + n) - n == b
    assert 2 * b == b + b
    assert (n + 5) - 5 == n
    assert n * 1 == n
    assert (b * n) * 4 == 4 * b * n
    assert str(3 - n) == "-n + 3"
    assert str(-n) == "-n"
    assert Dim.const(3) + Dim.const(4) == 7
    assert Dim.const(3) * Dim.const(4) == 12
    assert -Dim.const(2) == -2
    assert str(Dim({})) == "0"


def test_equality_and_hash():
    assert n + 5 == parse_dim("5 + n")
    assert hash(n + 5) == hash(parse_dim("5 + n"))
    assert Dim.const(3) == 3
    assert 3 == Dim.const(3)
    assert n != 3
    assert n != "n"
    assert Dim.const(1) != True  # noqa: E712 (a bool is not a size)
    assert len({n + 1, parse_dim("n + 1"), 1 + n}) == 1


def test_queries():
    assert Dim.const(4).is_const and Dim.const(4).value == 4
    assert not (n + 1).is_const
    with pytest.raises(ValueError):
        _ = n.value
    assert (b * n + n).symbols() == {"b", "n"}
    assert ((n + 1) // 2).symbols() == {"n"}
    assert (3 * n + b).linear_coeff("n") == 3
    assert (n * n + n).linear_coeff("n") is None
    assert b.linear_coeff("n") is None


def test_floor_division():
    assert (4 * n) // 2 == 2 * n
    assert Dim.const(7) // 2 == 3
    opaque = (n + 1) // 2
    assert not opaque.is_const
    assert opaque.evaluate({"n": 6}) == 3
    assert opaque.evaluate({"n": 7}) == 4
    with pytest.raises(ValueError):
        n // 0
    with pytest.raises(ValueError):
        n // m


def test_exact_division():
    assert (b * n * 4).exact_div(n) == 4 * b
    assert (n + 1).exact_div(n + 1) == 1
    assert (n * n + 2 * n + 1).exact_div(n + 1) == n + 1
    assert (b * n + n + 3 * b + 3).exact_div(n + 3) == b + 1
    assert Dim.const(12).exact_div(4) == 3
    assert Dim.const(12).exact_div(5) is None
    assert (n * n + 1).exact_div(n + 1) is None
    assert b.exact_div(b + 1) is None
    assert (3 * n).exact_div(2) is None
    assert n.exact_div(Dim({})) is None


def test_evaluate():
    assert (b * n + 5).evaluate({"b": 2, "n": 3}) == 11
    assert Dim.const(9).evaluate({}) == 9
    with pytest.raises(KeyError) as info:
        (b + n).evaluate({"b": 1})
    assert info.value.args[0] == "n"


def test_substitute():
    assert (n + 5).substitute({"n": Dim.const(3)}) == 8
    assert (b * n).substitute({"n": 2 * m}) == 2 * b * m
    assert (n + 1).substitute({"x": Dim.const(1)}) == n + 1
    assert ((n + 1) // 2).substitute({"n": Dim.const(5)}) == 3
    d = n + 1
    assert d.substitute({}) is d


def test_format_shape_and_json():
    assert format_shape(()) == "[]"
    assert format_shape((b, Dim.const(10))) == "[b, 10]"
    assert format_shape((n + 5, 4 * n)) == "[n + 5, 4 * n]"
    assert Dim.const(3).to_json() == 3
    assert (n + 5).to_json() == "n + 5"


def test_immutable():
    with pytest.raises(AttributeError):
        n.terms = ()


def test_str_round_trips_through_parse():
    for d in [n + 5, 2 * b, b * n, n - 1, 3 - n, (n + 1) // 2, b * n * n + 3 * b - 7, (2 * n + 1) // 3 + b]:
        assert parse_index(str(d)) == d, str(d)


names = st.sampled_from(["a", "b", "n"])
dims = st.recursive(
    st.one_of(st.integers(-5, 9).map(Dim.const), names.map(Dim.sym)),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: p[0] + p[1]),
        st.tuples(inner, inner).map(lambda p: p[0] - p[1]),
        st.tuples(inner, inner).map(lambda p: p[0] * p[1]),
        st.tuples(inner, st.integers(1, 4)).map(lambda p: p[0] // p[1]),
    ),
    max_leaves=6,
)
env = st.fixed_dictionaries({"a": st.integers(1, 20), "b": st.integers(1, 20), "n": st.integers(1, 20)})


@settings(max_examples=150, deadline=None)
@given(dims, dims, env)
def test_arithmetic_agrees_with_integers(x, y, values):
    """The polynomial arithmetic is the integer arithmetic, for every binding."""
    ex, ey = x.evaluate(values), y.evaluate(values)
    assert (x + y).evaluate(values) == ex + ey
    assert (x - y).evaluate(values) == ex - ey
    assert (x * y).evaluate(values) == ex * ey
    assert (x // 3).evaluate(values) == ex // 3
    if x.is_const and x.value < 0:  # an index is never negative: the parser says so
        with pytest.raises(ValueError):
            parse_index(str(x))
    else:
        assert parse_index(str(x)) == x
    assert x.substitute({k: Dim.const(v) for k, v in values.items()}) == ex
    if y.terms and len((x * y).terms) <= 64:
        q = (x * y).exact_div(y)
        assert q is not None and q * y == x * y, (x, y, q)


@pytest.mark.parametrize("node", ["slice(x, axis=1, start=0, stop=2)", "pad(x, pads=[0, 1, 0, 1], mode=\"reflect\")"])
def test_gradient_of_a_dim_expression_bound_by_dims(tmp_path, node):
    # x: [2 * n, 3] loaded with n = 2: the VJP's zeros must follow the graph's `2 * n`, not the
    # check's 4 (the two met in one concat and were a shape mismatch)
    import numpy as np

    import gtool

    path = tmp_path / "g.yaml"
    path.write_text(f"gtool: 1\ninputs:\n  x: {{shape: [2 * n, 3]}}\nnodes:\n  y: {node}\n  L: sum(y * y)\n"
                    "outputs: [L]\nloss: L\n")
    x = np.arange(12.0).reshape(4, 3)
    graph = gtool.load(path, dims={"n": 2})
    _, grads = gtool.value_and_grad(graph, {"x": x}, dims={"n": 2})
    if node.startswith("slice"):
        want = 2 * x * np.array([1.0, 1.0, 0.0])  # d/dx sum(x[:, :2]^2)
    else:  # reflect pad [0, 1] on the last axis: column 1 appears twice more (once each side)
        want = 2 * x * np.array([1.0, 3.0, 1.0])
    np.testing.assert_array_equal(grads["x"], want)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_grad_cli_with_dim_and_a_dim_expression_in_an_attr(tmp_path, capsys, mode):
    # `stop=2 * n` is an attr: forward mode's tangent slice was typed [2 * n - 1, 5] against the
    # forward value's [3, 5] (an internal error) until the builder applied the --dim sizes too
    import numpy as np

    from gtool.cli import main

    path = tmp_path / "g.yaml"
    path.write_text("gtool: 1\ninputs:\n  x: {shape: [2 * n, 3]}\nnodes:\n"
                    "  y: pad(x, pads=[0, 1, 0, 1], mode=\"reflect\")\n  z: slice(y, axis=0, start=1, stop=2 * n)\n"
                    "  L: sum(z * z)\noutputs: [L]\nloss: L\n")
    x = np.arange(12.0).reshape(4, 3)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "g.npz"
    with pytest.raises(SystemExit) as info:
        main(["grad", str(path), "--dim", "n=2", "--mode", mode, "--input", f"x=@{tmp_path / 'x.npy'}", "-o", str(out)])
    assert info.value.code == 0, capsys.readouterr().err
    # rows 1..3 of [x1, x0, x1, x2, x1]: column 1 is read three times
    want = 2 * x * np.array([1.0, 3.0, 1.0]) * np.array([[0.0], [1.0], [1.0], [1.0]])
    with np.load(out) as saved:
        np.testing.assert_array_equal(saved["grad_x"], want)


@pytest.mark.parametrize(("declared", "rows", "want"), [("2 * n", 6, 3), ("n + 1", 1, 0), ("3 * n + 2", 14, 4)])
def test_data_binds_a_dim_declared_by_an_affine_expression(tmp_path, declared, rows, want):
    import numpy as np

    import gtool

    path = tmp_path / "g.yaml"
    path.write_text(f"gtool: 1\ninputs:\n  x: {{shape: [{declared}, 2]}}\nnodes:\n  y: sum(x, axis=0)\n"
                    f"  k: broadcast_to(1.0, shape=[n])\n  s: sum(k)\noutputs: [y, s]\n")
    out = gtool.run(gtool.load(path), {"x": np.ones((rows, 2))})
    assert out["s"] == want  # n itself, counted by a value of shape [n]
    np.testing.assert_array_equal(out["y"], [rows, rows])


@pytest.mark.parametrize(("declared", "rows"), [("2 * n", 5), ("n + 3", 2)])
def test_data_no_whole_dim_fits_is_a_clear_error(tmp_path, declared, rows):
    import numpy as np

    import gtool
    from gtool.errors import UsageError

    path = tmp_path / "g.yaml"
    path.write_text(f"gtool: 1\ninputs:\n  x: {{shape: [{declared}, 2]}}\nnodes:\n  y: sum(x)\noutputs: [y]\n")
    with pytest.raises(UsageError, match=rf"axis 0 is {rows}, declared {re.escape(declared)}, and no whole size"):
        gtool.run(gtool.load(path), {"x": np.ones((rows, 2))})
