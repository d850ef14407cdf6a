"""Getting data into a run: given arrays, values in the file, random inputs, param init.

Also binds dims from the data (`x: [batch, 3]` fed a (128, 3) array binds batch = 128) and
checks every array against its declared shape and dtype, naming the dim that disagrees.
Randomness is seeded per tensor name, so adding a tensor never changes another's values.
"""

from __future__ import annotations

import os
import zlib

import numpy as np

from .budget import check_value
from .datafit import fitted, scalar_misfit
from .dims import Dim, format_shape
from .dtypes import is_int_like, is_storage, name_of, np_dtype
from .errors import GraphError, UsageError, did_you_mean
from .format.build import nonfinite
from .ir import Graph, Tensor


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def _as_array(name: str, value, t: Tensor) -> np.ndarray:
    if is_lazy(value) and value.dtype == np_dtype(t.dtype):  # Zarr / dask: read by the run (docs/scale.md)
        return value
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        if "inhomogeneous" not in str(e):
            raise UsageError("bad-input", f"data for '{name}' is not an array: {e}") from None
        raise UsageError("bad-input", f"data for '{name}' is ragged (rows of different lengths, or numbers "
                         "mixed with lists)") from None
    if isinstance(value, list) and arr.dtype.kind == "f" and is_int_like(t.dtype):
        arr = np.array(value, dtype=object)  # exact Python ints: float64 would round 2**53 + 1, or 2**63 + 1
    if arr.dtype == object and not all(isinstance(v, (int, float)) for v in arr.ravel()):
        raise UsageError("bad-input", f"data for '{name}' is not a rectangular numeric array")
    if arr.dtype.kind in "US":
        raise UsageError("bad-input", f"data for '{name}' is text, not numbers (only the strings \"nan\", "
                         "\"inf\" and \"-inf\" stand for numbers)")
    if arr.dtype.kind not in "biufO" and not (arr.dtype.kind == "V" and is_storage(name_of(arr.dtype))):
        raise UsageError("bad-input", f"data for '{name}' has dtype {arr.dtype}, not a number type")
    out, why = fitted(name, arr, t.dtype)  # never NumPy's silent wrap-around or overflow to inf
    if why is not None:
        raise UsageError("bad-input", f"the data does not fit its dtype {t.dtype}: {why}",
                         node=name,
                         hint="fix the data, or declare a dtype that holds it (see \"Data and dtypes\" in docs/format.md)")
    return out


def is_lazy(value) -> bool:
    """A Zarr or dask array: data that is read chunk by chunk, never here as a whole."""
    return not isinstance(value, np.ndarray) and type(value).__module__.split(".")[0] in ("zarr", "dask") \
        and hasattr(value, "shape") and hasattr(value, "dtype")


def materialized(values: dict) -> dict:
    """`values` with lazy arrays read into memory (for the backends that take NumPy arrays only)."""
    if not any(is_lazy(v) for v in values.values()):
        return values
    return {k: np.asarray(v) if is_lazy(v) else v for k, v in values.items()}


