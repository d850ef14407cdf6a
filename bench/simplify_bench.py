"""Time of `simplify_backward` (the gradient graph's simplification, rewrite/backward.py) on
big graphs (issue 15: the numba warm start of the 2,000-op chain must fit in 1 s).

    .venv/bin/python bench/simplify_bench.py [--repeat 5] [--only chain]

Each workload's gradient graph is built once; simplify_backward then runs `repeat` times on
it (a fresh call each time: the api's cache is bypassed) and the median of time.perf_counter
is shown, with the node counts before and after and a fingerprint of the result (what
tests/test_simplify_same.py pins, so a faster engine is checked to give the same graphs).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from gtool import api  # noqa: E402


def chain_text(n: int = 2000) -> str:
    """The peers harness's chain (shared/bench/peers/gtool_peer.py): sin, * 1.01, + 0.1, repeated."""
    lines, prev = [], "x"
    for i in range(n):
        lines.append(f"  c{i}: " + ("sin({p})", "{p} * 1.01", "{p} + 0.1")[i % 3].format(p=prev))
        prev = f"c{i}"
    return "gtool: 1\ninputs:\n  x: [16]\nnodes:\n" + "\n".join(lines) + f"\n  L: sum({prev})\noutputs: [L]\nloss: L\n"


def workloads() -> dict:
    """name -> a function giving the forward graph."""
    from memory_graphs import mlp_yaml

    return {
        "chain2000": lambda: loads(chain_text(2000)),
        "transformer_block": lambda: api.load(ROOT / "graphs" / "transformer_block.yaml"),
        "cnn_digits": lambda: api.load(ROOT / "graphs" / "cnn_digits.yaml"),
        "mlp128": lambda: loads(mlp_yaml(128, 1024, 64)),
    }


def loads(text: str):
    """A graph from YAML text (through a temporary file: the loader reads files)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "g.yaml"
        path.write_text(text)
        return api.load(path)


def fingerprint(graph) -> str:
    """sha256 of everything a simplified graph holds, in order: nodes (name, op, inputs, attrs,
    owner, location), tensors (name, kind, type, value bytes), outputs and the loss."""
    h = hashlib.sha256()
    for node in graph.nodes.values():
        h.update(repr((node.name, node.op, node.inputs, sorted(node.attrs.items()), node.shape, node.doc,
                       _where(node.loc), node.owner)).encode())
    for t in graph.tensors.values():
        v = None if t.value is None else (t.value.dtype.str, t.value.shape, t.value.tobytes().hex())
        h.update(repr((t.name, t.kind, t.type, v, _where(t.loc))).encode())
    h.update(repr((graph.outputs, graph.loss)).encode())
    return h.hexdigest()[:16]


def _where(loc) -> tuple:
    """A location without its file's path (the files here are temporary)."""
    return loc.line, loc.column, loc.pointer


def main() -> None:
    from gtool.rewrite.backward import simplify_backward

    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--only", default=None)
    args = p.parse_args()
    for name, make in workloads().items():
        if args.only and args.only != name:
            continue
        gg = api.gradient(make()).graph
        times, out = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = simplify_backward(gg)
            times.append(time.perf_counter() - t0)
        print(f"{name:18s} nodes {len(gg.nodes):6d} -> {len(out.nodes):6d}  median {statistics.median(times):8.4f} s"
              f"  min {min(times):8.4f} s  fingerprint {fingerprint(out)}", flush=True)


if __name__ == "__main__":
    main()
