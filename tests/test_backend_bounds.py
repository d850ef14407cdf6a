"""Compiled code stays inside its arrays on edge values (NaN, ±inf, huge, subnormal).

An out-of-range index in numba-compiled code is no error: it reads garbage or, depending on
where the JIT placed what it compiled before in the process, segfaults. `_vexp(NaN)` did that:
`int(floor(NaN))` is undefined (INT_MIN on x86), so its 2^k table was read ~4 KB past its end,
and tests/test_backend_ulps.py crashed only after other numba tests had run in the same worker.
These tests run the generated code with numba's bounds checking on, where an out-of-range
index raises instead, and compare the results with NumPy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from simplify_cases import chain_closed_form, chain_text  # noqa: E402
from ulps import ulp_diff  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EDGES = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 5e-324, -5e-324,
                  709.78, 709.79, 710.0, 711.0, -745.13, -745.14, -746.0, -800.0, 1e308, -1e308, 20.0, -20.0,
                  0.625, -0.625, 0.6249999999999999, 40.0, -40.0])


def _checked(name: str):
    """The vector-math function compiled again with bounds checking (an out-of-range index
    raises). vecmath reads no tables any more (2^n is built from its bits), so nothing can."""
    from gtool.backends import vecmath

    return numba.njit(boundscheck=True)(getattr(vecmath, name).py_func)


@pytest.mark.parametrize("name,ref,ulps", [("vexp", np.exp, 1), ("vtanh", np.tanh, 2), ("vsin", np.sin, 1),
                                           ("vcos", np.cos, 1)])
def test_vector_math_stays_in_bounds_on_edge_values(name, ref, ulps):
    fn = _checked(name)
    edges = EDGES if name in ("vexp", "vtanh") else EDGES[np.isnan(EDGES) | (np.abs(EDGES) < 1e6)]
    got = np.array([fn(float(x)) for x in edges])  # the table version: IndexError on NaN
    with np.errstate(all="ignore"):
        want = ref(edges)
    assert ulp_diff(got, want).max() <= ulps, dict(zip(edges.tolist(), got.tolist()))


SCRIPT = r"""
import json, sys
import numpy as np
import gtool
from gtool import api, interp
g = gtool.load(sys.argv[1])
x = np.array([[np.nan, 1.0, -2.0, 0.5, 3.0], [np.inf, 0.0, 1.0, -1.0, 2.0], [-np.inf, 1.0, 2.0, 3.0, 4.0],
              [800.0, -800.0, 1e-300, -5e-324, 0.0], [1e308, -1e308, 0.1, 0.2, 0.3], [0.7, -0.7, 30.0, -30.0, 0.0]])
data = {"x": x, "t": np.array([0, 1, 4, 2, 3, 0])}
out = {}
with np.errstate(all="ignore"):
    want = api.run(g, data)
    got = api.run(g, data, backend="numba")
    lw, gw = api.value_and_grad(g, data, wrt=["x"])
    lb, gb = api.value_and_grad(g, data, wrt=["x"], backend="numba")
def same(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return bool(np.allclose(a, b, rtol=1e-12, atol=1e-300, equal_nan=True))
out["values"] = {k: same(got[k], want[k]) for k in want}
out["grad"] = same(gb["x"], gw["x"]) and same(lb, lw)
be = interp.get_backend("numba")
out["fallback_runs"] = be.fallback_runs
print(json.dumps(out))
"""

GRAPH = """gtool: 1
inputs:
  x: [6, 5]
  t: {shape: [6], dtype: int64}
nodes:
  a: exp(x) + tanh(x) + sigmoid(x) + softplus(x)
  s: softmax(x)
  L: sum(a * s) + cross_entropy(x, t)
outputs: [a, s, L]
loss: L
"""


def test_compiled_graph_with_bounds_checking_needs_no_fallback(tmp_path):
    """exp, tanh, the sigmoid/softplus helpers, softmax rows and cross_entropy's gather, forward
    and backward, on NaN/inf rows, in a process with NUMBA_BOUNDSCHECK=1 (read at numba's import)
    and a fresh cache (numba's cache does not key on bounds checking)."""
    (tmp_path / "g.yaml").write_text(GRAPH)
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "GTOOL_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "g.yaml")], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # a bounds-check IndexError inside compiled code makes the run fall back to the interpreter
    assert out == {"values": {"a": True, "s": True, "L": True}, "grad": True, "fallback_runs": 0}, out


# long chains: bounded loops, shared kernels ------------------------------------------------------


def test_long_chain_compiles_as_few_shared_bounded_kernels(load_text):
    """A 600-op chain (1,200 statements forward and backward) is cut into loops of at most
    CHUNK members whose values cross in a workspace; the identical middle chunks are one
    function. Before: one function with one loop of ~1,200 statements."""
    from gtool import api, interp
    from gtool.backends.kernels import CHUNK

    graph = load_text(chain_text(600))
    c = interp.program(api.grad(graph, ["x"]), backend="numba").compiled
    functions = c.source.count("\ndef k")
    assert c.n_compiled >= 1200 // CHUNK and functions <= 8, (c.n_compiled, functions)
    # each loop, without its re-run on libm (`if nbig:`, for sines beyond vecmath.TRIG_MAX)
    longest = max(len(loop.split("\n    if nbig:")[0].splitlines())
                  for f in c.source.split("\ndef k")[1:] for loop in f.split("\n    for ")[1:])
    assert longest <= CHUNK + 40
    x = np.linspace(-2.0, 2.0, 16)
    loss, grads = api.value_and_grad(graph, {"x": x}, wrt=["x"], backend="numba")
    # the closed form, independently: forward y_{k+1} = sin(y_k) * 1.01 + 0.1, dy/dx by the chain rule
    y, d = chain_closed_form(x, 600)
    assert loss == pytest.approx(np.sum(y), rel=1e-12)
    np.testing.assert_allclose(grads["x"], d, rtol=1e-10, atol=1e-300)
    assert c.fallback_runs == 0
