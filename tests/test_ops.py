"""Every op in the registry: shape rule, forward, VJP and JVP, checked against each other.

Parametrized from `gtool.ops.REGISTRY`, with inputs from tests/op_cases.py, so an op added
without test cases fails `test_every_op_has_cases`. Each case becomes a one-node graph written
as YAML and loaded, then: (a) the inferred type is the forward result's; the forward equals an
independent reference; (b) the VJP (`value_and_grad` of L = sum(out * R)) equals central
differences in float64; (c) the JVP graph run on random tangents equals directional
differences; (d) <R, J t> == <J^T R, t> between the two. Kinks and extreme inputs follow.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pytest
from op_cases import CASES, NON_DIFFERENTIABLE, REFERENCE, Case, F, central_diff, directional_diff

import gtool
from gtool.interp import at_precision
from gtool.ops import REGISTRY
from gtool.validate import types_of


def _builtin(op) -> bool:
    """Ops of gtool itself (not plugins, nor test ops other test modules may register)."""
    return op.plugin is None and op.infer.__module__.startswith("gtool.")


BUILTIN_OPS = sorted(n for n, op in REGISTRY.items() if _builtin(op))
ALL_CASES = [c for op in BUILTIN_OPS for c in CASES.get(op, [])]
DIFF_CASES = [c for c in ALL_CASES if c.differentiable]
NO_GRAD_CASES = [c for c in ALL_CASES if c.op in NON_DIFFERENTIABLE and c.float_names()]


def _ids(cases):
    return [c.id for c in cases]


# the per-case graphs and data, built once --------------------------------------------------


@dataclass
class Setup:
    case: Case
    fwd: gtool.Graph  # out = op(a0, ...)
    lossg: gtool.Graph  # ... plus L = sum(out * R)
    x: dict[str, np.ndarray]
    R: np.ndarray
    wrt: list[str]

    def out(self, values) -> np.ndarray:
        return gtool.run(self.fwd, values)["out"]

    def phi(self, values) -> float:
        """The scalar whose gradient the VJP gives, computed in float64 outside gtool."""
        return float(np.sum(np.asarray(self.out(values), np.float64) * self.R))


_SETUPS: dict[str, Setup] = {}


def prepared(case: Case, load_text) -> Setup:
    if case.id not in _SETUPS:
        fwd = load_text(case.graph_text())
        t = types_of(fwd)["out"]
        shape = tuple(d.evaluate({}) for d in t.shape)
        lossg = load_text(case.graph_text({"R": shape}, loss="sum(out * R)"))
        rng = np.random.default_rng([1, zlib.crc32(case.id.encode())])  # the same R whatever runs first
        _SETUPS[case.id] = Setup(case, fwd, lossg, case.arrays(), rng.standard_normal(shape), case.float_names())
    return _SETUPS[case.id]


# the registry is covered -------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_OPS)
def test_every_op_has_cases(name):
    op = REGISTRY[name]
    assert CASES.get(name), f"op '{name}' has no test cases in tests/op_cases.py"
    assert name in REFERENCE, f"op '{name}' has no reference forward in tests/op_cases.py"
    if name in NON_DIFFERENTIABLE:
        assert op.vjp is None and op.jvp is None, f"{name} is non-differentiable by design but has rules"
    else:
        assert op.vjp is not None and op.jvp is not None, f"op '{name}' lacks a VJP or JVP rule"
        assert any(c.differentiable for c in CASES[name]), f"no case differentiates op '{name}'"
    if op.group.startswith(("elementwise", "comparison")):
        assert len(op.domain) == op.arity and all(lo < hi for lo, hi in op.domain)


def test_case_ids_are_unique():
    ids = _ids(ALL_CASES)
    assert len(ids) == len(set(ids))


# (a) shape rule and forward ------------------------------------------------------------------


@pytest.mark.parametrize("case", ALL_CASES, ids=_ids(ALL_CASES))
def test_shape_rule_and_forward(case, load_text):
    s = prepared(case, load_text)
    out = s.out(s.x)
    t = types_of(s.fwd)["out"]
    assert out.shape == tuple(d.evaluate({}) for d in t.shape)
    assert str(out.dtype) == t.dtype
    want = np.asarray(REFERENCE[case.op](*s.x.values(), **case.attrs))
    assert out.shape == want.shape
    if out.dtype.kind == "f":
        rtol = 1e-12 if out.dtype == np.float64 else 1e-6
        np.testing.assert_allclose(out, want, rtol=rtol, atol=rtol)
    else:
        np.testing.assert_array_equal(out, want)


# (b) VJP, (c) JVP, (d) the dot-product test -------------------------------------------------


def _close(got, want, tol, what):
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


@pytest.mark.parametrize("case", DIFF_CASES, ids=_ids(DIFF_CASES))
def test_vjp_matches_finite_differences(case, load_text):
    s = prepared(case, load_text)
    loss, grads = gtool.value_and_grad(s.lossg, {**s.x, "R": s.R}, wrt=s.wrt)
    assert loss == pytest.approx(s.phi(s.x), rel=1e-6)
    fd = central_diff(s.phi, s.x, s.wrt, case.eps)
    for n in s.wrt:
        assert grads[n].shape == s.x[n].shape and grads[n].dtype == s.x[n].dtype, n
        _close(grads[n], fd[n], case.tol, f"d/d{n}")


def _tangents(s: Setup) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {n: rng.standard_normal(s.x[n].shape).astype(s.x[n].dtype) for n in s.wrt}


def _jvp(s: Setup, t: dict[str, np.ndarray]) -> np.ndarray:
    tg = gtool.jvp(s.fwd, wrt=s.wrt, of=["out"])
    return gtool.run(tg, {**s.x, **{f"__tan_{n}": v for n, v in t.items()}})["__tan_out"]


@pytest.mark.parametrize("case", DIFF_CASES, ids=_ids(DIFF_CASES))
def test_jvp_matches_finite_differences(case, load_text):
    s = prepared(case, load_text)
    t = _tangents(s)
    jt = _jvp(s, t)
    out = s.out(s.x)
    assert jt.shape == out.shape and jt.dtype == out.dtype
    _close(jt, directional_diff(s.out, s.x, t, case.eps), case.tol, "J t")


@pytest.mark.parametrize("case", DIFF_CASES, ids=_ids(DIFF_CASES))
def test_jvp_and_vjp_are_adjoint(case, load_text):
    s = prepared(case, load_text)
    t = _tangents(s)
    r_jt = float(np.sum(s.R * _jvp(s, t)))
    _, grads = gtool.value_and_grad(s.lossg, {**s.x, "R": s.R}, wrt=s.wrt)
    jtr_t = sum(float(np.sum(grads[n].astype(np.float64) * t[n])) for n in s.wrt)
    tol = 1e-10 if case.tol <= 1e-6 else 1e-5
    assert r_jt == pytest.approx(jtr_t, rel=tol, abs=tol)


@pytest.mark.parametrize("case", NO_GRAD_CASES, ids=_ids(NO_GRAD_CASES))
def test_no_gradient_flows_through_non_differentiable_ops(case, load_text):
    s = prepared(case, load_text)
    assert REGISTRY[case.op].vjp is None and REGISTRY[case.op].jvp is None
    _, grads = gtool.value_and_grad(s.lossg, {**s.x, "R": s.R}, wrt=s.wrt)
    for n in s.wrt:
        assert grads[n].shape == s.x[n].shape
        assert not np.any(grads[n]), n
    assert not np.any(_jvp(s, _tangents(s)))


# kinks: the subgradients gtool promises ---------------------------------------------------------


def _grad_of_sum(load_text, op, arrays, attrs=None, weights=None):
    """Gradients of sum(op(...) * w) at exactly the given inputs (w = 1 unless given), checked
    to agree with forward mode, which must take the same subgradient."""
    case = Case(op, tuple(F(*np.shape(a)) for a in arrays), attrs or {})
    feed = {n: np.asarray(a, float) for n, a in zip(case.names(), arrays)}
    shape = gtool.run(load_text(case.graph_text()), feed)["out"].shape
    g = load_text(case.graph_text({"R": shape}, loss="sum(out * R)"))
    feed["R"] = np.ones(shape) if weights is None else weights
    _, grads = gtool.value_and_grad(g, feed, wrt=case.names())
    _, fwd = gtool.forward_mode_grad(g, feed, wrt=case.names())
    for n in case.names():
        np.testing.assert_allclose(fwd[n], grads[n], rtol=1e-12, atol=1e-12)
    return [grads[n] for n in case.names()]


def test_relu_and_abs_have_zero_gradient_at_zero(load_text):
    (g,) = _grad_of_sum(load_text, "relu", [[-1.0, 0.0, 2.0]])
    np.testing.assert_array_equal(g, [0.0, 0.0, 1.0])
    (g,) = _grad_of_sum(load_text, "abs", [[-1.0, 0.0, 2.0]])
    np.testing.assert_array_equal(g, [-1.0, 0.0, 1.0])


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_and_minimum_split_ties_evenly(load_text, op):
    gx, gy = _grad_of_sum(load_text, op, [[1.0, 2.0, -1.0], [1.0, 0.0, 3.0]])
    big = op == "maximum"
    np.testing.assert_array_equal(gx, [0.5, 1.0 if big else 0.0, 0.0 if big else 1.0])
    np.testing.assert_array_equal(gy, [0.5, 0.0 if big else 1.0, 1.0 if big else 0.0])
    gx, gy = _grad_of_sum(load_text, op, [[1.0, 1.0, 0.0 if big else 2.0], 1.0])  # broadcast tie
    np.testing.assert_array_equal(gx, [0.5, 0.5, 0.0])
    assert gy == 2.0


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_and_min_reductions_split_ties_evenly(load_text, op):
    sign = 1.0 if op == "max" else -1.0
    x = sign * np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    (g,) = _grad_of_sum(load_text, op, [x], {"axis": 1})
    np.testing.assert_allclose(g, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-15)
    (g,) = _grad_of_sum(load_text, op, [x])
    np.testing.assert_allclose(g, [[0, 0.5, 0.5], [0, 0, 0]], rtol=1e-15)
    (g,) = _grad_of_sum(load_text, op, [x], {"axis": 0, "keepdims": True}, weights=np.array([[1.0, 2.0, 4.0]]))
    np.testing.assert_allclose(g, [[0, 2, 4], [1, 0, 0]], rtol=1e-15)


# stability on extreme inputs -------------------------------------------------------------------


def _value_and_grad(load_text, case: Case, feed: dict, dtype: str = "float64"):
    """out and d sum(out)/d(float inputs), with every float in the graph at `dtype`."""
    fwd = at_precision(load_text(case.graph_text()), dtype)
    out = gtool.run(fwd, feed)["out"]
    g = at_precision(load_text(case.graph_text({"R": out.shape}, loss="sum(out * R)")), dtype)
    _, grads = gtool.value_and_grad(g, {**feed, "R": np.ones(out.shape)}, wrt=case.float_names())
    return out, grads


def _lse(x):
    m = np.max(x)
    return m + np.log(np.sum(np.exp(np.asarray(x, np.float64) - m)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shift", [1000.0, -1000.0])
def test_stable_ops_on_huge_logits(load_text, shift, dtype):
    base = np.array([[0.0, -1.0, -2.0, 0.5], [3.0, 1.0, 1.0, -4.0]])
    x = (base + shift).astype(dtype)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    p = np.exp(base - base.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    lse = np.array([_lse(r) for r in base]) + shift
    expect = {
        "logsumexp": (lse, p),
        "log_softmax": (base - (lse - shift)[:, None], 1 - 4 * p),  # d sum(log_softmax)/dx = 1 - n p
        "softmax": (p, np.zeros_like(p)),  # sum(softmax) = 1 along the axis
    }
    for op, (want, want_grad) in expect.items():
        attrs = {"axis": -1} if op != "logsumexp" else {"axis": 1}
        out, grads = _value_and_grad(load_text, Case(op, (F(2, 4, dtype=dtype),), attrs), {"a0": x}, dtype)
        assert out.dtype == dtype and grads["a0"].dtype == dtype
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(grads["a0"])), op
        np.testing.assert_allclose(out, want, rtol=rtol, atol=rtol, err_msg=op)
        np.testing.assert_allclose(grads["a0"], want_grad, rtol=rtol, atol=rtol * 4, err_msg=op)
    for red in ("mean", "sum", "none"):
        t = np.array([1, 3])
        case = Case("cross_entropy", (F(2, 4, dtype=dtype), F(2, dtype="int64", kind="int")), {"reduction": red})
        out, grads = _value_and_grad(load_text, case, {"a0": x, "a1": t}, dtype)
        per = (lse - shift) - base[[0, 1], t]
        want = {"mean": per.mean(), "sum": per.sum(), "none": per}[red]
        delta = p - np.eye(4)[t]
        want_grad = delta / 2 if red == "mean" else delta
        assert np.all(np.isfinite(grads["a0"]))
        np.testing.assert_allclose(out, want, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(grads["a0"], want_grad, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softplus_and_sigmoid_at_the_extremes(load_text, dtype):
    x = np.array([-1000.0, -800.0, -30.0, 0.0, 30.0, 800.0, 1000.0], dtype)
    out, grads = _value_and_grad(load_text, Case("softplus", (F(7, dtype=dtype),)), {"a0": x}, dtype)
    sig = np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x, dtype=np.float64))), np.exp(-np.abs(x, dtype=np.float64))
                   / (1 + np.exp(-np.abs(x, dtype=np.float64))))
    want = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x, dtype=np.float64)))
    rtol = 1e-12 if dtype == "float64" else 1e-6
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grads["a0"]))
    np.testing.assert_allclose(out, want, rtol=rtol, atol=0)
    np.testing.assert_allclose(grads["a0"], sig, rtol=rtol, atol=0)
    out, grads = _value_and_grad(load_text, Case("sigmoid", (F(7, dtype=dtype),)), {"a0": x}, dtype)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grads["a0"]))
    np.testing.assert_allclose(out, sig, rtol=rtol, atol=0)
    assert out[-1] == 1.0 and out[-2] == 1.0 and 0.0 <= float(out[1]) < 1e-300
    assert 0.0 < float(out[2]) < 1e-12  # sigmoid(-30): tiny, not rounded to zero
    np.testing.assert_allclose(grads["a0"], sig * sig[::-1], rtol=rtol, atol=0)  # sigmoid(x) sigmoid(-x)


def test_logsumexp_of_an_all_minus_inf_row_is_minus_inf(load_text):
    x = np.array([[-np.inf, -np.inf, -np.inf], [-np.inf, 0.0, np.log(3.0)]])
    fwd = load_text(Case("logsumexp", (F(2, 3),), {"axis": 1}).graph_text())
    out = gtool.run(fwd, {"a0": x})["out"]
    assert out[0] == -np.inf and not np.isnan(out[0])
    assert out[1] == pytest.approx(np.log(4.0), rel=1e-15)
    g = load_text(Case("logsumexp", (F(3),)).graph_text({"R": ()}, loss="sum(out * R)"))
    _, grads = gtool.value_and_grad(g, {"a0": x[1], "R": 1.0}, wrt=["a0"])
    np.testing.assert_allclose(grads["a0"], [0.0, 0.25, 0.75], rtol=1e-15)
    sm = load_text(Case("log_softmax", (F(3),)).graph_text())
    np.testing.assert_allclose(gtool.run(sm, {"a0": x[1]})["out"], [-np.inf, np.log(0.25), np.log(0.75)])
