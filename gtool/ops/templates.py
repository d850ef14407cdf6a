"""Composite ops written once: each is a *template*, a function of a primitive namespace `P`.

A template is the numerically careful decomposition of a composite op (sigmoid, softplus,
softmax, log_softmax, logsumexp, cross_entropy) into primitives, written once as plain
Python calls on `P`. Every backend runs the same function with its own `P`:

- the NumPy forward runs it with `NumpyPrims` (whole arrays, vectorized);
- the numba backends run it with a namespace that emits one micro-op per call
  (`backends/lowering.py`, row templates) or one line of scalar code per call
  (`backends/templates.py`, scalar templates, compiled once into a helper function).

So the order of operations, the branches and the constants of a composite live here and
nowhere else. The primitives (all of them NaN-propagating, as NumPy's):

  elementwise  exp log log1p neg abs add sub mul div maximum minimum, where(c, a, b), gt ge eq,
               isfinite
               (operands are values or Python numbers; `where` may compute both sides)
  rows         max(x, axes) (keepdims, -inf for an empty axis), sum(x, axes) (keepdims),
               count(mask, axes) (keepdims, in the float dtype), squeeze(v, axes) (drop the
               kept axes; axes None: all), rows(v) (drop a kept last axis), pick(x, t)
               (x[..., t] along the last axis), total(v, kind) (sum or mean of everything)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Template:
    """`fn(P, *inputs, **attrs)`; `scalar`: an elementwise template of one number (compiled to
    one helper function by the numba backends), else a row template over whole arrays."""

    fn: Callable
    scalar: bool = False


def as_float(x):
    """x as floats: ints and bools become float64, as the shape rules of float ops type them."""
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


_INTO = {"exp", "log", "log1p", "neg", "abs", "add", "sub", "mul", "div", "maximum", "minimum"}  # take out=


class NumpyPrims:
    """The primitives on NumPy arrays of one float dtype (Python numbers become that dtype)."""

    def __init__(self, dtype) -> None:
        self.dt = np.dtype(dtype)

    def _c(self, v):
        return self.dt.type(v) if isinstance(v, int | float) else v

    def exp(self, a, out=None):
        return np.exp(a, out=out)

    def log(self, a, out=None):
        return np.log(a, out=out)

    def log1p(self, a, out=None):
        return np.log1p(a, out=out)

    def neg(self, a, out=None):
        return np.negative(a, out=out)

    def abs(self, a, out=None):
        return np.abs(a, out=out)

    def add(self, a, b, out=None):
        return np.add(self._c(a), self._c(b), out=out)

    def sub(self, a, b, out=None):
        return np.subtract(self._c(a), self._c(b), out=out)

    def mul(self, a, b, out=None):
        return np.multiply(self._c(a), self._c(b), out=out)

    def div(self, a, b, out=None):
        return np.divide(self._c(a), self._c(b), out=out)

    def maximum(self, a, b, out=None):
        return np.maximum(self._c(a), self._c(b), out=out)

    def minimum(self, a, b, out=None):
        return np.minimum(self._c(a), self._c(b), out=out)

    def where(self, c, a, b):
        return np.where(c, self._c(a), self._c(b))

    def gt(self, a, b):
        return np.greater(self._c(a), self._c(b))

    def ge(self, a, b):
        return np.greater_equal(self._c(a), self._c(b))

    def eq(self, a, b):
        return np.equal(self._c(a), self._c(b))

    def isfinite(self, a):
        return np.isfinite(a)

    def max(self, x, axes):
        return np.max(x, axis=axes, keepdims=True, initial=-np.inf)  # initial: an empty axis gives -inf

    def sum(self, x, axes):
        return np.sum(x, axis=axes, keepdims=True)

    def count(self, mask, axes):
        return np.sum(mask, axis=axes, keepdims=True, dtype=self.dt)

    def squeeze(self, v, axes):
        return np.squeeze(v, axis=axes) if axes is not None else v.reshape(())

    def rows(self, v):
        return v[..., 0]

    def pick(self, x, t):
        return np.take_along_axis(x, np.asarray(t)[..., None].astype(np.intp), -1)[..., 0]

    def total(self, v, kind):
        if kind == "mean" and np.size(v) == 0:
            return np.float64("nan")  # the mean of no rows (torch's too), without NumPy's warning
        return np.mean(v) if kind == "mean" else np.sum(v)


class _Steps:
    """Records a scalar template as steps `(prim, args)`; a value is the index of the step
    that made it (`_Ref(0)` is the input)."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, tuple]] = []

    def __getattr__(self, prim: str):
        if not hasattr(NumpyPrims, prim):
            raise AttributeError(prim)

        def step(*args):
            self.steps.append((prim, args))
            return _Ref(len(self.steps))

        return step


@dataclass(frozen=True)
class _Ref:
    k: int


@functools.cache
def _trace(template: Template):
    """(steps, result, last use of each value) of a scalar template, traced once."""
    rec = _Steps()
    result = template.fn(rec, _Ref(0))
    last = {a.k: i for i, (_, args) in enumerate(rec.steps, 1) for a in args if isinstance(a, _Ref)}
    return rec.steps, result, last


