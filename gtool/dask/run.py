"""A compiled plan on dask: the steps lowered once per run, the outputs computed together.

`DaskPlan(program)` is what `DaskBackend.compile` returns; `Program.run` calls it with every
tensor's data and the dim bindings. All outputs are computed in one `dask.compute`, so the
forward values that several gradients need are computed once; outputs without a chunked dim
(the loss, the params' gradients) come back as NumPy arrays. With `options(lazy=True)`
outputs stay dask arrays (`store_zarr` writes them chunk by chunk).
"""

from __future__ import annotations

import sys

import numpy as np

from ..errors import GraphError, UsageError
from . import current
from .data import as_dask, axis_chunks, batch_dims
from .lower import Lowering, NodeFailure

_CLIENTS: dict[str, object] = {}


class DaskPlan:
    """The callable `Program.run` uses on --backend dask (see module docstring)."""

    lazy_inputs = True  # interp.execute leaves Zarr and dask inputs unread for this backend

    def __init__(self, program) -> None:
        self.program = program
        self.last_chunks: dict[str, int] = {}  # the chunking of the latest run (tests, reports)

    def budget_bindings(self, bindings: dict[str, int]) -> dict[str, int]:
        """The sizes the budget check counts: one chunk of each chunked dim (a task's working set)."""
        return {**bindings, **batch_dims(self.program, bindings, current())}

    def __call__(self, values: dict, bindings: dict[str, int]) -> dict:
        opts = current()
        prog = self.program
        chunked = batch_dims(prog, bindings, opts)
        self.last_chunks = chunked
        lowering = Lowering(prog, bindings, chunked)
        slots: list = [prog.template_value(k) for k in range(prog.n_slots)]
        for name, v in values.items():
            k = prog.slot.get(name)
            if k is None or k >= len(prog.tensor_names):
                continue
            t = prog.types[name]
            if t.weak:
                slots[k] = v.item() if hasattr(v, "item") else v
                continue
            slots[k] = as_dask(name, v, axis_chunks(t.shape, tuple(np.shape(v)), chunked))
        self._run_steps(lowering, slots, bindings)
        outs = {name: slots[s] for name, s in zip(prog.outputs, prog.out_slots)}
        if opts.lazy:
            return outs
        return compute(outs, opts, prog)

    def _run_steps(self, lowering: Lowering, slots: list, bindings: dict[str, int]) -> None:
        import dask.array as da

        prog = self.program
        for step in prog.steps:
            args = [slots[i] for i in step.ins]
            kwargs = prog._kwargs(step, bindings)
            if not any(isinstance(a, da.Array) for a in args) and not lowering.big_output(step):
                out = lowering.kernel(step, kwargs)(*args)  # params and small values: NumPy, now
                if step.dtype is None and hasattr(out, "item"):
                    out = out.item()
            else:
                try:
                    out = lowering.lower(step, args, kwargs)
                except (ValueError, NotImplementedError) as e:  # dask refused the shapes
                    raise lowering.refuse(step, f"cannot be lowered to dask ({e})") from None
            slots[step.out] = out
            for s in step.free:
                slots[s] = None


def compute(outs: dict, opts, prog) -> dict:
    """Every dask output computed in one pass (on the cluster when a scheduler is given)."""
    import dask.array as da

    lazy = {k: v for k, v in outs.items() if isinstance(v, da.Array)}
    done = {k: v for k, v in outs.items() if k not in lazy}
    if not lazy:
        return {k: np.asarray(v) for k, v in outs.items()}
    results = _compute(list(lazy.values()), opts, prog)
    done.update(zip(lazy, results))
    return {k: np.asarray(done[k]) for k in outs}


def _compute(items: list, opts, prog) -> list:
    """dask.compute on the scheduler the options name; a kernel's error is located at its node."""
    import dask

    try:
        if opts.scheduler:
            return get_client(opts.scheduler).compute(items, sync=True)
        with _progress(opts):
            return list(dask.compute(*items, scheduler="threads", num_workers=opts.workers))
    except NodeFailure as e:
        if prog is None:
            raise GraphError(e.code, e.message, node=e.node) from None
        g = prog.graph
        raise GraphError(e.code, e.message, node=g.owner(e.node), op=g.nodes[e.node].op if e.node in g.nodes else None,
                         **g.loc(e.node).where()) from None
    except MemoryError:
        raise UsageError("too-much-memory", "a dask task ran out of memory",
                         hint="use smaller chunks (--chunks DIM=SIZE)") from None


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress(opts):
    if opts.progress and sys.stderr.isatty():
        from dask.diagnostics import ProgressBar

        return ProgressBar(out=sys.stderr)
    return _Nothing()


def get_client(address: str):
    """One `dask.distributed` client per scheduler address for the process; its dashboard link
    goes to stderr when it connects."""
    client = _CLIENTS.get(address)
    if client is not None and client.status == "running":
        return client
    try:
        from distributed import Client
    except ImportError as e:
        raise UsageError("missing-extra", f"--scheduler needs dask.distributed ({e})", hint="pip install 'gtool[dask]'") \
            from None
    try:
        client = Client(address, set_as_default=False, timeout="10s")
    except (OSError, TimeoutError, ValueError) as e:
        raise UsageError("dask-scheduler", f"cannot reach the dask scheduler at {address}: {e}",
                         hint="start one with `dask scheduler` (and workers), or leave --scheduler out to run locally") \
            from None
    _CLIENTS[address] = client
    link = getattr(client, "dashboard_link", None)
    if link and "dashboard" in client.scheduler_info().get("services", {}):
        print(f"gtool: dask cluster {address}, dashboard {link}", file=sys.stderr)
    return client


def close_clients() -> None:
    while _CLIENTS:
        _, client = _CLIENTS.popitem()
        client.close()


def is_lazy_output(v) -> bool:
    return type(v).__module__.split(".")[0] == "dask"


def store_zarr(outs: dict, path: str) -> tuple[dict, dict]:
    """Write outputs to a Zarr group at `path`: outputs of several chunks chunk by chunk, in one
    compute with the others. Returns (name -> (shape, dtype) of every output written,
    name -> NumPy value of each output that is at most one chunk)."""
    try:
        import zarr
    except ImportError as e:
        raise UsageError("missing-extra", f"-o {path} needs zarr ({e})", hint="pip install 'gtool[zarr]'") from None
    group = zarr.open_group(path, mode="w")
    sources, targets, small = [], [], {}
    for name, v in outs.items():
        if is_lazy_output(v) and v.npartitions > 1:
            targets.append(group.create_array(name, shape=v.shape, dtype=v.dtype,
                                              chunks=tuple(max(1, max(c)) if c else 1 for c in v.chunks)))
            sources.append(v)
        else:
            small[name] = v
    items = list(small.values())
    if sources:
        import dask.array as da

        items.append(da.store(sources, targets, lock=False, compute=False))
    if any(is_lazy_output(v) for v in items):
        items = _compute(items, current(), None)
    small = {k: np.asarray(v) for k, v in zip(small, items)}
    for name, v in small.items():
        group.create_array(name, shape=v.shape, dtype=v.dtype)[...] = v
    return {name: (tuple(np.shape(v)), str(np.dtype(v.dtype))) for name, v in outs.items()}, small
