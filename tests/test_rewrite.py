"""Rewrites: each rule's structure, values and gradients (random and extreme inputs, against
mpmath), the engine's invariants (fan-out, names, types, determinism, idempotence), --expand,
--verify's contract (and that it catches broken rules), and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import gtool
from gtool.errors import UsageError
from gtool.format.write import dumps
from gtool.rewrite import rewrite, verify
from gtool.rewrite.rules import RULES, Expm1, Softplus
from gtool.validate import check_file

try:  # exact references; --verify itself must work without mpmath (its long-double path is tested too)
    import mpmath as mp

    mp.mp.dps = 60
except ImportError:  # pragma: no cover - mpmath is in the `precision` extra
    mp = None
needs_mpmath = pytest.mark.skipif(mp is None, reason="exact references need mpmath")

DATA = Path(__file__).parent / "data" / "rewrite"
NAIVE = Path(__file__).parent.parent / "graphs" / "softmax_logprob_naive.yaml"


def load(name: str) -> gtool.Graph:
    return gtool.load(DATA / f"{name}.yaml")


def ops(graph: gtool.Graph) -> set[str]:
    return {n.op for n in graph.nodes.values()}


# exact references -----------------------------------------------------------------------------


def _rows(x, f):
    return np.array([f([mp.mpf(float(v)) for v in row]) for row in np.atleast_2d(x)], dtype=object)


def _lse(row):
    return mp.log(sum(mp.exp(v) for v in row))


def _elementwise(f):
    return lambda feed: np.array([f(mp.mpf(float(v))) for v in feed["x"]], dtype=object)


def _softmax(feed):
    return np.array([[mp.exp(v - _lse(row)) for v in row] for row in _rows(feed["x"], list)], dtype=object)


def _log_softmax(feed):
    return np.array([[v - _lse(row) for v in row] for row in _rows(feed["x"], list)], dtype=object)


def _picked(feed):
    return [_lse(row) - row[t] for row, t in zip(_rows(feed["s"], list), feed["t"])]


BIG = [[1000.0, 999.0, 0.0, -5.0], [-1000.0, -1001.0, -1002.0, -1003.0], [1.0, 2.0, 3.0, 4.0]]
S = [[1000.0, 0.0, 0.0, 0.0, 0.0], [0.0, -1000.0, 5.0, 1.0, 2.0], [3.0, 3.0, 3.0, 3.0, 3.0]]

# file, output, rules that fire, ops the result has and lacks, extreme feed, exact value of the output
CASES = {
    "logsumexp": ("y", {"logsumexp"}, {"logsumexp"}, {"exp"}, {"x": BIG},
                  lambda f: _rows(f["x"], _lse)),
    "softmax": ("p", {"softmax"}, {"softmax"}, {"exp", "div"}, {"x": BIG}, _softmax),
    "log_softmax": ("y", {"log_softmax"}, {"log_softmax"}, {"softmax", "log"}, {"x": BIG}, _log_softmax),
    "log_softmax_hand": ("y", {"log_softmax"}, {"log_softmax"}, {"exp", "div", "log"}, {"x": BIG}, _log_softmax),
    "log_softmax_lse": ("y", {"log_softmax_lse"}, {"log_softmax"}, {"logsumexp", "sub"},
                        {"x": [[1e6 + 0.5, 1e6, 1e6 - 3, 1e6 + 2], [1e6 + 0.25, 1e6 + 0.125, 1e6 - 1, 1e6 + 0.75],
                               [-1e6, -1e6 + 1, -1e6 + 0.5, -1e6 - 2]]}, _log_softmax),
    "exp_log_softmax": ("p", {"exp_log_softmax"}, {"softmax"}, {"log_softmax", "exp"}, {"x": BIG}, _softmax),
    "log1p": ("y", {"log1p"}, {"log1p"}, {"log", "add"}, {"x": [1e-12, -3e-13, 2.5e-15, 1e-9, 0.5]},
              _elementwise(lambda v: mp.log1p(v))),
    "expm1": ("y", {"expm1"}, {"expm1"}, {"exp", "sub"}, {"x": [1e-12, -3e-13, 2.5e-15, 1e-9, 0.5]},
              _elementwise(lambda v: mp.expm1(v))),
    "softplus": ("y", {"softplus"}, {"softplus"}, {"exp", "log", "add"}, {"x": [1000.0, -40.0, 0.0, 5.0, 710.0]},
                 _elementwise(lambda v: mp.log1p(mp.exp(v)))),
    "log_sigmoid": ("y", {"log_sigmoid"}, {"softplus", "neg"}, {"sigmoid", "log"},
                    {"x": [-1000.0, -800.0, 0.0, 3.0, 40.0]}, _elementwise(lambda v: -mp.log1p(mp.exp(-v)))),
    "log1m_sigmoid": ("y", {"log1m_sigmoid"}, {"softplus", "neg"}, {"sigmoid", "log", "sub"},
                      {"x": [1000.0, 50.0, 0.0, -3.0, 40.0]}, _elementwise(lambda v: -mp.log1p(mp.exp(v)))),
    "one_minus_sigmoid": ("y", {"one_minus_sigmoid"}, {"sigmoid", "neg"}, {"sub"},
                          {"x": [40.0, 50.0, 30.0, 0.0, -3.0]}, _elementwise(lambda v: 1 / (1 + mp.exp(v)))),
    "sigmoid": ("y", {"sigmoid"}, {"sigmoid"}, {"exp", "div"}, {"x": [1000.0, -1000.0, 0.0, 3.0, 710.0]},
                _elementwise(lambda v: 1 / (1 + mp.exp(-v)))),
    "pick_onehot": ("L", {"log_softmax_pick", "cross_entropy"}, {"cross_entropy"}, {"softmax", "log", "one_hot"},
                    {"s": S, "t": [1, 1, 4]}, lambda f: sum(_picked(f)) / 3),
    "ce_onehot": ("L", {"cross_entropy"}, {"cross_entropy"}, {"one_hot", "log_softmax"},
                  {"s": [[0.0, -np.inf, 1.0, 2.0, 3.0], [-np.inf, 0.0, 1000.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0]],
                   "t": [0, 2, 4]}, lambda f: sum(_picked(f))),
    "ce_gather": ("L", {"cross_entropy"}, {"cross_entropy"}, {"take_along_axis", "log_softmax"},
                  {"s": S, "t": [1, 1, 4]}, lambda f: sum(_picked(f))),
}


def _as_float(a) -> np.ndarray:
    return np.array([float(v) for v in np.ravel(np.asarray(a, dtype=object))]).reshape(np.shape(a))


def _rel_err(got, want) -> float:
    got, want = np.asarray(got, float), _as_float(want)
    tiny = np.finfo(np.float64).smallest_normal
    with np.errstate(all="ignore"):
        err = np.where(got == want, 0.0, np.abs(got - want) / np.maximum(np.abs(want), tiny))
    return float(np.max(err))


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_structure_and_random_inputs(name):
    out, fired, has, lacks, _, _ = CASES[name]
    g = load(name)
    r = rewrite(g)
    assert {a.rule for a in r.applied} == fired
    assert has <= ops(r.graph) and not (lacks & ops(r.graph)), ops(r.graph)
    assert out in r.graph.outputs + ((r.graph.loss,) if r.graph.loss else ())
    for seed in range(3):  # old and new agree, values and gradients, where the original is finite
        lo, go = gtool.value_and_grad(g, random_inputs=True, seed=seed)
        ln, gn = gtool.value_and_grad(r.graph, random_inputs=True, seed=seed)
        if np.isfinite(lo):
            np.testing.assert_allclose(ln, lo, rtol=1e-10)
        for k in go:
            finite = np.isfinite(go[k])
            np.testing.assert_allclose(gn[k][finite], go[k][finite], rtol=1e-9, atol=1e-12)


@needs_mpmath
@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_on_extreme_inputs(name):
    """The original is non-finite or off by more than 1e-12 relative; the rewritten graph is
    finite and within 1e-12 relative of the mpmath value (exp_log_softmax and the gather form
    of cross_entropy only tidy up: there the original holds, and both must)."""
    out, _, _, _, feed, exact = CASES[name]
    g = load(name)
    new = rewrite(g).graph
    feed = {k: np.asarray(v, dtype=np.int64 if k == "t" else np.float64) for k, v in feed.items()}
    want = exact(feed)
    got_old, got_new = gtool.run(g, feed)[out], gtool.run(new, feed)[out]
    assert np.all(np.isfinite(got_new))
    assert _rel_err(got_new, want) <= 1e-12
    if name in ("exp_log_softmax", "ce_gather"):
        assert _rel_err(got_old, want) <= 1e-12
    else:
        assert not np.all(np.isfinite(got_old)) or _rel_err(got_old, want) > 1e-12


GRADS = {  # d total / d x at the extreme feed: rule -> exact gradient
    "logsumexp": lambda f: _softmax(f),
    "softplus": _elementwise(lambda v: 1 / (1 + mp.exp(-v))),
    "log1p": _elementwise(lambda v: 1 / (1 + v)),
    "log_sigmoid": _elementwise(lambda v: 1 / (1 + mp.exp(v))),
    "log1m_sigmoid": _elementwise(lambda v: -1 / (1 + mp.exp(-v))),
}


@needs_mpmath
@pytest.mark.parametrize("name", sorted(GRADS))
def test_rule_gradients_on_extreme_inputs(name):
    g = rewrite(load(name)).graph
    feed = {"x": np.asarray(CASES[name][4]["x"], dtype=np.float64)}
    _, grads = gtool.value_and_grad(g, feed, wrt=["x"])
    assert np.all(np.isfinite(grads["x"]))
    assert _rel_err(grads["x"], GRADS[name](feed)) <= 1e-12


# the naive softmax log-probability graph ------------------------------------------------------------


def test_naive_graph_is_fixed_and_passes_grad_check(tmp_path):
    from gtool.gradcheck import grad_check

    g = gtool.load(NAIVE)
    r = rewrite(g)
    assert [a.rule for a in r.applied] == ["log_softmax_pick", "cross_entropy"]
    assert all(a.line == 18 for a in r.applied)
    out = tmp_path / "fixed.yaml"
    from gtool.format.write import save_graph

    save_graph(r.graph, str(out))
    fixed = gtool.load(out)
    assert [n.op for n in fixed.nodes.values()] == ["cross_entropy"]
    s = {"s": np.array([1000.0, 0.0, 0.0, 0.0])}
    assert np.isnan(gtool.run(g, s)["L"])  # the naive graph breaks
    value, grads = gtool.value_and_grad(fixed, s)
    assert value == pytest.approx(1000.0, rel=1e-15)
    np.testing.assert_allclose(grads["s"], [1.0, -1.0, 0.0, 0.0], atol=1e-300)
    # the documented values at s = [1, 2, 0.5, -1]
    value, grads = gtool.value_and_grad(fixed)
    assert value == pytest.approx(0.495181898085856, rel=1e-14)
    np.testing.assert_allclose(grads["s"], [0.22420781804820114, -0.3905399624011229, 0.13598891579350553,
                                            0.03034322855941623], rtol=1e-13)
    for inputs in (None, s):
        assert all(res.passed for res in grad_check(fixed, inputs))


# the engine -----------------------------------------------------------------------------------------------


def test_fan_out_keeps_the_shared_value(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: [2, 3]
nodes:
  e: exp(x)
  y: log(sum(e, axis=1))
  z: e * 2
outputs: [y, z]
""")
    r = rewrite(g, "logsumexp")
    assert [a.rule for a in r.applied] == ["logsumexp"]
    assert r.graph.nodes["y"].op == "logsumexp" and r.graph.nodes["y"].inputs == ("x",)
    assert "e" in r.graph.nodes  # z still reads it
    x = np.random.default_rng(0).normal(size=(2, 3))
    a, b = gtool.run(g, {"x": x}), gtool.run(r.graph, {"x": x})
    for k in ("y", "z"):
        np.testing.assert_allclose(b[k], a[k], rtol=1e-14)


