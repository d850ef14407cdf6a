"""The executor: compile a graph once into a flat plan, then run it as often as needed.

A plan is a list of steps over numbered slots (no dict look-ups per node at run time).
Every intermediate is freed right after its last use; elementwise ufunc steps write into a
dying input's buffer when that buffer is ours (never a user's array or a view of one), so
fan-out accumulation and elementwise chains run in place. Kernels come from a backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends import Backend, get_backend
from .dims import Dim
from .errors import GraphError, UsageError, did_you_mean
from .ir import Graph
from .ops.registry import KernelError, get_op
from .validate import types_of


@dataclass
class Step:
    node: str
    op: str
    kernel: object
    ins: tuple[int, ...]
    out: int
    attrs: dict  # raw attrs; resolved per run when `dims_in_attrs`
    kwargs: dict  # resolved when static
    dims_in_attrs: bool
    dtype: np.dtype | None  # expected output dtype (None: weak scalar)
    free: tuple[int, ...]  # slots dead after this step
    donor: int  # position in `ins` whose buffer may be written (-1: none)
    ufunc: object


class Program:
    """A graph compiled for a set of outputs on a backend."""

    def __init__(self, graph: Graph, outputs: tuple[str, ...], backend: Backend) -> None:
        self.graph = graph
        self.outputs = outputs
        self.backend = backend
        types = types_of(graph)
        self.types = types
        live = graph.ancestors(outputs)
        names = [n for n in graph.tensors if n in live]
        self.tensor_names = names
        slot = {n: k for k, n in enumerate(names)}
        nodes = [graph.nodes[n] for n in graph.nodes if n in live]
        for node in nodes:
            slot[node.name] = len(slot)
        self.slot = slot
        self.n_slots = len(slot)
        last: dict[int, int] = {}
        for k, node in enumerate(nodes):
            for i in node.inputs:
                last[slot[i]] = k
        keep = {slot[o] for o in outputs}
        owned: set[int] = set()  # slots holding buffers that this run allocated
        steps: list[Step] = []
        for k, node in enumerate(nodes):
            op = get_op(node.op)
            ins = tuple(slot[i] for i in node.inputs)
            free = tuple(sorted({s for s in ins if last.get(s) == k and s not in keep and s >= len(names)}))
            donor = -1
            if op.ufunc is not None and not types[node.name].weak:
                for pos, s in enumerate(ins):
                    if s in free and s in owned and ins.count(s) == 1 and not types[node.inputs[pos]].weak:
                        if types[node.inputs[pos]].dtype == types[node.name].dtype:
                            donor = pos
                            break
            has_dims = any(a.kind in ("shape", "dim") for a in op.attrs.values())
            t = types[node.name]
            steps.append(Step(node.name, node.op, backend.kernel(op), ins, slot[node.name], node.attrs,
                              {} if has_dims else op.prepare(node.attrs, {}), has_dims,
                              None if t.weak else np.dtype(t.dtype), free, donor, op.ufunc))
            if not op.view:
                owned.add(slot[node.name])
        self.steps = steps
        self.out_slots = tuple(slot[o] for o in outputs)
        self.compiled = backend.compile(self)

    def run(self, values: dict[str, np.ndarray], bindings: dict[str, int], check_numerics: bool = False) -> dict:
        """Execute; `values` holds every tensor's data (see feeds.resolve)."""
        if self.compiled is not None and not check_numerics:
            return self.compiled(values, bindings)
        slots: list = [None] * self.n_slots
        types = self.types
        for k, name in enumerate(self.tensor_names):
            v = values[name]
            slots[k] = v.item() if types[name].weak else v
        if check_numerics:
            for k, name in enumerate(self.tensor_names):
                _check_finite(self.graph, name, slots[k], None, [])
        with np.errstate(all="ignore"):
            for step in self.steps:
                args = [slots[i] for i in step.ins]
                kwargs = self.graph.cache.setdefault(("kwargs", step.node, tuple(sorted(bindings.items()))),
                                                     get_op(step.op).prepare(step.attrs, bindings)) \
                    if step.dims_in_attrs else step.kwargs
                try:
                    if step.donor >= 0 and type(args[step.donor]) is np.ndarray and \
                            args[step.donor].shape == np.broadcast_shapes(*[np.shape(a) for a in args]):
                        out = step.ufunc(*args, out=args[step.donor])
                    else:
                        out = step.kernel(*args, **kwargs)
                except KernelError as e:
                    raise self._error(step, e.code, e.message) from None
                except (ValueError, TypeError, IndexError, FloatingPointError) as e:
                    raise self._error(step, "kernel-failed", f"{step.op} failed: {e}") from None
                if step.dtype is None:
                    out = out.item() if hasattr(out, "item") else out
                elif getattr(out, "dtype", None) != step.dtype:
                    out = np.asarray(out).astype(step.dtype)
                slots[step.out] = out
                if check_numerics:
                    _check_finite(self.graph, step.node, out, step.op, args)
                for s in step.free:
                    slots[s] = None
        return {name: np.asarray(slots[s]) for name, s in zip(self.outputs, self.out_slots)}

    def _error(self, step: Step, code: str, message: str) -> GraphError:
        loc = self.graph.loc(step.node)
        return GraphError(code, message, node=self.graph.owner(step.node), op=step.op, **loc.where())


