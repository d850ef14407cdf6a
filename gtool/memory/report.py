"""`gtool memory`: the store-vs-recompute table of a gradient run, from the executor's plan.

For each forward value the backward pass reads: its bytes, whether it is stored (alive when
the backward pass starts) or recomputed (`__remat_` copies), why (which VJP reads it) and
what recomputing it costs. The peak, where it occurs and the live bytes over the run come
from `plan.simulate` on the very Program that `value_and_grad` runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..autodiff import Gradient
from ..budget import human
from ..errors import UsageError
from ..validate import inference_of
from .plan import Plan, bind_dims, flops, simulate
from .remat import REMAT_PREFIX, backward_readers, forward_nodes, parse_policy, recomputed, rematerialize, vjp_owner

SPARK = " ▁▂▃▄▅▆▇█"


@dataclass
class MemoryReport:
    gradient: Gradient
    plan: Plan
    policy: str
    rows: list[dict]
    boundary: int  # index of the first backward step in plan.steps

    @property
    def peak_bytes(self) -> int:
        return self.plan.peak_bytes

    def to_json(self) -> dict:
        p = self.plan
        k = p.peak_step
        return {
            "policy": self.policy, "dims": p.bindings, "peak_bytes": p.peak_bytes,
            "peak_at": {"node": p.peak_node, "step": k, "phase": self.phase(k)},
            "saved_bytes": sum(r["bytes"] for r in self.rows if r["stored"]),
            "recompute_flops": sum(r["recompute_flops"] for r in self.rows),
            "forward_flops": self.forward_flops, "tensor_bytes": p.tensor_bytes,
            "nodes": self.rows,
            "timeline": [{"node": s.node, "live_bytes": s.live_during} for s in p.steps],
        }

    @property
    def forward_flops(self) -> int:
        g = self.gradient.graph
        types = inference_of(g).types
        return sum(flops(g, types, n, self.plan.bindings) for n in forward_nodes(self.gradient))

    def phase(self, k: int) -> str:
        if k < 0:
            return "inputs"
        node = self.plan.steps[k].node
        return "recompute" if node.startswith(REMAT_PREFIX) else "forward" if k < self.boundary else "backward"


def memory_report(graph, wrt=None, of: str | None = None, remat=None, dims: dict[str, int] | None = None,
                  gradient: Gradient | None = None) -> MemoryReport:
    """The memory plan of `value_and_grad(graph, wrt, of, remat=...)` at `dims` (numpy backend)."""
    from .. import api
    from ..interp import program

    policy = parse_policy(remat)
    bindings = bind_dims(graph, dims)
    gr = gradient or rematerialize(api.gradient(graph, wrt, of), policy, bindings)
    prog = program(gr.graph)
    plan = simulate(prog, bindings)
    fwd = set(forward_nodes(gr))
    boundary = next((k for k, st in enumerate(prog.steps) if st.node not in fwd), len(prog.steps))
    alive = plan.live_at(boundary - 1)
    readers = backward_readers(gr)
    copies = recomputed(gr)
    g, types = gr.graph, inference_of(gr.graph).types
    rows = []
    for n in forward_nodes(gr):
        if n not in readers and n not in copies:
            continue
        stored = n in alive and n not in g.outputs
        why = sorted({vjp_owner(gr, r) for r in readers.get(n, []) if not r.startswith(REMAT_PREFIX)})
        via = sorted({vjp_owner(gr, r) for r in readers.get(n, []) if r.startswith(REMAT_PREFIX)})
        if n in copies:  # who reads the copies: VJPs, or other copies on the way to one
            later = [r for c in copies[n] for r in _readers_of(g, c)]
            why = sorted(set(why) | {vjp_owner(gr, r) for r in later if not r.startswith(REMAT_PREFIX)})
            via = sorted(set(via) | {vjp_owner(gr, r) for r in later if r.startswith(REMAT_PREFIX)})
        rows.append({"name": n, "op": g.nodes[n].op, "bytes": plan.value_bytes.get(n, 0), "stored": stored,
                     "recomputed": n in copies, "output": n in g.outputs,
                     "reason": _reason(n, why, via, stored, n in copies, plan, n),
                     "read_by": why, "flops": flops(g, types, n, bindings),
                     "recompute_flops": sum(flops(g, types, c, bindings) for c in copies.get(n, []))})
    return MemoryReport(gr, plan, str(policy), rows, boundary)


def _readers_of(g, name: str) -> list[str]:
    return [m for m, node in g.nodes.items() if name in node.inputs]


def _reason(name: str, why: list[str], via: list[str], stored: bool, recomputed: bool, plan: Plan, n: str) -> str:
    """Why the backward pass has this value: which VJPs read it, kept or recomputed."""
    vjps = ", ".join(f"{w}'s VJP" if w != name else "its own VJP" for w in why)
    if via:
        vjps = (vjps + "; " if vjps else "") + "recomputing " + ", ".join(via)
    alias = plan.aliases.get(n)
    shared = "" if alias is None else f" (in place, in {alias}'s buffer)" if n in plan.in_place \
        else f" (a view of {alias})"
    if recomputed and stored:
        return f"a checkpoint, kept for {vjps}"
    if recomputed:
        return f"recomputed for {vjps}" if why else f"recomputed on the way to {', '.join(via)}"
    if stored:
        return f"kept for {vjps}{shared}"
    return f"read by {vjps or 'the backward pass'}; an output, or it costs no memory{shared}"


def solve_dim(graph, dim: str, budget: int, wrt=None, of=None, remat=None, dims=None) -> tuple[int, MemoryReport]:
    """The largest size of `dim` whose predicted peak fits `budget` (bisection: the peak grows
    with every dim), and the report at that size."""
    fixed = dict(dims or {})

    def peak(n: int) -> MemoryReport:
        return memory_report(graph, wrt, of, remat, {**fixed, dim: n})

    if budget < peak(1).peak_bytes:
        raise UsageError("budget-too-small", f"even {dim}=1 needs {human(peak(1).peak_bytes)}, more than "
                         f"{human(budget)}")
    lo, hi = 1, 2
    while peak(hi).peak_bytes <= budget:
        lo, hi = hi, hi * 2
        if hi > 2**50:
            raise UsageError("usage", f"the peak does not grow with '{dim}': every size fits")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if peak(mid).peak_bytes <= budget:
            lo = mid
        else:
            hi = mid
    return lo, peak(lo)


def sparkline(values: list[int], width: int = 64) -> str:
    """Live bytes over the run as one line of block characters (max of each bucket)."""
    if not values:
        return ""
    top = max(values) or 1
    n = len(values)
    out = []
    for k in range(min(width, n)):
        lo, hi = k * n // min(width, n), (k + 1) * n // min(width, n)
        v = max(values[lo:max(hi, lo + 1)])
        out.append(SPARK[min(8, round(8 * v / top))])
    return "".join(out)


def format_text(rep: MemoryReport, max_rows: int = 40) -> str:
    """The text report: the lesson's table, the peak and a timeline."""
    from ..report import table

    j = rep.to_json()
    lines = [f"policy {rep.policy}, dims {', '.join(f'{k}={v}' for k, v in j['dims'].items()) or '-'}",
             f"peak {human(j['peak_bytes'])} ({j['peak_bytes']} bytes) at {j['peak_at']['phase']} step "
             f"{j['peak_at']['node'] or '(the inputs)'}",
             f"kept for backward {human(j['saved_bytes'])}; inputs and params {human(j['tensor_bytes'])}; "
             f"recompute {j['recompute_flops']:,} FLOPs (forward {j['forward_flops']:,})", ""]
    rows = rep.rows if len(rep.rows) <= max_rows else rep.rows[:max_rows // 2] + rep.rows[-max_rows // 2:]
    body = [[r["name"], r["op"], human(r["bytes"]),
             "recomputed" if r["recomputed"] and not r["stored"] else "stored" if r["stored"] else "-",
             f"{r['recompute_flops']:,}" if r["recomputed"] else f"({r['flops']:,})", r["reason"]] for r in rows]
    lines.append(table(["value", "op", "bytes", "backward gets it", "recompute FLOPs", "why"], body))
    if len(rep.rows) > max_rows:
        lines.append(f"... {len(rep.rows) - max_rows} more rows (--format json lists all)")
    live = [s.live_during for s in rep.plan.steps]
    lines += ["", f"live bytes over the run ({len(live)} steps, backward from step {rep.boundary}):",
              f"|{sparkline(live)}| max {human(max(live, default=0))}"]
    return "\n".join(lines)
