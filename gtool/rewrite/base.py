"""What every rewrite rule shares: the `Rule` base class, dtype limits, and the helpers that
read axes, max-shifts, softmaxes and one-hot tensors off a graph.

A rule has a `name`, a `kind` ('stability', 'simplify' or 'lowering'), the root ops it can
match (`roots`, for indexing), an `example` (before, after), `extremes` (per pattern variable,
the kinds of inputs `verify` uses to show the original breaking) and `risk(dtype)` (what
`lint` says can go wrong). `match(view, node)` returns a Match or None; `build(b, m)` returns
the name of the replacement value, built with `b(op, *inputs, **attrs)`.

Matching only reads (a `pattern.GraphView` or the engine's workspace), so `lint` can match
these rules without importing the engine; only `build` writes, through the builder it is given.
"""

from __future__ import annotations

import numpy as np

from ..ir import Node
from .pattern import Match, Var, could_match, either, match, op

X = Var("x")

EXP_MAX = {d: float(np.log(np.finfo(d).max)) for d in ("float64", "float32", "float16")}
EXP_MIN = {d: float(np.log(np.finfo(d).smallest_subnormal)) for d in ("float64", "float32", "float16")}


def eps(dtype: str) -> float:
    return float(np.finfo(dtype if dtype in EXP_MAX else "float64").eps)


def dtype_or_f64(dtype: str) -> str:
    return dtype if dtype in EXP_MAX else "float64"


class Rule:
    """Base: subclasses set the class attributes and `pattern` (or override `match`)."""

    name = ""
    kind = "stability"
    roots: tuple[str, ...] = ()
    example: tuple[str, str] = ("", "")
    extremes: dict[str, tuple[str, ...]] = {}
    # True for rules whose result is a log-probability: `verify` then holds values near 0 to
    # an absolute ULP of 1, since log(p) of a p near 1 (or log of a sum near 1) is only that
    # good in every formula that rounds p or the sum first, the stable ops included.
    log_domain = False
    pattern = None
    # How far `match` reads: k = the node and k levels of its inputs (their nodes, tensors,
    # reader counts); "graph" = anywhere (matched on every node every sweep); None = unknown
    # (the engine then re-matches every node every sweep). See rewrite/engine.py.
    reach: int | str | None = None

    @property
    def identity(self) -> str:
        return (self.__doc__ or "").strip().splitlines()[0]

    @property
    def explanation(self) -> str:
        lines = (self.__doc__ or "").strip().splitlines()[1:]
        return " ".join(ln.strip() for ln in lines if ln.strip())

    def match(self, ws, node: Node) -> Match | None:
        if not could_match(self.pattern, node.name, ws):
            return None
        for m in match(self.pattern, node.name, ws):
            if self.when(ws, m):
                return m
        return None

    def when(self, ws, m: Match) -> bool:
        return True

    def build(self, b, m: Match) -> str:  # pragma: no cover - every rule overrides it
        raise NotImplementedError

    def risk(self, dtype: str) -> str:
        return ""

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "identity": self.identity, "before": self.example[0],
                "after": self.example[1]}


# helpers ------------------------------------------------------------------------------------


def reduced_axes(ws, node: Node) -> tuple[int, ...]:
    rank = ws.type(node.inputs[0]).rank
    axis = ws.attrs(node)["axis"]
    if axis is None:
        return tuple(range(rank))
    return tuple(sorted(a % rank for a in ([axis] if isinstance(axis, int) else axis)))


def broadcast_axis(ws, node: Node) -> int | None:
    """The one axis a reduction runs over, if its output broadcasts back against its input
    along that axis (keepdims, or the leading axis): what softmax-like patterns need."""
    axes = reduced_axes(ws, node)
    if len(axes) != 1:
        return None
    if ws.attrs(node)["keepdims"] or axes[0] == 0:
        return axes[0]
    return None


def shifted(ws, name: str) -> bool:
    """x - m with m = max(x) (possibly inside stop_gradient, and where(finite, m, 0) as
    `--expand` writes it): already max-shifted, so exp cannot overflow. A shift by anything
    else (min(x), the max of another tensor) leaves the exp unstable: not shifted."""
    node = ws.nodes.get(name)
    if node is None or node.op != "sub":
        return False
    m = ws.nodes.get(node.inputs[1])
    if m is not None and m.op == "stop_gradient":
        m = ws.nodes.get(m.inputs[0])
    if m is not None and m.op == "where":
        m = ws.nodes.get(m.inputs[1])
    return m is not None and m.op == "max" and m.inputs[0] == node.inputs[0]


def axis_of(ws, node: Node) -> int:
    return ws.attrs(node)["axis"] % ws.type(node.inputs[0]).rank


# a softmax written either way: the op, or exp(x) / sum(exp(x))
SOFTMAX = either(op("softmax", X, bind="sm"), op("div", op("exp", X), op("sum", op("exp", X), bind="den")))


def softmax_axis(ws, m: Match) -> int | None:
    """The axis of the softmax that `SOFTMAX` matched (None: the hand-written one is not a softmax)."""
    if "sm" in m.nodes:
        return axis_of(ws, ws.nodes[m.nodes["sm"]])
    if shifted(ws, m.vars["x"]):
        return None
    return broadcast_axis(ws, ws.nodes[m.nodes["den"]])


def onehot_index(ws, oh: str, s: str, k: int):
    """If `oh` is one-hot along axis k of `s`: ('const', int index array shaped for
    take_along_axis) for a constant, ('node', t) for one_hot(t) on the last axis; else None."""
    rank = ws.type(s).rank
    node = ws.nodes.get(oh)
    if node is not None:
        if node.op != "one_hot" or k != rank - 1:
            return None
        t = node.inputs[0]
        depth = ws.ctx.resolve(ws.type(oh).shape[-1])
        if ws.type(t).rank != rank - 1 or depth != ws.ctx.resolve(ws.type(s).shape[-1]):
            return None
        return ("node", t)
    t = ws.tensors.get(oh)
    if t is None or t.kind != "constant" or t.value is None:
        return None
    v = np.asarray(t.value)
    if v.ndim > rank or v.dtype.kind not in "biuf" or not np.isin(v, (0, 1)).all():
        return None
    v = v.reshape((1,) * (rank - v.ndim) + v.shape)
    size = ws.ctx.resolve(ws.type(s).shape[k])
    if not size.is_const or v.shape[k] != size.value or not (v.sum(axis=k) == 1).all():
        return None
    return ("const", np.argmax(v, axis=k, keepdims=True).astype(np.int64))

