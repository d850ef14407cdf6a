"""Gradient checking: reverse-mode gradients against central finite differences, in float64.

Why each piece is here:

- The graph is cast to float64 (`interp.at_precision`) whatever it declares: central
  differences in float32 keep about three correct digits, too few to tell a wrong rule from
  rounding. Checking in float32 is possible (`dtype=`) but only with loose tolerances.
- `full` perturbs every element of a target (two loss evaluations each); `fast` checks a few
  random directions (`<grad, d>` against the directional difference), so a tensor of a
  million elements costs a handful of evaluations. `forward` replaces finite differences by
  forward mode (the dot-product test `<g, J t> = <Jᵀ g, t>`), exact up to rounding.
- A step that crosses a kink (relu/abs at 0, max/min ties, a where-branch) makes the central
  difference meaningless. Left and right one-sided differences that still disagree at a
  quarter of the step expose it; an analytic value between them is a valid subgradient.
- When a target fails, each node's VJP rule is checked alone on the values that actually flow
  into it (`localise`), so the report names the node, op and plugin whose backward is wrong.

Every evaluation is one run of a compiled plan (`interp.program`), never a reload.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from . import autodiff
from .errors import Diagnostic, GraphError, UsageError
from .feeds import resolve
from .interp import at_precision, free_dims, program
from .ir import Graph, Tensor
from .ops.registry import get_op
from .validate import types_of


@dataclass(frozen=True)
class Tolerances:
    """eps: relative step (h = eps * max(1, |x|)); an element passes when
    |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|)."""

    eps: float
    rtol: float
    atol: float
    unit: float = float(np.finfo(np.float64).eps)  # the check's unit roundoff, for the noise term


# float64: rounding in a central difference is ~1e-16 |L| / h and truncation ~h^2 |L'''|, so
# h = 1e-6 keeps both near 1e-10: rtol 1e-5 leaves five orders of margin and still catches
# any rule that is wrong by more than a rounding error. float32 (eps_mach 1.2e-7): h = 1e-3.
DEFAULTS = {"float64": Tolerances(1e-6, 1e-5, 1e-8),
            "float32": Tolerances(1e-3, 1e-2, 1e-3, float(np.finfo(np.float32).eps))}
FORWARD_RTOL = 1e-12  # reverse vs forward mode: the same arithmetic in another order (float32: 1e-5)
FULL_LIMIT = 2000  # auto mode: elements per target up to which every element is perturbed
KINK_MARGIN = 1e-3  # random inputs feeding relu/abs are kept this far from 0
KINK_OPS = ("relu", "abs", "sign")


@dataclass
class Culprit:
    """The first node (in topological order) whose VJP rule disagrees with finite differences."""

    node: str
    op: str
    plugin: str | None
    path: str | None
    line: int | None
    input: str | None
    message: str
    index: list[int] | None = None
    analytic: float | None = None
    numeric: float | None = None
    part_of: str | None = None  # for generated nodes: the node they belong to

    def text(self) -> str:
        where = [f"op `{self.op}`"] + ([f"part of {self.part_of}"] if self.part_of else [])
        if self.plugin:
            where.append(f"plugin {self.plugin}")
        if self.path:
            where.append(f"{self.path}:{self.line}" if self.line else self.path)
        return f"the backward of `{self.node}` ({', '.join(where)}) is wrong: {self.message}"

    def to_json(self) -> dict:
        return {"node": self.node, "part_of": self.part_of, "op": self.op, "plugin": self.plugin, "path": self.path,
                "line": self.line,
                "input": self.input, "index": self.index, "analytic": self.analytic, "numeric": self.numeric,
                "message": self.text()}


@dataclass
class Result:
    """One graph and target. `index` is the worst element (full mode, order 2); `direction`
    the worst random direction (fast mode). Kinks accepted as subgradients are not errors."""

    path: str | None
    wrt: str | None
    passed: bool
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    mode: str = ""  # full | fast | forward-full | forward-fast | order2 | invalid | error
    order: int = 1
    index: list[int] | None = None
    direction: int | None = None
    analytic: float | None = None
    numeric: float | None = None
    kinks: int = 0
    kink_at: list = field(default_factory=list)
    size: int = 0
    checked: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    dtype: str = "float64"
    declared_dtype: str | None = None
    tolerances: Tolerances | None = None
    message: str | None = None
    culprit: Culprit | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    kink_failure: bool = False  # failed only because --strict counts kinks

    def to_json(self) -> dict:
        out = {"path": self.path, "wrt": self.wrt, "max_abs_error": self.max_abs_error,
               "max_rel_error": self.max_rel_error, "passed": self.passed, "mode": self.mode, "order": self.order,
               "index": self.index, "direction": self.direction, "analytic": self.analytic, "numeric": self.numeric,
               "kinks": self.kinks, "kink_at": self.kink_at, "size": self.size, "checked": self.checked,
               "evaluations": self.evaluations, "seconds": round(self.seconds, 6), "dtype": self.dtype,
               "declared_dtype": self.declared_dtype, "message": self.message,
               "culprit": self.culprit.to_json() if self.culprit else None}
        if self.tolerances:
            out.update(eps=self.tolerances.eps, rtol=self.tolerances.rtol, atol=self.tolerances.atol)
        if self.diagnostics:
            out["errors"] = [dict(d.to_json(), path=d.path) for d in self.diagnostics]
        return out


Progress = Callable[[str, int, int], None]  # (label, evaluations done, evaluations expected)


# the public entry point --------------------------------------------------------------------------


def grad_check(graph: Graph, inputs: dict | None = None, wrt=None, of: str | None = None, *, mode: str = "auto",
               directions: int = 4, against: str = "fd", order: int = 1, rtol: float | None = None,
               atol: float | None = None, eps: float | None = None, dtype: str = "float64", strict: bool = False,
               full_limit: int = FULL_LIMIT, seed: int = 0, dims: dict[str, int] | None = None, backend=None,
               localise: bool = True, progress: Progress | None = None) -> list[Result]:
    """Check the gradient of `of` (default: the loss) with respect to each target.

    Data: `inputs`, then values in the file, then random data (inside declared ranges; kept
    `KINK_MARGIN` away from 0 where a random input feeds relu/abs/sign directly), params from
    their init. Raises UsageError for a wrong call (unknown target, bad option, missing data).
    """
    _check_options(mode, directions, against, order, dtype, full_limit)
    base = DEFAULTS[dtype]
    tol = Tolerances(eps if eps is not None else base.eps, rtol if rtol is not None else base.rtol,
                     atol if atol is not None else base.atol, base.unit)
    declared = types_of(graph)
    g = at_precision(graph, dtype)
    try:
        wrt, loss = autodiff.check_targets(g, wrt, of)
    except UsageError as e:
        raise _located(e, graph.path) from None
    for w in wrt:
        if w not in g.tensors:
            raise UsageError("usage", f"--wrt: '{w}' is a node; grad-check perturbs inputs and params only",
                             path=graph.path, hint="differentiate with respect to the tensors that feed it")
    prob = _Problem(g, loss, wrt, inputs, seed, dims, backend, progress)
    results = []
    for x in wrt:
        res = Result(graph.path, x, False, order=order, dtype=dtype, declared_dtype=declared[x].dtype,
                     tolerances=_forward_tolerances(tol, rtol, atol) if against == "forward" else tol)
        before, start = (prob.evaluations if results else 0), time.perf_counter()  # the first pays for L(x)
        size = int(prob.values[x].size)
        full = mode == "full" or (mode == "auto" and size <= full_limit)
        try:
            if order == 2:
                _check_hessian(prob, x, res, tol, directions, strict, full and size <= full_limit)
            elif against == "forward":
                _check_forward(prob, x, res, res.tolerances, directions, full)
            elif full:
                _check_full(prob, x, res, tol, strict)
            else:
                _check_fast(prob, x, res, tol, directions, strict)
        except GraphError as e:  # a kernel failed on the perturbed data, or the gradient is ill-formed
            if isinstance(e, UsageError):
                raise
            res.passed, res.mode, res.message = False, res.mode or "error", e.diagnostic.message
            res.diagnostics = list(e.diagnostics)
        res.size, res.evaluations, res.seconds = size, prob.evaluations - before, time.perf_counter() - start
        results.append(res)
    failed = [r for r in results if not r.passed and not r.diagnostics and not _only_kinks(r)]
    if failed and localise:
        culprit = find_culprit(prob, tol, directions, full_limit) if order == 1 else None
        for r in failed:
            r.culprit = culprit if order == 1 else _second_order_culprit(prob, r.wrt, tol, directions, full_limit)
            if r.culprit is None:
                r.message = (r.message + "; " if r.message else "") + (
                    "every node's backward agrees with finite differences on these values, so the error is in how "
                    "autodiff combines them or the tolerance is too tight for this graph")
    return results


def _check_options(mode, directions, against, order, dtype, full_limit) -> None:
    if mode not in ("auto", "full", "fast"):
        raise UsageError("usage", f"--mode must be auto, full or fast, got {mode!r}")
    if against not in ("fd", "forward"):
        raise UsageError("usage", f"--against must be fd or forward, got {against!r}")
    if order not in (1, 2):
        raise UsageError("usage", f"--order must be 1 or 2, got {order!r}")
    if order == 2 and against == "forward":
        raise UsageError("usage", "--order 2 is checked against finite differences only",
                         hint="drop --against forward")
    if directions < 1 or full_limit < 0:
        raise UsageError("usage", "--directions must be at least 1 and the full-mode limit not negative")
    if dtype not in DEFAULTS:
        raise UsageError("usage", f"--dtype must be float64 or float32, got {dtype!r}")


def _forward_tolerances(tol: Tolerances, rtol: float | None, atol: float | None) -> Tolerances:
    """Forward mode is exact up to rounding: rtol 1e-12 and no absolute floor unless asked."""
    default = FORWARD_RTOL if tol.unit < 1e-10 else 1e-5
    return replace(tol, rtol=rtol if rtol is not None else default, atol=atol if atol is not None else 0.0)


def _located(e: UsageError, path: str | None) -> UsageError:
    d = e.diagnostic
    return UsageError(d.code, d.message, path=path, hint=d.hint)


def _only_kinks(r: Result) -> bool:
    """Failed only because --strict counts kinks: localisation would find nothing to blame."""
    return r.kink_failure


# one graph, ready to evaluate ------------------------------------------------------------------


class _Problem:
    """A float64 graph with its data, compiled loss and gradient plans, and an evaluation count."""

    def __init__(self, graph: Graph, loss: str, wrt: list[str], inputs, seed, dims, backend, progress) -> None:
        self.graph, self.loss, self.wrt, self.backend, self.seed = graph, loss, wrt, backend, seed
        self.progress = progress
        self.loss_prog = program(graph, (loss,), backend)
        types = self.loss_prog.types
        self.values, self.bindings = resolve(graph, inputs, types=types, free=free_dims(graph), random=True,
                                             seed=seed, dim_values=dims)
        randomised = [n for n, t in graph.tensors.items() if t.kind == "input" and t.value is None
                      and n not in (inputs or {}) and types[n].dtype.startswith("float")]
        _away_from_kinks(graph, randomised, self.values)
        self.gg = autodiff.grad(graph, wrt, loss)
        self.grad_prog = program(self.gg, backend=backend)
        self.evaluations = 0
        self.f0 = self.loss_at({})
        self._grads: dict[str, np.ndarray] | None = None
        self._cuts: dict[str, Callable[..., np.ndarray]] = {}

    def feed(self, g: Graph, extra: dict) -> dict:
        vals = dict(self.values)
        for n, t in g.tensors.items():
            if n not in vals and t.value is not None:
                vals[n] = t.value
        vals.update(extra)
        return vals

    def count(self, label: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(label, done, total)

    def loss_at(self, changed: dict) -> float:
        self.evaluations += 1
        vals = dict(self.values)
        vals.update(changed)
        return float(self.loss_prog.run(vals, self.bindings)[self.loss])

    def loss_with(self, x: str, value: np.ndarray) -> float:
        """The loss with x changed: one run of a plan holding only the nodes that depend on x."""
        if x not in self._cuts:
            self._cuts[x] = self.partial(self.graph, [x], self.loss, {})
        return float(self._cuts[x](**{x: value}))

    def partial(self, g: Graph, varying: list[str], output: str, fixed: dict) -> Callable[..., np.ndarray]:
        """`output` of g as a function of the `varying` tensors, everything else held at this
        problem's data (plus `fixed`). Values that do not depend on `varying` are computed once
        and fed as inputs, so perturbing a last-layer bias does not rerun the first layer."""
        vals = self.feed(g, fixed)
        live = g.descendants(varying) & g.ancestors([output])
        nodes = {n: node for n, node in g.nodes.items() if n in live}
        frontier = tuple(dict.fromkeys(i for node in nodes.values() for i in node.inputs
                                       if i not in live and i in g.nodes))
        prog = program(g, (output,), self.backend)
        if output in nodes and frontier:
            self.evaluations += 1
            vals.update(program(g, frontier, self.backend).run(vals, self.bindings))
            types = types_of(g)
            used = {i for node in nodes.values() for i in node.inputs} | set(varying)
            tensors = {n: t for n, t in g.tensors.items() if n in used}
            tensors.update({f: Tensor(f, "input", types[f], loc=g.loc(f)) for f in frontier})
            try:
                prog = program(Graph(tensors, nodes, (output,), dims=dict(g.dims), path=g.path), backend=self.backend)
            except GraphError:  # shapes that only the whole graph pins down: keep the whole plan
                pass

        dtypes = {n: np.dtype(g.tensors[n].dtype) for n in varying}

        def run(**changed) -> np.ndarray:
            self.evaluations += 1
            vals.update({n: np.asarray(v, dtype=dtypes[n]) for n, v in changed.items()})
            return prog.run(vals, self.bindings)[output]

        return run

    def grads(self) -> dict[str, np.ndarray]:
        """Every target's gradient at the data (one run of the gradient plan, shared by all)."""
        if self._grads is None:
            self.evaluations += 1
            out = self.grad_prog.run(self.feed(self.gg, {}), self.bindings)
            self._grads = {w: out[n] for w, n in zip(self.wrt, self.gg.outputs[1:])}
        return self._grads

    def rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng([int(self.seed), zlib.crc32(("gradcheck:" + name).encode())])


