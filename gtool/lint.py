"""Numerics lint: unstable patterns, and where overflow, log of <= 0 or division by 0 can happen.

Two passes over a graph:

1. Patterns. Every stability rule of `gtool.rewrite` is matched (not applied) at every node
   over a read-only `GraphView` (lint imports the rules and the matcher, never the engine);
   each match is an `error` naming the rule that fixes it and the concrete risk at the
   node's dtype (exp overflows above ~88.7 in float32 and ~709.8 in float64, ...).
2. Hazards. Intervals are propagated through the graph in topological order (declared
   `range`s, constant values, and each op's interval rule from `gtool.intervals`). At each
   exp / expm1, log / log1p, sqrt and div the input's interval says whether the hazard is
   possible. A hazard the declared ranges allow is an `error`; one that is possible only
   because some input or param on the way has no declared `range` is a `warning` (the
   message names those tensors); a hazard the ranges rule out is counted as proven safe.
   Nodes inside a matched pattern are left to the pattern's finding.

3. Overflow in float16. Its largest finite value, 65504, is within reach of ordinary data
   (300 * 300), so every float16 node whose inputs are bounded but whose value can pass it
   (the interval rounded to float16 reaches inf) is an `overflow` finding.

Codes (docs/lint.md): unstable-pattern, exp-overflow, log-domain, sqrt-domain, div-zero, overflow.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .dtypes import INT_DTYPES
from .errors import Diagnostic, GraphError
from .intervals import UNKNOWN, Info, Interval, call_rule
from .ir import Graph
from .ops.registry import get_op
from .rewrite.base import EXP_MAX
from .rewrite.pattern import GraphView
from .rewrite.stability import STABILITY
from .validate import check_file

SEVERITY_RANK = {"warning": 1, "error": 2}
MAX_SOURCES = 3


@dataclass
class Finding:
    """A lint diagnostic and the rewrite rule that fixes it (None for a bare hazard)."""

    diag: Diagnostic
    rule: str | None = None

    def to_json(self) -> dict:
        return {**self.diag.to_json(), "severity": self.diag.severity, "rule": self.rule}


@dataclass
class LintReport:
    path: str
    findings: list[Finding] = field(default_factory=list)
    proven_safe: int = 0  # hazard sites the declared ranges rule out

    def to_json(self) -> dict:
        return {"path": self.path, "findings": [f.to_json() for f in self.findings], "proven_safe": self.proven_safe}

    def worst(self) -> int:
        return max((SEVERITY_RANK[f.diag.severity] for f in self.findings), default=0)


@dataclass(frozen=True)
class Bound:
    """A value's interval and the tensors without a declared range that it depends on."""

    interval: Interval
    sources: frozenset = frozenset()

    @property
    def tainted(self) -> bool:
        return bool(self.sources)


def fmt(v: float) -> str:
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.6g}"


def bounds(graph: Graph) -> dict[str, Bound]:
    """Every value's Bound, in topological order."""
    from .validate import types_of

    types = types_of(graph)
    out: dict[str, Bound] = {}
    for name, t in graph.tensors.items():
        if t.kind == "constant" and t.value is not None:
            v = np.asarray(t.value, dtype=np.float64)
            ok = v.size and not np.isnan(v).any()
            out[name] = Bound((float(v.min()), float(v.max())) if ok else UNKNOWN)
        elif t.range is not None:
            out[name] = Bound((float(t.range[0]), float(t.range[1])))
        elif t.dtype == "bool":
            out[name] = Bound((0.0, 1.0))
        else:
            out[name] = Bound(UNKNOWN, frozenset([name]))
    for name, node in graph.nodes.items():
        op = get_op(node.op)
        ins = [out[i] for i in node.inputs]
        sources = frozenset().union(*(b.sources for b in ins)) if ins else frozenset()
        if len(sources) > MAX_SOURCES:
            sources = frozenset(sorted(sources)[:MAX_SOURCES])
        if op.interval is None:
            out[name] = Bound(UNKNOWN, sources | {f"<{node.op}>"})
            continue
        info = Info(types[name].dtype, tuple(_shape(types[i]) for i in node.inputs))
        interval = rule_interval(op.interval, [b.interval for b in ins], op.full_attrs(node.attrs), info)
        out[name] = Bound(_refine(graph, node, interval), sources)
    return out


