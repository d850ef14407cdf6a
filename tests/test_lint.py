"""lint: pattern findings, interval hazards and their severities, output formats, exit
statuses; and the interval rules themselves (sound: every value a point input produces lies
inside the interval computed for the inputs' intervals)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gtool
from gtool.format.write import dumps
from gtool.intervals import UNKNOWN, Info, call_rule
from gtool.lint import bounds, lint_file, lint_graph
from gtool.ops.registry import REGISTRY
from gtool.rewrite import rewrite

ROOT = Path(__file__).parent.parent
NAIVE = ROOT / "graphs" / "softmax_logprob_naive.yaml"

RANGED = """
gtool: 1
inputs:
  x: {shape: [3], range: [-5, 5]}
  y: {shape: [3], range: [0, 1000]}
  z: [3]
nodes:
  a: exp(x)
  b: exp(y)
  c: log(x + 6)
  d: log(y)
  e: x / (y + 1)
  f: exp(z)
  g: sqrt(x)
  h: a + b + c + d + e + f + g
outputs: [h]
"""


def run_cli(capsys, *args) -> tuple[int, str, str]:
    from gtool.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def findings(report) -> list[tuple]:
    return [(f.diag.node, f.diag.code, f.diag.severity, f.rule) for f in report.findings]


def test_naive_graph_is_flagged_and_the_rewrite_is_clean(tmp_path):
    rep = lint_file(str(NAIVE))
    assert findings(rep) == [("p", "unstable-pattern", "error", "softmax"),
                             ("L", "unstable-pattern", "error", "log_softmax_pick")]
    assert [f.diag.line for f in rep.findings] == [17, 18]
    msg = rep.findings[0].diag.message
    assert "709.8 in float64" in msg and "no range is declared for s" in msg
    assert "gtool rewrite --rules softmax" in rep.findings[0].diag.hint
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(dumps(rewrite(gtool.load(NAIVE)).graph))
    assert lint_file(str(fixed)).findings == []


@pytest.mark.parametrize("written, before, after", [
    ("log(sum(exp(x), axis=0))", "log(sum(exp(x), axis=0))", "logsumexp(x, axis=0)"),
    ("log(sum(exp(x), axis=1))", "log(sum(exp(x), axis=1))", "logsumexp(x, axis=1)"),  # the rule's own example
    ("log(sum(exp(x), axis=[0, 1]))", "log(sum(exp(x), axis=[0, 1]))", "logsumexp(x, axis=[0, 1])"),
    ("log(sum(exp(x)))", "log(sum(exp(x)))", "logsumexp(x)"),
    ("exp(x) / sum(exp(x), axis=0, keepdims=true)", "exp(x) / sum(exp(x), axis=0, keepdims=true)", "softmax(x, axis=0)"),
])
def test_pattern_messages_quote_the_axis_the_graph_reduces_over(load_text, written, before, after):
    g = load_text(f"gtool: 1\ninputs:\n  x: {{shape: [3, 4]}}\nnodes:\n  y: {written}\noutputs: [y]\n")
    f, = lint_graph(g).findings
    assert f.diag.message.startswith(f"unstable {before}: "), f.diag.message
    assert f.diag.hint.endswith(f"rewrites it as {after}"), f.diag.hint


def test_hazards_and_severities(load_text):
    rep = lint_graph(load_text(RANGED))
    assert findings(rep) == [("b", "exp-overflow", "error", None), ("d", "log-domain", "error", None),
                             ("f", "exp-overflow", "warning", None), ("g", "sqrt-domain", "error", None)]
    assert rep.proven_safe == 3  # exp(x), log(x + 6), x / (y + 1)
    by_node = {f.diag.node: f.diag for f in rep.findings}
    assert "can reach" not in by_node["b"].message and "[0, 1000]" in by_node["b"].message
    assert "declared ranges allow it" in by_node["b"].message
    assert "no range is declared for z" in by_node["f"].message
    assert "range" in by_node["f"].hint


def test_dtype_thresholds(load_text):
    text = """
gtool: 1
inputs:
  x: {shape: [2], dtype: DT, range: [0, 100]}
