"""lint on the normalization and activation ops: epsilon 0, running variances that reach
-epsilon, log of a normalized value that can reach 0, and erf / gelu proven overflow-free.
Each finding has its near miss (the same graph one step safer gives no finding)."""

from __future__ import annotations

import pytest

from gtool.lint import lint_graph


def findings(load_text, nodes: str, inputs: str = "  x: {shape: [4, 16]}\n") -> list[tuple[str, str, str]]:
    text = "gtool: 1\ninputs:\n" + inputs + "nodes:\n" + nodes + "outputs: [out]\n"
    return [(f.diag.node, f.diag.code, f.diag.severity) for f in lint_graph(load_text(text)).findings]


PARAMS = ("  x: {shape: [4, 16]}\n  g: {shape: [16], range: [-1, 1]}\n  b: {shape: [16], range: [3, 4]}\n")


@pytest.mark.parametrize("op", ["layer_norm(x, g, b", "instance_norm(x3, c, c"])
def test_epsilon_zero_is_an_error_and_a_positive_one_is_not(load_text, op):
    inputs = PARAMS + "  x3: {shape: [2, 3, 5]}\n  c: {shape: [3]}\n"
    assert findings(load_text, f"  out: {op}, epsilon=0.0)\n", inputs) == [("out", "norm-epsilon", "error")]
    assert findings(load_text, f"  out: {op}, epsilon=1e-12)\n", inputs) == []
    assert findings(load_text, f"  out: {op})\n", inputs) == []


def test_batch_norm_running_variance_against_epsilon(load_text):
    def bn(var_range: str, eps: str) -> list:
        inputs = "  x: {shape: [4, 3]}\n  c: {shape: [3]}\n  v: {shape: [3], range: " + var_range + "}\n"
        return findings(load_text, f"  out: batch_norm(x, c, c, c, v, epsilon={eps})\n", inputs)

    assert bn("[0, 1]", "0.0") == [("out", "norm-epsilon", "error")]
    assert bn("[0.5, 1]", "0.0") == []  # near miss: the variance stays away from 0
    assert bn("[0, 1]", "1e-5") == []
    assert bn("[-1e-5, 1]", "1e-5") == [("out", "norm-epsilon", "error")]  # var = -eps: sqrt(0)
    unranged = findings(load_text, "  out: batch_norm(x, c, c, c, c, epsilon=0.0)\n",
                        "  x: {shape: [4, 3]}\n  c: {shape: [3]}\n")
    assert unranged == [("out", "norm-epsilon", "warning")]  # only because c has no range
    training = findings(load_text, "  out: batch_norm(x, c, c, c, c, epsilon=0.0, training=true)\n",
                        "  x: {shape: [4, 3]}\n  c: {shape: [3], range: [1, 2]}\n")
    assert training == [("out", "norm-epsilon", "error")]  # the batch's variance can be 0 whatever c is


def test_log_of_a_normalized_value_that_can_reach_zero(load_text):
    """|xhat| <= sqrt(n - 1): with 16 entries per row and |g| <= 1, g xhat + b reaches 3 - 3.87 < 0."""
    assert findings(load_text, "  out: log(layer_norm(x, g, b))\n", PARAMS) == [("out", "log-domain", "warning")]
    near = PARAMS.replace("[4, 16]", "[4, 4]").replace("[16]", "[4]")  # sqrt(3) < 3: positive
    assert findings(load_text, "  out: log(layer_norm(x, g, b))\n", near) == []


def test_erf_and_gelu_are_overflow_free(load_text):
    assert findings(load_text, "  out: exp(erf(x)) + exp(erfc(x)) + exp(softsign(x)) + exp(hard_sigmoid(x))\n") == []
    ranged = "  x: {shape: [4, 16], range: [-5, 5]}\n"
    assert findings(load_text, "  out: exp(gelu(x)) + exp(gelu(x, approximate='tanh'))\n", ranged) == []
    wide = "  x: {shape: [4, 16], range: [-5, 800]}\n"
    assert findings(load_text, "  out: exp(gelu(x))\n", wide) == [("out", "exp-overflow", "error")]