def rule_interval(rule, bounds: list[Interval], attrs: dict, info: Info) -> Interval:
    """An op's interval rule, with the ends rounded outward to the result's dtype.

    Rules compute their ends in float64; an int op whose ends pass its dtype's range wraps
    around (int8 100 + 100 is -56), so its interval is then the whole range. A float32 op rounds (or overflows) in float32, so
    its value can lie a float32 rounding outside the float64 ends (a product of 2.6e38 and 2
    is inf in float32, not 5.2e38). Rounding lo down and hi up to float32 (past its largest
    value: to -inf / inf) keeps the interval sound; float64 ends are the op's own roundings.
    """
    lo, hi = call_rule(rule, bounds, attrs, info)
    if info.dtype in ("float32", "float16"):
        dt = np.dtype(info.dtype).type
        with np.errstate(over="ignore"):  # past the largest value: to -inf / inf
            lo32, hi32 = dt(lo), dt(hi)
            if float(lo32) > lo:
                lo32 = np.nextafter(lo32, dt(-np.inf))
            if float(hi32) < hi:
                hi32 = np.nextafter(hi32, dt(np.inf))
        lo, hi = float(lo32), float(hi32)
    elif info.dtype in INT_DTYPES:  # ints wrap around at the width: past it, any value of the dtype
        ii = np.iinfo(info.dtype)
        if lo < ii.min or hi > ii.max:
            lo, hi = float(ii.min), float(ii.max)
    return lo, hi


def _max_of(graph: Graph, name: str, x: str):
    """The max node behind `name` if it is max(x, keepdims=true), possibly wrapped in
    stop_gradient and in where(finite, max, 0) (how `--expand` writes the shift); else None."""
    node = graph.nodes.get(name)
    if node is not None and node.op == "stop_gradient":
        node = graph.nodes.get(node.inputs[0])
    if node is not None and node.op == "where":
        node = graph.nodes.get(node.inputs[1])
    if node is not None and node.op == "max" and node.inputs[0] == x and node.attrs.get("keepdims"):
        return node
    return None


def _refine(graph: Graph, node, interval: Interval) -> Interval:
    """What intervals alone lose, for the max-shift that stable code is written with:
    x - max(x) <= 0, and sum(exp(x - max(x))) over the max's axes >= 1."""
    lo, hi = interval
    if node.op == "sub" and _max_of(graph, node.inputs[1], node.inputs[0]) is not None:
        return lo, min(hi, 0.0)
    if node.op == "sum":
        e = graph.nodes.get(node.inputs[0])
        d = graph.nodes.get(e.inputs[0]) if e is not None and e.op == "exp" else None
        m = _max_of(graph, d.inputs[1], d.inputs[0]) if d is not None and d.op == "sub" else None
        if m is not None and m.attrs.get("axis") == node.attrs.get("axis"):
            return max(lo, 1.0), hi
    return interval


def _shape(t) -> tuple | None:
    if any(not d.is_const for d in t.shape):
        return tuple(d.value if d.is_const else None for d in t.shape)
    return tuple(d.value for d in t.shape)


def _why(b: Bound) -> str:
    if not b.tainted:
        return "the declared ranges allow it"
    names = sorted(s for s in b.sources if not s.startswith("<"))
    ops = sorted(s[1:-1] for s in b.sources if s.startswith("<"))
    parts = []
    if names:
        parts.append("no range is declared for " + ", ".join(names))
    if ops:
        parts.append("no interval rule for " + ", ".join(ops))
    return "possible only because " + " and ".join(parts)


def _hazard(op: str, dtype: str, b: Bound) -> tuple[str, str] | None:
    """(code, message) if the input bound allows this op's hazard, else None."""
    lo, hi = b.interval
    d = dtype if dtype in EXP_MAX else "float64"
    where = f"its input ranges over [{fmt(lo)}, {fmt(hi)}]"
    if op in ("exp", "expm1") and hi > EXP_MAX[d]:
        return "exp-overflow", f"{op} overflows to inf above {EXP_MAX[d]:.1f} in {d}; {where}"
    if op == "log" and lo <= 0:
        what = "0 (log(0) = -inf)" if hi > 0 and lo == 0 else "0 or less (log(0) = -inf, log(x < 0) = NaN)"
        return "log-domain", f"log of a value that can be {what}; {where}"
    if op == "log1p" and lo <= -1:
        return "log-domain", f"log1p of a value that can be -1 or less (-inf or NaN); {where}"
    if op == "sqrt" and lo < 0:
        return "sqrt-domain", f"sqrt of a value that can be negative (NaN); {where}"
    if op == "div" and lo <= 0 <= hi:
        return "div-zero", f"division by a value that can be 0; the divisor ranges over [{fmt(lo)}, {fmt(hi)}]"
    return None


