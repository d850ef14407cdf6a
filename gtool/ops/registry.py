"""The op registry: one record per op holding every rule about it.

An `OpDef` keeps, together: the attrs (types, defaults), the shape/dtype rule, the NumPy
forward, the VJP and JVP rules (which *build graph nodes* through a builder, so autodiff
emits ordinary graphs), an interval rule for lint, and sample inputs for the registry-wide
tests. The executor, autodiff, rewrites and renderer know ops only through this table.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..dims import Dim, parse_dim, parse_index
from ..dtypes import DTYPES, FLOAT_DTYPES, INSTALL, have_ml_dtypes, is_int, is_storage
from ..ir import TensorType


class ShapeError(Exception):
    """Raised by a shape rule; inference adds the node, op and location."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class KernelError(Exception):
    """Raised by a forward kernel on bad data (e.g. a target out of range); the executor
    adds the node, op and location."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AttrError(ValueError):
    """An attr of the wrong type or value (code `bad-attr`)."""


@dataclass(frozen=True)
class Attr:
    """An attr's kind (see `check_attr`) and its default (used when absent or null)."""

    kind: str
    default: Any = None
    doc: str = ""
    required: bool = False


@dataclass
class OpDef:
    """Everything gtool knows about one op.

    infer(ctx, types, attrs) -> TensorType        the shape and dtype rule
    forward(*arrays, **kwargs) -> ndarray         NumPy reference kernel; kwargs from `prepare`
    vjp(b, node, g) -> list[str | None]           cotangent of each input, as graph nodes
    jvp(b, node, tangents) -> str | None          tangent of the output, as graph nodes
    interval(bounds, attrs, info) -> (lo, hi)     value bounds for lint (gtool/ops/bounds.py)
    samples(rng) -> list[(arrays, attrs)]         valid example inputs for the op tests
    domain: [(lo, hi)] per input                  where smooth random test inputs are drawn
    reference(*objects, **attrs) -> objects       the math in mpmath (gtool/ops/reference.py)
    edges: (Edge, ...)                            the edge-value table every backend runs
    explain: {"partial": (...), "vjp": (...)}     texts per input for `gtool explain`
    template                                      a composite's decomposition into primitives
                                                  (gtool/ops/templates.py): the NumPy forward
                                                  runs it, the numba backends lower it
    ulps                                          the NumPy forward's bound against `reference`
    on the edge table, in ULPs of the output dtype (float64; float32 gets the same bound).
    storage                                       True for ops that only move data (reshape,
    concat, ...) or convert it (cast): they accept the storage-only dtypes (gtool/dtypes.py),
    every other op refuses them at inference (`storage-only-dtype`).
    Built-in ops must have every piece (tests/test_records.py); plugins may leave the new
    ones out.
    `node` in the rules is an `ir.Node` whose inputs (and `node.name`, the output) are names
    in the builder `b`. A rule returns None for "no gradient flows here".
    """

    name: str
    arity: int | None  # None: variadic (at least one input)
    infer: Callable
    forward: Callable
    attrs: dict[str, Attr] = field(default_factory=dict)
    vjp: Callable | None = None
    jvp: Callable | None = None
    interval: Callable | None = None
    samples: Callable | None = None
    view: bool = False  # forward may return a view of an input: never donate its buffer
    ufunc: np.ufunc | None = None  # forward is this ufunc: the executor may pass out=
    group: str = ""
    doc: str = ""
    plugin: str | None = None  # module path for user-defined ops
    domain: list | None = None
    reference: Callable | None = None
    edges: tuple = ()
    explain: dict = field(default_factory=dict)
    ulps: float = 1.0
    template: Any = None  # an ops.templates.Template (composite ops only)
    storage: bool = False  # the op only moves or converts data: storage-only dtypes may pass through

    @property
    def differentiable(self) -> bool:
        return self.vjp is not None

    @property
    def dims_in_attrs(self) -> bool:
        """Whether some attr may hold dim names (evaluated per run, with the bindings)."""
        return any(a.kind in ("shape", "dim", "index") for a in self.attrs.values())

    def full_attrs(self, attrs: dict) -> dict:
        """attrs with defaults filled in (null means default)."""
        out = {k: a.default for k, a in self.attrs.items()}
        out.update({k: v for k, v in attrs.items() if v is not None})
        return out

    def prepare(self, attrs: dict, bindings: dict[str, int]) -> dict:
        """The forward's keyword arguments: defaults filled, dims evaluated to ints."""
        out = self.full_attrs(attrs)
        for k, spec in self.attrs.items():
            v = out[k]
            if spec.kind == "shape" and v is not None:
                out[k] = tuple(-1 if d == -1 else parse_dim(d).evaluate(bindings) for d in v)
            elif spec.kind == "dim" and v is not None:
                out[k] = parse_dim(v).evaluate(bindings)
            elif spec.kind == "index" and v is not None:
                out[k] = parse_index(v).evaluate(bindings)
            elif spec.kind == "axes" and isinstance(v, list):
                out[k] = tuple(v)
            elif spec.kind == "perm" and v is not None:
                out[k] = tuple(v)
            elif spec.kind == "ints" and isinstance(v, list):
                out[k] = tuple(v)
        return out


REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add an op (built-in or plugin). A plugin may not silently replace a built-in op."""
    if op.name in REGISTRY and REGISTRY[op.name].plugin is None and op.plugin is not None:
        raise ValueError(f"plugin op '{op.name}' would replace the built-in op of that name")
    REGISTRY[op.name] = op
    return op


def get_op(name: str) -> OpDef | None:
    return REGISTRY.get(name)


# attr checking ---------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_attr(op: str, name: str, spec: Attr, value: Any) -> Any:
    """Check one attr value against its kind; returns it (lists normalised). Raises AttrError."""
    if value is None:
        return None
    kind = spec.kind
    bad = AttrError(f"attr '{name}' of {op} must be {_KIND_TEXT.get(kind, kind)}, got {value!r}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
    elif kind == "int":
        if not _is_int(value):
            raise bad
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise bad
    elif kind == "axes":
        if not (_is_int(value) or (isinstance(value, list) and all(_is_int(v) for v in value))):
            raise bad
        if isinstance(value, list) and len(set(value)) != len(value):
            raise AttrError(f"attr '{name}' of {op} repeats an axis: {value}")
    elif kind == "perm":
        if not (isinstance(value, list) and all(_is_int(v) for v in value)):
            raise bad
    elif kind == "ints":
        if not (_is_int(value) or (isinstance(value, list) and all(_is_int(v) for v in value))):
            raise bad
    elif kind == "dtype":
        if value not in DTYPES:
            raise AttrError(f"attr '{name}' of {op} must be one of {', '.join(DTYPES)}, got {value!r}")
        if is_storage(value) and not have_ml_dtypes():
            raise AttrError(f"attr '{name}' of {op}: the dtype {value} needs the ml_dtypes package: {INSTALL}")
    elif kind == "shape":
        if not isinstance(value, list):
            raise bad
        for d in value:
            if d == -1 and not isinstance(d, bool):
                continue
            try:
                parse_dim(d)
            except ValueError as e:
                raise AttrError(f"attr '{name}' of {op}: {e}") from None
    elif kind in ("dim", "index"):
        try:
            (parse_dim if kind == "dim" else parse_index)(value)
        except ValueError as e:
            raise AttrError(f"attr '{name}' of {op}: {e}") from None
    elif kind.startswith("choice:"):
        choices = kind.split(":", 1)[1].split(",")
        if value not in choices:
            raise AttrError(f"attr '{name}' of {op} must be one of {', '.join(choices)}, got {value!r}")
    return value


_KIND_TEXT = {
    "bool": "true or false",
    "int": "an integer",
    "float": "a number",
    "axes": "an integer, a list of integers, or null",
    "perm": "a list of integers",
    "ints": "an integer or a list of integers",
    "shape": "a list of dims (ints, names or dim expressions; -1 once for reshape)",
    "dim": "a non-negative integer or a dim name",
    "index": "a non-negative integer or a dim expression",
}


# dtype rules -------------------------------------------------------------------------

def _kind_rank(dtype: str) -> int:
    """bool < ints < floats: the kind a weak scalar brings to a promotion."""
    return 0 if dtype == "bool" else 1 if is_int(dtype) else 2


def result_type(types: list[TensorType]) -> TensorType:
    """NumPy 2 promotion with weak scalars: weak values take the strong operands' dtype.

    Returns a weak type only when every operand is weak. Shapes are not touched (shape=()).
    Storage-only dtypes do not promote: equal ones stay, mixing one with anything else is a
    ShapeError (`storage-only-dtype`; data-moving ops such as concat and where get here).
    """
    return _result_type(tuple(t.dtype for t in types if not t.weak), tuple(t.dtype for t in types if t.weak))


@functools.lru_cache(maxsize=1024)
def _result_type(strong: tuple[str, ...], weak: tuple[str, ...]) -> TensorType:
    """result_type by dtype names (cached: NumPy's promotion is slow next to a shape rule)."""
    if any(is_storage(d) for d in strong + weak):
        if len(set(strong)) == 1 and not weak:
            return TensorType((), strong[0])
        raise ShapeError("storage-only-dtype", f"cannot combine {' and '.join(sorted(set(strong + weak)))}: "
                         "storage-only dtypes do not promote; cast them to a compute dtype (float32, ...) first")
    if not strong:
        return TensorType((), str(np.result_type(*[np.dtype(d) for d in weak])), weak=True)
    dt = str(np.result_type(*[np.dtype(d) for d in strong]))
    if weak:
        wk = max(weak, key=_kind_rank)
        if _kind_rank(wk) > _kind_rank(dt):
            dt = "float64" if _kind_rank(wk) == 2 else "int64"  # int tensor + 1.5, bool tensor + 2: NumPy 2
    return TensorType((), dt)


def is_float(t: TensorType) -> bool:
    """A float tensor gtool computes with (float64, float32, float16); not bfloat16 or float8."""
    return t.dtype in FLOAT_DTYPES


def dims(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


__all__ = [
    "Attr", "AttrError", "OpDef", "REGISTRY", "ShapeError", "check_attr", "dims", "get_op",
    "is_float", "register", "result_type", "Dim",
]
