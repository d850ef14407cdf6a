"""Comparing analytic and numeric derivatives: the verdict on central differences (with the
kink test and a rounding-noise allowance), and the four ways a target is checked.

- `full` perturbs every element of a target (two loss evaluations each).
- `fast` checks a few random directions (`<grad, d>` against the directional difference), so
  a tensor of a million elements costs a handful of evaluations.
- `forward` replaces finite differences by forward mode (the dot-product test
  `<g, J t> = <Jᵀ g, t>`), exact up to rounding.
- order 2 differentiates the gradient graph again (`hvp_graph`) against differences of the
  gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .. import autodiff
from ..builder import GraphBuilder
from ..ir import Graph

if TYPE_CHECKING:
    from . import Result, _Problem


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
            "float32": Tolerances(1e-3, 1e-2, 1e-3, float(np.finfo(np.float32).eps)),
            # float16 (eps_mach 9.8e-4): rounding ~1e-3 |L| / h and truncation ~h^2 balance near
            # h = 0.1, leaving about two digits; a rule wrong by a factor (2x, a transpose) still fails
            "float16": Tolerances(3e-2, 1e-1, 5e-2, float(np.finfo(np.float16).eps))}
FORWARD_RTOL = 1e-12  # reverse vs forward mode: the same arithmetic in another order (float32: 1e-5)
FULL_LIMIT = 2000  # auto mode: elements per target up to which every element is perturbed


# comparing analytic and numeric values --------------------------------------------------------------


@dataclass
class Verdict:
    numeric: np.ndarray
    ok: np.ndarray
    kink: np.ndarray  # one-sided differences disagree (a kink inside the step)
    accepted: np.ndarray  # kinks whose analytic value is a subgradient
    badness: np.ndarray  # error / allowed error (0 for accepted kinks)


ROUNDING = 16  # rounding error of one evaluation, in units of roundoff of |f| (generous: sums accumulate)


def judge(a, f0, fp, fm, h, tol: Tolerances, strict: bool, refine, magnitude=None) -> Verdict:
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
    return Verdict(c, ok, kink, accepted, badness)


def fill(res: Result, a: np.ndarray, v: Verdict, tol: Tolerances, strict: bool, *, elements: bool) -> None:
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


def analytic_gradient(prob: _Problem, x: str, res: Result) -> np.ndarray | None:
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
        bad = [int(i) for i in np.argwhere(~np.isfinite(a))[0]]
        if np.isnan(a).any():
            res.message = f"the gradient of '{x}' holds NaN (first at element {bad})"
        else:
            res.message = (f"the gradient of '{x}' is infinite at element {bad}: the loss is not differentiable "
                           "there (e.g. sqrt or log at 0); choose inputs away from it")
        return None
    return a


# full and fast modes ----------------------------------------------------------------------------


def steps(x0: np.ndarray, eps: float) -> np.ndarray:
    return eps * np.maximum(1.0, np.abs(x0))


def check_full(prob: _Problem, x: str, res: Result, tol: Tolerances, strict: bool) -> None:
    """Every element: L(x ± h e_i), two evaluations each (h scaled to |x_i|)."""
    res.mode = "full"
    a = analytic_gradient(prob, x, res)
    if a is None:
        return
    x0 = np.array(prob.values[x])  # in the check's dtype
    n = x0.size
    wide = x0.astype(np.float64)
    h = ((wide + steps(wide, tol.eps)).astype(x0.dtype) - x0).astype(np.float64).ravel()  # representable steps

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
    v = judge(a.ravel(), prob.f0, fp, fm, h, tol, strict, lambda m: probe(0.25, m))
    v = Verdict(*(np.reshape(q, a.shape) for q in (v.numeric, v.ok, v.kink, v.accepted, v.badness)))
    fill(res, a, v, tol, strict, elements=True)


def random_directions(rng: np.random.Generator, x0: np.ndarray, k: int) -> list[np.ndarray]:
    """k random unit vectors, each scaled elementwise by max(1, |x0|) (the step's scale)."""
    out = []
    for _ in range(k):
        v = rng.standard_normal(x0.shape)
        v /= max(float(np.linalg.norm(v)), 1e-300)
        out.append(v * np.maximum(1.0, np.abs(x0)))
    return out


def _directions(prob: _Problem, x: str, k: int) -> list[np.ndarray]:
    return random_directions(prob.rng(x), np.asarray(prob.values[x], dtype=np.float64), k)


def probe_along(f: Callable[[np.ndarray], float], x0: np.ndarray, ds: list[np.ndarray], step: float, mask: np.ndarray,
                done: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """f(x0 + step d) and f(x0 - step d) for each direction d where `mask` holds (NaN elsewhere);
    `done(j)` after direction j (progress)."""
    fp, fm = np.full(len(ds), np.nan), np.full(len(ds), np.nan)
    for j in np.flatnonzero(mask):
        fp[j] = f(x0 + step * ds[j])
        fm[j] = f(x0 - step * ds[j])
        if done is not None:
            done(j)
    return fp, fm


def check_fast(prob: _Problem, x: str, res: Result, tol: Tolerances, k: int, strict: bool) -> None:
    """k random directions d: (L(x + eps d) - L(x - eps d)) / 2 eps against <grad, d>."""
    res.mode = "fast"
    a = analytic_gradient(prob, x, res)
    if a is None:
        return
    x0 = np.asarray(prob.values[x], dtype=np.float64)
    ds = _directions(prob, x, k)
    analytic = np.array([float(np.sum(a * d)) for d in ds])

    def probe(s: float, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return probe_along(lambda v: prob.loss_with(x, v), x0, ds, s * tol.eps, mask,
                           lambda j: prob.count(x, 2 * j + 2, 2 * k))

    fp, fm = probe(1.0, np.ones(k, bool))
    v = judge(analytic, prob.f0, fp, fm, np.full(k, tol.eps), tol, strict, lambda m: probe(0.25, m))
    fill(res, analytic, v, tol, strict, elements=False)


# forward mode ------------------------------------------------------------------------------------


def check_forward(prob: _Problem, x: str, res: Result, tol: Tolerances, k: int, full: bool) -> None:
    """<Jᵀ g, t> (reverse) against J t (forward mode, the JVP graph) for unit or random t.

    With the loss scalar and g = 1 this is <grad, t> = dL[t]. Both sides are exact up to
    rounding, so the allowed error is rtol (1e-12) relative to |grad|·|t| (Cauchy-Schwarz
    bounds both sides by it), never finite-difference noise.
    """
    res.mode = "forward-full" if full else "forward-fast"
    a = analytic_gradient(prob, x, res)
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
    v = Verdict(numeric, np.isfinite(err) & (err <= allow), none, none, np.where(np.isfinite(err), err / allow, np.inf))
    fill(res, analytic, v, tol, False, elements=full)


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
    gr = autodiff.grad(graph, [x], loss)
    gg, gx = gr.graph, gr.outputs[x]
    b = GraphBuilder(gg)
    d = b.add_input(b.fresh(f"__dir_{x}"), x)
    b.context("__hvp", gg.loc(x))
    s = b("sum", b("mul", gx, d))
    g2 = b.graph_with([s, gx], s, f"<grad {x}, d> ({graph.name or 'graph'})")
    hgr = autodiff.grad(g2, [x], s)
    return Hvp(gg, g2, hgr.graph, d, hgr.outputs[x])


def check_hessian(prob: _Problem, x: str, res: Result, tol: Tolerances, k: int, strict: bool, full: bool) -> None:
    """H d (autodiff of the gradient graph) against (g(x + eps d) - g(x - eps d)) / 2 eps,
    for k random directions (every unit direction in full mode)."""
    res.mode = "order2"
    if analytic_gradient(prob, x, res) is None:
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
        v = judge(a, g0, fp, fm, tol.eps, tol, strict,
                   lambda m, d=d: (grad_at(x0 + 0.25 * tol.eps * d), grad_at(x0 - 0.25 * tol.eps * d)))
        rows.append((a, v))
        prob.count(x, j + 1, len(ds))
    a = np.stack([r[0] for r in rows])
    v = Verdict(*(np.stack([getattr(r[1], f) for r in rows]) for f in ("numeric", "ok", "kink", "accepted", "badness")))
    fill(res, a, v, tol, strict, elements=True)
    if res.index is not None:  # [direction, element...] -> element, direction
        res.direction, res.index = res.index[0], res.index[1:]
    res.kink_at = [k[1:] for k in res.kink_at]
