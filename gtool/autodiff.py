"""Autodiff as a graph transformation: `grad` (reverse mode) and `jvp` (forward mode).

Both return a new, ordinary Graph built only from registry ops, so gradient graphs can be
validated, rendered, rewritten, run on any backend, written to a file, and differentiated
again. Reverse mode visits nodes in reverse topological order; where a value fans out, its
gradient is an explicit `add` of the contributions (named `__grad_<value>`). Only the nodes
between the targets and the loss are differentiated; int and bool values carry no gradient.
"""

from __future__ import annotations

import numpy as np

from .dims import Dim
from .errors import GraphError, UsageError, did_you_mean
from .ir import Graph, Loc, Node, Tensor, TensorType
from .ops.registry import get_op
from .ops.shape import shape_json
from .shapes import ShapeCtx
from .validate import types_of


class GraphBuilder:
    """Adds nodes to a copy of a graph, inferring each new node's type as it goes.

    This is the `b` that VJP and JVP rules receive: `b(op, *inputs, **attrs)` returns the new
    node's name; `b.const(v)` a weak scalar constant; `b.type(name)` a value's type.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        inf = graph.cache.get("inference")
        types_of(graph)
        inf = graph.cache["inference"]
        self.ctx = ShapeCtx(rigid=set(graph.dims))
        self.ctx.bindings = dict(inf.ctx.bindings)
        self.types: dict[str, TensorType] = dict(inf.types)
        self.nodes: dict[str, Node] = dict(graph.nodes)
        self.tensors: dict[str, Tensor] = dict(graph.tensors)
        self.prefix = "__bwd"
        self.loc = Loc(graph.path)
        self.counter: dict[str, int] = {}
        self._consts: dict[tuple, str] = {}

    # naming -----------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        k = self.counter.get(base, 0)
        while True:
            k += 1
            name = f"{base}_{k}"
            if name not in self.nodes and name not in self.tensors:
                self.counter[base] = k
                return name

    def context(self, prefix: str, loc: Loc) -> None:
        """Name the next nodes `<prefix>_<k>` and locate them at `loc` (the forward node)."""
        self.prefix, self.loc = prefix, loc

    # building ---------------------------------------------------------------------------------
    def __call__(self, op: str, *inputs: str, name: str | None = None, **attrs) -> str:
        opdef = get_op(op)
        if name is not None and (name in self.nodes or name in self.tensors):
            name = self.fresh(name)  # e.g. __grad_u already exists in a gradient graph
        name = name or self.fresh(self.prefix)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = Node(name, op, tuple(inputs), attrs, loc=self.loc)
        ins = [self.types[i] for i in inputs]
        from .ops.registry import ShapeError

        try:
            t = opdef.infer(self.ctx, ins, opdef.full_attrs(attrs))
        except ShapeError as e:  # a bug in a rule: say which one
            raise GraphError("internal", f"autodiff built an ill-typed {op} node: {e.message}", **self.loc.where()) from None
        self.types[name] = TensorType(self.ctx.resolve_shape(t.shape), t.dtype, t.weak)
        self.nodes[name] = node
        return name

    def const(self, value: float) -> str:
        key = (float(value),)
        if key not in self._consts:
            name = self.fresh("__c")
            self.tensors[name] = Tensor(name, "constant", TensorType((), "float64", True),
                                        np.array(float(value)), loc=Loc(self.graph.path))
            self.types[name] = self.tensors[name].type
            self._consts[key] = name
        return self._consts[key]

    def type(self, name: str) -> TensorType:
        return self.types[name]

    def attrs(self, node: Node) -> dict:
        return get_op(node.op).full_attrs(node.attrs)

    def _same_shape(self, a: str, b: str) -> bool:
        sa, sb = self.types[a].shape, self.types[b].shape
        return len(sa) == len(sb) and all(self.ctx.resolve(x) == self.ctx.resolve(y) for x, y in zip(sa, sb))

    def sum_to(self, x: str, like: str) -> str:
        """x summed down to like's shape (nothing when the shapes already agree)."""
        return x if self._same_shape(x, like) else self("sum_to", x, like)

    def broadcast_like(self, x: str, like: str) -> str:
        return x if self._same_shape(x, like) else self("broadcast_to", x, shape=shape_json(self.types[like].shape))

    def zeros(self, shape, dtype: str) -> str:
        z = self("broadcast_to", self.const(0.0), shape=[Dim.to_json(d) if isinstance(d, Dim) else d for d in shape])
        return z if dtype == "float64" else self("cast", z, dtype=dtype)

    def zeros_like(self, x: str) -> str:
        return self.zeros(self.types[x].shape, self.types[x].dtype)

    def add_input(self, name: str, like: str) -> str:
        t = self.types[like]
        self.tensors[name] = Tensor(name, "input", TensorType(t.shape, t.dtype), loc=self.graph.loc(like))
        self.types[name] = self.tensors[name].type
        return name

    def graph_with(self, outputs, loss, doc: str) -> Graph:
        g = Graph(tensors=self.tensors, nodes=self.nodes, outputs=tuple(outputs), loss=loss,
                  name=self.graph.name, doc=doc, dims=dict(self.graph.dims), path=self.graph.path)
        g = g.prune()
        from .shapes import Inference

        g.cache["inference"] = Inference({n: self.types[n] for n in g.names()}, self.ctx, [])
        return g


