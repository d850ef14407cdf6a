"""The rewrite rules: one class per rule, whose docstring's first line is the identity it uses.

Stability rules route unstable subgraphs (exp feeding sums and logs, `1 + x` under a log,
`1 - sigmoid`) to the stable ops of the registry, whose forward and VJP are written to
avoid overflow and cancellation. Simplification rules (CSE, constant folding, dead nodes,
algebraic identities) clean up, and expose patterns that the stability rules then match.

A rule has a `name`, a `kind` ('stability' or 'simplify'), the root ops it can match
(`roots`, for indexing), an `example` (before, after), `extremes` (per pattern variable,
the kinds of inputs `verify` uses to show the original breaking) and `risk(dtype)` (what
`lint` says can go wrong). `match(ws, node)` returns a Match or None; `build(b, m)` returns
the name of the replacement value, built with `b(op, *inputs, **attrs)`.
"""

from __future__ import annotations

import numpy as np

from ..ir import Node
from ..ops.registry import get_op
from .pattern import Const, Match, Var, either, match, op

X = Var("x")

EXP_MAX = {"float64": float(np.log(np.finfo(np.float64).max)), "float32": float(np.log(np.finfo(np.float32).max))}
EXP_MIN = {"float64": float(np.log(np.finfo(np.float64).smallest_subnormal)),
           "float32": float(np.log(np.finfo(np.float32).smallest_subnormal))}


def eps(dtype: str) -> float:
    return float(np.finfo(dtype if dtype in ("float32", "float64") else "float64").eps)


def _dt(dtype: str) -> str:
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

    @property
    def identity(self) -> str:
        return (self.__doc__ or "").strip().splitlines()[0]

    @property
    def explanation(self) -> str:
        lines = (self.__doc__ or "").strip().splitlines()[1:]
        return " ".join(ln.strip() for ln in lines if ln.strip())

    def match(self, ws, node: Node) -> Match | None:
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
    """x - m with m a max or a stop_gradient: already max-shifted (e.g. by `--expand`)."""
    node = ws.nodes.get(name)
    if node is None or node.op != "sub":
        return False
    m = ws.nodes.get(node.inputs[1])
    return m is not None and m.op in ("stop_gradient", "max")


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


# stability rules ------------------------------------------------------------------------------


class LogSumExp(Rule):
    """log(sum(exp(x), axis)) = logsumexp(x, axis)

    logsumexp shifts by the max before exponentiating, in its forward and its VJP (softmax),
    so it neither overflows for large x nor returns -inf for very negative x. An exp whose
    input is already shifted (`x - stop_gradient(max(x))`, as `--expand` writes it) is left.
    """

    name = "logsumexp"
    roots = ("log",)
    example = ("log(sum(exp(x), axis=1))", "logsumexp(x, axis=1)")
    extremes = {"x": ("large", "neg_large", "spread", "equal", "neginf", "inf")}
    pattern = op("log", op("sum", op("exp", X), bind="s"))

    def when(self, ws, m):
        return not shifted(ws, m["x"])

    def build(self, b, m):
        a = b.attrs(b.nodes[m["s"]])
        return b("logsumexp", m["x"], axis=a["axis"], keepdims=a["keepdims"])

    def risk(self, dtype):
        d = _dt(dtype)
        return (f"exp overflows above {EXP_MAX[d]:.1f} in {d}, so log(sum(exp(x))) is inf for logits that large; "
                f"when every x is below {EXP_MIN[d]:.1f} the sum underflows to 0 and the log is -inf")


