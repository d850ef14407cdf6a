"""The steady state of a run (gtool/fastplan.py, interp.Runner): a generated plan per
(graph, bindings) and a runner per data signature. What the first call checked must still be
checked whenever the data, the limits or the names change, and the results must be those of a
fresh run (closed forms here, not the executor's own first run)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gtool import api, budget, interp
from gtool.errors import GraphError, UsageError

DIMS = ("gtool: 1\ninputs:\n  x: [n]\n  c: {shape: [], value: 2.0}\nnodes:\n  y: c * x + 1\n  L: sum(y * y)\n"
        "outputs: [y, L]\nloss: L\n")


def _steady(graph, data, **kw):
    """Two calls: the second takes the runner the first made."""
    api.run(graph, data, **kw)
    return api.run(graph, data, **kw)


def test_repeated_runs_use_one_generated_plan_and_see_new_data(load_text):
    g = load_text(DIMS)
    x = np.array([1.0, -2.0, 0.5])
    out = _steady(g, {"x": x})
    prog = interp.program(g)
    assert len(prog._fast) == 1 and "for " not in next(iter(prog._fast.values())).source
    np.testing.assert_array_equal(out["y"], 2 * x + 1)
    x[:] = [3.0, 0.0, -1.0]  # same array object, new contents
    out = api.run(g, {"x": x})
    np.testing.assert_array_equal(out["y"], [7.0, 1.0, -1.0])
    assert out["L"] == 51.0


def test_a_new_shape_rebinds_dims_and_an_old_one_comes_back(load_text):
    g = load_text(DIMS)
    for n in (3, 5, 3):
        x = np.arange(n, dtype=np.float64)
        out = _steady(g, {"x": x})
        assert out["y"].shape == (n,)
        np.testing.assert_array_equal(out["y"], 2 * x + 1)


def test_other_dtypes_and_lists_take_the_checked_path(load_text):
    g = load_text(DIMS)
    _steady(g, {"x": np.array([1.0, 2.0])})
    out = api.run(g, {"x": np.array([1, 2], dtype=np.int64)})  # converted to float64, as on a first call
    assert out["y"].dtype == np.float64 and out["y"].tolist() == [3.0, 5.0]
    assert api.run(g, {"x": [0.5, 1.5]})["y"].tolist() == [2.0, 4.0]
    g32 = load_text(DIMS.replace("x: [n]", "x: {shape: [n], dtype: float32}"))
    _steady(g32, {"x": np.array([1.0], np.float32)})
    with pytest.raises(UsageError, match="does not fit"):  # float64 data beyond float32: checked, not cast
        api.run(g32, {"x": np.array([1e300])})


def test_unknown_names_and_overridden_constants_after_the_steady_state(load_text):
    g = load_text(DIMS)
    x = np.array([1.0, 2.0])
    _steady(g, {"x": x})
    with pytest.raises(UsageError) as info:
        api.run(g, {"x": x, "z": x})
    assert info.value.code == "unknown-name"
    out = _steady(g, {"x": x, "c": np.array(3.0)})  # the scalar constant given other data
    np.testing.assert_array_equal(out["y"], 3 * x + 1)
    np.testing.assert_array_equal(api.run(g, {"x": x})["y"], 2 * x + 1)


def test_a_kernel_error_at_the_steady_state_is_located(load_text):
    g = load_text("gtool: 1\ninputs:\n  z: [2, 3]\n  t: {shape: [2], dtype: int64}\nnodes:\n"
                  "  L: cross_entropy(z, t)\noutputs: [L]\n")
    z = np.zeros((2, 3))
    assert _steady(g, {"z": z, "t": np.array([0, 2])})["L"] == pytest.approx(np.log(3))
    with pytest.raises(GraphError) as info:
        api.run(g, {"z": z, "t": np.array([0, 7])})
    assert info.value.code == "bad-target" and "out of range" in str(info.value) and "'L'" in str(info.value)


def test_changed_limits_are_checked_again(load_text):
    g = load_text(DIMS)
    x = np.ones(1000)
    _steady(g, {"x": x})
    with budget.limited(max_elements=10), pytest.raises(UsageError) as info:
        api.run(g, {"x": x})
    assert info.value.code == "too-many-elements"
    assert api.run(g, {"x": x})["L"] == 9000.0


def test_in_place_steps_never_write_into_the_callers_arrays(load_text):
    g = load_text("gtool: 1\ninputs:\n  x: [n]\nnodes:\n  a: exp(x)\n  b: a + x\n  y: b * 2\noutputs: [y]\n")
    x = np.linspace(-1, 1, 10000)
    keep = x.copy()
    for _ in range(3):
        out = api.run(g, {"x": x})
    np.testing.assert_array_equal(x, keep)
    np.testing.assert_allclose(out["y"], (np.exp(keep) + keep) * 2, rtol=1e-15)


def test_the_steady_state_is_quiet_and_leaves_the_error_state_alone(load_text):
    g = load_text("gtool: 1\ninputs:\n  x: []\nnodes:\n  y: exp(x) / (x - x)\noutputs: [y]\n")
    before = np.geterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            y = api.run(g, {"x": np.array(1000.0)})["y"]
    assert np.isinf(y) and np.geterr() == before
    with np.errstate(over="raise"):
        np.exp(np.float64(1.0))  # the caller's own state still holds
        with pytest.raises(FloatingPointError):
            np.exp(np.array(1000.0))


def test_value_and_grad_steady_state_matches_closed_forms(load_text):
    g = load_text(DIMS)
    for x in (np.array([1.0, -2.0]), np.array([0.25, 4.0]), np.array([-0.0, 1e-300])):
        loss, grads = api.value_and_grad(g, {"x": x}, wrt=["x"])
        y = 2 * x + 1
        assert loss == float(y @ y)
        np.testing.assert_array_equal(grads["x"], 2 * y * 2)


def test_numba_runs_graphs_of_numbers_as_the_generated_plan(load_text):
    pytest.importorskip("numba")
    g = load_text("gtool: 1\ninputs: {x: [], y: []}\nnodes:\n  L: (x + y) * y\noutputs: [L]\nloss: L\n")
    assert interp.program(g, backend="numba").compiled is None
    loss, grads = api.value_and_grad(g, {"x": np.array(2.0), "y": np.array(3.0)}, backend="numba")
    loss, grads = api.value_and_grad(g, {"x": np.array(2.0), "y": np.array(3.0)}, backend="numba")
    assert (loss, float(grads["x"]), float(grads["y"])) == (15.0, 3.0, 8.0)
    v = load_text("gtool: 1\ninputs: {x: [3]}\nnodes:\n  L: sum(x * x)\noutputs: [L]\n")
    assert interp.program(v, backend="numba").compiled is not None


def test_value_and_grad_steady_state_checks_the_signature_and_locates_errors(load_text):
    """The generated caller (fastplan.caller): other shapes, dtypes, names or a missing input
    take the checked path; an error inside the plan is named at its node, as on a first call."""
    g = load_text("gtool: 1\ninputs:\n  z: [n, 3]\n  t: {shape: [n], dtype: int64}\nnodes:\n"
                  "  L: cross_entropy(z, t)\noutputs: [L]\nloss: L\n")
    z, t = np.zeros((2, 3)), np.array([0, 2])
    for _ in range(3):
        loss, grads = api.value_and_grad(g, {"z": z, "t": t}, wrt=["z"])
    assert loss == pytest.approx(np.log(3)) and set(grads) == {"z"}
    np.testing.assert_allclose(grads["z"], (np.full((2, 3), 1 / 3) - np.eye(3)[[0, 2]]) / 2, rtol=1e-15)
    loss, grads = api.value_and_grad(g, {"z": np.zeros((1, 3)), "t": np.array([1])}, wrt=["z"])  # a new shape
    np.testing.assert_allclose(grads["z"], [[1 / 3, -2 / 3, 1 / 3]], rtol=1e-15)
    loss, _ = api.value_and_grad(g, {"z": z.astype(np.float32), "t": t}, wrt=["z"])  # a dtype: converted
    assert loss == pytest.approx(np.log(3))
    with pytest.raises(UsageError):  # t missing: the checked path says so
        api.value_and_grad(g, {"z": z}, wrt=["z"])
    with pytest.raises(GraphError) as info:
        api.value_and_grad(g, {"z": z, "t": np.array([0, 7])}, wrt=["z"])
    assert info.value.code == "bad-target" and "'L'" in str(info.value)
    assert api.value_and_grad(g, {"z": z, "t": t}, wrt=["z"])[0] == pytest.approx(np.log(3))


def test_a_square_by_pow_runs_as_a_product_with_pows_bits(load_text):
    """`x ** 2` (a weak 2) is `x * x` in the generated plan; other powers keep pow's kernel."""
    g = load_text("gtool: 1\ninputs: {x: [n], k: {shape: [n], dtype: int64}}\nnodes:\n  y: x ** 2\n  z: x ** 3\n"
                  "  w: x ** 2.5\n  j: k ** 2\noutputs: [y, z, w, j]\n")
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 1e-160, 1.4e154, 1e200, -3.3, 0.1])
    k = np.arange(-5, 6)
    for _ in range(3):
        out = api.run(g, {"x": x, "k": k})
    source = next(iter(interp.program(g)._fast.values())).source
    assert source.count(" * s") == 1 and source.count("= k") == 3  # y only; z, w and j call pow
    with np.errstate(all="ignore"):
        want = {"y": np.power(x, 2), "z": np.power(x, 3), "w": np.power(x, 2.5), "j": np.power(k, 2)}
    want["w"][3] = np.inf  # (-inf) ** 2.5 = inf (IEEE pow), which the kernel fixes
    for name, v in want.items():
        np.testing.assert_array_equal(out[name], v)
        assert out[name].dtype == v.dtype
    assert out["y"].tobytes() == want["y"].tobytes()


def test_expand_dims_runs_as_indexing_with_the_same_result(load_text):
    g = load_text("gtool: 1\ninputs: {x: [2, 3], s: []}\nnodes:\n  a: expand_dims(x, axis=-1)\n"
                  "  b: expand_dims(x, axis=[0, 2])\n  c: expand_dims(s, axis=0)\n  d: expand_dims(x, axis=[-1, 1])\n"
                  "  e: expand_dims(x, axis=0) * 2\noutputs: [a, b, c, d, e]\n")
    x, s = np.arange(6.0).reshape(2, 3), np.array(1.5)
    for _ in range(3):
        out = api.run(g, {"x": x, "s": s})
    source = next(iter(interp.program(g)._fast.values())).source
    assert "[:, :, None]" in source and "[None, :, None, :]" in source and "[None]" in source
    want = {"a": np.expand_dims(x, -1), "b": np.expand_dims(x, [0, 2]), "c": np.expand_dims(s, 0),
            "d": np.expand_dims(x, [-1, 1]), "e": np.expand_dims(x, 0) * 2}
    for k, v in want.items():
        assert out[k].shape == v.shape, k
        np.testing.assert_array_equal(out[k], v)
