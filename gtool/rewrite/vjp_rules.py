"""Gradient-graph rules that fuse what a VJP rule recomputes with what the forward computed,
and fold the sign flips reverse mode writes into the arithmetic around them.

All of them are identities of the values, bit for bit (negation is exact, and a + (-b) is
how IEEE 754 defines a - b), so `simplify_backward`'s promise holds: the simplified gradient
graph computes the same loss and gradients as reverse mode's own.

- `ShareSigmoidSlope`: sigmoid's VJP computes t = e^-|x| and 1 + t (its slope is
  t / (1 + t)^2, exact in both tails); the forward computes the same two values inside the
  op. Writing the forward out as nodes (its template's steps, the same bits) lets CSE compute
  them once: the backward of a sigmoid then costs three passes over the data instead of seven.
- `MulSelf`: x * x = square(x), one read of x instead of two.
- `NegOutOfMul`, `NegIntoNumber`, `AddNeg`: `(-a) * b = -(a b)`, `k (-a) = (-k) a`,
  `a + (-b) = a - b`, `a - (-b) = a + b`. The VJP of `neg` is a `neg` of the incoming
  gradient; moved outwards, it meets a number factor or a sum and disappears.
"""

from __future__ import annotations

import weakref

from .base import Rule
from .pattern import Match

BIG = 4096  # elements: a negation of fewer is left where it is (see _OnceRead._single_use)


def _slope_exp(ws, x: str) -> str | None:
    """The node exp(neg(abs(x))) if the graph has one (the sigmoid slope's t), else None:
    three linear scans (a graph may hold many abs, neg and exp nodes)."""
    nodes = ws.nodes.values()
    absolute = {n.name for n in nodes if n.op == "abs" and n.inputs == (x,)}
    negated = {n.name for n in nodes if n.op == "neg" and n.inputs[0] in absolute} if absolute else set()
    return next((n.name for n in nodes if n.op == "exp" and n.inputs[0] in negated), None) if negated else None


class ShareSigmoidSlope(Rule):
    """sigmoid(x) = maximum(e, x >= 0) / (1 + e), e = exp(-|x|), where the graph also computes e

    sigmoid's VJP recomputes e = e^-|x| and 1 + e for its exact slope e / (1 + e)^2; written
    out as nodes, CSE shares them between the forward and the backward pass. The nodes are
    the record's template (ops/templates.py) with one step cheaper: its numerator
    min(1, e + [x >= 0]) is maximum(e, [x >= 0]), as 0 <= e <= 1 (1 for x >= 0, e for x < 0,
    NaN for NaN): one pass instead of an add of a bool array (a cast) and a minimum.
    """

    reach = "graph"

    name = "share_sigmoid_slope"
    kind = "simplify"
    roots = ("sigmoid",)
    example = ("s: sigmoid(x)   # and its VJP's exp(-abs(x))", "e = exp(-abs(x)); s = maximum(e, x >= 0) / (1 + e)")

    def match(self, ws, node):
        x = node.inputs[0]
        t = ws.type(x)
        if not t.dtype.startswith("float") or t.weak or _slope_exp(ws, x) is None:
            return None
        return Match(root=node.name, vars={"x": x}, interior=[node.name])

    def build(self, b, m):
        x = m["x"]
        e = b("exp", b("neg", b("abs", x)))
        return b("div", b("maximum", e, b("greater_equal", x, b.const(0))), b("add", b.const(1), e))


class MulSelf(Rule):
    """x * x = square(x) (exact: both are the correctly rounded product)

    NumPy's square reads its operand once: a fifth faster than multiply on big arrays.
    """

    reach = 1

    name = "mul_self"
    kind = "simplify"
    roots = ("mul",)
    example = ("r * r", "square(r)")

    def match(self, ws, node):
        a, c = node.inputs
        if a != c or not _float(ws, node.name, a):
            return None
        return Match(root=node.name, vars={"x": a}, interior=[node.name])

    def build(self, b, m):
        return b("square", m["x"])


