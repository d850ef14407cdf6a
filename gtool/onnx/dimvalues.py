"""Shape values with symbolic dims, used as data: computed at run time from the inputs' sizes.

A model with a dynamic batch may compute with its own shape (`Cast(Gather(Shape(x), 0))` to
divide by the batch size, or output `Shape(x)`). At load such a value is an array of gtool
`Dim`s (`[batch, 4]`); where it is used as data, each dim becomes int64 arithmetic on
`size(input, axis=k)` of a graph input that has the dim's name on axis k.
"""

from __future__ import annotations

import numpy as np

from ..dims import Dim


def materialise_dims(ctx, value: np.ndarray) -> str:
    """An object array of Dims and ints as an int64 tensor computed at run time; its name."""
    elems = [_dim_node(ctx, d) for d in value.ravel().tolist()]
    if value.ndim == 0:
        return elems[0]
    cols = [ctx.add("expand_dims", [e], {"axis": 0}) for e in elems]
    flat = ctx.add("concat", cols, {"axis": 0}) if len(cols) > 1 else cols[0]
    if value.ndim != 1:
        flat = ctx.add("reshape", [flat], {"shape": list(value.shape)})
    return flat


def _dim_node(ctx, d) -> str:
    """One dim as a scalar int64 node: a sum of coefficient * product of symbols."""
    if not isinstance(d, Dim):
        d = Dim.const(int(d))
    if d.is_const:
        return ctx.const(np.array(d.value, np.int64))
    acc = None
    for monomial, coeff in d.terms:
        factors = [_symbol(ctx, f) for f in monomial]
        term = ctx.const(np.array(coeff, np.int64))
        for f in factors:
            term = ctx.add("mul", [term, f])
        acc = term if acc is None else ctx.add("add", [acc, term])
    return acc


def _symbol(ctx, factor) -> str:
    """`size(t, axis=k)` as int64 for an input t whose axis k is the dim `factor`."""
    if not isinstance(factor, str):
        ctx.unsupported(ctx.onnx_node, f"the dim {factor} (a floor division) used as data")
    cache = ctx.__dict__.setdefault("_dim_nodes", {})
    if factor in cache:
        return cache[factor]
    want = Dim.sym(factor)
    for name, t in ctx.tensors.items():
        if t.kind == "input" and want in t.shape:
            size = ctx.add("size", [name], {"axis": list(t.shape).index(want)})
            cache[factor] = ctx.add("cast", [size], {"dtype": "int64"})
            return cache[factor]
    ctx.unsupported(ctx.onnx_node, f"the dim '{factor}' is used as data, but no graph input has it on an axis")
    return ""
