"""Structure that the NumPy backend's speed depends on (issue 15), checked so that it stays:
each of these once cost a pass over the data or a Python layer per call."""

from __future__ import annotations

import numpy as np

from gtool import api
from gtool.ops import REGISTRY


def test_sigmoid_backward_runs_no_second_sigmoid(load_text):
    """sigmoid' is t / (1 + t)^2 with t = e^-|x| (6 cheap passes), not sigmoid(x) sigmoid(-x),
    which ran the 8-pass template again; and it stays exact in both tails."""
    g = load_text("gtool: 1\ninputs:\n  x: [5]\nnodes:\n  L: sum(sigmoid(x))\noutputs: [L]\nloss: L\n")
    bw = api.grad(g, wrt=["x"])
    assert [n.op for n in bw.nodes.values()].count("sigmoid") == 1  # the forward's own
    x = np.array([-745.0, -30.0, 0.0, 30.0, 40.0])
    _, grads = api.value_and_grad(g, {"x": x}, wrt=["x"])
    want = np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))) ** 2  # closed form; 4.2e-18 at 40, not 0
    np.testing.assert_allclose(grads["x"], want, rtol=1e-14, atol=0)


def test_reductions_call_the_ufunc_reduce_with_numpys_result():
    """sum/max/min skip np.sum's dispatch layer; same values and dtypes as np.sum / np.max."""
    x = np.arange(12.0).reshape(3, 4) - 5.5
    for op, ref in (("sum", np.sum), ("max", np.max), ("min", np.min)):
        for axis, keep in ((None, False), (1, True), ((0, 1), False)):
            got = REGISTRY[op].forward(x, axis=axis, keepdims=keep)
            want = ref(x, axis=axis, keepdims=keep)
            assert np.asarray(got).dtype == want.dtype and np.array_equal(got, want)
    b = np.array([True, False, True])
    assert REGISTRY["sum"].forward(b).dtype == np.sum(b).dtype
    assert REGISTRY["sum"].forward(2.5) == 2.5  # a Python number takes np.sum's path
