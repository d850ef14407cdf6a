"""The executor: compile a graph once into a flat plan, then run it as often as needed.

A plan is a list of steps over numbered slots (no dict look-ups per node at run time).
Every intermediate is freed right after its last use; elementwise ufunc steps write into a
dying input's buffer when that buffer is ours (never a user's array or a view of one), so
fan-out accumulation and elementwise chains run in place. Kernels come from a backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import budget, fastplan
from .backends import Backend, get_backend
from .datafit import fitted
from .dims import Dim
from .dtypes import is_float, np_dtype
from .errors import GraphError, UsageError, did_you_mean
from .fastplan import hush, quiet, unhush
from .ir import Graph
from .ops.registry import KernelError, get_op
from .validate import types_of

IN_PLACE_MIN_SIZE = 4096  # elements; below this a fresh allocation is cheaper than a wrapper call


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
            out_t = types[node.name]
            if op.ufunc is not None and not out_t.weak and out_t.rank > 0:
                for pos, s in enumerate(ins):
                    t = types[node.inputs[pos]]
                    if s in free and s in owned and ins.count(s) == 1 and t.dtype == out_t.dtype \
                            and t.shape == out_t.shape:
                        donor = pos
                        break
            has_dims = op.dims_in_attrs  # "index" attrs too: concat's VJP slices along named dims (h5)
            t = types[node.name]
            steps.append(Step(node.name, node.op, backend.kernel(op), ins, slot[node.name], node.attrs,
                              {} if has_dims else op.prepare(node.attrs, {}), has_dims,
                              None if t.weak else np_dtype(t.dtype), free, donor, op.ufunc))
            if not op.view:
                owned.add(slot[node.name])
            else:  # the output may alias its inputs: writing into them later would change the view
                owned.difference_update(ins)
        self.steps = steps
        # scalar constants live in the slot template, so a run only copies it
        self._template: list = [None] * self.n_slots
        for k, name in enumerate(names):
            t = graph.tensors[name]
            if t.kind == "constant" and t.value is not None and t.value.ndim == 0:
                v = t.value.astype(np_dtype(t.dtype), copy=False)
                self._template[k] = v.item() if t.type.weak else v
        self.template_slots = tuple(k for k, v in enumerate(self._template) if v is not None)
        self.fed_slots = tuple(k for k in range(len(names)) if self._template[k] is None)
        self.fed_names = tuple(names[k] for k in self.fed_slots)
        self._fed_weak = any(types[n].weak for n in self.fed_names)
        self._const_names = frozenset(names[k] for k in self.template_slots)
        self._casts: set[int] | None = None  # steps whose output needed a dtype fix (first run)
        self._fast: dict[tuple, list] = {}
        self._sizes: dict[int, int] = {}
        self._has_dims = any(st.dims_in_attrs for st in steps)
        self._symbolic = any(d.symbols() for n in list(names) + [st.node for st in steps] for d in types[n].shape)
        self._budget_key = None
        self._budget_items: list | None = None
        self.out_slots = tuple(slot[o] for o in outputs)
        self.compiled = backend.compile(self)

    def check_budget(self, bindings: dict[str, int]) -> None:
        """Refuse the run before it allocates when a value or the peak is too big (gtool/budget.py).
        Checked once per (bindings, limits): a repeated run pays one tuple comparison."""
        if hasattr(self.compiled, "budget_bindings"):  # dask: a task holds one chunk of the batch, not all of it
            bindings = self.compiled.budget_bindings(bindings)
        key = (tuple(sorted(bindings.items())) if self._symbolic else (), budget.limits_key())
        if key == self._budget_key:
            return
        if self._budget_items is None:  # (name, op, shape, dtype, costs no memory, slots freed after it)
            types = self.types  # weak scalars are Python numbers: they cost nothing, like views
            self._budget_items = [(n, None, types[n].shape, types[n].dtype, types[n].weak, ())
                                  for n in self.tensor_names]
            self._budget_items += [(st.node, st.op, types[st.node].shape, types[st.node].dtype,
                                    get_op(st.op).view or st.dtype is None, st.free) for st in self.steps]
        sizes: dict[tuple, tuple[int, ...]] = {}  # most values share a few shapes: evaluate each once
        plan = []
        for name, op, shape, dtype, costless, freed in self._budget_items:
            size = sizes.get(shape)
            if size is None:
                try:
                    size = tuple(d.evaluate(bindings) for d in shape)
                except KeyError:  # a dim no data binds: the run fails later, naming it
                    size = ()
                sizes[shape] = size
            plan.append((name, op, size, dtype, costless, freed))
        graph = self.graph
        budget.check_plan(plan, len(self.tensor_names), lambda n: {**graph.loc(n).where(), "node": graph.owner(n)})
        self._budget_key = key

    def run(self, values: dict[str, np.ndarray], bindings: dict[str, int], check_numerics: bool = False,
            budget_checked: bool = False) -> dict:
        """Execute; `values` holds every tensor's data (see feeds.resolve). `budget_checked`: the
        caller already ran check_budget for these bindings (execute does, before allocating)."""
        if not budget_checked:
            self.check_budget(bindings)
        if self.compiled is not None and not check_numerics:
            return self.compiled(values, bindings)
        return self.interpret(values, bindings, check_numerics)

    def template_value(self, slot: int):
        """The value a scalar constant's slot holds in every run (a weak one as a Python number)."""
        return self._template[slot]

    def interpret(self, values: dict[str, np.ndarray], bindings: dict[str, int], check_numerics: bool = False) -> dict:
        """Run the plan on the NumPy kernels: the reference, which compiled backends fall back
        to for located errors and for --check-numerics. The first run (and every checked run)
        goes step by step; later runs call the plan generated from it (gtool/fastplan.py)."""
        if not check_numerics and self._casts is not None and self._const_names.isdisjoint(values):
            outs = self.run_plan(self.plan_function(bindings), [values[n] for n in self.fed_names], values, bindings)
            return dict(zip(self.outputs, map(np.asarray, outs)))
        return self._interpret_steps(values, bindings, check_numerics)

    def _interpret_steps(self, values: dict, bindings: dict[str, int], check_numerics: bool) -> dict:
        slots: list = self._template.copy()
        types, slot = self.types, self.slot
        for name, v in values.items():
            k = slot.get(name)
            if k is not None and k < len(self.tensor_names):
                slots[k] = v.item() if types[name].weak else v
        with quiet():
            self._run_checked(slots, bindings, check_numerics)
        return {name: np.asarray(slots[s]) for name, s in zip(self.outputs, self.out_slots)}

    def run_plan(self, fn, args: list, values, bindings: dict[str, int]) -> tuple:
        """Call a generated plan on the fed tensors' data (in `fed_names` order); any error
        inside it reruns the careful loop on `values` (a dict, or a function making it), which
        raises it located at its node."""
        if self._fed_weak:
            args = [a.item() if self.types[n].weak and hasattr(a, "item") else a for n, a in zip(self.fed_names, args)]
        token = hush()
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 - the careful loop names the node (or the error repeats there)
            out = self._interpret_steps(values() if callable(values) else values, bindings, False)
            return tuple(out[o] for o in self.outputs)
        finally:
            unhush(token)

    def _kwargs(self, step: Step, bindings: dict[str, int]) -> dict:
        return get_op(step.op).prepare(step.attrs, bindings) if step.dims_in_attrs else step.kwargs

    def _run_checked(self, slots: list, bindings: dict[str, int], check_numerics: bool) -> None:
        """The careful loop: dtype checks on every step (remembered for the fast loop), and
        optionally a finiteness check that names the first node making NaN or Inf."""
        casts = set()
        if check_numerics:
            for k, name in enumerate(self.tensor_names):
                _check_finite(self.graph, name, slots[k], None, [])
        for k, step in enumerate(self.steps):
            args = [slots[i] for i in step.ins]
            try:
                out = step.kernel(*args, **self._kwargs(step, bindings))
            except KernelError as e:
                raise self._error(step, e.code, e.message) from None
            except (ValueError, TypeError, IndexError, FloatingPointError, OverflowError) as e:
                raise self._error(step, "kernel-failed", f"{step.op} failed: {e}") from None
            except MemoryError:
                raise self._out_of_memory(step) from None
            if step.dtype is None:
                if hasattr(out, "item"):
                    out = out.item()
                    casts.add(k)
            elif getattr(out, "dtype", None) != step.dtype:
                out = np.asarray(out).astype(step.dtype)
                casts.add(k)
            slots[step.out] = out
            self._sizes[k] = getattr(out, "size", 1)
            if check_numerics:
                _check_finite(self.graph, step.node, out, step.op, args)
            for s in step.free:
                slots[s] = None
        if self._casts is None:
            self._casts = casts

    def plan_function(self, bindings: dict[str, int]):
        """The plan as one generated Python function for these bindings (made once per key).

        In-place ufuncs are used only where the first run saw big arrays: on tiny arrays the
        extra call costs more than the allocation it saves.
        """
        key = tuple(sorted(bindings.items())) if self._has_dims else ()
        fn = self._fast.get(key)
        if fn is None:
            steps = [(st, self._kwargs(st, bindings)) for st in self.steps]
            fn = self._fast[key] = fastplan.generate(self, steps, self._casts, self._sizes, IN_PLACE_MIN_SIZE)
        return fn

    def _out_of_memory(self, step: Step) -> UsageError:
        """A kernel ran out of memory although the sizes passed the check (kernels need scratch
        space the estimate leaves out, and other programs use memory too): name the node."""
        loc = self.graph.loc(step.node)
        return UsageError("too-much-memory", f"{step.op} ran out of memory", node=self.graph.owner(step.node),
                          op=step.op, **loc.where(), hint="lower --max-memory to refuse such runs up front, "
                          "or use smaller sizes")

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
    subject, node = f"'{name}'", graph.owner(name)
    if name.startswith("__bwd_"):  # a backward node: say whose backward it belongs to
        forward = name[len("__bwd_"):].rsplit("_", 1)[0]
        if forward in graph:
            node = graph.owner(forward)
            subject = f"the backward of '{node}' (its step '{name}')"
    message = f"{subject} {what}" + (f"; its inputs range over {', '.join(ranges)}" if ranges else "")
    loc = graph.loc(name)
    raise GraphError("non-finite", message, node=node, op=op, **loc.where(),
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
    """Run a graph: resolve the data, bind dims, execute the cached plan.

    A repeated call with arrays of the same names, shapes and dtypes takes the `Runner` made
    by the first such call: the data checks, dim binding and budget check depend only on
    those, so they are not done again.
    """
    plain = type(inputs) is dict and not random and dim_values is None and not check_numerics
    if plain:
        key = ("runner", outputs if outputs is None or type(outputs) is tuple else tuple(outputs), backend, seed)
        runner = graph.cache.get(key)
        if runner is not None:
            out = runner(inputs)
            if out is not None:
                return out
    from .feeds import materialized, resolve

    prog = program(graph, outputs, backend)
    values, bindings = resolve(graph, inputs, types=prog.types, free=free_dims(graph), random=random, seed=seed,
                               dim_values=dim_values, skip_scalar_constants=True, check=prog.check_budget)
    if check_numerics or not getattr(prog.compiled, "lazy_inputs", False):  # Zarr (or dask) data is read here, but for dask
        values = materialized(values)
    out = prog.run(values, bindings, check_numerics=check_numerics, budget_checked=True)
    if plain:
        graph.cache[key] = Runner.make(prog, inputs, values, bindings)
    return out


class Runner:
    """A Program bound to one signature of given data (names, shapes, dtypes of NumPy arrays).

    Calling it checks that the data still has that signature (the only work a repeated run
    does that is not the computation) and runs the plan; it returns None when the data
    differs, and the caller takes the full path (which checks everything and names errors).
    """

    def __init__(self, prog: Program, spec: tuple, base: list, values: dict, bindings: dict[str, int]) -> None:
        self.prog = prog
        self.spec = spec  # (name, position in the plan's arguments or -1, shape, dtype)
        self.base = base  # the plan's arguments: file values and param inits fixed, given data replaced
        self.values = values  # for compiled backends (a dict) and the careful rerun
        self.bindings = bindings
        self.limits = budget.limits_key()
        self.n_given = len(spec)
        interpreted = prog.compiled is None and prog._casts is not None
        self.fn = prog.plan_function(bindings) if interpreted else None
        self._grads: dict[tuple, object] = {}
        if self.fn is not None and not prog._fed_weak:  # the checks and the call as one generated function
            self.outputs = fastplan.caller(spec, base, self.fn, self.limits, budget.limits_key, self._rerun)

    @classmethod
    def make(cls, prog: Program, inputs: dict, values: dict, bindings: dict[str, int]) -> Runner | None:
        """A runner for data like `inputs`, or None when it is not plain arrays of the declared dtypes
        (lists, Python numbers and conversions take the full path every time)."""
        if not prog._const_names.isdisjoint(inputs):
            return None
        position = {n: k for k, n in enumerate(prog.fed_names)}
        spec = []
        for name, v in inputs.items():
            t = prog.graph.tensors.get(name)
            if type(v) is not np.ndarray or t is None or v.dtype != np.dtype(t.dtype) or values.get(name) is not v:
                return None
            spec.append((name, position.get(name, -1), v.shape, np.dtype(t.dtype)))
        base = [values.get(n) for n in prog.fed_names]
        return cls(prog, tuple(spec), base, values, bindings)

    def _rerun(self, inputs: dict) -> tuple:
        """After an error inside the generated plan: the careful loop, which names the node."""
        args = self.base.copy()
        for name, pos, _, _ in self.spec:
            if pos >= 0:
                args[pos] = inputs[name]
        return self.prog.run_plan(self.fn, args, lambda: {**self.values, **inputs}, self.bindings)

    def value_and_grad(self, grads: tuple[str, ...]):
        """`call(inputs) -> (float loss, {target: gradient}) or None` for a plan whose outputs
        are the loss and then the gradients of `grads` (api.value_and_grad's steady state)."""
        call = self._grads.get(grads)
        if call is None:
            if self.fn is not None and not self.prog._fed_weak:
                call = fastplan.caller(self.spec, self.base, self.fn, self.limits, budget.limits_key, self._rerun,
                                       grads)
            else:
                def call(inputs, outputs=self.outputs):
                    outs = outputs(inputs)
                    return None if outs is None else (float(outs[0]), dict(zip(grads, map(np.asarray, outs[1:]))))
            self._grads[grads] = call
        return call

    def __call__(self, inputs: dict) -> dict | None:
        outs = self.outputs(inputs)
        return None if outs is None else dict(zip(self.prog.outputs, map(np.asarray, outs)))

    def outputs(self, inputs: dict) -> tuple | list | None:
        """The outputs' values in the program's order (NumPy scalars where one number), or None."""
        if len(inputs) != self.n_given or budget.limits_key() != self.limits:
            return None
        args = self.base.copy()
        for name, pos, shape, dtype in self.spec:
            v = inputs.get(name)
            if v.__class__ is not np.ndarray or v.shape != shape or v.dtype is not dtype:  # `is`: NumPy's own
                return None
            if pos >= 0:
                args[pos] = v
        prog, fn = self.prog, self.fn
        if fn is None:
            given = getattr(prog.compiled, "run_given", None)  # numba: no merged dict, no constants check
            if given is not None:
                return given(self.values, inputs, self.bindings)
            out = prog.run({**self.values, **inputs}, self.bindings, budget_checked=True)
            return [out[o] for o in prog.outputs]
        if prog._fed_weak:
            return prog.run_plan(fn, args, lambda: {**self.values, **inputs}, self.bindings)
        token = hush()
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 - run_plan reruns the careful loop, which names the node
            pass
        finally:
            unhush(token)
        return prog.run_plan(fn, args, lambda: {**self.values, **inputs}, self.bindings)


def at_precision(graph: Graph, dtype: str) -> Graph:
    """The same graph with every float tensor, cast and one_hot at `dtype` (--dtype)."""
    from dataclasses import replace

    from .ir import TensorType

    def conv(d: str) -> str:
        return dtype if is_float(d) else d

    tensors = {}
    for n, t in graph.tensors.items():
        value = None
        if t.value is not None:
            value, why = fitted(n, t.value, conv(t.dtype))
            if why is not None:  # 1e300 in float32 would silently become inf
                raise GraphError("bad-value", f"the value does not fit {dtype} (--dtype): {why}",
                                 node=graph.owner(n), **graph.loc(n).where())
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


