"""gtool grad-check: passes right gradients, catches wrong ones, names the guilty node, knows kinks."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import gtool
from gtool import gradcheck, interp
from gtool.cli import main
from gtool.commands.common import load_plugin
from gtool.errors import UsageError
from gtool.ops.registry import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = ROOT / "graphs"
PLUGINS = ROOT / "tests" / "plugins"
BAD_OPS = str(PLUGINS / "bad_ops.py")
RELU_FREE = sorted(p for p in GRAPHS.iterdir() if p.name not in ("mlp.yaml", "relu_layer.yaml"))


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def cli_json(capsys, *args: str) -> tuple[int, dict]:
    code, out, _ = cli(capsys, *args, "--format", "json")
    return code, json.loads(out)


@pytest.fixture(scope="module", autouse=True)
def _restore_registry():
    """The plugin ops these tests load must not leak into other test modules' registry."""
    before = dict(REGISTRY)
    yield
    REGISTRY.clear()
    REGISTRY.update(before)


@pytest.fixture(scope="module")
def plugins():
    load_plugin(BAD_OPS)
    return BAD_OPS


def check(path, **kw) -> list[gradcheck.Result]:
    return gtool.grad_check(gtool.load(path), **kw)


# the bundled graphs ----------------------------------------------------------------------------


def test_every_bundled_graph_passes(capsys):
    code, doc = cli_json(capsys, "grad-check", GRAPHS)
    assert code == 0 and doc["passed"] is True
    assert set(doc) == {"passed", "results"}
    paths = {r["path"] for r in doc["results"]}
    assert paths == {str(p) for p in GRAPHS.iterdir()}
    for r in doc["results"]:
        assert {"path", "wrt", "max_abs_error", "max_rel_error", "passed"} <= set(r)
        assert r["passed"] and r["dtype"] == "float64" and r["max_rel_error"] < 1e-5
    mlp = {r["wrt"]: r for r in doc["results"] if r["path"].endswith("mlp.yaml")}
    assert mlp["W1"]["mode"] == "fast" and mlp["b1"]["mode"] == "full"  # 100352 > 2000 >= 128 elements
    assert mlp["W1"]["declared_dtype"] == "float32"  # checked in float64 all the same


def test_text_report_says_float64_and_summarises(capsys):
    code, out, err = cli(capsys, "grad-check", GRAPHS / "fanout.yaml")
    assert code == 0
    assert "in float64 (every graph is cast to float64" in out
    assert "1 file, 2 checks: 2 passed, 0 failed" in err
    assert "\r" not in err  # no progress bar when stderr is not a terminal


def test_against_forward_passes_on_bundled_graphs(capsys):
    code, doc = cli_json(capsys, "grad-check", GRAPHS, "--against", "forward", "--dim", "batch=4")
    assert code == 0
    for r in doc["results"]:
        assert r["mode"].startswith("forward") and r["rtol"] == 1e-12 and r["max_rel_error"] < 1e-12


@pytest.mark.parametrize("path", RELU_FREE, ids=lambda p: p.name)
def test_second_order_passes_on_relu_free_graphs(path):
    for r in check(path, order=2):
        assert r.passed and r.mode == "order2", r


def test_second_order_of_fanout_is_the_closed_form():
    # L = (x + y) y + (x + y)^2: d2L/dx2 = 2, d2L/dy2 = 4; the direction of a scalar is max(1, |v|)
    res = {r.wrt: r for r in check(GRAPHS / "fanout.yaml", order=2)}  # x = 1, y = 2
    assert res["x"].analytic == pytest.approx(2 * 1) and res["y"].analytic == pytest.approx(4 * 2)
    assert res["x"].numeric == pytest.approx(2, rel=1e-6)


def test_second_order_cli_on_fanout(capsys):
    code, doc = cli_json(capsys, "grad-check", GRAPHS / "fanout.yaml", "--order", "2")
    assert code == 0 and all(r["order"] == 2 for r in doc["results"])


def test_second_order_finds_a_rule_only_order_two_uses(plugins):
    """cube2's VJP is right but built from sq3, whose own VJP is wrong: order 1 passes, order 2
    fails and blames the sq3 node of y's backward."""
    assert all(r.passed for r in check(PLUGINS / "second.yaml"))
    r, = check(PLUGINS / "second.yaml", order=2)
    assert not r.passed and r.index is not None and r.direction is not None
    c = r.culprit
    assert (c.op, c.plugin, c.line, c.part_of) == ("sq3", BAD_OPS, 7, "the backward of `y`")
    assert "0.5 times the right gradient" in c.message


