"""A reference evaluator: run a (small) graph at a higher precision than its own.

Three precisions: 'float64' (the reference for float32 graphs), 'longdouble' (NumPy's
extended type: 64-bit mantissa, exponent range to 1e4932 on x86, so exp(1000) is finite),
and 'mpmath' (arbitrary precision, when mpmath is installed). The first two reuse each op's
NumPy forward with arrays of that dtype (most ufuncs have long-double loops), so the
reference is the same executable spec the executor runs, only wider. mpmath runs object
arrays of `mpf`: ops made of NumPy arithmetic (sums, shapes, where, matmul) run unchanged;
the transcendental and stabilised ops have a small kernel table here.

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
    """mpmath: object arrays of mpf, computed at `digits` significant digits (mpf of a float is exact)."""

    def __init__(self, digits: int) -> None:
        import mpmath

        self.digits = digits
        self.mp = mp = mpmath.mp
        real = self._real
        self.unary = {
            "exp": mp.exp, "log": real(mp.log), "log1p": real(mp.log1p), "expm1": mp.expm1, "sqrt": real(mp.sqrt),
            "sin": mp.sin, "cos": mp.cos, "tanh": mp.tanh, "abs": abs, "sign": lambda x: mp.sign(x),
            "square": lambda x: x * x, "neg": lambda x: -x, "identity": lambda x: x, "stop_gradient": lambda x: x,
            "relu": lambda x: x if x > 0 else mp.mpf(0),
            "sigmoid": lambda x: 1 / (1 + mp.exp(-x)) if x >= 0 else mp.exp(x) / (1 + mp.exp(x)),
            "softplus": lambda x: x + mp.log1p(mp.exp(-x)) if x > 0 else mp.log1p(mp.exp(x)),
        }
        self.binary = {"div": self._div, "pow": real(lambda a, b: a ** b)}

    def _real(self, f):
        mp = self.mp

        def g(*xs):
            try:
                out = f(*xs)
            except (ValueError, ZeroDivisionError):
                return mp.nan
            return out if isinstance(out, mp.mpf) else mp.nan

        return g

    def _div(self, a, b):
        mp = self.mp
        if b == 0:
            if a == 0 or mp.isnan(a):
                return mp.nan
            return mp.inf if a > 0 else -mp.inf  # mpmath has no signed zero
        return a / b

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

    def _map(self, f, *args):
        out = np.frompyfunc(f, len(args), 1)(*args)
        return np.asarray(out, dtype=object)

    def _lse(self, x, axis=None, keepdims=False):
        mp = self.mp
        m = np.max(x, axis=axis, keepdims=True)
        m = self._map(lambda v: v if mp.isfinite(v) else mp.mpf(0), m)
        s = np.sum(self._map(mp.exp, x - m), axis=axis, keepdims=True)
        out = self._map(self._real(mp.log), s) + m
        if not keepdims:
            out = np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
        return out

    def run(self, name, op, args, kwargs):
        mp = self.mp
        with mp.workdps(self.digits):
            if name in self.unary:
                return self._map(self.unary[name], args[0])
            if name in self.binary:
                return self._map(self.binary[name], *np.broadcast_arrays(*[np.asarray(a, dtype=object) for a in args]))
            if name == "logsumexp":
                return self._lse(args[0], **kwargs)
            if name == "log_softmax":
                return args[0] - self._lse(args[0], axis=kwargs["axis"], keepdims=True)
            if name == "softmax":
                return self._map(mp.exp, args[0] - self._lse(args[0], axis=kwargs["axis"], keepdims=True))
            if name == "cross_entropy":
                op.forward(np.zeros(np.shape(args[0])), args[1], "none")  # raises KernelError for a bad target
                lp = args[0] - self._lse(args[0], axis=-1, keepdims=True)
                loss = -np.take_along_axis(lp, np.asarray(args[1])[..., None].astype(np.intp), -1)[..., 0]
                red = kwargs["reduction"]
                return np.sum(loss) if red == "sum" else (np.mean(loss) if red == "mean" else loss)
            if name == "cast":
                x = np.asarray(args[0])
                if kwargs["dtype"].startswith("float"):
                    return x
                return np.asarray(self._map(float, x) if x.dtype == object else x).astype(kwargs["dtype"])
            if name in ("greater", "less", "equal"):
                return np.asarray(op.forward(*args), dtype=bool)
            if name == "one_hot":
                return self.lift(op.forward(*args, **kwargs))
            out = op.forward(*args, **kwargs)
            if isinstance(out, float):
                return np.array(mp.mpf(out), dtype=object)
            out = np.asarray(out)
            return self.lift(out) if out.dtype.kind == "f" else out
