"""A reference evaluator: run a (small) graph at a higher precision than its own.

Three precisions: 'float64' (the reference for float32 graphs), 'longdouble' (NumPy's
extended type: 64-bit mantissa, exponent range to 1e4932 on x86, so exp(1000) is finite),
and 'mpmath' (arbitrary precision, when mpmath is installed). The first two reuse each op's
NumPy forward with arrays of that dtype (most ufuncs have long-double loops), so the
reference is the same executable spec the executor runs, only wider. mpmath runs object
arrays of `mpf` through each op's own reference (`OpDef.reference`, written from the math in
gtool/ops: one reference per op, the one the op tests use too).

The evaluator walks nodes in order, like the executor, but with no plan or buffer reuse:
it is for checking small subgraphs, not speed.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..ir import Graph
from ..ops.registry import get_op

PRECISIONS = ("float32", "float64", "longdouble", "mpmath")  # float32: a coarse probe (see verify)


def have_mpmath() -> bool:
    try:
        import mpmath  # noqa: F401
    except ImportError:
        return False
    return True


def evaluate(graph: Graph, values: dict[str, np.ndarray], outputs, precision: str, bindings: dict | None = None,
             digits: int = 40) -> dict[str, np.ndarray]:
    """The outputs at `precision`, as float64 / long-double arrays (mpmath results, computed
    with `digits` significant digits, are rounded to long double: 11 bits more than float64)."""
    wide = _Mp(digits) if precision == "mpmath" else _Wide(np.longdouble if precision == "longdouble" else precision)
    env: dict = {}
    for name, t in graph.tensors.items():
        v = values.get(name, t.value)
        if v is not None:  # weak scalars stay Python numbers, as in the executor: they take the other dtype
            env[name] = np.asarray(v).item() if t.type.weak else wide.lift(np.asarray(v))
    bindings = bindings or {}
    live = graph.ancestors(outputs)
    with np.errstate(all="ignore"):
        for name, node in graph.nodes.items():
            if name not in live:
                continue
            op = get_op(node.op)
            args = [env[i] for i in node.inputs]
            kwargs = op.prepare(node.attrs, bindings)
            env[name] = wide.run(node.op, op, args, kwargs)
    return {o: wide.lower(env[o]) for o in outputs}


class _Wide:
    """float64 or long double: the op's own forward, fed wider arrays."""

    def __init__(self, dtype) -> None:
        self.dtype = np.dtype(dtype)

    def lift(self, a: np.ndarray) -> np.ndarray:
        return a.astype(self.dtype) if a.dtype.kind == "f" else a

    def lower(self, a) -> np.ndarray:
        return np.asarray(a)

    def run(self, name, op, args, kwargs):
        if name == "cast":
            x = np.asarray(args[0])
            return x.astype(self.dtype) if kwargs["dtype"].startswith("float") else x.astype(kwargs["dtype"])
        if name == "one_hot":
            kwargs = {**kwargs, "dtype": self.dtype}
        out = op.forward(*args, **kwargs)
        if isinstance(out, float):
            return self.dtype.type(out)
        return out


class _Mp:
    """mpmath: object arrays of mpf, each op by its record's reference (`OpDef.reference`, the
    math written once in gtool/ops), computed at `digits` significant digits or more."""

    def __init__(self, digits: int) -> None:
        import mpmath

        self.digits = digits
        self.mp = mpmath.mp

    def lift(self, a: np.ndarray) -> np.ndarray:
        if a.dtype.kind != "f":
            return a
        return np.frompyfunc(lambda v: self.mp.mpf(float(v)), 1, 1)(a).astype(object) if a.ndim else \
            np.array(self.mp.mpf(float(a)), dtype=object)

    def lower(self, a) -> np.ndarray:
        a = np.asarray(a)
        if a.dtype != object:
            return a
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conv = np.frompyfunc(lambda v: np.longdouble(self.mp.nstr(v, 25)) if self.mp.isfinite(v)
                                 else np.longdouble(float(v)), 1, 1)
            return np.asarray(conv(a), dtype=np.longdouble)

    def _value(self, v):
        """A reference's number as the evaluator keeps it: bools and ints as they are, the
        rest as mpf (a reference may give a Python float for an IEEE special case, or a
        complex for NaN)."""
        if isinstance(v, bool | int | np.bool_ | np.integer) or isinstance(v, self.mp.mpf):
            return v
        if isinstance(v, complex | self.mp.mpc):
            return self.mp.nan
        return self.mp.mpf(v)

    def run(self, name, op, args, kwargs):
        with self.mp.workdps(self.digits):
            if op.reference is None:  # a plugin op without one: its NumPy forward on the mpf arrays
                out = np.asarray(op.forward(*args, **kwargs))
                return self.lift(out) if out.dtype.kind == "f" else out
            if name == "cross_entropy":
                op.forward(np.zeros(np.shape(args[0])), args[1], "none")  # raises KernelError for a bad target
            out = op.reference(*args, **kwargs)
            if not isinstance(out, np.ndarray):
                return np.array(self._value(out), dtype=object)
            if out.dtype != object:
                return out
            return np.asarray(np.frompyfunc(self._value, 1, 1)(out), dtype=object).reshape(out.shape)