# wrong VJPs are caught and localised -----------------------------------------------------------------


WRONG = {
    # graph: (target, node, op, line, words in the message)
    "scaled.yaml": ("w", "h2", "cube_scaled", 10, "2 times the right gradient"),
    "transposed.yaml": ("A", "y", "matmul_t", 9, "transpose of the right gradient"),
    "nosum.yaml": ("b", "y", "bias_add_nosum", 11, "shape [4, 2] for input `b` of shape [2]"),
    "wrong_axis.yaml": ("b", "y", "bias_add_wrong_axis", 9, "for input `b`, element [2]"),
}


@pytest.mark.parametrize("name", sorted(WRONG))
@pytest.mark.parametrize("how", [{}, {"mode": "fast"}, {"against": "forward"}], ids=["full", "fast", "forward"])
def test_wrong_vjp_fails_and_names_the_node(plugins, name, how):
    target, node, op, line, words = WRONG[name]
    res = {r.wrt: r for r in check(PLUGINS / name, **how)}
    r = res[target]
    assert not r.passed
    c = r.culprit
    assert c is not None and (c.node, c.op, c.line) == (node, op, line)
    assert c.plugin == BAD_OPS and c.path.endswith(name)
    assert words in c.message
    assert c.text().startswith(f"the backward of `{node}` (op `{op}`, plugin {BAD_OPS}, {c.path}:{line}) is wrong: ")
    for other, o in res.items():  # targets whose gradient avoids the wrong rule still pass
        if other != target:
            assert o.passed and o.culprit is None


def test_worst_element_is_reported(plugins):
    r, = check(PLUGINS / "scaled.yaml")
    # L = sum(sin((x w)^3)); the rule doubles dL/dh1, so every element is off by a factor 2
    assert r.index is not None and r.analytic == pytest.approx(2 * r.numeric, rel=1e-6)
    x, w = np.array([0.5, -1.0, 1.5]), np.array([1.0, 0.5, -0.25])
    h = x * w
    true = np.cos(h ** 3) * 3 * h ** 2 * x
    assert r.numeric == pytest.approx(true[tuple(r.index)], rel=1e-6)
    assert r.index == [int(np.argmax(np.abs(true)))]  # the worst is where the (doubled) gradient is largest
    assert r.max_abs_error == pytest.approx(np.max(np.abs(true)), rel=1e-6)


def test_transposed_rule_reports_its_element(plugins):
    r, = check(PLUGINS / "transposed.yaml")
    assert r.culprit.index is not None and r.culprit.input == "A"
    assert r.culprit.analytic != pytest.approx(r.culprit.numeric)


@pytest.mark.parametrize("name", ["cube_ok.yaml", "bias_ok.yaml"])
def test_correct_plugin_ops_pass(plugins, capsys, name):
    code, doc = cli_json(capsys, "grad-check", "--plugin", BAD_OPS, PLUGINS / name)
    assert code == 0 and doc["passed"]


def test_cli_failure_report_names_the_node(plugins, capsys):
    code, out, _ = cli(capsys, "grad-check", "--plugin", BAD_OPS, PLUGINS / "scaled.yaml")
    assert code == 1
    assert f"FAIL {PLUGINS / 'scaled.yaml'} w: max abs error" in out
    assert f"the backward of `h2` (op `cube_scaled`, plugin {BAD_OPS}, {PLUGINS / 'scaled.yaml'}:10) is wrong" in out


def test_a_broken_builtin_rule_is_blamed(monkeypatch):
    """Not only plugins: a wrong built-in VJP (sin, scaled) is found the same way."""
    sin = REGISTRY["sin"]

    def bad(b, node, g):
        return [b("mul", b.const(3), b("mul", g, b("cos", node.inputs[0])))]

    monkeypatch.setattr(sin, "vjp", bad)
    res = {r.wrt: r for r in check(GRAPHS / "sin_chain.yaml")}
    assert not res["x"].passed and not res["y"].passed
    c = res["x"].culprit
    assert (c.node, c.op, c.plugin, c.line) == ("w", "sin", None, 19)
    assert "3 times the right gradient" in c.message


