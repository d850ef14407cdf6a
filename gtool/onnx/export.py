"""gtool Graph -> ONNX ModelProto at a fixed opset.

Each gtool node becomes one or more ONNX nodes through its export rule
(`gtool/onnx/export_ops.py`); the last one writes the value under the gtool node's name, so
names survive. Types come from gtool's shape inference: every value has one dtype in ONNX,
so weak scalars are written in the dtype they meet and mixed operands are cast where NumPy
would promote. Named dims become `dim_param`; a dim that an attr needs at run time
(`reshape(x, shape=[batch, -1])`) is read from the shape of a value that has it.

What ONNX has no field for (ranges, inits, docs of tensors, weak flags, the loss, the gtool
node behind each group of ONNX nodes) goes into `metadata_props` (`gtool/onnx/meta.py`), which
the importer's `restore` reads back.
"""

from __future__ import annotations

import numpy as np

from ..dims import Dim, FloorDiv
from ..errors import GraphError, UsageError
from ..ir import Graph, Node, TensorType

DEFAULT_OPSET = 18
MIN_OPSET = 13


def _onnx():
    try:
        import onnx
    except ModuleNotFoundError:
        raise UsageError("usage", "ONNX export needs the onnx package, which is not installed",
                         hint="pip install 'gtool[onnx]'") from None
    return onnx


def onnx_dtype(dtype: str) -> int:
    """The TensorProto element type of a gtool dtype (the importer's table, read backwards)."""
    from .dtypes import onnx_type

    return onnx_type(dtype)


class ExportError(GraphError):
    """A graph that cannot be written as ONNX (code `onnx-export`)."""