class _OnceRead(Rule):
    """Base of the sign rules: they move a negation only where one node reads it (so no pass
    is added). The readers are counted once per sweep (a graph of thousands of nodes would
    otherwise be scanned per candidate); a negation made during the sweep waits for the next."""

    reach = 1

    _reads: dict[str, int] = {}  # before any sweep: nothing counts as read once
    _last = None  # (workspace, sweep, counts): the three sign rules count once per sweep

    def start_sweep(self, ws):
        sweep = getattr(ws, "sweep", None)
        last = _OnceRead._last
        if sweep is not None and last is not None and last[0]() is ws and last[1] == sweep:
            self._reads = last[2]
            return
        reads: dict[str, int] = {}
        for node in ws.nodes.values():
            for i in node.inputs:
                reads[i] = reads.get(i, 0) + 1
        self._reads = reads
        _OnceRead._last = (weakref.ref(ws), sweep, reads) if sweep is not None else None

    def _single_use(self, ws, name: str) -> bool:
        """Read by one node, and big enough that a pass over it is worth a rewrite: each
        application costs the engine a scan of the graph (a chain of 667 cos VJPs took 2.8 s
        instead of 0.3 s to simplify), while a negation of a small value costs well under a
        microsecond a run. Sizes that depend on a dim count as big."""
        if name in ws.protected or self._reads.get(name) != 1:
            return False
        size = 1
        for d in ws.type(name).shape:
            d = ws.ctx.resolve(d)
            if not d.is_const:
                return True
            size *= d.value
        return size >= BIG


def _float(ws, *names) -> bool:
    return all(ws.type(n).dtype.startswith("float") for n in names)


def _number(ws, name: str) -> bool:
    """A one-number constant of rank 0 whose negation is exact: a float, or a weak (literal) integer."""
    t = ws.tensors.get(name)
    return t is not None and t.kind == "constant" and t.value is not None and t.value.ndim == 0 \
        and (t.value.dtype.kind == "f" or (t.type.weak and t.value.dtype.kind == "i"))


def _neg_operand(ws, node):
    """(the neg node, the other operand) of a product with a negated operand, or None. Read
    directly rather than by a pattern: every product of a gradient graph is looked at."""
    for k in (0, 1):
        neg = ws.nodes.get(node.inputs[k])
        if neg is not None and neg.op == "neg":
            return neg, node.inputs[1 - k]
    return None


class NegOutOfMul(_OnceRead):
    """(-a) * b = -(a * b) (exact: rounding is symmetric in sign)

    Moves the negation a VJP wrote outwards, where `neg_into_number` or `add_neg` removes it;
    only for a negation read by this product alone, so no pass is added.
    """

    name = "neg_out_of_mul"
    kind = "simplify"
    roots = ("mul",)
    example = ("(-g) * x", "-(g * x)")

    def match(self, ws, node):
        found = _neg_operand(ws, node)
        if found is None:
            return None
        neg, other = found
        o = ws.nodes.get(other)
        if (o is not None and o.op == "neg") or _number(ws, other):  # -a * -b: neg_neg's; k * (-a): the next rule's
            return None
        if not _float(ws, node.name, neg.inputs[0], other) or not self._single_use(ws, neg.name):
            return None
        return Match(root=node.name, vars={"a": neg.inputs[0], "b": other}, interior=[node.name, neg.name])

    def build(self, b, m):
        return b("neg", b("mul", m["a"], m["b"]))


class NegIntoNumber(_OnceRead):
    """k * (-a) = (-k) * a for a number constant k (exact: negation only flips the sign)"""

    name = "neg_into_number"
    kind = "simplify"
    roots = ("mul",)
    example = ("2 * (-(g * x))", "-2 * (g * x)")

    def match(self, ws, node):
        found = _neg_operand(ws, node)
        if found is None or not _number(ws, found[1]):
            return None
        neg, k = found
        if not _float(ws, node.name, neg.inputs[0]) or not self._single_use(ws, neg.name):
            return None
        return Match(root=node.name, vars={"x": neg.inputs[0], "k": k}, interior=[node.name, neg.name])

    def build(self, b, m):
        k = b.tensors[m["k"]]
        if k.type.weak:
            return b("mul", b.const(-float(k.value)), m["x"])
        return b("mul", b.constant(-k.value, k.dtype), m["x"])


class AddNeg(_OnceRead):
    """a + (-b) = a - b, a - (-b) = a + b (IEEE 754 defines a - b as a + (-b))"""

    name = "add_neg"
    kind = "simplify"
    roots = ("add", "sub")
    example = ("u + (-(v))", "u - v")

    def match(self, ws, node):
        for k in (1, 0) if node.op == "add" else (1,):
            neg = ws.nodes.get(node.inputs[k])
            if neg is not None and neg.op == "neg" and _float(ws, node.name, *node.inputs) \
                    and self._single_use(ws, neg.name):
                return Match(root=node.name, vars={"a": node.inputs[1 - k], "b": neg.inputs[0]},
                             interior=[node.name, neg.name])
        return None

    def build(self, b, m):
        return b("sub" if b.nodes[m.root].op == "add" else "add", m["a"], m["b"])


VJP_RULES: list[Rule] = [ShareSigmoidSlope(), MulSelf(), NegOutOfMul(), NegIntoNumber(), AddNeg()]
