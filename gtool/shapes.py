"""Symbolic shape and dtype inference: one walk over the graph in topological order.

Dims declared in `dims:` are rigid names; any other name is free and gets bound by
unification (`x: [n]` added to `y: [3]` binds n = 3). Broadcasting follows NumPy; a free dim
is assumed not to be a broadcasting 1. Every problem becomes a located Diagnostic.
"""

from __future__ import annotations

from .datafit import scalar_misfit
from .dims import Dim, format_shape, parse_dim, parse_index
from .dtypes import COMPUTE_DTYPES, is_float, is_storage
from .errors import Diagnostic
from .ir import Graph, TensorType
from .ops.registry import ShapeError, get_op


class ShapeCtx:
    """The unifier that shape rules talk to. Bindings map free names to dims."""

    def __init__(self, rigid: set[str] | None = None) -> None:
        self.rigid = set(rigid or ())
        self.bindings: dict[str, Dim] = {}

    def resolve(self, d: Dim) -> Dim:
        return d.substitute(self.bindings) if self.bindings else d

    def resolve_shape(self, shape) -> tuple[Dim, ...]:
        if not self.bindings:  # the common case: nothing bound, nothing to rewrite
            return shape if type(shape) is tuple else tuple(shape)
        b = self.bindings
        return tuple(d.substitute(b) for d in shape)

    def _bind(self, name: str, value: Dim) -> None:
        self.bindings = {k: v.substitute({name: value}) for k, v in self.bindings.items()}
        self.bindings[name] = value

    def unify(self, a: Dim, b: Dim) -> bool:
        """Make a == b, binding free names if needed. False if they cannot be equal."""
        a, b = self.resolve(a), self.resolve(b)
        if a == b:
            return True
        diff = a - b
        if diff.is_const:
            return False
        for name in sorted(diff.symbols()):
            if name in self.rigid:
                continue
            c = diff.linear_coeff(name)
            if c in (1, -1):
                rest = diff - Dim({(name,): c})
                value = rest * (-c)
                if value.is_const and value.value < 0:  # a size: 0 (an empty axis) is one, -1 is not
                    return False
                self._bind(name, value)
                return True
        return False

    def broadcast(self, *shapes) -> tuple[Dim, ...]:
        """NumPy broadcasting of symbolic shapes; raises ShapeError naming both shapes."""
        first = shapes[0]
        if not self.bindings and all(s == first for s in shapes):
            return tuple(first)  # equal shapes: nothing to broadcast (most elementwise nodes)
        rank = max(len(s) for s in shapes)
        out: list[Dim] = []
        for k in range(rank):
            dim = None
            for s in shapes:
                j = k - (rank - len(s))
                if j < 0:
                    continue
                d = self.resolve(s[j])
                if dim is None or dim == 1:
                    dim = d
                elif d == 1 or self.unify(dim, d):
                    dim = self.resolve(dim)
                else:
                    texts = " with ".join(format_shape(self.resolve_shape(x)) for x in shapes)
                    raise ShapeError(
                        "shape-mismatch",
                        f"cannot broadcast {texts}: axis {k - rank} is {dim} in one and {d} in another",
                    )
            out.append(dim)
        return tuple(out)

    def same(self, a: Dim, b: Dim, code: str, message: str) -> Dim:
        if not self.unify(a, b):
            raise ShapeError(code, message)
        return self.resolve(a)

    def same_shape(self, a, b, what: str) -> tuple[Dim, ...]:
        if len(a) != len(b) or not all(self.unify(x, y) for x, y in zip(a, b)):
            raise ShapeError(
                "shape-mismatch",
                f"{what}: {format_shape(self.resolve_shape(a))} vs {format_shape(self.resolve_shape(b))}",
            )
        return self.resolve_shape(a)

    @staticmethod
    def axis(ax: int, rank: int, what: str = "axis") -> int:
        """Normalise a possibly negative axis; ShapeError(bad-axis) when out of range."""
        if not -rank <= ax < rank:
            lo, hi = -rank, rank - 1
            span = f"{lo}..{hi}" if rank else "none (the input is a scalar)"
            raise ShapeError("bad-axis", f"{what} {ax} is out of range for rank {rank} (valid: {span})")
        return ax % rank

    def axes(self, ax, rank: int) -> tuple[int, ...]:
        """Reduction axes: None means all; an int or list, normalised and sorted."""
        if ax is None:
            return tuple(range(rank))
        items = [ax] if isinstance(ax, int) else list(ax)
        out = sorted(self.axis(a, rank) for a in items)
        if len(set(out)) != len(out):
            raise ShapeError("bad-axis", f"axis {ax} names the same axis twice")
        return tuple(out)

    @staticmethod
    def dim_attr(value) -> Dim:
        return parse_dim(value)


