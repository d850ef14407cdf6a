"""ONNX Einsum as gtool primitives, so gradients, lint and every backend come for free.

The equation is parsed (explicit `->` or implicit output, `...` for broadcast axes), then:
repeated letters within an operand become a diagonal (take_along_axis with an arange),
letters used by one operand only are summed out early, operands are combined pairwise by
aligning their axes (transpose + expand_dims) and multiplying, and each letter is summed
away as soon as no later operand or the output needs it. A final transpose gives the
output order. Sums of products in another order than NumPy's einsum: equal up to rounding.
"""

from __future__ import annotations

import string

import numpy as np

from ..registry import ImportContext, OnnxNode, converter


def parse(equation: str, ranks: list[int]) -> tuple[list[list[str]], list[str]]:
    """Operand letter lists and output letters; `...` becomes upper-case letters, right-aligned."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"the equation has {len(terms)} operands, the node {len(ranks)} inputs")
    n_ell = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t), default=0)
    ell = list(string.ascii_uppercase[:n_ell])
    ops = []
    for t, r in zip(terms, ranks):
        if "..." in t:
            k = r - len(t.replace("...", ""))
            head, _, tail = t.partition("...")
            letters = list(head) + ell[n_ell - k:] + list(tail)
        else:
            letters = list(t)
        if len(letters) != r or not all(c.isalpha() for c in letters):
            raise ValueError(f"operand '{t}' does not fit an input of rank {r}")
        ops.append(letters)
    if arrow:
        out = list(rhs.replace("...", "".join(ell)))
    else:
        counts = {c: sum(o.count(c) for o in ops) for o in ops for c in o}
        out = ell + sorted(c for c, n in counts.items() if n == 1 and c not in ell)
    return ops, out


def _diagonal(ctx: ImportContext, node: OnnxNode, x: str, letters: list[str]) -> tuple[str, list[str]]:
    """x with every repeated letter reduced to its diagonal."""
    while True:
        dup = next((c for c in letters if letters.count(c) > 1), None)
        if dup is None:
            return x, letters
        p = letters.index(dup)
        q = letters.index(dup, p + 1)
        d = ctx.shape(x)[p]
        if not d.is_const:
            ctx.unsupported(node, f"a diagonal ('{dup}' twice) along a symbolic dim {d}")
        shape = [1] * len(letters)
        shape[p] = d.value
        index = ctx.const(np.arange(d.value, dtype=np.int64).reshape(shape))
        x = ctx.add("take_along_axis", [x, index], {"axis": q}, node)
        x = ctx.add("squeeze", [x], {"axis": q}, node)
        letters = letters[:q] + letters[q + 1:]


def _sum_out(ctx, node, x: str, letters: list[str], keep: set[str]) -> tuple[str, list[str]]:
    axes = [k for k, c in enumerate(letters) if c not in keep]
    if not axes:
        return x, letters
    return ctx.add("sum", [x], {"axis": axes}, node), [c for c in letters if c in keep]


def _align(ctx, node, x: str, letters: list[str], union: list[str]) -> str:
    """x's axes in `union` order, with size-1 axes for the letters it lacks."""
    order = sorted(range(len(letters)), key=lambda k: union.index(letters[k]))
    if order != list(range(len(letters))):
        x = ctx.add("transpose", [x], {"perm": order}, node)
    missing = [k for k, c in enumerate(union) if c not in letters]
    if missing:
        x = ctx.add("expand_dims", [x], {"axis": missing}, node)
    return x


@converter("Einsum", strict=True)
def einsum(ctx: ImportContext, node: OnnxNode) -> list[str]:
    """bfloat16 (storage-only in gtool) is contracted in float32 and rounded once at the end, as
    ONNX's own reference implementation of Einsum does (onnx/backend/test/case/node/einsum.py)."""
    names = [ctx.name(i) for i in node.input if i]
    if any(ctx.type(n).dtype == "bfloat16" for n in names):
        wide = [ctx.add("cast", [n], {"dtype": "float32"}, node) if ctx.type(n).dtype == "bfloat16" else n
                for n in names]
        return [ctx.add("cast", [_contract(ctx, node, wide)], {"dtype": "bfloat16"}, node)]
    return [_contract(ctx, node, names)]


def _contract(ctx: ImportContext, node: OnnxNode, names: list[str]) -> str:
    try:
        ops, out = parse(ctx.attr(node, "equation"), [len(ctx.shape(n)) for n in names])
    except ValueError as e:
        ctx.unsupported(node, f"the equation {ctx.attr(node, 'equation')!r}: {e}")
    terms = []
    for k, (x, letters) in enumerate(zip(names, ops)):
        x, letters = _diagonal(ctx, node, x, list(letters))
        later = set(out).union(*[set(o) for j, o in enumerate(ops) if j != k])
        terms.append(_sum_out(ctx, node, x, letters, later))
    acc, letters = terms[0]
    for k, (x, lx) in enumerate(terms[1:], start=1):
        union = letters + [c for c in lx if c not in letters]
        acc = ctx.add("mul", [_align(ctx, node, acc, letters, union), _align(ctx, node, x, lx, union)], {}, node)
        needed = set(out).union(*[set(o) for o in ops[k + 1:]])
        acc, letters = _sum_out(ctx, node, acc, union, needed)
    acc, letters = _sum_out(ctx, node, acc, letters, set(out))
    perm = [letters.index(c) for c in out]
    if perm != list(range(len(perm))):
        acc = ctx.add("transpose", [acc], {"perm": perm}, node)
    return acc if acc != names[0] else ctx.add("identity", [acc], {}, node)
