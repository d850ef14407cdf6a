"""The memory plan of a run, read off the executor's own compiled plan.

A `Program` (gtool/interp.py) runs its steps in one fixed order and drops each slot after its
last reader; elementwise ufunc steps write into a dying input's buffer; view ops return views
that keep their base alive; weak scalars are Python numbers. `simulate` walks the *same* steps
(`Program.steps`: order, `free`, `donor`) with buffer reference counts, so the bytes it predicts
are the ones NumPy allocates in a steady-state run (the numpy backend from its second call on:
the first call runs the careful loop, which does not write in place). Kernels' own scratch space
(a composite's temporaries) is not in the plan; the tests hold the prediction within 10% of
tracemalloc's measured peak.

This module knows the executor and the op records, never autodiff: which values are forward or
backward is the caller's question (gtool/memory/report.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..interp import IN_PLACE_MIN_SIZE, Program
from ..ops.registry import get_op
from .cost import _numel, flops  # noqa: F401 (flops re-exported: the report's FLOPs)

# view ops whose output is a view of (or the very object of) their first input, and when
_VIEW_ALWAYS = {"identity", "stop_gradient", "transpose", "broadcast_to", "expand_dims", "squeeze", "slice"}
_NON_CONTIGUOUS = {"transpose", "broadcast_to", "slice"}  # a reshape of these copies


@dataclass
class Allocation:
    """One step of the plan: what it allocated and what was live around it."""

    node: str
    op: str
    new_bytes: int  # bytes this step allocated (0: a view, in place, or a weak scalar)
    live_during: int  # bytes live while the step runs (its inputs and its new output)
    live_after: int  # bytes live after the step's dead inputs were dropped
    freed: tuple[str, ...]  # values whose buffers were released after this step


@dataclass
class Plan:
    """Bytes over a run of a Program: the timeline, the peak and where it occurs."""

    program: Program
    bindings: dict[str, int]
    tensor_bytes: int  # inputs, params and constants: alive for the whole run
    value_bytes: dict[str, int]  # every value's own size in bytes (0 for weak scalars)
    steps: list[Allocation] = field(default_factory=list)
    peak_bytes: int = 0
    peak_step: int = -1  # index into steps (-1: the tensors alone are the peak)
    in_place: set[str] = field(default_factory=set)  # steps that write into a dying input
    aliases: dict[str, str] = field(default_factory=dict)  # a view -> the value whose buffer it shares

    @property
    def peak_node(self) -> str | None:
        return self.steps[self.peak_step].node if self.peak_step >= 0 else None

    def live_at(self, k: int) -> set[str]:
        """The values (tensors and nodes) whose buffers are alive after step k (k = -1: before any)."""
        prog = self.program
        alive = set(prog.tensor_names)
        for st in prog.steps[:k + 1]:
            alive.add(st.node)
            alive -= {name_of(prog, s) for s in st.free}
        return alive


def name_of(program: Program, slot: int) -> str:
    if slot < len(program.tensor_names):
        return program.tensor_names[slot]
    return program.steps[slot - len(program.tensor_names)].node


def bind_dims(graph, dims: dict[str, int] | None) -> dict[str, int]:
    """The sizes of every dim for a plan: --dim, then the file's `dims:`, then what shape
    inference derives from those; an unbound dim is a usage error naming it."""
    from .cost import bind_dims as bind

    return bind(graph, dims)


def value_bytes(program: Program, bindings: dict[str, int]) -> dict[str, int]:
    """Bytes of each value of the program at these dims (weak scalars are Python numbers: 0)."""
    out = {}
    memo: dict[tuple, int] = {}  # a deep net has a few distinct (shape, dtype) pairs
    for name in list(program.tensor_names) + [st.node for st in program.steps]:
        t = program.types[name]
        key = (t.shape, t.dtype)
        if key not in memo:
            memo[key] = _numel(t.shape, bindings, name) * np.dtype(t.dtype).itemsize
        out[name] = 0 if t.weak else memo[key]
    return out


def _aliases(step, program: Program, contiguous: dict[int, bool]) -> bool:
    """Whether a view op's output shares its first input's buffer (as the NumPy kernel does)."""
    if step.op in _VIEW_ALWAYS:
        return True
    first = program.types[name_of(program, step.ins[0])]
    out = program.types[step.node]
    if step.op == "cast":  # astype(copy=False)
        return first.dtype == out.dtype
    if step.op == "sum_to":  # nothing to sum: the input itself
        return first.shape == out.shape
    if step.op == "reshape":
        return contiguous.get(step.ins[0], True)
    return False


def simulate(program: Program, bindings: dict[str, int]) -> Plan:
    """Walk the program's steps as the executor runs them, with buffer reference counts."""
    sizes = value_bytes(program, bindings)
    n_t = len(program.tensor_names)
    bufs: dict[int, set[int]] = {}  # slot -> ids of the buffers it keeps alive
    size_of: dict[int, int] = {}
    refs: dict[int, int] = {}
    contiguous: dict[int, bool] = {}
    live = 0
    for k, name in enumerate(program.tensor_names):
        if sizes[name]:
            bufs[k] = {k}
            size_of[k], refs[k] = sizes[name], 1
            live += sizes[name]
    plan = Plan(program, dict(bindings), live, sizes, peak_bytes=live)
    for k, st in enumerate(program.steps):
        out_bytes = sizes[st.node]
        new = 0
        owner = None
        if st.dtype is None or out_bytes == 0:
            held: set[int] = set()
        elif st.donor >= 0 and out_bytes // st.dtype.itemsize >= IN_PLACE_MIN_SIZE:
            owner = st.ins[st.donor]
            held = set(bufs.get(owner, ()))
            plan.in_place.add(st.node)
        elif get_op(st.op).view and _aliases(st, program, contiguous):
            owner = st.ins[0]
            held = set(bufs.get(owner, ()))
            contiguous[st.out] = contiguous.get(owner, True) and st.op not in _NON_CONTIGUOUS
        else:
            bid = n_t + k
            size_of[bid], refs[bid] = out_bytes, 0
            held, new = {bid}, out_bytes
        if owner is not None:
            plan.aliases[st.node] = name_of(program, owner)
        for b in held:
            refs[b] += 1
        bufs[st.out] = held
        live += new
        during = live + _scratch(st, program, sizes)
        freed = []
        for s in st.free:
            freed.append(name_of(program, s))
            for b in bufs.pop(s, ()):
                refs[b] -= 1
                if refs[b] == 0:
                    live -= size_of[b]
        plan.steps.append(Allocation(st.node, st.op, new, during, live, tuple(freed)))
        if during > plan.peak_bytes:
            plan.peak_bytes, plan.peak_step = during, k
    return plan


def _scratch(step, program: Program, sizes: dict[str, int]) -> int:
    """NumPy's iterator buffer while a ufunc broadcasts an array input against a bigger output:
    up to `np.getbufsize()` elements, allocated and dropped inside the call."""
    if step.ufunc is None or step.dtype is None or len(step.ins) < 2:
        return 0
    types = program.types
    out_t = types[step.node]
    for s in step.ins:
        t = types[name_of(program, s)]
        if not t.weak and t.shape and t.shape != out_t.shape:
            return min(np.getbufsize(), sizes[step.node] // step.dtype.itemsize) * step.dtype.itemsize
    return 0