def _away_from_kinks(graph: Graph, names: list[str], values: dict) -> None:
    """Random data that feeds relu/abs/sign directly: |x| < KINK_MARGIN moves to ±KINK_MARGIN.

    Only direct inputs: a kink deeper in the graph (relu(W x + b)) is found by the kink test.
    """
    fed = {i for node in graph.nodes.values() if node.op in KINK_OPS for i in node.inputs}
    for n in names:
        if n in fed:
            v = np.array(values[n], copy=True)
            near = np.abs(v) < KINK_MARGIN
            v[near] = np.where(v[near] < 0, -KINK_MARGIN, KINK_MARGIN)
            values[n] = v


def _gradient(prob: _Problem, x: str, res: Result) -> np.ndarray | None:
    """The analytic gradient of x, or None (and a failed result) when it cannot be compared."""
    a = np.asarray(prob.grads()[x], dtype=np.float64)
    want = np.shape(prob.values[x])
    if a.shape != want:
        res.message = (f"the gradient of '{x}' has shape {list(a.shape)} but '{x}' has shape {list(want)} "
                       "(a broadcast not summed back?)")
        return None
    if not np.isfinite(prob.f0):
        res.message = f"the loss is {prob.f0} at these inputs: nothing to compare"
        return None
    if not np.all(np.isfinite(a)):
        res.message = f"the gradient of '{x}' holds NaN or Inf"
        return None
    return a


