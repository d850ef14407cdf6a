"""What values and recomputes cost: bytes and FLOPs from the inferred shapes at bound dims.

Shared by the plan (gtool/memory/plan.py) and the transform (gtool/memory/remat.py), which
must not depend on each other's job: the transform runs nothing.
"""

from __future__ import annotations

from ..errors import UsageError
from ..ops.registry import get_op


def bind_dims(graph, dims: dict[str, int] | None) -> dict[str, int]:
    """The sizes of every dim for a plan: --dim, then the file's `dims:`, then what shape
    inference derives from those (the executor's own binder, without data)."""
    from ..feeds import DimBinder
    from ..validate import inference_of

    return DimBinder(graph, dims, dict(inference_of(graph).ctx.bindings)).finish()


def _numel(shape, bindings: dict[str, int], where: str) -> int:
    n = 1
    for d in shape:
        try:
            n *= int(d.evaluate(bindings))
        except KeyError as e:
            raise UsageError("unbound-dim", f"the size of '{where}' needs dim {e.args[0]!r}",
                             hint=f"give it with --dim {e.args[0]}=SIZE") from None
    return n


def flops(graph, types, node: str, bindings: dict[str, int]) -> int:
    """A floating-point operation count for one node: 2mnk for matmul, nothing for views and
    weak scalars, else one per element of its largest operand (an estimate, used to compare
    plans: what recomputing a value costs)."""
    n = graph.nodes[node]
    op = get_op(n.op)
    t = types[node]
    if t.weak:
        return 0
    if op.view and n.op not in ("cast",):
        return 0
    sizes = [_numel(types[i].shape, bindings, i) for i in n.inputs] + [_numel(t.shape, bindings, node)]
    if n.op == "matmul":
        a = types[n.inputs[0]].shape
        k = int(a[-1].evaluate(bindings)) if a else 1
        return 2 * sizes[-1] * k
    return max(sizes)
