"""ONNX export figures: per bundled graph, its nodes -> ONNX nodes, the largest difference
onnxruntime shows against gtool (relative to each output's largest magnitude), and whether
`yaml -> onnx -> yaml` gives the same file; then export and re-import times of a long chain.

It is a benchmark, not a test (tests/test_onnx_export.py holds the checks):
`python3 bench/onnx_export.py [--chain 20000]`.
"""

from __future__ import annotations

import argparse
import glob
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gtool  # noqa: E402
from gtool import api  # noqa: E402
from gtool.format.write import dumps  # noqa: E402
from gtool.onnx.export import export_model, save_model  # noqa: E402


def ort_outputs(model, feeds: dict) -> list:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})


def bundled(folder: Path) -> None:
    print(f"{'graph':34} {'nodes':>5} {'onnx':>5} {'dtype':>8} {'max rel. diff':>14}  round trip")
    for path in sorted(glob.glob(str(folder / "*.yaml")) + glob.glob(str(folder / "*.json"))):
        graph = gtool.load(path)
        model = export_model(graph)
        values = api.all_values(graph, random_inputs=True, seed=1)
        feeds = {n: values[n] for n in graph.of_kind("input")}
        want = api.run(graph, feeds)
        worst = 0.0
        for name, got in zip(graph.outputs, ort_outputs(model, feeds)):
            w = np.asarray(want[name], np.float64)
            scale = max(float(np.max(np.abs(w))), 1e-300)
            worst = max(worst, float(np.max(np.abs(np.asarray(got, np.float64) - w))) / scale)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "m.onnx"
            save_model(model, str(out))
            same = dumps(gtool.load(out)) == dumps(graph)
        dtype = np.asarray(want[graph.outputs[0]]).dtype
        print(f"{Path(path).name:34} {len(graph.nodes):5} {len(model.graph.node):5} {str(dtype):>8} "
              f"{worst:14.2e}  {'same file' if same else 'DIFFERS'}")


def chain(n: int) -> None:
    lines = ["gtool: 1", "inputs:", "  x: [n]", "nodes:", "  a0: sin(x)"]
    lines += [f"  a{k}: a{k - 1} * 0.5 + x" for k in range(1, n)]
    lines.append(f"outputs: [a{n - 1}]")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "chain.yaml", Path(tmp) / "chain.onnx"
        src.write_text("\n".join(lines) + "\n")
        graph = gtool.load(src)
        t0 = time.perf_counter()
        model = export_model(graph)
        t1 = time.perf_counter()
        save_model(model, str(dst))
        t2 = time.perf_counter()
        back = gtool.load(dst)
        t3 = time.perf_counter()
    print(f"chain of {len(graph.nodes)} nodes: export {t1 - t0:.2f} s, write {t2 - t1:.2f} s, "
          f"re-import {t3 - t2:.2f} s ({len(model.graph.node)} ONNX nodes, {len(back.nodes)} back)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graphs", default=str(Path(__file__).resolve().parent.parent / "graphs"))
    ap.add_argument("--chain", type=int, default=10000, help="nodes/2 of the chain graph (0: skip)")
    args = ap.parse_args()
    bundled(Path(args.graphs))
    if args.chain:
        chain(args.chain)


if __name__ == "__main__":
    main()
