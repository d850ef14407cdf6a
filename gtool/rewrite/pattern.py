"""Patterns over ops: small trees that match a node and the nodes it reads.

A pattern is built from `Op` (an op name and argument patterns, optionally bound to a name so
a rule can read the node's attrs), `Var` (any value; the same name twice must be the same
value), `Const` (a constant tensor whose every element equals a number: literal numbers in
files are weak scalar constants, so "1" is matched by value, not by name) and `Either`
(alternatives, tried in order). `add` and `mul` are commutative: both argument orders are
tried, with backtracking, so `log(1 + x)` also matches `log(x + 1)`.

Matching yields every consistent binding (a generator), so a rule can add conditions on
attrs and types and take the first binding that satisfies them.

Matching only reads. `GraphView` is the read-only view of a graph that rules match over
(`lint` uses it); the engine's `Workspace` offers the same reading methods and also builds.
Nothing here imports the engine or autodiff, so `lint` can match rules without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..builder import TypedNames
from ..ir import Graph, Node, Tensor, TensorType
from ..shapes import ShapeCtx

COMMUTATIVE = frozenset({"add", "mul", "maximum", "minimum", "equal"})


class View(Protocol):
    """What a matcher reads: nodes and tensors by name."""

    nodes: dict[str, Node]
    tensors: dict[str, Tensor]


class GraphView(TypedNames):
    """A read-only view of a graph for matching: nodes, tensors, inferred types, dim bindings.

    Offers the reading half of the engine's workspace (`type`, `attrs`, `shape_of`, `ctx`),
    which is all a rule's `match` uses; `build` is never called on it.
    """

    def __init__(self, graph: Graph) -> None:
        from ..validate import types_of

        types_of(graph)  # infers (and caches) the types, or raises the graph's errors
        inf = graph.cache["inference"]
        self.graph = graph
        self.nodes: dict[str, Node] = dict(graph.nodes)
        self.tensors: dict[str, Tensor] = dict(graph.tensors)
        self.types: dict[str, TensorType] = dict(inf.types)
        self.ctx = ShapeCtx(rigid=set(graph.dims))
        self.ctx.bindings = dict(inf.ctx.bindings)
        self.protected = set(graph.outputs) | ({graph.loss} if graph.loss else set())



@dataclass(frozen=True)
class Var:
    """Any value. A name bound twice must be bound to the same value both times."""

    name: str


@dataclass(frozen=True)
class Const:
    """A constant tensor (with a value) whose every element equals `value`."""

    value: float
    bind: str | None = None


@dataclass(frozen=True)
class Op:
    """A node running `op` whose inputs match `args`; `bind` names the node for the rule."""

    op: str
    args: tuple
    bind: str | None = None


@dataclass(frozen=True)
class Either:
    """The first of several patterns that matches (each tried in turn)."""

    options: tuple


def op(name: str, *args, bind: str | None = None) -> Op:
    return Op(name, tuple(args), bind)


def either(*options) -> Either:
    return Either(tuple(options))


@dataclass
class Match:
    """A successful match: `vars` (Var name -> value), `nodes` (bind name -> node name),
    and `interior`: every matched node, root first (what the rewrite may delete)."""

    root: str
    vars: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)
    interior: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # whatever a rule computes while checking

    def __getitem__(self, key: str) -> str:
        return self.vars[key] if key in self.vars else self.nodes[key]


def constant_value(view: View, name: str) -> np.ndarray | None:
    """The value of a constant tensor, or None if `name` is not one."""
    t = view.tensors.get(name)
    if t is None or t.kind != "constant" or t.value is None:
        return None
    return t.value


def is_const(view: View, name: str, value: float) -> bool:
    v = constant_value(view, name)
    if v is None or v.size == 0 or v.dtype.kind not in "biuf":
        return False
    if v.size == 1:  # the usual number: the same comparison without a reduction's overhead
        return bool(v.reshape(-1)[0] == value)
    return bool(np.all(v == value))


def could_match(p, name: str, view: View) -> bool:
    """False when `pattern` cannot match `name`: ops, arities and constants checked without
    binding variables (a cheap test before `match`, whose generators cost more)."""
    if isinstance(p, Var):
        return True
    if isinstance(p, Const):
        return is_const(view, name, p.value)
    if isinstance(p, Either):
        return any(could_match(o, name, view) for o in p.options)
    node = view.nodes.get(name)
    if node is None or node.op != p.op or len(node.inputs) != len(p.args):
        return False
    if all(could_match(a, i, view) for a, i in zip(p.args, node.inputs)):
        return True
    return p.op in COMMUTATIVE and len(p.args) == 2 and p.args[0] != p.args[1] and \
        all(could_match(a, i, view) for a, i in zip(p.args[::-1], node.inputs))


def match(pattern, name: str, view: View) -> Iterator[Match]:
    """Every way `pattern` matches the value `name` (a generator of Matches)."""
    for env in _match(pattern, name, view, {}):
        m = Match(root=name)
        for key, value in env.items():
            kind, _, label = key.partition(":")
            if kind == "v":
                m.vars[label] = value
            elif kind == "n":
                m.nodes[label] = value
            elif kind == "i":
                m.interior.append(value)
        yield m


def _match(p, name: str, view: View, env: dict) -> Iterator[dict]:
    if isinstance(p, Var):
        key = f"v:{p.name}"
        if key in env:
            if env[key] == name:
                yield env
            return
        yield {**env, key: name}
    elif isinstance(p, Const):
        if is_const(view, name, p.value):
            yield {**env, f"v:{p.bind}": name} if p.bind else env
    elif isinstance(p, Either):
        for option in p.options:
            yield from _match(option, name, view, env)
    elif isinstance(p, Op):
        node = view.nodes.get(name)
        if node is None or node.op != p.op or len(node.inputs) != len(p.args):
            return
        bound = {**env, f"i:{name}": name}
        if p.bind:
            key = f"n:{p.bind}"
            if key in env and env[key] != name:
                return
            bound[key] = name
        orders = [p.args]
        if p.op in COMMUTATIVE and len(p.args) == 2 and p.args[0] != p.args[1]:
            orders.append(p.args[::-1])
        for args in orders:
            yield from _match_args(args, node.inputs, view, bound)
    else:  # pragma: no cover - a bug in a rule table
        raise TypeError(f"not a pattern: {p!r}")


def _match_args(args: tuple, inputs: tuple, view: View, env: dict) -> Iterator[dict]:
    if not args:
        yield env
        return
    for env2 in _match(args[0], inputs[0], view, env):
        yield from _match_args(args[1:], inputs[1:], view, env2)
