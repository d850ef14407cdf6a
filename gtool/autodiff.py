"""Autodiff as a graph transformation: `grad` (reverse mode) and `jvp` (forward mode).

Both return a new, ordinary Graph built only from registry ops, so gradient graphs can be
validated, rendered, rewritten, run on any backend, written to a file, and differentiated
again. Reverse mode visits nodes in reverse topological order; where a value fans out, its
gradient is an explicit `add` of the contributions (named `__grad_<value>`). Only the nodes
between the targets and the loss are differentiated; int and bool values carry no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .builder import GraphBuilder
from .dims import format_shape
from .dtypes import is_float as is_float_dtype
from .errors import GraphError, UsageError, did_you_mean
from .ir import Graph, Node, Tensor, TensorType
from .ops.registry import get_op
from .shapes import Inference
from .validate import inference_of, types_of, with_inference

# GraphBuilder lives in gtool.builder; the name stays importable from here for older plugins.
__all__ = ["Gradient", "GraphBuilder", "check_targets", "check_wrt", "cotangent_name", "default_wrt", "grad", "grad_name",
           "jvp", "tangent_name", "vjp"]


@dataclass(frozen=True, eq=False)
class Gradient:
    """What `grad` returns: the gradient graph, and what its names mean.

    `source` is the forward graph differentiated (the part the loss needs). `outputs` maps each
    target to the output of `graph` holding its gradient (usually `__grad_<x>`, but not when
    that name is taken, e.g. in a second derivative); the loss's value is the output `loss`.
    `contributions` maps each differentiated value to the (consumer, node) pairs whose sum is
    its gradient (consumer "" is the seed of the loss); `total` maps each value to the node
    holding its whole gradient; `sums` maps each value that fans out to the last `add` of the
    chain that sums its contributions. `explain`, `render` and grad-check's localisation read
    these instead of parsing names. For `vjp` (seeded at several outputs), `loss` is None and
    `cotangents` maps each seeded value to the input holding its cotangent.
    """

    graph: Graph
    source: Graph
    loss: str | None
    wrt: tuple[str, ...]
    outputs: dict[str, str]
    contributions: dict[str, list[tuple[str, str]]]
    total: dict[str, str]
    sums: dict[str, str]
    cotangents: dict[str, str] = field(default_factory=dict)


def _check_plugin_gradient(b: GraphBuilder, op, node: Node, inp: str, gi: str) -> None:
    """A plugin's VJP must give each needed input a gradient of that input's shape: a wrong one
    broadcasts into a wrong result without any error. (`input` on the error: which one.)"""
    want, got = b.type(inp).shape, b.type(gi).shape
    if len(want) == len(got) and all(b.ctx.resolve(x) == b.ctx.resolve(y) for x, y in zip(want, got)):
        return
    err = GraphError("plugin-bad-vjp", f"plugin {op.plugin}: the VJP of op '{op.name}' gives a gradient of shape "
                     f"{format_shape(got)} for input `{inp}` of shape {format_shape(want)}",
                     node=node.owner or node.name, op=op.name, **node.loc.where())
    err.input = inp
    raise err


def _float(t: TensorType) -> bool:
    return is_float_dtype(t.dtype)


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
    return check_wrt(graph, wrt), loss


def check_wrt(graph: Graph, wrt) -> list[str]:
    """The targets (default: the params, else every float input); each must be a float value."""
    types = types_of(graph)
    wrt = list(wrt) if wrt else default_wrt(graph)
    for w in wrt:
        if w not in graph:
            near = did_you_mean(w, list(graph.names()))
            raise UsageError("unknown-name", f"wrt: no value named '{w}'",
                             hint=f"did you mean '{near}'?" if near else None)
        if not _float(types[w]):
            raise UsageError("dtype-mismatch", f"wrt: '{w}' is {types[w].dtype}; only float values have gradients")
    if not wrt:
        raise UsageError("usage", "nothing to differentiate: the graph has no params and no float inputs")
    return wrt


def grad_name(name: str) -> str:
    return f"__grad_{name}"


def grad(graph: Graph, wrt=None, of: str | None = None) -> Gradient:
    """The gradient of `of` (default: the graph's loss) with respect to `wrt` (default: the
    params, else every float input), as a new graph whose outputs are the loss and
    `__grad_<x>` for each target x, with the mapping from targets to those outputs.
    """
    wrt, loss = check_targets(graph, wrt, of)
    wrt = list(dict.fromkeys(wrt))
    target_types = {w: inference_of(graph).types[w] for w in wrt}  # a target may be pruned away below
    graph = _restricted(graph, [loss])
    b = GraphBuilder(graph)
    acc = _backward(b, graph, {loss: _seed(b, graph, loss)}, wrt)
    outputs = {w: _target_output(b, graph, acc, w, target_types[w]) for w in wrt}
    doc = f"gradient of {loss} with respect to {', '.join(wrt)}" + (f" ({graph.name})" if graph.name else "")
    out = b.graph_with([loss, *outputs.values()], loss, doc)
    return Gradient(out, graph, loss, tuple(wrt), outputs, acc.contribs, acc.total, acc.sums)


def _backward(b: GraphBuilder, graph: Graph, seeds: dict[str, str], wrt: list[str]) -> _Accumulator:
    """The reverse pass from `seeds` (value -> the name of its upstream gradient) down to `wrt`:
    one seed for `grad`'s scalar loss, one cotangent per output for `vjp`. Visits the nodes
    between the targets and the seeded values in reverse topological order."""
    acc = _Accumulator(b, {y: [("", s)] for y, s in seeds.items()})
    need = graph.descendants(wrt) & graph.ancestors(list(seeds))
    for node in reversed(list(graph.nodes.values())):
        if node.name not in need or node.name not in acc.contribs:
            continue
        g = acc.total_of(node.name)
        op = get_op(node.op)
        if op.vjp is None:
            continue
        b.context(f"__bwd_{node.name}", node.loc)
        for inp, gi in zip(node.inputs, op.vjp(b, node, g)):
            if gi is not None and inp in need and _float(b.types[inp]):
                if op.plugin is not None:
                    _check_plugin_gradient(b, op, node, inp, gi)
                if b.type(gi).dtype != b.types[inp].dtype and not b.types[inp].weak:
                    # a gradient has its value's dtype (torch, JAX): a float32 x used with float64
                    # gets a float32 gradient, rounded once here (issue 11)
                    gi = b("cast", gi, dtype=b.types[inp].dtype)
                acc.contribs.setdefault(inp, []).append((node.name, gi))
    return acc


def cotangent_name(name: str) -> str:
    return f"__cot_{name}"


def vjp(graph: Graph, outputs, wrt=None) -> Gradient:
    """Reverse mode seeded at several values at once (jax.vjp, torch.autograd.grad with
    grad_outputs): new inputs `__cot_<y>` (each with y's type) are the cotangents of `outputs`;
    the graph's outputs are the forward graph's outputs and `outputs`, then one gradient
    `sum_y J_y^T cot_y` per target. `Gradient.loss` is None: there is no scalar loss; `Gradient.cotangents` maps each
    seeded value to its cotangent input."""
    types = types_of(graph)
    outputs = list(dict.fromkeys(outputs))
    if not outputs:
        raise UsageError("usage", "vjp needs a cotangent for at least one output")
    for y in outputs:
        if y not in graph:
            near = did_you_mean(str(y), list(graph.outputs) or list(graph.names()))
            raise UsageError("unknown-name", f"cotangent given for '{y}', which is not a value of the graph",
                             hint=f"did you mean '{near}'?" if near else f"its outputs: {', '.join(graph.outputs)}")
        if not _float(types[y]):
            raise UsageError("dtype-mismatch", f"cotangent given for '{y}', which is {types[y].dtype}; only float "
                             "values have cotangents")
    wrt = list(dict.fromkeys(check_wrt(graph, wrt)))
    target_types = {w: types[w] for w in wrt}
    shown = list(dict.fromkeys([*graph.outputs, *outputs]))
    graph = _restricted(graph, shown)
    b = GraphBuilder(graph)
    cots = {y: b.add_input(_free(b, cotangent_name(y)), y) for y in outputs}
    acc = _backward(b, graph, cots, wrt)
    grads = {w: _target_output(b, graph, acc, w, target_types[w]) for w in wrt}
    doc = (f"vector-Jacobian products of {', '.join(outputs)} with respect to {', '.join(wrt)}"
           + (f" ({graph.name})" if graph.name else ""))
    out = b.graph_with([*shown, *grads.values()], None, doc)
    return Gradient(out, graph, None, tuple(wrt), grads, acc.contribs, acc.total, acc.sums, cots)


def _free(b: GraphBuilder, name: str) -> str:
    return b.fresh(name) if name in b.types else name


def _seed(b: GraphBuilder, graph: Graph, loss: str) -> str:
    """The constant 1 that starts the backward pass, named `__grad_<loss>` (when free)."""
    seed = grad_name(loss)
    if seed in b.types:
        seed = b.fresh(seed)
    dtype = b.types[loss].dtype
    b.tensors[seed] = Tensor(seed, "constant", TensorType((), dtype), np.array(1.0, dtype), loc=graph.loc(loss))
    b.types[seed] = b.tensors[seed].type
    return seed


def _target_output(b: GraphBuilder, graph: Graph, acc: _Accumulator, w: str, t: TensorType) -> str:
    """The output named `__grad_<w>`: w's total gradient (zeros when the loss ignores w, also
    for an intermediate the loss does not read, which `_restricted` dropped from `graph`)."""
    b.context(grad_name(w), graph.loc(w))
    if w in acc.contribs:
        g = acc.total_of(w)
        return g if g == acc.sums.get(w) else b("identity", g, name=grad_name(w))
    zeros = b.zeros(t.shape, "float64")
    return b("cast", zeros, dtype=t.dtype, name=grad_name(w)) if t.dtype != "float64" \
        else b("identity", zeros, name=grad_name(w))


def _restricted(graph: Graph, outputs: list[str]) -> Graph:
    """The part of `graph` that `outputs` need (types carried over), so that names of dropped
    nodes (e.g. a first-order __grad_x when differentiating __grad_y) are free again."""
    g = graph.evolve(outputs=tuple(outputs), loss=None).prune()
    if g is graph or len(g.nodes) == len(graph.nodes):
        return graph
    g = g.evolve(loss=None)
    inf = inference_of(graph)
    return with_inference(g, Inference({n: inf.types[n] for n in g.names()}, inf.ctx, []))


class _Accumulator:
    """Contributions to each value's gradient, and their sums (built once, when first read)."""

    def __init__(self, b: GraphBuilder, contribs: dict[str, list[tuple[str, str]]]) -> None:
        self.b = b
        self.contribs = contribs
        self.total: dict[str, str] = {}
        self.sums: dict[str, str] = {}

    def total_of(self, name: str) -> str:
        """The gradient of `name`: its single contribution, or an explicit sum named __grad_<name>."""
        if name in self.total:
            return self.total[name]
        parts = [c for _, c in self.contribs[name]]
        if len(parts) == 1:
            self.total[name] = parts[0]
            return parts[0]
        b = self.b
        b.context(grad_name(name), b.graph.loc(name))
        acc = parts[0]
        for k, p in enumerate(parts[1:], start=1):
            acc = b("add", acc, p, name=grad_name(name) if k == len(parts) - 1 else None)
        self.total[name] = self.sums[name] = acc
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