class Softmax(Rule):
    """exp(x) / sum(exp(x), axis, keepdims) = softmax(x, axis)

    The hand-written softmax overflows (inf / inf = NaN) once a logit exceeds exp's range,
    and gives 0 / 0 when a whole row is very negative; softmax shifts by the row's max.
    """

    name = "softmax"
    roots = ("div",)
    example = ("exp(x) / sum(exp(x), axis=-1, keepdims=true)", "softmax(x, axis=-1)")
    extremes = {"x": ("large", "neg_large", "spread", "equal", "neginf")}
    pattern = op("div", op("exp", X), op("sum", op("exp", X), bind="den"))

    def when(self, ws, m):
        return softmax_axis(ws, m) is not None

    def build(self, b, m):
        return b("softmax", m["x"], axis=softmax_axis(b, m))

    def risk(self, dtype):
        d = _dt(dtype)
        return (f"exp overflows above {EXP_MAX[d]:.1f} in {d} (inf / inf = NaN), and a row below {EXP_MIN[d]:.1f} "
                "gives 0 / 0 = NaN")


class LogSoftmax(Rule):
    """log(softmax(x, axis)) = log_softmax(x, axis) (also for a hand-written softmax)

    softmax underflows to 0 for a logit far below its row's max, and log(0) = -inf (with a
    NaN gradient); log_softmax computes (x - m) - log(sum(exp(x - m))) instead.
    """

    name = "log_softmax"
    log_domain = True
    roots = ("log",)
    example = ("log(softmax(x))", "log_softmax(x)")
    extremes = {"x": ("large", "spread", "neg_large", "equal", "neginf")}
    pattern = op("log", SOFTMAX)

    def when(self, ws, m):
        return softmax_axis(ws, m) is not None

    def build(self, b, m):
        return b("log_softmax", m["x"], axis=softmax_axis(b, m))

    def risk(self, dtype):
        d = _dt(dtype)
        return (f"softmax underflows to 0 for a logit {-EXP_MIN[d]:.0f} below its row's max in {d}, and log(0) is "
                "-inf with a NaN gradient")


class LogSoftmaxFromLse(Rule):
    """x - logsumexp(x, axis, keepdims) = log_softmax(x, axis)

    The two-op form rounds logsumexp to the precision of max(x) before subtracting;
    log_softmax subtracts the max exactly first, and its gradient is one stable expression.
    """

    name = "log_softmax_lse"
    log_domain = True
    roots = ("sub",)
    example = ("x - logsumexp(x, axis=-1, keepdims=true)", "log_softmax(x, axis=-1)")
    extremes = {"x": ("large", "spread", "equal", "neginf")}
    pattern = op("sub", X, op("logsumexp", X, bind="l"))

    def when(self, ws, m):
        return broadcast_axis(ws, ws.nodes[m["l"]]) is not None

    def build(self, b, m):
        return b("log_softmax", m["x"], axis=broadcast_axis(b, b.nodes[m["l"]]))

    def risk(self, dtype):
        d = _dt(dtype)
        return (f"logsumexp is rounded to the precision of max(x) before the subtraction (an absolute error of "
                f"{float(np.spacing(np.array(1000, dtype=d))):.1e} at logits near 1000 in {d})")


class SoftmaxFromExp(Rule):
    """exp(log_softmax(x, axis)) = softmax(x, axis)

    One op instead of two: no extra rounding, and the gradient is softmax's own.
    """

    name = "exp_log_softmax"
    roots = ("exp",)
    example = ("exp(log_softmax(x))", "softmax(x)")
    extremes = {"x": ("large", "spread", "neginf")}
    pattern = op("exp", op("log_softmax", X, bind="l"))

    def build(self, b, m):
        return b("softmax", m["x"], axis=axis_of(b, b.nodes[m["l"]]))

    def risk(self, dtype):
        return "exp(log_softmax(x)) is softmax in two steps: one more rounding and a gradient through exp"


