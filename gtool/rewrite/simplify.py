"""Simplification rules (CSE, constant folding, dead nodes, algebraic identities), which clean
up and expose patterns the stability rules then match, and the `--expand` lowering of
logsumexp for targets without that op.

One class per rule; the docstring's first line is the identity it uses.
"""

from __future__ import annotations

import weakref

import numpy as np

from ..ops.registry import get_op
from .base import Rule, X, reduced_axes
from .pattern import Const, Match, either, op
from .vjp_rules import VJP_RULES

# simplification rules ---------------------------------------------------------------------------


class CSE(Rule):
    """f(a, b) computed twice = computed once (common-subexpression elimination)

    A node with the same op, inputs and attrs as an earlier one reads the earlier one
    instead. Scalar constants of equal value and type count as the same input. An output
    that repeats another output is left (it keeps its own name).
    """

    reach = "graph"

    name = "cse"
    kind = "simplify"
    example = ("a: exp(x)\nb: exp(x)", "b reads a")

    def start_sweep(self, ws):
        """The first node of each key, in graph order. Keys carry over from the last sweep
        of the same engine workspace for nodes that neither changed nor read a changed name
        (the engine's `dirty`: what the last sweep touched), so a long graph is not re-keyed."""
        self._defaults: dict[str, str] = {}
        dirty = getattr(ws, "dirty", None)
        last = self.__dict__.get("_ws")
        if dirty is None or getattr(ws, "all_dirty", True) or last is None or last() is not ws:
            self._seen: dict = {}
        self._ws = weakref.ref(ws) if dirty is not None else None
        old, self._seen, self.first = self._seen, {}, {}
        for name, node in ws.nodes.items():
            kept = old.get(name)
            if kept is not None and kept[0] is node and name not in dirty and dirty.isdisjoint(node.inputs):
                key = kept[1]
            else:
                key = self._key(ws, node)
            self._seen[name] = (node, key)
            self.first.setdefault(key, name)

    def _key_now(self, ws, node):
        """The node's key: the one from the sweep's start when neither the node nor its inputs
        changed since (the engine's `dirty` names), else computed again."""
        dirty = getattr(ws, "dirty", None)
        kept = self._seen.get(node.name)
        if dirty is not None and kept is not None and kept[0] is node and dirty.isdisjoint(node.inputs):
            return kept[1]
        return self._key(ws, node)

    def _key(self, ws, node):
        ins = []
        for i in node.inputs:
            t = ws.tensors.get(i)
            if t is not None and t.kind == "constant" and t.value is not None and t.value.ndim == 0:
                ins.append(("const", t.dtype, t.type.weak, t.value.item()))
            else:
                ins.append(i)
        if node.attrs:
            return node.op, tuple(ins), repr(sorted(get_op(node.op).full_attrs(node.attrs).items()))
        shown = self._defaults.get(node.op)  # most nodes have no attrs: their defaults, shown once per op
        if shown is None:
            shown = self._defaults[node.op] = repr(sorted(get_op(node.op).full_attrs({}).items()))
        return node.op, tuple(ins), shown

    def match(self, ws, node):
        if node.name in ws.protected:
            return None
        key = self._key_now(ws, node)
        first = self.first.get(key)
        if first is None or first == node.name or first not in ws.nodes or self._key_now(ws, ws.nodes[first]) != key:
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

    reach = 1

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
    records_changes = True  # ws.prune notes what it deletes (the engine's incremental sweeps)
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

    reach = 1

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

    reach = 1

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

    reach = 1

    name = "reshape_reshape"
    kind = "simplify"
    roots = ("reshape",)
    example = ("reshape(reshape(x, shape=[6]), shape=[3, 2])", "reshape(x, shape=[3, 2])")
    pattern = op("reshape", op("reshape", X), bind="outer")

    def build(self, b, m):
        if b.shape_of(m["x"]) == b.shape_of(m.root):
            return m["x"]
        return b("reshape", m["x"], shape=b.nodes[m["outer"]].attrs["shape"])