# comparing analytic and numeric values --------------------------------------------------------------


@dataclass
class _Verdict:
    numeric: np.ndarray
    ok: np.ndarray
    kink: np.ndarray  # one-sided differences disagree (a kink inside the step)
    accepted: np.ndarray  # kinks whose analytic value is a subgradient
    badness: np.ndarray  # error / allowed error (0 for accepted kinks)


ROUNDING = 16  # rounding error of one evaluation, in units of roundoff of |f| (generous: sums accumulate)


def _judge(a, f0, fp, fm, h, tol: Tolerances, strict: bool, refine, magnitude=None) -> _Verdict:
    """Central differences with the kink test; an entry passes when
    |a - c| <= atol + rtol * max(|a|, |c|) + noise, noise = ROUNDING * unit * max(1, |f|) / h
    being the rounding error of the difference itself (it grows with |f| and shrinks with h).

    `fp`, `fm`: values at +h and -h (arrays, any shape); `refine(mask)` returns (fp, fm) at
    h/4, computed where mask is true; `magnitude` of f for the noise (default |f0|).
    """
    a, f0, fp, fm, h = (np.asarray(v, dtype=np.float64) for v in (a, f0, fp, fm, h))
    mag = np.abs(f0) if magnitude is None else np.asarray(magnitude, dtype=np.float64)
    noise = np.broadcast_to(ROUNDING * tol.unit * np.maximum(1.0, mag) / h, a.shape)
    with np.errstate(all="ignore"):
        c, r, l_ = (fp - fm) / (2 * h), (fp - f0) / h, (f0 - fm) / h
        jump = np.abs(r - l_)
        # a jump up to twice the allowed error cannot fail the central difference: look no closer
        suspect = np.isfinite(jump) & (jump > 2 * (tol.atol + tol.rtol * np.maximum(np.abs(r), np.abs(l_)) + 2 * noise))
        kink = np.zeros(c.shape, bool)
        lo, hi = np.minimum(r, l_), np.maximum(r, l_)
        if suspect.any():
            fp2, fm2 = refine(suspect)
            h4 = h / 4
            c2, r2, l2 = (fp2 - fm2) / (2 * h4), (fp2 - f0) / h4, (f0 - fm2) / h4
            jump2 = np.abs(r2 - l2)
            # smooth: the disagreement shrinks with the step (curvature); a kink's does not
            kink = suspect & (jump2 > 0.5 * jump) & \
                (jump2 > 2 * (tol.atol + tol.rtol * np.maximum(np.abs(r2), np.abs(l2)) + 8 * noise))
            closer = suspect & ~kink  # a kink near x but outside the smaller step, or strong curvature
            c = np.where(closer, c2, c)
            noise = np.where(closer, 4 * noise, noise)
            lo = np.where(kink, np.minimum(lo, np.minimum(r2, l2)), lo)
            hi = np.where(kink, np.maximum(hi, np.maximum(r2, l2)), hi)
        allow = tol.atol + tol.rtol * np.maximum(np.abs(a), np.abs(c)) + noise
        err = np.abs(a - c)
        between = kink & (a >= lo - allow) & (a <= hi + allow)
        accepted = np.zeros_like(between) if strict else between
        ok = np.isfinite(err) & (((err <= allow) & ~kink) | accepted)
        badness = np.where(accepted, -1.0, np.where(np.isfinite(err), err / allow, np.inf))  # -1: not an error
        if strict:  # a kink is a failure even where the central difference happens to agree
            badness = np.where(kink, np.maximum(badness, 1.0), badness)
    return _Verdict(c, ok, kink, accepted, badness)


