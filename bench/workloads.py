"""The benchmark workloads, each as a gtool graph (YAML text) plus hand-written NumPy.

Shared by bench/run_bench.py (NumPy backend) and bench/backend_bench.py (numba, CUDA), so
every backend is measured on the same graphs and the same hand-written baselines.
"""

from __future__ import annotations

import numpy as np


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# --- MLP classifier: batch 128, 784-512-512-10, cross-entropy ------------------------------
MLP_YAML = """
gtool: 1
name: mlp_bench
inputs:
  x: {shape: [128, 784], dtype: float32}
  t: {shape: [128], dtype: int64, range: [0, 9]}
params:
  W1: {shape: [784, 512], dtype: float32, init: {glorot: {}}}
  b1: {shape: [512], dtype: float32, init: zeros}
  W2: {shape: [512, 512], dtype: float32, init: {glorot: {}}}
  b2: {shape: [512], dtype: float32, init: zeros}
  W3: {shape: [512, 10], dtype: float32, init: {glorot: {}}}
  b3: {shape: [10], dtype: float32, init: zeros}
nodes:
  h1: relu(x @ W1 + b1)
  h2: relu(h1 @ W2 + b2)
  logits: h2 @ W3 + b3
  L: cross_entropy(logits, t)
outputs: [L]
loss: L
"""


def mlp_data(rng):
    f = np.float32
    d = {"x": rng.standard_normal((128, 784)).astype(f), "t": rng.integers(0, 10, 128)}
    for name, shape in (("W1", (784, 512)), ("W2", (512, 512)), ("W3", (512, 10))):
        d[name] = (rng.standard_normal(shape) * 0.05).astype(f)
    for name, n in (("b1", 512), ("b2", 512), ("b3", 10)):
        d[name] = np.zeros(n, f)
    return d


def mlp_numpy(x, t, W1, b1, W2, b2, W3, b3):
    """Forward and backward by hand; returns (loss, grads of the params)."""
    a1 = x @ W1 + b1
    h1 = np.maximum(a1, 0)
    a2 = h1 @ W2 + b2
    h2 = np.maximum(a2, 0)
    z = h2 @ W3 + b3
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    n = x.shape[0]
    loss = np.mean(lse - z[np.arange(n), t])
    dz = _softmax(z)
    dz[np.arange(n), t] -= 1
    dz /= n
    gW3, gb3 = h2.T @ dz, dz.sum(0)
    dh2 = dz @ W3.T
    dh2 *= a2 > 0
    gW2, gb2 = h1.T @ dh2, dh2.sum(0)
    dh1 = dh2 @ W2.T
    dh1 *= a1 > 0
    gW1, gb1 = x.T @ dh1, dh1.sum(0)
    return loss, {"W1": gW1, "b1": gb1, "W2": gW2, "b2": gb2, "W3": gW3, "b3": gb3}


# --- linear MSE: W 256x512 --------------------------------------------------------------------
LINEAR_YAML = """
gtool: 1
name: linear_mse_bench
inputs:
  x: {shape: [512, 128]}
  t: {shape: [256, 128]}
params:
  W: {shape: [256, 512], init: {normal: {std: 0.05}}}
  b: {shape: [256, 1], init: zeros}
nodes:
  y: W @ x + b
  L: 0.5 * sum((y - t) ** 2)
outputs: [L]
loss: L
"""


def linear_data(rng):
    return {"x": rng.standard_normal((512, 128)), "t": rng.standard_normal((256, 128)),
            "W": rng.standard_normal((256, 512)) * 0.05, "b": np.zeros((256, 1))}


def linear_numpy(x, t, W, b):
    e = W @ x + b - t
    loss = 0.5 * np.sum(e * e)
    return loss, {"W": e @ x.T, "b": e.sum(axis=1, keepdims=True)}


# --- 1,000,000-element elementwise chain -----------------------------------------------------
ELEMENTWISE_YAML = """
gtool: 1
name: elementwise_bench
inputs:
  x: {shape: [1000000]}
nodes:
  L: sum(tanh(x) * sigmoid(x) + exp(-x ** 2))
outputs: [L]
loss: L
"""


def elementwise_data(rng):
    return {"x": rng.standard_normal(1_000_000)}


def elementwise_numpy(x):
    th = np.tanh(x)
    sg = 1 / (1 + np.exp(-x))
    ex = np.exp(-x * x)
    loss = np.sum(th * sg + ex)
    g = (1 - th * th) * sg + th * sg * (1 - sg) - 2 * x * ex
    return loss, {"x": g}


# --- 2,000-node chain of tiny ops -------------------------------------------------------------
CHAIN_STEPS = 667  # three nodes a step: sin, mul, add -> 2,001 nodes


def chain_yaml(steps: int = CHAIN_STEPS) -> str:
    lines = ["gtool: 1", "name: tiny_chain_bench", "inputs:", "  x0: {shape: [16]}", "nodes:"]
    for k in range(1, steps + 1):
        lines.append(f"  x{k}: sin(x{k - 1}) * 1.01 + 0.1")
    lines.append(f"  L: sum(x{steps})")
    lines += ["outputs: [L]", "loss: L"]
    return "\n".join(lines) + "\n"


def chain_data(rng):
    return {"x0": rng.standard_normal(16)}


def chain_numpy(x0, steps: int = CHAIN_STEPS):
    xs = [x0]
    x = x0
    for _ in range(steps):
        x = np.sin(x) * 1.01 + 0.1
        xs.append(x)
    loss = np.sum(x)
    g = np.ones_like(x)
    for k in range(steps, 0, -1):
        g = g * 1.01 * np.cos(xs[k - 1])
    return loss, {"x0": g}


WORKLOADS = {
    "mlp": (MLP_YAML, mlp_data, mlp_numpy),
    "linear_mse": (LINEAR_YAML, linear_data, linear_numpy),
    "elementwise_1M": (ELEMENTWISE_YAML, elementwise_data, elementwise_numpy),
    "chain_2000": (chain_yaml(), chain_data, chain_numpy),
}


def prepare(text: str, make_data):
    """(graph, data, wrt) for a workload: its graph loaded from text, seeded data, and the
    targets (the params, else the float inputs), as every benchmark measures them."""
    import os
    import tempfile

    import gtool

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        graph = gtool.load(f.name)
    finally:
        os.unlink(f.name)
    data = make_data(np.random.default_rng(0))
    t = graph.tensors
    wrt = [n for n in t if t[n].kind == "param"] or [n for n in t if t[n].kind == "input" and t[n].dtype.startswith("float")]
    return graph, data, wrt
