"""Report (not a test): how close gtool.vjp comes to torch.autograd on the PyTorch models.

    python3 bench/torch_models.py

For each model of tests/data/onnx (written by tests/data/onnx/make_torch_models.py with torch),
one row: the nodes gtool imported, the largest output error relative to the output's largest
entry, the largest gradient error relative to the model's largest gradient entry (the scale
tests/test_torch_models.py holds them to: 1e-9 in float64, 2e-4 in float32), and the time of
`gtool.vjp` (median of 5, the gradient graph already built). A model whose ONNX ops have no
converter yet is listed with the missing ops.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gtool  # noqa: E402
from gtool import report  # noqa: E402

DATA = ROOT / "tests" / "data" / "onnx"
MODELS = [("mlp", "float64"), *((m, d) for m in ("cnn", "transformer", "bn_mlp") for d in ("float32", "float64"))]


def _part(arrays: dict, kind: str) -> dict:
    return {k.split(":", 1)[1]: v for k, v in arrays.items() if k.startswith(kind + ":")}


def row(path: Path) -> list:
    import onnx

    from gtool.onnx.registry import converted_ops

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    missing = sorted(ops - converted_ops())
    if missing:
        return [path.stem, "", "", "", "", "no converter: " + ", ".join(missing)]
    arrays = dict(np.load(path.with_suffix(".npz")))
    inputs, cots, want = _part(arrays, "input"), _part(arrays, "cot"), _part(arrays, "grad")
    graph = gtool.load(path)
    outs, grads = gtool.vjp(graph, inputs, cots, wrt=list(want))
    times = []
    for _ in range(5):
        t = time.perf_counter()
        gtool.vjp(graph, inputs, cots, wrt=list(want))
        times.append(time.perf_counter() - t)
    scale = max(float(np.max(np.abs(g))) for g in want.values())
    out_err = max(float(np.max(np.abs(outs[k] - v)) / np.max(np.abs(v))) for k, v in _part(arrays, "output").items())
    grad_err = max(float(np.max(np.abs(grads[k] - v))) / scale for k, v in want.items())
    return [path.stem, len(graph.nodes), f"{out_err:.1e}", f"{grad_err:.1e}", f"{statistics.median(times) * 1e3:.2f}",
            "ok"]


def main() -> None:
    rows = [row(DATA / f"torch_{name}_{dtype}.onnx") for name, dtype in MODELS]
    print(report.table(["model", "nodes", "output err", "gradient err", "vjp ms", ""], rows))


if __name__ == "__main__":
    main()