def _check_finite(graph: Graph, name: str, value, op: str | None, args: list) -> None:
    arr = np.asarray(value)
    if arr.dtype.kind != "f" or np.isfinite(arr).all():
        return
    bad = "NaN" if np.isnan(arr).any() else "Inf"
    ranges = []
    for a in args:
        a = np.asarray(a)
        if a.dtype.kind in "fiu" and a.size:
            ranges.append(f"[{np.nanmin(a):.4g}, {np.nanmax(a):.4g}]")
    what = f"produced {bad}" if op else f"holds {bad} in its data"
    message = f"'{name}' {what}" + (f"; its inputs range over {', '.join(ranges)}" if ranges else "")
    loc = graph.loc(name)
    raise GraphError("non-finite", message, node=graph.owner(name), op=op, **loc.where(),
                     hint="look for exp overflow, log of <= 0 or 0/0; `gtool lint` may name a stable rewrite")


def program(graph: Graph, outputs=None, backend=None) -> Program:
    """The compiled plan for these outputs (cached on the graph: repeated runs reuse it)."""
    outputs = tuple(outputs or graph.outputs)
    for o in outputs:
        if o not in graph:
            near = did_you_mean(o, list(graph.names()))
            raise UsageError("unknown-name", f"no value named '{o}' in the graph",
                             hint=f"did you mean '{near}'?" if near else None)
    be = get_backend(backend)
    key = ("program", outputs, be.name)
    prog = graph.cache.get(key)
    if prog is None:
        prog = graph.cache[key] = Program(graph, outputs, be)
    return prog


def free_dims(graph: Graph) -> dict[str, Dim]:
    inf = graph.cache.get("inference")
    if inf is None:
        types_of(graph)
        inf = graph.cache["inference"]
    return dict(inf.ctx.bindings)


def execute(graph: Graph, inputs: dict | None = None, outputs=None, *, backend=None, random: bool = False,
            seed: int = 0, dim_values: dict | None = None, check_numerics: bool = False) -> dict[str, np.ndarray]:
    """Run a graph: resolve the data, bind dims, execute the cached plan."""
    from .feeds import resolve

    prog = program(graph, outputs, backend)
    values, bindings = resolve(graph, inputs, types=prog.types, free=free_dims(graph), random=random, seed=seed,
                               dim_values=dim_values)
    return prog.run(values, bindings, check_numerics=check_numerics)


def at_precision(graph: Graph, dtype: str) -> Graph:
    """The same graph with every float tensor, cast and one_hot at `dtype` (--dtype)."""
    from dataclasses import replace

    from .ir import TensorType

    def conv(d: str) -> str:
        return dtype if d.startswith("float") else d

    tensors = {}
    for n, t in graph.tensors.items():
        value = t.value.astype(conv(t.dtype)) if t.value is not None else None
        tensors[n] = replace(t, type=TensorType(t.shape, conv(t.dtype), t.type.weak), value=value)
    nodes = {}
    for n, node in graph.nodes.items():
        attrs = dict(node.attrs)
        if "dtype" in attrs and attrs["dtype"] is not None:
            attrs["dtype"] = conv(attrs["dtype"])
        elif node.op == "one_hot":
            attrs["dtype"] = dtype
        nodes[n] = replace(node, attrs=attrs)
    return graph.evolve(tensors=tensors, nodes=nodes)