def _fill(res: Result, a: np.ndarray, v: _Verdict, tol: Tolerances, strict: bool, *, elements: bool) -> None:
    """Errors, worst entry, kinks and pass/fail from a verdict (over elements or directions).

    Relative error is |a - n| / max(|a|, |n|, atol / rtol): below atol / rtol a value counts
    as zero, so rounding noise around an exact 0 does not read as a 100% error.
    """
    counted = ~v.accepted
    with np.errstate(all="ignore"):
        err = np.abs(a - v.numeric)
        den = np.maximum(np.maximum(np.abs(a), np.abs(v.numeric)), tol.atol / tol.rtol)
        rel = np.where(den > 0, err / den, np.where(err > 0, np.inf, 0.0))
    res.max_abs_error = float(np.max(err[counted])) if counted.any() else 0.0
    res.max_rel_error = float(np.max(rel[counted])) if counted.any() else 0.0
    res.kinks = int(v.kink.sum())
    res.kink_at = [[int(i) for i in k] if elements else int(k[0]) for k in np.argwhere(v.kink)[:10]]
    res.checked = int(a.size)
    res.passed = bool(v.ok.all())
    if a.size:
        worst = np.unravel_index(int(np.argmax(v.badness)), a.shape)
        if elements:
            res.index = [int(i) for i in worst]
        else:
            res.direction = int(worst[0])
        res.analytic, res.numeric = float(a[worst]), float(v.numeric[worst])
    if res.passed:
        return
    if strict and bool(v.ok[~v.kink].all()):
        res.kink_failure = True
        res.message = "failed only at kinks, which --strict counts as failures"


# full and fast modes ----------------------------------------------------------------------------


