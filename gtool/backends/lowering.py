"""Lowering a compiled plan for the numba backends: graph nodes -> micro-ops (`MNode`).

Elementwise ops keep their registry name (a scalar template in `templates.py`); composite ops
(logsumexp, softmax, log_softmax, cross_entropy) expand into the max / exp / sum steps their
NumPy forwards document, in the same order; view ops become index maps or array ops; whatever
has no lowering runs its NumPy forward beside the compiled code (a "fallback" micro-op).
"""

from __future__ import annotations

from ..dims import Dim, parse_index
from ..ops.registry import get_op
from .templates import BOOL_OK, FLOAT_ONLY, TEMPLATES, MNode, V, compute_dtype, is_one


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


