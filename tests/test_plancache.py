"""The numba backend's plan cache (gtool/backends/plancache.py) and its light start.

A warm start must reuse a plan only when the plan is the one a fresh build would make: the
tests change one thing a plan depends on (a constant written into the code, an attr, a dtype)
and check both the key and the values against the NumPy backend, and hand the cache a
damaged file. The light start is checked in a fresh process (what it changes is per process).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")

import gtool  # noqa: E402
from gtool import interp  # noqa: E402
from gtool.backends import numba_cpu, plancache  # noqa: E402
from gtool.dims import parse_dim  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

GRAPH = """gtool: 1
dims: {{n: 6}}
inputs:
  x: [n]
nodes:
  a: sin(x) * {c}
  b: a + 0.25
  s: sum(b * b)
outputs: [s, b]
"""


def _load(tmp_path, text: str, name: str) -> gtool.Graph:
    path = tmp_path / name
    path.write_text(text)
    return gtool.load(path)


def _key(graph) -> str:
    prog = interp.program(graph, backend="numpy")
    return plancache.plan_key(prog, blas=False, parallel=True)


def _run_both(graph, x):
    got = gtool.run(graph, {"x": x}, backend="numba")
    want = gtool.run(graph, {"x": x}, backend="numpy")
    return got, want


def test_a_warm_start_reuses_the_stored_plan_and_skips_the_build(tmp_path, monkeypatch):
    monkeypatch.setenv("GTOOL_CACHE_DIR", str(tmp_path / "cache"))
    x = np.linspace(-2.0, 3.0, 6)
    first = _load(tmp_path, GRAPH.format(c=1.01), "a.yaml")
    got, want = _run_both(first, x)
    source = interp.program(first, backend="numba").compiled.source
    assert list((tmp_path / "cache" / "numba").glob("plan_*.pkl"))

    def no_build(*args, **kwargs):
        raise AssertionError("the plan was built again")

    monkeypatch.setattr(numba_cpu, "build", no_build)
    again = _load(tmp_path, GRAPH.format(c=1.01), "b.yaml")  # a new Graph: nothing cached in memory
    got2 = gtool.run(again, {"x": x}, backend="numba")
    assert interp.program(again, backend="numba").compiled.source == source
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-13)
        np.testing.assert_array_equal(got2[name], got[name])
    # ... and with data of another size (the stored plan is generic in its dims)
    x9 = np.linspace(-1.0, 1.0, 9)
    np.testing.assert_allclose(gtool.run(again, {"x": x9}, backend="numba")["s"],
                               gtool.run(again, {"x": x9}, backend="numpy")["s"], rtol=1e-13)


@pytest.mark.parametrize("change", [
    ("* {c}", "* 1.0100000000000002"),  # the near miss: a constant one ULP away is another literal
    ("sin(x)", "cos(x)"),
    ("x: [n]", "x: {shape: [n], dtype: float32}"),
    ("outputs: [s, b]", "outputs: [s]"),
])
def test_whatever_the_code_depends_on_changes_the_key(tmp_path, monkeypatch, change):
    monkeypatch.setenv("GTOOL_CACHE_DIR", str(tmp_path / "cache"))
    base = GRAPH.format(c=1.01)
    other = GRAPH.replace(*change).format(c=1.01) if "{c}" in change[0] else base.replace(*change)
    assert other != base
    a, b = _load(tmp_path, base, "a.yaml"), _load(tmp_path, other, "b.yaml")
    assert _key(a) != _key(b)
    assert _key(a) == _key(_load(tmp_path, base, "c.yaml"))  # and only then
    x = np.linspace(-2.0, 3.0, 6)
    for graph in (a, b):  # the second run meets the first's stored plan on disk
        dtype = np.float32 if "float32" in change[1] and graph is b else np.float64
        got, want = (gtool.run(graph, {"x": x.astype(dtype)}, backend=be) for be in ("numba", "numpy"))
        assert set(got) == set(want)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6 if dtype == np.float32 else 1e-13)


def test_a_damaged_or_foreign_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("GTOOL_CACHE_DIR", str(tmp_path / "cache"))
    x = np.linspace(-2.0, 3.0, 6)
    graph = _load(tmp_path, GRAPH.format(c=3.0), "a.yaml")
    key = _key(graph)
    folder = tmp_path / "cache" / "numba"
    folder.mkdir(parents=True)
    path = folder / f"plan_{key}.pkl"
    for damage in (b"\x80\x05garbage", pickle.dumps((("0", key), "old format")), b""):
        path.write_bytes(damage)
        assert plancache.load(folder, key) is None
        fresh = _load(tmp_path, GRAPH.format(c=3.0), "b.yaml")
        got, want = _run_both(fresh, x)
        np.testing.assert_allclose(got["s"], want["s"], rtol=1e-13)
        assert plancache.load(folder, key) is not None  # rewritten whole


@pytest.mark.parametrize("text", ["3", "0", "n", "n + 5", "2 * b", "b * n", "(n + 1) // 2", "(b * n - 1) // 4 + b"])
def test_dims_pickle_by_their_terms(text):
    d = parse_dim(text)
    e = pickle.loads(pickle.dumps(d))
    assert e == d and hash(e) == hash(d) and str(e) == str(d)
    # another process hashes strings differently: a stored hash would break dict look-ups there
    code = ("import pickle, sys; from gtool.dims import parse_dim; d = pickle.loads(sys.stdin.buffer.read()); "
            f"print(d == parse_dim({text!r}) and {{d: 1}}.get(parse_dim({text!r})) == 1)")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(d), capture_output=True, cwd=ROOT,
                         env={"PYTHONHASHSEED": "12345", "PATH": "", "PYTHONPATH": str(ROOT)}, check=True)
    assert out.stdout.strip() == b"True"


LIGHT = """
import sys
import numpy as np
import gtool
g = gtool.load(sys.argv[1])
x = np.linspace(-2.0, 3.0, 6)
got = gtool.run(g, {"x": x}, backend="numba")["s"]
want = gtool.run(g, {"x": x}, backend="numpy")["s"]
print("linalg before:", "scipy.linalg" in sys.modules)
assert abs(got - want) <= 1e-12 * abs(want), (got, want)
import scipy.linalg
a = np.random.default_rng(0).standard_normal((5, 5))
assert np.allclose(scipy.linalg.solve(a, a @ np.ones(5)), np.ones(5))
assert scipy.linalg.cython_blas.__pyx_capi__
m = gtool.load(sys.argv[2])
w = np.random.default_rng(1).standard_normal((4, 3)); v = np.random.default_rng(2).standard_normal(3)
got = gtool.run(m, {"w": w, "v": v}, backend="numba")["y"]
assert np.allclose(got, w @ v, rtol=1e-13), got
print("ok")
"""


def test_numba_starts_without_importing_scipy_linalg(tmp_path):
    """The compiled run does not pay for SciPy's linalg package; a later import of it, and a
    matmul plan (numba's BLAS), still work."""
    (tmp_path / "g.yaml").write_text(GRAPH.format(c=1.5))
    (tmp_path / "m.yaml").write_text("gtool: 1\ninputs:\n  w: [4, 3]\n  v: [3]\nnodes:\n  y: matmul(w, v)\n"
                                     "outputs: [y]\n")
    env = {"PATH": "", "PYTHONPATH": str(ROOT), "GTOOL_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", LIGHT, str(tmp_path / "g.yaml"), str(tmp_path / "m.yaml")],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["linalg", "before:", "False", "ok"]


# the repeated-call path (interp.Runner -> Compiled.run_given) ----------------------------------


def test_a_repeated_call_with_a_bad_target_still_names_the_error(tmp_path, monkeypatch):
    """The second call of a signature skips the data checks; an error inside compiled code
    must still come back as the NumPy interpreter's located error, and the next good call
    must give the right values again."""
    monkeypatch.setenv("GTOOL_CACHE_DIR", str(tmp_path / "cache"))
    graph = _load(tmp_path, "gtool: 1\ninputs:\n  z: [2, 3]\n  t: {shape: [2], dtype: int64}\nnodes:\n"
                  "  L: cross_entropy(z, t)\noutputs: [L]\n", "ce.yaml")
    z = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -2.0]])
    good = {"z": z, "t": np.array([2, 1])}
    want = -np.mean([z[0, 2] - np.log(np.exp(z[0]).sum()), z[1, 1] - np.log(np.exp(z[1]).sum())])
    for _ in range(2):  # the first call makes the runner, the second takes it
        assert gtool.run(graph, good, backend="numba")["L"] == pytest.approx(want, rel=1e-14)
    with pytest.raises(gtool.GraphError) as info:
        gtool.run(graph, {"z": z, "t": np.array([0, 7])}, backend="numba")
    assert "out of range" in str(info.value)
    assert gtool.run(graph, good, backend="numba")["L"] == pytest.approx(want, rel=1e-14)