def _float(t: TensorType) -> bool:
    return t.dtype.startswith("float")


def default_wrt(graph: Graph) -> list[str]:
    """The spec's default targets: the params if there are any, else every float input."""
    params = graph.of_kind("param")
    if params:
        return params
    types = types_of(graph)
    return [n for n in graph.of_kind("input") if _float(types[n])]


def check_targets(graph: Graph, wrt, of: str | None) -> tuple[list[str], str]:
    types = types_of(graph)
    loss = of or graph.loss_name()
    if loss is None or loss not in graph:
        near = did_you_mean(str(loss), list(graph.names()))
        raise UsageError("unknown-name", f"no value named '{loss}' to differentiate",
                         hint=f"did you mean '{near}'?" if near else None)
    if types[loss].rank != 0:
        from .dims import format_shape

        raise UsageError("non-scalar-loss", f"'{loss}' has shape {format_shape(types[loss].shape)}; gradients "
                         "need a scalar loss", hint="set `loss:` to a scalar, or reduce it with sum(...)")
    if not _float(types[loss]):
        raise UsageError("dtype-mismatch", f"the loss '{loss}' is {types[loss].dtype}; it must be a float")
    wrt = list(wrt) if wrt else default_wrt(graph)
    for w in wrt:
        if w not in graph:
            near = did_you_mean(w, list(graph.names()))
            raise UsageError("unknown-name", f"--wrt: no value named '{w}'",
                             hint=f"did you mean '{near}'?" if near else None)
        if not _float(types[w]):
            raise UsageError("dtype-mismatch", f"--wrt: '{w}' is {types[w].dtype}; only float values have gradients")
    if not wrt:
        raise UsageError("usage", "nothing to differentiate: the graph has no params and no float inputs")
    return wrt, loss


def grad_name(name: str) -> str:
    return f"__grad_{name}"