class ScalarFold(ConstantFold):
    """f(constants) = constant, for one-number results only (scalar folding)

    The gradient graphs' folding: a broadcast of a folded scalar stays a broadcast (which
    the elementwise op reading it usually drops) rather than becoming a stored array.
    """

    name = "fold_scalar"
    example = ("y: 2 * 0.5", "y: 1.0 (a constant)")
    LIMIT = 1


class IdentityNode(_ToX):
    """identity(x) = x

    An output keeps its name: the engine leaves a copy there (`simplify_backward` then
    names the node computing it after the output instead).
    """

    name = "identity"
    roots = ("identity",)
    example = ("y: identity(x)", "x")
    pattern = op("identity", X)

    def when(self, ws, m):
        return m.root not in ws.protected


ELEMENTWISE_BINARY = ("add", "sub", "mul", "div", "maximum", "minimum")


class BroadcastOperand(Rule):
    """f(broadcast_to(x), y) = f(x, y) for an elementwise f when y alone gives the result's shape

    The elementwise op broadcasts x itself, so the broadcast array is never stored (the
    gradient of a sum is a broadcast of a scalar, read by the next VJP's multiply).
    """

    reach = 1

    name = "broadcast_operand"
    kind = "simplify"
    roots = ELEMENTWISE_BINARY
    example = ("broadcast_to(s, shape=[n]) * y   # y: [n]", "s * y")

    def match(self, ws, node):
        if len(node.inputs) != 2:
            return None
        for k, i in enumerate(node.inputs):
            bc = ws.nodes.get(i)
            other = node.inputs[1 - k]
            if bc is not None and bc.op == "broadcast_to" and ws.same_type(other, node.name):
                ins = list(node.inputs)
                ins[k] = bc.inputs[0]
                return Match(root=node.name, interior=[node.name, i], extra={"inputs": ins})
        return None

    def build(self, b, m):
        return b(b.nodes[m.root].op, *m.extra["inputs"])


class BroadcastLater(Rule):
    """f(broadcast_to(x, s), c) = broadcast_to(f(x, c), s) for an elementwise f and a number c

    Moves a broadcast past arithmetic with a number, so the arithmetic is done on the small
    value (folded when x is a constant) and the broadcast meets an operand that drops it.
    """

    reach = 1

    name = "broadcast_later"
    kind = "simplify"
    roots = ELEMENTWISE_BINARY
    example = ("broadcast_to(g, shape=[n]) * 1.01", "broadcast_to(g * 1.01, shape=[n])")

    def match(self, ws, node):
        if len(node.inputs) != 2:
            return None
        for k, i in enumerate(node.inputs):
            bc = ws.nodes.get(i)
            if bc is not None and bc.op == "broadcast_to" and ws.type(node.inputs[1 - k]).rank == 0:
                ins = list(node.inputs)
                ins[k] = bc.inputs[0]
                return Match(root=node.name, interior=[node.name, i], extra={"inputs": ins, "bc": i})
        return None

    def build(self, b, m):
        small = b(b.nodes[m.root].op, *m.extra["inputs"])
        return b("broadcast_to", small, **b.nodes[m.extra["bc"]].attrs)


class PowTwo(Rule):
    """x ** 2 = x * x (exact: pow is correctly rounded at 2, so both give the rounded square)

    The multiply skips pow's edge handling ((-inf) ** y), which costs more than the power
    on small values; NaN, ±inf, ±0, subnormals and overflow come out the same.
    """

    reach = 1

    name = "pow_two"
    kind = "simplify"
    roots = ("pow",)
    example = ("x ** 2", "x * x")
    pattern = op("pow", X, Const(2))

    def when(self, ws, m):
        return ws.type(m["x"]).dtype.startswith("float")

    def build(self, b, m):
        return b("mul", m["x"], m["x"])


