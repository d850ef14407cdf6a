"""Each step of a gtool plan as dask.array work (docs/scale.md, "What runs how").

A step whose inputs are all NumPy values (params and what is computed from them alone) runs
its NumPy kernel at once, as the NumPy backend would: params and their gradients stay small
NumPy arrays. A step that reads a dask array becomes dask work:

- ops that are computed row by row along the chunked dim (elementwise ops, comparisons,
  softmax over another axis, conv and pooling per sample, ...) run their own NumPy kernel
  on each chunk (`da.blockwise`), so each chunk's result is bitwise the NumPy backend's;
- ops that combine rows (sum, mean, max, min, logsumexp over the chunked dim, sum_to, the
  matmul whose inner dim is chunked, cross_entropy's mean, conv_filter) are tree reductions
  of per-chunk results: equal to NumPy's up to the order of the sum;
- shape ops (reshape, transpose, slice, concat, broadcast_to, ...) are dask's own;
- an op that mixes rows of the chunked dim and has no lowering is refused, naming the node
  (`dask-unsupported`, exit 2): it would need the whole dim in one chunk.

Backends know ops by name only: every kernel is the step's own (`Program.steps`).
"""

from __future__ import annotations

import math
import string

import numpy as np

from ..dims import Dim
from ..errors import UsageError
from ..ops.registry import KernelError, get_op

ELEMENTWISE_GROUPS = ("elementwise", "comparison", "selection", "integer")
ELEMENTWISE_OPS = {"cast", "where", "trunc_div", "identity", "stop_gradient"}
PER_SAMPLE = {"conv", "conv_transpose", "max_pool", "max_pool_pick", "max_pool_grad", "avg_pool", "avg_pool_grad",
              "instance_norm"}  # computed sample by sample along axis 0, mixing everything else


class NodeFailure(Exception):
    """A kernel's error inside a dask task, carried back to the client with its node."""

    def __init__(self, node: str, code: str, message: str) -> None:
        super().__init__(node, code, message)
        self.node, self.code, self.message = node, code, message


class Kernel:
    """A step's NumPy kernel as a dask task: attrs bound, the output cast to the step's dtype,
    and errors named by node (picklable, for a distributed cluster)."""

    def __init__(self, node: str, op: str, fn, kwargs: dict, dtype) -> None:
        self.node, self.op, self.fn, self.kwargs, self.dtype = node, op, fn, kwargs, dtype

    def __call__(self, *args, **extra):
        try:
            with np.errstate(all="ignore"):
                out = self.fn(*args, **{**self.kwargs, **extra})
        except KernelError as e:
            raise NodeFailure(self.node, e.code, e.message) from None
        except (ValueError, TypeError, IndexError, FloatingPointError, OverflowError) as e:
            raise NodeFailure(self.node, "kernel-failed", f"{self.op} failed: {e}") from None
        if self.dtype is not None and getattr(out, "dtype", None) != self.dtype:
            out = np.asarray(out).astype(self.dtype)
        return out


def _letters():
    yield from string.ascii_letters
    raise UsageError("dask-unsupported", "a value of more than 52 axes")


