"""Converters for ONNX's core ops: arithmetic, math, reductions, shape ops, casts, constants.

Each converter reads the ONNX node through the context and returns the gtool name of each
output (or a NumPy array for an output whose value is known at load). See docs/onnx.md for
the table of what maps to what.
"""

from __future__ import annotations

from ..registry import ImportContext, OnnxNode, converter

# elementwise ops with the same meaning in both --------------------------------------------------

_UNARY = {"Neg": "neg", "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Tanh": "tanh", "Sigmoid": "sigmoid",
          "Relu": "relu", "Abs": "abs", "Sin": "sin", "Cos": "cos", "Softplus": "softplus"}
_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Equal": "equal", "Greater": "greater", "Less": "less"}


def _unary(gop: str):
    def conv(ctx: ImportContext, node: OnnxNode) -> list[str]:
        (x,) = ctx.inputs(node, 1)
        return [ctx.add(gop, [x], {}, node)]

    return conv


def _binary(gop: str):
    def conv(ctx: ImportContext, node: OnnxNode) -> list[str]:
        a, b = ctx.inputs(node, 2)
        return [ctx.add(gop, [a, b], {}, node)]

    return conv


for _op, _gop in _UNARY.items():
    converter(_op)(_unary(_gop))
for _op, _gop in _BINARY.items():
    converter(_op)(_binary(_gop))


@converter("MatMul")
def matmul(ctx: ImportContext, node: OnnxNode) -> list[str]:
    a, b = ctx.inputs(node, 2)
    return [ctx.add("matmul", [a, b], {}, node)]


@converter("Identity", skips={
    "test_identity_sequence": "a sequence-typed input: gtool values are tensors only",
    "test_identity_opt": "an optional-typed input: gtool values are tensors only"})
def identity(ctx: ImportContext, node: OnnxNode) -> list[str]:
    (x,) = ctx.inputs(node, 1)
    return [ctx.add("identity", [x], {}, node)]
