"""grad-check's verdict and its reports at the edges, against hand-computed differences.

`judge` is fed the values of closed-form functions (its refinement callback evaluates them
at h/4), so the expected verdict follows from Taylor series worked out here, not from the
checker. The localisation, hint and progress tests run real checks on the bad-VJP plugins.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gtool
from gtool.commands.common import load_plugin
from gtool.gradcheck.compare import Tolerances, judge
from gtool.gradcheck.localise import _pattern
from gtool.ops.registry import REGISTRY

PLUGINS = Path(__file__).resolve().parent / "plugins"
BAD_OPS = str(PLUGINS / "bad_ops.py")


@pytest.fixture(scope="module")
def plugins():
    """Load the bad-VJP plugin ops, and leave the registry as it was afterwards."""
    before = dict(REGISTRY)
    load_plugin(BAD_OPS)
    yield BAD_OPS
    REGISTRY.clear()
    REGISTRY.update(before)


def _judge_poly(A: float, B: float, h: float, tol: Tolerances, strict: bool = False):
    """judge at x = 0 for f(x) = A x^2 + B x^3 (f'(0) = 0, the analytic value given):
    one-sided differences r, l = ±A h + B h^2 (jump 2 A h), central difference B h^2,
    and B h^2 / 16 after the refinement to h/4."""
    def f(x):
        return A * x * x + B * x ** 3

    asked = []

    def refine(mask):
        asked.append(mask.copy())
        return np.array([f(h / 4)]), np.array([f(-h / 4)])

    v = judge(np.array([0.0]), 0.0, np.array([f(h)]), np.array([f(-h)]), np.array([h]), tol, strict, refine)
    return v, asked


# the refinement threshold: one-sided differences that disagree by more than twice the allowed
# error are looked at again with h/4 (`judge`'s comment); here the unrefined central
# difference is off by twice the allowed error, the refined one by 1/16 of that.


def test_noise_dominated_jump_past_twice_the_allowance_is_refined_and_passes():
    h, unit = 1e-3, 1e-10
    tol = Tolerances(h, 0.0, 0.0, unit)  # rtol = atol = 0: only the rounding allowance
    noise = 16 * unit / h  # ROUNDING * unit * max(1, |f0|) / h = 1.6e-6
    # the suspect test allows 2 * (2 * noise): a jump of 5 noise is past it
    v, asked = _judge_poly(A=2.5 * noise / h, B=2 * noise / h ** 2, h=h, tol=tol)
    assert len(asked) == 1 and asked[0].all()
    assert v.ok.all() and not v.kink.any()
    assert v.numeric[0] == pytest.approx(2 * noise / 16, rel=1e-6)  # B (h/4)^2: the refined value


def test_atol_dominated_jump_past_twice_the_allowance_is_refined_and_passes():
    h = 1e-3
    tol = Tolerances(h, 1e-5, 1e-8)  # noise ~ 3.6e-12: atol decides
    v, asked = _judge_poly(A=1.25e-5, B=2e-2, h=h, tol=tol)  # jump 2.5e-8 = 2.5 atol; c = 2e-8 = 2 atol
    assert len(asked) == 1 and v.ok.all() and not v.kink.any()
    assert v.numeric[0] == pytest.approx(2e-8 / 16, rel=1e-6)


def test_a_smooth_curve_is_not_a_kink_but_a_real_kink_is():
    """|x| at 0: one-sided slopes ±1 at every step (a kink); A x^2: the disagreement 2 A h
    shrinks to a quarter with the step (curvature). Strict mode fails only the kink."""
    h = 1e-3
    tol = Tolerances(h, 1e-5, 1e-8)
    v, _ = _judge_poly(A=1.0, B=0.0, h=h, tol=tol, strict=True)  # jump 2e-3, far past the allowance
    assert v.ok.all() and not v.kink.any()
    ax = judge(np.array([0.3]), 0.0, np.array([h]), np.array([h]), np.array([h]), tol, True,
               lambda m: (np.array([h / 4]), np.array([h / 4])))
    assert ax.kink.all() and not ax.ok.any()
    lenient = judge(np.array([0.3, 1.5]), 0.0, np.array([h, h]), np.array([h, h]), np.array([h, h]), tol, False,
                    lambda m: (np.full(2, h / 4), np.full(2, h / 4)))
    assert lenient.kink.all()
    assert list(lenient.ok) == [True, False]  # 0.3 is a subgradient of |x| at 0; 1.5 is not


# localisation -------------------------------------------------------------------------------------


def test_a_wrong_vjp_on_small_inputs_is_still_named(plugins):
    """cube_scaled's VJP is twice the truth. At h1 = x w ~ 0.02 the node's one-sided
    differences disagree (curvature 6 h1 against a slope 3 h1^2), so the localisation refines
    at h/4: the refined difference is the true slope, and the factor of 2 is named."""
    r = {res.wrt: res for res in gtool.grad_check(gtool.load(PLUGINS / "scaled.yaml"),
                                                  inputs={"w": np.array([0.04, -0.02, 0.02])})}["w"]
    assert not r.passed
    c = r.culprit
    assert c is not None and (c.node, c.op) == ("h2", "cube_scaled")
    assert "2 times the right gradient" in c.message
    h1 = np.array([0.5, -1.0, 1.5]) * np.array([0.04, -0.02, 0.02])
    assert c.numeric == pytest.approx(float(np.cos(h1[c.index[0]] ** 3) * 3 * h1[c.index[0]] ** 2), rel=1e-4)


def test_a_wrong_vjp_on_small_inputs_is_named_along_random_directions_too(plugins):
    """The same check with `full_limit` below the target's size: the node is probed along random
    directions, whose one-sided differences disagree the same way and are refined at h/4."""
    res = gtool.grad_check(gtool.load(PLUGINS / "scaled.yaml"), wrt=["w"], full_limit=2,
                           inputs={"w": np.array([0.04, -0.02, 0.02])})
    r, = res
    assert not r.passed and r.culprit is not None
    assert (r.culprit.node, r.culprit.op) == ("h2", "cube_scaled") and "random direction" in r.culprit.message


def test_second_order_failure_points_at_the_element(plugins):
    """second.yaml: L = sum(sin(x^3)) whose order-2 rule (via sq3) is off by 3 x cos(x^3) on the
    diagonal of the Hessian; unit directions scaled by max(1, |x|) make element 2 (x = 1.5)
    the worst: |1.5 * 4.5 cos(3.375)| = 6.57 against 1.49 and 1.62."""
    r, = gtool.grad_check(gtool.load(PLUGINS / "second.yaml"), order=2)
    assert not r.passed and r.index == [2] and r.direction == 2


def test_second_order_culprit_names_its_forward_node_even_with_underscores(plugins, tmp_path):
    text = (PLUGINS / "second.yaml").read_text().replace("  y: {op: cube2", "  my_cube_y: {op: cube2") \
        .replace("sin(y)", "sin(my_cube_y)")
    path = tmp_path / "second_underscored.yaml"
    path.write_text(text)
    r, = gtool.grad_check(gtool.load(path), order=2)
    assert not r.passed and r.culprit is not None
    assert (r.culprit.op, r.culprit.part_of) == ("sq3", "the backward of `my_cube_y`")


def test_pattern_hints_name_the_kind_of_mistake():
    tol = Tolerances(1e-6, 1e-5, 1e-8)
    n = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert "2 times the right gradient" in _pattern(2 * n, n, tol)
    assert "-1 times the right gradient" in _pattern(-n, n, tol)
    assert "transpose" in _pattern(n.T, n, tol)
    # near misses: a wrong value in one place is no factor; a symmetric matrix is not "transposed"
    assert _pattern(np.array([1.0, 2.0, 7.0]), np.array([1.0, 2.0, 3.0]), tol) == ""
    sym = np.array([[1.0, 2.0], [2.0, 1.0]])
    assert "transpose" not in _pattern(sym + 1.0, sym, tol)


# progress reports -----------------------------------------------------------------------------


def _progress_calls(graph, **kw) -> list[tuple[str, int, int]]:
    calls: list[tuple[str, int, int]] = []
    gtool.grad_check(graph, progress=lambda label, done, total: calls.append((label, done, total)), **kw)
    return calls


def test_full_mode_progress_is_throttled_and_never_past_the_total(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: [200]
nodes:
  L: sum(x * x)
outputs: [L]
loss: L
""")
    calls = [c for c in _progress_calls(g, mode="full") if c[0] == "x"]
    assert calls and calls[0][1] == 0 and all(0 <= d <= t == 400 for _, d, t in calls)
    assert len(calls) <= 8  # one report per 64 elements, not one per element (the bar must stay cheap)


def test_order_two_progress_ends_at_its_total(load_text):
    g = load_text("""
gtool: 1
inputs:
  x: [3]
nodes:
  L: sum(x * x * x)
outputs: [L]
loss: L
""")
    calls = [c for c in _progress_calls(g, order=2, directions=3) if c[0] == "x"]
    assert calls and all(0 <= d <= t for _, d, t in calls)
    assert calls[-1][1] == calls[-1][2]  # the last report says "done"