class Inference:
    """The result of inferring a graph: a type per name, the unifier, and diagnostics."""

    def __init__(self, types: dict[str, TensorType], ctx: ShapeCtx, diagnostics: list[Diagnostic]):
        self.types = types
        self.ctx = ctx
        self.diagnostics = diagnostics

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


_DIM_KINDS = ("shape", "dim", "index")
# the dtypes a literal (int64, float64 or bool) may not fit: all but those three
_NARROW = frozenset(COMPUTE_DTYPES) - {"int64", "float64", "bool"}


def dim_attrs(op, attrs: dict, ctx: ShapeCtx, fixed: dict[str, Dim]) -> dict:
    """Dim-valued attrs (reshape's shape, one_hot's depth, ...) as Dims with `--dim` sizes and
    the bindings so far applied, so every rule sees them as it sees its inputs' shapes."""
    out = attrs
    for key, spec in op.attrs.items():
        v = attrs.get(key)
        if spec.kind not in _DIM_KINDS or v is None:
            continue
        parse = parse_index if spec.kind == "index" else parse_dim
        try:
            if spec.kind == "shape":
                v = [d if (d == -1 and not isinstance(d, bool)) else ctx.resolve(parse(d).substitute(fixed)) for d in v]
            else:
                v = ctx.resolve(parse(v).substitute(fixed))
        except (ValueError, TypeError) as e:
            raise ShapeError("bad-dim", f"attr '{key}': {e}") from None
        if out is attrs:
            out = dict(attrs)
        out[key] = v
    return out


def infer(graph: Graph, dim_values: dict[str, int] | None = None) -> Inference:
    """Infer every value's type. `dim_values` (from `--dim`) fix dims to sizes first.

    A node whose rule fails is reported once; nodes that depend on it are skipped silently,
    so one mistake gives one error, not a cascade. The walk is the hot path of `validate`
    on big graphs: while nothing is bound (the usual case) no shape is rewritten or copied.
    """
    ctx = ShapeCtx(rigid=set(graph.dims))
    fixed = {k: Dim.const(v) for k, v in {**graph.fixed_dims, **(dim_values or {})}.items()}
    types: dict[str, TensorType] = {}
    diags: list[Diagnostic] = []
    known: dict[str, object] = {}  # weak scalars' values, filled in as literals are met
    for name, t in graph.tensors.items():
        types[name] = t.type if not fixed else TensorType(tuple(d.substitute(fixed) for d in t.shape), t.dtype,
                                                          t.type.weak)
    for name, node in graph.nodes.items():
        ins = [types.get(i) for i in node.inputs]
        if any(t is None for t in ins):
            continue
        op = get_op(node.op)
        if op is None:
            continue
        try:
            if ctx.bindings:
                ins = [TensorType(ctx.resolve_shape(t.shape), t.dtype, t.weak) for t in ins]
            attrs = op.full_attrs(node.attrs)
            if fixed or ctx.bindings:
                attrs = dim_attrs(op, attrs, ctx, fixed)
            if not op.storage:
                _refuse_storage(op.name, ins)
            out = op.infer(ctx, ins, attrs)
            if node.shape is not None:
                declared = tuple(d.substitute(fixed) for d in node.shape) if fixed else node.shape
                inferred = ctx.resolve_shape(out.shape)
                if len(declared) != len(inferred) or not all(
                    ctx.unify(a, b) for a, b in zip(inferred, declared)
                ):
                    raise ShapeError(
                        "shape-mismatch",
                        f"inferred {format_shape(inferred)} but declared {format_shape(ctx.resolve_shape(declared))}",
                    )
            if (out.weak or out.dtype in _NARROW) and any(t.weak for t in ins):
                _check_literals(graph, node, op, ins, out, known)
            types[name] = out
        except ShapeError as e:
            shapes = ", ".join(format_shape(ctx.resolve_shape(t.shape)) for t in ins)
            diags.append(
                Diagnostic(
                    e.code,
                    f"{e.message} (inputs: {shapes})" if ins and "inputs:" not in e.message else e.message,
                    node=graph.owner(name),
                    op=node.op,
                    **node.loc.where(),
                )
            )
    if ctx.bindings:
        types = {n: TensorType(ctx.resolve_shape(t.shape), t.dtype, t.weak) for n, t in types.items()}
    return Inference(types, ctx, diags)


