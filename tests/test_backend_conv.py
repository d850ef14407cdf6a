"""Conv and pooling on the numba backend. Conv (and the pools' backward ops) run their NumPy
forward (im2col + BLAS) as steps of the compiled plan, between compiled segments, explicitly
(`compiled.numpy_steps`); 2-D max_pool with explicit padding is a compiled loop nest (exactly
NumPy's values: a maximum rounds nothing), other forms its NumPy forward. The whole CNN agrees
with the NumPy backend, forward and backward.

Tolerance: the compiled parts (bias adds, relu, the dense layer's BLAS call through SciPy,
cross-entropy) sum in another order than NumPy's, so each value is within 16 ULPs of NumPy's,
or (gradients where sums cancel to a small number) within 4 eps of the largest magnitude.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")

from ulps import ulp_diff  # noqa: E402

import gtool  # noqa: E402
from gtool import api, interp  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FORWARD_NUMPY = {("__h1_1", "conv"), ("h2", "conv")}  # max_pool p1 is compiled
BACKWARD_NUMPY = FORWARD_NUMPY | {("__bwd_h2_1", "conv_transpose"), ("__grad_W2", "conv_filter"),
                                  ("__bwd_p1_1", "max_pool_grad"), ("__grad_W1", "conv_filter")}


def _close(got, want, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, what
    eps = np.finfo(want.dtype).eps
    far = (ulp_diff(got, want) > 16) & (np.abs(got - want) > 4 * eps * np.abs(want).max())
    assert not far.any(), f"{what}: {got[far][:5]} vs {want[far][:5]}"


def test_cnn_digits_conv_and_pool_run_numpy_inside_the_compiled_plan(dtype="float32"):
    """The graph's own dtype (float64 compiles another ~10 s of numba; it agreed as well when
    this was written: `interp.at_precision(graph, "float64")`)."""
    graph = gtool.load(ROOT / "graphs" / "cnn_digits.yaml")
    fwd = interp.program(graph, backend="numba").compiled
    bwd = interp.program(api.backward(graph), backend="numba").compiled
    assert set(fwd.numpy_steps) == FORWARD_NUMPY and set(bwd.numpy_steps) == BACKWARD_NUMPY
    assert fwd.n_compiled >= 2 and bwd.n_compiled >= 2  # relu, bias, dense layer, loss: compiled
    want, got = api.run(graph, random_inputs=True), api.run(graph, random_inputs=True, backend="numba")
    for name in want:
        _close(got[name], want[name], f"{name} ({dtype})")
    loss, grads = api.value_and_grad(graph, random_inputs=True)
    loss_b, grads_b = api.value_and_grad(graph, random_inputs=True, backend="numba")
    _close(np.asarray(loss_b, dtype), np.asarray(loss, dtype), "loss")
    assert set(grads_b) == set(grads) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    for name in grads:
        _close(grads_b[name], grads[name], f"grad {name} ({dtype})")
    assert fwd.fallback_runs == 0 and bwd.fallback_runs == 0  # no run went back to the interpreter


WINDOWS = [  # (attrs, lowered): every window form, against the NumPy forward
    ("kernel=2", True), ("kernel=[2, 3]", True), ("kernel=3, stride=2", True), ("kernel=3, stride=1, padding=1", True),
    ("kernel=[3, 2], stride=[2, 1], padding=[1, 0, 2, 1]", True), ("kernel=2, dilation=2", True),
    ("kernel=3, stride=2, ceil_mode=true", True), ("kernel=2, stride=3, padding=1, ceil_mode=true", True),
    ("kernel=2, padding=[1, 1]", True), ("kernel=3, auto_pad='same_upper'", False),
]
AVG = [("kernel=3, stride=1, padding=1, count_include_pad=true", True),
       ("kernel=[3, 2], stride=[2, 1], padding=[1, 0, 2, 1], count_include_pad=true", True),
       ("kernel=2, stride=3, padding=1, ceil_mode=true, count_include_pad=true", True)]
POOLS = [("max_pool2d", a, low) for a, low in WINDOWS] + [("avg_pool2d", a, low) for a, low in WINDOWS + AVG]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pools_compiled_loop_equal_the_numpy_forward(load_text, dtype):
    """Max exactly (a maximum rounds nothing), avg to the bit too: the same sums in the same
    order in x's dtype, the same count, and the same rescue of a sum past the largest value."""
    nodes = "\n".join(f"  p{k}: {op}(x, {a})" for k, (op, a, _) in enumerate(POOLS))
    graph = load_text(f"gtool: 1\ninputs:\n  x: {{shape: [2, 3, 7, 9], dtype: {dtype}}}\nnodes:\n{nodes}\n"
                      f"outputs: [{', '.join(f'p{k}' for k in range(len(POOLS)))}]\n")
    c = interp.program(graph, backend="numba").compiled
    assert {n for n, _ in c.numpy_steps} == {f"p{k}" for k, (_, _, low) in enumerate(POOLS) if not low}
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, (2, 3, 7, 9)).astype(dtype) * 0.5  # ties everywhere
    x[0, 0, 0, 0], x[0, 1, 3, 4], x[1, 2, 6, 8], x[1, 0, 2, 2] = np.nan, -np.inf, np.nan, np.inf
    x[1, 1] = -np.inf  # a whole channel of -inf
    x[0, 2, :2, :2] = [[0.0, -0.0], [-0.0, 0.0]]  # +0 and -0 tie: the first one wins, as np.maximum keeps it
    x[1, 2, 3:5, 3:5] = np.finfo(dtype).max * 0.75  # sums past the largest value: avg_pool sums the shares
    want, got = api.run(graph, {"x": x}), api.run(graph, {"x": x}, backend="numba")
    for k in range(len(POOLS)):
        w, g = want[f"p{k}"], got[f"p{k}"]
        assert g.dtype == w.dtype and g.shape == w.shape, POOLS[k]
        assert np.array_equal(np.signbit(g), np.signbit(w)) and np.array_equal(g, w, equal_nan=True), POOLS[k]
    assert c.fallback_runs == 0
