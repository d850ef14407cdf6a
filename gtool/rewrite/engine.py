"""The rewrite engine: apply rules to a fixed point and log every application.

The graph is frozen, so the engine works on a `Workspace` (a copy of the graph's nodes,
tensors and inferred types; `builder.GraphBuilder`, so a rule builds its replacement with
the same `b(op, *inputs, **attrs)` that VJP rules use) and returns a new Graph at the end.

One application: a rule matches at a root node, builds a replacement from registry ops, and
the engine checks that the replacement has the root's exact type (shape, dtype, weakness;
otherwise the application is rolled back, so a rule can never change what a graph means to
its readers). The replacement takes over the root's *name*, so outputs, the loss and every
reader keep theirs; new nodes are named `__rw_<k>` and inherit the root's source location.
Matched intermediate nodes are deleted only when nothing else reads them (a value may fan
out). Sweeps visit nodes in reverse topological order (consumers first, so the larger
pattern rooted at a consumer wins over a smaller one inside it) until a sweep changes
nothing. Everything is deterministic: same graph in, same graph (and names) out.

Incremental sweeps: a sweep after the first re-matches only the nodes near what the previous
sweep changed. Each rule states its `reach` (how many levels of inputs its match reads: 1
for `x * 1`, 2 for `a * (b * x)`; "graph" for rules that read the whole graph, such as CSE,
which run on every node every sweep). The workspace records every name an application or
dead-node pass touches (new, replaced, deleted or re-wired nodes, and the inputs whose reader
counts moved); a node none of whose inputs within the rules' reach was touched cannot match
now if it did not match before, so the local rules skip it. A node where a rule matched but
the application was rolled back is always re-matched (the attempt consumed fresh names), and
a change to the dim bindings makes the next sweep a full one. With one rule of unknown reach
every sweep is full. The result is the same graph, names and log as full sweeps give
(tests/test_simplify_same.py), in a fraction of the time on long chains.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import islice

import numpy as np

from ..builder import GraphBuilder
from ..errors import GraphError
from ..ir import Graph, Loc, Node, Tensor, TensorType
from .pattern import Match

MAX_STEPS = 1000  # plus 20 per node: more means two rules undo each other
_HEAD, _TAIL = "\0head", "\0tail"  # the ends of the node order's linked list
INCREMENTAL = True  # False: every sweep matches every node (tests compare both)


@dataclass
class Applied:
    """One application: which rule, at which node (whose name the result keeps), where.

    `before` and `after` (when recorded) are small standalone graphs computing the root from
    the matched inputs, before and after the rewrite: what `verify` runs. `vars` maps the
    rule's pattern variables to the names of those inputs.
    """

    rule: str
    node: str
    owner: str
    path: str | None
    line: int | None
    vars: dict[str, str] = field(default_factory=dict)
    before: Graph | None = None
    after: Graph | None = None
    note: str | None = None

    def to_json(self) -> dict:
        return {"rule": self.rule, "node": self.node, "line": self.line}

    def where(self) -> str:
        place = f"{self.path}:{self.line}" if self.line is not None else (self.path or "<graph>")
        shown = self.node if self.owner == self.node else f"{self.owner} ({self.node})"
        return f"{self.rule} at {shown} ({place})"


@dataclass
class RewriteResult:
    graph: Graph
    applied: list[Applied]


class Workspace(GraphBuilder):
    """A mutable copy of a graph that rules rewrite; `finish()` gives the new Graph."""

    def __init__(self, graph: Graph, record: bool = False) -> None:
        super().__init__(graph)
        self.context("__rw", Loc(graph.path))
        self.record = record
        self.protected = set(graph.outputs) | ({graph.loss} if graph.loss else set())
        self.original_constants = {n for n, t in graph.tensors.items() if t.kind == "constant"}
        read = {i for node in graph.nodes.values() for i in node.inputs} | self.protected
        self.unread_at_start = {n for n in self.original_constants if n not in read}
        self.dirty: set[str] = set()  # names touched since the engine last looked (incremental sweeps)
        self.all_dirty = False  # the dim bindings moved: every node counts as touched
        self.sweep = 0  # counts the engine's sweeps (rules share per-sweep counts by it)
        # Bookkeeping that keeps an application's cost independent of the graph's size:
        # `_readers` maps a name to the nodes that read it (or did: a superset, checked on use);
        # the node order is a linked list (`_prev`/`_next`, deleted names stay as anchors)
        # that `ordered()` writes back into `nodes` when a reader needs the order.
        self._readers: dict[str, set[str]] = {}
        for node in self.nodes.values():
            self._note_reader(node)
        names = [_HEAD, *self.nodes, _TAIL]
        self._next = dict(zip(names, names[1:]))
        self._prev = dict(zip(names[1:], names))
        self._unordered = False

    # order and readers -------------------------------------------------------------------
    def _note_reader(self, node: Node) -> None:
        for i in node.inputs:
            self._readers.setdefault(i, set()).add(node.name)

    def _count_users(self, name: str) -> int:
        """How many times nodes read `name` now (an output or the loss counts once more)."""
        n = 1 if name in self.protected else 0
        for r in self._readers.get(name, ()):
            node = self.nodes.get(r)
            if node is not None:
                n += node.inputs.count(name)
        return n

    def _insert_before(self, anchor: str, names: list[str]) -> None:
        for n in names:
            if n in self._next:  # a deleted name made again: it moves
                p, q = self._prev.pop(n), self._next.pop(n)
                self._next[p], self._prev[q] = q, p
            p = self._prev[anchor]
            self._next[p], self._prev[n], self._next[n], self._prev[anchor] = n, p, anchor, n
        self._unordered = True

    def ordered(self) -> None:
        """Put `nodes` in graph order again (after applications inserted nodes)."""
        if not self._unordered:
            return
        names, n = [], self._next[_HEAD]
        while n != _TAIL:
            if n in self.nodes:
                names.append(n)
            n = self._next[n]
        if len(names) != len(self.nodes):  # pragma: no cover - every new node is linked in apply
            raise GraphError("internal", "rewrite engine lost track of the node order; please report it")
        self.nodes = {n: self.nodes[n] for n in names}
        self._unordered = False

    # reading ------------------------------------------------------------------------------
    def same_type(self, a: str, b: str) -> bool:
        ta, tb = self.types[a], self.types[b]
        return (ta.dtype == tb.dtype and ta.weak == tb.weak and ta.rank == tb.rank
                and all(self.ctx.resolve(x) == self.ctx.resolve(y) for x, y in zip(ta.shape, tb.shape)))

    # building -----------------------------------------------------------------------------
    def const(self, value: float) -> str:
        key = (float(value),)
        if key in self._consts and self._consts[key] not in self.tensors:
            del self._consts[key]
        return super().const(value)

    def constant(self, value: np.ndarray, dtype: str) -> str:
        """A new (strong) constant tensor holding `value`."""
        name = self.fresh("__rw")
        arr = np.asarray(value, dtype=dtype)
        from ..dims import Dim

        t = Tensor(name, "constant", TensorType(tuple(Dim.const(int(d)) for d in arr.shape), dtype), arr, loc=self.loc)
        self.tensors[name] = t
        self.types[name] = t.type
        return name

    # applying -----------------------------------------------------------------------------
    def apply(self, rule, m: Match) -> Applied | None:
        """Build the rule's replacement for `m.root`; None (and nothing changed) if it fails."""
        root = self.nodes[m.root]
        n_nodes, n_tensors = len(self.nodes), len(self.tensors)
        bindings = dict(self.ctx.bindings)
        before = self._local_before(m) if self.record else None
        self.loc = root.loc
        try:
            result = rule.build(self, m)
        except GraphError:
            result = None
        # building only adds (fresh names, at the end of the dicts): the new ones are the last
        new_nodes = list(islice(reversed(self.nodes), len(self.nodes) - n_nodes))[::-1]
        new_tensors = list(islice(reversed(self.tensors), len(self.tensors) - n_tensors))[::-1]
        if result is None or result == root.name or not self.same_type(result, root.name) or \
                (result in new_nodes and self._shape_of_tree(result, set(new_nodes)) ==
                 self._shape_of_tree(root.name, set(m.interior))):  # rebuilt the same subgraph: no progress
            for n in new_nodes:
                del self.nodes[n], self.types[n]
            for n in new_tensors:
                del self.tensors[n], self.types[n]
            self.ctx.bindings = bindings
            return None
        owner = root.owner or root.name
        self._touch_success(root, result, new_nodes, new_tensors, bindings)
        for n in new_nodes:
            self.nodes[n] = replace(self.nodes[n], owner=owner)
            self._note_reader(self.nodes[n])
        if result in new_nodes:
            node = self.nodes.pop(result)
            self.nodes[root.name] = replace(node, name=root.name, loc=root.loc, owner=root.owner, doc=root.doc,
                                            shape=root.shape)
            self._note_reader(self.nodes[root.name])
            self.types[root.name] = self.types.pop(result)
            new_nodes.remove(result)
            self._substitute(result, root.name)
        elif result in new_tensors:
            t = self.tensors.pop(result)
            del self.nodes[root.name]
            self.tensors[root.name] = replace(t, name=root.name, loc=root.loc)
            self.types[root.name] = self.types.pop(result)
        elif root.name in self.protected:  # an output keeps its name: it becomes a copy of the result
            self.nodes[root.name] = Node(root.name, "identity", (result,), {}, root.shape, root.doc, root.loc, root.owner)
            self._note_reader(self.nodes[root.name])
        else:
            del self.nodes[root.name], self.types[root.name]
            self._substitute(root.name, result)
        self._insert_before(root.name, new_nodes)  # they read only the root's ancestors
        if self.record:
            self.ordered()
        self._delete_dead(m.interior[1:])
        applied = Applied(rule.name, root.name, owner, root.loc.path or self.graph.path, root.loc.line, dict(m.vars))
        if self.record:
            applied.before = before
            applied.after = self._local_after(root.name, result, before)
        return applied

    def _touch_success(self, root: Node, result: str, new_nodes: list[str], new_tensors: list[str],
                       bindings: dict) -> None:
        """Record what a successful application changes: the root (its inputs lose a reader),
        the result, the new nodes and tensors and what they read."""
        d = self.dirty
        d.add(root.name)
        d.add(result)
        d.update(root.inputs)
        d.update(new_tensors)
        for n in new_nodes:
            d.add(n)
            d.update(self.nodes[n].inputs)
        if self.ctx.bindings != bindings:
            self.all_dirty = True

    def _shape_of_tree(self, name: str, inner: set[str]):
        """The structure computing `name` from outside values: op, attrs and the inputs, with
        nodes in `inner` expanded (so a rule that rebuilds what it matched is seen as a no-op)."""
        node = self.nodes.get(name)
        if node is None or name not in inner:
            return name
        return (node.op, repr(sorted(node.attrs.items())), tuple(self._shape_of_tree(i, inner) for i in node.inputs))

    def _substitute(self, old: str, new: str) -> None:
        """Every reader of `old` reads `new` instead."""
        readers = self._readers.get(new)
        if readers is None:
            readers = self._readers[new] = set()
        for name in self._readers.get(old, ()):
            node = self.nodes.get(name)
            if node is not None and old in node.inputs:
                self.nodes[name] = replace(node, inputs=tuple(new if i == old else i for i in node.inputs))
                readers.add(name)
                self.dirty.add(name)

    def _delete_dead(self, candidates: list[str]) -> None:
        """Delete matched nodes that nothing reads any more (a shared one stays)."""
        changed = True
        while changed:
            changed = False
            for n in candidates:
                if n in self.nodes and self._count_users(n) == 0:
                    self.dirty.add(n)
                    self.dirty.update(self.nodes[n].inputs)
                    del self.nodes[n], self.types[n]
                    changed = True

    def prune(self) -> list[str]:
        """Dead-node elimination: drop nodes no output (or the loss) needs; returns them."""
        self.ordered()
        live = Graph(self.tensors, self.nodes, tuple(self.protected)).ancestors(self.protected)
        dead = [n for n in self.nodes if n not in live]
        for n in dead:
            self.dirty.add(n)
            self.dirty.update(self.nodes[n].inputs)
            del self.nodes[n], self.types[n]
        return dead

    # local graphs for verify --------------------------------------------------------------
    def _leaf(self, name: str) -> Tensor:
        t = self.tensors.get(name)
        if t is not None and t.kind == "constant":
            return t
        tt = self.types[name]
        return Tensor(name, "input", TensorType(self.shape_of(name), tt.dtype), loc=self.graph.loc(name))

    def _local_before(self, m: Match) -> Graph:
        self.ordered()
        inner = set(m.interior)
        nodes = {n: self.nodes[n] for n in self.nodes if n in inner}
        tensors: dict[str, Tensor] = {}
        for node in nodes.values():
            for i in node.inputs:
                if i not in inner and i not in tensors:
                    tensors[i] = self._leaf(i)
        return Graph(tensors, nodes, (m.root,), name="before", dims=dict(self.graph.dims),
                     fixed_dims=dict(self.graph.fixed_dims), path=self.graph.path)

    def _local_after(self, root: str, result: str, before: Graph) -> Graph:
        tensors = dict(before.tensors)
        leaves = set(tensors)
        if root in self.tensors:  # folded to a constant
            return Graph({**tensors, root: self.tensors[root]}, {}, (root,), name="after", dims=dict(self.graph.dims),
                     fixed_dims=dict(self.graph.fixed_dims),
                         path=self.graph.path)
        nodes: dict[str, Node] = {}
        top = self.nodes.get(root)
        if top is None:  # replaced by an existing value: the local graph names it with an identity
            top = Node(root, "identity", (result,), {}, loc=before.nodes[root].loc)
        stack, seen = [top], set()
        while stack:
            node = stack.pop()
            if node.name in seen:
                continue
            seen.add(node.name)
            nodes[node.name] = node
            for i in node.inputs:
                if i in leaves or i in seen:
                    continue
                if i in self.tensors:
                    tensors[i] = self._leaf(i)
                    leaves.add(i)
                else:
                    stack.append(self.nodes[i])
        ordered = {n: self.nodes.get(n, nodes[n]) for n in self.nodes if n in nodes}
        if root not in ordered:
            ordered[root] = nodes[root]
        return Graph(tensors, ordered, (root,), name="after", dims=dict(self.graph.dims),
                     fixed_dims=dict(self.graph.fixed_dims), path=self.graph.path)

    # the result -----------------------------------------------------------------------------
    def finish(self) -> Graph:
        """The new Graph. Constants left unread by rewrites are dropped (ones unread from the
        start stay: removing those is dead-node elimination's job)."""
        self.ordered()
        read = {i for node in self.nodes.values() for i in node.inputs} | self.protected
        tensors = {n: t for n, t in self.tensors.items() if t.kind != "constant" or n in read or n in self.unread_at_start}
        return Graph(tensors=tensors, nodes=dict(self.nodes), outputs=self.graph.outputs, loss=self.graph.loss,
                     name=self.graph.name, doc=self.graph.doc, dims=dict(self.graph.dims),
                     fixed_dims=dict(self.graph.fixed_dims), path=self.graph.path)