class Lowering:
    """Turns plan steps into dask arrays for one run (one set of dim bindings and chunks)."""

    def __init__(self, program, bindings: dict[str, int], chunked: dict[str, int]) -> None:
        self.program, self.bindings, self.chunked = program, bindings, chunked
        self.types = program.types
        self._chunked_dims = {Dim.sym(s) for s in chunked}

    # -- helpers ---------------------------------------------------------------------------
    def sizes(self, name: str) -> tuple[int, ...]:
        return tuple(d.evaluate(self.bindings) for d in self.types[name].shape)

    def refuse(self, step, why: str) -> UsageError:
        g = self.program.graph
        dims = ", ".join(f"{s}={n}" for s, n in self.chunked.items())
        return UsageError("dask-unsupported", f"{step.op} {why}; on --backend dask it would need "
                          f"the chunked dim whole ({dims})", node=g.owner(step.node), op=step.op, **g.loc(step.node).where(),
                          hint="give that dim one chunk (--chunks DIM=SIZE with its full size), or use --backend numpy")

    def big_output(self, step) -> bool:
        """Whether a step's output has a chunked dim (a NumPy step must not allocate it whole)."""
        return any(d in self._chunked_dims for d in self.types[step.node].shape)

    def kernel(self, step, kwargs: dict, **override) -> Kernel:
        return Kernel(step.node, step.op, step.kernel, {**kwargs, **override}, step.dtype)

    # -- the entry point -------------------------------------------------------------------
    def lower(self, step, args: list, kwargs: dict):
        import dask.array as da

        op = step.op
        rule = LOWERINGS.get(op)
        if rule is not None:
            out = rule(self, step, args, kwargs)
        else:
            spec = get_op(op)
            if _elementwise(spec):
                out = self.parallel(step, args, kwargs, {})
            elif op in PER_SAMPLE:
                out = self.parallel(step, args, kwargs, {k: _all_but(a, 0) for k, a in enumerate(args)})
            else:
                out = self.parallel(step, args, kwargs, {k: _all_but(a) for k, a in enumerate(args)},
                                    why="has no dask lowering and is not known to work row by row")
        if isinstance(out, da.Array) and step.dtype is not None and out.dtype != step.dtype:
            out = out.astype(step.dtype)
        return self.whole_elsewhere(step.node, out) if isinstance(out, da.Array) else out

    def whole_elsewhere(self, name: str, x):
        """Only axes of a chunked dim (or of a dim made from it, `2 * batch`) keep several blocks: a
        concat along another axis leaves blocks there, which later steps would take for chunks."""
        keep = set(self.chunked)
        fix = {k: -1 for k, (d, c) in enumerate(zip(self.types[name].shape, x.chunks)) if len(c) > 1 and not d.symbols() & keep}
        return x.rechunk(fix) if fix else x

    def parallel(self, step, args: list, kwargs: dict, whole: dict[int, set[int]], why: str | None = None,
                 like: str | None = None, **override):
        """The step's kernel run chunk by chunk: each chunked axis of an input is matched to the
        output axis of the same dim; inputs without chunked axes reach every task whole.
        `whole[k]` lists the axes of input k the op mixes along (which must not be chunked);
        `like`: the value whose shape the output has, when `override` changes it (else the step's)."""
        import dask.array as da

        names = self.program.graph.nodes[step.node].inputs
        out_dims = self.types[like or step.node].shape
        out_sizes = self.sizes(like or step.node)
        letters = _letters()
        out_index = [next(letters) for _ in out_dims]
        pairs, used = [], set()
        for k, a in enumerate(args):
            if not isinstance(a, da.Array) and np.ndim(a) == 0:
                pairs += [a, None]  # a number: written into each task
                continue
            if not isinstance(a, da.Array):  # a param: one key that every task reads (shipped once per worker)
                a = da.from_array(np.asarray(a), chunks=-1)
            in_dims = self.types[names[k]].shape
            index = []
            for axis, chunks in enumerate(a.chunks):
                if len(chunks) <= 1:
                    index.append(next(letters))
                    continue
                if axis in whole.get(k, ()):
                    raise self.refuse(step, why or f"mixes values along axis {axis} of input '{names[k]}', which is chunked")
                j = _match(in_dims, axis, out_dims)
                if j is None:
                    raise self.refuse(step, f"moves the chunked axis {axis} of input '{names[k]}'")
                index.append(out_index[j])
                used.add(j)
            pairs += [a, "".join(index)]
        new_axes = {out_index[j]: out_sizes[j] for j in range(len(out_dims)) if j not in used}
        dtype = step.dtype if step.dtype is not None else np.float64
        return da.blockwise(self.kernel(step, kwargs, **override), "".join(out_index), *pairs, new_axes=new_axes,
                            concatenate=True, dtype=dtype, meta=np.empty((0,) * len(out_dims), dtype))

    def whole(self, x):
        import dask.array as da

        return x if isinstance(x, da.Array) else da.from_array(np.asarray(x), chunks=-1)


def _elementwise(spec) -> bool:
    return spec is not None and (spec.ufunc is not None or spec.name in ELEMENTWISE_OPS
                                 or spec.group.startswith(ELEMENTWISE_GROUPS))


def _all_but(a, *keep: int) -> set[int]:
    return {k for k in range(np.ndim(a) if not hasattr(a, "ndim") else a.ndim) if k not in keep}


def _match(in_dims: tuple, axis: int, out_dims: tuple) -> int | None:
    """The output axis that carries input axis `axis`: the same position with the same dim, else the
    one output axis of that dim (None if there is none, or several)."""
    d = in_dims[axis]
    if axis < len(out_dims) and out_dims[axis] == d and sum(o == d for o in out_dims) == 1:
        return axis
    hits = [j for j, o in enumerate(out_dims) if o == d]
    if len(hits) == 1:
        return hits[0]
    shift = len(out_dims) - len(in_dims)  # broadcasting aligns from the right
    if 0 <= axis + shift < len(out_dims) and out_dims[axis + shift] == d:
        return axis + shift
    return None


def _axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim for a in axis)) if ndim else ()


def _chunked_axes(x) -> set[int]:
    return {k for k, c in enumerate(getattr(x, "chunks", ())) if len(c) > 1}


