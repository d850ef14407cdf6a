"""Property test: autodiff on random DAGs of smooth ops, with fan-out and broadcasting.

Hypothesis writes graphs of 5-12 nodes as YAML text (inputs of shape [], [3], [2, 3]; ops
add, sub, mul, sin, tanh, exp of small values, square, sigmoid, softplus, sum/mean over axes
that keep shapes broadcast-compatible), loss = sum(last node). For each: reverse mode
against central differences, reverse against forward mode, and second derivatives through
the emitted gradient graph (grad of sum(__grad_x0 * v)) against FD of the gradient.
"""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from op_cases import central_diff

import gtool
from gtool.format.write import graph_to_data
from gtool.validate import types_of

SHAPES = [(), (3,), (2, 3)]
UNARY = ["sin({})", "tanh({})", "exp(0.3 * {})", "square({})", "sigmoid({})", "softplus({})"]
BINARY = ["{} + {}", "{} - {}", "{} * {}"]
# reductions that keep every shape broadcast-compatible with [], [1], [3], [2, 1], [2, 3]
REDUCTIONS = {
    (): [("{op}({x})", ())],
    (1,): [("{op}({x}, axis=0)", ())],
    (3,): [("{op}({x}, axis=0)", ()), ("{op}({x}, axis=-1, keepdims=true)", (1,))],
    (2, 1): [("{op}({x}, axis=0)", (1,)), ("{op}({x})", ())],
    (2, 3): [("{op}({x}, axis=0)", (3,)), ("{op}({x}, axis=-1, keepdims=true)", (2, 1)),
             ("{op}({x}, axis=[0, -1])", ()), ("{op}({x}, axis=1, keepdims=true)", (2, 1))],
}


def _broadcast(a: tuple, b: tuple) -> tuple | None:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None


@st.composite
def random_dags(draw):
    """(YAML text, {input name: shape}, data seed)."""
    n_in = draw(st.integers(1, 3))
    shapes = {f"x{k}": draw(st.sampled_from(SHAPES)) for k in range(n_in)}
    values = dict(shapes)  # name -> shape
    lines = ["gtool: 1", "inputs:"] + [f"  {n}: {list(s)}" for n, s in shapes.items()] + ["nodes:"]
    for k in range(draw(st.integers(5, 12))):
        names = list(values)
        # lean towards recent values (depth) while any earlier value may be reused (fan-out)
        pick = st.sampled_from(names[-3:]) | st.sampled_from(names)
        kind = draw(st.sampled_from(["unary", "binary", "binary", "reduce"]))
        a = draw(pick)
        if kind == "binary":
            b = draw(pick)
            shape = _broadcast(values[a], values[b])
            if shape is None:  # [2] meets [3]: reduce instead
                kind = "reduce"
            else:
                text = draw(st.sampled_from(BINARY)).format(a, b)
        if kind == "unary":
            text, shape = draw(st.sampled_from(UNARY)).format(a), values[a]
        elif kind == "reduce":
            form, shape = draw(st.sampled_from(REDUCTIONS[values[a]]))
            text = form.format(op=draw(st.sampled_from(["sum", "mean"])), x=a)
        name = f"n{k}"
        lines.append(f"  {name}: {text}")
        values[name] = shape
    lines += [f"  L: sum({name})", "outputs: [L]", "loss: L"]
    return "\n".join(lines) + "\n", shapes, draw(st.integers(0, 2**32 - 1))


def _feed(shapes: dict, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.uniform(-1.5, 1.5, s) for n, s in shapes.items()}


def _tame(graph, feed) -> bool:
    """Skip the rare draws whose values grow large (square of square of ...): FD loses digits."""
    everything = gtool.run(graph, feed, outputs=list(graph.nodes))
    return all(np.all(np.abs(v) < 1e3) for v in everything.values())


def _case(load_text, dag):
    """(text, graph, shapes, feed, seed) of a drawn DAG; None for a draw that is not tame."""
    text, shapes, seed = dag
    g = load_text(text)
    feed = _feed(shapes, seed)
    return (text, g, shapes, feed, seed) if _tame(g, feed) else None


def _assert_close(got, want, scale, what):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale, err_msg=what)


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(random_dags())
def test_reverse_mode_matches_finite_differences_and_forward_mode(load_text, dag):
    case = _case(load_text, dag)
    if case is None:
        return
    text, g, shapes, feed, seed = case
    names = list(shapes)
    loss, rev = gtool.value_and_grad(g, feed, wrt=names)
    fd = central_diff(lambda v: float(gtool.run(g, v)["L"]), feed, names, 1e-6)
    scale = max(1.0, abs(loss), *(float(np.max(np.abs(fd[n]), initial=0)) for n in names))
    _, fwd = gtool.forward_mode_grad(g, feed, wrt=names)
    for n in names:
        assert rev[n].shape == shapes[n]
        _assert_close(rev[n], fd[n], scale, f"reverse vs FD, d/d{n}\n{text}")
        np.testing.assert_allclose(fwd[n], rev[n], rtol=1e-10, atol=1e-12 * scale, err_msg=f"forward vs reverse\n{text}")


@SETTINGS
@given(random_dags())
def test_second_derivatives_through_the_emitted_graph(load_text, dag):
    case = _case(load_text, dag)
    if case is None:
        return
    text, g, shapes, feed, seed = case
    names = list(shapes)
    data = graph_to_data(gtool.grad(g, names))  # the emitted graph, extended as a user would
    data["inputs"]["v"] = {"shape": list(shapes["x0"])}
    data["nodes"]["hv"] = "sum(__grad_x0 * v)"
    data["outputs"], data["loss"] = ["hv"], "hv"
    hg = load_text(json.dumps(data), suffix=".json")
    v = np.random.default_rng(seed + 1).uniform(-1, 1, shapes["x0"])
    _, hvp = gtool.value_and_grad(hg, {**feed, "v": v}, wrt=names)

    def grad_dot_v(values):
        return float(np.sum(gtool.value_and_grad(g, values, wrt=names)[1]["x0"] * v))

    fd = central_diff(grad_dot_v, feed, names, 1e-5)
    scale = max(1.0, *(float(np.max(np.abs(fd[n]), initial=0)) for n in names))
    for n in names:
        np.testing.assert_allclose(hvp[n], fd[n], rtol=1e-5, atol=1e-5 * scale, err_msg=f"d2L/dx0 d{n}\n{text}")


def test_the_generator_makes_fan_out_and_broadcasting(load_text):
    """Guard against a generator that silently stopped producing the interesting cases."""
    seen = {"fan_out": 0, "broadcast": 0, "reduce": 0}

    @settings(max_examples=25, deadline=None, database=None)
    @given(random_dags())
    def count(dag):
        g = load_text(dag[0])
        types = types_of(g)
        seen["fan_out"] += any(len(u) > 1 for u in g.users().values())
        seen["broadcast"] += any(len({types[i].shape for i in node.inputs}) > 1 for node in g.nodes.values()
                                 if node.op in ("add", "sub", "mul"))
        seen["reduce"] += any(node.op in ("sum", "mean") and node.name != "L" for node in g.nodes.values())

    count()
    assert min(seen.values()) >= 5, seen
