"""Constant folding at load: a node whose inputs are all known is computed now.

Numbers are computed by ONNX's own reference evaluator (`onnx.reference`), so folding has
ONNX's semantics exactly. Shape tensors of models with symbolic dims hold gtool `Dim`s
(NumPy object arrays); the ops that shape arithmetic uses (Gather, Concat, Unsqueeze,
Squeeze, Slice, Cast, Identity, Reshape, and +, -, * on dims) are folded on those here, so
`Shape -> Gather -> Concat -> Reshape` still ends in a reshape with dim expressions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Ops never folded: their value is not a function of their inputs.
_IMPURE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial"}


def fold_node(ctx, node) -> list[Any] | None:
    """The output values of `node` (every input known), or None when it cannot be folded."""
    if node.op_type in _IMPURE:
        return None
    values = [ctx.constant(i) if i else None for i in node.input]
    if any(v is not None and v.dtype == object for v in values):
        return _fold_symbolic(ctx, node, values)
    return _fold_reference(ctx, node, values)


def _fold_reference(ctx, node, values) -> list[Any] | None:
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = [f"i{k}" if i else "" for k, i in enumerate(node.input)]
    inner = helper.make_node(node.op_type, names, [f"o{k}" for k in range(len(node.output))], domain=node.domain)
    inner.attribute.extend(node.attribute)
    try:
        feeds = {n: v for n, v in zip(names, values) if n}
        ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
               for n, v in feeds.items()]
        outs = [helper.make_empty_tensor_value_info(f"o{k}") for k in range(len(node.output))]
        graph = helper.make_graph([inner], "fold", ins, outs)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ctx.opset)])
        outs = ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # the reference evaluator cannot do it: the converter decides
        return None
    return [np.asarray(o) for o in outs]


def _fold_symbolic(ctx, node, values) -> list[Any] | None:
    """Shape arithmetic on arrays of Dims (object arrays)."""
    op = node.op_type
    x = values[0]
    try:
        if op == "Identity":
            return [x]
        if op == "Cast":
            return [x] if ctx.attr(node, "to") in (6, 7) else None
        if op == "Gather":
            return [_obj(np.take(x, values[1].astype(np.int64), axis=ctx.attr(node, "axis", 0)))]
        if op == "Concat":
            return [_obj(np.concatenate([v.astype(object) for v in values], axis=ctx.attr(node, "axis")))]
        if op == "Unsqueeze":
            axes = values[1] if len(values) > 1 else ctx.attr(node, "axes")
            return [_obj(np.expand_dims(x, tuple(int(a) for a in np.ravel(axes))))]
        if op == "Squeeze":
            axes = values[1] if len(values) > 1 and values[1] is not None else ctx.attr(node, "axes")
            return [_obj(np.squeeze(x, None if axes is None else tuple(int(a) for a in np.ravel(axes))))]
        if op == "Reshape":
            return [_obj(x.reshape([int(s) for s in values[1]]))]
        if op == "Slice":
            return _slice(values)
        if op in ("Add", "Sub", "Mul"):
            a, b = (v.astype(object) for v in values)
            return [_obj({"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](a, b))]
    except (ValueError, TypeError, IndexError):
        return None
    return None


def _slice(values) -> list[Any]:
    x, starts, ends = values[:3]
    axes = values[3] if len(values) > 3 and values[3] is not None else np.arange(len(starts))
    steps = values[4] if len(values) > 4 and values[4] is not None else np.ones(len(starts), np.int64)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(e), int(st))
    return [_obj(x[tuple(index)])]


def _obj(a: np.ndarray) -> np.ndarray:
    """A shape array with plain ints where every entry is a number, Dims (object) otherwise."""
    from ..dims import Dim

    if not isinstance(a, np.ndarray):  # np.take of one index gives the element itself
        one = np.empty((), dtype=object)
        one[()] = a
        a = one
    flat = [d.value if isinstance(d, Dim) and d.is_const else d for d in a.ravel().tolist()]
    if all(isinstance(d, (int, np.integer)) for d in flat):
        return np.array(flat, dtype=np.int64).reshape(a.shape)
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(a.shape)


def as_shape_value(dims: list) -> np.ndarray:
    """A list of Dims/ints as a shape value: int64 when all are numbers, else an object array."""
    out = np.empty(len(dims), dtype=object)
    out[:] = list(dims)
    return _obj(out)
