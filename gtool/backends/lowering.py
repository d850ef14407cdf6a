"""Lowering a compiled plan for the numba backends: graph nodes -> micro-ops (`MNode`).

Elementwise ops keep their registry name (a scalar template in `templates.py`; a composite
one, sigmoid or softplus, a helper traced from its record's template); row composites
(logsumexp, softmax, log_softmax, cross_entropy) run their record's template on `RowPrims`,
which emits one micro-op per primitive: the steps the NumPy forward runs, in the same order,
from the same code. View ops become index maps or array ops; whatever has no lowering runs
its NumPy forward beside the compiled code (a "fallback" micro-op).
"""

from __future__ import annotations

from ..dims import Dim, parse_index
from ..ops.registry import get_op
from .templates import BOOL_OK, COMPARE, FLOAT_ONLY, PRIMS, TEMPLATES, MNode, V, compute_dtype, is_one


class Lowering:
    """Builds the micro-op list for one Program (see module docstring)."""

    def __init__(self, program, blas: bool, matmul_ok=None, pools: bool = False) -> None:
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
        self.pools = pools  # 2-D max_pool as a compiled loop nest (the CPU emitter has one)
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
            op = get_op(node.op)
            fn = getattr(self, "lower_" + node.op, None) if op.plugin is None else None
            if fn is None and op.plugin is None and op.template is not None and not op.template.scalar:
                fn = self.lower_template
            attrs = op.full_attrs(node.attrs)
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

    def lower_template(self, node, attrs, out: V) -> bool:
        """A composite op: its record's template run on `RowPrims`, one micro-op per primitive
        (float inputs only; ints fall back to the NumPy forward, which runs the same template)."""
        x = self.v(node.inputs[0])
        if not x.dtype.startswith("float"):
            return False
        prims = RowPrims(self, node.name, x.dtype)
        kwargs = {k: v for k, v in attrs.items() if k in get_op(node.op).attrs}
        result = get_op(node.op).template.fn(prims, *node.inputs, **kwargs)
        last = self.nodes[-1]
        if last.name == result and (last.v.shape, last.v.dtype) == (out.shape, out.dtype):  # the output itself
            del self.types[last.name]
            last.name, last.v = node.name, out
            self.types[node.name] = out
            return True
        return self.emit(node.name, "bcast", [result], out, node.name)

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
    lower_flatten = lower_reshape

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

    def lower_max_pool(self, node, attrs, out, op="max_pool2d"):
        """2-D pooling (float, explicit padding) as one compiled loop nest over the window's taps
        inside the input, in the NumPy forward's order of kernel offsets: max_pool's maximum
        (padding never wins; NaN does, as in np.maximum), avg_pool's sum in x's dtype divided by
        the forward's count. Anything else (auto_pad, 1-D/3-D, ints): the NumPy forward."""
        x = self.v(node.inputs[0])
        kernel, pads, ends = _pool_window(attrs, 2)
        if not self.pools or x.rank != 4 or x.dtype not in ("float32", "float64") or kernel is None \
                or attrs.get("auto_pad", "notset") not in ("notset", None, "NOTSET") \
                or not all(d.is_const for d in x.shape[2:] + out.shape[2:]):
            return False
        stride = _ints(attrs.get("stride"), 2) or kernel
        dilation = _ints(attrs.get("dilation"), 2) or (1, 1)
        return self.emit(node.name, op, node.inputs, out, node.name, kernel=kernel, stride=stride,
                         dilation=dilation, pads=pads, ends=ends, include=bool(attrs.get("count_include_pad")))

    def lower_avg_pool(self, node, attrs, out):
        return self.lower_max_pool(node, attrs, out, "avg_pool2d")

    def lower_matmul(self, node, attrs, out):
        a, b = self.v(node.inputs[0]), self.v(node.inputs[1])
        if self.matmul_ok is not None and not self.matmul_ok(a, b, out):
            return False
        return self.emit(node.name, "matmul", node.inputs, out, node.name, ta=False, tb=False)


