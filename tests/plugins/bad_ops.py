"""Plugin ops for the grad-check tests: one correct op per family and deliberately wrong VJPs.

Each wrong op has a correct forward and a correct JVP, so only reverse mode is wrong:
`cube_scaled` (VJP twice the truth), `matmul_t` (VJP of A transposed, right shape for square
matrices), `bias_add_nosum` (forgets to sum the broadcast gradient back: wrong shape) and
`bias_add_wrong_axis` (sums over the wrong axis: right shape, wrong values).
Load with `gtool grad-check --plugin tests/plugins/bad_ops.py FILE`.
"""

from __future__ import annotations

import numpy as np

from gtool.ir import TensorType
from gtool.ops.registry import OpDef, get_op, register, result_type


def _same(ctx, types, attrs):
    return types[0]


def _broadcast(ctx, types, attrs):
    return TensorType(ctx.broadcast(*(t.shape for t in types)), result_type(types).dtype)


# cube: x^3 ---------------------------------------------------------------------------------


def _cube_jvp(b, node, ts):
    x = node.inputs[0]
    return None if ts[0] is None else b("mul", ts[0], b("mul", b.const(3), b("square", x)))


def _cube_vjp(factor):
    def vjp(b, node, g):
        return [b("mul", g, b("mul", b.const(factor), b("square", node.inputs[0])))]

    return vjp


register(OpDef("cube", 1, _same, lambda x: x ** 3, vjp=_cube_vjp(3.0), jvp=_cube_jvp, doc="x^3 (correct)"))
register(OpDef("cube_scaled", 1, _same, lambda x: x ** 3, vjp=_cube_vjp(6.0), jvp=_cube_jvp,
               doc="x^3 whose VJP is twice the truth"))


# matmul with a transposed VJP ------------------------------------------------------------------


def _matmul_t_vjp(bl, node, g):
    a, b = node.inputs
    da = bl("matmul", g, bl("transpose", b))  # right: g Bᵀ
    return [bl("transpose", da), bl("matmul", bl("transpose", a), g)]  # wrong: (g Bᵀ)ᵀ


def _matmul_jvp(bl, node, ts):
    terms = []
    if ts[0] is not None:
        terms.append(bl("matmul", ts[0], node.inputs[1]))
    if ts[1] is not None:
        terms.append(bl("matmul", node.inputs[0], ts[1]))
    return terms[0] if len(terms) == 1 else bl("add", *terms)


register(OpDef("matmul_t", 2, get_op("matmul").infer, np.matmul, vjp=_matmul_t_vjp, jvp=_matmul_jvp,
               doc="2-D matmul whose VJP for A is transposed"))


# bias add: x [n, k] + b [k] ----------------------------------------------------------------------


def _bias_jvp(b, node, ts):
    x, bias = node.inputs
    parts = [t if t is not None else None for t in ts]
    if parts[0] is None and parts[1] is None:
        return None
    if parts[0] is None:
        return b.broadcast_like(parts[1], node.name)
    if parts[1] is None:
        return parts[0]
    return b("add", parts[0], parts[1])


def _bias_vjp(kind):
    def vjp(b, node, g):
        x, bias = node.inputs
        if kind == "right":
            return [g, b.sum_to(g, bias)]
        if kind == "nosum":
            return [g, g]  # forgets sum_to: the bias gradient keeps the batch axis
        return [g, b("sum", g, axis=1)]  # sums over the wrong axis (right shape for square x)

    return vjp


register(OpDef("bias_add", 2, _broadcast, np.add, vjp=_bias_vjp("right"), jvp=_bias_jvp, doc="x + b (correct)"))
register(OpDef("bias_add_nosum", 2, _broadcast, np.add, vjp=_bias_vjp("nosum"), jvp=_bias_jvp,
               doc="x + b whose VJP forgets to sum the bias gradient over the batch"))
register(OpDef("bias_add_wrong_axis", 2, _broadcast, np.add, vjp=_bias_vjp("axis"), jvp=_bias_jvp,
               doc="x + b whose VJP sums the bias gradient over the wrong axis"))


# right first derivative, wrong second: cube2's VJP is right, but it uses sq3 (3 x^2), whose VJP is wrong


def _sq3_vjp(b, node, g):
    return [b("mul", g, b("mul", b.const(3), node.inputs[0]))]  # right: 6 x


register(OpDef("sq3", 1, _same, lambda x: 3 * x ** 2, vjp=_sq3_vjp,
               jvp=lambda b, node, ts: None if ts[0] is None else b("mul", ts[0], b("mul", b.const(6), node.inputs[0])),
               doc="3 x^2 whose VJP is half the truth"))
register(OpDef("cube2", 1, _same, lambda x: x ** 3, vjp=lambda b, node, g: [b("mul", g, b("sq3", node.inputs[0]))],
               jvp=_cube_jvp, doc="x^3 with a right VJP built from sq3 (so its second derivative is wrong)"))
