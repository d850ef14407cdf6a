"""The graph IR: frozen, ordered, name-keyed. Every pass takes a Graph and returns a new one.

`ir` knows no ops: it holds names, edges and source locations, and offers the traversals
(topological order, users, dead-node elimination) that every later part shares.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .dims import Dim
from .dtypes import DTYPES, FLOAT_DTYPES, INT_DTYPES, STORAGE_DTYPES  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class Loc:
    """Where something was written: 1-based line and column, and a JSON pointer."""

    path: str | None = None
    line: int | None = None
    column: int | None = None
    pointer: str | None = None

    def where(self) -> dict:
        return {"path": self.path, "line": self.line, "column": self.column, "pointer": self.pointer}


@dataclass(frozen=True)
class TensorType:
    """The static type of a value: a symbolic shape, a dtype, and NumPy 2's weak-scalar flag."""

    shape: tuple[Dim, ...]
    dtype: str
    weak: bool = False

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class Tensor:
    """An input, param or constant. `value` is a NumPy array (or None when fed at run time)."""

    name: str
    kind: str  # 'input' | 'param' | 'constant'
    type: TensorType
    value: np.ndarray | None = None
    init: Any = None
    range: tuple[float, float] | None = None
    doc: str | None = None
    loc: Loc = field(default_factory=Loc)

    @property
    def shape(self) -> tuple[Dim, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype


@dataclass(frozen=True)
class Node:
    """One operation. `owner` is the user-written node an anonymous `__<owner>_<n>` belongs to."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict = field(default_factory=dict)
    shape: tuple[Dim, ...] | None = None  # declared shape, checked by inference
    doc: str | None = None
    loc: Loc = field(default_factory=Loc)
    owner: str | None = None


@dataclass(frozen=True, eq=False)
class Graph:
    """A whole graph. `nodes` is in topological order (stable: file order where free).

    Hashes by identity, so per-graph caches (compiled plans, inferred types) can key on it.
    """

    tensors: dict[str, Tensor]
    nodes: dict[str, Node]
    outputs: tuple[str, ...]
    loss: str | None = None
    name: str | None = None
    doc: str | None = None
    dims: dict[str, int] = field(default_factory=dict)
    path: str | None = None
    # sizes the graph was checked with (`--dim`, `load(dims=...)`): every inference of it, and of
    # the graphs derived from it (gradients, rewrites), fixes them, so a derived graph whose
    # builder baked `4` for the graph's `2 * n` still agrees with it
    fixed_dims: dict[str, int] = field(default_factory=dict)
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    # lookups ---------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self.tensors or name in self.nodes

    def names(self) -> Iterable[str]:
        yield from self.tensors
        yield from self.nodes

    def loc(self, name: str) -> Loc:
        item = self.nodes.get(name) or self.tensors.get(name)
        return item.loc if item is not None else Loc(self.path)

    def owner(self, name: str) -> str:
        """The user-visible node a (possibly anonymous) name belongs to."""
        node = self.nodes.get(name)
        return node.owner if node is not None and node.owner else name

    def of_kind(self, kind: str) -> list[str]:
        return [n for n, t in self.tensors.items() if t.kind == kind]

    def loss_name(self) -> str | None:
        return self.loss or (self.outputs[0] if self.outputs else None)

    def users(self) -> dict[str, list[str]]:
        """name -> the nodes that read it, in order (a name read twice by one node counts twice)."""
        out: dict[str, list[str]] = {n: [] for n in self.names()}
        for node in self.nodes.values():
            for i in node.inputs:
                out.setdefault(i, []).append(node.name)
        return out

    # transforms ----------------------------------------------------------------
    def evolve(self, **changes) -> Graph:
        """A copy with some fields replaced (and a fresh cache)."""
        changes.setdefault("cache", {})
        return replace(self, **changes)

    def ancestors(self, names: Iterable[str]) -> set[str]:
        """Every name that `names` depend on, themselves included."""
        seen: set[str] = set()
        stack = list(names)
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            node = self.nodes.get(n)
            if node is not None:
                stack.extend(node.inputs)
        return seen

    def descendants(self, names: Iterable[str]) -> set[str]:
        """Every name that depends on `names`, themselves included."""
        seen = set(names)
        for node in self.nodes.values():
            if any(i in seen for i in node.inputs):
                seen.add(node.name)
        return seen

    def prune(self, keep: Iterable[str] | None = None) -> Graph:
        """Dead-node elimination: keep what the outputs (and the loss) need, plus `keep`.

        Inputs and params are kept even when unused: they are the graph's interface.
        """
        roots = list(self.outputs) + ([self.loss] if self.loss else []) + list(keep or ())
        live = self.ancestors(roots)
        nodes = {n: v for n, v in self.nodes.items() if n in live}
        tensors = {n: t for n, t in self.tensors.items() if n in live or t.kind != "constant"}
        if len(nodes) == len(self.nodes) and len(tensors) == len(self.tensors):
            return self
        return self.evolve(nodes=nodes, tensors=tensors)


def toposort(nodes: dict[str, Node], known: set[str]) -> tuple[list[str], list[str] | None]:
    """Stable topological order of `nodes` (file order where free), and a cycle if one exists.

    Kahn's algorithm without recursion, so 100k-node chains are fine. `known` are names that are
    available from the start (tensors); inputs that are neither are ignored here (reported
    elsewhere as unknown names).
    """
    indeg: dict[str, int] = {}
    users: dict[str, list[str]] = {}
    for name, node in nodes.items():
        deps = {i for i in node.inputs if i in nodes and i not in known}
        indeg[name] = len(deps)
        for d in deps:
            users.setdefault(d, []).append(name)
    position = {name: k for k, name in enumerate(nodes)}
    import heapq

    ready = [position[n] for n, d in indeg.items() if d == 0]
    heapq.heapify(ready)
    names = list(nodes)
    order: list[str] = []
    while ready:
        n = names[heapq.heappop(ready)]
        order.append(n)
        for u in users.get(n, ()):
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(ready, position[u])
    if len(order) == len(nodes):
        return order, None
    return order, _find_cycle(nodes, {n for n, d in indeg.items() if d > 0}, known)


def _find_cycle(nodes: dict[str, Node], stuck: set[str], known: set[str]) -> list[str]:
    """One cycle among the nodes Kahn could not order, starting at the first in file order."""
    start = next(n for n in nodes if n in stuck)
    # walk backwards along stuck inputs until a name repeats
    path: list[str] = []
    index: dict[str, int] = {}
    n = start
    while n not in index:
        index[n] = len(path)
        path.append(n)
        n = next(i for i in nodes[n].inputs if i in stuck and i not in known)
    cycle = path[index[n]:]
    cycle.reverse()  # print in data-flow direction: a -> b means b reads a
    k = cycle.index(min(cycle, key=lambda x: list(nodes).index(x)))
    cycle = cycle[k:] + cycle[:k]
    return cycle + [cycle[0]]