@pytest.mark.parametrize("path", sorted(GRAPHS.iterdir()), ids=lambda p: p.name)
def test_localisation_blames_nothing_on_right_graphs(path):
    g = gtool.interp.at_precision(gtool.load(path), "float64")
    wrt, loss = gtool.autodiff.check_targets(g, None, None)
    prob = gradcheck._Problem(g, loss, wrt, None, 0, None, None, None)
    assert gradcheck.find_culprit(prob, gradcheck.DEFAULTS["float64"]) is None


# kinks ----------------------------------------------------------------------------------------------


KINK_GRAPHS = {
    "relu": ("x: {shape: [3], value: [0.0, 1.0, -1.0]}", "L: sum(relu(x) * 2)"),
    "abs": ("x: {shape: [3], value: [0.0, 1.0, -1.0]}", "L: sum(abs(x))"),
    "maximum": ("x: {shape: [2], value: [1.0, 2.0]}\n  y: {shape: [2], value: [1.0, 0.5]}", "L: sum(maximum(x, y) * 3)"),
    "max": ("x: {shape: [3], value: [2.0, 2.0, 1.0]}", "L: max(x) * 2"),
    "min": ("x: {shape: [3], value: [0.5, 2.0, 0.5]}", "L: min(x)"),
    "where": ("x: {shape: [2], value: [0.0, 1.0]}", "L: sum(where(x > 0, x * 2, x * 3))"),
}


def kink_graph(load_text, name):
    inputs, loss = KINK_GRAPHS[name]
    return load_text(f"gtool: 1\ninputs:\n  {inputs}\nnodes:\n  {loss}\noutputs: [L]\nloss: L\n")


@pytest.mark.parametrize("name", sorted(KINK_GRAPHS))
def test_kinks_pass_by_default_and_fail_when_strict(load_text, name):
    g = kink_graph(load_text, name)
    for r in gtool.grad_check(g, wrt=["x"]):
        assert r.passed and r.kinks >= 1, r
        assert [0] in r.kink_at
        assert r.max_abs_error < 1e-6  # accepted kinks are not counted as errors
    for r in gtool.grad_check(g, wrt=["x"], strict=True):
        assert not r.passed and r.kink_failure and r.culprit is None


def test_kinks_cli(capsys):
    path = PLUGINS / "kinks.yaml"
    code, doc = cli_json(capsys, "grad-check", path)
    assert code == 0 and {r["wrt"]: r["kinks"] for r in doc["results"]} == {"x": 3, "y": 2}
    code, out, _ = cli(capsys, "grad-check", path, "--strict")
    assert code == 1 and "at a kink (left and right differences disagree) at [0], [1], [3]: --strict counts them" in out


def test_a_wrong_value_at_a_kink_still_fails(load_text, monkeypatch):
    """Outside [left, right] is no subgradient: relu' = 2 at 0 must fail even without --strict."""
    relu = REGISTRY["relu"]
    monkeypatch.setattr(relu, "vjp", lambda b, node, g: [b("mul", g, b.const(2))])
    r, = gtool.grad_check(kink_graph(load_text, "relu"), wrt=["x"])
    assert not r.passed


def test_random_inputs_are_kept_away_from_kinks(load_text):
    g = load_text("gtool: 1\ninputs:\n  x: {shape: [2000]}\nnodes:\n  L: sum(relu(x)) + sum(abs(x))\n"
                  "outputs: [L]\nloss: L\n")
    r, = gtool.grad_check(g, strict=True, mode="full")
    assert r.passed and r.kinks == 0
    values = {"x": np.array([0.0, 1e-4, -1e-5, 0.5])}
    gradcheck._away_from_kinks(g, ["x"], values)
    assert list(values["x"]) == [gradcheck.KINK_MARGIN, gradcheck.KINK_MARGIN, -gradcheck.KINK_MARGIN, 0.5]


# modes, cost, options ---------------------------------------------------------------------------


def test_full_mode_costs_two_evaluations_per_element():
    r = check(GRAPHS / "linear_mse.yaml", mode="full")[0]
    assert r.size == 6 and r.evaluations == 2 * 6 + 2  # plus L(x) and the gradient run, shared