class Softplus(Rule):
    """log(1 + exp(x)) = softplus(x) (also log1p(exp(x)))

    exp overflows for large x (the exact value is about x); for very negative x, 1 + exp(x)
    rounds to 1 and the result is 0 instead of about exp(x).
    """

    name = "softplus"
    roots = ("log", "log1p")
    example = ("log(1 + exp(x))", "softplus(x)")
    extremes = {"x": ("large", "neg_moderate", "neg_large", "inf")}
    pattern = either(op("log", op("add", Const(1), op("exp", X))), op("log1p", op("exp", X)))

    def build(self, b, m):
        return b("softplus", m["x"])

    def risk(self, dtype):
        d = _dt(dtype)
        return (f"exp overflows above {EXP_MAX[d]:.1f} in {d} (the exact value is about x), and below "
                f"{np.log(eps(d)):.0f} 1 + exp(x) rounds to 1, so the result is 0 instead of exp(x)")


class Log1p(Rule):
    """log(1 + x) = log1p(x)

    1 + x rounds away the low digits of a small x (all of them below eps/2), so log(1 + x)
    loses accuracy for |x| << 1; log1p keeps it.
    """

    name = "log1p"
    roots = ("log",)
    example = ("log(1 + x)", "log1p(x)")
    extremes = {"x": ("tiny",)}
    pattern = op("log", op("add", Const(1), X))

    def build(self, b, m):
        return b("log1p", m["x"])

    def risk(self, dtype):
        d = _dt(dtype)
        return (f"1 + x rounds to 1 for |x| < {eps(d) / 2:.1e} in {d} (the log is then 0), and keeps only about "
                f"{eps(d):.0e} / |x| relative accuracy above that")


class Expm1(Rule):
    """exp(x) - 1 = expm1(x)

    For small |x|, exp(x) is close to 1 and the subtraction cancels its leading digits.
    """

    name = "expm1"
    roots = ("sub", "add")
    example = ("exp(x) - 1", "expm1(x)")
    extremes = {"x": ("tiny",)}
    pattern = either(op("sub", op("exp", X), Const(1)), op("add", op("exp", X), Const(-1)))

    def build(self, b, m):
        return b("expm1", m["x"])

    def risk(self, dtype):
        d = _dt(dtype)
        return f"exp(x) - 1 cancels for small |x|: relative error about {eps(d):.0e} / |x| in {d}, and 0 below {eps(d) / 2:.1e}"


class LogSigmoid(Rule):
    """log(sigmoid(x)) = -softplus(-x)

    sigmoid(x) underflows to 0 for very negative x, where the exact log is about x.
    """

    name = "log_sigmoid"
    roots = ("log",)
    example = ("log(sigmoid(x))", "-softplus(-x)")
    extremes = {"x": ("neg_large", "neg_moderate", "large")}
    pattern = op("log", op("sigmoid", X))

    def build(self, b, m):
        return b("neg", b("softplus", b("neg", m["x"])))

    def risk(self, dtype):
        d = _dt(dtype)
        return f"sigmoid(x) underflows to 0 below {EXP_MIN[d]:.0f} in {d}, so the log is -inf (the exact value is about x)"


class Log1mSigmoid(Rule):
    """log(1 - sigmoid(x)) = -softplus(x)

    1 - sigmoid(x) rounds to 0 for large x, where the exact log is about -x.
    """

    name = "log1m_sigmoid"
    roots = ("log",)
    example = ("log(1 - sigmoid(x))", "-softplus(x)")
    extremes = {"x": ("large", "moderate")}
    pattern = op("log", op("sub", Const(1), op("sigmoid", X)))

    def build(self, b, m):
        return b("neg", b("softplus", m["x"]))

    def risk(self, dtype):
        d = _dt(dtype)
        return f"1 - sigmoid(x) rounds to 0 above {-np.log(eps(d) / 2):.0f} in {d}, so the log is -inf (exact: about -x)"