def _steps(x0: np.ndarray, eps: float) -> np.ndarray:
    return eps * np.maximum(1.0, np.abs(x0))


def _check_full(prob: _Problem, x: str, res: Result, tol: Tolerances, strict: bool) -> None:
    """Every element: L(x ± h e_i), two evaluations each (h scaled to |x_i|)."""
    res.mode = "full"
    a = _gradient(prob, x, res)
    if a is None:
        return
    x0 = np.array(prob.values[x])  # in the check's dtype
    n = x0.size
    wide = x0.astype(np.float64)
    h = ((wide + _steps(wide, tol.eps)).astype(x0.dtype) - x0).astype(np.float64).ravel()  # representable steps

    def probe(k: float, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fp, fm = np.full(n, np.nan), np.full(n, np.nan)
        xs = x0.copy()
        flat = xs.reshape(-1)
        idx = np.flatnonzero(mask)
        for done, i in enumerate(idx):
            xi = x0.flat[i]
            flat[i] = xi + k * h[i]
            fp[i] = prob.loss_with(x, xs)
            flat[i] = xi - k * h[i]
            fm[i] = prob.loss_with(x, xs)
            flat[i] = xi
            if done % 64 == 0:
                prob.count(x, 2 * done, 2 * len(idx))
        return fp, fm

    fp, fm = probe(1.0, np.ones(n, bool))
    v = _judge(a.ravel(), prob.f0, fp, fm, h, tol, strict, lambda m: probe(0.25, m))
    v = _Verdict(*(np.reshape(q, a.shape) for q in (v.numeric, v.ok, v.kink, v.accepted, v.badness)))
    _fill(res, a, v, tol, strict, elements=True)


def _directions(prob: _Problem, x: str, k: int) -> list[np.ndarray]:
    """k random unit vectors, each scaled elementwise by max(1, |x|) (the step's scale)."""
    x0 = np.asarray(prob.values[x], dtype=np.float64)
    rng = prob.rng(x)
    out = []
    for _ in range(k):
        v = rng.standard_normal(x0.shape)
        v /= max(float(np.linalg.norm(v)), 1e-300)
        out.append(v * np.maximum(1.0, np.abs(x0)))
    return out


def _check_fast(prob: _Problem, x: str, res: Result, tol: Tolerances, k: int, strict: bool) -> None:
    """k random directions d: (L(x + eps d) - L(x - eps d)) / 2 eps against <grad, d>."""
    res.mode = "fast"
    a = _gradient(prob, x, res)
    if a is None:
        return
    x0 = np.asarray(prob.values[x], dtype=np.float64)
    ds = _directions(prob, x, k)
    analytic = np.array([float(np.sum(a * d)) for d in ds])

    def probe(s: float, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fp, fm = np.full(k, np.nan), np.full(k, np.nan)
        for j in np.flatnonzero(mask):
            fp[j] = prob.loss_with(x, x0 + s * tol.eps * ds[j])
            fm[j] = prob.loss_with(x, x0 - s * tol.eps * ds[j])
            prob.count(x, 2 * j + 2, 2 * k)
        return fp, fm

    fp, fm = probe(1.0, np.ones(k, bool))
    v = _judge(analytic, prob.f0, fp, fm, np.full(k, tol.eps), tol, strict, lambda m: probe(0.25, m))
    _fill(res, analytic, v, tol, strict, elements=False)


# forward mode ------------------------------------------------------------------------------------


def _check_forward(prob: _Problem, x: str, res: Result, tol: Tolerances, k: int, full: bool) -> None:
    """<Jᵀ g, t> (reverse) against J t (forward mode, the JVP graph) for unit or random t.

    With the loss scalar and g = 1 this is <grad, t> = dL[t]. Both sides are exact up to
    rounding, so the allowed error is rtol (1e-12) relative to |grad|·|t| (Cauchy-Schwarz
    bounds both sides by it), never finite-difference noise.
    """
    res.mode = "forward-full" if full else "forward-fast"
    a = _gradient(prob, x, res)
    if a is None:
        return
    tan = autodiff.tangent_name(x)
    tg = autodiff.jvp(prob.graph, [x], [prob.loss])
    run = prob.partial(tg, [tan], tg.outputs[1], {tan: np.zeros(np.shape(prob.values[x]))})

    def jvp(t: np.ndarray) -> float:
        return float(run(**{tan: t}))

    gnorm = float(np.linalg.norm(a))
    if full:
        numeric = np.empty(a.shape)
        t = np.zeros(a.shape)
        for done, i in enumerate(np.ndindex(*a.shape)):
            t[i] = 1.0
            numeric[i] = jvp(t)
            t[i] = 0.0
            if done % 64 == 0:
                prob.count(x, done, a.size)
        analytic, scale = a, np.full(a.shape, gnorm)
    else:
        ts = [d / np.maximum(1.0, np.abs(prob.values[x])) for d in _directions(prob, x, k)]  # unit vectors
        numeric = np.array([jvp(t) for t in ts])
        analytic = np.array([float(np.sum(a * t)) for t in ts])
        scale = np.full(k, gnorm)
    err = np.abs(analytic - numeric)
    allow = tol.atol + tol.rtol * np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), scale)
    none = np.zeros(analytic.shape, bool)
    v = _Verdict(numeric, np.isfinite(err) & (err <= allow), none, none, np.where(np.isfinite(err), err / allow, np.inf))
    _fill(res, analytic, v, tol, False, elements=full)