def test_fast_mode_on_a_million_elements_costs_a_handful_of_runs(load_text, monkeypatch):
    g = load_text("gtool: 1\ninputs:\n  x: {shape: [1000, 2], dtype: float32}\n"
                  "params:\n  W: {shape: [1000, 1000], dtype: float32, init: {normal: {std: 0.03}}}\n"
                  "nodes:\n  L: mean(tanh(W @ x) ** 2) + 0.001 * sum(W * W)\noutputs: [L]\nloss: L\n")
    runs = []  # every compiled plan run, counted outside grad-check's own bookkeeping (no clock)
    real_run = interp.Program.run
    monkeypatch.setattr(interp.Program, "run", lambda self, *a, **k: runs.append(1) or real_run(self, *a, **k))
    r, = gtool.grad_check(g)
    assert r.passed and r.mode == "fast" and r.size == 1_000_000
    assert r.evaluations <= 2 * 4 + 2 + 8  # 2 per direction (+ refinements), never per element
    assert r.evaluations <= len(runs) <= 2 * 4 + 2 + 8


def test_fast_mode_catches_a_wrong_rule_on_a_big_tensor(load_text, monkeypatch):
    tanh = REGISTRY["tanh"]
    monkeypatch.setattr(tanh, "vjp", lambda b, node, g: [b("mul", g, b("sub", b.const(1), node.name))])
    g = load_text("gtool: 1\nparams:\n  W: {shape: [300, 300], init: {normal: {std: 0.5}}}\n"
                  "nodes:\n  L: sum(tanh(W))\noutputs: [L]\nloss: L\n")
    r, = gtool.grad_check(g)
    assert not r.passed and r.mode == "fast" and r.direction is not None
    assert r.culprit.op == "tanh" and "along a random direction" in r.culprit.message


def test_tolerance_options_reach_the_check(plugins):
    r, = check(PLUGINS / "scaled.yaml", rtol=1.0)  # a factor 2 is within 100% relative error
    assert r.passed and r.tolerances.rtol == 1.0
    r, = check(GRAPHS / "exercise_vw.yaml", eps=1e-4, atol=0.0)
    assert r.passed and (r.tolerances.eps, r.tolerances.atol) == (1e-4, 0.0)


def test_float32_check_warns(capsys):
    code, out, err = cli(capsys, "grad-check", GRAPHS / "linear_mse.yaml", "--dtype", "float32")
    assert code == 0 and "warning: checking in float32" in err and "in float32" in out


def test_data_options_are_used(capsys):
    code, doc = cli_json(capsys, "grad-check", GRAPHS / "fanout.yaml", "--input", "x=2.0", "--input", "y=-1.0")
    assert code == 0
    res = {r["wrt"]: r for r in doc["results"]}
    assert res["x"]["analytic"] == pytest.approx(2 * 2 + 3 * -1)  # dL/dx = 2x + 3y
    assert res["y"]["analytic"] == pytest.approx(3 * 2 + 4 * -1)  # dL/dy = 3x + 4y


def test_wrt_and_of(capsys):
    code, doc = cli_json(capsys, "grad-check", GRAPHS / "linear_mse.yaml", "--wrt", "x,W", "--of", "L")
    assert code == 0 and [r["wrt"] for r in doc["results"]] == ["x", "W"]


# outputs and exit codes -----------------------------------------------------------------------------


def test_progress_bar_only_on_a_terminal(capsys):
    from gtool.commands.gradcheck import _Progress

    for enabled in (False, True):
        bar = _Progress(enabled)
        bar.start("g.yaml")
        bar.t0 -= 1.0  # a check that has run for a second
        bar("W", 5, 10)
        bar.done()
        err = capsys.readouterr().err
        assert ("g.yaml W [###############...............] 5/10" in err) is enabled


def test_junit_report(plugins, capsys, tmp_path):
    junit = tmp_path / "report.xml"
    code, _, _ = cli(capsys, "grad-check", "--plugin", BAD_OPS, PLUGINS / "scaled.yaml", GRAPHS / "fanout.yaml",
                     "--junit", junit)
    assert code == 1
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "3" and root.get("failures") == "1"
    cases = root.findall("./testsuite/testcase")
    assert [(c.get("classname").rsplit("/", 1)[-1], c.get("name")) for c in cases] == \
        [("scaled.yaml", "w"), ("fanout.yaml", "x"), ("fanout.yaml", "y")]
    failure = cases[0].find("failure")
    assert "max abs error" in failure.get("message") and "the backward of `h2`" in failure.text
    assert cases[1].find("failure") is None


