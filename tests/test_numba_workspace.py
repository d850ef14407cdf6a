"""The numba backend reuses a plan's workspace (the rows that carry values from one compiled
loop to the next) from run to run, with each segment's fixed arguments bound once
(numba_cpu.Compiled._bound). What must hold: a run's outputs never change when a later run
writes the workspace (an output that is a view of a row is copied out), and threads running
one plan at once each get a workspace of their own. Values are checked against the NumPy
backend, an independent executor.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("numba")

import gtool  # noqa: E402
from gtool import interp  # noqa: E402
from gtool.backends import numba_cpu  # noqa: E402

# long enough to cross several fused loops (each closes after 8 sines): the values between
# them live in the workspace; `r` reshapes one of them and is an output
CHAIN = "gtool: 1\ninputs:\n  x: [16]\nnodes:\n" + "".join(
    f"  c{i}: {('sin({p})', '{p} * 1.01', '{p} + 0.1')[i % 3].format(p=f'c{i - 1}' if i else 'x')}\n" for i in range(60)
) + "  r: reshape(c30, shape=[4, 4])\n  L: sum(c59)\noutputs: [L, r, c59]\nloss: L\n"


def _numpy(graph, x):
    return gtool.run(graph, {"x": x}, backend="numpy")


def test_outputs_of_a_run_survive_the_next_run(load_text):
    graph = load_text(CHAIN)
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal(16), rng.standard_normal(16)
    first = gtool.run(graph, {"x": x1}, backend="numba")
    kept = {k: np.array(v, copy=True) for k, v in first.items()}
    second = gtool.run(graph, {"x": x2}, backend="numba")
    for k in kept:
        np.testing.assert_array_equal(first[k], kept[k])  # untouched by the second run
        np.testing.assert_allclose(first[k], _numpy(graph, x1)[k], rtol=1e-13)
        np.testing.assert_allclose(second[k], _numpy(graph, x2)[k], rtol=1e-13)
    assert interp.program(graph, backend="numba").compiled.fallback_runs == 0


def test_gradients_of_a_run_survive_the_next_run(load_text):
    graph = load_text(CHAIN)
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal(16), rng.standard_normal(16)
    _, g1 = gtool.value_and_grad(graph, {"x": x1}, wrt=["x"], backend="numba")
    kept = g1["x"].copy()
    gtool.value_and_grad(graph, {"x": x2}, wrt=["x"], backend="numba")
    np.testing.assert_array_equal(g1["x"], kept)
    _, want = gtool.value_and_grad(graph, {"x": x1}, wrt=["x"], backend="numpy")
    np.testing.assert_allclose(kept, want["x"], rtol=1e-12)


def test_threads_running_one_plan_each_get_their_own_workspace(load_text):
    graph = load_text(CHAIN)
    gtool.run(graph, {"x": np.zeros(16)}, backend="numba")  # compiled before the threads start
    xs = [np.random.default_rng(k).standard_normal(16) for k in range(4)]
    wants = [_numpy(graph, x)["c59"] for x in xs]
    errors: list[str] = []
    start = threading.Barrier(len(xs))

    def work(k: int) -> None:
        start.wait()
        for _ in range(200):
            got = gtool.run(graph, {"x": xs[k]}, backend="numba")["c59"]
            if not np.allclose(got, wants[k], rtol=1e-13, atol=0):
                errors.append(f"thread {k} got another run's values")
                return

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_workspace_arrays_are_aligned_views_of_one_block():
    shapes = [((5, 4), np.dtype("float64")), ((3, 0), np.dtype("int64")), ((7,), np.dtype("bool")), ((2, 3), np.dtype("float32"))]
    work, block = numba_cpu._workspace(shapes)
    assert [(w.shape, w.dtype) for w in work] == shapes
    for w in work:
        assert w.flags.c_contiguous
        if w.size:  # an empty view's address means nothing
            assert w.ctypes.data % 64 == 0 and np.may_share_memory(w, block)
    for a, w in enumerate(work):  # disjoint: writing one leaves the others as they were
        for b, v in enumerate(work):
            if a != b:
                assert not np.shares_memory(w, v)
    assert numba_cpu._workspace([]) == ([], None)


def test_the_kept_workspaces_are_bounded(load_text, monkeypatch):
    """A plan run at many batch sizes keeps workspaces up to POOL_BYTES in all, not one per size;
    the runs past it free theirs and still give the right values."""
    graph = load_text(CHAIN.replace("x: [16]", "x: [n]").replace("reshape(c30, shape=[4, 4])", "c30 * 2.0"))
    monkeypatch.setattr(numba_cpu, "POOL_BYTES", 2000)  # the five sizes need 3,200
    for n in (8, 16, 24, 32, 40):
        x = np.linspace(-1, 1, n)
        got = gtool.run(graph, {"x": x}, backend="numba")["c59"]
        np.testing.assert_allclose(got, _numpy(graph, x)["c59"], rtol=1e-13)
        c = interp.program(graph, backend="numba").compiled
        assert c._pooled <= 2000
        kept = sum(_bytes(entry) for prep in c._preps.values() for entry in prep[4])
        assert kept == c._pooled
    assert c.fallback_runs == 0


def _bytes(entry) -> int:
    return 0 if entry[0] is None else entry[0].nbytes