class Exporter:
    """The state of one export: ONNX nodes and initializers so far, names taken, value dtypes.

    Rules call `op` (add one ONNX node, get its output name), `cast`, `value` (an input in a
    dtype), `const`, `ints` and `shape` (an int64 1-D tensor of dims, computed at run time
    where a dim is symbolic).
    """

    def __init__(self, graph: Graph, types: dict[str, TensorType], opset: int) -> None:
        self.onnx = _onnx()
        self.graph, self.types, self.opset = graph, types, opset
        self.nodes: list = []
        self.inits: list = []
        self.taken: set[str] = set(graph.names())
        self.dtypes: dict[str, str] = {}  # ONNX value name -> gtool dtype name
        self.groups: dict[str, list] = {}  # gtool node -> the ONNX nodes its rule emitted
        self.current: Node | None = None
        self.local: dict = {}  # per-node memo (casts, retyped constants)
        self.dim_memo: dict[str, str] = {}
        self.const_memo: dict = {}

    # names ---------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """An unused value name `base__k` (valid as a gtool name: generated names of the form
        `__<owner>_<k>` stay generated)."""
        k = 0
        while True:
            name = f"{base}__{k}" if not base.startswith("__") else f"{base}_{k}"
            if name not in self.taken:
                self.taken.add(name)
                return name
            k += 1

    def _owner_base(self) -> str:
        return self.current.name if self.current is not None else "__c_onnx"

    # nodes ---------------------------------------------------------------------------
    def op(self, op_type: str, inputs: list[str], dtype: str, *, out: str | None = None, **attrs) -> str:
        """Add one ONNX node; returns its output's name (fresh unless `out`). `dtype` is the
        output's gtool dtype, tracked so later rules know what they read."""
        name = out or self.fresh(self._owner_base())
        node = self.onnx.helper.make_node(op_type, list(inputs), [name], name=name,
                                          **{k: v for k, v in attrs.items() if v is not None})
        self.nodes.append(node)
        if self.current is not None:
            self.groups.setdefault(self.current.name, []).append(node)
        self.dtypes[name] = dtype
        return name

    def dtype(self, name: str) -> str:
        return self.dtypes[name]

    def cast(self, name: str, dtype: str) -> str:
        """`name` as `dtype` (a Cast node, once per node and pair)."""
        if self.dtypes[name] == dtype:
            return name
        key = ("cast", name, dtype)
        if key not in self.local:
            self.local[key] = self.op("Cast", [name], dtype, to=onnx_dtype(dtype))
        return self.local[key]

    def value(self, name: str, dtype: str | None = None) -> str:
        """The gtool value `name` in `dtype` (default its own): a weak scalar constant is written
        directly in that dtype, anything else is cast."""
        t = self.graph.tensors.get(name)
        if t is not None and t.kind == "constant" and t.type.weak and name not in self.dtypes:
            want = dtype or t.dtype
            key = ("weak", name, want)
            if key not in self.const_memo:
                self.const_memo[key] = self.const(np.asarray(t.value).astype(want), base=name, reuse=False)
            return self.const_memo[key]
        return name if dtype is None else self.cast(name, dtype)

    def input_dtype(self, node: Node, k: int) -> str:
        return self.types[node.inputs[k]].dtype

    def out_type(self, node: Node) -> TensorType:
        return self.types[node.name]

    # constants -------------------------------------------------------------------------
    def const(self, array, dtype: str | None = None, *, base: str | None = None, reuse: bool = True) -> str:
        """An initializer holding `array` (in `dtype`); equal small constants are shared."""
        arr = np.asarray(array, dtype=dtype) if dtype else np.asarray(array)
        dt = str(arr.dtype)
        key = (dt, arr.shape, arr.tobytes()) if reuse and arr.size <= 16 else None
        if key is not None and key in self.const_memo:
            return self.const_memo[key]
        if base is not None and base not in self.dtypes and base not in self.graph.nodes:
            name = base  # a weak scalar constant keeps its own name where it is first written
        else:
            name = self.fresh(base or "__c_onnx")
        self.taken.add(name)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        self.dtypes[name] = dt
        if key is not None:
            self.const_memo[key] = name
        return name

    def scalar(self, value, dtype: str) -> str:
        return self.const(np.asarray(value, dtype=dtype))

    def ints(self, values) -> str:
        return self.const(np.asarray(list(values), dtype=np.int64))

    # dims at run time --------------------------------------------------------------------
    def dim(self, d: Dim) -> str:
        """An int64 [1] tensor holding dim `d`, computed from the shapes of values at run time."""
        if d.is_const:
            return self.ints([d.value])
        total = None
        for monomial, coeff in d.terms:
            term = self.ints([coeff]) if coeff != 1 or not monomial else None
            for f in monomial:
                v = self._symbol(f) if isinstance(f, str) else self._floordiv(f)
                term = v if term is None else self.op("Mul", [term, v], "int64")
            total = term if total is None else self.op("Add", [total, term], "int64")
        return total

    def _floordiv(self, f: FloorDiv) -> str:
        return self.op("Div", [self.dim(f.num), self.ints([f.den])], "int64")  # dims >= 0: trunc = floor

    def _symbol(self, name: str) -> str:
        if name in self.dim_memo:
            return self.dim_memo[name]
        source = self._dim_source(name)
        if source is None:
            where = f" (needed by node '{self.current.name}')" if self.current else ""
            raise ExportError("onnx-export", f"dim '{name}' is not the size of any axis of an input or an earlier "
                              f"value, so ONNX cannot compute it at run time{where}",
                              node=self.current.name if self.current else None,
                              hint="give an input with that dim, or bind it with --dim")
        value, axis, coeff, offset = source
        saved, self.current = self.current, None  # shared by every later node: no owner
        if self.opset >= 15:
            out = self.op("Shape", [value], "int64", start=axis, end=axis + 1)
        else:
            whole = self.op("Shape", [value], "int64")
            out = self.op("Slice", [whole, self.ints([axis]), self.ints([axis + 1])], "int64")
        if offset:
            out = self.op("Sub", [out, self.ints([offset])], "int64")
        if coeff != 1:
            out = self.op("Div", [out, self.ints([coeff])], "int64")
        self.current = saved
        self.dim_memo[name] = out
        return out

    def _dim_source(self, name: str) -> tuple[str, int, int, int] | None:
        """(value, axis, c, k) with that axis's size c * name + k (c > 0): the first value written
        so far whose shape has `name` alone on an axis, else one where it appears linearly."""
        sym = Dim.sym(name)
        linear = None
        for candidates in (self.graph.tensors, self.graph.nodes):
            for v in candidates:
                if v not in self.dtypes:
                    continue  # not written yet (or a weak constant)
                for axis, d in enumerate(self.types[v].shape):
                    if d == sym:
                        return v, axis, 1, 0
                    c = d.linear_coeff(name) if linear is None and d.symbols() == {name} else None
                    if c is not None and c > 0 and (d - sym * c).is_const:
                        linear = (v, axis, c, (d - sym * c).value)
        return linear

    def shape(self, dims) -> str:
        """An int64 1-D tensor of `dims` (ints or Dims; -1 kept as reshape's -1)."""
        dims = [d if isinstance(d, Dim) else Dim.const(d) for d in dims]
        if all(d.is_const for d in dims):
            return self.ints([d.value for d in dims])
        parts, run = [], []
        for d in dims:
            if d.is_const:
                run.append(d.value)
                continue
            if run:
                parts.append(self.ints(run))
                run = []
            parts.append(self.dim(d))
        if run:
            parts.append(self.ints(run))
        return self.op("Concat", parts, "int64", axis=0)

    def axes_input_or_attr(self, reduce_op: str) -> bool:
        """Whether `reduce_op` takes its axes as an input at this opset (else an attribute)."""
        return reduce_op == "ReduceSum" or self.opset >= 18