def test_invalid_file_is_a_failed_result(capsys):
    bad = ROOT / "tests" / "data" / "invalid" / "cycle.yaml"
    code, doc = cli_json(capsys, "grad-check", bad, GRAPHS / "fanout.yaml")
    assert code == 1 and doc["passed"] is False
    first = doc["results"][0]
    assert first["path"] == str(bad) and first["passed"] is False and first["mode"] == "invalid"
    assert first["errors"][0]["code"] == "cycle"
    assert all(r["passed"] for r in doc["results"][1:])


@pytest.mark.parametrize("args", [
    ["--wrt", "nope"],  # unknown target
    ["--wrt", "u"],  # a node, not a tensor
    ["--mode", "slow"],  # bad choice
    ["--eps", "0"],
    ["--rtol", "-1"],
    ["--order", "2", "--against", "forward"],
])
def test_usage_errors_exit_2(capsys, args):
    code, _, err = cli(capsys, "grad-check", GRAPHS / "fanout.yaml", *args)
    assert code == 2 and err


def test_missing_file_exits_2(capsys):
    code, _, err = cli(capsys, "grad-check", ROOT / "no-such-graph.yaml")
    assert code == 2 and "no such file" in err


def test_library_rejects_bad_options():
    with pytest.raises(UsageError):
        check(GRAPHS / "fanout.yaml", mode="sometimes")


def test_non_finite_loss_fails_cleanly(load_text):
    g = load_text("gtool: 1\ninputs:\n  x: {shape: [2], value: [-1.0, 2.0]}\nnodes:\n  L: sum(log(x))\n"
                  "outputs: [L]\nloss: L\n")
    r, = gtool.grad_check(g)
    assert not r.passed and "nan" in r.message


def test_an_infinite_derivative_is_reported_as_a_singular_point_not_a_wrong_rule(tmp_path):
    import gtool
    from gtool.gradcheck import grad_check

    p = tmp_path / "sq0.yaml"
    p.write_text("gtool: 1\ninputs:\n  x: {shape: [2], value: [0.0, 1.0]}\nnodes:\n  L: sum(sqrt(x))\n"
                 "outputs: [L]\nloss: L\n")
    (res,) = grad_check(gtool.load(p))
    assert not res.passed
    assert "infinite at element [0]" in res.message
    assert res.culprit is None


# the tolerance, pinned from both sides (docs/grad-check.md, "How close is close enough") -----------------

NEAR = """gtool: 1
inputs:
  x: [6]
nodes:
  L: sum(sin(OP(x)))
outputs: [L]
loss: L
"""
X_NEAR = np.array([0.3, -0.7, 1.1, 0.45, -1.3, 0.8])


def _cube_off_by(rel: float, name: str) -> str:
    """Register `name`: x^3 with a right JVP and a VJP (1 + rel) times the truth."""
    from gtool.ops.registry import OpDef, register

    def vjp(b, node, g):
        return [b("mul", g, b("mul", b.const(3.0 * (1.0 + rel)), b("square", node.inputs[0])))]

    def jvp(b, node, ts):
        return None if ts[0] is None else b("mul", ts[0], b("mul", b.const(3.0), b("square", node.inputs[0])))

    register(OpDef(name, 1, lambda ctx, types, attrs: types[0], lambda x: x ** 3, vjp=vjp, jvp=jvp,
                   doc=f"x^3 whose VJP is off by {rel:g} (relative)", plugin=__file__))
    return name


def _near(load_text, rel: float, name: str) -> gtool.Graph:
    return load_text(NEAR.replace("OP", _cube_off_by(rel, name)))


@pytest.mark.parametrize("how", [{}, {"mode": "fast"}, {"mode": "fast", "directions": 1}, {"against": "forward"}],
                         ids=["full", "fast", "fast-1", "forward"])
def test_a_vjp_five_parts_in_ten_thousand_off_fails(load_text, how):
    """0.05% is 50 times the float64 rtol (1e-5): every mode must fail it, and name the op.
    A pass rule loosened 100x (rtol 1e-3) would let it through."""
    r, = gtool.grad_check(_near(load_text, 5e-4, "cube_near"), {"x": X_NEAR}, **how)
    assert not r.passed, r.to_json()
    assert r.max_rel_error == pytest.approx(5e-4, rel=0.05)  # the error is measured, not guessed
    assert r.culprit is not None and r.culprit.op == "cube_near"