# -- lowerings -------------------------------------------------------------------------------

def _reduce(lo: Lowering, step, args, kwargs):
    """sum / prod / max / min / logsumexp: per chunk where the reduced axes are whole, else a tree of
    the kernel itself (each of these is f over f of the chunks); mean is dask's (a tree sum and count)."""
    import dask.array as da

    x = args[0]
    axes = _axes(kwargs.get("axis"), np.ndim(x))
    keepdims = bool(kwargs.get("keepdims"))
    if not (_chunked_axes(x) & set(axes)):
        return lo.parallel(step, args, kwargs, {0: set(axes)})
    if step.op == "mean":
        return da.mean(x, axis=axes, keepdims=keepdims)
    k = lo.kernel(step, {})
    k.dtype = None  # partial results keep the kernel's own dtype; the step's dtype is set at the end
    return da.reduction(x, k, k, combine=k, axis=axes, keepdims=keepdims, dtype=step.dtype, concatenate=True,
                        meta=np.empty((0,) * (x.ndim if keepdims else x.ndim - len(axes)), step.dtype))


def _matmul(lo: Lowering, step, args, kwargs):
    import dask.array as da

    a, b = (lo.whole(v) for v in args)
    return da.matmul(a, b)


def _sum_to(lo: Lowering, step, args, kwargs):
    x = lo.whole(args[0])
    shape = lo.sizes(step.node)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(k + lead for k, d in enumerate(shape) if d == 1 and x.shape[k + lead] != 1)
    return (x.sum(axis=axes, keepdims=True) if axes else x).reshape(shape)


def _cross_entropy(lo: Lowering, step, args, kwargs):
    """Per-row losses chunk by chunk (the kernel with reduction none), then their tree sum or mean."""
    import dask.array as da

    reduction = kwargs.get("reduction", "mean")
    last = {0: {lo.whole(args[0]).ndim - 1}}
    if reduction == "none":
        return lo.parallel(step, args, kwargs, last)
    targets = lo.program.graph.nodes[step.node].inputs[1]
    rows = lo.parallel(step, args, kwargs, last, like=targets, reduction="none")
    return da.sum(rows) if reduction == "sum" else da.mean(rows)


def _conv_filter(lo: Lowering, step, args, kwargs):
    """The filter gradient sums over samples: one partial per chunk of the batch, then a tree sum."""
    import dask.array as da

    chunked = [k for k, a in enumerate(args) if isinstance(a, da.Array) and _chunked_axes(a)]
    if not chunked:
        return lo.parallel(step, args, kwargs, {})
    if any(_chunked_axes(args[k]) - {0} for k in chunked):
        raise lo.refuse(step, "sums over axes other than the batch axis 0, which are chunked")
    kern = lo.kernel(step, kwargs)
    x, g = (lo.whole(a) for a in args[:2])
    rows = args[chunked[0]].chunks[0]
    x, g = x.rechunk({0: rows}), g.rechunk({0: rows})
    out = lo.sizes(step.node)
    idx = string.ascii_letters
    xi, gi = "A" + idx[:x.ndim - 1], "A" + idx[10:10 + g.ndim - 1]
    parts = da.blockwise(lambda a, b: kern(a, b, *args[2:])[None], "A" + idx[20:20 + len(out)], x, xi, g, gi,
                         adjust_chunks={"A": 1}, new_axes={idx[20 + j]: n for j, n in enumerate(out)},
                         concatenate=True, dtype=step.dtype, meta=np.empty((0,) * (len(out) + 1), step.dtype))
    return parts.sum(axis=0)


def _reshape(lo: Lowering, step, args, kwargs):
    return lo.whole(args[0]).reshape(lo.sizes(step.node))


def _transpose(lo: Lowering, step, args, kwargs):
    import dask.array as da

    return da.transpose(lo.whole(args[0]), kwargs.get("perm"))


def _expand_dims(lo: Lowering, step, args, kwargs):
    return lo.whole(args[0]).reshape(lo.sizes(step.node))


def _slice(lo: Lowering, step, args, kwargs):
    x = lo.whole(args[0])
    index = [slice(None)] * x.ndim
    index[kwargs["axis"]] = slice(kwargs["start"], kwargs["stop"])
    return x[tuple(index)]


def _concat(lo: Lowering, step, args, kwargs):
    import dask.array as da

    return da.concatenate([lo.whole(a) for a in args], axis=kwargs.get("axis", 0))