FIXES = {
    "exp-overflow": "use a stable op (logsumexp, softmax, log_softmax, softplus, sigmoid, cross_entropy) or shift by the max",
    "log-domain": "keep the argument positive (log1p, log_softmax, -softplus(-x) for log(sigmoid(x))), or clamp it with maximum",
    "sqrt-domain": "clamp the argument with maximum(x, 0)",
    "div-zero": "keep the divisor away from 0 (add a small constant, or use softmax / sigmoid for normalisations)",
    "overflow": "compute in float32 (cast before the op, and back after it if it must be stored as float16), or scale the "
                "values down",
}
OVERFLOW_DTYPES = ("float16",)  # the dtypes whose largest finite value ordinary data reaches
HAZARD_OPS = {"exp": 0, "expm1": 0, "log": 0, "log1p": 0, "sqrt": 0, "div": 1}  # op -> the input that matters
NORM_OPS = ("layer_norm", "instance_norm", "batch_norm")
FIXES["norm-epsilon"] = "give the norm a positive epsilon (1e-5 is PyTorch's and ONNX's default)"


def _norm_hazard(graph: Graph, node, bound: dict) -> tuple[str, str, Bound | None] | None:
    """(code, message, the bound it rests on) for a norm that can divide by 0: epsilon 0 with
    batch statistics (a row of equal values has variance 0: 0 / 0 = NaN), or running
    variances that can be -epsilon or less (a given `var` input's interval says)."""
    from .ops import get_op

    attrs = get_op(node.op).full_attrs(node.attrs)
    eps = float(attrs["epsilon"])
    if node.op == "batch_norm" and not attrs["training"]:
        b = bound[node.inputs[4]]
        if b.interval[0] + eps <= 0:
            return ("norm-epsilon", f"batch_norm divides by sqrt(var + {eps:g}), and var ranges over "
                    f"[{fmt(b.interval[0])}, {fmt(b.interval[1])}]: it can be 0 (inf or NaN) or negative (NaN)", b)
        return None
    if eps <= 0:
        return ("norm-epsilon", f"{node.op} with epsilon {eps:g}: a row of equal values has variance 0, and "
                "(x - mean) / sqrt(0) = 0 / 0 = NaN (its gradient too)", None)
    return None


def lint_graph(graph: Graph, path: str | None = None) -> LintReport:
    """Every finding for one (valid) graph."""
    from .validate import types_of

    path = path or graph.path or "<graph>"
    report = LintReport(path)
    types = types_of(graph)
    bound = bounds(graph)
    view = GraphView(graph)
    covered: set[str] = set()
    for node in graph.nodes.values():
        for rule in STABILITY:
            if node.op not in rule.roots:
                continue
            m = rule.match(view, node)
            if m is None:
                continue
            covered.update(m.interior)
            report.findings.append(Finding(_pattern_diag(graph, node, rule, m, types, bound, path), rule.name))
            break
    for name, node in graph.nodes.items():
        if node.op in NORM_OPS:
            _add_norm_finding(report, graph, node, bound, path)
        k = HAZARD_OPS.get(node.op)
        if k is None or name in covered:
            continue
        b = bound[node.inputs[k]]
        found = _hazard(node.op, types[name].dtype, b)
        if found is None:
            report.proven_safe += 1
            continue
        code, message = found
        severity = "warning" if b.tainted else "error"
        hint = FIXES[code] + ("; or declare a `range` on the inputs to prove it cannot happen" if b.tainted else "")
        report.findings.append(Finding(_diag(graph, node, code, f"{message} ({_why(b)})", hint, severity, path)))
    report.findings += _overflows(graph, types, bound, covered, path)
    report.findings.sort(key=lambda f: (f.diag.line or 0, f.diag.column or 0))
    return report


def _add_norm_finding(report: LintReport, graph: Graph, node, bound: dict, path: str) -> None:
    found = _norm_hazard(graph, node, bound)
    if found is None:
        report.proven_safe += node.op == "batch_norm"
        return
    code, message, b = found
    tainted = b is not None and b.tainted
    hint = FIXES[code] + ("; or declare a `range` on the inputs to prove it cannot happen" if tainted else "")
    message += f" ({_why(b)})" if tainted else ""
    report.findings.append(Finding(_diag(graph, node, code, message, hint, "warning" if tainted else "error", path)))