def export_model(graph: Graph, *, opset: int = DEFAULT_OPSET, params: dict | None = None, seed: int = 0,
                 dims: dict[str, int] | None = None):
    """The ONNX model of `graph`: inputs -> graph inputs (an inline value as the initializer
    of the same name, which ONNX treats as a default), params -> initializers (their value,
    else `params[name]`, else drawn from `init` with `seed` as `gtool run` draws it), constants
    -> initializers, outputs -> graph outputs; gtool metadata for the way back."""
    onnx = _onnx()
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise UsageError("usage", f"--opset must be between {MIN_OPSET} and {onnx.defs.onnx_opset_version()}, "
                         f"got {opset}")
    from ..validate import types_of
    from . import export_ops, meta

    types = types_of(graph)
    x = Exporter(graph, types, opset)
    unknown = [n for n in (params or {}) if graph.tensors.get(n) is None or graph.tensors[n].kind != "param"]
    if unknown:
        raise UsageError("unknown-name", f"values given for {', '.join(map(repr, unknown))}, which "
                         f"{'is not a param' if len(unknown) == 1 else 'are not params'} of the graph")
    inputs = _write_tensors(x, graph, params or {}, seed, dims or {})
    for node in graph.nodes.values():
        x.current, x.local = node, {}
        rule = export_ops.RULES.get(node.op)
        if rule is None:
            raise ExportError("onnx-export", f"op '{node.op}' has no ONNX export rule", node=node.name, op=node.op,
                              **node.loc.where())
        _finish(x, node, rule(x, node))
    x.current = None
    outputs, renamed = _outputs(x, graph)
    g = onnx.helper.make_graph(x.nodes, graph.name or "gtool", inputs, outputs, initializer=x.inits,
                               doc_string=graph.doc or None)
    ops = [onnx.helper.make_opsetid("", opset)]
    from .. import __version__

    model = onnx.helper.make_model(g, opset_imports=ops, producer_name="gtool", producer_version=__version__,
                                   ir_version=onnx.helper.find_min_ir_version_for(ops))
    model.ir_version = max(model.ir_version, 8)
    meta.write(model, graph, x, renamed)
    return model


def _finish(x: Exporter, node: Node, result: str) -> None:
    """Give the rule's result the gtool node's name: rename the node that made it when it is
    this rule's own and nothing else of the rule reads it, else an Identity."""
    group = x.groups.get(node.name, [])
    maker = next((n for n in group if result in n.output), None)
    read = any(result in n.input for n in group)
    want = x.out_type(node).dtype
    if maker is not None and not read and x.dtypes[result] == want:
        maker.output[list(maker.output).index(result)] = node.name
        maker.name = node.name
        x.dtypes[node.name] = want
    else:
        x.op("Identity", [x.cast(result, want)], want, out=node.name)
    if node.doc:
        x.groups[node.name][-1].doc_string = node.doc


