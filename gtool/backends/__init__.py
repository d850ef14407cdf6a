"""Backends: how op kernels run. NumPy is the reference; numba and CUDA plug in here.

A backend maps an op to a kernel with the op's NumPy forward signature. Backends know ops
only by name and never hold a second copy of their semantics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

from ..errors import UsageError
from ..ops.registry import OpDef


class Backend:
    """The contract: a name, and a kernel per op. `compile` may replace the interpreter."""

    name = "numpy"

    def kernel(self, op: OpDef) -> Callable:
        return op.forward

    def compile(self, program):  # noqa: ANN001 - a Program; None means: use the interpreter
        return None

    def to_host(self, x):
        return x

    @classmethod
    def instance(cls) -> Self:
        """The one instance of this backend class in the process (compiled caches live on it)."""
        own = cls.__dict__.get("_instance")  # not a base class's
        if own is None:
            own = cls._instance = cls()
        return own


NUMPY = Backend()
BACKENDS = ("numpy", "numba", "cuda", "dask")


def get_backend(name: str | Backend | None) -> Backend:
    """The backend of that name; numba and cuda are imported lazily (optional extra)."""
    if name is None or name == "numpy":
        return NUMPY
    if isinstance(name, Backend):
        return name
    if name == "numba":
        from .numba_cpu import NumbaBackend

        return NumbaBackend.instance()
    if name == "cuda":
        from .numba_cuda import CudaBackend

        return CudaBackend.instance()
    if name == "dask":  # gtool/dask/: chunked over dask.array, for data larger than memory (docs/scale.md)
        from .dask_backend import DaskBackend

        return DaskBackend.instance()
    raise UsageError("usage", f"unknown backend '{name}' (choose from {', '.join(BACKENDS)})")