class DimBinder:
    """Binds dim names from data shapes, then checks every declared shape against the data."""

    def __init__(self, graph: Graph, fixed: dict[str, int] | None, free: dict[str, Dim]) -> None:
        self.graph = graph
        self.bindings: dict[str, int] = dict(fixed or {})
        self.free = free  # names bound by shape inference to expressions of other names
        self.pending: list[tuple[str, tuple, int, Dim]] = []  # (input, data shape, axis, `2 * n`)

    def bind(self, name: str, shape: tuple, data_shape: tuple) -> None:
        if len(shape) != len(data_shape):
            raise UsageError("bad-input", f"'{name}' has shape {list(data_shape)} but is declared "
                             f"{format_shape(shape)} (rank {len(data_shape)} vs {len(shape)})")
        for k, (d, n) in enumerate(zip(shape, data_shape)):
            syms = d.symbols()
            if len(syms) == 1 and d == Dim.sym(next(iter(syms))):
                s = next(iter(syms))
                if s in self.bindings and self.bindings[s] != n:
                    raise UsageError("bad-input", f"'{name}' has shape {list(data_shape)}: axis {k} is {n}, but "
                                     f"dim '{s}' is {self.bindings[s]} (declared {format_shape(shape)})")
                self.bindings[s] = n
            elif syms:
                self.pending.append((name, tuple(data_shape), k, d))

    def _solve(self) -> bool:
        """Bind a name that is the one unknown of an axis declared affine in it (`2 * n`,
        `n + 1`) from the data's size; the later size check catches any contradiction."""
        progress = False
        for name, data_shape, k, d in self.pending:
            n = data_shape[k]
            unknown = [s for s in d.symbols() if s not in self.bindings]
            if len(unknown) != 1:
                continue
            s = unknown[0]
            f0, f1, f2 = (d.evaluate({**self.bindings, s: v}) for v in (0, 1, 2))
            c = f1 - f0
            if c <= 0 or f2 - f1 != c:
                continue  # not affine in s (n * n, n // 2): left to --dim
            if (n - f0) % c or n < f0:
                raise UsageError("bad-input", f"'{name}' has shape {list(data_shape)}: axis {k} is {n}, declared "
                                 f"{format_shape((d,))[1:-1]}, and no whole size of dim '{s}' gives {n}")
            self.bindings[s] = (n - f0) // c
            progress = True
        return progress

    def finish(self) -> dict[str, int]:
        while self.pending and self._solve():
            pass
        for s, v in self.graph.dims.items():
            self.bindings.setdefault(s, v)
        for _ in range(len(self.free) + 1):
            for s, expr in self.free.items():
                if s not in self.bindings:
                    try:
                        self.bindings[s] = expr.evaluate(self.bindings)
                    except KeyError:
                        pass
        return self.bindings

    def size(self, name: str, shape: tuple) -> tuple[int, ...]:
        try:
            sizes = tuple(d.evaluate(self.bindings) for d in shape)
        except KeyError as e:
            raise UsageError("missing-input", f"cannot size '{name}' {format_shape(shape)}: dim {e} is not "
                             "bound by any data", hint=f"give it with --dim {e.args[0]}=SIZE") from None
        count = 1
        for n in sizes:
            count *= n
        if count * 8 >= 2 ** 63:  # NumPy's limit on bytes (8 per element at most): no array has this shape
            declared = format_shape(shape)
            shown = declared if declared == str(list(sizes)) else f"{declared} = {list(sizes)}"
            raise UsageError("bad-input", f"'{name}' {shown} has more elements than an array can hold",
                             hint="check the sizes in its shape, `dims:` and --dim")
        return sizes

    def check(self, name: str, shape: tuple, data_shape: tuple) -> None:
        want = self.size(name, shape)
        if want != tuple(data_shape):
            k = next(i for i, (a, b) in enumerate(zip(want, data_shape)) if a != b)
            declared = format_shape(shape)
            sizes = "" if declared == str(list(want)) else f" = {list(want)}"  # only when dims were bound
            raise UsageError("bad-input", f"'{name}' has shape {list(data_shape)} but is declared "
                             f"{declared}{sizes}: axis {k} is {data_shape[k]}, expected {want[k]}")


def _uniform(rng: np.random.Generator, lo: float, hi: float, shape) -> np.ndarray:
    """Uniform in [lo, hi], also when hi - lo overflows float64 ([-1e308, 1e308]): then the
    draw is made at half scale and doubled, which stays finite."""
    if np.isfinite(hi - lo):
        return rng.uniform(lo, hi, shape)
    return rng.uniform(lo / 2, hi / 2, shape) * 2