class OneMinusSigmoid(Rule):
    """1 - sigmoid(x) = sigmoid(-x)

    The subtraction cancels for large x (and is exactly 0 once sigmoid(x) rounds to 1).
    """

    name = "one_minus_sigmoid"
    roots = ("sub",)
    example = ("1 - sigmoid(x)", "sigmoid(-x)")
    extremes = {"x": ("moderate", "large")}
    pattern = op("sub", Const(1), op("sigmoid", X))

    def build(self, b, m):
        return b("sigmoid", b("neg", m["x"]))

    def risk(self, dtype):
        d = _dt(dtype)
        return f"1 - sigmoid(x) loses all digits above {-np.log(eps(d) / 2):.0f} in {d} (it is 0 there; exact: about exp(-x))"


class SigmoidFromExp(Rule):
    """exp(x) / (1 + exp(x)) = sigmoid(x) (also 1 / (1 + exp(-x)))

    exp overflows for large x: inf / inf = NaN; sigmoid never exponentiates a positive number.
    """

    name = "sigmoid"
    roots = ("div",)
    example = ("exp(x) / (1 + exp(x))", "sigmoid(x)")
    extremes = {"x": ("large", "neg_large", "moderate")}
    pattern = either(op("div", op("exp", X), op("add", Const(1), op("exp", X))),
                     op("div", Const(1), op("add", Const(1), op("exp", op("neg", X)))))

    def build(self, b, m):
        return b("sigmoid", m["x"])

    def risk(self, dtype):
        d = _dt(dtype)
        return f"exp overflows above {EXP_MAX[d]:.1f} in {d}: inf / inf = NaN"


class LogSoftmaxPick(Rule):
    """log(sum(softmax(s) * onehot, axis)) = sum(take_along_axis(log_softmax(s), index), axis)

    Picking one probability per row and taking its log: the probability underflows to 0 when
    its logit is far below the row's max (log(0) = -inf), and a hand-written softmax also
    overflows. Valid when `onehot` is one-hot along the softmax axis: a constant with exactly
    one 1 per row, or one_hot(t) (then the index is t). Also log(take_along_axis(softmax(s),
    i)) = take_along_axis(log_softmax(s), i).
    """

    name = "log_softmax_pick"
    log_domain = True
    roots = ("log",)
    example = ("log(sum(softmax(s) * onehot, axis=-1))", "sum(take_along_axis(log_softmax(s), index, axis=-1), axis=-1)")
    extremes = {"x": ("large", "spread", "neg_large", "equal")}
    pattern = either(op("log", op("sum", op("mul", SOFTMAX, Var("oh")), bind="r")),
                     op("log", op("take_along_axis", SOFTMAX, Var("idx"), bind="take")))

    def when(self, ws, m):
        k = softmax_axis(ws, m)
        if k is None:
            return False
        if "take" in m.nodes:
            return axis_of(ws, ws.nodes[m["take"]]) == k
        if ws.type(m["oh"]).rank > ws.type(m["x"]).rank:
            return False
        r = ws.nodes[m["r"]]
        axes = reduced_axes(ws, r)
        if axes != (k,) and not (ws.type(m["x"]).rank == 1 and axes == (0,)):
            return False
        index = onehot_index(ws, m["oh"], m["x"], k)
        m.extra.update(axis=k, index=index)
        if index is not None and index[0] == "node":
            m.interior.append(m["oh"])  # one_hot(t) is part of what is rewritten: t is the input
        return index is not None

    def build(self, b, m):
        if "take" in m.nodes:
            k = axis_of(b, b.nodes[m["take"]])
            return b("take_along_axis", b("log_softmax", m["x"], axis=k), m["idx"], axis=k)
        k = m.extra["axis"]
        kind, data = m.extra["index"]
        idx = b.constant(data, "int64") if kind == "const" else b("expand_dims", data, axis=-1)
        picked = b("take_along_axis", b("log_softmax", m["x"], axis=k), idx, axis=k)
        a = b.attrs(b.nodes[m["r"]])
        return b("sum", picked, axis=a["axis"], keepdims=a["keepdims"])

    def risk(self, dtype):
        d = _dt(dtype)
        return (f"the picked probability underflows to 0 when its logit is {-EXP_MIN[d]:.0f} below the row's max in "
                f"{d}, and log(0) = -inf; a hand-written softmax also overflows above {EXP_MAX[d]:.1f}")


