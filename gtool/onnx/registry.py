"""The converter registry and the context converters build gtool nodes through.

A converter turns one ONNX node into gtool nodes. Converters live in the modules of
`gtool.onnx.convert` (found with pkgutil, so a new module adds ops without touching a shared
file) and register themselves with `@converter("OpType")`, optionally for a range of opset
versions and with the ONNX backend node tests they cannot pass (`skips`, each with its
reason), which the conformance test then skips instead of failing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..dims import Dim, format_shape
from ..errors import GraphError
from ..ir import Loc, Node, Tensor, TensorType
from ..ops.registry import AttrError, ShapeError, check_attr, get_op
from ..shapes import ShapeCtx, dim_attrs

if TYPE_CHECKING:
    from onnx import NodeProto as OnnxNode
else:
    OnnxNode = Any

__all__ = ["Converter", "ImportContext", "OnnxNode", "converter", "find_converter", "all_skips", "converted_ops"]


@dataclass(frozen=True)
class Converter:
    """One registered converter: op type, domain, the opsets it covers, its known skips."""

    op: str
    fn: Callable
    domain: str = ""
    since: int = 1
    until: int | None = None  # exclusive
    skips: dict[str, str] = field(default_factory=dict)
    static: tuple[int, ...] = ()  # input positions whose value must be known at load (shapes, axes)
    strict: bool = False  # refuse a node with an attribute the converter did not read (unless at its default)


_CONVERTERS: dict[tuple[str, str], list[Converter]] = {}
_DISCOVERED = False


def converter(op: str, *, domain: str = "", since: int = 1, until: int | None = None,
              skips: dict[str, str] | None = None, static: tuple[int, ...] = (), strict: bool = False) -> Callable:
    """Register `fn(ctx, node) -> [gtool name per ONNX output]` for `op` (opsets since..until-1).

    `static` lists the input positions whose value must be known at load (Reshape's shape,
    Slice's starts and ends, ...): gtool shapes are static. `ctx.static(node, k)` reads them
    with a clear error; the conformance test binds such inputs from the test data (docs/onnx.md).
    `strict`: a node carrying an attribute the converter never read (`ctx.attr`), at a value
    other than ONNX's default, is refused (`onnx-unsupported`): an attribute a newer opset
    adds is then never ignored silently."""

    def deco(fn: Callable) -> Callable:
        entry = Converter(op, fn, "" if domain == "ai.onnx" else domain, since, until, dict(skips or {}),
                          tuple(static), strict)
        _CONVERTERS.setdefault((entry.domain, op), []).append(entry)
        return fn

    return deco


def discover() -> None:
    """Import every module of gtool.onnx.convert once (each registers its converters)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    from . import convert

    for info in sorted(pkgutil.iter_modules(convert.__path__), key=lambda m: m.name):
        importlib.import_module(f"{convert.__name__}.{info.name}")
    _DISCOVERED = True


def find_converter(op: str, domain: str, opset: int) -> Converter | None:
    """The converter for `op` at `opset`: the one with the latest `since` that covers it."""
    discover()
    best = None
    for c in _CONVERTERS.get(("" if domain == "ai.onnx" else domain, op), ()):
        if c.since <= opset and (c.until is None or opset < c.until) and (best is None or c.since > best.since):
            best = c
    return best


def converted_ops(domain: str = "") -> set[str]:
    """The op types that have a converter (at some opset) in `domain`."""
    discover()
    return {op for (d, op) in _CONVERTERS if d == domain}


def all_skips() -> dict[str, str]:
    """Every node test some converter declares it cannot pass: test name -> reason."""
    discover()
    return {name: why for entries in _CONVERTERS.values() for c in entries for name, why in c.skips.items()}


class ImportContext:
    """What a converter sees: the model's opset, values known at load, and a graph being built.

    Names: ONNX value names are mapped to gtool names (`self.alias`); a converter asks for
    its inputs' gtool names with `inputs`, adds nodes with `add`, and returns the gtool name
    of each ONNX output. Nodes a converter adds get generated names `__<output>_<k>`; the
    importer then gives each returned node its ONNX output name.
    """

    def __init__(self, path: str, opset: int) -> None:
        self.path = path
        self.opset = opset
        self.tensors: dict[str, Tensor] = {}
        self.nodes: dict[str, Node] = {}
        self.types: dict[str, TensorType] = {}
        self.values: dict[str, Any] = {}  # ONNX name -> numpy value known at load (folded)
        self.alias: dict[str, str] = {}  # ONNX name -> gtool name
        self.shapes = ShapeCtx()
        self.index = -1  # the ONNX node being converted
        self.onnx_node: OnnxNode | None = None
        self.created: list[str] = []
        self.read: set[str] = set()  # attributes the current converter read
        self._counter = 0

    # where ------------------------------------------------------------------------------
    def where(self, node: OnnxNode | None = None) -> str:
        node = node or self.onnx_node
        if node is None:
            return ""
        return f"node {self.index} '{node.name or (node.output[0] if node.output else '')}' ({node.op_type})"

    def loc(self) -> Loc:
        return Loc(self.path, pointer=f"/graph/node/{self.index}" if self.index >= 0 else None)

    def error(self, code: str, message: str, node: OnnxNode | None = None, hint: str | None = None) -> GraphError:
        node = node or self.onnx_node
        where = self.where(node)
        return GraphError(code, f"{where}: {message}" if where else message, path=self.path,
                          pointer=self.loc().pointer, op=node.op_type if node is not None else None, hint=hint)

    def unsupported(self, node: OnnxNode | None, what: str) -> None:
        """Refuse what gtool cannot represent (never a wrong result): GraphError onnx-unsupported."""
        raise self.error("onnx-unsupported", what, node)

    # reading the ONNX node ------------------------------------------------------------------
    def attr(self, node: OnnxNode, name: str, default: Any = None) -> Any:
        """The Python value of an attribute (numpy array for a tensor), or `default`."""
        from onnx import helper, numpy_helper

        self.read.add(name)
        for a in node.attribute:
            if a.name == name:
                if a.ref_attr_name:
                    self.unsupported(node, f"attribute '{name}' refers to a function attribute")
                if a.type == a.TENSOR:
                    return numpy_helper.to_array(a.t)
                v = helper.get_attribute_value(a)
                if isinstance(v, bytes):
                    return v.decode("utf-8", "replace")
                if isinstance(v, list):
                    return [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
                return v
        return default

    def has_input(self, node: OnnxNode, k: int) -> bool:
        return k < len(node.input) and node.input[k] != ""

    def inputs(self, node: OnnxNode, n: int | None = None) -> list[str | None]:
        """The gtool names of the node's first `n` inputs (all when None); None where absent.

        A value known at load (a folded constant) becomes a constant tensor here."""
        n = len(node.input) if n is None else n
        if len(node.input) > n and any(i for i in node.input[n:]):
            self.unsupported(node, f"{len(node.input)} inputs given; gtool handles the first {n}")
        return [self.name(node.input[k]) if self.has_input(node, k) else None for k in range(n)]

    def name(self, onnx_name: str) -> str:
        """The gtool name of an ONNX value (a known value is materialised as a constant)."""
        if onnx_name in self.alias:
            return self.alias[onnx_name]
        if onnx_name in self.values:
            self.alias[onnx_name] = self._materialise(onnx_name, self.values[onnx_name])
            return self.alias[onnx_name]
        raise self.error("onnx-bad-model", f"input '{onnx_name}' is not produced by any earlier node, "
                         "initializer or graph input")

    def constant(self, onnx_name: str) -> Any:
        """The numpy value of an ONNX value if known at load (initializer, Constant, folded), else None.

        Shape tensors may hold gtool `Dim`s (dtype object) where the model has symbolic dims."""
        if onnx_name == "":
            return None
        return self.values.get(onnx_name)

    def static(self, node: OnnxNode, k: int, what: str, default: Any = None) -> Any:
        """The value of input k, which must be known at load (absent: `default`)."""
        if not self.has_input(node, k):
            return default
        value = self.constant(node.input[k])
        if value is None:
            self.unsupported(node, f"input {k} ('{node.input[k]}', {what}) is computed at run time; gtool "
                             "needs it known at load (an initializer or a Constant): gtool shapes are static")
        return value

    def type(self, name: str) -> TensorType | None:
        """The inferred type of a gtool name (or of an ONNX name mapped to one)."""
        t = self.types.get(name)
        if t is None and name in self.alias:
            t = self.types.get(self.alias[name])
        if t is not None and self.shapes.bindings:
            t = TensorType(self.shapes.resolve_shape(t.shape), t.dtype, t.weak)
        return t

    def shape(self, name: str) -> tuple[Dim, ...]:
        t = self.type(name)
        if t is None:
            raise self.error("onnx-bad-model", f"the type of '{name}' is unknown")
        return t.shape

    def static_shape(self, name: str) -> tuple[int, ...] | None:
        """The shape as ints when every dim is a number, else None."""
        shape = self.shape(name)
        return tuple(d.value for d in shape) if all(d.is_const for d in shape) else None

    # building --------------------------------------------------------------------------------
    def fresh(self) -> str:
        owner = (self.onnx_node.output[0] if self.onnx_node is not None and self.onnx_node.output else "onnx")
        while True:
            self._counter += 1
            name = f"__{owner}_{self._counter}"
            if name not in self.types:
                return name

    def const(self, array, dtype: str | None = None) -> str:
        """Add a constant tensor (strong: it has its dtype) and return its name."""
        import numpy as np

        value = np.asarray(array, dtype=dtype) if dtype is not None else np.asarray(array)
        return self._materialise(None, value)

    def _materialise(self, onnx_name: str | None, value) -> str:
        import numpy as np

        from .dtypes import gtool_dtype_of_numpy

        if value.dtype == object:  # a shape value with symbolic dims: computed from the inputs' sizes
            from .dimvalues import materialise_dims

            return materialise_dims(self, value)
        dtype = gtool_dtype_of_numpy(value.dtype, self)
        name = onnx_name if onnx_name is not None and onnx_name not in self.types else self.fresh()
        t = Tensor(name, "constant", TensorType(tuple(Dim.const(int(d)) for d in value.shape), dtype),
                   value=np.array(value, order="C"), loc=self.loc())
        self.tensors[name] = t
        self.types[name] = t.type
        return name

    def add(self, op: str, inputs: list[str], attrs: dict | None = None, node: OnnxNode | None = None) -> str:
        """Add a gtool node (type inferred now, so errors point at the ONNX node); returns its name."""
        node = node or self.onnx_node
        opdef = get_op(op)
        if opdef is None:
            raise self.error("onnx-unsupported", f"needs the gtool op '{op}', which is not available", node)
        attrs = {k: v for k, v in (attrs or {}).items() if v is not None}
        try:
            for k, v in attrs.items():
                if k not in opdef.attrs:
                    raise AttrError(f"{op} has no attr '{k}'")
                check_attr(op, k, opdef.attrs[k], v)
        except AttrError as e:
            raise self.error("onnx-unsupported", str(e), node) from None
        ins = []
        for i in inputs:
            if i is None or i not in self.types:
                raise self.error("onnx-bad-model", f"gtool op {op} reads '{i}', which is not defined", node)
            ins.append(self.type(i))
        name = self.fresh()
        try:
            full = dim_attrs(opdef, opdef.full_attrs(attrs), self.shapes, {})
            out = opdef.infer(self.shapes, ins, full)
        except ShapeError as e:
            shapes = ", ".join(format_shape(t.shape) + " " + t.dtype for t in ins)
            raise self.error(e.code, f"{e.message} (gtool op {op}, inputs: {shapes})", node) from None
        doc = f"ONNX {self.where(node)}" if node is not None else None
        self.nodes[name] = Node(name, op, tuple(inputs), attrs, doc=doc, loc=self.loc())
        self.types[name] = out
        self.created.append(name)
        return name

    # used by the importer ---------------------------------------------------------------------
    def begin(self, index: int, node: OnnxNode) -> None:
        self.index, self.onnx_node, self.created, self.read = index, node, [], set()

    def check_attributes(self, node: OnnxNode) -> None:
        """Refuse an attribute the converter did not read, unless it holds ONNX's default."""
        from onnx import defs, helper

        for a in node.attribute:
            if a.name in self.read:
                continue
            try:
                spec = defs.get_schema(node.op_type, self.opset, node.domain).attributes.get(a.name)
            except Exception:  # no schema (a custom domain): nothing to compare with
                spec = None
            default = spec.default_value if spec is not None else None
            if default is not None and default.type and helper.get_attribute_value(default) == \
                    helper.get_attribute_value(a):
                continue
            self.unsupported(node, f"attribute {a.name}={helper.get_attribute_value(a)!r} is not supported")

    def rename(self, old: str, new: str) -> None:
        """Give a node created for the current ONNX node its ONNX output name."""
        node = self.nodes.pop(old)
        self.nodes[new] = Node(new, node.op, node.inputs, node.attrs, doc=node.doc, loc=node.loc)
        self.types[new] = self.types.pop(old)
        for n in self.created:
            m = self.nodes.get(n)
            if m is not None and old in m.inputs:
                self.nodes[n] = Node(m.name, m.op, tuple(new if i == old else i for i in m.inputs), m.attrs,
                                     doc=m.doc, loc=m.loc)
        self.created = [new if n == old else n for n in self.created]
