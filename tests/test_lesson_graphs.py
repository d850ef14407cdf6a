"""The lesson graphs in graphs/: values and gradients against their closed forms.

Each graph is checked at the values in its file (the numbers its doc quotes) and at random
other values fed with `inputs={...}`, so a rule that happens to be right at one point fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from op_cases import central_diff

import gtool
from gtool.interp import at_precision

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
RNG_SEEDS = [0, 1, 2]


def load(name: str) -> gtool.Graph:
    return gtool.load(GRAPHS / name)


def grads(graph, feed=None, wrt=None):
    loss, g = gtool.value_and_grad(graph, feed, wrt=wrt)
    return loss, g


def close(a, b, rtol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


def scalars(rng, *names, lo=-2.0, hi=2.0):
    return {n: float(rng.uniform(lo, hi)) for n in names}


def at_xy(name: str, seed: int | None, x: float, y: float):
    """A graph of scalars x and y, its feed, and the (x, y) it runs at: the file's own values
    (x, y given here, feed None) without a seed, random ones with it."""
    g = load(name)
    if seed is None:
        return g, None, (x, y)
    feed = scalars(np.random.default_rng(seed), "x", "y")
    return g, feed, (feed["x"], feed["y"])


@pytest.mark.parametrize("seed", [None] + RNG_SEEDS)
def test_fanout(seed):
    g, feed, (x, y) = at_xy("fanout.yaml", seed, 1.0, 2.0)
    u = x + y
    loss, d = grads(g, feed, ["x", "y"])
    close(loss, u * y + u**2)
    close(d["x"], 2 * u + y)
    close(d["y"], u + y + 2 * u)
    if feed is None:
        assert (loss, float(d["x"]), float(d["y"])) == (15.0, 8.0, 11.0)


@pytest.mark.parametrize("seed", [None] + RNG_SEEDS)
def test_sum_times_y(seed):
    g, feed, (x, y) = at_xy("sum_times_y.yaml", seed, 1.0, 2.0)
    loss, d = grads(g, feed)
    close(loss, (x + y) * y)
    close(d["x"], y)
    close(d["y"], x + 2 * y)
    if feed is None:
        assert (float(d["x"]), float(d["y"])) == (2.0, 5.0)


@pytest.mark.parametrize("seed", [None] + RNG_SEEDS)
def test_sin_chain(seed):
    g, feed, (x, y) = at_xy("sin_chain.yaml", seed, 0.5, 2.0)
    loss, d = grads(g, feed)
    close(loss, np.sin(x * y) + y)
    close(d["x"], y * np.cos(x * y))
    close(d["y"], x * np.cos(x * y) + 1)


@pytest.mark.parametrize("seed", [None] + RNG_SEEDS)
def test_exercise_ab(seed):
    g, feed, (x, y) = at_xy("exercise_ab.yaml", seed, 1.5, -0.5)
    loss, d = grads(g, feed)
    close(loss, (x * y + y) ** 2)
    close(d["x"], 2 * y**2 * (x + 1))
    close(d["y"], 2 * y * (x + 1) ** 2)
    if feed is None:
        close([loss, d["x"], d["y"]], [1.5625, 1.25, -6.25])


@pytest.mark.parametrize("seed", [None] + RNG_SEEDS)
def test_exercise_vw(seed):
    g = load("exercise_vw.yaml")
    feed = None if seed is None else scalars(np.random.default_rng(seed), "u")
    u = 1.5 if feed is None else feed["u"]
    loss, d = grads(g, feed)
    close(loss, 3 * u**3)
    close(d["u"], 9 * u**2)


def _relu_data(rng):
    """W, b, x with every pre-activation at least 0.1 away from the ReLU kink."""
    while True:
        W, b, x = rng.normal(size=(3, 2)), rng.normal(size=3), rng.normal(size=2)
        if np.min(np.abs(W @ x + b)) > 0.1:
            return {"W": W, "b": b, "x": x}


@pytest.mark.parametrize("seed", [None] + RNG_SEEDS)
def test_relu_layer(seed):
    g = load("relu_layer.yaml")
    feed = None if seed is None else _relu_data(np.random.default_rng(seed))
    W, b, x = (g.tensors[n].value for n in ("W", "b", "x")) if feed is None else (feed["W"], feed["b"], feed["x"])
    h = W @ x + b
    m = (h > 0).astype(float)
    loss, d = grads(g, feed, ["W", "b", "x"])
    close(loss, np.sum(np.maximum(h, 0)))
    close(d["W"], np.outer(m, x))
    close(d["b"], m)
    close(d["x"], W.T @ m)
    if feed is None:
        close(d["W"], [[1, -2], [0, 0], [1, -2]])
        close(d["x"], [1.5, 0.25])


@pytest.mark.parametrize("seed", [None] + RNG_SEEDS)
def test_linear_mse(seed):
    g = load("linear_mse.yaml")
    rng = np.random.default_rng(seed)
    feed = None if seed is None else {"W": rng.normal(size=(2, 3)), "b": rng.normal(size=2), "x": rng.normal(size=3),
                                      "t": rng.normal(size=2)}
    W, b, x, t = (g.tensors[n].value for n in "Wbxt") if feed is None else (feed[n] for n in "Wbxt")
    e = W @ x + b - t
    loss, d = grads(g, feed, ["W", "b", "x", "t"])
    close(loss, 0.5 * e @ e)
    close(d["W"], np.outer(e, x))
    close(d["b"], e)
    close(d["x"], W.T @ e)
    close(d["t"], -e)
    out = gtool.run(g, feed)
    close(out["y"], W @ x + b)
    if feed is None:
        close(d["W"], [[1.5, 0.75, -1.5], [-2, -1, 2]])
        assert loss == 3.125


def _softmax(s):
    e = np.exp(s - s.max())
    return e / e.sum()


@pytest.mark.parametrize("seed", [None] + RNG_SEEDS)
def test_softmax_naive_and_stable_agree(seed):
    naive, stable = load("softmax_logprob_naive.yaml"), load("softmax_logprob_stable.yaml")
    feed = None if seed is None else {"s": np.random.default_rng(seed).normal(scale=3.0, size=4)}
    s = naive.tensors["s"].value if feed is None else feed["s"]
    onehot = np.array([0.0, 1.0, 0.0, 0.0])
    ln, dn = grads(naive, feed)
    ls, ds = grads(stable, feed)
    want = np.log(np.sum(np.exp(s))) - s[1]
    close(ln, want, 1e-12)
    close(ls, want, 1e-12)
    close(dn["s"], _softmax(s) - onehot)
    close(ds["s"], _softmax(s) - onehot)


def test_softmax_stable_survives_where_naive_overflows():
    naive, stable = load("softmax_logprob_naive.yaml"), load("softmax_logprob_stable.yaml")
    feed = {"s": np.array([1000.0, 0.0, 0.0, 0.0])}
    ls, ds = grads(stable, feed)
    assert ls == pytest.approx(1000.0, rel=1e-12)
    close(ds["s"], [1.0, -1.0, 0.0, 0.0])
    ln, _ = grads(naive, feed)
    assert not np.isfinite(ln)  # the lesson's point: exp(1000) overflows in the naive graph


@pytest.mark.parametrize("seed", [None] + RNG_SEEDS)
def test_broadcast_affine(seed):
    g = load("broadcast_affine.json")
    rng = np.random.default_rng(seed)
    feed = None if seed is None else {"x": rng.normal(size=(4, 3)), "W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
    x, W, b = (g.tensors[n].value for n in ("x", "W", "b")) if feed is None else (feed[n] for n in ("x", "W", "b"))
    z = np.tanh(x @ W + b)
    G = (1 - z**2) / z.size
    loss, d = grads(g, feed, ["W", "b", "x"])
    close(loss, z.mean())
    close(d["W"], x.T @ G)
    close(d["b"], G.sum(axis=0))
    close(d["x"], G @ W.T)
    if feed is None:
        close(loss, 0.14317506584352513)
        close(d["b"], [0.3699600444828687, 0.3340763392203225])


def test_mlp_gradient_matches_closed_form_and_finite_differences():
    g = at_precision(load("mlp.yaml"), "float64")  # FD needs float64; the file is float32
    batch = 8
    rng = np.random.default_rng(3)
    feed = {"x": rng.normal(size=(batch, 784)), "t": rng.integers(0, 10, batch), "W1": rng.normal(0, 0.05, (784, 128)),
            "b1": rng.normal(0, 0.1, 128), "W2": rng.normal(0, 0.1, (128, 10)), "b2": rng.normal(0, 0.1, 10)}
    loss, d = grads(g, feed)
    assert set(d) == {"W1", "b1", "W2", "b2"}
    a1 = feed["x"] @ feed["W1"] + feed["b1"]
    h1 = np.maximum(a1, 0)
    logits = h1 @ feed["W2"] + feed["b2"]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    close(loss, np.mean(-np.log(p[np.arange(batch), feed["t"]])), 1e-10)
    dlogits = (p - np.eye(10)[feed["t"]]) / batch
    close(d["W2"], h1.T @ dlogits, 1e-10)
    close(d["b2"], dlogits.sum(axis=0), 1e-10)
    da1 = (dlogits @ feed["W2"].T) * (a1 > 0)
    close(d["W1"], feed["x"].T @ da1, 1e-10)
    close(d["b1"], da1.sum(axis=0), 1e-10)

    def phi(values):
        return float(gtool.run(g, values)["L"])

    for name in ("W1", "b1", "W2", "b2"):  # FD on a few random elements of each param
        for idx in [tuple(rng.integers(0, n) for n in feed[name].shape) for _ in range(3)]:
            eps = 1e-6
            hi, lo = feed[name].copy(), feed[name].copy()
            hi[idx] += eps
            lo[idx] -= eps
            fd = (phi({**feed, name: hi}) - phi({**feed, name: lo})) / (2 * eps)
            assert d[name][idx] == pytest.approx(fd, rel=1e-5, abs=1e-9), (name, idx)


def test_mlp_runs_in_float32_with_random_inputs():
    g = load("mlp.yaml")
    out = gtool.run(g, random_inputs=True, seed=1)
    assert out["logits"].shape == (32, 10) and out["logits"].dtype == np.float32
    assert np.isfinite(out["L"]) and out["L"].dtype == np.float32
    loss, d = gtool.value_and_grad(g, random_inputs=True, seed=1)
    assert loss == pytest.approx(float(out["L"]), rel=1e-6)
    assert d["W1"].shape == (784, 128) and all(v.dtype == np.float32 for v in d.values())


def test_small_graphs_match_finite_differences_at_random_points():
    """Every scalar lesson graph, its gradient against FD (one more independent check)."""
    rng = np.random.default_rng(11)
    for name in ("fanout.yaml", "sum_times_y.yaml", "sin_chain.yaml", "exercise_ab.yaml", "exercise_vw.yaml"):
        g = load(name)
        names = [n for n, t in g.tensors.items() if t.kind == "input"]
        feed = {n: np.array(rng.uniform(-2, 2)) for n in names}
        _, d = grads(g, feed, names)
        fd = central_diff(lambda v, g=g: float(gtool.run(g, v)[g.loss]), feed, names, 1e-6)
        for n in names:
            assert d[n] == pytest.approx(fd[n], rel=1e-7, abs=1e-8), (name, n)
