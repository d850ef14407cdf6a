"""Graph rewrites: find unstable subgraphs, replace them with stable ones, prove it on data.

    from gtool.rewrite import rewrite, verify
    result = rewrite(graph)                  # every rule, to a fixed point
    result.graph, result.applied             # the new Graph, and what fired where
    checks = verify(rewrite(graph, record=True).applied)

`stability.py` and `simplify.py` hold the rules (one class each, docstring = identity),
`rules.py` the registry of them, `engine.py` the fixed point and the log, `pattern.py` the
matcher, `checks.py` the per-rewrite contract checks (`verify`).

The engine and the checks (which import autodiff and the executor) load on first use, so
importing the rules or the matcher (as `lint` does) does not import the rewrite engine.
"""

from __future__ import annotations

from ..errors import UsageError, did_you_mean
from ..ir import Graph
from .rules import BY_NAME, EXPANSIONS, RULES, SIMPLIFY, STABILITY, Rule

_LAZY = {"Applied": "engine", "RewriteResult": "engine", "Check": "checks", "verify": "checks"}


def __getattr__(name: str):
    """`Applied`, `RewriteResult`, `Check` and `verify`, imported on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def select_rules(names: str | list[str] | None) -> list[Rule]:
    """Rules by name ('a,b' or a list), in the engine's priority order; None means all."""
    if names is None:
        return list(RULES)
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    for n in wanted:
        if n not in BY_NAME or BY_NAME[n] in EXPANSIONS:
            near = did_you_mean(n, [r.name for r in RULES])
            raise UsageError("usage", f"unknown rule '{n}'", hint=f"did you mean '{near}'?" if near
                             else "`gtool rewrite --list` lists the rules")
    return [r for r in RULES if r.name in wanted]


def rewrite(graph: Graph, rules: str | list | None = None, *, expand: bool = False, record: bool = False):
    """Apply the rules (names, Rule objects, or None for all) to a fixed point.

    `expand` lowers logsumexp afterwards; `record` keeps, per application, the small
    before/after graphs that `verify` runs. Returns an `engine.RewriteResult`.
    """
    from .engine import run_rules

    chosen = rules if rules and not isinstance(rules, str) and isinstance(rules[0], Rule) else select_rules(rules)
    return run_rules(graph, chosen, expand=expand, record=record)


__all__ = ["Applied", "Check", "RULES", "RewriteResult", "Rule", "SIMPLIFY", "STABILITY", "rewrite", "select_rules", "verify"]
