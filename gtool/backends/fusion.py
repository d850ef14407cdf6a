"""Fusion for the numba backends: micro-ops -> loop groups and single array ops.

Every elementwise micro-op of one output shape joins one open group (one loop, values in
registers, no temporaries), reductions over that shape join as accumulators, and a value is
written to memory only when something outside its group reads it. The CPU (`numba_cpu`) and
CUDA (`numba_cuda`) emitters turn the same groups into code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..dims import Dim
from .templates import FUSED, MNode, V

CHUNK = 100_000  # members per fused loop (see docs/backends.md on compile time)


@dataclass
class Group:
    """One loop nest over `shape` (() for straight-line scalar code)."""

    shape: tuple[Dim, ...]
    members: list[MNode] = field(default_factory=list)
    stored: set[str] = field(default_factory=set)  # members written to memory (read outside the group)
    closed: bool = False

    @property
    def reductions(self) -> list[MNode]:
        return [m for m in self.members if m.op == "reduce"]


@dataclass
class Single:
    """A micro-op emitted on its own: an array op (matmul, reshape, concat) or a NumPy fallback."""

    m: MNode


def iter_shape(m: MNode, types: dict[str, V]) -> tuple[Dim, ...]:
    """The loop shape a fused micro-op runs over: its output's, or a reduction's input's."""
    v = types[m.inputs[0]] if m.op == "reduce" else m.v
    return () if v.scalar else v.shape


def data_inputs(m: MNode) -> tuple[str, ...]:
    return m.inputs


def fuse(nodes: list[MNode], types: dict[str, V], outputs, *, reductions_in_loops: bool = True,
         chunk: int = CHUNK, calls: frozenset[str] = frozenset(), max_calls: int = CHUNK) -> list:
    """Group micro-ops into loops (see the module docstring); returns items in run order.
    A loop closes after `chunk` members, or before its (max_calls + 1)-th member whose op is
    in `calls` (the CPU's vector math: a loop with more inlined calls stays scalar there)."""
    items: list = []
    open_groups: dict[tuple, Group] = {}
    owner: dict[str, Group] = {}  # value -> open group holding it (member or reduction result)
    users: dict[str, set[str]] = {}
    for m in nodes:
        for i in m.inputs:
            users.setdefault(i, set()).add(m.name)
    outs = set(outputs)

    def close(g: Group) -> None:
        if g.closed:
            return
        g.closed = True
        names = {m.name for m in g.members}
        for m in g.members:
            if m.op == "reduce" or m.name in outs or any(u not in names for u in users.get(m.name, ())):
                g.stored.add(m.name)
        for m in g.members:
            owner.pop(m.name, None)
        del open_groups[g.shape]
        items.append(g)

    def close_owners(m: MNode, keep: Group | None) -> None:
        for i in data_inputs(m):
            g = owner.get(i)
            if g is not None and g is not keep:
                close(g)

    for m in nodes:
        fusable = m.op in FUSED or (m.op == "reduce" and (reductions_in_loops or types[m.inputs[0]].scalar))
        if m.op in ("bcast", "reshape", "permute", "slice") and types[m.inputs[0]].scalar:
            fusable = True  # a view of one number is that number
        if m.op == "bcast" and not types[m.inputs[0]].scalar and types[m.inputs[0]].shape == m.v.shape \
                and m.inputs[0] not in owner:
            fusable = False  # identity of a value already in memory: the same array
            m = MNode(m.name, "alias", m.inputs, m.attrs, m.v, m.node)
        if not fusable:
            close_owners(m, None)
            items.append(Single(m))
            continue
        shape = iter_shape(m, types)
        g = open_groups.get(shape)
        if g is not None:
            for i in data_inputs(m):
                # a value of this loop can be read only at the loop's own index, as computed
                same_index = owner.get(i) is g and _reads_in_place(m, i, types) and \
                    not any(r.name == i for r in g.reductions)
                if owner.get(i) is g and not same_index:
                    close(g)
                    break
            if not g.closed and (len(g.members) >= chunk or
                                 (m.op in calls and sum(u.op in calls for u in g.members) >= max_calls)):
                close(g)
        close_owners(m, open_groups.get(shape))
        g = open_groups.get(shape)
        if g is None:
            g = open_groups[shape] = Group(shape)
        g.members.append(m)
        owner[m.name] = g
    for g in list(open_groups.values()):
        close(g)
    return items


