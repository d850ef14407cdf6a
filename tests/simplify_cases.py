"""Graphs whose simplified gradient graphs (and rewritten forward graphs) are pinned by
tests/test_simplify_same.py, and the fingerprint that pins them: the rewrite engine's speed
work must not change a single node, name, constant or log entry. bench/simplify_bench.py
times `simplify_backward` on the same graphs.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def chain_text(n: int = 2000, ops: tuple[str, ...] = ("sin({p})", "{p} * 1.01", "{p} + 0.1"), size: int = 16) -> str:
    """The peers harness's chain (shared/bench/peers/gtool_peer.py): sin, * 1.01, + 0.1, repeated."""
    lines, prev = [], "x"
    for i in range(n):
        lines.append(f"  c{i}: " + ops[i % len(ops)].format(p=prev))
        prev = f"c{i}"
    return f"gtool: 1\ninputs:\n  x: [{size}]\nnodes:\n" + "\n".join(lines) + f"\n  L: sum({prev})\noutputs: [L]\nloss: L\n"



def chain_closed_form(x, n: int):
    """(final value, d final / d x) of chain_text's default chain, by the chain rule in NumPy:
    y <- sin(y) (d <- d cos(y)), y <- 1.01 y (d <- 1.01 d), y <- y + 0.1."""
    import numpy as np

    y, d = np.array(x, dtype=float), np.ones(len(x))
    for i in range(n):
        if i % 3 == 0:
            d, y = d * np.cos(y), np.sin(y)
        elif i % 3 == 1:
            d, y = d * 1.01, y * 1.01
        else:
            y = y + 0.1
    return y, d

# a chain of big vectors, so the sign rules (negations of >= 4096 elements) fire, and sigmoids
# whose VJP's exp(-|x|) the forward shares
SIGNS = ("cos({p})", "-{p}", "2 * {p}", "sigmoid({p})", "{p} - tanh({p})", "{p} * {p}", "{p} ** 2",
         "exp(-{p}) + 0")


def loads(text: str):
    """A graph from YAML text (through a temporary file: the loader reads files)."""
    from gtool import api

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "g.yaml"
        path.write_text(text)
        return api.load(path)


def bundled() -> dict:
    """name -> a function giving the forward graph: every bundled graph."""
    from gtool import api

    return {p.stem: (lambda p=p: api.load(p)) for p in sorted((ROOT / "graphs").iterdir())
            if p.suffix in (".yaml", ".json")}


def big() -> dict:
    """name -> a function giving the forward graph: the big graphs of the speed work."""
    from memory_graphs import mlp_yaml

    return {
        "chain2000": lambda: loads(chain_text(2000)),
        "signs300": lambda: loads(chain_text(300, SIGNS, 4096)),
        "mlp128": lambda: loads(mlp_yaml(128, 1024, 64)),
        "mlp_residual": lambda: loads(mlp_yaml(12, 32, 16, residual=True, skip=True)),
    }


def _where(loc) -> tuple:
    """A location without its file's path (the files are temporary)."""
    return loc.line, loc.column, loc.pointer


def fingerprint(graph, applied=()) -> str:
    """sha256 of everything a graph holds, in order (nodes: name, op, inputs, attrs, owner,
    location; tensors: name, kind, type, value bytes; outputs, loss) and of a rewrite log."""
    h = hashlib.sha256()
    for node in graph.nodes.values():
        h.update(repr((node.name, node.op, node.inputs, sorted(node.attrs.items()), node.shape, node.doc,
                       _where(node.loc), node.owner)).encode())
    for t in graph.tensors.values():
        v = None if t.value is None else (t.value.dtype.str, t.value.shape, t.value.tobytes().hex())
        h.update(repr((t.name, t.kind, t.type, v, _where(t.loc))).encode())
    h.update(repr((graph.outputs, graph.loss)).encode())
    for a in applied:
        h.update(repr((a.rule, a.node, a.owner, a.line, sorted(a.vars.items()), a.note)).encode())
    return h.hexdigest()[:20]


def results() -> dict:
    """name -> fingerprint, for every pinned graph: `<g>:backward` (simplify_backward of its
    gradient graph), `<g>:rewrite` (every rule on the forward graph, with the log) and
    `<g>:simplify` (the simplification rules alone)."""
    from gtool import api
    from gtool.rewrite import SIMPLIFY, rewrite
    from gtool.rewrite.backward import simplify_backward

    out = {}
    for name, make in {**bundled(), **big()}.items():
        g = make()
        out[f"{name}:backward"] = fingerprint(simplify_backward(api.gradient(g).graph))
        if name in ("chain2000", "mlp128"):
            continue
        r = rewrite(g)
        out[f"{name}:rewrite"] = fingerprint(r.graph, r.applied)
        r = rewrite(g, list(SIMPLIFY))
        out[f"{name}:simplify"] = fingerprint(r.graph, r.applied)
    return out
