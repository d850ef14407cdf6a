"""`budget=` on chains: the least recompute that fits, by dynamic programming.

On a chain (every value a VJP reads is an articulation point: an MLP, a stack of residual
blocks) a plan is a set S of checkpoints v_q among the saved values v_1..v_n (v_n always kept;
v_0, the input, is alive anyway). The backward pass of the segment between consecutive
checkpoints p < q recomputes v_{p+1}..v_{q-1} from v_p while the checkpoints up to q are still
held (v_q's own VJP runs as its segment starts), so the plan's peak is modelled as

    max over segments (p, q) of  P(q) + sum(b_{p+1..q-1})

where P(q) is the bytes of the checkpoints up to q, and its recompute is the FLOPs of every
value not in S (c_i: the nodes from v_{i-1} to v_i). The dynamic program keeps, for each last
checkpoint q, the Pareto front of (bytes held P, FLOPs saved) and extends it by the next
checkpoint while the segment in between fits: exact for this model (the single-level schedule
of Chen et al.; Griewank's multi-level schedule would recompute less at very small budgets).
What the model leaves out (gradient buffers, params' gradients held until the end, NumPy's
scratch) is calibrated against the executor's simulated plan: the model's budget shrinks by the
difference until the real plan fits.
"""

from __future__ import annotations

from ..autodiff import Gradient
from ..validate import inference_of
from .cost import flops
from .remat import _costless, apply, backward_readers, cut_points, forward_nodes


def chain_of(gr: Gradient, bindings: dict[str, int]) -> tuple[list[str], list[int], list[int]] | None:
    """(saved values in run order, their bytes, the FLOPs of recomputing each from the previous
    one), or None when the graph is not a chain (a saved value that is not an articulation point)."""
    import numpy as np

    from .cost import _numel

    readers = backward_readers(gr)
    order = forward_nodes(gr)
    cuts = set(cut_points(gr))
    g, types = gr.graph, inference_of(gr.graph).types
    names, sizes, costs = [], [], []
    cost = 0
    for n in order:
        cost += flops(g, types, n, bindings)
        if n not in readers or _costless(gr, n):
            continue
        if n not in cuts:
            return None
        t = types[n]
        names.append(n)
        sizes.append(_numel(t.shape, bindings, n) * np.dtype(t.dtype).itemsize)
        costs.append(cost)
        cost = 0
    return (names, sizes, costs) if len(names) > 2 else None


def best_checkpoints(sizes: list[int], costs: list[int], budget: int) -> list[int] | None:
    """Indices of the checkpoints that save the most FLOPs with a modelled peak <= budget (the
    last value is always kept); None when even the sparsest plan does not fit."""
    n = len(sizes)
    prefix = [0]
    for s in sizes:
        prefix.append(prefix[-1] + s)

    def gap(q: int, r: int) -> int:  # bytes of the values strictly between positions q and r (1-based)
        return prefix[r - 1] - prefix[q]

    fronts: list[list[tuple[int, int, int, int]]] = [[] for _ in range(n + 1)]  # (held, saved, prev q, prev k)
    fronts[0] = [(0, 0, -1, -1)]
    for q in range(n):
        if q:
            fronts[q] = _pareto(fronts[q])
        for k, (held, saved, _, _) in enumerate(fronts[q]):
            for r in range(q + 1, n + 1):
                between = held + gap(q, r)
                if between > budget:
                    break
                if between + sizes[r - 1] > budget:  # v_r is still held while its segment is recomputed
                    continue
                fronts[r].append((held + sizes[r - 1], saved + costs[r - 1], q, k))
    fronts[n] = _pareto(fronts[n])
    if not fronts[n]:
        return None
    k = max(range(len(fronts[n])), key=lambda i: (fronts[n][i][1], -fronts[n][i][0]))
    picks, q = [], n
    while q > 0:
        picks.append(q - 1)
        _, _, q, k = fronts[q][k]
    return sorted(picks)


def _pareto(items: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Keep the entries that no other beats on both fewer bytes held and more FLOPs saved."""
    out = []
    for item in sorted(items, key=lambda t: (t[0], -t[1])):
        if not out or item[1] > out[-1][1]:
            out.append(item)
    return out


def fit_chain(gr: Gradient, budget: int, bindings: dict[str, int], peak_of) -> Gradient | None:
    """The DP's plan whose simulated peak (`peak_of(gradient) -> bytes`) fits, or None."""
    chain = chain_of(gr, bindings)
    if chain is None:
        return None
    names, sizes, costs = chain
    # what the model leaves out, read off the plain plan: its real peak minus the model's
    model = budget - max(0, peak_of(gr) - sum(sizes))
    for _ in range(6):  # calibrate the model's budget against the real plan
        picks = best_checkpoints(sizes, costs, model)
        if picks is None:
            return None
        g = apply(gr, {names[i] for i in picks})
        peak = peak_of(g)
        if peak <= budget:
            return g
        model -= max(peak - budget, 1)
    return None