def _reads_in_place(m: MNode, value: str, types: dict[str, V]) -> bool:
    """Whether `m` reads `value` at the loop index itself (so a register can feed it)."""
    if m.op in ("permute", "slice", "one_hot"):
        return False
    if m.op == "gather" and m.inputs[0] == value:
        return False
    return types[value].shape == iter_shape(m, types) or types[value].scalar


def split_vector_math(items: list, calls: frozenset[str], scalar_loop) -> list:
    """Each loop that stays scalar because of its reductions (`scalar_loop(group)`: max/min, or
    sums along short rows) and calls vector math (an op in `calls`) split in three: what the
    calls read, the calls, the rest (the reductions among it). The calls then run as a loop of
    their own that LLVM vectorizes: the softmax over 128 x 10 classes computed its 2,560 exps
    by scalar libm calls beside row sums. Where a call reads another call's result (through
    other members), the group splits in two instead: the members the reductions need, then the
    rest. Values that a later part reads are stored."""
    out = []
    for item in items:
        if not isinstance(item, Group) or not item.reductions or not scalar_loop(item) or \
                not any(m.op in calls for m in item.members):
            out.append(item)
            continue
        members = {m.name: m for m in item.members}
        vector = [m for m in item.members if m.op in calls]
        before = _ancestors(vector, members)
        if before.isdisjoint(m.name for m in vector):
            parts = [[m for m in item.members if m.name in before], vector,
                     [m for m in item.members if m.name not in before and m.op not in calls]]
        else:
            need = _ancestors(item.reductions, members) | {m.name for m in item.reductions}
            parts = [[m for m in item.members if m.name in need], [m for m in item.members if m.name not in need]]
        parts = [p for p in parts if p]
        if len(parts) == 1:
            out.append(item)
            continue
        for k, part in enumerate(parts):
            read_later = {i for later in parts[k + 1:] for m in later for i in m.inputs}
            stored = {m.name for m in part if m.name in item.stored or m.name in read_later}
            out.append(Group(item.shape, part, stored, closed=True))
    return out


def _ancestors(nodes: list[MNode], members: dict[str, MNode]) -> set[str]:
    """The members that `nodes` read, directly or through other members (not `nodes` themselves
    unless one reads another)."""
    seen: set[str] = set()
    todo = [i for m in nodes for i in m.inputs if i in members]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [i for i in members[name].inputs if i in members]
    return seen


def pair_sin_cos(nodes: list[MNode]) -> list[MNode]:
    """The micro-ops with each cos(x) moved to just after sin(x) of the same x (and each sin(x)
    after an earlier cos(x)), so that both land in one loop, where LLVM computes the argument
    reduction the two share once. A gradient's cos(x) otherwise comes long after the forward's
    sin(x): the 2,000-op chain's backward re-reduced 667 saved arguments, and saved them."""
    first: dict[str, MNode] = {}
    later: dict[str, MNode] = {}
    for m in nodes:
        if m.op in ("sin", "cos") and len(m.inputs) == 1:
            x = m.inputs[0]
            if x not in first:
                first[x] = m
            elif first[x].op != m.op and x not in later:
                later[x] = m
    if not later:
        return nodes
    moved = {id(m) for m in later.values()}
    out = []
    for m in nodes:
        if id(m) in moved:
            continue
        out.append(m)
        if m.op in ("sin", "cos") and len(m.inputs) == 1 and first.get(m.inputs[0]) is m and m.inputs[0] in later:
            out.append(later[m.inputs[0]])
    return out
