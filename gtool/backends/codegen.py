"""Lowering a compiled plan for the numba backends: micro-ops, fusion groups, scalar templates.

A `Program`'s steps are lowered to *micro-ops* (`MNode`): elementwise ops keep their registry
name and get a scalar template here; composite ops (logsumexp, softmax, log_softmax,
cross_entropy) expand into the same max / exp / sum steps as their NumPy forwards, so the
fused code does what the reference does, in the same order; view ops become index maps or
array ops; whatever has no lowering runs its NumPy forward beside the compiled code.

`fuse` then groups micro-ops into loop nests: every elementwise op of one output shape joins
one open group (one loop, values in registers, no temporaries), reductions over that shape
join as accumulators, and a value is written to memory only when something outside its group
reads it. The CPU (`numba_cpu`) and CUDA (`numba_cuda`) emitters turn the same plan into code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..dims import Dim, parse_index
from ..ir import TensorType
from ..ops.registry import get_op, result_type

CHUNK = 100_000  # members per fused loop (see docs/backends.md on compile time)


# static types --------------------------------------------------------------------------


@dataclass(frozen=True)
class V(TensorType):
    """A value's static type (an `ir.TensorType`, dims resolved), with what the emitters ask of it."""

    @cached_property
    def scalar(self) -> bool:
        """Every dim is the constant 1: the value is one number (kept in a scalar variable)."""
        return all(is_one(d) for d in self.shape)


def is_one(d: Dim) -> bool:
    return d.is_const and d.value == 1


@dataclass
class MNode:
    """One micro-op. `inputs` are data inputs (value names); `node` names the graph node."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict
    v: V
    node: str


# scalar templates: op -> code for one element -------------------------------------------
# Each takes operand code (already converted to the op's compute dtype) and returns an
# expression. They follow the NumPy forwards in gtool/ops (same branches, same order of
# operations); `helpers` are small functions the emitters define once per module.

HELPERS = {
    "_sigmoid": """def _sigmoid(x):
    t = math.exp(-x)
    if t == math.inf:
        e = math.exp(x)
        return e / (1.0 + e)
    return 1.0 / (1.0 + t)
""",
    "_softplus": """def _softplus(x):
    if x == 0.0:
        return 0.6931471805599453
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    if x < 0.0:
        return math.log1p(math.exp(x))
    return x
