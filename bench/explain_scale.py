"""How `gtool explain` grows with the length of a chain, next to validate and grad.

A scalar chain `h_k = tanh(h_{k-1})`, `h_k = sin(h_{k-1}) * 0.9`, ... of N user nodes (1.5 N
graph nodes) ending in `L`. Before explain summarised long chains and found each node's
contributions through a map (it scanned every contribution list per node), 20,000 nodes ran
past a minute (quadratic); now explain costs about as much as two gradient passes plus one
compile of the gradient graph. Figures are CPU seconds (steadier than wall time on a shared
machine), the median of `--repeat` runs, in this process.
It is a benchmark, not a test: `python bench/explain_scale.py [--sizes 2000,20000]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gtool import api, interp  # noqa: E402
from gtool import explain as ex  # noqa: E402
from gtool.validate import load  # noqa: E402


def chain_yaml(n: int) -> str:
    lines = ["gtool: 1", "inputs:", "  x: {shape: [], value: 0.5}", "nodes:"]
    prev = "x"
    for i in range(n):
        lines.append(f"  h{i}: sin({prev}) * 0.9" if i % 2 else f"  h{i}: tanh({prev})")
        prev = f"h{i}"
    lines += [f"  L: {prev} * 1.0", "outputs: [L]", "loss: L"]
    return "\n".join(lines) + "\n"


def cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def measure(path: str, repeat: int) -> dict[str, float]:
    rows = []
    for _ in range(repeat):
        r = {"validate": cpu(lambda: load(path))}
        g1, g2 = load(path), load(path)
        r["grad"] = cpu(lambda g=g1: interp.execute(api.grad(g), None))
        r["explain"] = cpu(lambda g=g2: ex.to_text(ex.explain(g, None)))
        rows.append(r)
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2000,5000,20000")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    out = []
    with tempfile.TemporaryDirectory(prefix="gtool-explain-") as tmp:
        for n in sizes:
            path = str(Path(tmp) / f"chain{n}.yaml")
            Path(path).write_text(chain_yaml(n))
            r = measure(path, args.repeat)
            out.append((n, r))
            print(f"{n:>7} nodes: validate {r['validate']:.2f} s, grad {r['grad']:.2f} s, "
                  f"explain {r['explain']:.2f} s (x{r['explain'] / r['grad']:.1f} grad)", flush=True)
    if len(out) >= 2:
        (n0, r0), (n1, r1) = out[0], out[-1]
        ratio = (r1["explain"] / n1) / (r0["explain"] / n0)
        print(f"explain time per node at {n1} vs {n0} nodes: x{ratio:.2f} ({'linear' if ratio < 1.5 else 'NOT linear'})")
        return 0 if ratio < 1.5 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
