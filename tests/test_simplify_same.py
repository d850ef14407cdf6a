"""The rewrite engine's incremental sweeps give the same graphs as full sweeps.

tests/golden/simplify_fingerprints.json holds the fingerprints (tests/simplify_cases.py) of
what the engine produced before it skipped unchanged nodes (commit before "incremental
sweeps"): simplify_backward's gradient graphs of every bundled graph and of the big speed
workloads (the peers' 2,000-op chain, a 128-layer MLP, a chain that fires the sign and
sigmoid rules), and `rewrite`'s results and logs. A second check runs both modes of the engine
side by side on graphs the golden file does not hold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import simplify_cases as sc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtool import api
from gtool.rewrite import RULES, SIMPLIFY
from gtool.rewrite import engine as eng
from gtool.rewrite.backward import simplify_backward
from gtool.rewrite.simplify import BACKWARD

GOLDEN = json.loads((Path(__file__).parent / "golden" / "simplify_fingerprints.json").read_text())


def test_pinned_results_unchanged():
    got = sc.results()
    assert set(got) == set(GOLDEN)
    changed = sorted(k for k in GOLDEN if got[k] != GOLDEN[k])
    assert not changed, f"the engine changed these results: {changed}"


@pytest.mark.parametrize("ops", [("tanh({p})", "{p} * {p}", "-{p} + 1", "sigmoid({p}) * 2"),
                                 ("{p} / 1", "{p} - 0", "-(-{p})", "exp({p}) * 0.5", "{p} + {p}"),
                                 ("4 * ((2 * 0.25) * {p})", "cos({p})", "{p} * (2 * 0.25)")])
def test_incremental_equals_full_sweeps(ops, monkeypatch):
    g = sc.loads(sc.chain_text(60, ops, 4096))
    gg = api.gradient(g).graph
    runs = [(gg, BACKWARD), (g, BACKWARD), (g, list(RULES)), (g, list(SIMPLIFY))]
    fast = [eng.run_rules(graph, rules) for graph, rules in runs]
    monkeypatch.setattr(eng, "INCREMENTAL", False)
    full = [eng.run_rules(graph, rules) for graph, rules in runs]
    for a, b in zip(fast, full):
        assert sc.fingerprint(a.graph, a.applied) == sc.fingerprint(b.graph, b.applied)
    assert len(fast[0].applied) > 10  # the rules fired: the comparison means something


def test_backward_still_computes_the_gradient():
    """The simplified chain's gradient against the chain rule written out by hand."""
    import numpy as np

    g = sc.loads(sc.chain_text(30))
    x = np.linspace(-2, 2, 16)
    sb = simplify_backward(api.gradient(g).graph)
    out = api.run(sb, {"x": x})
    grad_name = [o for o in sb.outputs if o != "L"][0]
    _, d = sc.chain_closed_form(x, 30)
    np.testing.assert_allclose(out[grad_name], d, rtol=1e-13)


def test_deleted_name_made_again_takes_its_new_place():
    """`__rw_2` is deleted (x * 1), then a fresh name for the logsumexp expansion of `s` reuses it:
    the node sits with s's expansion, not where the deleted one was (the engine's linked order
    moves the name). Expected order and fingerprint: the engine before incremental sweeps."""
    from gtool.rewrite import rewrite

    g = sc.loads("gtool: 1\ninputs:\n  x: [4]\nnodes:\n  c: log(1 + exp(x))\n  s: logsumexp(c, axis=0)\n"
                 "  t: logsumexp(x, axis=0)\n  __rw_1: s * 1\n  __rw_2: t * 1\n  L: __rw_1 + __rw_2\n"
                 "outputs: [L]\nloss: L\n")
    r = rewrite(g, expand=True)
    assert [a.rule for a in r.applied] == ["mul_one", "mul_one", "softplus", "expand_logsumexp", "expand_logsumexp"]
    names = list(r.graph.nodes)
    assert names[:3] == ["c", "__rw_2", "__rw_3"] and names.index("s") == 11 and names[-2:] == ["t", "L"]
    assert sc.fingerprint(r.graph, r.applied) == "6f7dd64e5695b1126409"


_UNARY = ("-{a}", "exp({a})", "tanh({a})", "sigmoid({a})", "cos({a})", "abs({a})", "exp(-abs({a}))", "{a} ** 2",
          "log(1 + exp({a}))", "{a} / 1", "{a} - 0", "2 * (0.5 * {a})", "4 * ((2 * 0.25) * {a})")
_BINARY = ("{a} + {b}", "{a} - {b}", "{a} * {b}", "{a} + -{b}", "-{a} * {b}", "{a} * {a}", "{a} + {a}",
           "{a} * -2", "maximum({a}, {b})")


@st.composite
def _random_graph(draw) -> str:
    """A DAG of 3-12 elementwise nodes over one vector (size 4 or 4096, so the sign rules'
    size threshold is met or not), with fan-out, repeats for CSE, and a sum as the loss."""
    size = draw(st.sampled_from((4, 4096)))
    names, lines = ["x"], []
    for k in range(draw(st.integers(3, 12))):
        a = draw(st.sampled_from(names))
        if draw(st.booleans()):
            text = draw(st.sampled_from(_UNARY)).format(a=a)
        else:
            text = draw(st.sampled_from(_BINARY)).format(a=a, b=draw(st.sampled_from(names)))
        lines.append(f"  n{k}: {text}")
        names.append(f"n{k}")
    loss = " + ".join(f"sum({n})" for n in draw(st.lists(st.sampled_from(names[1:]), min_size=1, max_size=3)))
    return f"gtool: 1\ninputs:\n  x: [{size}]\nnodes:\n" + "\n".join(lines) + f"\n  L: {loss}\noutputs: [L]\nloss: L\n"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_random_graph())
def test_incremental_equals_full_sweeps_on_random_graphs(text):
    g = sc.loads(text)
    gg = api.gradient(g).graph
    eng.INCREMENTAL = True
    try:
        fast = [eng.run_rules(gg, BACKWARD), eng.run_rules(g, BACKWARD), eng.run_rules(g, list(RULES), expand=True)]
        eng.INCREMENTAL = False
        full = [eng.run_rules(gg, BACKWARD), eng.run_rules(g, BACKWARD), eng.run_rules(g, list(RULES), expand=True)]
    finally:
        eng.INCREMENTAL = True
    for a, b in zip(fast, full):
        assert sc.fingerprint(a.graph, a.applied) == sc.fingerprint(b.graph, b.applied), text
