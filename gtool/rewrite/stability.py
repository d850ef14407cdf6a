"""Stability rules: route unstable subgraphs (exp feeding sums and logs, `1 + x` under a log,
`1 - sigmoid`, hand-written softmaxes and cross entropies) to the stable ops of the registry,
whose forward and VJP are written to avoid overflow and cancellation.

One class per rule; the docstring's first line is the identity it uses. `lint` matches these
(without applying them) to name unstable patterns; tests/test_near_misses.py holds, for each,
graphs it must not match.
"""

from __future__ import annotations

import numpy as np

from .base import (
    EXP_MAX,
    EXP_MIN,
    SOFTMAX,
    Rule,
    X,
    axis_of,
    broadcast_axis,
    dtype_or_f64,
    eps,
    onehot_index,
    reduced_axes,
    shifted,
    softmax_axis,
)
from .pattern import Const, Match, Var, either, op


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
        d = dtype_or_f64(dtype)
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
        d = dtype_or_f64(dtype)
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
        d = dtype_or_f64(dtype)
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
        d = dtype_or_f64(dtype)
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
        d = dtype_or_f64(dtype)
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
        d = dtype_or_f64(dtype)
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
        d = dtype_or_f64(dtype)
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
        d = dtype_or_f64(dtype)
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
        d = dtype_or_f64(dtype)
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
        d = dtype_or_f64(dtype)
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
        d = dtype_or_f64(dtype)
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
        d = dtype_or_f64(dtype)
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



STABILITY: list[Rule] = [  # priority order: larger patterns first
    CrossEntropy(), LogSoftmaxPick(), LogSumExp(), LogSoftmax(), Softmax(), LogSoftmaxFromLse(), SoftmaxFromExp(),
    Softplus(), LogSigmoid(), Log1mSigmoid(), Log1p(), Expm1(), OneMinusSigmoid(), SigmoidFromExp(),
]
