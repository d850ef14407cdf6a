"""Interval arithmetic for lint: bounds on every value, from declared `range`s and constants.

An interval is a pair (lo, hi) of floats (either may be infinite). Each op's rule is part of
its record (`OpDef.interval`, built from the rule shapes in `gtool/ops/bounds.py`, next to
the op's forward). A rule is called as `rule(bounds, attrs, info)`: `bounds` are the input
intervals, `attrs` the op's full attrs, `info` an `Info` with the dtype of the result and the
input shapes (ints, or None where a dim is symbolic), which reductions need to count their
elements. A rule of a plugin may take only (bounds, attrs).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

from .ops.bounds import INF, UNKNOWN, Interval, clean

__all__ = ["INF", "UNKNOWN", "Info", "Interval", "call_rule"]


@dataclass(frozen=True)
class Info:
    """What some rules need besides the bounds: the result dtype and the input shapes."""

    dtype: str = "float64"
    shapes: tuple = ()

    def count(self, k: int = 0, axes=None) -> tuple[float, float]:
        """(fewest, most) elements a reduction of input k over `axes` sums (None: all)."""
        shape = self.shapes[k] if k < len(self.shapes) else None
        if shape is None:
            return 1.0, INF
        rank = len(shape)
        if axes is None:
            picked = list(range(rank))
        else:
            picked = [a % rank for a in ([axes] if isinstance(axes, int) else axes)] if rank else []
        dims = [shape[a] for a in picked]
        if any(d is None for d in dims):
            return 1.0, INF
        n = float(math.prod(dims))
        return n, n


def call_rule(rule: Callable, bounds: list[Interval], attrs: dict, info: Info) -> Interval:
    """Run an op's interval rule (two- or three-argument form); unknown on any failure."""
    try:
        takes_info = len(inspect.signature(rule).parameters) >= 3
    except (TypeError, ValueError):
        takes_info = True
    try:
        out = rule(bounds, attrs, info) if takes_info else rule(bounds, attrs)
        return clean(float(out[0]), float(out[1]))
    except Exception:  # a plugin's rule failing must not stop lint: the value is then unbounded
        return UNKNOWN

