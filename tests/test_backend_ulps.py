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


_RESULTS: dict = {}


def results(which: str, folder) -> dict:
    """One comparison per kind, computed by the test that needs it (so pytest-xdist workers split
    the compile work instead of each building all of it)."""
    if which not in _RESULTS:
        _RESULTS[which] = {
            "float64": lambda: compare("numba", np.float64, folder, ops=ELEMENTWISE),
            "float32": lambda: compare("numba", np.float32, folder, ops=ELEMENTWISE, derivatives=False),
            "rows": lambda: compare("numba", np.float64, folder, ops=ROWS, derivatives=False, first_edge=True),
        }[which]()
    return _RESULTS[which]


def assert_values_within_two_ulps(table: dict, want_ops) -> None:
    worst = {op: row["value"] for op, row in table.items()}
    assert set(worst) >= set(want_ops)
    bad = {op: w for op, w in worst.items() if w > VALUE_ULPS}
    assert bad == {}, bad


@pytest.mark.parametrize("which", ["float32", "rows"])
def test_numba_values_within_two_ulps_of_numpy(tmp_path, which):
    assert_values_within_two_ulps(results(which, tmp_path), ROWS if which == "rows" else [])


def test_numba_float64_values_and_derivatives_close_to_numpy(tmp_path):
    table = results("float64", tmp_path)
    assert_values_within_two_ulps(table, ELEMENTWISE)
    eps = np.finfo(np.float64).eps
    bad = {}
    for op, row in table.items():
        for kind in ("vjp", "jvp"):
            if kind in row and row[kind] > DERIV_ULPS and row[kind + "_abs"] > 4 * eps:
                bad[f"{op} {kind}"] = (row[kind], row[kind + "_abs"])
    assert bad == {}, bad
    have = {op for op, r in table.items() if "vjp" in r and "jvp" in r}
    assert have >= {n for n in ELEMENTWISE if REGISTRY[n].vjp is not None}