class CrossEntropy(Rule):
    """-sum(onehot * log_softmax(s)) = cross_entropy(s, t, reduction='sum')

    Also the mean over rows (reduction 'mean'), per row ('none'), and the gather form
    -take_along_axis(log_softmax(s), t[..., None], -1). The class axis must be the last; the
    targets t come from one_hot(t), from an index expand_dims(t, -1), or from a constant
    (one-hot rows or indices). The fused op's value and gradient (softmax - onehot) are one
    stable expression, and -inf logits (masks) no longer give 0 * -inf = NaN.
    """

    name = "cross_entropy"
    log_domain = True
    roots = ("neg", "sum", "mean")
    example = ("-sum(one_hot(t, depth=10) * log_softmax(s))", "cross_entropy(s, t, reduction='sum')")
    extremes = {"x": ("large", "spread", "neg_large", "equal")}

    def match(self, ws, node):
        for inner, red in self._peel(ws, node):
            q = self._rows(ws, inner)
            if q is None:
                continue
            s, targets, per_row, keep_axis, interior = q
            if red == "mean" and not per_row:
                continue
            if red == "none" and not per_row:
                red = "sum"  # the total over every row and class: a sum already
            chain = self._chain(ws, node, inner)
            m = Match(root=node.name, vars={"x": s}, interior=chain + interior)
            m.extra.update(s=s, targets=targets, reduction=red, keep_axis=keep_axis and red == "none")
            if isinstance(targets, str):
                m.vars["t"] = targets
            return m
        return None

    @staticmethod
    def _peel(ws, node):
        """The ways to read the root as neg(R(q)) or R(neg(q)), R a reduction over every axis
        or nothing: [(q, 'sum' | 'mean' | 'none')]."""
        def all_axes(n):
            return n.op in ("sum", "mean") and reduced_axes(ws, n) == tuple(range(ws.type(n.inputs[0]).rank))

        out = []
        if node.op == "neg":
            inner = ws.nodes.get(node.inputs[0])
            if inner is not None and all_axes(inner):
                out.append((inner.inputs[0], inner.op))
            out.append((node.inputs[0], "none"))
        elif all_axes(node):
            neg = ws.nodes.get(node.inputs[0])
            if neg is not None and neg.op == "neg":
                out.append((neg.inputs[0], node.op))
        return out

    @staticmethod
    def _chain(ws, node, inner):
        out, n = [node.name], node
        while n.inputs[0] != inner:
            n = ws.nodes[n.inputs[0]]
            out.append(n.name)
        return out

    def _rows(self, ws, name):
        """(s, targets, per_row, keeps_class_axis, interior) for a picked log-probability."""
        node = ws.nodes.get(name)
        if node is None:
            return None
        if node.op == "take_along_axis":
            ls, idx = node.inputs
            s = self._log_softmax_last(ws, ls)
            if s is None or axis_of(ws, node) != ws.type(s).rank - 1:
                return None
            targets = self._targets_from_index(ws, idx, s)
            if targets is None:
                return None
            extra = [idx] if isinstance(targets, str) and idx in ws.nodes else []
            return s, targets, True, True, [name, ls] + extra
        if node.op == "sum":
            prod = ws.nodes.get(node.inputs[0])
            if prod is not None and prod.op == "take_along_axis":  # the form log_softmax_pick writes
                q = self._rows(ws, prod.name)
                if q is None:
                    return None
                s, targets, _, _, interior = q
                rank = ws.type(s).rank
                axes = reduced_axes(ws, node)
                if axes not in ((rank - 1,), tuple(range(rank))):
                    return None
                per_row = axes == (rank - 1,)
                return s, targets, per_row, per_row and ws.attrs(node)["keepdims"], [name] + interior
            if prod is None or prod.op != "mul":
                return None
            for ls, oh in (prod.inputs, prod.inputs[::-1]):
                s = self._log_softmax_last(ws, ls)
                if s is None:
                    continue
                rank = ws.type(s).rank
                axes = reduced_axes(ws, node)
                if ws.type(oh).rank > rank or axes not in ((rank - 1,), tuple(range(rank))):
                    continue
                index = onehot_index(ws, oh, s, rank - 1)
                if index is None:
                    continue
                kind, data = index
                if kind == "node" and ws.shape_of(data) != ws.shape_of(s)[:-1]:
                    continue
                targets = data if kind == "node" else self._full_targets(ws, data[..., 0], s)
                if targets is None:
                    continue
                per_row = axes == (rank - 1,) or rank == 1
                keeps = per_row and ws.attrs(node)["keepdims"]
                extra = [oh] if oh in ws.nodes else []
                return s, targets, per_row, keeps, [name, prod.name, ls] + extra
        return None

    @staticmethod
    def _log_softmax_last(ws, name):
        node = ws.nodes.get(name)
        if node is None or node.op != "log_softmax":
            return None
        s = node.inputs[0]
        t = ws.type(s)
        if t.rank < 1 or not t.dtype.startswith("float") or axis_of(ws, node) != t.rank - 1:
            return None
        return s

    def _targets_from_index(self, ws, idx, s):
        node = ws.nodes.get(idx)
        if node is not None:
            if node.op != "expand_dims":
                return None
            axis = ws.attrs(node)["axis"]
            axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
            t = node.inputs[0]
            if not isinstance(axis, int) or axis % ws.type(idx).rank != ws.type(idx).rank - 1:
                return None
            shape, want = ws.shape_of(t), ws.shape_of(s)[:-1]
            return t if shape == want else None
        value = ws.tensors.get(idx)
        if value is None or value.kind != "constant" or value.value is None or value.value.ndim != ws.type(s).rank:
            return None
        if value.value.shape[-1] != 1:
            return None
        return self._full_targets(ws, value.value[..., 0], s)

    @staticmethod
    def _full_targets(ws, data, s):
        """Constant targets broadcast to s.shape[:-1] (which must be known)."""
        shape = ws.shape_of(s)[:-1]
        if not all(d.is_const for d in shape):
            return None
        try:
            return np.broadcast_to(np.asarray(data, np.int64), tuple(d.value for d in shape)).copy()
        except ValueError:
            return None

    def build(self, b, m):
        t = m.extra["targets"]
        targets = t if isinstance(t, str) else b.constant(t, "int64")
        ce = b("cross_entropy", m.extra["s"], targets, reduction=m.extra["reduction"])
        return b("expand_dims", ce, axis=-1) if m.extra["keep_axis"] else ce

    def risk(self, dtype):
        return ("cross entropy spelled out: cross_entropy computes the value and its gradient (softmax - onehot) in "
                "one stable step, and a one-hot product turns -inf logits (masks) into 0 * -inf = NaN")