def run_rules(graph: Graph, rules, *, expand: bool = False, record: bool = False) -> RewriteResult:
    """Apply `rules` to a fixed point (then lower logsumexp if `expand`)."""
    ws = Workspace(graph, record)
    by_op: dict[str, list] = {}
    anywhere = []
    for rule in rules:
        if getattr(rule, "global_pass", False):
            continue
        if rule.roots:
            for op in rule.roots:
                by_op.setdefault(op, []).append(rule)
        else:
            anywhere.append(rule)
    passes = [r for r in rules if getattr(r, "global_pass", False)]
    matching = [r for r in rules if not getattr(r, "global_pass", False)]
    reaches = [getattr(r, "reach", None) for r in matching]
    depth = max((x for x in reaches if isinstance(x, int)), default=0)
    incremental = INCREMENTAL and None not in reaches
    full: dict[str, list] = {}  # op -> the rules tried on its nodes, in priority order
    wide: dict[str, list] = {}  # op -> those of them that read the whole graph
    applied: list[Applied] = []
    limit = MAX_STEPS + 20 * len(graph.nodes)
    retry: set[str] = set()  # nodes where an application was rolled back: always re-matched
    near: set[str] | None = None  # the nodes the local rules look at this sweep (None: all)
    while True:
        changed = False
        ws.ordered()
        ws.sweep += 1
        for rule in rules:
            if hasattr(rule, "start_sweep"):
                rule.start_sweep(ws)
        ws.dirty, ws.all_dirty = set(), False
        for name in reversed(list(ws.nodes)):
            node = ws.nodes.get(name)
            if node is None:
                continue
            tried = full.get(node.op)
            if tried is None:
                tried = full[node.op] = by_op.get(node.op, []) + anywhere
                wide[node.op] = [r for r in tried if getattr(r, "reach", None) == "graph"]
            if near is not None and name not in near:
                tried = wide[node.op]
            for rule in tried:
                m = rule.match(ws, node)
                if m is None:
                    continue
                a = ws.apply(rule, m)
                if a is not None:
                    applied.append(a)
                    changed = True
                    break
                retry.add(name)
            if len(applied) > limit:
                raise GraphError("internal", f"rewriting did not reach a fixed point after {limit} steps "
                                 f"(last rule: {applied[-1].rule}); please report it", path=graph.path)
        ws.ordered()
        for rule in passes:
            found = rule.run(ws)
            applied.extend(found)
            changed = changed or bool(found)
            if found and not getattr(rule, "records_changes", False):  # it did not say what it touched
                ws.all_dirty = True
        if not changed:
            break
        near = None if not incremental or ws.all_dirty else _near(ws, ws.dirty, depth) | retry
    if expand:
        from .rules import EXPANSIONS

        for rule in EXPANSIONS:
            ws.ordered()
            for name in list(ws.nodes):
                node = ws.nodes.get(name)
                if node is not None and node.op in rule.roots:
                    m = rule.match(ws, node)
                    a = ws.apply(rule, m) if m is not None else None
                    if a is not None:
                        applied.append(a)
    return RewriteResult(ws.finish(), applied)


def _near(ws: Workspace, touched: set[str], depth: int) -> set[str]:
    """The touched names and every node that reads one through at most `depth` levels of
    inputs: the nodes whose local matches may have changed."""
    readers: dict[str, list[str]] = {}
    for node in ws.nodes.values():
        for i in node.inputs:
            if i in touched or depth > 1:
                readers.setdefault(i, []).append(node.name)
    region = set(touched)
    frontier = touched
    for _ in range(depth):
        frontier = {r for n in frontier for r in readers.get(n, ())} - region
        region |= frontier
    return region
