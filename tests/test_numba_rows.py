"""Loops with sums along rows in the numba backend (cpu_emit.CpuEmitter.loop_group).

Rows at least ROW_LONG long put each row's terms in a buffer and add them after the row, so the
loop over the row carries no reduction and vectorizes (a softmax over 512 classes: 3.5x faster);
the sum must keep the digits of an in-order `acc += v`, which the test computes in plain Python.
Reads that do not change along a row (the row's max) are read once per row, before its loop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("numba")

import gtool  # noqa: E402
from gtool import interp  # noqa: E402
from gtool.backends import cpu_emit  # noqa: E402

ROWS = "gtool: 1\ninputs:\n  x: [{r}, {n}]\nnodes:\n  s: sum(exp(x) * x, axis=1)\noutputs: [s]\n"


@pytest.mark.parametrize("n, buffered", [(cpu_emit.ROW_LONG, True), (100, True), (cpu_emit.ROW_LONG - 1, False), (10, False)])
def test_row_sums_keep_the_in_order_digits(load_text, n, buffered):
    graph = load_text(ROWS.format(r=5, n=n))
    x = np.random.default_rng(n).standard_normal((5, n)) * 3
    got = gtool.run(graph, {"x": x}, backend="numba")["s"]
    terms = np.exp(x) * x  # NumPy's exp: within an ulp of vexp's, so compare with a tolerance
    for i in range(5):
        t = 0.0
        for v in terms[i].tolist():
            t += v
        assert got[i] == pytest.approx(t, rel=1e-14)
        assert got[i] == pytest.approx(math.fsum(terms[i]), rel=1e-13)
    src = interp.program(graph, backend="numba").compiled.source
    assert ("buf" in src and "_vexp(" in src) == buffered


def test_log_softmax_over_long_rows_matches_numpy(load_text):
    text = ("gtool: 1\ninputs:\n  Z: [6, 512]\n  Y: [6, 512]\nnodes:\n"
            "  L: -sum(Y * log_softmax(Z, axis=1)) / 6\noutputs: [L]\nloss: L\n")
    graph = load_text(text)
    rng = np.random.default_rng(3)
    Z = 1000 + 5 * rng.standard_normal((6, 512))
    Z[2, 7] = Z[2].max() + 1e-9  # a near tie for the row's max
    Y = rng.dirichlet(np.ones(512), size=6)
    lv, gv = gtool.value_and_grad(graph, {"Z": Z, "Y": Y}, wrt=["Z"], backend="numba")
    ln, gn = gtool.value_and_grad(graph, {"Z": Z, "Y": Y}, wrt=["Z"], backend="numpy")
    assert lv == pytest.approx(ln, rel=1e-13)
    np.testing.assert_allclose(gv["Z"], gn["Z"], rtol=1e-11, atol=1e-17)
    # the closed form: dL/dZ = (softmax(Z) - Y) / B, rows of Y summing to 1
    e = np.exp(Z - Z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(gv["Z"], (e / e.sum(axis=1, keepdims=True) - Y) / 6, rtol=1e-9, atol=1e-18)


def test_row_invariant_reads_move_before_the_row_loop():
    lines = ["a0 = v0[i0, i1]", "r2 = (a0 - v3[i0, 0])", "v4[i0, i1] = r2", "r4 = (a0 == v6[i0, 0])",
             "r5 = (v4[i0, 0] + v3[i0, 0])"]
    pre, body = cpu_emit.hoist_row_loads(lines, "i1", {"v4"})
    assert pre == ["h0 = v3[i0, 0]", "h1 = v6[i0, 0]"]  # read once each; v4 is written in the loop
    assert body == ["a0 = v0[i0, i1]", "r2 = (a0 - h0)", "v4[i0, i1] = r2", "r4 = (a0 == h1)", "r5 = (v4[i0, 0] + h0)"]
    assert cpu_emit.hoist_row_loads(["r0 = v1[i0, i1]"], "i1", set()) == ([], ["r0 = v1[i0, i1]"])


def test_loop_arrays_counts_workspace_rows_as_one_array():
    lines = ["a0 = v0[i0]", "v1[i0] = a0", "v2[i0] = a0", "buf3[i0 - s0] = a0", "acc4[i0, 0] += v5[i0]"]
    assert cpu_emit.loop_arrays(lines, set()) == (4, 2)  # stores v1, v2, buf3, acc4; loads v0, v5
    assert cpu_emit.loop_arrays(lines, {"v1", "v2", "v5"}) == (3, 1)  # v1, v2 and v5: one workspace


SOFTMAX = ("gtool: 1\ninputs:\n  Z: [{b}, {c}]\n  Y: [{b}, {c}]\nnodes:\n"
           "  L: -sum(Y * log_softmax(Z, axis=1)) / {b}\noutputs: [L]\nloss: L\n")


def test_short_rows_run_their_exps_in_a_vector_loop_of_their_own(load_text):
    """A softmax over 10 classes: the row sums keep the loop around them scalar, so the exps
    (which would be scalar libm calls there) run in a flat loop of their own, vectorized."""
    graph = load_text(SOFTMAX.format(b=64, c=10))
    rng = np.random.default_rng(5)
    Z = 1000 + 5 * rng.standard_normal((64, 10))
    Z[3] = Z[3, 0]  # a row of ties
    Z[4, 2] = -np.inf
    Z[5, 1] = 1e308
    Y = np.eye(10)[rng.integers(0, 10, 64)]
    with np.errstate(all="ignore"):
        lv, gv = gtool.value_and_grad(graph, {"Z": Z, "Y": Y}, wrt=["Z"], backend="numba")
        ln, gn = gtool.value_and_grad(graph, {"Z": Z, "Y": Y}, wrt=["Z"], backend="numpy")
    np.testing.assert_allclose(lv, ln, rtol=1e-13)  # NaN: 0 * -inf where row 4 is -inf
    np.testing.assert_allclose(gv["Z"], gn["Z"], rtol=1e-12, atol=1e-18)
    ok = np.isfinite(Z).all(axis=1) & (np.abs(Z).max(axis=1) < 1e300)
    e = np.exp(Z[ok] - Z[ok].max(axis=1, keepdims=True))
    np.testing.assert_allclose(gv["Z"][ok], (e / e.sum(axis=1, keepdims=True) - Y[ok]) / 64, rtol=1e-9, atol=1e-18)
    src = next(t for t in _generated_sources() if "log1p" in t and t.count("_vexp(") >= 2 and "64 * 10" in t)
    assert "for i in range(64 * 10):" in src and "_sexp(" not in src


def _generated_sources() -> list[str]:
    """The text of every module the numba backend has generated in this process."""
    from pathlib import Path

    from gtool.backends import numba_cpu

    return [Path(m.__file__).read_text() for m in numba_cpu._MODULES.values()]


@pytest.mark.parametrize("kind", ["max", "min", "sum", "mean"])
def test_reductions_along_short_rows_keep_nan_and_signed_zero(load_text, kind):
    graph = load_text(f"gtool: 1\ninputs:\n  x: [6, 5]\nnodes:\n  y: {kind}(x * 1.0, axis=1)\noutputs: [y]\n")
    x = np.array([[1.0, -2.0, 3.0, 0.5, -0.0], [np.nan, 1.0, 2.0, 3.0, 4.0], [1.0, 2.0, np.nan, -np.inf, 0.0],
                  [-0.0, -0.0, -0.0, -0.0, -0.0], [np.inf, -np.inf, 1.0, 2.0, 3.0], [5e-324, -5e-324, 1e308, 1e308, 0.0]])
    with np.errstate(all="ignore"):
        got = gtool.run(graph, {"x": x}, backend="numba")["y"]
        want = getattr(np, kind)(x, axis=1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-15)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