def test_names_types_and_outputs(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: [3]
  i: {shape: [3], dtype: int64}
constants:
  ones: {value: [[1, 1, 1], [1, 1, 1]], dtype: float64}
nodes:
  y: x * 1
  w: i * 1.0
  v: x * ones
  u: -(-x)
outputs: [y, w, v, u]
""")
    r = rewrite(g)
    # y and u are outputs: they keep their names as copies of x
    assert r.graph.nodes["y"].op == "identity" and r.graph.nodes["y"].inputs == ("x",)
    assert r.graph.nodes["u"].op == "identity"
    # int * 1.0 is a float: replacing it by the int would change its dtype; x * ones broadcasts
    assert r.graph.nodes["w"].op == "mul" and r.graph.nodes["v"].op == "mul"
    assert {a.rule for a in r.applied} == {"mul_one", "neg_neg"}


def test_simplifications(load_text):
    g = load("simplify")
    r = rewrite(g)
    assert [a.rule for a in r.applied] == ["fold", "cse", "reshape_reshape", "transpose_transpose", "neg_neg",
                                           "add_zero", "mul_one", "dce"]
    assert r.graph.nodes["d"].inputs == ("x",) and r.graph.nodes["d"].op == "reshape"
    assert "unused" not in r.graph.nodes and "e2" not in r.graph.nodes
    k = r.graph.tensors["k"]
    assert k.kind == "constant" and float(k.value) == 6.0 and k.type.weak
    x = np.random.default_rng(1).normal(size=(2, 3, 4))
    np.testing.assert_allclose(gtool.run(r.graph, {"x": x})["f"], gtool.run(g, {"x": x})["f"], rtol=1e-15)
    h = load_text("""
gtool: 1
inputs:
  x: [2, 3, 4]
nodes:
  t: transpose(transpose(x, perm=[1, 0, 2]), perm=[0, 2, 1])
  r: reshape(reshape(x, shape=[6, 4]), shape=[2, 3, 4])
outputs: [t, r]
""")
    r2 = rewrite(h)
    assert r2.graph.nodes["t"].attrs["perm"] == [1, 2, 0]
    assert r2.graph.nodes["r"].op == "identity"
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(gtool.run(r2.graph, {"x": x})["t"], np.transpose(np.transpose(x, (1, 0, 2)), (0, 2, 1)))


def test_rule_selection_and_priority():
    g = load("softplus")
    assert [a.rule for a in rewrite(g, "log1p").applied] == ["log1p"]
    assert ops(rewrite(g, "log1p").graph) >= {"log1p", "exp"}
    assert [a.rule for a in rewrite(g).applied] == ["softplus"]  # softplus wins over log1p at one node
    with pytest.raises(UsageError, match="unknown rule 'logsumexpp'"):
        rewrite(g, "logsumexpp")


@pytest.mark.parametrize("path", sorted(DATA.glob("*.yaml")) + [NAIVE], ids=lambda p: p.stem)
def test_idempotent_deterministic_and_valid(path, tmp_path):
    g = gtool.load(path)
    first = rewrite(g)
    text = dumps(first.graph)
    assert dumps(rewrite(gtool.load(path)).graph) == text  # byte-identical
    out = tmp_path / path.name
    out.write_text(text)
    report = check_file(str(out))
    assert report.valid, report.errors
    again = rewrite(gtool.load(out))
    assert again.applied == [] and dumps(again.graph) == text


def test_expand_lowers_logsumexp_once(tmp_path, load_text):
    g = load("logsumexp")
    r = rewrite(g, expand=True)
    assert [a.rule for a in r.applied] == ["logsumexp", "expand_logsumexp"]
    assert "logsumexp" not in ops(r.graph) and "stop_gradient" in ops(r.graph)
    out = tmp_path / "e.yaml"
    out.write_text(dumps(r.graph))
    again = gtool.load(out)
    assert rewrite(again).applied == [] and rewrite(again, expand=True).applied == []
    x = np.array([[1000.0, 0.0, -3.0, 2.0], [-np.inf] * 4, [np.inf, 0.0, 1.0, 2.0]])
    y = gtool.run(again, {"x": x})["y"]
    assert y[0] == pytest.approx(1000.0, rel=1e-15) and y[1] == -np.inf and y[2] == np.inf
    _, grads = gtool.value_and_grad(again, {"x": BIG})
    e = np.exp(np.asarray(BIG) - np.max(BIG, axis=1, keepdims=True))
    np.testing.assert_allclose(grads["x"], e / e.sum(axis=1, keepdims=True), rtol=1e-12, atol=1e-300)
    h = load_text("""
gtool: 1
inputs:
  x: [2, 3]
nodes:
  a: logsumexp(x)
  b: logsumexp(x, axis=0, keepdims=true)
outputs: [a, b]
""")
    xs = np.random.default_rng(2).normal(size=(2, 3)) * 400
    before, after = gtool.run(h, {"x": xs}), gtool.run(rewrite(h, expand=True).graph, {"x": xs})
    for k in ("a", "b"):
        np.testing.assert_allclose(after[k], before[k], rtol=1e-14)


def test_recorded_local_graphs_compute_the_root():
    r = rewrite(gtool.load(NAIVE), record=True)
    a = r.applied[0]
    assert set(a.before.tensors) >= {"s", "onehot"} and a.before.tensors["s"].kind == "input"
    s = {"s": np.array([1.0, 2.0, 0.5, -1.0])}
    np.testing.assert_allclose(gtool.run(a.after, s)[a.node], gtool.run(a.before, s)[a.node], rtol=1e-14)


def test_every_rule_is_documented():
    text = (Path(__file__).parent.parent / "docs" / "rewrites.md").read_text()
    for rule in RULES:
        assert f"`{rule.name}`" in text and rule.identity
    assert "`expand_logsumexp`" in text


# --verify ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reference", [pytest.param("mpmath", marks=needs_mpmath), "longdouble"])
@pytest.mark.parametrize("name", sorted(CASES) + ["simplify"])
def test_verify_passes_every_rule(name, reference):
    r = rewrite(load(name), record=True)
    checks = verify(r.applied, samples=24, extreme_samples=24, reference=reference)
    assert checks and all(c.passed for c in checks), [c.message for c in checks if not c.passed]


def test_verify_report_names_what_broke_in_the_original():
    r = rewrite(gtool.load(NAIVE), record=True)
    c = verify(r.applied[:1], samples=20, extreme_samples=40, reference="longdouble")[0]
    assert c.passed and c.details["original_nonfinite"] > 0
    assert c.message.startswith("log_softmax_pick at L (__L_3) (") and "softmax_logprob_naive.yaml:18)" in c.message
    assert "the original overflowed (inf/NaN) on" in c.message and "rewritten finite" in c.message
    assert c.to_json()["rule"] == "log_softmax_pick" and c.to_json()["passed"] is True


class _WrongExpm1(Expm1):
    """exp(x) - 1 = x (only to first order: a broken rule)"""

    def build(self, b, m):
        return b("identity", m["x"])


class _StillOverflows(Softplus):
    """log(1 + exp(x)) = log1p(exp(x)): the same function, still overflowing"""

    def build(self, b, m):
        return b("log1p", b("exp", m["x"]))


@pytest.mark.parametrize("reference", [pytest.param("mpmath", marks=needs_mpmath), "longdouble"])
def test_verify_catches_broken_rules(reference):
    bad = rewrite(load("expm1"), [_WrongExpm1()], record=True)
    c = verify(bad.applied, samples=20, extreme_samples=20, reference=reference)[0]
    assert not c.passed and c.details["failures"]["a"] > 0 and "[contract broken]" in c.message
    leaky = rewrite(load("softplus"), [_StillOverflows()], record=True)
    c = verify(leaky.applied, samples=20, extreme_samples=20, reference=reference)[0]
    assert not c.passed and c.details["failures"]["c_nonfinite"] > 0


def test_verify_float32_uses_a_float64_reference(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: {shape: [2, 4], dtype: float32}
nodes:
  y: log(sum(exp(x), axis=1))
outputs: [y]
""")
    c = verify(rewrite(g, record=True).applied, samples=20, extreme_samples=20)[0]
    assert c.passed and c.details["reference"] == "float64" and c.details["original_nonfinite"] > 0


