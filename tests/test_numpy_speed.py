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


def test_strided_conv_transpose_by_phases_matches_the_loop_reference():
    """conv_transpose (conv's dx) adds its columns into the stride's phases (space to depth,
    gtool/ops/windows.py Columns(phases=True)) and takes the input back out of them: against the
    loop reference (ops/window_refs.py) over strides 2-3, dilations, pads, 1-3 spatial dims,
    sizes that are not multiples of the stride, and output_padding."""
    from gtool.ops import window_refs

    rng = np.random.default_rng(4)
    fwd = REGISTRY["conv_transpose"].forward
    cases = [((2, 3, 4, 5), (3, 2, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
             ((1, 2, 3, 4), (2, 2, 3, 2), {"stride": [3, 2], "dilation": [2, 1], "padding": [1, 0, 2, 1]}),
             ((2, 2, 5), (2, 3, 3), {"stride": 3, "output_shape": [17]}),
             ((1, 2, 2, 3, 2), (2, 1, 2, 2, 3), {"stride": [2, 1, 3], "padding": 1}),
             ((1, 4, 3, 3), (4, 1, 3, 3), {"stride": 2, "groups": 2, "dilation": 2}),
             ((1, 1, 4, 4), (1, 1, 2, 2), {"stride": 2, "auto_pad": "same_upper"})]
    for gs, ws, attrs in cases:
        g, w = rng.standard_normal(gs), rng.standard_normal(ws)
        got = fwd(g, w, **attrs)
        want = np.asarray(window_refs.conv_transpose(g, w, **attrs), dtype=np.float64)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=str(attrs))


def test_a_float_op_with_an_int_literal_calls_its_ufunc_with_the_same_result(load_text):
    """`L / 128` (a weak int) runs as the ufunc itself, not the int-to-float wrapper, and gives
    the wrapper's numbers, in float64 and float32; an int array still goes through the wrapper."""
    from gtool import interp

    text = ("gtool: 1\ninputs:\n  x: {shape: [3], dtype: DT}\n  k: {shape: [3], dtype: int64}\n"
            "nodes:\n  a: x / 3\n  b: 7 - x * 2\n  c: exp(k)\n  L: sum(a + b) / 128\noutputs: [a, b, c, L]\n")
    for dt in ("float64", "float32"):
        g = load_text(text.replace("DT", dt))
        x, k = np.array([1.0, -2.5, 3e30], dt), np.array([1, 2, 3])
        for _ in range(2):  # the second run is the generated plan
            out = api.run(g, {"x": x, "k": k})
        f = np.dtype(dt).type
        np.testing.assert_array_equal(out["a"], x / f(3.0))
        np.testing.assert_array_equal(out["b"], f(7.0) - x * f(2.0))
        np.testing.assert_array_equal(out["c"], np.exp(k.astype(np.float64)))
        assert out["a"].dtype == dt and out["c"].dtype == np.float64
        assert out["L"] == np.sum(out["a"] + out["b"]) / f(128.0) and out["L"].dtype == dt
        prog = interp.program(g)
        source = next(iter(prog._fast.values())).source
        assert " / " in source  # a / 3 and L / 128 as operators: the ufunc, no wrapper call