def _overflows(graph: Graph, types, bound: dict[str, Bound], covered: set[str], path: str) -> list[Finding]:
    """float16 nodes that can pass the largest finite value while their inputs are bounded
    (an input already unbounded is someone else's finding, or has no declared range)."""
    out = []
    for name, node in graph.nodes.items():
        dtype = types[name].dtype
        if dtype not in OVERFLOW_DTYPES or name in covered or node.op in ("exp", "expm1"):
            continue
        lo, hi = bound[name].interval
        ins = [bound[i].interval for i in node.inputs]
        if math.isfinite(lo) and math.isfinite(hi) or not all(math.isfinite(a) and math.isfinite(b) for a, b in ins):
            continue
        top = float(np.finfo(dtype).max)
        shown = ", ".join(f"[{fmt(a)}, {fmt(b)}]" for a, b in ins)
        b = Bound(bound[name].interval, frozenset().union(*(bound[i].sources for i in node.inputs)))
        message = (f"{node.op} can pass {dtype}'s largest finite value {top:g} and become inf; its inputs range over "
                   f"{shown} ({_why(b)})")
        hint = FIXES["overflow"] + ("; or declare a `range` on the inputs to prove it cannot happen" if b.tainted else "")
        out.append(Finding(_diag(graph, node, "overflow", message, hint, "warning" if b.tainted else "error", path)))
    return out


def _diag(graph: Graph, node, code: str, message: str, hint: str | None, severity: str, path: str) -> Diagnostic:
    loc = node.loc
    if loc.line is None and node.doc:  # a node from a file without lines (an ONNX model): its doc says where
        message = f"{message} ({node.doc})"
    return Diagnostic(code, message, path=path, line=loc.line, column=loc.column, node=graph.owner(node.name),
                      pointer=loc.pointer, op=node.op, hint=hint, severity=severity)


def _pattern_diag(graph, node, rule, m, types, bound, path) -> Diagnostic:
    dtype = types[node.name].dtype
    x = m.vars.get("x")
    note = ""
    if x is not None:
        b = bound[x]
        shown = graph.owner(x) if x in graph.nodes else x
        note = f" Here its input {shown} ranges over [{fmt(b.interval[0])}, {fmt(b.interval[1])}]"
        note += " (no range is declared for " + ", ".join(sorted(s for s in b.sources if not s.startswith("<"))) + ")." \
            if b.tainted and any(not s.startswith("<") for s in b.sources) else "."
    before, after = _with_matched_axis(rule.example, graph, m)
    message = f"unstable {before}: {rule.risk(dtype)}.{note}"
    hint = f"`gtool rewrite --rules {rule.name}` rewrites it as {after}"
    return _diag(graph, node, "unstable-pattern", message, hint, "error", path)


_AXIS = re.compile(r", axis=(\[[^\]]*\]|-?\d+)")
_KEEPDIMS = re.compile(r", keepdims=(true|false)")


def _with_matched_axis(example: tuple[str, str], graph: Graph, m) -> tuple[str, str]:
    """The rule's example pair with the axis (and keepdims) of the matched subgraph's reduction,
    so a finding on `log(sum(exp(x), axis=0))` does not quote the example's `axis=1`."""
    node = next((graph.nodes[n] for n in m.interior
                 if n in graph.nodes and "axis" in getattr(get_op(graph.nodes[n].op), "attrs", {})), None)
    if node is None:
        return example
    spec = get_op(node.op).attrs
    axis = node.attrs.get("axis", spec["axis"].default)
    text = "" if axis is None else f", axis={list(axis) if isinstance(axis, (list, tuple)) else axis}"
    keep = ", keepdims=true" if "keepdims" in spec and node.attrs.get("keepdims", spec["keepdims"].default) else ""
    # the rewrite's side is adjusted only where its one axis is that reduction's
    # (log_softmax_pick's take_along_axis keeps its own)
    out = [e if k and len(_AXIS.findall(e)) != 1 else _AXIS.sub(lambda _: text, e) for k, e in enumerate(example)]
    if "keepdims" in spec:
        out = [_KEEPDIMS.sub(lambda _: keep, e) for e in out]
    return out[0], out[1]


def lint_file(path: str) -> LintReport:
    """Lint one file; a file that does not load reports its errors as findings."""
    rep = check_file(path)
    if rep.errors:
        return LintReport(path, [Finding(d) for d in rep.errors])
    graph = rep.graph
    graph.cache["inference"] = rep.inference
    try:
        return lint_graph(graph, path)
    except GraphError as e:
        return LintReport(path, [Finding(d) for d in e.diagnostics])
