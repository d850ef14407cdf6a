"""Conv and pooling on the numba backend: they run their NumPy forward (im2col + BLAS) as steps
of the compiled plan, between compiled segments, explicitly (`compiled.numpy_steps`), and the
whole CNN agrees with the NumPy backend, forward and backward, in float32 and float64.

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
FORWARD_NUMPY = {("__h1_1", "conv"), ("p1", "max_pool"), ("h2", "conv")}
BACKWARD_NUMPY = FORWARD_NUMPY | {("__bwd_h2_1", "conv_transpose"), ("__grad_W2", "conv_filter"),
                                  ("__bwd_p1_1", "max_pool_grad"), ("__grad_W1", "conv_filter")}


def _close(got, want, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, what
    eps = np.finfo(want.dtype).eps
    far = (ulp_diff(got, want) > 16) & (np.abs(got - want) > 4 * eps * np.abs(want).max())
    assert not far.any(), f"{what}: {got[far][:5]} vs {want[far][:5]}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cnn_digits_conv_and_pool_run_numpy_inside_the_compiled_plan(dtype):
    graph = gtool.load(ROOT / "graphs" / "cnn_digits.yaml")
    graph = interp.at_precision(graph, dtype) if dtype != "float32" else graph
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
