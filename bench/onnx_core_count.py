"""Issue 12's "core" count: ONNX's node tests for the issue's core op list, run by ONNX's own
reference evaluator and by gtool, with every gtool skip and its reason.

A node test is a core test when every op it runs (function bodies included, as the
conformance test enrols them) is in the issue's list (`CORE_OPS` in
tests/test_onnx_conformance.py); `*_expanded` variants count when their expansions use only
core ops. Each test is run as the conformance test runs it (shape-valued inputs bound as
initializers for gtool; the reference evaluator gets the model as it is), compared the same way.

A figure, not a test: `python3 bench/onnx_core_count.py [--list]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _compare(got: list, want: list) -> None:
    import test_onnx_conformance as conf

    for k, (g, w) in enumerate(zip(got, want)):
        conf._same(f"output {k}", np.asarray(g), conf._array(w))


def reference_result(name: str) -> str:
    """'pass', or 'fail: why' for ONNX's ReferenceEvaluator on the test's first data set."""
    import test_onnx_conformance as conf
    from onnx.reference import ReferenceEvaluator

    blob, data_sets = conf.TESTS[name]
    model = conf._model(blob)
    inputs, expected = data_sets[0]
    inits = {t.name for t in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in inits]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = ReferenceEvaluator(model).run(None, dict(zip(names, map(conf._array, inputs))))
        _compare(got, expected)
    except Exception as e:  # noqa: BLE001 - a figure: any failure is counted and shown
        return f"fail: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    return "pass"


def gtool_result(name: str, folder: Path) -> str:
    """'pass', 'skip: reason' or 'fail: why', as the conformance test decides."""
    import pytest
    import test_onnx_conformance as conf

    try:
        conf.test_onnx_node(name, folder)
    except pytest.skip.Exception as e:
        return f"skip: {e.msg}"
    except Exception as e:  # noqa: BLE001
        return f"fail: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    return "pass"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print every core test's two results")
    args = parser.parse_args()
    import test_onnx_conformance as conf

    names = conf.core_tests()
    tally = {"reference": {}, "gtool": {}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, name in enumerate(names):
            ref = reference_result(name)
            folder = Path(tmp) / str(k)
            folder.mkdir()
            ours = gtool_result(name, folder)
            for who, r in (("reference", ref), ("gtool", ours)):
                key = r.split(":")[0]
                tally[who][key] = tally[who].get(key, 0) + 1
            rows.append((name, ref, ours))
    import onnx

    print(f"onnx {onnx.__version__}: {len(names)} core node tests (every op in issue 12's list)")
    for who in ("reference", "gtool"):
        t = tally[who]
        print(f"  {who:9s}: " + ", ".join(f"{v} {k}" for k, v in sorted(t.items())))
    for name, ref, ours in rows:
        if args.list or ref != "pass" or ours != "pass":
            print(f"  {name}: reference {ref}; gtool {ours}")


if __name__ == "__main__":
    main()