def _ints(v, n: int) -> tuple[int, ...] | None:
    """An ints attr (one int, or one per axis) as n ints; None when absent or of another form."""
    if v is None:
        return None
    v = (v,) * n if isinstance(v, int) else tuple(v)
    return v if len(v) == n and all(isinstance(k, int) for k in v) else None


def _pool_window(attrs, n: int):
    """(kernel, begin pads, end pads) of a pool's attrs, or Nones for a form not lowered. Padding
    is one int, one per axis, or all begins then all ends (docs/format.md). The begins place the
    windows; taps past the input are skipped (padding adds nothing to a max or a sum), so the
    ends only matter to avg_pool's count_include_pad, and ceil_mode's extra cells not at all."""
    kernel = _ints(attrs.get("kernel"), n)
    p = attrs.get("padding", 0)
    if isinstance(p, int):
        p = (p,) * n
    if kernel is None or not isinstance(p, list | tuple) or len(p) not in (n, 2 * n) \
            or not all(isinstance(k, int) for k in p):
        return None, None, None
    return kernel, tuple(p[:n]), tuple(p[n:] if len(p) == 2 * n else p)


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


def _broadcast(shapes) -> tuple[Dim, ...]:
    """The broadcast of value shapes (right-aligned; a size-1 dim gives way)."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = [Dim.const(1)] * rank
    for s in shapes:
        for k, d in enumerate(s, rank - len(s)):
            if not is_one(d):
                out[k] = d
    return tuple(out)


class RowPrims:
    """The template primitives (gtool/ops/templates.py) as micro-ops of one node: values are
    micro-op names, Python numbers become `const` micro-ops of the template's float dtype."""

    def __init__(self, low: Lowering, node: str, dtype: str) -> None:
        self.low, self.node, self.dt = low, node, dtype

    def __getattr__(self, prim: str):
        if prim not in PRIMS:
            raise AttributeError(f"'{prim}' is not a template primitive")
        op = PRIMS[prim]

        def step(*args) -> str:
            names = [self._value(a) for a in args]
            v = V(_broadcast([self.low.v(n).shape for n in names]), "bool" if op in COMPARE else self.dt)
            return self.low.tmp(self.node, op, names, v)

        return step

    def _value(self, a) -> str:
        if isinstance(a, int | float):
            return self.low.tmp(self.node, "const", (), V((), self.dt), value=float(a))
        return a

    def _reduce(self, kind: str, x: str, axis) -> str:
        xv = self.low.v(x)
        axes = self.low._axes(axis, xv.rank)
        return self.low.reduce(self.node, None, kind, x, axes, V(self.low._kept(xv.shape, axes), self.dt))

    def max(self, x: str, axis) -> str:
        return self._reduce("max", x, axis)

    def sum(self, x: str, axis) -> str:
        return self._reduce("sum", x, axis)

    def count(self, mask: str, axis) -> str:
        return self._reduce("sum", self.where(mask, 1.0, 0.0), axis)

    def squeeze(self, v: str, axis) -> str:
        shape = self.low.v(v).shape
        axes = self.low._axes(axis, len(shape))
        return self.low.tmp(self.node, "reshape", [v], V(tuple(d for k, d in enumerate(shape) if k not in axes), self.dt))

    def rows(self, v: str) -> str:
        return self.low.tmp(self.node, "reshape", [v], V(self.low.v(v).shape[:-1], self.dt))

    def pick(self, x: str, t: str) -> str:
        xv = self.low.v(x)
        return self.low.tmp(self.node, "gather", [x, t], V(xv.shape[:-1], self.dt), axis=xv.rank - 1, drop=True,
                            negative=False)

    def total(self, v: str, kind: str) -> str:
        rank = self.low.v(v).rank
        return self.low.reduce(self.node, None, kind, v, tuple(range(rank)), V((), self.dt))