def _broadcast_to(lo: Lowering, step, args, kwargs):
    """A broadcast along a chunked dim makes its chunks there (a zeros_like of the batch, a bias)."""
    import dask.array as da

    x = lo.whole(args[0])
    shape = lo.sizes(step.node)
    dims = lo.types[step.node].shape
    lead = len(shape) - x.ndim
    chunks = []
    for j, (d, n) in enumerate(zip(dims, shape)):
        k = j - lead
        if k >= 0 and x.shape[k] == n:
            chunks.append(x.chunks[k])
        else:
            rows = next((lo.chunked[s] for s in d.symbols() if d == Dim.sym(s) and s in lo.chunked), n)
            chunks.append(tuple(min(rows, n - i) for i in range(0, n, rows)) if n else (0,))
    return da.broadcast_to(x, shape, chunks=tuple(chunks))


def _size(lo: Lowering, step, args, kwargs):
    shape = lo.sizes(lo.program.graph.nodes[step.node].inputs[0])
    axis = kwargs.get("axis")
    return float(math.prod(shape if axis is None else (shape[a] for a in ([axis] if isinstance(axis, int) else axis))))


def _same(lo: Lowering, step, args, kwargs):
    return args[0]


def _row_op(*whole_from_attr: str):
    """Ops computed along `attr` axes of input 0 (softmax's axis, take_along_axis's axis...)."""

    def rule(lo: Lowering, step, args, kwargs):
        ndim = np.ndim(args[0]) if not hasattr(args[0], "ndim") else args[0].ndim
        axes = set()
        for attr in whole_from_attr:
            axes |= set(_axes(kwargs.get(attr, -1), ndim))
        if step.op == "layer_norm":
            start = min(axes)
            axes = set(range(start, ndim))
        if step.op in ("softmax", "log_softmax") and axes & _chunked_axes(args[0]):
            return _softmax_tree(lo, step, args[0], tuple(sorted(axes)))
        return lo.parallel(step, args, kwargs, {k: axes for k in range(len(args)) if k < 2})

    return rule


def _softmax_tree(lo: Lowering, step, x, axes: tuple[int, ...]):
    """softmax / log_softmax over a chunked axis: x - logsumexp(x) with the logsumexp a tree of the
    logsumexp kernel (equal to the NumPy template up to rounding, not bitwise)."""
    import dask.array as da

    lse = get_op("logsumexp").forward
    m = da.reduction(x, lse, lse, combine=lse, axis=axes, keepdims=True, dtype=x.dtype, concatenate=True,
                     meta=np.empty((0,) * x.ndim, x.dtype))
    return da.map_blocks(_shifted, x, m, log=step.op == "log_softmax", dtype=x.dtype)


def _shifted(x, m, log: bool):
    with np.errstate(all="ignore"):  # rows of -inf give NaN, as the NumPy template does
        return x - m if log else np.exp(x - m)


def _batch_norm(lo: Lowering, step, args, kwargs):
    training = kwargs.get("training")
    ndim = args[0].ndim
    return lo.parallel(step, args, kwargs, {0: set(range(ndim)) - {1} if training else set(range(1, ndim))},
                       why="normalizes over the batch (training)" if training else None)


def _dropout(lo: Lowering, step, args, kwargs):
    """Inference dropout is the identity; a training mask is drawn for the whole tensor at once."""
    plain = not kwargs.get("training") and len(args) == 1
    return lo.parallel(step, args, kwargs, {0: set() if plain else _all_but(args[0])},
                       why="draws its mask for the whole tensor at once")


def _by_dims(lo: Lowering, step, args, kwargs):
    """one_hot, tile, pad: chunk by chunk where the output keeps the chunked dim as it is (tile or
    pad along the batch make a dim such as `2 * batch`, which `parallel` refuses)."""
    return lo.parallel(step, args, kwargs, {})


LOWERINGS = {
    "sum": _reduce, "mean": _reduce, "max": _reduce, "min": _reduce, "logsumexp": _reduce,
    "matmul": _matmul, "sum_to": _sum_to, "cross_entropy": _cross_entropy, "conv_filter": _conv_filter,
    "reshape": _reshape, "flatten": _reshape, "expand_dims": _expand_dims, "squeeze": _expand_dims,
    "transpose": _transpose, "slice": _slice, "concat": _concat, "broadcast_to": _broadcast_to, "size": _size,
    "identity": _same, "stop_gradient": _same,
    "softmax": _row_op("axis"), "log_softmax": _row_op("axis"), "take_along_axis": _row_op("axis"),
    "layer_norm": _row_op("axis"), "batch_norm": _batch_norm, "dropout": _dropout, "one_hot": _by_dims,
    "prod": _reduce, "cumsum": _row_op("axis"), "argmax": _row_op("axis"), "argmin": _row_op("axis"),
    "tile": _by_dims, "pad": _by_dims,
}