def _buffered(template: Template, x: np.ndarray):
    """A scalar template on a whole array, each step a NumPy call writing into a buffer of a
    value no later step reads (the same calls as on `NumpyPrims`, without a fresh array per
    step: a template of seven steps then runs at the speed of hand-fused in-place code)."""
    steps, result, last = _trace(template)
    P, vals, free = NumpyPrims(x.dtype), {0: x}, []
    for i, (prim, args) in enumerate(steps, 1):
        ins = [vals[a.k] if isinstance(a, _Ref) else P._c(a) for a in args]
        free += [vals.pop(a.k) for a in dict.fromkeys(args) if isinstance(a, _Ref) and a.k and last[a.k] == i]
        fn = getattr(P, prim)
        j = next((j for j, b in enumerate(free) if b.dtype == x.dtype), None) if prim in _INTO else None
        if j is not None:
            vals[i] = fn(*ins, out=free.pop(j))
        else:
            vals[i] = fn(*ins)
    return vals[result.k]


def numpy_forward(template: Template, fast: Callable | None = None) -> Callable:
    """The NumPy forward of a template op: float inputs (ints and bools as float64), the
    template on `NumpyPrims` of that dtype; overflow to inf and NaN are values here, not errors.

    `fast(x, *rest, **attrs)`: the same floats by plain NumPy calls where it applies, else None
    (ops/rowfast.py: rows with a finite max, without the template's per-call overhead)."""

    def forward(x, *rest, **attrs):
        if fast is not None:
            out = fast(x, *rest, **attrs)
            if out is not None:
                return out
        x = as_float(x) if not isinstance(x, float) else x
        with np.errstate(all="ignore"):
            if template.scalar and isinstance(x, np.ndarray) and x.ndim:
                return _buffered(template, x)
            return template.fn(NumpyPrims(np.result_type(x)), x, *rest, **attrs)

    forward.__doc__ = template.fn.__doc__
    forward.template = template
    return forward


# the templates -------------------------------------------------------------------------------


def sigmoid(P, x):
    """n / (1 + e), e = e^-|x|, n = min(1, e + [x >= 0]): 1 / (1 + e^-x) for x >= 0 and
    e^x / (1 + e^x) for x < 0 (n is 1 or e exactly, as e <= 1), so nothing overflows (no
    NaN) and the tail is exact into the subnormals (1 / (1 + e^-x) would give 0 below -709).
    Arithmetic rather than a select: NumPy's where on a mixed mask costs more than an exp."""
    e = P.exp(P.neg(P.abs(x)))
    return P.div(P.minimum(1.0, P.add(e, P.ge(x, 0.0))), P.add(1.0, e))


def softplus(P, x):
    """max(x, 0) + log1p(e^-|x|) (NumPy's logaddexp(0, x)): e^-|x| <= 1 never overflows, and
    log1p keeps the tail exact for x << 0. NaN gives NaN (max and min propagate it)."""
    return P.add(P.maximum(x, 0.0), P.log1p(P.exp(P.neg(P.abs(x)))))


def lse_parts(P, x, axes):
    """(m, l, x - m) with logsumexp(x) = m + l: m the max (0 where it is not finite), l accurate.

        mx = max(x); m = mx if finite else 0; e = exp(x - m)
        rest = sum(e where x != mx) + (count(x == mx) - 1)
        l = log1p(rest) where mx is finite, else mx
    log1p(rest) rather than log(1 + rest): when one entry dominates, 1 + tiny would lose the
    tiny part to rounding. And log_softmax is (x - m) - l, never x - (m + l): m + l is
    rounded to the ulp of m (0.125 at 1e15). A non-finite max is the answer itself: an all
    -inf row, or an empty axis, gives l = -inf (logsumexp -inf, never NaN); a +inf entry
    gives +inf; NaN gives NaN (max propagates it).
    """
    mx = P.max(x, axes)
    finite = P.isfinite(mx)
    m = P.where(finite, mx, 0.0)
    d = P.sub(x, m)
    e = P.exp(d)
    top = P.eq(x, mx)
    rest = P.add(P.sum(P.where(top, 0.0, e), axes), P.sub(P.count(top, axes), 1.0))
    return m, P.where(finite, P.log1p(rest), mx), d


def logsumexp(P, x, axis=None, keepdims=False):
    """m + l of `lse_parts`."""
    m, rest, _ = lse_parts(P, x, axis)
    out = P.add(rest, m)
    return out if keepdims else P.squeeze(out, axis)


def log_softmax(P, x, axis=-1):
    """(x - m) - l with logsumexp = m + l: x - logsumexp(x) would round logsumexp to the ulp
    of m first (6e-5 at 1000 in float32), while x - m is exact."""
    _, rest, d = lse_parts(P, x, axis)
    return P.sub(d, rest)


def softmax(P, x, axis=-1):
    """exp(x - m) / sum(exp(x - m)), m the row max (0 where not finite)."""
    mx = P.max(x, axis)
    e = P.exp(P.sub(x, P.where(P.isfinite(mx), mx, 0.0)))
    return P.div(e, P.sum(e, axis))


def cross_entropy(P, logits, targets, reduction="mean"):
    """l - (x[target] - m) per row: -log_softmax(x)[target], as (x - m) - l negated exactly."""
    m, rest, _ = lse_parts(P, logits, -1)
    loss = P.sub(P.rows(rest), P.sub(P.pick(logits, targets), P.rows(m)))
    return loss if reduction == "none" else P.total(loss, reduction)


SIGMOID = Template(sigmoid, scalar=True)
SOFTPLUS = Template(softplus, scalar=True)
LOGSUMEXP = Template(logsumexp)
LOG_SOFTMAX = Template(log_softmax)
SOFTMAX = Template(softmax)
CROSS_ENTROPY = Template(cross_entropy)