# second order -------------------------------------------------------------------------------------


class Hvp(NamedTuple):
    grad: Graph  # outputs: the loss, grad_x
    inner: Graph  # the gradient graph plus an input d and the loss s = sum(grad_x * d)
    hvp: Graph  # inner differentiated: outputs s, H d
    direction: str  # the name of d
    output: str  # the name of H d


def hvp_graph(graph: Graph, x: str, loss: str) -> Hvp:
    """The graphs of order 2 for target x: differentiating s = sum(grad_x * d) with respect to
    x again gives H d, so order 2 is autodiff applied to its own output."""
    gg = autodiff.grad(graph, [x], loss)
    gx = gg.outputs[1]
    b = autodiff.GraphBuilder(gg)
    d = b.add_input(b.fresh(f"__dir_{x}"), x)
    b.context("__hvp", gg.loc(x))
    s = b("sum", b("mul", gx, d))
    g2 = b.graph_with([s, gx], s, f"<grad {x}, d> ({graph.name or 'graph'})")
    hg = autodiff.grad(g2, [x], s)
    return Hvp(gg, g2, hg, d, hg.outputs[1])


def _check_hessian(prob: _Problem, x: str, res: Result, tol: Tolerances, k: int, strict: bool, full: bool) -> None:
    """H d (autodiff of the gradient graph) against (g(x + eps d) - g(x - eps d)) / 2 eps,
    for k random directions (every unit direction in full mode)."""
    res.mode = "order2"
    if _gradient(prob, x, res) is None:
        return
    gg, _, hg, dname, hv = hvp_graph(prob.graph, x, prob.loss)
    x0 = np.asarray(prob.values[x], dtype=np.float64)
    grad_run = prob.partial(gg, [x], gg.outputs[1], {})
    hvp_run = prob.partial(hg, [dname], hv, {dname: np.zeros(x0.shape)})
    scale = np.maximum(1.0, np.abs(x0))
    if full:
        ds = []
        for i in np.ndindex(*x0.shape):
            d = np.zeros(x0.shape)
            d[i] = scale[i]
            ds.append(d)
    else:
        ds = _directions(prob, x, k)

    def grad_at(value) -> np.ndarray:
        return np.asarray(grad_run(**{x: value}), dtype=np.float64)

    g0 = grad_at(x0)
    rows = []
    for j, d in enumerate(ds):
        a = np.asarray(hvp_run(**{dname: d}), dtype=np.float64)
        fp, fm = grad_at(x0 + tol.eps * d), grad_at(x0 - tol.eps * d)
        v = _judge(a, g0, fp, fm, tol.eps, tol, strict,
                   lambda m, d=d: (grad_at(x0 + 0.25 * tol.eps * d), grad_at(x0 - 0.25 * tol.eps * d)))
        rows.append((a, v))
        prob.count(x, j + 1, len(ds))
    a = np.stack([r[0] for r in rows])
    v = _Verdict(*(np.stack([getattr(r[1], f) for r in rows]) for f in ("numeric", "ok", "kink", "accepted", "badness")))
    _fill(res, a, v, tol, strict, elements=True)
    if res.index is not None:  # [direction, element...] -> element, direction
        res.direction, res.index = res.index[0], res.index[1:]
    res.kink_at = [k[1:] for k in res.kink_at]


# localisation -----------------------------------------------------------------------------------


def find_culprit(prob: _Problem, tol: Tolerances, directions: int = 4, full_limit: int = FULL_LIMIT) -> Culprit | None:
    """The first node, in topological order, whose VJP rule disagrees with finite differences
    of that node alone, on the values that flow into it and projected on the upstream gradient
    ḡ that reaches it: <ḡ, (f(a + h v) - f(a - h v)) / 2h> against <vjp(ḡ), v>."""
    g = prob.graph
    info = prob.gg.cache["grad_info"]
    total = {k: v for k, v in info["total"].items() if isinstance(k, str) and v in prob.gg}
    need = g.descendants(prob.wrt) & g.ancestors([prob.loss])
    nodes = [n for n in g.nodes.values() if n.name in total and n.name in need and get_op(n.op).vjp is not None]
    if not nodes:
        return None
    prob.evaluations += 2
    fwd = program(g, tuple(g.nodes), prob.backend).run(prob.values, prob.bindings)
    ups = tuple(dict.fromkeys(total[n.name] for n in nodes))
    gbar = program(prob.gg, ups, prob.backend).run(prob.feed(prob.gg, {}), prob.bindings)
    values = {**prob.values, **fwd}
    types = types_of(g)
    for node in nodes:
        culprit = _check_node(prob, node, values, np.asarray(gbar[total[node.name]], dtype=np.float64), types,
                              need, tol, directions, full_limit)
        if culprit is not None:
            return culprit
    return None


def _second_order_culprit(prob: _Problem, x: str, tol: Tolerances, directions: int, full_limit: int) -> Culprit | None:
    """Order 2 fails where a rule of the gradient graph has a wrong VJP: localise in the graph
    whose loss is <grad_x, d> (same data, a random d), so the forward nodes' rules and their
    backward nodes' rules are all checked; a backward node is located at its forward node."""
    inner = hvp_graph(prob.graph, x, prob.loss).inner
    given = {n: v for n, v in prob.values.items() if n in inner.tensors}
    sub = _Problem(inner, inner.loss, [x], given, prob.seed, prob.bindings, prob.backend, None)
    culprit = find_culprit(sub, tol, directions, full_limit)
    prob.evaluations += sub.evaluations
    return culprit


