"""GraphBuilder: the `b` that VJP/JVP rules and rewrite rules call to add nodes to a graph.

It sits just above the IR and the op registry (it needs each op's shape rule to type a new
node), and below every pass that builds graphs: autodiff, the rewrite engine, grad-check's
localisation. Keeping it out of `autodiff` means a rewrite or a lint pass that builds nodes
does not depend on reverse mode, and autodiff is only the traversal.
"""

from __future__ import annotations

import numpy as np

from .dims import Dim
from .errors import GraphError
from .ir import Graph, Loc, Node, Tensor, TensorType
from .ops.registry import ShapeError, get_op
from .ops.shape import shape_json
from .shapes import Inference, ShapeCtx, dim_attrs
from .validate import inference_of, with_inference


class TypedNames:
    """Questions about the typed values of a graph being matched or built (`types`, `ctx`): one
    copy for the builder that rules call and the read-only view lint matches over."""

    types: dict[str, TensorType]
    ctx: ShapeCtx

    def type(self, name: str) -> TensorType:
        return self.types[name]

    def attrs(self, node: Node) -> dict:
        return get_op(node.op).full_attrs(node.attrs)

    def shape_of(self, name: str) -> tuple:
        """A value's shape with every dim resolved as far as the graph's bindings allow."""
        return tuple(self.ctx.resolve(d) for d in self.types[name].shape)


class GraphBuilder(TypedNames):
    """Adds nodes to a copy of a graph, inferring each new node's type as it goes.

    This is the `b` that VJP and JVP rules receive: `b(op, *inputs, **attrs)` returns the new
    node's name; `b.const(v)` a weak scalar constant; `b.type(name)` a value's type.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        inf = inference_of(graph)
        self.ctx = ShapeCtx(rigid=set(graph.dims))
        self.ctx.bindings = dict(inf.ctx.bindings)
        self.types: dict[str, TensorType] = dict(inf.types)
        self.nodes: dict[str, Node] = dict(graph.nodes)
        self.tensors: dict[str, Tensor] = dict(graph.tensors)
        self.prefix = "__bwd"
        self.loc = Loc(graph.path)
        self.counter: dict[str, int] = {}
        self._consts: dict[tuple, str] = {}
        self.fixed = {k: Dim.const(v) for k, v in graph.fixed_dims.items()}

    # naming -----------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """`<base>_<k>` for the first k that names nothing yet (stable: same graph, same names)."""
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
        try:
            full = opdef.full_attrs(attrs)
            if self.fixed or self.ctx.bindings:  # dim attrs (a slice's stop=2 * n) as inference sees them
                full = dim_attrs(opdef, full, self.ctx, self.fixed)
            t = opdef.infer(self.ctx, ins, full)
        except ShapeError as e:  # a bug in a rule: say which one
            raise GraphError("internal", f"a rule built an ill-typed {op} node: {e.message}", **self.loc.where()) from None
        self.types[name] = TensorType(self.ctx.resolve_shape(t.shape), t.dtype, t.weak)
        self.nodes[name] = node
        return name

    def const(self, value: float) -> str:
        """A weak float scalar constant (one per value)."""
        key = (float(value),)
        if key not in self._consts:
            name = self.fresh("__c")
            self.tensors[name] = Tensor(name, "constant", TensorType((), "float64", True),
                                        np.array(float(value)), loc=Loc(self.graph.path))
            self.types[name] = self.tensors[name].type
            self._consts[key] = name
        return self._consts[key]

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
        """A new input `name` with the type of `like` (forward mode's tangents)."""
        t = self.types[like]
        self.tensors[name] = Tensor(name, "input", TensorType(t.shape, t.dtype), loc=self.graph.loc(like))
        self.types[name] = self.tensors[name].type
        return name

    def graph_with(self, outputs, loss, doc: str) -> Graph:
        """The built graph with these outputs, pruned, its types already known."""
        g = Graph(tensors=self.tensors, nodes=self.nodes, outputs=tuple(outputs), loss=loss,
                  name=self.graph.name, doc=doc, dims=dict(self.graph.dims),
                     fixed_dims=dict(self.graph.fixed_dims), path=self.graph.path)
        g = g.prune()
        return with_inference(g, Inference({n: self.types[n] for n in g.names()}, self.ctx, []))