def glorot_fans(shape: tuple[int, ...], conv_filter: bool) -> tuple[int, int]:
    """(fan_in, fan_out) for Glorot init. A matrix `[..., in, out]` (gtool computes `x @ W`)
    uses its last two dims (leading dims are a batch of independent matrices); a 1-D shape its
    size for both. A convolution filter `[out_channels, in_channels/groups, k1, k2, ...]` uses
    its channel dims times the receptive field, as PyTorch and Keras do: taking its last two
    (kernel) dims would give a 3x3 filter a limit of 1.0 whatever its channel count.
    """
    if not shape:
        return 1, 1
    if conv_filter and len(shape) >= 3:
        receptive = int(np.prod(shape[2:]))
        return shape[1] * receptive, shape[0] * receptive
    return (shape[-2] if len(shape) >= 2 else shape[0]), shape[-1]


def _is_conv_filter(graph: Graph, name: str) -> bool:
    """Whether `name` is the filter (second argument) of a conv or conv_transpose node."""
    return any(node.op in ("conv", "conv_transpose") and len(node.inputs) > 1 and node.inputs[1] == name
               for node in graph.nodes.values())


def _init(t: Tensor, shape: tuple[int, ...], seed: int, filter_of: bool = False) -> np.ndarray:
    init = t.init or "zeros"
    dtype = np_dtype(t.dtype)
    if init == "zeros":
        return np.zeros(shape, dtype)
    if init == "ones":
        return np.ones(shape, dtype)
    (kind, args), = init.items()
    rng = _rng(seed, t.name)
    bad = next((k for k, v in args.items() if not np.isfinite(v)), None) if kind in ("normal", "uniform") else None
    if bad is not None:
        raise GraphError("bad-init", f"init {kind}: {bad} is {args[bad]}; it must be a finite number",
                         node=t.name, **t.loc.where())
    if kind == "normal":
        value = rng.normal(args.get("mean", 0.0), args.get("std", 1.0), shape)
    elif kind == "uniform":
        value = _uniform(rng, args.get("low", 0.0), args.get("high", 1.0), shape)
    else:
        fan_in, fan_out = glorot_fans(shape, filter_of)
        limit = float(np.sqrt(6.0 / max(fan_in + fan_out, 1)))
        value = rng.uniform(-limit, limit, shape)
    out, why = fitted(t.name, value, dtype)
    if why is not None:
        raise GraphError("bad-init", f"init {kind} {args} gives values that do not fit {dtype}: {why}",
                         node=t.name, **t.loc.where())
    return out


def _classes_for(graph: Graph, name: str, bindings: dict, types) -> int | None:
    """If `name` is the targets of a cross_entropy (or one_hot), its class count."""
    for node in graph.nodes.values():
        if node.op == "cross_entropy" and node.inputs[1] == name:
            return types[node.inputs[0]].shape[-1].evaluate(bindings)
        if node.op == "one_hot" and node.inputs[0] == name:
            from .dims import parse_dim

            return parse_dim(node.attrs["depth"]).evaluate(bindings)
    return None