def _blame(g: Graph, node, message: str, inp: str | None = None, **where) -> Culprit:
    op = get_op(node.op)
    part = None
    if g.owner(node.name) != node.name:  # an anonymous node of a shorthand expression
        part = f"`{g.owner(node.name)}`"
    elif node.name.startswith("__bwd_") and node.name[6:].rsplit("_", 1)[0] in g.nodes:  # order 2
        part = f"the backward of `{node.name[6:].rsplit('_', 1)[0]}`"
    return Culprit(node.name, node.op, op.plugin, node.loc.path or g.path, node.loc.line, inp, message, **where,
                   part_of=part)


def _check_node(prob: _Problem, node, values: dict, gbar: np.ndarray, types, need, tol: Tolerances,
                directions: int, full_limit: int) -> Culprit | None:
    g = prob.graph
    op = get_op(node.op)
    ins = list(dict.fromkeys(node.inputs))
    targets = [i for i in ins if i in need and types[i].dtype.startswith("float") and not types[i].weak]
    if not targets:
        return None
    mini = Graph({i: Tensor(i, "input", types[i]) for i in ins}, {node.name: replace(node, shape=None)},
                 (node.name,), dims=dict(g.dims), path=g.path)
    b = autodiff.GraphBuilder(mini)
    gin = b.add_input(b.fresh("__gbar"), node.name)
    b.context(f"__bwd_{node.name}", node.loc)
    try:
        outs = list(op.vjp(b, node, gin))
    except GraphError as e:
        return _blame(g, node, f"its VJP rule builds an ill-typed graph: {e.diagnostic.message}")
    except Exception as e:  # the rule is user code (a plugin): its exception is the finding
        return _blame(g, node, f"its VJP rule raised {type(e).__name__}: {e}")
    if len(outs) != len(node.inputs):
        return _blame(g, node, f"its VJP rule returns {len(outs)} gradients for {len(node.inputs)} inputs")
    parts = {t: [o for o, i in zip(outs, node.inputs) if i == t and o is not None] for t in targets}
    wanted = list(dict.fromkeys(o for ps in parts.values() for o in ps))
    feed = {i: values[i] for i in ins}
    feed[gin] = gbar
    got = {}
    if wanted:
        vg = b.graph_with(wanted, None, f"VJP of {node.name}")
        feed.update({n: t.value for n, t in vg.tensors.items() if n not in feed and t.value is not None})
        prob.evaluations += 1
        got = program(vg, tuple(wanted), prob.backend).run(feed, prob.bindings)
    fprog = program(mini, (node.name,), prob.backend)

    prob.evaluations += 1
    out0 = np.asarray(fprog.run(feed, prob.bindings)[node.name], dtype=np.float64)
    for t in targets:
        x0 = np.asarray(feed[t], dtype=np.float64)
        a = np.zeros(x0.shape)
        for p in parts[t]:
            c = np.asarray(got[p], dtype=np.float64)
            if c.shape != x0.shape:
                return _blame(g, node, f"its VJP gives a gradient of shape {list(c.shape)} for input `{t}` of shape "
                              f"{list(x0.shape)} (a broadcast not summed back to the input: sum_to missing?)", t)
            a = a + c
        proj = _Projected(prob, fprog, node.name, feed, t, gbar, out0)
        culprit = _compare_node(lambda msg, t=t, **kw: _blame(g, node, msg, t, **kw), proj, a, x0, tol, directions,
                                full_limit, prob.rng(f"{node.name}:{t}"))
        if culprit is not None:
            return culprit
    return None


class _Projected:
    """One node's forward as a scalar function of one input: <ḡ, f(..., t = value, ...)>."""

    def __init__(self, prob: _Problem, prog, name: str, feed: dict, t: str, gbar: np.ndarray, out0: np.ndarray):
        self.prob, self.prog, self.name, self.feed, self.t, self.gbar = prob, prog, name, feed, t, gbar
        self.f0 = float(np.sum(gbar * out0))
        self.magnitude = float(np.sum(np.abs(gbar * out0)))  # the size of the terms, for the rounding noise

    def __call__(self, value: np.ndarray) -> float:
        self.prob.evaluations += 1
        return float(np.sum(self.gbar * self.prog.run({**self.feed, self.t: value}, self.prob.bindings)[self.name]))