# the command line ------------------------------------------------------------------------------------------------


def run_cli(capsys, *args) -> tuple[int, str, str]:
    from gtool.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_cli_rewrite_writes_and_protects(tmp_path, capsys):
    src = tmp_path / "naive.yaml"
    shutil.copy(NAIVE, src)
    before = src.read_text()
    code, out, _ = run_cli(capsys, "rewrite", str(src), "-o", str(tmp_path / "out.json"), "--format", "json")
    assert code == 0 and src.read_text() == before
    doc = json.loads(out)
    assert doc["output"] == str(tmp_path / "out.json") and doc["verify"] == []
    assert [a["rule"] for a in doc["applied"]] == ["log_softmax_pick", "cross_entropy"]
    assert all(a["line"] == 18 and a["node"] for a in doc["applied"])
    assert check_file(str(tmp_path / "out.json")).valid
    code, _, err = run_cli(capsys, "rewrite", str(src), "-o", str(src))
    assert code == 2 and "refusing to overwrite" in err and src.read_text() == before
    code, out, _ = run_cli(capsys, "rewrite", str(src), "--in-place")
    assert code == 0 and "log_softmax_pick" in out and "cross_entropy" in src.read_text()
    code, out, _ = run_cli(capsys, "rewrite", str(src))
    assert code == 0 and "no rule fired" in out
    code, _, err = run_cli(capsys, "rewrite", str(src), "--rules", "nope")
    assert code == 2 and "unknown rule 'nope'" in err


