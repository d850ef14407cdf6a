"""The gradient graph as it runs: reverse mode's output with its leftovers simplified.

Reverse mode writes each VJP rule's nodes as they come: `1 * g` at the seed, a broadcast of
the scalar gradient of a sum, the same `g * r` from both sides of `r * r`, an `identity`
per gradient output. `simplify_backward` runs the simplification rules (rewrite/simplify.py,
`BACKWARD`: scalar folding, CSE, `x * 1`, `x + 0`, identity and broadcast elimination,
`x + x = 2 x` and exact folding of number factors) to a fixed point, then names the node that
computes each gradient output after it instead of keeping an `identity` copy. Every rule is
an identity of the values, so the result computes the same loss and gradients (bit for bit,
except that a broadcast operand is no longer stored first); the engine checks each
replacement keeps the node's type.

`autodiff.grad` keeps its unsimplified graph: explain, render and grad-check's localisation
read its contributions node by node.
"""

from __future__ import annotations

from dataclasses import replace

from ..ir import Graph
from .engine import run_rules
from .simplify import BACKWARD


def simplify_backward(graph: Graph) -> Graph:
    """The simplified gradient graph (same outputs, loss and names of outputs)."""
    return _name_outputs(run_rules(graph, BACKWARD).graph)


def _name_outputs(graph: Graph) -> Graph:
    """`o = identity(x)` for an output o and a backward step x (`__bwd_...`): x is renamed o (its
    readers read o), and the copy goes. A fan-out sum `__grad_<v>` keeps its name (it means
    the gradient of v; explain and render show it), so its output stays a copy."""
    keep = set(graph.outputs) | ({graph.loss} if graph.loss else set())
    rename: dict[str, str] = {}
    for o in graph.outputs:
        node = graph.nodes.get(o)
        if node is None or node.op != "identity":
            continue
        x = node.inputs[0]
        if x in graph.nodes and x not in keep and x.startswith("__bwd_") and x not in rename:
            rename[x] = o
    if not rename:
        return graph
    copies = set(rename.values())
    nodes = {}
    for name, node in graph.nodes.items():
        if name in copies and node.op == "identity" and rename.get(node.inputs[0]) == name:
            continue
        new = rename.get(name, name)
        if new != name or any(i in rename for i in node.inputs):
            node = replace(node, name=new, inputs=tuple(rename.get(i, i) for i in node.inputs))
        nodes[new] = node
    return graph.evolve(nodes=nodes)