# simplification rules ---------------------------------------------------------------------------


class CSE(Rule):
    """f(a, b) computed twice = computed once (common-subexpression elimination)

    A node with the same op, inputs and attrs as an earlier one reads the earlier one
    instead. Scalar constants of equal value and type count as the same input. An output
    that repeats another output is left (it keeps its own name).
    """

    name = "cse"
    kind = "simplify"
    example = ("a: exp(x)\nb: exp(x)", "b reads a")

    def start_sweep(self, ws):
        self.first: dict = {}
        for name, node in ws.nodes.items():
            self.first.setdefault(self._key(ws, node), name)

    def _key(self, ws, node):
        ins = []
        for i in node.inputs:
            t = ws.tensors.get(i)
            if t is not None and t.kind == "constant" and t.value is not None and t.value.ndim == 0:
                ins.append(("const", t.dtype, t.type.weak, t.value.item()))
            else:
                ins.append(i)
        attrs = get_op(node.op).full_attrs(node.attrs)
        return node.op, tuple(ins), repr(sorted(attrs.items()))

    def match(self, ws, node):
        if node.name in ws.protected:
            return None
        key = self._key(ws, node)
        first = self.first.get(key)
        if first is None or first == node.name or first not in ws.nodes or self._key(ws, ws.nodes[first]) != key:
            return None
        return Match(root=node.name, interior=[node.name], extra={"same": first})

    def build(self, b, m):
        return m.extra["same"]


