"""The Dask backend's settings: chunk sizes, the scheduler, lazy outputs (docs/scale.md).

A run on `--backend dask` reads these from a context (`options(...)`), not from the backend
object: one compiled plan per graph serves every chunking and every scheduler. This module
imports no dask; `gtool/dask/run.py` and `gtool/dask/lower.py` do, when a run starts.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, field, replace

from ..errors import UsageError

INSTALL = "pip install 'gtool[dask]'"
SCHEDULER_ENV = "GTOOL_DASK_SCHEDULER"
TARGET_CHUNK_BYTES = 128 * 2**20  # the default chunking: all of one chunk's values together near 128 MiB


@dataclass(frozen=True)
class Options:
    """How a dask run is split and where it runs.

    chunks: dim name -> rows per chunk (`--chunks batch=100000`); dims not named stay whole,
      and with no entry at all the batch dim (axis 0 of the inputs) is chunked so that all the
      values of one chunk (inputs, forward and backward) come to about `target_bytes`.
    scheduler: a `dask.distributed` scheduler address (`tcp://host:8786`); None: the local
      threaded scheduler (GTOOL_DASK_SCHEDULER is read when the option is not given).
    workers: threads of the local scheduler (None: one per core).
    lazy: return outputs as dask arrays, uncomputed (`-o out.zarr` stores them chunk by chunk).
    progress: show dask's progress bar (only when stderr is a terminal).
    """

    chunks: dict[str, int] = field(default_factory=dict)
    scheduler: str | None = None
    workers: int | None = None
    lazy: bool = False
    progress: bool = True
    target_bytes: int = TARGET_CHUNK_BYTES


_CURRENT: contextvars.ContextVar[Options | None] = contextvars.ContextVar("gtool_dask_options", default=None)


def current() -> Options:
    """The settings of the run being made, with the scheduler from the environment if unset."""
    opts = _CURRENT.get() or Options()
    if opts.scheduler is None and os.environ.get(SCHEDULER_ENV):
        opts = replace(opts, scheduler=os.environ[SCHEDULER_ENV])
    return opts


@contextlib.contextmanager
def options(**changes):
    """`with gtool.dask.options(chunks={"batch": 100_000}, scheduler=addr): gtool.run(..., backend="dask")`."""
    for name, size in (changes.get("chunks") or {}).items():
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise UsageError("usage", f"chunks: {name} wants a positive number of rows, got {size!r}")
    token = _CURRENT.set(replace(_CURRENT.get() or Options(), **changes))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def parse_chunks(values) -> dict[str, int]:
    """`--chunks DIM=SIZE` flags -> {dim: rows}."""
    out: dict[str, int] = {}
    for v in values or ():
        name, _, size = v.partition("=")
        name, size = name.strip(), size.strip()
        if not name or not size.isdigit() or int(size) <= 0:
            raise UsageError("usage", f"--chunks wants DIM=SIZE with a positive size, got {v!r}")
        if name in out and out[name] != int(size):
            raise UsageError("usage", f"--chunks {name} is given twice, as {out[name]} and {int(size)}")
        out[name] = int(size)
    return out


def require_dask() -> None:
    """Exit 2 naming the extra when dask is not installed."""
    try:
        import dask.array  # noqa: F401
    except ImportError as e:
        raise UsageError("missing-extra", f"the dask backend needs dask[array] ({e})", hint=INSTALL) from None


def close_clients() -> None:
    """Close the `dask.distributed` clients this process opened (tests, long-lived programs)."""
    from .run import close_clients as close

    close()