def random_value(t: Tensor, shape: tuple[int, ...], seed: int, classes: int | None) -> np.ndarray:
    """Uniform in `range` when declared, else standard normal (floats) or [0, classes) (targets).

    A range that cannot be drawn from at the tensor's dtype (infinite, an int range holding no
    integer or reaching past the dtype, a float32 range past float32's largest value) is a
    usage error naming the tensor, not NumPy's exception or a silent inf.
    """
    rng = _rng(seed, t.name)
    dtype = np_dtype(t.dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if t.range is not None:
        _check_range(t)
    if is_int_like(t.dtype):
        if t.range is not None:
            lo, hi = int(np.ceil(t.range[0])), int(np.floor(t.range[1]))
        elif classes is not None:
            lo, hi = 0, classes - 1
        else:
            raise UsageError("missing-input", f"cannot make random data for the integer input '{t.name}'",
                             hint="declare a range: [lo, hi] for it, or give its data")
        return rng.integers(lo, hi, shape, endpoint=True).astype(dtype)
    if t.range is not None:
        return _uniform(rng, t.range[0], t.range[1], shape).astype(dtype)
    if t.dtype == "float8_e8m0fnu":  # powers of two only, all positive
        return np.exp2(rng.integers(-4, 5, shape)).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _check_range(t: Tensor) -> None:
    lo, hi = t.range
    why = None
    if not (np.isfinite(lo) and np.isfinite(hi)):
        why = "it is not finite"
    elif is_int_like(t.dtype) and np.ceil(lo) > np.floor(hi):
        why = "it holds no integer"
    else:
        ints = is_int_like(t.dtype)
        why = scalar_misfit(int(np.ceil(lo)) if ints else lo, t.dtype) or \
            scalar_misfit(int(np.floor(hi)) if ints else hi, t.dtype)
        why = why and f"it reaches {why}"
    if why:
        raise UsageError("bad-input", f"cannot draw random data for '{t.name}' from its range [{lo:g}, {hi:g}]: "
                         f"{why}", node=t.name, **t.loc.where(),
                         hint="give its data, or declare a finite range that its dtype holds")


def resolve(graph: Graph, given: dict | None, *, types, free: dict[str, Dim], random: bool = False,
            seed: int = 0, dim_values: dict[str, int] | None = None,
            skip_scalar_constants: bool = False, check=None) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Every tensor's value and the dim bindings for one run.

    Precedence: given data, then the file's `value`, then random data (inputs, with
    `random=True`) or `init` (params). A missing input is an error naming all that are missing.
    With `skip_scalar_constants`, scalar constants the caller did not override are left out
    (a compiled Program already holds them). `check(bindings)` runs once dims are bound and
    before any random input or param is allocated (Program.check_budget refuses a run too big).
    """
    given = dict(given or {})
    for name in given:
        if name not in graph.tensors:
            near = did_you_mean(name, graph.tensors)
            where = "a node, not a tensor: nodes are computed" if name in graph.nodes else "not in the graph"
            raise UsageError("unknown-name", f"data given for '{name}', which is {where}",
                             hint=f"did you mean '{near}'?" if near else None)
    binder = DimBinder(graph, dim_values, free)
    values: dict[str, np.ndarray] = {}
    fixed, fed = _split_tensors(graph)
    if not skip_scalar_constants:
        values.update(fixed)
    for name in given:
        if name in fixed:  # the caller overrides a scalar constant
            fed = fed + [(name, graph.tensors[name])]
    for name, t in fed:
        if name in given and given[name] is None:
            raise UsageError("bad-input", f"data for '{name}' is null; give numbers")
        v = given.get(name, t.value)
        if v is not None:
            arr = _as_array(name, v, t)
            binder.bind(name, t.shape, arr.shape)
            values[name] = arr
    missing = [n for n, t in fed if n not in values and t.kind == "input"]
    if missing and not random:
        raise UsageError("missing-input", "no data for input" + ("s " if len(missing) > 1 else " ")
                         + ", ".join(f"'{m}'" for m in missing),
                         hint="give it with --input NAME=VALUE, --inputs FILE, a value in the file, or --random-inputs")
    bindings = binder.finish()
    if check is not None:
        check(bindings)
    for name, t in fed:
        if name in values:
            binder.check(name, t.shape, values[name].shape)
            continue
        shape = binder.size(name, t.shape)
        if t.kind == "input":
            check_value(name, shape, t.dtype, **t.loc.where())
            values[name] = random_value(t, shape, seed, _classes_for(graph, name, bindings, types))
        else:  # params from their init: the same seed and shape give the same array, so keep it
            key = ("init", name, seed, shape)
            value = graph.cache.get(key)
            if value is None:
                check_value(name, shape, t.dtype, **t.loc.where())
                value = graph.cache[key] = _init(t, shape, seed, _is_conv_filter(graph, name))
                value.flags.writeable = False
            values[name] = value
    return values, bindings


def _split_tensors(graph: Graph) -> tuple[dict[str, np.ndarray], list]:
    """(scalar constants -> value, the other tensors), computed once per graph.

    Scalar constants never bind dims and never change, so a run need not look at them: a
    graph written with many literals (a 2,000-node chain has 1,334) stays cheap to feed.
    """
    split = graph.cache.get("tensor_split")
    if split is None:
        fixed = {n: t.value.astype(np_dtype(t.dtype), copy=False) for n, t in graph.tensors.items()
                 if t.kind == "constant" and t.value is not None and t.value.ndim == 0}
        fed = [(n, t) for n, t in graph.tensors.items() if n not in fixed]
        split = graph.cache["tensor_split"] = (fixed, fed)
    return split


def load_inputs_file(path: str) -> dict[str, np.ndarray]:
    """`--inputs FILE`: .npz (no pickles), or .json/.yaml mapping names to (nested) numbers."""
    if not os.path.exists(path):
        raise UsageError("usage", f"no such inputs file: {path}")
    if path.endswith(".npz"):
        import zipfile

        if os.path.isfile(path) and not zipfile.is_zipfile(path):
            raise UsageError("bad-input", "the --inputs file is not a .npz archive (numpy.savez writes one)",
                             path=path)
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
            raise UsageError("bad-input", f"cannot read the --inputs file: {e}", path=path) from None
    if path.endswith(".npy"):
        raise UsageError("usage", "use --input NAME=@file.npy for a single .npy array")
    if path.rstrip("/").endswith(".zarr"):  # a Zarr group, read lazily (docs/scale.md)
        from .dask.data import open_zarr_group

        return open_zarr_group(path)
    from .format.source import load_file

    if os.path.isdir(path):
        raise UsageError("usage", f"--inputs {path} is a directory; give a .npz, .json or .yaml file")
    not_mapping = UsageError("bad-input", "an inputs file must map input names to arrays", path=path,
                             hint='e.g. {"x": [1, 2], "y": 3}')
    try:
        data, _ = load_file(path, marks=False)  # data, not a graph: no source map needed (fast)
    except GraphError as e:
        if e.code == "bad-type" and e.diagnostic.pointer == "":  # the top level: empty, a list, a number
            raise not_mapping from None
        raise UsageError.many(e.diagnostics) from None  # the located diagnostics, with exit status 2
    if not isinstance(data, dict):
        raise not_mapping
    return {k: _data_value(v) for k, v in data.items()}


def _data_value(v):
    """A value from a data file: an array when it is all numbers (fast), else with the
    strings "nan", "inf", "-inf" turned into floats (any other string fails later, named)."""
    if isinstance(v, list):
        try:
            arr = np.asarray(v)
        except (ValueError, TypeError):
            return nonfinite(v)
        if arr.dtype.kind in "biuf":
            return arr
    return nonfinite(v)


def parse_input_flag(text: str) -> tuple[str, object]:
    """`NAME=VALUE` (a number or JSON list) or `NAME=@file.npy`."""
    import json

    name, _, raw = text.partition("=")
    name = name.strip()
    if "=" not in text or not name:
        raise UsageError("usage", f"--input wants NAME=VALUE, got {text!r}")
    if raw.startswith("@"):
        path = raw[1:]
        try:
            with open(path, "rb") as f:
                magic = f.read(6)
            if magic != b"\x93NUMPY":  # an empty file, text, a pickle: numpy's own errors would mislead
                raise UsageError("bad-input", f"--input {name}: {path} is not a .npy file (numpy.save writes one)")
            try:  # mapped: read as the run needs it (a file larger than memory streams on --backend dask)
                return name, np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError:  # an empty array (nothing to map) or a header numpy maps differently: read it
                return name, np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise UsageError("bad-input", f"--input {name}: cannot read {path}: {getattr(e, 'strerror', None) or e}") \
                from None
    try:
        return name, nonfinite(json.loads(raw))
    except json.JSONDecodeError:
        raise UsageError("bad-input", f"--input {name}: {raw!r} is not a number or a JSON list") from None
    except RecursionError:
        raise UsageError("bad-input", f"--input {name}: the list is nested too deeply") from None