class ConstantFold(Rule):
    """f(constants) = constant (constant folding)

    A node whose inputs are all constants becomes a constant with the value the executor
    would compute, keeping the node's name and type (weak scalars stay weak). Results larger
    than 4096 elements are left as nodes, so a broadcast does not bloat the file.
    """

    name = "fold"
    kind = "simplify"
    example = ("y: 2 * 3", "y: 6.0 (a constant)")
    LIMIT = 4096

    def match(self, ws, node):
        values = []
        for i in node.inputs:
            t = ws.tensors.get(i)
            if t is None or t.kind != "constant" or t.value is None:
                return None
            values.append(t.value.item() if t.type.weak else t.value)
        opdef = get_op(node.op)
        out_type = ws.type(node.name)
        try:
            with np.errstate(all="ignore"):
                out = opdef.forward(*values, **opdef.prepare(node.attrs, {}))
            out = np.asarray(out).astype(out_type.dtype)
        except Exception:  # a kernel error (bad target), unbound dims: leave the node
            return None
        if out.size > self.LIMIT or (out_type.weak and out.ndim != 0):
            return None
        return Match(root=node.name, interior=[node.name], extra={"value": out})

    def build(self, b, m):
        t = b.type(m.root)
        name = b.constant(m.extra["value"], t.dtype)
        if t.weak:
            from dataclasses import replace

            b.tensors[name] = replace(b.tensors[name], type=replace(b.tensors[name].type, weak=True))
            b.types[name] = b.tensors[name].type
        return name


class DeadNodes(Rule):
    """a node no output reads = nothing (dead-node elimination)

    Runs after each sweep; also drops constants nothing reads. Inputs and params stay: they
    are the graph's interface.
    """

    name = "dce"
    kind = "simplify"
    global_pass = True
    example = ("tmp: exp(x)   # read by no output", "(removed)")

    def run(self, ws):
        from .engine import Applied

        dead = ws.prune()
        ws.unread_at_start = set()
        owners: dict[str, Applied] = {}
        for n in dead:
            node = ws.graph.nodes.get(n)
            owner = (node.owner or n) if node is not None else n
            if owner not in owners:
                loc = ws.graph.loc(owner)
                owners[owner] = Applied(self.name, owner, owner, loc.path or ws.graph.path, loc.line,
                                        note="removed: no output depends on it")
        return list(owners.values())


class _ToX(Rule):
    """Base of the algebraic identities whose right-hand side is the matched `x` itself."""

    kind = "simplify"

    def build(self, b, m):
        return m["x"]


class MulOne(_ToX):
    """x * 1 = x, x / 1 = x"""

    name = "mul_one"
    roots = ("mul", "div")
    example = ("x * 1", "x")
    pattern = either(op("mul", X, Const(1)), op("div", X, Const(1)))


class AddZero(_ToX):
    """x + 0 = x, x - 0 = x"""

    name = "add_zero"
    roots = ("add", "sub")
    example = ("x + 0", "x")
    pattern = either(op("add", X, Const(0)), op("sub", X, Const(0)))


class NegNeg(_ToX):
    """-(-x) = x"""

    name = "neg_neg"
    roots = ("neg",)
    example = ("-(-x)", "x")
    pattern = op("neg", op("neg", X))