def test_repeated_calls_read_new_data_and_keep_constants(tmp_path, monkeypatch):
    """Outputs are fresh arrays per call (a later call does not overwrite an earlier result),
    and data given for a constant that the code has written in is still used."""
    monkeypatch.setenv("GTOOL_CACHE_DIR", str(tmp_path / "cache"))
    graph = _load(tmp_path, GRAPH.format(c=2.0), "a.yaml")
    x1, x2 = np.linspace(-1.0, 1.0, 6), np.linspace(0.0, 5.0, 6)
    first = [gtool.run(graph, {"x": x}, backend="numba") for x in (x1, x2, x1)]
    for x, out in zip((x1, x2, x1), first):
        b = np.sin(x) * 2.0 + 0.25
        np.testing.assert_allclose(out["b"], b, rtol=1e-15)
        assert out["s"] == pytest.approx(np.sum(b * b), rel=1e-14)
    assert first[0]["b"] is not first[2]["b"]
    const = next(n for n, t in graph.tensors.items() if t.kind == "constant" and np.size(t.value) == 1
                 and float(t.value) == 2.0)
    # data given for a constant replaces it, as on the NumPy backend (the compiled code, which
    # has the constant written in, hands that run to the interpreter) ...
    other = gtool.run(graph, {"x": x1, const: np.float64(3.0)}, backend="numba")
    assert other["s"] == pytest.approx(np.sum((np.sin(x1) * 3.0 + 0.25) ** 2), rel=1e-14)
    # ... and the next plain call is back to the graph's constant
    assert gtool.run(graph, {"x": x1}, backend="numba")["s"] == pytest.approx(first[0]["s"], rel=1e-15)


def test_repeated_calls_with_data_for_a_one_element_constant_use_that_data(tmp_path, monkeypatch):
    """A [1]-shaped constant is written into the code as a literal, and (unlike a scalar one)
    may reach the repeated-call path with data given for it: each call must use its data
    (the first fix returned the graph's 2.0 from the second call on)."""
    monkeypatch.setenv("GTOOL_CACHE_DIR", str(tmp_path / "cache"))
    graph = _load(tmp_path, "gtool: 1\ninputs:\n  x: [4]\nconstants:\n  k: {value: [2.0]}\nnodes:\n"
                  "  y: x * k\n  s: sum(y)\noutputs: [s, y]\n", "k.yaml")
    x = np.arange(4.0)
    for k in (3.0, 4.0, 5.0, 2.0):
        out = gtool.run(graph, {"x": x, "k": np.array([k])}, backend="numba")
        assert out["s"] == 6.0 * k
        np.testing.assert_array_equal(out["y"], x * k)
    assert gtool.run(graph, {"x": x}, backend="numba")["s"] == 12.0
