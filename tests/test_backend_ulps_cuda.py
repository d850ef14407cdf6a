"""The CUDA backend (under numba's simulator, NUMBA_ENABLE_CUDASIM=1, as in CI) against the NumPy
backend in ULPs on the ops' edge tables: values of every elementwise op in float64 and float32,
and of the reductions and the softmax family on their first edge table. Derivatives on CUDA are
the same kernels run on gradient graphs; tests/test_backends.py checks them on random inputs.
The compiled kernels must really run (no fall back to NumPy), or the comparison proves nothing.

The simulator runs each thread's arithmetic with Python's `math`, which raises ValueError where a
GPU returns NaN (log(-1), sin(inf)); so here the edge tables are cut to the elements whose inputs
are not NaN or inf and whose NumPy value is finite (log(0) and exp overflow raise there too);
±0, subnormals, ±1e308 and kinks stay. The reductions and the softmax family run their
first edge rows whole (their ±inf logits take no math path that raises). The numba CPU
backend runs the whole tables (tests/test_backend_ulps.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")  # before numba.cuda is imported anywhere

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("numba")

from backend_ulps import compare  # noqa: E402
from edge_graph import (
    EdgeCase,  # noqa: E402
    builtin_ops,  # noqa: E402
)

from gtool.backends import get_backend  # noqa: E402
from gtool.ops import REGISTRY  # noqa: E402

ELEMENTWISE = [n for n in builtin_ops() if REGISTRY[n].group.startswith(("elementwise", "comparison", "selection"))]
ROWS = [n for n in builtin_ops() if REGISTRY[n].group.startswith(("reductions", "neural nets"))]


def simulator_domain(case: EdgeCase) -> EdgeCase | None:
    """The case cut to what Python's math can compute (see the module docstring)."""
    if any(a.ndim != 1 for a in case.inputs) or len({a.shape for a in case.inputs}) != 1:
        return case if all(np.isfinite(a).all() for a in case.inputs if a.dtype.kind == "f") else None
    opdef = REGISTRY[case.op]
    with np.errstate(all="ignore"):
        out = np.asarray(opdef.forward(*case.inputs, **opdef.prepare(case.attrs, {})))
    ok = np.isfinite(out) if out.dtype.kind == "f" else np.ones(out.shape, bool)
    for a in case.inputs:
        if a.dtype.kind == "f":
            ok &= np.isfinite(a)
    if not ok.any():
        return None
    return EdgeCase(case.op, tuple(a[ok] for a in case.inputs), case.attrs, case.label)


@pytest.mark.parametrize("dtype,ops,first", [(np.float64, "elementwise", False), (np.float32, "elementwise", False),
                                             (np.float64, "rows", True)], ids=["f64", "f32", "rows"])
def test_cuda_values_within_two_ulps_of_numpy(tmp_path, dtype, ops, first):
    if get_backend("cuda").sim is False:
        pytest.skip("a real GPU: the simulator test is for machines without one")
    names = ELEMENTWISE if ops == "elementwise" else ROWS
    before = get_backend("cuda").fallback_runs
    worst = {op: row["value"] for op, row in
             compare("cuda", dtype, tmp_path, ops=names, derivatives=False, first_edge=first,
                     keep=simulator_domain if ops == "elementwise" else None).items()}
    assert get_backend("cuda").fallback_runs == before, "the CUDA kernels fell back to NumPy"
    assert len(worst) >= len(names) - 2  # an op may lose every edge element to the cut, not most ops
    bad = {op: w for op, w in worst.items() if w > 2}
    assert bad == {}, bad
