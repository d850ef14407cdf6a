"""The rule registry: every rewrite rule in the engine's priority order, and by name.

The rules live in `stability.py` (unstable subgraphs -> stable ops) and `simplify.py`
(clean-ups and the `--expand` lowering); `base.py` holds the `Rule` class and shared helpers.
Stability rules come first: at one node the larger pattern wins (softplus over log1p).
"""

from __future__ import annotations

from .base import EXP_MAX, EXP_MIN, Rule, eps
from .simplify import (
    CSE,
    EXPANSIONS,
    SIMPLIFY,
    AddZero,
    ConstantFold,
    DeadNodes,
    ExpandLogsumexp,
    MulOne,
    NegNeg,
    ReshapeReshape,
    TransposeTranspose,
)
from .stability import (
    STABILITY,
    CrossEntropy,
    Expm1,
    Log1mSigmoid,
    Log1p,
    LogSigmoid,
    LogSoftmax,
    LogSoftmaxFromLse,
    LogSoftmaxPick,
    LogSumExp,
    OneMinusSigmoid,
    SigmoidFromExp,
    Softmax,
    SoftmaxFromExp,
    Softplus,
)

RULES: list[Rule] = STABILITY + SIMPLIFY
BY_NAME: dict[str, Rule] = {r.name: r for r in RULES + EXPANSIONS}

__all__ = [
    "BY_NAME", "CSE", "EXPANSIONS", "EXP_MAX", "EXP_MIN", "RULES", "SIMPLIFY", "STABILITY", "AddZero", "ConstantFold",
    "CrossEntropy", "DeadNodes", "ExpandLogsumexp", "Expm1", "Log1mSigmoid", "Log1p", "LogSigmoid", "LogSoftmax",
    "LogSoftmaxFromLse", "LogSoftmaxPick", "LogSumExp", "MulOne", "NegNeg", "OneMinusSigmoid", "ReshapeReshape", "Rule",
    "SigmoidFromExp", "Softmax", "SoftmaxFromExp", "Softplus", "TransposeTranspose", "eps",
]
