"""The numba backends' code generation, in three modules, and what both emitters share here.

`lowering.py` (graph nodes -> micro-ops), `fusion.py` (micro-ops -> loop groups) and
`templates.py` (scalar code per primitive, and `Body`, one loop's statements). This module
re-exports them and holds the run-time pieces both backends use: NumPy fallbacks for ops
without a lowering, the compiled-plan base class, size estimates.
"""

from __future__ import annotations

import math

import numpy as np

from ..dims import Dim
from ..dtypes import INT_DTYPES
from ..errors import UsageError
from ..ops.registry import get_op
from .fusion import CHUNK, Group, Single, data_inputs, fuse, iter_shape
from .lowering import Lowering, fold_transposes
from .templates import (
    BOOL_OK,
    COMPARE,
    FLOAT_ONLY,
    FUSED,
    HELPERS,
    TEMPLATES,
    Body,
    MNode,
    V,
    compute_dtype,
    convert,
    is_one,
    reduce_parts,
    shape_code,
    sign_template,
)

__all__ = ["BOOL_OK", "CHUNK", "COMPARE", "FLOAT_ONLY", "FUSED", "HELPERS", "TEMPLATES", "Body", "CompiledPlan",
           "Fallback", "Group", "Lowering", "MNode", "Single", "V", "compute_dtype", "convert", "data_inputs",
           "estimate", "fold_transposes", "fuse", "is_one", "iter_shape", "np_dtype", "numel", "reduce_parts",
           "shape_code", "sign_template", "to_numpy", "COMPILED_DTYPES", "refuse_dtypes"]

# the dtypes the generated code computes in; float16 (numba has no float16 arithmetic on the
# CPU) and the storage-only dtypes are refused, never silently widened or mis-rounded
COMPILED_DTYPES = frozenset(("float64", "float32", "bool") + INT_DTYPES)


def refuse_dtypes(program, backend: str) -> None:
    """A UsageError naming the first value whose dtype `backend` does not compile."""
    for name, t in program.types.items():
        if t.dtype not in COMPILED_DTYPES and name in program.graph:
            raise UsageError("unsupported-dtype", f"the {backend} backend does not compute in {t.dtype} "
                             f"('{program.graph.owner(name)}' is {t.dtype})",
                             hint="run it with --backend numpy, or cast to float32 first")


# helpers for emitters --------------------------------------------------------------------------


def estimate(d: Dim, defaults: dict[str, int]) -> int:
    """A dim's likely size (declared dim defaults; 1000 for names without one)."""
    try:
        return d.evaluate({s: defaults.get(s, 1000) for s in d.symbols()})
    except (KeyError, TypeError, ValueError):
        return 1000


def numel(shape, defaults) -> int:
    return math.prod(estimate(d, defaults) for d in shape)


def np_dtype(name: str) -> np.dtype:
    return np.dtype(name)


# fallbacks: ops without a lowering, run by their NumPy forward on the host ---------------------


class Fallback:
    """One op run by its NumPy forward between compiled code (both numba backends)."""

    def __init__(self, m: MNode, graph) -> None:
        self.m = m
        self.op = op = get_op(graph.nodes[m.node].op)
        self.kernel = op.forward
        self.attrs = graph.nodes[m.node].attrs
        self.static = None if any(a.kind in ("shape", "dim", "index") for a in op.attrs.values()) else op.prepare(self.attrs, {})

    def kwargs(self, bindings):
        return self.static if self.static is not None else self.op.prepare(self.attrs, bindings)

    def run(self, args: list, bindings):
        """The forward on host values, as its declared type says: a Python number when weak,
        else the declared dtype (a forward may return another one)."""
        out = self.kernel(*args, **self.kwargs(bindings))
        v = self.m.v
        if v.weak:
            return out.item() if hasattr(out, "item") else out
        if getattr(out, "dtype", None) != np.dtype(v.dtype):
            return np.asarray(out).astype(v.dtype)
        return out


class CompiledPlan:
    """Base of both backends' compiled programs: `compiled(values, bindings) -> outputs`, the
    callable Program.run uses. Any exception in compiled code (a target out of range, say)
    makes the run start again on the NumPy interpreter, which reports the located error."""

    def __init__(self, program, backend) -> None:
        self.program = program
        self.backend = backend
        self.compile_seconds = 0.0
        self.fallback_runs = 0
        self.last_error: BaseException | None = None

    def __call__(self, values: dict, bindings: dict) -> dict:
        try:
            with np.errstate(all="ignore"):
                return self._run(values, bindings)
        except Exception as e:  # noqa: BLE001 - the NumPy interpreter reports errors with locations
            self.last_error = e
        self.fallback_runs += 1
        self.backend.fallback_runs += 1
        return self.program.interpret(values, bindings)

    def _run(self, values: dict, bindings: dict) -> dict:  # pragma: no cover - each backend overrides it
        raise NotImplementedError


def to_numpy(x, v: V):
    """A host value as NumPy code takes it: one-element values (kept as numbers) get back
    their declared rank; weak values stay Python numbers."""
    if v.weak:
        return x
    if v.scalar:
        return np.asarray(x, dtype=v.dtype).reshape(tuple(1 for _ in v.shape))
    return x