def test_cli_list_and_verify(capsys, monkeypatch):
    code, out, _ = run_cli(capsys, "rewrite", "--list")
    assert code == 0 and all(r.name in out for r in RULES) and "expand_logsumexp" in out
    code, out, _ = run_cli(capsys, "rewrite", "--list", "--format", "json")
    assert {r["name"] for r in json.loads(out)["rules"]} >= {r.name for r in RULES}
    code, out, _ = run_cli(capsys, "rewrite", str(NAIVE), "--verify", "--samples", "10", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["output"] is None and len(doc["verify"]) == 2
    assert all(v["passed"] and {"rule", "node", "line", "message"} <= set(v) for v in doc["verify"])

    import gtool.rewrite as rw
    from gtool.rewrite.checks import Check

    monkeypatch.setattr(rw, "verify", lambda applied, **kw: [Check(a, False, "broken") for a in applied])
    code, out, _ = run_cli(capsys, "rewrite", str(NAIVE), "--verify")
    assert code == 1 and "FAILED  broken" in out


def test_verify_works_without_mpmath(monkeypatch):
    import sys

    monkeypatch.setattr(sys.modules["gtool.rewrite.checks"], "have_mpmath", lambda: False)
    c = verify(rewrite(load("log1p"), record=True).applied, samples=20, extreme_samples=20)[0]
    assert c.passed and c.details["reference"] == "longdouble" and c.details["original_inaccurate"] == 20