def _compare_node(blame, project: _Projected, a, x0, tol, directions, full_limit, rng) -> Culprit | None:
    """Culprit (via `blame`) when the VJP's gradient `a` of one input disagrees with differences."""
    t, f0 = project.t, project.f0
    h = _steps(x0, tol.eps)
    if x0.size <= full_limit:  # every element: the worst one, and a pattern, name the mistake
        def probe(s, mask):
            fp, fm = np.full(x0.shape, np.nan), np.full(x0.shape, np.nan)
            for i in np.ndindex(*x0.shape):
                if not mask[i]:
                    continue
                e = np.zeros(x0.shape)
                e[i] = s * h[i]
                fp[i], fm[i] = project(x0 + e), project(x0 - e)
            return fp, fm

        fp, fm = probe(1.0, np.ones(x0.shape, bool))
        v = _judge(a, f0, fp, fm, h, tol, False, lambda m: probe(0.25, m), project.magnitude)
        if v.ok.all():
            return None
        worst = np.unravel_index(int(np.argmax(v.badness)), x0.shape)
        an, nu = float(a[worst]), float(v.numeric[worst])
        idx = [int(i) for i in worst]
        msg = (f"for input `{t}`, element {idx} is {an:.6g} by its VJP rule but {nu:.6g} by finite differences "
               f"of the node (projected on the actual upstream gradient)" + _pattern(a, v.numeric, tol))
        return blame(msg, index=idx, analytic=an, numeric=nu)
    ds = []
    for _ in range(directions):
        v_ = rng.standard_normal(x0.shape)
        ds.append(v_ / max(float(np.linalg.norm(v_)), 1e-300) * np.maximum(1.0, np.abs(x0)))
    an = np.array([float(np.sum(a * d)) for d in ds])

    def probe_dir(s, mask):
        fp, fm = np.full(len(ds), np.nan), np.full(len(ds), np.nan)
        for j in np.flatnonzero(mask):
            fp[j], fm[j] = project(x0 + s * tol.eps * ds[j]), project(x0 - s * tol.eps * ds[j])
        return fp, fm

    fp, fm = probe_dir(1.0, np.ones(len(ds), bool))
    v = _judge(an, f0, fp, fm, np.full(len(ds), tol.eps), tol, False, lambda m: probe_dir(0.25, m), project.magnitude)
    if v.ok.all():
        return None
    j = int(np.argmax(v.badness))
    msg = (f"for input `{t}` along a random direction, its VJP rule gives {an[j]:.6g} but finite differences of "
           f"the node give {float(v.numeric[j]):.6g} (projected on the actual upstream gradient)")
    return blame(msg, analytic=float(an[j]), numeric=float(v.numeric[j]))


def _pattern(a: np.ndarray, n: np.ndarray, tol: Tolerances) -> str:
    """A hint at the kind of mistake: a constant factor, or a transposed matrix."""
    with np.errstate(all="ignore"):
        if a.ndim == 2 and a.shape[0] == a.shape[1] and a.shape[0] > 1 and np.allclose(a, n.T, tol.rtol, tol.atol) \
                and not np.allclose(a, n, tol.rtol, tol.atol):
            return "; it is the transpose of the right gradient (a transposed matrix in the rule?)"
        big = np.abs(n) > 100 * tol.atol
        if big.any():
            k = float(np.median(a[big] / n[big]))
            if np.isfinite(k) and abs(k - 1) > 1e-3 and np.allclose(a, k * n, 10 * tol.rtol, 10 * tol.atol):
                return f"; it is {k:.4g} times the right gradient everywhere (a wrong factor in the rule?)"
    if a.shape and np.allclose(a, 0) and not np.allclose(n, 0):
        return "; the rule gives zero where the gradient is not"
    return ""




# JUnit -----------------------------------------------------------------------------------------


def junit_xml(results: list[Result]) -> str:
    """JUnit XML: one testsuite per file, one testcase per target, failures with their message."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="gtool grad-check", tests=str(len(results)),
                      failures=str(sum(not r.passed for r in results)),
                      time=f"{sum(r.seconds for r in results):.6f}")
    for path in dict.fromkeys(r.path for r in results):
        mine = [r for r in results if r.path == path]
        suite = ET.SubElement(root, "testsuite", name=str(path), tests=str(len(mine)),
                              failures=str(sum(not r.passed for r in mine)), time=f"{sum(r.seconds for r in mine):.6f}")
        for r in mine:
            case = ET.SubElement(suite, "testcase", classname=str(path), name=r.wrt or "(graph)", time=f"{r.seconds:.6f}")
            if not r.passed:
                failure = ET.SubElement(case, "failure", type="grad-check", message=failure_line(r))
                failure.text = "\n".join(failure_details(r))
            if r.kinks:
                ET.SubElement(case, "system-out").text = f"{r.kinks} entries at a kink: {r.kink_at}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def failure_line(r: Result) -> str:
    """One line saying how a result failed."""
    if r.diagnostics and r.mode == "invalid":
        return f"invalid graph: {r.diagnostics[0].message}"
    if r.max_abs_error is None:
        return r.message or "failed"
    if r.kink_failure:
        return (f"{r.kinks} entr{'y' if r.kinks == 1 else 'ies'} at a kink (left and right differences disagree) at "
                f"{', '.join(map(str, r.kink_at))}{' ...' if r.kinks > len(r.kink_at) else ''}: --strict counts them")
    where = f" at {r.index}" if r.index is not None else ""
    where += f" (direction {r.direction})" if r.direction is not None else ""
    text = (f"max abs error {r.max_abs_error:.3g}, max rel error {r.max_rel_error:.3g}{where}: "
            f"analytic {r.analytic:.8g}, numeric {r.numeric:.8g}")
    return text + (f"; {r.message}" if r.message else "")


def failure_details(r: Result) -> list[str]:
    """The lines under a failure: the culprit, then any diagnostics."""
    out = []
    if r.culprit is not None:
        out.append(r.culprit.text())
    out.extend(d.format() for d in r.diagnostics)
    return out
