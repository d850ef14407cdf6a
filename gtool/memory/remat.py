"""Rematerialization as a graph transform on a gradient graph: store or recompute.

Reverse mode reads forward values in the backward pass (tanh's VJP reads its output, matmul's
its inputs), so every such value stays alive from the forward pass until its reader runs.
`apply(gradient, stored)` keeps only the values in `stored` (the checkpoints) and gives every
other backward reader a recomputed copy, `__remat_<value>_<n>`: the forward node again, on
stored values or on other copies, placed just before the first backward node that needs it.
The forward original then dies after its last forward reader (the executor frees after last
use), and each copy after its last backward reader. The copies run the same ops on the same
inputs in the same order, and the backward nodes and their sums are untouched, so gradients
are bitwise equal to the plain gradient graph's.

Policies choose `stored` (docs/memory.md):
- `none`: everything (the plain gradient graph);
- `cheap`: keep the outputs of matmul, reductions and the other costly ops, recompute
  elementwise ops and views (jax's `dots_saveable`);
- `sqrt`: Chen et al. 2016: checkpoints about every sqrt(n) saved values, at articulation
  points of the forward graph (nodes that no edge jumps over, so a skip connection is never
  cut); the values after the last checkpoint are kept (the backward pass starts there);
- `budget=SIZE`: the plan with the least recompute (FLOPs) whose predicted peak fits, among
  the evenly spaced checkpoint plans and, on chains, the dynamic program's plan
  (gtool/memory/search.py, gtool/memory/chain.py); each peak is the executor's own plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..autodiff import Gradient
from ..errors import UsageError
from ..ops.registry import get_op
from ..shapes import Inference
from ..validate import inference_of, with_inference

REMAT_PREFIX = "__remat_"
_CHEAP_GROUPS = ("elementwise", "comparison", "selection", "shape")


@dataclass(frozen=True)
class Policy:
    kind: str  # none | sqrt | cheap | budget
    budget: int | None = None  # bytes, for kind == "budget"

    def __str__(self) -> str:
        return f"budget={self.budget}" if self.kind == "budget" else self.kind


def parse_policy(text) -> Policy:
    """`none`, `sqrt`, `cheap` or `budget=SIZE` (SIZE as in --max-memory: 64MiB, 1e8)."""
    if isinstance(text, Policy):
        return text
    if text is None:
        return Policy("none")
    s = str(text).strip()
    if s in ("none", "sqrt", "cheap"):
        return Policy(s)
    if s.startswith("budget="):
        from ..budget import parse_size

        return Policy("budget", parse_size(s[len("budget="):], "--remat budget="))
    raise UsageError("usage", f"--remat wants none, sqrt, cheap or budget=SIZE, got {s!r}",
                     hint="e.g. --remat sqrt or --remat budget=64MiB")


# the structure of a gradient graph ---------------------------------------------------------------


def forward_nodes(gr: Gradient) -> list[str]:
    """The forward nodes of the gradient graph, in run order (they all precede the backward)."""
    return [n for n in gr.graph.nodes if n in gr.source.nodes]


def backward_readers(gr: Gradient) -> dict[str, list[str]]:
    """Forward value -> the backward nodes that read it (why it is kept for the backward pass)."""
    fwd = gr.source.nodes
    out: dict[str, list[str]] = {}
    for name, node in gr.graph.nodes.items():
        if name in fwd:
            continue
        for i in node.inputs:
            if i in fwd and name not in out.setdefault(i, []):
                out[i].append(name)
    return out


def vjp_owner(gr: Gradient, backward_node: str) -> str:
    """The forward node whose VJP built a backward node (`__bwd_<node>_<k>`), or the node
    itself when it is a gradient sum or a recompute."""
    for prefix in ("__bwd_", REMAT_PREFIX):
        if backward_node.startswith(prefix):
            base = backward_node[len(prefix):].rsplit("_", 1)[0]
            if base in gr.source:
                return base
    return backward_node


def _recomputable(node) -> bool:
    """A random op would draw other numbers: never recompute one (nor a node without a rule)."""
    op = get_op(node.op)
    return op is not None and op.plugin is None and "seed" not in op.attrs


# the transform --------------------------------------------------------------------------------


def apply(gr: Gradient, stored: set[str]) -> Gradient:
    """The gradient graph in which backward nodes read forward values in `stored` directly and
    recomputed copies of every other forward value (see the module docstring)."""
    g = gr.graph
    fwd = set(forward_nodes(gr))
    keep = set(stored) | set(g.outputs) | {n for n in fwd if not _recomputable(g.nodes[n])}
    inf = inference_of(g)
    types = dict(inf.types)
    nodes = {n: g.nodes[n] for n in g.nodes if n in fwd}
    copies: dict[str, str] = {}
    counter: dict[str, int] = {}

    def fresh(v: str) -> str:
        k = counter.get(v, 0)
        while True:
            k += 1
            name = f"{REMAT_PREFIX}{v}_{k}"
            if name not in g.nodes and name not in g.tensors and name not in nodes:
                counter[v] = k
                return name

    def copy_of(v: str) -> str:
        if v not in fwd or v in keep:
            return v
        stack = [(v, False)]
        while stack:  # post-order without recursion: a segment may be hundreds of nodes long
            x, ready = stack.pop()
            if x in copies:
                continue
            node = g.nodes[x]
            todo = [i for i in node.inputs if i in fwd and i not in keep and i not in copies]
            if not ready and todo:
                stack.append((x, True))
                stack.extend((i, False) for i in reversed(todo))
                continue
            name = fresh(x)
            ins = tuple(copies.get(i, i) if i in fwd and i not in keep else i for i in node.inputs)
            nodes[name] = replace(node, name=name, inputs=ins, owner=node.owner or x, shape=None)
            types[name] = types[x]
            copies[x] = name
        return copies[v]

    for name, node in g.nodes.items():
        if name in fwd:
            continue
        ins = tuple(copy_of(i) for i in node.inputs)
        nodes[name] = node if ins == node.inputs else replace(node, inputs=ins)
    if not copies:
        return gr
    out = g.evolve(nodes=nodes, doc=(g.doc or "") + f" (recomputing {len(copies)} forward values)")
    out = with_inference(out, Inference(types, inf.ctx, []))
    return replace(gr, graph=out)


def recomputed(gr: Gradient) -> dict[str, list[str]]:
    """Forward value -> its recompute nodes in a transformed gradient graph."""
    out: dict[str, list[str]] = {}
    for name in gr.graph.nodes:
        if name.startswith(REMAT_PREFIX):
            out.setdefault(vjp_owner(gr, name), []).append(name)
    return out


# policies -----------------------------------------------------------------------------------------


def _costless(gr: Gradient, name: str) -> bool:
    t = inference_of(gr.graph).types[name]
    return t.weak or bool(get_op(gr.graph.nodes[name].op).view)


def cheap_stored(gr: Gradient) -> set[str]:
    """Keep what costly ops made (matmul, reductions, softmax...): recompute elementwise and views."""
    out = set()
    for n in forward_nodes(gr):
        op = get_op(gr.graph.nodes[n].op)
        if not (op.view or op.ufunc is not None or op.group.startswith(_CHEAP_GROUPS)):
            out.add(n)
    return out


def cut_points(gr: Gradient) -> list[str]:
    """Forward nodes that no forward edge jumps over (articulation points of the run order;
    inputs and params are alive anyway and do not count): a checkpoint there cuts the graph."""
    order = forward_nodes(gr)
    pos = {n: k for k, n in enumerate(order)}
    last = list(range(len(order)))
    for k, n in enumerate(order):
        for i in gr.graph.nodes[n].inputs:
            if i in pos:
                last[pos[i]] = max(last[pos[i]], k)
    out, reach = [], -1
    for k, n in enumerate(order):
        if reach <= k and not _costless(gr, n):
            out.append(n)
        reach = max(reach, last[k])
    return out


def segment_stored(gr: Gradient, every: int, tail: int = 0) -> set[str]:
    """Checkpoints at the cut points, one after about `every` saved values; the values after
    the last checkpoint are kept, and so are the last `tail` saved values before it."""
    needed = {n for n in backward_readers(gr) if not _costless(gr, n)}
    cuts = set(cut_points(gr))
    order = forward_nodes(gr)
    stored, count, last_cp = set(), 0, -1
    for k, n in enumerate(order):
        count += n in needed
        if n in cuts and count >= every:
            stored.add(n)
            count, last_cp = 0, k
    stored |= set(order[last_cp + 1:])
    if tail:
        before = [n for n in order[:last_cp + 1] if n in needed and n not in stored]
        stored |= set(before[-tail:])
    return stored


def sqrt_stored(gr: Gradient) -> set[str]:
    n = sum(1 for v in backward_readers(gr) if not _costless(gr, v))
    return segment_stored(gr, max(1, round(math.sqrt(n))))


def recompute_flops(gr: Gradient, bindings: dict[str, int]) -> int:
    from .cost import flops

    g = gr.graph
    types = inference_of(g).types
    return sum(flops(g, types, n, bindings) for n in g.nodes if n.startswith(REMAT_PREFIX))


def rematerialize(gr: Gradient, policy, bindings: dict[str, int] | None = None) -> Gradient:
    """The gradient graph under a policy (`none`, `sqrt`, `cheap`, `budget=SIZE` or a Policy);
    `bindings` (dim sizes) are needed for a budget."""
    policy = parse_policy(policy)
    if policy.kind == "none":
        return gr
    if policy.kind == "cheap":
        return apply(gr, cheap_stored(gr))
    if policy.kind == "sqrt":
        return apply(gr, sqrt_stored(gr))
    from .search import fit_budget

    return fit_budget(gr, policy.budget, bindings or {})


def for_graph(graph, gr: Gradient, policy, dims: dict[str, int] | None = None, inputs: dict | None = None) -> Gradient:
    """`rematerialize` for a library call (cached on the graph per policy and dims): a budget
    is planned at `dims`, the sizes of `inputs` and the file's `dims:`."""
    policy = parse_policy(policy)
    if policy.kind == "none":
        return gr
    bindings: dict[str, int] = {}
    if policy.kind == "budget":
        from .cost import bind_dims

        shapes = {n: getattr(v, "shape", None) for n, v in (inputs or {}).items() if n in graph.tensors}
        fixed = dict(dims or {})
        for n, shape in shapes.items():
            for d, size in zip(graph.tensors[n].shape, shape or ()):
                if len(d.symbols()) == 1 and str(d) in d.symbols():
                    fixed.setdefault(str(d), int(size))
        bindings = bind_dims(graph, fixed)
    key = ("remat", id(gr), str(policy), tuple(sorted(bindings.items())))
    out = graph.cache.get(key)
    if out is None:
        out = graph.cache[key] = rematerialize(gr, policy, bindings)
    return out
