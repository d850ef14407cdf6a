"""Data into a dask run: which dims are chunked and by how much, and each fed value as a
dask array read chunk by chunk (a memory-mapped .npy, a Zarr array) or kept as a small
NumPy array (params, and anything without a chunked dim).

A memory-mapped .npy (`--input x=@x.npy`) is not sliced through its map: pages read through
a map stay in the process's resident set until it is unmapped, so a pass over a 512 MB file
would end with 512 MB resident. Each chunk is read with its own `np.fromfile` (or a map
opened and closed for that chunk), which keeps the resident set to the chunks in flight.
"""

from __future__ import annotations

import os

import numpy as np

from ..dims import Dim
from ..errors import UsageError


def batch_dims(program, bindings: dict[str, int], opts) -> dict[str, int]:
    """dim name -> rows per chunk for this run: `opts.chunks`, else the default choice."""
    if opts.chunks:
        for name in opts.chunks:
            if name not in bindings:
                known = ", ".join(sorted(bindings)) or "none"
                raise UsageError("usage", f"--chunks {name}: the graph has no dim named '{name}'",
                                 hint=f"its dims are {known}")
        return {n: min(size, bindings[n]) for n, size in opts.chunks.items()}
    return default_chunks(program, bindings, opts.target_bytes)


def default_chunks(program, bindings: dict[str, int], target: int) -> dict[str, int]:
    """Chunk the dim at axis 0 of the inputs (the largest such dim) so that a chunk's values
    together come to about `target` bytes; nothing is chunked when the whole run fits."""
    types = program.types
    graph = program.graph
    candidates = {}
    for name in program.tensor_names:
        t = graph.tensors[name]
        shape = types[name].shape
        if t.kind == "input" and shape and len(shape[0].symbols()) == 1 and shape[0] == Dim.sym(next(iter(shape[0].symbols()))):
            sym = next(iter(shape[0].symbols()))
            if sym in bindings:
                candidates[sym] = bindings[sym]
    if not candidates:
        return {}
    sym = max(candidates, key=lambda s: (candidates[s], s))
    row = _row_bytes(program, bindings, sym)
    rows = max(1, target // max(row, 1))
    return {sym: rows} if rows < bindings[sym] else {}


def _row_bytes(program, bindings: dict[str, int], sym: str) -> int:
    """The bytes per unit of `sym` of all the plan's values that have `sym` as an axis: a chunk's
    values together (an upper bound on one chunk's working set, which frees values as it goes)."""
    from ..dtypes import np_dtype

    total = 0
    one = Dim.sym(sym)
    for name in [*program.tensor_names, *(st.node for st in program.steps)]:
        t = program.types[name]
        if one not in t.shape or t.weak:
            continue
        rest = 1
        for d in t.shape:
            if d != one:
                try:
                    rest *= d.evaluate(bindings)
                except KeyError:
                    rest = 0
        total += rest * np_dtype(t.dtype).itemsize
    return total


def axis_chunks(shape: tuple, sizes: tuple[int, ...], chunked: dict[str, int]) -> tuple | None:
    """Dask chunks for a value of declared `shape` (Dims) and `sizes`; None when no axis is chunked."""
    out, any_chunked = [], False
    for d, n in zip(shape, sizes):
        syms = d.symbols()
        rows = chunked.get(next(iter(syms))) if len(syms) == 1 and d == Dim.sym(next(iter(syms))) else None
        if rows is not None and rows < n:
            out.append(rows)
            any_chunked = True
        else:
            out.append(n)
    return tuple(out) if any_chunked else None


def as_dask(name: str, value, chunks: tuple | None):
    """A fed value for the run: a dask array chunked by `chunks`, or the value itself (None)."""
    import dask.array as da

    if isinstance(value, da.Array):
        return value.rechunk(chunks) if chunks is not None else value
    if chunks is None:
        return value if not _is_lazy(value) else np.asarray(value)
    meta = np.empty((0,) * len(chunks), value.dtype)
    source = npy_source(value)
    if source is not None:
        from dask.base import tokenize

        token = tokenize(source.path, os.path.getmtime(source.path), source.offset, source.shape, str(source.dtype), chunks)
        return da.from_array(source, chunks=chunks, lock=False, asarray=False, meta=meta, name=f"gtool-npy-{name}-{token}")
    return da.from_array(value, chunks=chunks, lock=False, asarray=not _is_lazy(value), meta=meta)


def _is_lazy(value) -> bool:
    return not isinstance(value, np.ndarray) and type(value).__module__.split(".")[0] in ("zarr", "dask")


class NpyRows:
    """A .npy file's array as dask reads it: each `[...]` reads only that block from disk."""

    def __init__(self, path: str, offset: int, shape: tuple[int, ...], dtype: np.dtype, fortran: bool) -> None:
        self.path, self.offset, self.shape, self.dtype, self.fortran = path, offset, shape, np.dtype(dtype), fortran
        self.ndim = len(shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        rows = self._rows(key)
        if rows is not None:  # whole rows, C order: one contiguous read
            start, stop = rows
            row = int(np.prod(self.shape[1:], dtype=np.int64))
            count = (stop - start) * row
            data = np.fromfile(self.path, self.dtype, count=count, offset=self.offset + start * row * self.dtype.itemsize)
            if data.size != count:
                raise UsageError("bad-input", f"{self.path} is shorter than its header says")
            return data.reshape((stop - start, *self.shape[1:]))
        mapped = np.memmap(self.path, self.dtype, "r", self.offset, self.shape, "F" if self.fortran else "C")
        try:
            return np.array(mapped[key])
        finally:
            del mapped

    def _rows(self, key: tuple) -> tuple[int, int] | None:
        if self.fortran or not self.shape or len(key) > self.ndim:
            return None
        first, rest = key[0], key[1:]
        if not isinstance(first, slice) or first.step not in (None, 1):
            return None
        if any(not (isinstance(k, slice) and k == slice(None) or
                    isinstance(k, slice) and k.indices(n) == (0, n, 1)) for k, n in zip(rest, self.shape[1:])):
            return None
        start, stop, _ = first.indices(self.shape[0])
        return start, max(start, stop)


def npy_source(value) -> NpyRows | None:
    """The file behind an array that maps a whole .npy file (np.load(..., mmap_mode='r'), or
    np.asarray of one), as a block reader; None for any other array."""
    base = value
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    if base is None or getattr(base, "filename", None) is None:
        return None
    if not isinstance(value, np.ndarray) or value.shape != base.shape or value.dtype != base.dtype:
        return None
    if value.__array_interface__["data"][0] != base.__array_interface__["data"][0]:
        return None
    fortran = not value.flags.c_contiguous and value.flags.f_contiguous
    if not (value.flags.c_contiguous or fortran):
        return None
    return NpyRows(str(base.filename), int(base.offset), tuple(value.shape), value.dtype, fortran)


def open_zarr_group(path: str) -> dict:
    """`--inputs store.zarr`: name -> zarr array for every array in the group (read lazily)."""
    try:
        import zarr
    except ImportError as e:
        raise UsageError("missing-extra", f"reading {path} needs zarr ({e})", hint="pip install 'gtool[zarr]'") from None
    try:
        group = zarr.open_group(path, mode="r")
    except Exception as e:  # noqa: BLE001 - zarr raises many kinds for a folder that is not a store
        raise UsageError("bad-input", f"cannot read the Zarr store {path}: {e}") from None
    arrays = dict(group.arrays())
    if not arrays:
        raise UsageError("bad-input", f"the Zarr store {path} holds no arrays")
    return arrays
