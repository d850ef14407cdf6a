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

Here: `grad_check`, `Result` and `_Problem` (one graph ready to evaluate); `compare` holds
the verdict on differences and the four checks, `localise` the search for the wrong rule,
`junit` the reports.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .. import autodiff
from ..dtypes import is_float as is_float_dtype
from ..errors import Diagnostic, GraphError, UsageError
from ..feeds import resolve
from ..interp import at_precision, free_dims, program
from ..ir import Graph, Tensor
from ..validate import types_of
from .compare import (
    DEFAULTS,
    FORWARD_RTOL,
    FULL_LIMIT,
    Hvp,
    Tolerances,
    check_fast,
    check_forward,
    check_full,
    check_hessian,
    hvp_graph,
)
from .junit import failure_details, failure_line, junit_xml
from .localise import Culprit, find_culprit, second_order_culprit

__all__ = ["DEFAULTS", "FORWARD_RTOL", "FULL_LIMIT", "KINK_MARGIN", "Culprit", "Hvp", "Result", "Tolerances",
           "failure_details", "failure_line", "find_culprit", "grad_check", "hvp_graph", "junit_xml"]

KINK_MARGIN = 1e-3  # random inputs feeding relu/abs are kept this far from 0
KINK_OPS = ("relu", "abs", "sign")


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
            raise UsageError("usage", f"wrt: '{w}' is a node; grad-check perturbs inputs and params only",
                             path=graph.path, hint="differentiate with respect to the tensors that feed it")
    try:
        prob = _Problem(g, loss, wrt, inputs, seed, dims, backend, progress)
    except GraphError as e:  # a plugin's VJP of the wrong shape is refused while the gradient graph is built
        if e.code != "plugin-bad-vjp" or e.diagnostic.op is None:
            raise
        kwargs = dict(inputs=inputs, of=of, mode=mode, directions=directions, against=against, order=order, rtol=rtol,
                      atol=atol, eps=eps, dtype=dtype, strict=strict, full_limit=full_limit, seed=seed, dims=dims,
                      backend=backend, localise=localise, progress=progress)
        return _bad_vjp(graph, wrt, e, kwargs, declared, tol)
    results = []
    for x in wrt:
        res = Result(graph.path, x, False, order=order, dtype=dtype, declared_dtype=declared[x].dtype,
                     tolerances=_forward_tolerances(tol, rtol, atol) if against == "forward" else tol)
        before, start = (prob.evaluations if results else 0), time.perf_counter()  # the first pays for L(x)
        size = int(prob.values[x].size)
        full = mode == "full" or (mode == "auto" and size <= full_limit)
        try:
            if order == 2:
                check_hessian(prob, x, res, tol, directions, strict, full and size <= full_limit)
            elif against == "forward":
                check_forward(prob, x, res, res.tolerances, directions, full)
            elif full:
                check_full(prob, x, res, tol, strict)
            else:
                check_fast(prob, x, res, tol, directions, strict)
        except GraphError as e:  # a kernel failed on the perturbed data, or the gradient is ill-formed
            if isinstance(e, UsageError):
                raise
            res.passed, res.mode, res.message = False, res.mode or "error", e.diagnostic.message
            res.diagnostics = list(e.diagnostics)
        res.size, res.evaluations, res.seconds = size, prob.evaluations - before, time.perf_counter() - start
        results.append(res)
    failed = [r for r in results if not r.passed and not r.diagnostics and not _only_kinks(r)]
    if failed and localise and np.isfinite(prob.f0):  # a NaN loss compares nothing: no node to blame
        with np.errstate(all="ignore"):
            culprit = find_culprit(prob, tol, directions, full_limit) if order == 1 else None
        for r in failed:
            with np.errstate(all="ignore"):
                r.culprit = culprit if order == 1 else second_order_culprit(prob, r.wrt, tol, directions, full_limit)
            if r.culprit is None and "is infinite at element" not in (r.message or ""):
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
        raise UsageError("usage", f"--dtype must be float64, float32 or float16, got {dtype!r}")


def _forward_tolerances(tol: Tolerances, rtol: float | None, atol: float | None) -> Tolerances:
    """Forward mode is exact up to rounding: rtol 1e-12 and no absolute floor unless asked."""
    default = FORWARD_RTOL if tol.unit < 1e-10 else 1e-5
    return replace(tol, rtol=rtol if rtol is not None else default, atol=atol if atol is not None else 0.0)


def _bad_vjp(graph: Graph, wrt: list[str], e: GraphError, kwargs: dict, declared, tol) -> list[Result]:
    """A plugin VJP that gives an input a gradient of the wrong shape is refused while the gradient
    graph is built: the targets upstream of that input fail, blaming the node; the others are checked."""
    from ..ops.registry import get_op
    from .localise import Culprit

    d, bad = e.diagnostic, getattr(e, "input", None)
    culprit = Culprit(d.node, d.op, get_op(d.op).plugin, d.path or graph.path, d.line, bad, d.message)
    hit = [x for x in wrt if bad is None or x == bad or x in graph.ancestors([bad])]
    rest = [x for x in wrt if x not in hit]
    checked = {r.wrt: r for r in grad_check(graph, wrt=rest, **kwargs)} if rest else {}
    return [checked[x] if x in checked else
            Result(graph.path, x, False, order=kwargs["order"], dtype=kwargs["dtype"], declared_dtype=declared[x].dtype,
                   tolerances=tol, mode="error", message="the gradient graph could not be built", culprit=culprit)
            for x in wrt]


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
                      and n not in (inputs or {}) and is_float_dtype(types[n].dtype)]
        _away_from_kinks(graph, randomised, self.values)
        self.gradient = autodiff.grad(graph, wrt, loss)
        self.gg = self.gradient.graph
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
                part = Graph(tensors, nodes, (output,), dims=dict(g.dims), fixed_dims=dict(g.fixed_dims), path=g.path)
                prog = program(part, backend=self.backend)
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
            self._grads = {w: out[n] for w, n in self.gradient.outputs.items()}
        return self._grads

    def rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng([int(self.seed), zlib.crc32(("gradcheck:" + name).encode())])

    def on(self, graph: Graph, wrt: list[str], inputs: dict) -> _Problem:
        """Another graph with this problem's seed, dims and backend (order 2 localises in one)."""
        return _Problem(graph, graph.loss, wrt, inputs, self.seed, self.bindings, self.backend, None)


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
