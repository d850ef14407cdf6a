"""Checks on the cotangents given to `gtool.vjp`, before anything runs.

A cotangent stands for dL/dy of some outer loss, so it must have exactly y's shape and dtype
(no broadcasting, no silent cast of a float64 array to a float32 output, as in JAX). The shape
of y is only known once dims are bound, so it is computed here from the data's shapes, the
way a run binds them; the error then names y and the cotangent, not a generated input.
"""

from __future__ import annotations

import numpy as np

from .dims import format_shape
from .errors import UsageError
from .feeds import DimBinder
from .interp import free_dims
from .ir import Graph
from .validate import types_of


def check_cotangents(graph: Graph, inputs: dict | None, cotangents: dict,
                     dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """{output: array} with each cotangent checked against its output's dtype and (bound) shape."""
    types = types_of(graph)
    sizes = _bound_sizes(graph, inputs, dims)
    out = {}
    for y, c in cotangents.items():
        t = types[y]
        arr = _as_float(y, c, t.dtype)
        try:
            want = tuple(d.evaluate(sizes) for d in (d.substitute(free_dims(graph)) for d in t.shape))
        except KeyError:
            want = None  # a dim no data binds: the run sizes it (and checks the cotangent then)
        if want is not None and arr.shape != want:
            shown = format_shape(t.shape)
            if shown != str(list(want)):
                shown += f" = {list(want)}"
            raise UsageError("shape-mismatch", f"the cotangent for '{y}' has shape {list(arr.shape)}, but '{y}' "
                             f"has shape {shown}", hint="a cotangent has exactly its output's shape (no broadcasting)")
        out[y] = arr
    return out


def _as_float(y: str, c, dtype: str) -> np.ndarray:
    """An array (or array-like) as a cotangent of dtype `dtype`: arrays must already have it."""
    if isinstance(c, (np.ndarray, np.generic)):
        if c.dtype != np.dtype(dtype):
            raise UsageError("dtype-mismatch", f"the cotangent for '{y}' is {c.dtype}, but '{y}' is {dtype}",
                             hint=f"a cotangent has its output's dtype: pass c.astype('{dtype}')")
        return np.asarray(c)
    try:
        arr = np.asarray(c)
    except (TypeError, ValueError) as e:
        raise UsageError("bad-input", f"the cotangent for '{y}' is not an array: {e}") from None
    if arr.dtype.kind not in "iuf" or isinstance(c, bool):
        raise UsageError("dtype-mismatch", f"the cotangent for '{y}' holds {arr.dtype} values; it must be numbers "
                         f"('{y}' is {dtype})")
    return arr.astype(dtype)


def _bound_sizes(graph: Graph, inputs: dict | None, dims: dict[str, int] | None) -> dict[str, int]:
    """The dim sizes a run would bind from this data (given arrays, then the file's values)."""
    binder = DimBinder(graph, dims, free_dims(graph))
    given = inputs or {}
    for name, t in graph.tensors.items():
        v = given.get(name, t.value)
        if v is None:
            continue
        try:
            shape = np.shape(v)
        except (TypeError, ValueError):
            continue  # ragged data: the run reports it
        try:
            binder.bind(name, t.shape, shape)
        except UsageError:
            continue  # wrong data: the run reports it, with its own words
    return binder.finish()