def test_the_tolerance_is_what_the_docs_say():
    """The documented numbers: a change here must come with docs/grad-check.md."""
    f64, f32 = gradcheck.DEFAULTS["float64"], gradcheck.DEFAULTS["float32"]
    assert (f64.eps, f64.rtol, f64.atol) == (1e-6, 1e-5, 1e-8)
    assert (f32.eps, f32.rtol, f32.atol) == (1e-3, 1e-2, 1e-3)
    assert gradcheck.FORWARD_RTOL == 1e-12
    assert gradcheck.compare.ROUNDING == 16


@pytest.mark.parametrize("how", [{}, {"mode": "fast"}], ids=["full", "fast"])
def test_rounding_level_differences_pass(load_text, how):
    """A VJP that differs from the truth by 1e-9 relative (reassociated arithmetic, a
    rounded constant) is right for every purpose finite differences can judge: it passes.
    Forward mode, exact up to rounding (rtol 1e-12), still sees it."""
    g = _near(load_text, 1e-9, "cube_rounded")
    r, = gtool.grad_check(g, {"x": X_NEAR}, **how)
    assert r.passed and r.max_rel_error < 1e-7, r.to_json()
    r, = gtool.grad_check(g, {"x": X_NEAR}, against="forward")
    assert not r.passed and 5e-10 < r.max_rel_error < 2e-9


def test_truncation_error_of_a_correct_rule_passes(load_text):
    """sin(3000 x) at |x| ~ 5: the step is h = 1e-6 |x|, and the central difference's
    truncation error h^2 |f'''| / (6 |f'|) = (3000 h)^2 / 6 is ~5e-5 of the derivative (~3e-6
    after the curvature refinement at h/4). The rule is right and must pass; an rtol
    tightened 10x (1e-6) would fail it."""
    g = load_text("gtool: 1\ninputs:\n  x: [4]\nnodes:\n  L: sum(sin(3000 * x))\noutputs: [L]\nloss: L\n")
    x = np.array([3.3, -4.1, 5.7, 6.05])
    r, = gtool.grad_check(g, {"x": x})
    assert r.passed and 1e-6 < r.max_rel_error < 5e-6, r.to_json()
    tight, = gtool.grad_check(g, {"x": x}, rtol=1e-6, localise=False)
    assert not tight.passed  # the error is real truncation error: the rtol is what absorbs it


def test_rounding_noise_of_a_large_loss_passes(load_text):
    """L = 1e6 + sum(x²): the difference L(x+h) - L(x-h) loses ~1e6 * 1.1e-16 / 1e-6 = 1e-4
    of the derivative (about 2) to rounding, 5e-5 relative, more than rtol. The noise term
    (16 ulp(|L|) / h) absorbs it; without it a right rule fails, and a VJP 0.05% off still
    fails with it (the noise allows ~3.5e-3 absolute: only errors below that hide)."""
    g = load_text("gtool: 1\ninputs:\n  x: [5]\nnodes:\n  L: 1000000 + sum(x * x)\noutputs: [L]\nloss: L\n")
    x = np.array([0.9, -1.1, 1.3, 0.7, -0.95])
    r, = gtool.grad_check(g, {"x": x})
    assert r.passed, r.to_json()
    assert r.max_abs_error > 1e-6  # the noise is really there: the term is needed


def test_float32_checks_see_five_percent_not_five_hundredths(load_text):
    """float32 keeps about three digits (rtol 1e-2): a rule 5% off fails, 0.05% off passes
    (which is why checks run in float64 by default)."""
    r, = gtool.grad_check(_near(load_text, 5e-2, "cube_far32"), {"x": X_NEAR}, dtype="float32", localise=False)
    assert not r.passed
    r, = gtool.grad_check(_near(load_text, 5e-4, "cube_near32"), {"x": X_NEAR}, dtype="float32")
    assert r.passed


def test_order_two_refines_strong_curvature_and_passes(load_text):
    """Order 2 on sin(300 x): the gradient's one-sided differences disagree by curvature,
    which sends every direction through the refinement at a quarter of the step; the refined
    difference must still match H d (a refinement at a wrong step would not)."""
    g = load_text("gtool: 1\ninputs:\n  x: [3]\nnodes:\n  L: sum(sin(300 * x))\noutputs: [L]\nloss: L\n")
    r, = gtool.grad_check(g, {"x": np.array([0.31, -0.52, 0.77])}, order=2)
    assert r.passed and r.max_rel_error < 1e-5 and r.kinks == 0, r.to_json()