def _param_value(t, given: dict, seed: int, dims: dict[str, int]) -> np.ndarray:
    """A param's value: given, else its own, else drawn from its init (as `gtool run` draws it)."""
    from ..feeds import _as_array, _init

    if t.name in given:
        arr = _as_array(t.name, given[t.name], t)
        want = [d.evaluate(dims) if not d.symbols() - dims.keys() else None for d in t.shape]
        if arr.ndim != len(want) or any(w is not None and w != n for w, n in zip(want, arr.shape)):
            from ..dims import format_shape

            raise UsageError("bad-input", f"the value given for param '{t.name}' has shape {list(arr.shape)}, but "
                             f"'{t.name}' is declared {format_shape(t.shape)}", node=t.name)
        return arr
    if t.value is not None:
        return np.asarray(t.value, dtype=t.dtype)
    try:
        shape = tuple(d.evaluate(dims) for d in t.shape)
    except KeyError as e:
        raise ExportError("onnx-export", f"param '{t.name}' has no value and its shape uses dim {e}, which has "
                          "no size: ONNX stores param values", node=t.name, **t.loc.where(),
                          hint="declare the dim with a default under dims:, bind it with --dim, or give the "
                          "param's value") from None
    return _init(t, shape, seed)


def _write_tensors(x: Exporter, graph: Graph, given: dict, seed: int, dims: dict[str, int]) -> list:
    """Graph inputs (value infos) and initializers for every input, param and strong constant."""
    onnx = x.onnx
    dims = {**graph.dims, **dims}
    inputs = []
    for name, t in graph.tensors.items():
        if t.kind == "constant" and t.type.weak:
            continue  # written where used, in the dtype it meets
        x.dtypes[name] = t.dtype
        if t.kind == "input":
            inputs.append(onnx.helper.make_tensor_value_info(name, onnx_dtype(t.dtype), value_shape(t.shape)))
            if t.value is not None:
                x.inits.append(onnx.numpy_helper.from_array(np.asarray(t.value, dtype=t.dtype), name))
        elif t.kind == "param":
            x.inits.append(onnx.numpy_helper.from_array(_param_value(t, given, seed, dims), name))
        else:
            x.inits.append(onnx.numpy_helper.from_array(np.asarray(t.value, dtype=t.dtype), name))
    return inputs


def value_shape(shape) -> list:
    """ONNX dims: ints, a dim name as `dim_param`, an expression as an unknown dim."""
    out = []
    for d in shape:
        if d.is_const:
            out.append(d.value)
        elif len(d.terms) == 1 and d.terms[0][1] == 1 and len(d.terms[0][0]) == 1 \
                and isinstance(d.terms[0][0][0], str):
            out.append(d.terms[0][0][0])
        else:
            out.append(None)
    return out


def _outputs(x: Exporter, graph: Graph) -> tuple[list, dict[str, str]]:
    """Graph outputs. An output that is not a node's value (an input, a constant) or that is
    listed twice goes through an Identity named `<name>__output...` (renamed back on import)."""
    onnx = x.onnx
    outs, renamed, seen = [], {}, set()
    produced = {o for n in x.nodes for o in n.output}
    for name in graph.outputs:
        t = x.types[name]
        value = name
        if name not in produced or name in seen:
            src = x.value(name)
            value = x.fresh(f"{name}__output")
            x.op("Identity", [src], x.dtypes[src], out=value)
            renamed[value] = name
        seen.add(name)
        outs.append(onnx.helper.make_tensor_value_info(value, onnx_dtype(x.dtypes[value]), value_shape(t.shape)))
    return outs, renamed


def save_model(model, path: str) -> None:
    """Write a model atomically (gtool's writer: a reader never sees half a file)."""
    from ..format.write import write_atomic

    write_atomic(path, model.SerializeToString())
