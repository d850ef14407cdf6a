"""Text of a drawing: numbers, value summaries, shapes, and a node written as the expression
shorthand would write it (cluster labels, --diff, explain). No layout and no DOT here; the
drawing's escaping happens when the DOT is written (render_dot.quote / html_text).
"""

from __future__ import annotations

import math

import numpy as np

from .dims import format_shape
from .ir import Graph, Node, Tensor

# small text helpers ---------------------------------------------------------------------------


def num(v) -> str:
    """A number as the reports print it (6 significant digits; ints and bools as written)."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    text = f"{v:.6g}"
    return "0" if text == "-0" else text


def summary(a, digits: int = 4) -> str:
    """A scalar's value, or min/mean/max of a tensor (with its NaN and Inf counts)."""
    a = np.asarray(a)
    if a.ndim == 0:
        return num(a.item())
    if a.size == 0:
        return "empty"
    f = (lambda v: f"{float(v):.{digits}g}") if a.dtype.kind == "f" else num
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    text = (f"min {f(finite.min())} · mean {f(np.mean(finite))} · max {f(finite.max())}" if finite.size
            else "no finite values")
    if a.dtype.kind == "f":
        nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        if nan or inf:
            text += f" ({nan} NaN, {inf} Inf)"
    return text


def nonfinite(a) -> str | None:
    """'NaN' or 'Inf' when a float array holds one, else None."""
    a = np.asarray(a)
    if a.dtype.kind != "f" or np.isfinite(a).all():
        return None
    return "NaN" if np.isnan(a).any() else "Inf"


def type_text(t) -> str:
    return f"{format_shape(t.shape)} {t.dtype}" + (" weak" if t.weak else "")


def human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 ** 2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 ** 2:.1f} MiB"


def is_literal(t: Tensor | None) -> bool:
    """A generated weak scalar (a number written in an expression, or one autodiff added)."""
    return t is not None and t.name.startswith("__") and t.kind == "constant" and t.type.weak and t.value is not None


def literal_text(t: Tensor) -> str:
    return num(np.asarray(t.value).item())


def _attr_text(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return f"'{v}'"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_attr_text(x) for x in v) + "]"
    return str(v)


def attrs_text(node: Node) -> str:
    """The attrs written on the node (defaults left out), as the shorthand writes them."""
    return ", ".join(f"{k}={_attr_text(v)}" for k, v in node.attrs.items() if v is not None)


# formulas: a node as the expression shorthand would write it ----------------------------------

_INFIX = {"add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2), "matmul": ("@", 2),
          "pow": ("**", 4), "greater": (">", 0), "less": ("<", 0), "equal": ("==", 0)}
_ATOM, _UNARY, _NEGATIVE = 5, 3, 2.5  # a negative number gets parentheses after - and **, and on the right of *


def expression(graph: Graph, name: str, inline=lambda n: False, rename: dict[str, str] | None = None) -> str:
    """The expression for `name`'s node; inputs for which `inline(n)` holds are expanded too, and
    `rename` writes some inputs differently (explain puts their values there)."""
    node = graph.nodes.get(name)
    return name if node is None else _node_expr(graph, node, inline, rename or {})[0]


def formula(graph: Graph, name: str) -> str:
    """`owner = relu(x @ W1 + b1)`: a user node with its shorthand intermediates folded back in."""
    owner_of = {n.name: n.owner for n in graph.nodes.values() if n.owner}
    return f"{name} = {expression(graph, name, lambda n: owner_of.get(n) == name)}"


def _operand(graph: Graph, name: str, inline, rename: dict[str, str]) -> tuple[str, int]:
    t = graph.tensors.get(name)
    node = graph.nodes.get(name)
    if node is not None and inline(name):
        return _node_expr(graph, node, inline, rename)
    text = literal_text(t) if is_literal(t) else rename.get(name, name)
    return text, _NEGATIVE if text.startswith("-") else _ATOM


def _node_expr(graph: Graph, node: Node, inline, rename: dict[str, str]) -> tuple[str, int]:
    args = [_operand(graph, i, inline, rename) for i in node.inputs]
    if node.op in _INFIX and len(args) == 2 and not attrs_text(node):
        sym, p = _INFIX[node.op]
        (a, pa), (b, pb) = args
        left_min, right_min = (_ATOM, _UNARY) if node.op == "pow" else (p, p + 1)
        a = a if pa >= left_min else f"({a})"
        b = b if pb >= right_min else f"({b})"
        return f"{a} {sym} {b}", p
    if node.op == "neg" and len(args) == 1:
        a, pa = args[0]
        return "-" + (a if pa >= _UNARY else f"({a})"), _UNARY
    extra = attrs_text(node)
    return f"{node.op}({', '.join([a for a, _ in args] + ([extra] if extra else []))})", _ATOM


def op_text(graph: Graph, node: Node) -> str:
    """The op line of a box: `add`, `pow(·, 2)` (a folded literal), `sum axis=1`."""
    text = node.op
    if any(is_literal(graph.tensors.get(i)) for i in node.inputs):
        args = [literal_text(graph.tensors[i]) if is_literal(graph.tensors.get(i)) else "·" for i in node.inputs]
        text += "(" + ", ".join(args) + ")"
    extra = attrs_text(node)
    return f"{text} {extra}" if extra else text