""",
}


def _fsign(x: str) -> str:
    return f"(1.0 if {x} > 0 else (-1.0 if {x} < 0 else {x}))"


TEMPLATES = {
    "neg": lambda x: f"(-{x})",
    "exp": lambda x: f"math.exp({x})",
    "log": lambda x: f"math.log({x})",
    "log1p": lambda x: f"math.log1p({x})",
    "expm1": lambda x: f"math.expm1({x})",
    "sqrt": lambda x: f"math.sqrt({x})",
    "square": lambda x: f"({x} * {x})",
    "abs": lambda x: f"abs({x})",
    "sin": lambda x: f"math.sin({x})",
    "cos": lambda x: f"math.cos({x})",
    "tanh": lambda x: f"math.tanh({x})",
    "sigmoid": lambda x: f"_sigmoid({x})",  # as the NumPy forward: e^x / (1 + e^x) where e^-x overflows
    "softplus": lambda x: f"_softplus({x})",
    "relu": lambda x: f"({x} if ({x} >= 0 or {x} != {x}) else 0)",
    "finite_or_zero": lambda x: f"({x} if math.isfinite({x}) else 0.0)",
    # the pieces of gtool.ops.reduce.log_sum_exp_parts (logsumexp, log_softmax, cross_entropy)
    "is_top": lambda x, mx: f"(1.0 if {x} == {mx} else 0.0)",
    "drop_top": lambda x, mx, e: f"(0.0 if {x} == {mx} else {e})",
    "lse_tail": lambda mx, rest, n, total: f"(math.log1p({rest} + ({n} - 1.0)) if math.isfinite({mx}) else math.log({total}))",
    "add": lambda x, y: f"({x} + {y})",
    "sub": lambda x, y: f"({x} - {y})",
    "mul": lambda x, y: f"({x} * {y})",
    "div": lambda x, y: f"({x} / {y})",
    "pow": lambda x, y: f"({x} ** {y})",
    "maximum": lambda x, y: f"({x} if ({x} >= {y} or {x} != {x}) else {y})",
    "minimum": lambda x, y: f"({x} if ({x} <= {y} or {x} != {x}) else {y})",
    "greater": lambda x, y: f"({x} > {y})",
    "less": lambda x, y: f"({x} < {y})",
    "equal": lambda x, y: f"({x} == {y})",
    "where": lambda c, x, y: f"({x} if {c} else {y})",
}
FLOAT_ONLY = {"exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sigmoid", "softplus", "div", "pow",
              "finite_or_zero", "is_top", "drop_top", "lse_tail"}
BOOL_OK = {"greater", "less", "equal", "where", "maximum", "minimum"}
COMPARE = {"greater", "less", "equal"}
# ops that read their inputs elementwise (with broadcasting) inside a fused loop
FUSED = set(TEMPLATES) | {"sign", "bcast", "cast", "one_hot", "gather", "permute", "slice", "size"}


def sign_template(x: str, dtype: str) -> str:
    if dtype.startswith("float"):
        return _fsign(x)
    return f"(1 if {x} > 0 else (-1 if {x} < 0 else 0))"


def convert(code: str, src: str, dst: str) -> str:
    """Code converting a scalar of dtype `src` to `dst` (as NumPy's astype does)."""
    if src == dst:
        return code
    if dst == "bool":
        return f"({code} != 0)"
    return f"np.{dst}({code})"


def compute_dtype(m: MNode, types: dict[str, V]) -> str:
    """The dtype an elementwise op computes in: its inputs are converted to it first."""
    if m.op in COMPARE:
        return _result([types[i] for i in m.inputs])
    return m.v.dtype


def _result(vs: list[V]) -> str:
    return result_type(vs).dtype


# lowering: graph nodes -> micro-ops --------------------------------------------------------


class Lowering:
    """Builds the micro-op list for one Program (see module docstring)."""

    def __init__(self, program, blas: bool, matmul_ok=None) -> None:
        self.program = program
        self.graph = program.graph
        inf = self.graph.cache.get("inference")
        self.resolve = inf.ctx.resolve_shape if inf is not None else (lambda s: tuple(s))
        self.types: dict[str, V] = {}
        for name in program.tensor_names:
            t = program.types[name]
            self.types[name] = V(self.resolve(t.shape), t.dtype, t.weak)
        self.nodes: list[MNode] = []
        self.blas = blas
        self.matmul_ok = matmul_ok
        self._k = 0

    def v(self, name: str) -> V:
        return self.types[name]

    def emit(self, name, op, inputs, v: V, node: str, **attrs) -> str:
        self.types[name] = v
        self.nodes.append(MNode(name, op, tuple(inputs), attrs, v, node))
        return name

    def tmp(self, node: str, op, inputs, v: V, **attrs) -> str:
        self._k += 1
        return self.emit(f"{node}#{self._k}", op, inputs, v, node, **attrs)

    def run(self) -> list[MNode]:
        for step in self.program.steps:
            node = self.graph.nodes[step.node]
            t = self.program.types[node.name]
            out = V(self.resolve(t.shape), t.dtype, t.weak)
            fn = getattr(self, "lower_" + node.op, None) if get_op(node.op).plugin is None else None
            attrs = get_op(node.op).full_attrs(node.attrs)
            done = fn(node, attrs, out) if fn is not None else False
            if not done and (node.op in TEMPLATES or node.op == "sign"):
                done = self.lower_elementwise(node, attrs, out)
            if not done:
                self.emit(node.name, "fallback", node.inputs, out, node.name)
        return fold_transposes(self.nodes, self.program.outputs)

    # elementwise ----------------------------------------------------------------------------
    def lower_elementwise(self, node, attrs, out: V) -> bool:
        m = MNode(node.name, node.op, tuple(node.inputs), {}, out, node.name)
        dt = compute_dtype(m, self.types)
        if dt == "bool" and node.op not in BOOL_OK:
            return False
        if node.op in FLOAT_ONLY and not dt.startswith("float"):
            return False
        if node.op == "where" and self.v(node.inputs[0]).dtype != "bool":
            return False
        self.emit(node.name, node.op, node.inputs, out, node.name)
        return True

    def lower_identity(self, node, attrs, out):
        return self.emit(node.name, "bcast", node.inputs, out, node.name)

    lower_stop_gradient = lower_identity
    lower_broadcast_to = lower_identity

    def lower_cast(self, node, attrs, out):
        src = self.v(node.inputs[0]).dtype
        op = "bcast" if src == out.dtype else "cast"
        return self.emit(node.name, op, node.inputs, out, node.name)

    # reductions -----------------------------------------------------------------------------
    def _axes(self, axis, rank) -> tuple[int, ...]:
        if axis is None:
            return tuple(range(rank))
        return tuple(sorted({a % rank for a in ([axis] if isinstance(axis, int) else axis)}))

    def _kept(self, shape, axes) -> tuple[Dim, ...]:
        return tuple(Dim.const(1) if k in axes else d for k, d in enumerate(shape))

    def reduce(self, node: str, name: str | None, kind: str, x: str, axes, out: V) -> str:
        if name is None:
            return self.tmp(node, "reduce", [x], out, kind=kind, axes=axes)
        return self.emit(name, "reduce", [x], out, node, kind=kind, axes=axes)

    def lower_sum(self, node, attrs, out, kind="sum"):
        x = self.v(node.inputs[0])
        if kind in ("max", "min") and not x.dtype.startswith(("float", "int")):
            return False
        return self.reduce(node.name, node.name, kind, node.inputs[0], self._axes(attrs["axis"], x.rank), out)

    def lower_mean(self, node, attrs, out):
        return self.lower_sum(node, attrs, out, "mean")

    def lower_max(self, node, attrs, out):
        return self.lower_sum(node, attrs, out, "max")

    def lower_min(self, node, attrs, out):
        return self.lower_sum(node, attrs, out, "min")

    def lower_sum_to(self, node, attrs, out):
        x, like = self.v(node.inputs[0]), self.v(node.inputs[1])
        lead = x.rank - like.rank
        axes = tuple(range(lead)) + tuple(k + lead for k, d in enumerate(like.shape)
                                          if is_one(d) and not is_one(x.shape[k + lead]))
        if not axes:
            return self.emit(node.name, "reshape", [node.inputs[0]], out, node.name)
        return self.reduce(node.name, node.name, "sum", node.inputs[0], axes, out)

    def _named(self, node: str, name: str | None, op: str, inputs, v: V, **attrs) -> str:
        return self.emit(name, op, inputs, v, node, **attrs) if name else self.tmp(node, op, inputs, v, **attrs)

    def lse_parts(self, node: str, x: str, axes) -> tuple[str, str, str]:
        """(m, l, x - m) of gtool.ops.reduce.log_sum_exp_parts, step for step (see its
        docstring): m and l shaped like x with the axes kept as size 1."""
        xv = self.v(x)
        full = V(xv.shape, xv.dtype)
        kv = V(self._kept(xv.shape, axes), xv.dtype)
        mx = self.reduce(node, None, "max", x, axes, kv)
        m = self.tmp(node, "finite_or_zero", [mx], kv)
        d = self.tmp(node, "sub", [x, m], full)
        e = self.tmp(node, "exp", [d], full)
        rest = self.reduce(node, None, "sum", self.tmp(node, "drop_top", [x, mx, e], full), axes, kv)
        n = self.reduce(node, None, "sum", self.tmp(node, "is_top", [x, mx], full), axes, kv)
        total = self.reduce(node, None, "sum", e, axes, kv)
        return m, self.tmp(node, "lse_tail", [mx, rest, n, total], kv), d

    def lower_logsumexp(self, node, attrs, out):
        x = self.v(node.inputs[0])
        if not x.dtype.startswith("float"):
            return False
        m, lse_rest, _ = self.lse_parts(node.name, node.inputs[0], self._axes(attrs["axis"], x.rank))
        if attrs["keepdims"]:
            return self.emit(node.name, "add", [lse_rest, m], out, node.name)
        return self.emit(node.name, "reshape", [self.tmp(node.name, "add", [lse_rest, m], self.v(m))], out, node.name)

    def lower_softmax(self, node, attrs, out):
        x = self.v(node.inputs[0])
        if not x.dtype.startswith("float"):
            return False
        axes = (attrs["axis"] % x.rank,)
        kv = V(self._kept(x.shape, axes), x.dtype)
        m = self.tmp(node.name, "finite_or_zero", [self.reduce(node.name, None, "max", node.inputs[0], axes, kv)], kv)
        e = self.tmp(node.name, "exp", [self.tmp(node.name, "sub", [node.inputs[0], m], out)], out)
        s = self.reduce(node.name, None, "sum", e, axes, kv)
        return self.emit(node.name, "div", [e, s], out, node.name)

    def lower_log_softmax(self, node, attrs, out):
        """(x - m) - l, never x - (m + l) (see log_sum_exp_parts)."""
        x = self.v(node.inputs[0])
        if not x.dtype.startswith("float"):
            return False
        _, lse_rest, d = self.lse_parts(node.name, node.inputs[0], (attrs["axis"] % x.rank,))
        return self.emit(node.name, "sub", [d, lse_rest], out, node.name)

    def lower_cross_entropy(self, node, attrs, out):
        """l - (x[target] - m) per row: the NumPy forward's -((x - m) - l)[target]."""
        logits, t = node.inputs
        lv = self.v(logits)
        rows = V(lv.shape[:-1], lv.dtype)
        m, lse_rest, _ = self.lse_parts(node.name, logits, (lv.rank - 1,))
        picked = self.tmp(node.name, "gather", [logits, t], rows, axis=lv.rank - 1, drop=True, negative=False)
        shifted = self.tmp(node.name, "sub", [picked, self.tmp(node.name, "reshape", [m], rows)], rows)
        l_rows = self.tmp(node.name, "reshape", [lse_rest], rows)
        if attrs["reduction"] == "none":
            return self.emit(node.name, "sub", [l_rows, shifted], out, node.name)
        loss = self.tmp(node.name, "sub", [l_rows, shifted], rows)
        return self.reduce(node.name, node.name, attrs["reduction"], loss, tuple(range(rows.rank)), out)

    # indexing ---------------------------------------------------------------------------------
    def lower_one_hot(self, node, attrs, out):
        return self.emit(node.name, "one_hot", node.inputs, out, node.name)

    def lower_take_along_axis(self, node, attrs, out):
        x = self.v(node.inputs[0])
        return self.emit(node.name, "gather", node.inputs, out, node.name, axis=attrs["axis"] % x.rank, drop=False,
                         negative=True)

    # shape ops --------------------------------------------------------------------------------
    def lower_transpose(self, node, attrs, out):
        x = self.v(node.inputs[0])
        perm = attrs["perm"]
        perm = tuple(a % x.rank for a in perm) if perm is not None else tuple(reversed(range(x.rank)))
        if perm == tuple(range(x.rank)):
            return self.emit(node.name, "bcast", node.inputs, out, node.name)
        return self.emit(node.name, "permute", node.inputs, out, node.name, perm=perm)

    def lower_reshape(self, node, attrs, out):
        return self.emit(node.name, "reshape", node.inputs, out, node.name)

    lower_expand_dims = lower_reshape
    lower_squeeze = lower_reshape

    def lower_slice(self, node, attrs, out):
        x = self.v(node.inputs[0])
        return self.emit(node.name, "slice", node.inputs, out, node.name, axis=attrs["axis"] % x.rank,
                         start=parse_index(attrs["start"]))

    def lower_concat(self, node, attrs, out):
        if any(self.v(i).dtype != out.dtype for i in node.inputs):
            return False
        return self.emit(node.name, "concat", node.inputs, out, node.name, axis=attrs["axis"] % out.rank)

    def lower_size(self, node, attrs, out):
        x = self.v(node.inputs[0])
        axes = self._axes(attrs["axis"], x.rank)
        return self.emit(node.name, "size", (), out, node.name, dims=tuple(x.shape[a] for a in axes))

    def lower_matmul(self, node, attrs, out):
        a, b = self.v(node.inputs[0]), self.v(node.inputs[1])
        if self.matmul_ok is not None and not self.matmul_ok(a, b, out):
            return False
        return self.emit(node.name, "matmul", node.inputs, out, node.name, ta=False, tb=False)


def fold_transposes(nodes: list[MNode], outputs) -> list[MNode]:
    """matmul(transpose(a)) -> matmul(a, ta=True) for 2-D swaps, then drop what nothing reads."""
    by_name = {m.name: m for m in nodes}
    for m in nodes:
        if m.op != "matmul":
            continue
        for pos, flag in ((0, "ta"), (1, "tb")):
            src = by_name.get(m.inputs[pos])
            if src is not None and src.op == "permute" and src.attrs["perm"] == (1, 0):
                ins = list(m.inputs)
                ins[pos] = src.inputs[0]
                m.inputs = tuple(ins)
                m.attrs = {**m.attrs, flag: True}
    used = set(outputs)
    keep = []
    for m in reversed(nodes):
        if m.name in used or m.op == "fallback":
            keep.append(m)
            used.update(m.inputs)
    return list(reversed(keep))


# fusion: micro-ops -> groups and array ops -------------------------------------------------------


@dataclass
class Group:
    """One loop nest over `shape` (() for straight-line scalar code)."""

    shape: tuple[Dim, ...]
    members: list[MNode] = field(default_factory=list)
    stored: set[str] = field(default_factory=set)  # members written to memory (read outside the group)
    closed: bool = False

    @property
    def reductions(self) -> list[MNode]:
        return [m for m in self.members if m.op == "reduce"]


@dataclass
class Single:
    """A micro-op emitted on its own: an array op (matmul, reshape, concat) or a NumPy fallback."""

    m: MNode


def iter_shape(m: MNode, types: dict[str, V]) -> tuple[Dim, ...]:
    """The loop shape a fused micro-op runs over: its output's, or a reduction's input's."""
    v = types[m.inputs[0]] if m.op == "reduce" else m.v
    return () if v.scalar else v.shape


def data_inputs(m: MNode) -> tuple[str, ...]:
    return m.inputs


def fuse(nodes: list[MNode], types: dict[str, V], outputs, *, reductions_in_loops: bool = True,
         chunk: int = CHUNK) -> list:
    """Group micro-ops into loops (see the module docstring); returns items in run order."""
    items: list = []
    open_groups: dict[tuple, Group] = {}
    owner: dict[str, Group] = {}  # value -> open group holding it (member or reduction result)
    users: dict[str, set[str]] = {}
    for m in nodes:
        for i in m.inputs:
            users.setdefault(i, set()).add(m.name)
    outs = set(outputs)

    def close(g: Group) -> None:
        if g.closed:
            return
        g.closed = True
        names = {m.name for m in g.members}
        for m in g.members:
            if m.op == "reduce" or m.name in outs or any(u not in names for u in users.get(m.name, ())):
                g.stored.add(m.name)
        for m in g.members:
            owner.pop(m.name, None)
        del open_groups[g.shape]
        items.append(g)

    def close_owners(m: MNode, keep: Group | None) -> None:
        for i in data_inputs(m):
            g = owner.get(i)
            if g is not None and g is not keep:
                close(g)

    for m in nodes:
        fusable = m.op in FUSED or (m.op == "reduce" and (reductions_in_loops or types[m.inputs[0]].scalar))
        if m.op in ("bcast", "reshape", "permute", "slice") and types[m.inputs[0]].scalar:
            fusable = True  # a view of one number is that number
        if m.op == "bcast" and not types[m.inputs[0]].scalar and types[m.inputs[0]].shape == m.v.shape \
                and m.inputs[0] not in owner:
            fusable = False  # identity of a value already in memory: the same array
            m = MNode(m.name, "alias", m.inputs, m.attrs, m.v, m.node)
        if not fusable:
            close_owners(m, None)
            items.append(Single(m))
            continue
        shape = iter_shape(m, types)
        g = open_groups.get(shape)
        if g is not None:
            for i in data_inputs(m):
                # a value of this loop can be read only at the loop's own index, as computed
                same_index = owner.get(i) is g and _reads_in_place(m, i, types) and \
                    not any(r.name == i for r in g.reductions)
                if owner.get(i) is g and not same_index:
                    close(g)
                    break
            if not g.closed and len(g.members) >= chunk:
                close(g)
        close_owners(m, open_groups.get(shape))
        g = open_groups.get(shape)
        if g is None:
            g = open_groups[shape] = Group(shape)
        g.members.append(m)
        owner[m.name] = g
    for g in list(open_groups.values()):
        close(g)
    return items


def _reads_in_place(m: MNode, value: str, types: dict[str, V]) -> bool:
    """Whether `m` reads `value` at the loop index itself (so a register can feed it)."""
    if m.op in ("permute", "slice", "one_hot"):
        return False
    if m.op == "gather" and m.inputs[0] == value:
        return False
    return types[value].shape == iter_shape(m, types) or types[value].scalar


# helpers for emitters --------------------------------------------------------------------------


def estimate(d: Dim, defaults: dict[str, int]) -> int:
    """A dim's likely size (declared dim defaults; 1000 for names without one)."""
    try:
        return d.evaluate({s: defaults.get(s, 1000) for s in d.symbols()})
    except (KeyError, TypeError, ValueError):
        return 1000


def numel(shape, defaults) -> int:
    return math.prod(estimate(d, defaults) for d in shape)


def np_dtype(name: str) -> np.dtype:
    return np.dtype(name)


# fallbacks: ops without a lowering, run by their NumPy forward on the host ---------------------


class Fallback:
    """One op run by its NumPy forward between compiled code (both numba backends)."""

    def __init__(self, m: MNode, graph) -> None:
        self.m = m
        self.op = op = get_op(graph.nodes[m.node].op)
        self.kernel = op.forward
        self.attrs = graph.nodes[m.node].attrs
        self.static = None if any(a.kind in ("shape", "dim", "index") for a in op.attrs.values()) else op.prepare(self.attrs, {})

    def kwargs(self, bindings):
        return self.static if self.static is not None else self.op.prepare(self.attrs, bindings)

    def run(self, args: list, bindings):
        """The forward on host values, as its declared type says: a Python number when weak,
        else the declared dtype (a forward may return another one)."""
        out = self.kernel(*args, **self.kwargs(bindings))
        v = self.m.v
        if v.weak:
            return out.item() if hasattr(out, "item") else out
        if getattr(out, "dtype", None) != np.dtype(v.dtype):
            return np.asarray(out).astype(v.dtype)
        return out


class CompiledPlan:
    """Base of both backends' compiled programs: `compiled(values, bindings) -> outputs`, the
    callable Program.run uses. Any exception in compiled code (a target out of range, say)
    makes the run start again on the NumPy interpreter, which reports the located error."""

    def __init__(self, program, backend) -> None:
        self.program = program
        self.backend = backend
        self.compile_seconds = 0.0
        self.fallback_runs = 0
        self.last_error: BaseException | None = None

    def __call__(self, values: dict, bindings: dict) -> dict:
        try:
            with np.errstate(all="ignore"):
                return self._run(values, bindings)
        except Exception as e:  # noqa: BLE001 - the NumPy interpreter reports errors with locations
            self.last_error = e
        self.fallback_runs += 1
        self.backend.fallback_runs += 1
        return self.program.interpret(values, bindings)

    def _run(self, values: dict, bindings: dict) -> dict:  # pragma: no cover - each backend overrides it
        raise NotImplementedError


def to_numpy(x, v: V):
    """A host value as NumPy code takes it: one-element values (kept as numbers) get back
    their declared rank; weak values stay Python numbers."""
    if v.weak:
        return x
    if v.scalar:
        return np.asarray(x, dtype=v.dtype).reshape(tuple(1 for _ in v.shape))
    return x


# one loop body: the lines computing a group's members at one index ------------------------------


class Body:
    """The statements for one point of a group's loop, shared by the CPU and CUDA emitters.

    `idx` holds the loop index variables (one per axis of the group's shape, or ["i"] for a
    flat loop over contiguous arrays); the callbacks name a value's register, scalar or array
    variable. Reduction members produce `(acc, value)` updates that the emitter applies.
    """

    def __init__(self, g: Group, types: dict[str, V], idx: list[str], *, reg, scalar, array, dim, flat=False,
                 raise_stmt="raise IndexError('gtool: index out of range')") -> None:
        self.g, self.types, self.idx, self.flat = g, types, idx, flat
        self.reg, self.scalar, self.array, self.dim = reg, scalar, array, dim
        self.raise_stmt = raise_stmt
        self.regs = {m.name for m in g.members if m.op != "reduce"}
        self.lines: list[str] = []

    def at(self, k: int) -> str:
        return self.idx[k] if k < len(self.idx) else "0"

    def bcast_index(self, shape, loop=None) -> list[str]:
        """Index of an operand of `shape` broadcast against the loop shape (right-aligned)."""
        loop = self.g.shape if loop is None else loop
        lead = len(loop) - len(shape)
        return ["0" if (not loop or is_one(d) or lead + j < 0) else self.at(lead + j) for j, d in enumerate(shape)]

    def load(self, m: MNode, pos: int, index: list[str] | None = None) -> str:
        u = m.inputs[pos]
        if u in self.regs:
            return self.reg(u)
        v = self.types[u]
        if v.scalar:
            return self.scalar(u)
        if self.flat and index is None:
            return f"{self.array(u, flat=True)}[{self.idx[0]}]"
        index = index if index is not None else self.bcast_index(v.shape)
        return f"{self.array(u)}[{', '.join(index)}]"

    def emit(self, m: MNode) -> str:
        """Append the lines for member m; returns the expression of its value (converted to its dtype)."""
        t = self.types
        out = m.v.dtype
        op = m.op
        if op in TEMPLATES:
            cdt = compute_dtype(m, t)
            args = [self.load(m, k) for k in range(len(m.inputs))]
            conv = [a if (op == "where" and k == 0) else convert(a, t[u].dtype, cdt)
                    for k, (a, u) in enumerate(zip(args, m.inputs))]
            expr = TEMPLATES[op](*conv)
            return expr if out in ("float64", "int64", "bool") else f"np.{out}({expr})"
        if op == "sign":
            a = convert(self.load(m, 0), t[m.inputs[0]].dtype, out)
            expr = sign_template(a, out)
            return expr if out in ("float64", "int64") else f"np.{out}({expr})"
        if op in ("bcast", "reshape") or (op in ("permute", "slice") and t[m.inputs[0]].scalar):
            return convert(self.load(m, 0), t[m.inputs[0]].dtype, out)
        if op == "cast":
            return convert(self.load(m, 0), t[m.inputs[0]].dtype, out)
        if op == "permute":
            perm = m.attrs["perm"]
            inv = [perm.index(a) for a in range(len(perm))]
            return self.load(m, 0, [self.at(k) for k in inv])
        if op == "slice":
            ax, start = m.attrs["axis"], self.dim(m.attrs["start"])
            index = [self.at(k) if k != ax else f"({self.at(k)} + {start})" for k in range(m.v.rank)]
            return self.load(m, 0, index)
        if op == "one_hot":
            tcode = self.load(m, 0, self.bcast_index(t[m.inputs[0]].shape, self.g.shape[:-1]))
            last = self.at(len(self.g.shape) - 1) if self.g.shape else "0"
            return convert(f"(1.0 if {tcode} == {last} else 0.0)", "float64", out)
        if op == "gather":
            return self.gather(m)
        if op == "size":
            dims = " * ".join(self.dim(d) for d in m.attrs["dims"]) or "1"
            return f"float({dims})"
        raise NotImplementedError(op)

    def gather(self, m: MNode) -> str:
        """x[..., j, ...] with j read from the index operand; out-of-range raises (the NumPy
        forward then reports the located error)."""
        xv, iv = self.types[m.inputs[0]], self.types[m.inputs[1]]
        ax, drop = m.attrs["axis"], m.attrs["drop"]
        j = f"j_{len(self.lines)}"
        icode = self.load(m, 1, self.bcast_index(iv.shape))
        n = self.dim(xv.shape[ax])
        self.lines.append(f"{j} = {icode}")
        if m.attrs["negative"]:
            self.lines.append(f"if {j} < 0:")
            self.lines.append(f"    {j} = {j} + {n}")
        self.lines.append(f"if {j} < 0 or {j} >= {n}:")
        self.lines.append("    " + self.raise_stmt.replace("{j}", j))
        index = []
        for a, d in enumerate(xv.shape):
            if a == ax:
                index.append(j)
                continue
            k = (a if a < ax else a - 1) if drop else a
            index.append("0" if (is_one(d) or not self.g.shape) else self.at(k))
        return f"{self.array(m.inputs[0])}[{', '.join(index)}]"


def reduce_parts(m: MNode, types: dict[str, V]) -> tuple[str, str, str]:
    """(accumulator dtype, initial value code, kind) for a reduction member."""
    kind = m.attrs["kind"]
    src = types[m.inputs[0]].dtype
    is_float = src.startswith("float")
    if kind in ("sum", "mean"):
        acc = "float64" if is_float or kind == "mean" else "int64"
        return acc, ("0.0" if acc == "float64" else "0"), kind
    acc = "float64" if is_float else "int64"
    if kind == "max":
        return acc, ("-np.inf" if is_float else "-9223372036854775807 - 1"), kind
    return acc, ("np.inf" if is_float else "9223372036854775807"), kind


def shape_code(shape, dim) -> str:
    parts = [dim(d) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
