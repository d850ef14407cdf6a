"""The numba backend against the NumPy backend in ULPs, on the ops' edge tables and random
inputs (tests/backend_ulps.py builds one graph per kind, so numba compiles a few graphs here).

CI runs, within its time budget: every elementwise op (all of its edge table) for values in
float64 and float32 and for VJPs and JVPs in float64; reductions and the softmax family for
values on their first edge table (the large-logit cases are in tests/test_edge_values.py).
bench/ulp_report.py prints the full table (every op, every edge, float32 derivatives too).

Bounds: values within 2 ULPs (exp and tanh are numba's vectorizable `_vexp` / `_vtanh`, within
an ulp of libm; reductions accumulate in another order). Derivatives within 16 ULPs, or within
an absolute 4 ulp(1): rules written with the output (tanh' = 1 - y^2, sigmoid(x) sigmoid(-x))
inherit the forward's last-ulp difference, cancelled down to a tiny result.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from backend_ulps import compare  # noqa: E402
from edge_graph import builtin_ops  # noqa: E402

from gtool.ops import REGISTRY  # noqa: E402

ELEMENTWISE = [n for n in builtin_ops() if REGISTRY[n].group.startswith(("elementwise", "comparison", "selection"))]
ROWS = [n for n in builtin_ops() if REGISTRY[n].group.startswith(("reductions", "neural nets"))]
VALUE_ULPS, DERIV_ULPS = 2, 16


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ulps")
    return {"float64": compare("numba", np.float64, folder, ops=ELEMENTWISE),
            "float32": compare("numba", np.float32, folder, ops=ELEMENTWISE, derivatives=False),
            "rows": compare("numba", np.float64, folder, ops=ROWS, derivatives=False, first_edge=True)}


@pytest.mark.parametrize("which", ["float64", "float32", "rows"])
def test_numba_values_within_two_ulps_of_numpy(results, which):
    worst = {op: row["value"] for op, row in results[which].items()}
    assert set(worst) >= set(ROWS if which == "rows" else [n for n in ELEMENTWISE if which == "float64"])
    bad = {op: w for op, w in worst.items() if w > VALUE_ULPS}
    assert bad == {}, bad


def test_numba_derivatives_close_to_numpy(results):
    eps = np.finfo(np.float64).eps
    bad = {}
    for op, row in results["float64"].items():
        for kind in ("vjp", "jvp"):
            if kind in row and row[kind] > DERIV_ULPS and row[kind + "_abs"] > 4 * eps:
                bad[f"{op} {kind}"] = (row[kind], row[kind + "_abs"])
    assert bad == {}, bad
    have = {op for op, r in results["float64"].items() if "vjp" in r and "jvp" in r}
    assert have >= {n for n in ELEMENTWISE if REGISTRY[n].vjp is not None}