def _refuse_storage(op: str, ins: list[TensorType]) -> None:
    """Storage-only dtypes (bfloat16, float8..., int4, ...) are stored, moved and cast; an op
    that computes with one is refused here, before any backend could give a wrong number."""
    dt = next((t.dtype for t in ins if is_storage(t.dtype)), None)
    if dt is not None:
        raise ShapeError("storage-only-dtype", f"{op} cannot compute with {dt}: {dt} is a storage-only dtype (it "
                         "can be stored, reshaped, transposed, sliced, concatenated and cast); cast it to a "
                         "compute dtype such as float32 first")


def _weak_value(graph: Graph, name: str, known: dict):
    """The value of a weak scalar when the file fixes it (a literal or a scalar constant)."""
    if name in known:
        return known[name]
    t = graph.tensors.get(name)
    if t is not None and t.kind == "constant" and t.type.weak and t.value is not None:
        known[name] = t.value.item()
        return known[name]
    return None


def _check_literals(graph: Graph, node, op, ins: list, out: TensorType, known: dict) -> None:
    """A literal takes the dtype of the tensors it meets (NumPy 2's weak scalars): `x + 99999999999`
    with x int32, or `y * 1e300` with y float32, cannot be computed (NumPy raises, or makes inf;
    numba wraps around silently). Refuse it here, before any backend runs, with the node.

    Weak nodes whose inputs are all known (`k * 1000` with k a literal) are folded by their
    NumPy forward on scalars, so a literal computed from literals is checked too. Comparisons
    are exempt: NumPy and numba compare an out-of-range literal exactly.
    """
    if op.ufunc is None and op.name != "where":
        return
    if out.weak:
        values = [_weak_value(graph, i, known) for i in node.inputs]
        if all(v is not None for v in values) and not node.attrs:
            import numpy as np

            with np.errstate(all="ignore"):
                try:
                    known[node.name] = np.asarray(op.forward(*values)).astype(out.dtype).item()
                except (ValueError, TypeError, OverflowError, ArithmeticError):
                    pass
        return
    if out.dtype not in _NARROW:  # literals are int64, float64 or bool: they fit the wider dtypes
        return
    for i, t in zip(node.inputs, ins):
        if not t.weak:
            continue
        v = _weak_value(graph, i, known)
        why = None if v is None else scalar_misfit(v, out.dtype)
        if why is not None:
            shown = str(v) if len(str(v)) <= 24 else f"{str(v)[:20]}..."
            fix = ("cast the tensor to float64 first" if is_float(out.dtype)
                   else "cast the tensor to int64 or float64 first")
            raise ShapeError("bad-value", f"the number {shown} takes the dtype {out.dtype} here (numbers in a graph "
                             f"take the dtype of the tensors they meet) and is {why}; {fix}")


def format_type(t: TensorType) -> str:
    return f"{format_shape(t.shape)} {t.dtype}" + (" (weak)" if t.weak else "")