def grad(graph: Graph, wrt=None, of: str | None = None) -> Graph:
    """The gradient graph: outputs are the loss and `__grad_<x>` for each target x.

    `graph.cache["grad_info"]` of the result records, for each value, the contributions that
    were summed (consumer -> node name), which `explain` and `render` use.
    """
    wrt, loss = check_targets(graph, wrt, of)
    graph = _restricted(graph, [loss])
    b = GraphBuilder(graph)
    types = b.types
    need = graph.descendants(wrt) & graph.ancestors([loss])
    contribs: dict[str, list[tuple[str, str]]] = {}
    seed = grad_name(loss)
    if seed in b.types:
        seed = b.fresh(seed)
    b.tensors[seed] = Tensor(seed, "constant", TensorType((), types[loss].dtype), np.array(1.0, types[loss].dtype),
                             loc=graph.loc(loss))
    b.types[seed] = b.tensors[seed].type
    contribs[loss] = [("", seed)]
    total: dict[str, str] = {}
    for node in reversed(list(graph.nodes.values())):
        if node.name not in need or node.name not in contribs:
            continue
        g = _accumulate(b, node.name, contribs, total)
        op = get_op(node.op)
        if op.vjp is None:
            continue
        b.context(f"__bwd_{node.name}", node.loc)
        outs = op.vjp(b, node, g)
        for inp, gi in zip(node.inputs, outs):
            if gi is None or inp not in need or not _float(types[inp]):
                continue
            if b.type(gi).dtype != types[inp].dtype and not types[inp].weak:
                # a gradient has its value's dtype (torch, JAX): a float32 x used with float64
                # gets a float32 gradient, rounded once here (issue 11; h5's minimal change)
                gi = b("cast", gi, dtype=types[inp].dtype)
            contribs.setdefault(inp, []).append((node.name, gi))
    outputs = [loss]
    for w in wrt:
        b.context(grad_name(w), graph.loc(w))
        if w in contribs:
            g = _accumulate(b, w, contribs, total)
            if g != total.get(("sum", w)):
                g = b("identity", g, name=grad_name(w))
        else:  # the loss does not depend on w: its gradient is zero
            g = b("cast", b.zeros(types[w].shape, "float64"), dtype=types[w].dtype, name=grad_name(w)) \
                if types[w].dtype != "float64" else b("identity", b.zeros(types[w].shape, "float64"), name=grad_name(w))
        outputs.append(g)
    doc = f"gradient of {loss} with respect to {', '.join(wrt)}" + (f" ({graph.name})" if graph.name else "")
    out = b.graph_with(outputs, loss, doc)
    out.cache["grad_info"] = {"loss": loss, "wrt": wrt, "contributions": contribs, "total": total,
                              "source": graph}
    return out


def _restricted(graph: Graph, outputs: list[str]) -> Graph:
    """The part of `graph` that `outputs` need (types carried over), so that names of dropped
    nodes (e.g. a first-order __grad_x when differentiating __grad_y) are free again."""
    g = graph.evolve(outputs=tuple(outputs), loss=None).prune()
    if g is graph or len(g.nodes) == len(graph.nodes):
        return graph
    g = g.evolve(loss=None)
    inf = graph.cache["inference"]
    from .shapes import Inference

    g.cache["inference"] = Inference({n: inf.types[n] for n in g.names()}, inf.ctx, [])
    return g


def _accumulate(b: GraphBuilder, name: str, contribs: dict, total: dict) -> str:
    """The gradient of `name`: its single contribution, or an explicit sum named __grad_<name>."""
    if name in total:
        return total[name]
    parts = [c for _, c in contribs[name]]
    if len(parts) == 1:
        total[name] = parts[0]
        return parts[0]
    b.context(grad_name(name), b.graph.loc(name))
    acc = parts[0]
    for k, p in enumerate(parts[1:], start=1):
        last = k == len(parts) - 1
        acc = b("add", acc, p, name=grad_name(name) if last else None)
    total[name] = total[("sum", name)] = acc
    return acc


def tangent_name(name: str) -> str:
    return f"__tan_{name}"


def jvp(graph: Graph, wrt=None, of=None) -> Graph:
    """Forward mode: new inputs `__tan_<x>` (tangents of the targets); outputs are the
    original values and their tangents `__tan_<y>` (for `of`, default the graph's outputs)."""
    types = types_of(graph)
    wrt = list(wrt) if wrt else default_wrt(graph)
    outs = list(of) if of else list(graph.outputs)
    for w in wrt:
        if w not in graph:
            raise UsageError("unknown-name", f"no value named '{w}'")
    b = GraphBuilder(graph)
    tan: dict[str, str] = {w: b.add_input(tangent_name(w), w) for w in wrt}
    for node in graph.nodes.values():
        ts = [tan.get(i) for i in node.inputs]
        if all(t is None for t in ts) or not _float(types[node.name]):
            continue
        op = get_op(node.op)
        if op.jvp is None:
            continue
        b.context(f"__tan_{node.name}", node.loc)
        t = op.jvp(b, node, ts)
        if t is not None:
            tan[node.name] = t
    outputs = list(outs)
    for o in outs:
        b.context(tangent_name(o), graph.loc(o))
        if o in tan:
            outputs.append(b("identity", tan[o], name=tangent_name(o)) if tan[o] != tangent_name(o) else tan[o])
        else:
            outputs.append(b("identity", b.zeros(types[o].shape, types[o].dtype), name=tangent_name(o)))
    doc = f"forward-mode tangents of {', '.join(outs)} along {', '.join(wrt)}"
    g = b.graph_with(outputs, None, doc)
    return g