class OuterMatmul(Rule):
    """a @ b = a * b for a of shape [n, 1] and b of shape [1, m] (an outer product)

    Each element is one product and no sum, so the broadcast multiply gives the same values
    without a BLAS call of inner size 1 (a matvec's weight gradient is this outer product);
    a product that is -0.0 stays -0.0 (BLAS's sum starts from +0.0 and gives +0.0).
    """

    reach = 1

    name = "outer_matmul"
    kind = "simplify"
    roots = ("matmul",)
    example = ("expand_dims(g, axis=-1) @ transpose(expand_dims(x, axis=-1))", "expand_dims(g, axis=-1) * ...")

    def match(self, ws, node):
        a, b = (ws.shape_of(i) for i in node.inputs)
        if len(a) == 2 and len(b) == 2 and a[1] == 1 and b[0] == 1 and ws.type(node.name).dtype.startswith("float"):
            return Match(root=node.name, interior=[node.name])
        return None

    def build(self, b, m):
        return b("mul", *b.nodes[m.root].inputs)


class AddSelf(Rule):
    """x + x = 2 * x (exact: doubling only changes the exponent)"""

    reach = 1

    name = "add_self"
    kind = "simplify"
    roots = ("add",)
    example = ("g * r + g * r", "2 * (g * r)")

    def match(self, ws, node):
        a, c = node.inputs
        if a != c or not ws.type(a).dtype.startswith("float"):
            return None
        return Match(root=node.name, vars={"x": a}, interior=[node.name])

    def build(self, b, m):
        return b("mul", b.const(2.0), m["x"])


class ScalarMulMul(Rule):
    """a * (b * x) = (a b) * x for number constants a, b whose product is exact

    Only when a b rounds to nothing (powers of two, 1, small integers), so the two
    multiplications become one without changing a bit of any finite result; `2 * (0.5 * r)`
    then becomes `1 * r`, which `mul_one` removes.
    """

    reach = 2

    name = "scalar_mul_mul"
    kind = "simplify"
    roots = ("mul",)
    example = ("2 * (0.5 * x)", "1.0 * x")

    @staticmethod
    def _number(ws, name):
        """A one-element number constant's value (the engine rolls back a product of another type)."""
        t = ws.tensors.get(name)
        if t is None or t.kind != "constant" or t.value is None or t.value.size != 1 or t.value.dtype.kind not in "iuf":
            return None
        return float(t.value.reshape(-1)[0])

    def _split(self, ws, name):
        """(number, other input) of a mul node with one float number constant input, or None."""
        node = ws.nodes.get(name)
        if node is None or node.op != "mul":
            return None
        for k in (0, 1):
            a = self._number(ws, node.inputs[k])
            if a is not None:
                return a, node.inputs[1 - k]
        return None

    def match(self, ws, node):
        from fractions import Fraction

        for k in (0, 1):
            a = self._number(ws, node.inputs[k])
            inner = self._split(ws, node.inputs[1 - k])
            if a is None or inner is None or not (np.isfinite(a) and np.isfinite(inner[0])):
                continue
            product = a * inner[0]
            if np.isfinite(product) and Fraction(a) * Fraction(inner[0]) == Fraction(product):
                return Match(root=node.name, vars={"x": inner[1]}, interior=[node.name, node.inputs[1 - k]],
                             extra={"k": product})
        return None

    def build(self, b, m):
        return b("mul", b.const(m.extra["k"]), m["x"])


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


SIMPLIFY: list[Rule] = [ConstantFold(), CSE(), MulOne(), AddZero(), NegNeg(), TransposeTranspose(), ReshapeReshape(),
                        DeadNodes()]
EXPANSIONS: list[Rule] = [ExpandLogsumexp()]
# run on every gradient graph (rewrite/backward.py): what reverse mode leaves behind
BACKWARD: list[Rule] = [ScalarFold(), CSE(), MulOne(), AddZero(), NegNeg(), IdentityNode(), BroadcastOperand(),
                        BroadcastLater(), AddSelf(), ScalarMulMul(), PowTwo(), OuterMatmul(), TransposeTranspose(),
                        ReshapeReshape(), *VJP_RULES, DeadNodes()]
