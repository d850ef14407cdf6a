"""`--backend dask`: gtool's plans as dask.array work, for batches larger than memory and for
clusters (docs/scale.md). The code is in gtool/dask/; this is the registration."""

from __future__ import annotations

from . import Backend


class DaskBackend(Backend):
    """Kernels are the NumPy forwards; `compile` hands the plan to gtool.dask.run.DaskPlan."""

    name = "dask"

    def compile(self, program):  # noqa: ANN001 - an interp.Program
        from ..dask import require_dask

        require_dask()
        from ..dask.run import DaskPlan

        return DaskPlan(program)