nodes:
  y: exp(x)
outputs: [y]
"""
    assert [f.diag.code for f in lint_graph(load_text(text.replace("DT", "float32"))).findings] == ["exp-overflow"]
    assert "88.7 in float32" in lint_graph(load_text(text.replace("DT", "float32"))).findings[0].diag.message
    assert lint_graph(load_text(text.replace("DT", "float64"))).findings == []


def test_patterns_cover_their_nodes_and_stable_graphs_are_clean(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: [2, 3]
nodes:
  y: log(sum(exp(x), axis=1))
  z: log(1 + x)
outputs: [y, z]
""")
    rep = lint_graph(g)
    # the exp inside the logsumexp pattern is not reported again as a hazard
    assert findings(rep) == [("y", "unstable-pattern", "error", "logsumexp"), ("z", "unstable-pattern", "error", "log1p")]
    assert lint_file(str(ROOT / "graphs" / "softmax_logprob_stable.yaml")).findings == []
    # the max shift that --expand writes is known to be safe
    expanded = rewrite(gtool.load(ROOT / "tests" / "data" / "rewrite" / "logsumexp.yaml"), expand=True).graph
    assert lint_graph(expanded).findings == []


def test_intervals_through_a_graph(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: {shape: [4], range: [-2, 3]}
  n: [4]
constants:
  c: [1.0, 2.0, 5.0, 4.0]
nodes:
  s: sum(x * c)
  m: mean(x)
  p: softmax(x)
  q: sigmoid(n)
  r: maximum(x, 0)
outputs: [s, m, p, q, r]
""")
    b = bounds(g)
    assert b["s"].interval == (-40.0, 60.0) and not b["s"].tainted  # 4 elements of x * c in [-10, 15]
    assert b["m"].interval == (-2.0, 3.0)
    lo, hi = b["p"].interval
    assert 0 < lo < 1 / (1 + 3 * math.exp(5)) * 1.0001 and hi == 1.0
    assert b["q"].interval == (0.0, 1.0) and b["q"].sources == {"n"}
    assert b["r"].interval == (0.0, 3.0)


def test_cli_formats_and_exit_statuses(tmp_path, capsys):
    ranged = tmp_path / "ranged.yaml"
    ranged.write_text(RANGED)
    code, out, err = run_cli(capsys, "lint", str(NAIVE))
    assert code == 1 and "[unstable-pattern]" in out and "rule: softmax" in out and "2 errors" in err
    code, out, _ = run_cli(capsys, "lint", str(NAIVE), str(ranged), "--format", "json")
    doc = json.loads(out)
    assert code == 1 and [f["path"] for f in doc["files"]] == [str(NAIVE), str(ranged)]
    first = doc["files"][0]["findings"][0]
    assert {"code", "message", "line", "column", "node", "pointer", "severity", "rule"} <= set(first)
    assert first["rule"] == "softmax" and doc["files"][1]["findings"][0]["rule"] is None
    code, out, _ = run_cli(capsys, "lint", str(ranged), "--format", "github", "--fail-on", "never")
    assert code == 0 and out.startswith("::error file=") and "::warning file=" in out
    only_warning = tmp_path / "w.yaml"
    only_warning.write_text("gtool: 1\ninputs:\n  z: [3]\nnodes:\n  f: exp(z)\noutputs: [f]\n")
    assert run_cli(capsys, "lint", str(only_warning))[0] == 0
    assert run_cli(capsys, "lint", str(only_warning), "--fail-on", "warning")[0] == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("gtool: 1\nnodes:\n  y: exp(nope)\noutputs: [y]\n")
    code, out, _ = run_cli(capsys, "lint", str(tmp_path), "--format", "json")
    doc = json.loads(out)
    assert code == 1 and doc["files"][0]["findings"][0]["code"] == "unknown-name"
    assert run_cli(capsys, "lint", str(tmp_path / "missing.yaml"))[0] == 2


def test_every_op_has_an_interval_rule_and_codes_are_documented():
    import gtool.intervals  # noqa: F401

    text = (ROOT / "docs" / "lint.md").read_text()
    for code in ("unstable-pattern", "exp-overflow", "log-domain", "sqrt-domain", "div-zero"):
        assert f"`{code}`" in text
    missing = [n for n, op in REGISTRY.items() if op.plugin is None and op.interval is None]
    assert missing == []


# soundness of the interval rules ----------------------------------------------------------------------

UNARY = ["neg", "exp", "log", "log1p", "expm1", "sqrt", "square", "abs", "sign", "sin", "cos", "tanh", "sigmoid",
         "relu", "softplus", "identity"]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "pow"]
finite = st.floats(-50, 50, allow_nan=False, width=64)


def _inside(v: float, iv) -> bool:
    lo, hi = iv
    if math.isnan(v):
        return True  # NaN is the domain hazards' business, not the bounds'
    if math.isinf(v):
        return lo <= v <= hi
    slack = 1e-12 * max(1.0, abs(v))
    return lo - slack <= v <= hi + slack


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(UNARY), finite, finite, st.floats(0, 1))
def test_unary_rules_are_sound(name, a, b, t):
    lo, hi = min(a, b), max(a, b)
    x = lo + t * (hi - lo)
    op = REGISTRY[name]
    with np.errstate(all="ignore"):
        v = float(op.forward(np.asarray(x)))
    assert _inside(v, call_rule(op.interval, [(lo, hi)], op.full_attrs({}), Info("float64", ((),))))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(BINARY), finite, finite, finite, finite, st.floats(0, 1), st.floats(0, 1))
def test_binary_rules_are_sound(name, a, b, c, d, t, u):
    (lo1, hi1), (lo2, hi2) = sorted((a, b)), sorted((c, d))
    if name == "pow":
        lo1, hi1, lo2, hi2 = abs(lo1) / 10 + 0.01, abs(lo1) / 10 + abs(hi1) / 10 + 0.02, lo2 / 10, hi2 / 10
    x, y = lo1 + t * (hi1 - lo1), lo2 + u * (hi2 - lo2)
    op = REGISTRY[name]
    with np.errstate(all="ignore"):
        v = float(op.forward(np.asarray(x), np.asarray(y)))
    iv = call_rule(op.interval, [(lo1, hi1), (lo2, hi2)], op.full_attrs({}), Info("float64", ((), ())))
    assert _inside(v, iv), (x, y, v, iv)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["sum", "mean", "max", "logsumexp", "softmax", "log_softmax"]),
       st.lists(finite, min_size=6, max_size=6))
def test_reduction_rules_are_sound(name, values):
    x = np.asarray(values).reshape(2, 3)
    op = REGISTRY[name]
    attrs = op.full_attrs({"axis": 1} if name not in ("softmax", "log_softmax") else {})
    out = np.asarray(op.forward(x, **op.prepare(attrs, {})))
    iv = call_rule(op.interval, [(float(x.min()), float(x.max()))], attrs, Info("float64", ((2, 3),)))
    assert all(_inside(float(v), iv) for v in out.ravel()), (out, iv)


def test_unknown_interval_rules_fail_open():
    def broken(bounds, attrs):
        raise ZeroDivisionError

    assert call_rule(broken, [(0.0, 1.0)], {}, Info()) == UNKNOWN
    assert call_rule(lambda b, a: (b[0][0] - 1, b[0][1] + 1), [(0.0, 1.0)], {}, Info()) == (-1.0, 2.0)


def test_lint_does_not_import_the_rewrite_engine():
    """lint matches the stability rules' patterns; rewriting itself (the engine, the checks
    that `--verify` runs) must not load with it (docs/architecture.md's layering)."""
    import ast
    import subprocess
    import sys

    code = ("import sys, gtool.lint; from gtool.lint import lint_file; "
            "lint_file(sys.argv[1]); print(sorted(m for m in sys.modules if m.startswith('gtool.rewrite')))")
    out = subprocess.run([sys.executable, "-c", code, str(NAIVE)], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    loaded = set(ast.literal_eval(out))
    assert "gtool.rewrite.stability" in loaded  # the patterns were matched
    assert not loaded & {"gtool.rewrite.engine", "gtool.rewrite.checks"}, loaded