class TransposeTranspose(Rule):
    """transpose(transpose(x, p), q) = transpose(x, [p[i] for i in q]) (x when that is the identity)"""

    name = "transpose_transpose"
    kind = "simplify"
    roots = ("transpose",)
    example = ("transpose(transpose(x, perm=[1, 2, 0]), perm=[2, 0, 1])", "x")
    pattern = op("transpose", op("transpose", X, bind="inner"), bind="outer")

    @staticmethod
    def _perm(b, node):
        rank = b.type(node.inputs[0]).rank
        p = b.attrs(node)["perm"]
        return [a % rank for a in p] if p is not None else list(reversed(range(rank)))

    def build(self, b, m):
        p, q = self._perm(b, b.nodes[m["inner"]]), self._perm(b, b.nodes[m["outer"]])
        composed = [p[i] for i in q]
        if composed == list(range(len(composed))):
            return m["x"]
        return b("transpose", m["x"], perm=composed)


class ReshapeReshape(Rule):
    """reshape(reshape(x, s1), s2) = reshape(x, s2) (x when s2 is x's shape)"""

    name = "reshape_reshape"
    kind = "simplify"
    roots = ("reshape",)
    example = ("reshape(reshape(x, shape=[6]), shape=[3, 2])", "reshape(x, shape=[3, 2])")
    pattern = op("reshape", op("reshape", X), bind="outer")

    def build(self, b, m):
        if b.shape_of(m["x"]) == b.shape_of(m.root):
            return m["x"]
        return b("reshape", m["x"], shape=b.nodes[m["outer"]].attrs["shape"])


# lowering (--expand) ----------------------------------------------------------------------------


class ExpandLogsumexp(Rule):
    """logsumexp(x, axis) = m + log(sum(exp(x - m), axis)), m = stop_gradient(max(x, axis))

    Run once after the fixed point by `--expand`, for targets without a logsumexp op. m is
    replaced by 0 where it is not finite (rows of -inf, or +inf), as the op's forward does;
    stop_gradient keeps the gradient softmax, and the logsumexp rule does not match the
    shifted exp again.
    """

    name = "expand_logsumexp"
    kind = "lowering"
    roots = ("logsumexp",)
    example = ("logsumexp(x, axis=1)", "m + log(sum(exp(x - m), axis=1)), m = stop_gradient(max(x, axis=1, keepdims=true))")
    extremes = {"x": ("large", "neg_large", "spread", "equal", "neginf", "inf")}

    def match(self, ws, node):
        return Match(root=node.name, vars={"x": node.inputs[0]}, interior=[node.name])

    def build(self, b, m):
        x = m["x"]
        a = b.attrs(b.nodes[m.root])
        mx = b("max", x, axis=a["axis"], keepdims=True)
        finite = b("less", b("abs", mx), b.const(float("inf")))
        shift = b("stop_gradient", b("where", finite, mx, b.const(0)))
        total = b("sum", b("exp", b("sub", x, shift)), axis=a["axis"], keepdims=a["keepdims"])
        if not a["keepdims"]:
            axes = list(reduced_axes(b, b.nodes[m.root]))
            shift = b("squeeze", shift, axis=axes) if axes else shift
        return b("add", shift, b("log", total))


STABILITY: list[Rule] = [
    CrossEntropy(), LogSoftmaxPick(), LogSumExp(), LogSoftmax(), Softmax(), LogSoftmaxFromLse(), SoftmaxFromExp(),
    Softplus(), LogSigmoid(), Log1mSigmoid(), Log1p(), Expm1(), OneMinusSigmoid(), SigmoidFromExp(),
]
SIMPLIFY: list[Rule] = [ConstantFold(), CSE(), MulOne(), AddZero(), NegNeg(), TransposeTranspose(), ReshapeReshape(),
                        DeadNodes()]
RULES: list[Rule] = STABILITY + SIMPLIFY
EXPANSIONS: list[Rule] = [ExpandLogsumexp()]
BY_NAME: dict[str, Rule] = {r.name: r for r in RULES + EXPANSIONS}
