"""`--remat budget=SIZE`: the plan with the least recompute whose predicted peak fits.

Candidates are the evenly spaced checkpoint plans (one checkpoint after every s saved values,
s = 1 being `none`) and `cheap`; each candidate's peak is the executor's own plan simulated
(gtool/memory/plan.py), not a formula. Shorter segments mean more checkpoints and less
recompute, and up to s ~ sqrt(n) a longer segment means a lower peak, so a bisection over s
finds the shortest segments that fit (its neighbours and the longest segment are checked too).
Among the plans that fit, the least recompute FLOPs wins; then the kept tail (the values after
the last checkpoint, which the backward pass reads first) grows by bisection while the plan
still fits, which turns leftover budget into less recompute. On a chain the dynamic program
of gtool/memory/chain.py adds its plan (exact for its peak model, then checked against the
real plan). Every option's peak is simulated; the least recompute that fits wins. On other
DAGs this is a heuristic over a family of plans (Chen et al.'s segments at articulation
points): not an optimum over every subset of values (Checkmate's ILP), nor Griewank's
multi-level schedule.
"""

from __future__ import annotations

import math

from ..autodiff import Gradient
from ..budget import human
from ..errors import UsageError
from .remat import _costless, apply, backward_readers, cheap_stored, recompute_flops, segment_stored


def predicted_peak(gr: Gradient, bindings: dict[str, int]) -> int:
    from ..interp import program
    from .plan import simulate

    return simulate(program(gr.graph), bindings).peak_bytes


def _evaluate(gr: Gradient, stored: set[str], bindings: dict[str, int], seen: dict) -> tuple[int, int, Gradient]:
    key = frozenset(stored)
    if key not in seen:
        g = apply(gr, stored)
        seen[key] = (predicted_peak(g, bindings), recompute_flops(g, bindings), g)
    return seen[key]


def candidates(gr: Gradient) -> list[int]:
    """Segment lengths that give different numbers of segments (about 2 sqrt(n) of them)."""
    n = sum(1 for v in backward_readers(gr) if not _costless(gr, v))
    out, seen = [], set()
    for s in range(1, n + 1):
        k = -(-n // s)
        if k not in seen:
            seen.add(k)
            out.append(s)
    return out or [1]


def fit_budget(gr: Gradient, budget: int, bindings: dict[str, int]) -> Gradient:
    """The least-recompute plan of the family whose peak is at most `budget` bytes."""
    seen: dict = {}
    lengths = candidates(gr)
    n = lengths[-1]
    short = [s for s in lengths if s * s <= 2 * n] or lengths  # longer segments only cost more
    results = {}

    def at(s: int):
        if s not in results:
            results[s] = (*_evaluate(gr, segment_stored(gr, s), bindings, seen), s)
        return results[s]

    lo, hi = 0, len(short) - 1  # the shortest segments that fit: the peak falls as they lengthen
    while lo < hi:
        mid = (lo + hi) // 2
        if at(short[mid])[0] <= budget:
            hi = mid
        else:
            lo = mid + 1
    for s in short[max(0, lo - 1):lo + 2] + [short[-1], max(1, round(math.sqrt(n)))]:
        at(s)  # the neighbours, the longest segments, and sqrt's own plan
    cheap = (*_evaluate(gr, cheap_stored(gr), bindings, seen), None)
    options = list(results.values()) + [cheap]
    from .chain import fit_chain

    exact = fit_chain(gr, budget, bindings, lambda g: predicted_peak(g, bindings))
    if exact is not None:  # a chain: the dynamic program's plan (gtool/memory/chain.py)
        options.append((predicted_peak(exact, bindings), recompute_flops(exact, bindings), exact, None))
    fits = [r for r in options if r[0] <= budget]
    if not fits:
        least = min(options, key=lambda r: r[0])
        raise UsageError("budget-too-small", f"no plan fits in {human(budget)}: the least peak gtool finds is "
                         f"{human(least[0])} ({least[0]} bytes)",
                         hint="raise the budget, or use smaller dims (gtool memory --budget SIZE --solve DIM)")
    best = min(fits, key=lambda r: (r[1], r[0]))
    s = best[3]
    if s is None or best[1] == 0:
        return best[2]
    lo, hi = 0, n
    while lo < hi:  # the longest kept tail that still fits
        mid = (lo + hi + 1) // 2
        if _evaluate(gr, segment_stored(gr, s, tail=mid), bindings, seen)[0] <= budget:
            lo = mid
        else:
            hi = mid - 1
    p, c, g = _evaluate(gr, segment_stored(gr, s, tail=lo), bindings, seen)
    return g if (c, p) < (best[1], best[0]) else best[2]
