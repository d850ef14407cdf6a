"""gtool memory and rematerialization: predictions against tracemalloc, bitwise-equal gradients
under every policy, the budget search, the CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memory_graphs import feed, measured_peak, mlp_yaml
from test_autodiff_props import random_dags
from test_cli import gtool_cli

import gtool
from gtool import api
from gtool.errors import UsageError
from gtool.memory import remat
from gtool.memory.report import memory_report

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ["none", "sqrt", "cheap"]


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """A 24-layer tanh MLP (batch 256, width 32, float64: 64 KiB per activation)."""
    f = tmp_path_factory.mktemp("mem") / "deep.yaml"
    f.write_text(mlp_yaml(24, 256, 32))
    return gtool.load(f)


@pytest.fixture(scope="module")
def residual(tmp_path_factory):
    f = tmp_path_factory.mktemp("mem") / "res.yaml"
    f.write_text(mlp_yaml(12, 256, 32, residual=True, skip=True))
    return gtool.load(f)


def _grads(graph, values, policy):
    loss, g = api.value_and_grad(graph, values, remat=policy)
    return loss, g


# the prediction is the truth ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("batch", [128, 1024])
def test_prediction_within_10_percent_on_the_bundled_mlp(batch, policy):
    g = gtool.load(ROOT / "graphs" / "mlp.yaml")
    dims = {"batch": batch}
    predicted = memory_report(g, remat=policy, dims=dims).peak_bytes
    measured = measured_peak(g, feed(g, dims), policy, dims)
    assert abs(predicted - measured) <= 0.10 * measured, (predicted, measured)


@pytest.mark.parametrize("name", ["fanout.yaml", "linear_mse.yaml", "relu_layer.yaml", "sin_chain.yaml",
                                  "softmax_logprob_naive.yaml", "softmax_logprob_stable.yaml",
                                  "broadcast_affine.json", "exercise_ab.yaml"])
def test_prediction_on_the_tiny_bundled_graphs_misses_only_the_interpreters_bookkeeping(name):
    """These graphs hold a few numbers (56-360 bytes of arrays): what tracemalloc sees is the
    run's Python objects (array headers, lists, dicts), a few KiB that do not grow with the data."""
    g = gtool.load(ROOT / "graphs" / name)
    for policy in POLICIES:
        predicted = memory_report(g, remat=policy).peak_bytes
        measured = measured_peak(g, feed(g), policy)
        assert predicted <= measured <= predicted + 24 * 1024, (policy, predicted, measured)


@pytest.mark.parametrize("policy", POLICIES + ["budget=1MiB", "budget=1200KiB"])
def test_prediction_within_10_percent_on_a_deep_mlp(deep, policy):
    predicted = memory_report(deep, remat=policy).peak_bytes
    measured = measured_peak(deep, feed(deep), policy)
    assert abs(predicted - measured) <= 0.10 * measured, (predicted, measured)


@pytest.mark.parametrize("policy", POLICIES)
def test_prediction_within_10_percent_with_skip_connections(residual, policy):
    predicted = memory_report(residual, remat=policy).peak_bytes
    measured = measured_peak(residual, feed(residual), policy)
    assert abs(predicted - measured) <= 0.10 * measured, (predicted, measured)


def test_sqrt_cuts_the_measured_peak_of_a_deep_chain(deep):
    values = feed(deep)
    none, sqrt = measured_peak(deep, values, "none"), measured_peak(deep, values, "sqrt")
    # 24 saved activations of 64 KiB against about 2 sqrt(24) ~ 10 of them plus the inputs
    assert sqrt <= 0.6 * none, (sqrt, none)


# gradients are bitwise the same ----------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES[1:] + ["budget"])
def test_policies_give_bitwise_equal_gradients(deep, residual, policy):
    for g in (deep, residual):
        chosen = policy
        if policy == "budget":  # halfway between the least plan and `none`
            low, top = (memory_report(g, remat=p).peak_bytes for p in ("sqrt", "none"))
            chosen = f"budget={(low + top) // 2}"
        values = feed(g)
        loss0, g0 = _grads(g, values, "none")
        loss1, g1 = _grads(g, values, chosen)
        assert loss0 == loss1
        for k in g0:
            assert np.array_equal(g0[k], g1[k]), k
        if g is deep:  # (the residual net has no cut point: a budget there may recompute nothing)
            assert any(n.startswith("__remat_") for n in api.grad(g, remat=chosen, dims={}).nodes)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(dag=random_dags(), data=st.data())
def test_any_stored_set_gives_bitwise_equal_gradients_on_random_graphs(load_text, dag, data):
    """Keep a random subset of the forward values, recompute the rest: the same bits."""
    text, shapes, seed = dag
    g = load_text(text)
    values = {n: np.random.default_rng(seed).uniform(-1.5, 1.5, s) for n, s in shapes.items()}
    gr = api.gradient(g)
    fwd = remat.forward_nodes(gr)
    keep = data.draw(st.sets(st.sampled_from(fwd))) if fwd else set()
    plain = gtool.interp.execute(gr.graph, values)
    for variant in (remat.apply(gr, keep), remat.rematerialize(gr, "sqrt"), remat.rematerialize(gr, "cheap")):
        got = gtool.interp.execute(variant.graph, values)
        for name in gr.graph.outputs:
            assert np.array_equal(plain[name], got[name], equal_nan=True), name


# the transform ---------------------------------------------------------------------------------------


def test_sqrt_checkpoints_about_every_sqrt_n_and_keeps_the_tail(deep):
    gr = api.gradient(deep)
    stored = remat.sqrt_stored(gr)
    checkpoints = sorted(int(n[1:]) for n in stored if n.startswith("h"))
    gaps = np.diff(checkpoints[:3])
    assert list(gaps) == [5, 5]  # round(sqrt(24)) = 5 saved values per segment
    copies = remat.recomputed(remat.apply(gr, stored))
    assert "h0" in copies and "h23" not in copies and "h22" not in copies


def test_sqrt_cuts_the_peak_of_a_residual_network(tmp_path):
    """Residual blocks h_i = h_{i-1} + tanh(h_{i-1} W_i + b_i): the block outputs are
    articulation points, so sqrt checkpoints there and the skip edges stay inside segments."""
    f = tmp_path / "res.yaml"
    f.write_text(mlp_yaml(24, 256, 32, residual=True))
    g = gtool.load(f)
    values = feed(g)
    none, sqrt = measured_peak(g, values, "none"), measured_peak(g, values, "sqrt")
    assert sqrt <= 0.6 * none, (sqrt, none)
    assert abs(memory_report(g, remat="sqrt").peak_bytes - sqrt) <= 0.1 * sqrt
    _, g0 = _grads(g, values, "none")
    _, g1 = _grads(g, values, "sqrt")
    assert all(np.array_equal(g0[k], g1[k]) for k in g0)


def test_cut_points_never_cut_a_skip_connection(residual):
    gr = api.gradient(residual)
    cuts = remat.cut_points(gr)
    assert "h0" in cuts  # h0 is read at the very end (the skip), so nothing after it is a cut
    assert not [c for c in cuts if c.startswith("h") and c != "h0" and c != "h11"]


def test_recompute_nodes_are_named_and_placed_before_their_first_reader(deep):
    g = api.grad(deep, remat="sqrt")
    order = list(g.nodes)
    for name in order:
        if name.startswith("__remat_"):
            first = min(order.index(m) for m, n in g.nodes.items() if name in n.inputs)
            assert order.index(name) < first
            value = name[len("__remat_"):].rsplit("_", 1)[0]
            assert g.nodes[name].op == deep.nodes[value].op


def test_cheap_keeps_matmul_outputs_and_recomputes_elementwise(deep):
    copies = remat.recomputed(api.gradient(deep, remat="cheap"))
    assert copies and all(deep.nodes[v].op in ("add", "tanh") for v in copies)


# budget --------------------------------------------------------------------------------------------


def test_budget_reaches_every_budget_between_the_minimum_and_none(deep):
    values = feed(deep)
    top = memory_report(deep, remat="none").peak_bytes
    low = memory_report(deep, remat="sqrt").peak_bytes
    costs = []
    for budget in np.linspace(low, top, 5).astype(int):
        rep = memory_report(deep, remat=f"budget={budget}")
        assert rep.peak_bytes <= budget
        assert measured_peak(deep, values, f"budget={budget}") <= 1.1 * budget
        costs.append(rep.to_json()["recompute_flops"])
    assert costs[-1] == 0 and costs[0] > 0
    assert all(a >= b for a, b in zip(costs, costs[1:])), costs  # more memory, less recompute


def test_a_budget_below_every_plan_is_refused_with_the_minimum(deep):
    with pytest.raises(UsageError) as info:
        api.grad(deep, remat="budget=100KiB", dims={})
    assert info.value.diagnostic.code == "budget-too-small"
    assert "least peak" in info.value.diagnostic.message


@pytest.mark.parametrize("bad", ["bogus", "budget=", "budget=-1", "sqrt2"])
def test_bad_policies_are_usage_errors(deep, bad):
    with pytest.raises(UsageError):
        api.grad(deep, remat=bad)


# the command line -----------------------------------------------------------------------------------


def test_memory_json_keys_and_the_lessons_table(capsys):
    status, out, err = gtool_cli(capsys, "memory", ROOT / "graphs" / "mlp.yaml", "--dim", "batch=64",
                                 "--format", "json")
    assert status == 0, err
    doc = json.loads(out)
    for key in ("peak_bytes", "saved_bytes", "recompute_flops", "nodes", "peak_at", "timeline"):
        assert key in doc
    h1 = next(r for r in doc["nodes"] if r["name"] == "h1")
    assert h1["stored"] and h1["bytes"] == 64 * 128 * 4 and "__logits_1" in h1["reason"]
    assert set(h1) >= {"name", "bytes", "stored", "reason"}


def test_memory_text_and_svg(capsys, tmp_path):
    out_svg = tmp_path / "plot.svg"
    status, out, err = gtool_cli(capsys, "memory", ROOT / "graphs" / "mlp.yaml", "--remat", "cheap", "-o", out_svg)
    assert status == 0, err
    assert "peak" in out and "backward gets it" in out and "live bytes" in out
    root = ET.parse(out_svg).getroot()
    assert root.tag.endswith("svg") and root.findall(".//{http://www.w3.org/2000/svg}polyline")


def test_memory_solve_finds_the_largest_batch_that_fits(capsys):
    g = ROOT / "graphs" / "mlp.yaml"
    status, out, err = gtool_cli(capsys, "memory", g, "--budget", "4MiB", "--solve", "batch", "--format", "json")
    assert status == 0, err
    n = json.loads(out)["solved"]["size"]
    graph = gtool.load(g)
    # the measured peak: the size found fits, 10% more does not
    assert measured_peak(graph, feed(graph, {"batch": n}), None, {"batch": n}) <= 4 * 2**20 * 1.02
    m = int(n * 1.1) + 1
    assert measured_peak(graph, feed(graph, {"batch": m}), None, {"batch": m}) > 4 * 2**20


def test_memory_budget_exit_status(capsys):
    g = ROOT / "graphs" / "mlp.yaml"
    assert gtool_cli(capsys, "memory", g, "--budget", "1GiB")[0] == 0
    status, out, _ = gtool_cli(capsys, "memory", g, "--budget", "10KiB")
    assert status == 1 and "does not fit" in out
    assert gtool_cli(capsys, "memory", g, "--solve", "batch")[0] == 2
    assert gtool_cli(capsys, "memory", g, "--budget", "1GiB", "--solve", "nope")[0] == 2


def test_grad_remat_emits_recompute_nodes_and_the_same_gradients(capsys, tmp_path):
    f = tmp_path / "deep.yaml"
    f.write_text(mlp_yaml(9, 4, 3))
    emitted = tmp_path / "grad.yaml"
    plain = json.loads(gtool_cli(capsys, "grad", f, "--random-inputs", "--format", "json")[1])
    status, out, err = gtool_cli(capsys, "grad", f, "--random-inputs", "--remat", "sqrt", "--emit-graph", emitted,
                                 "--format", "json")
    assert status == 0, err
    assert json.loads(out) == plain
    assert "__remat_h0_1" in emitted.read_text()
    reloaded = gtool.load(emitted)
    assert any(n.startswith("__remat_") for n in reloaded.nodes)
    assert gtool_cli(capsys, "grad", f, "--remat", "nope", "--random-inputs")[0] == 2


# render and explain show the table ---------------------------------------------------------------------


def test_render_marks_stored_and_recomputed_values(capsys):
    g = ROOT / "graphs" / "mlp.yaml"
    status, out, err = gtool_cli(capsys, "render", g, "--remat", "cheap")
    assert status == 0, err
    lines = {line.split(" [")[0].strip(): line for line in out.splitlines() if " [label=" in line}
    assert "recomputed in the backward pass" in lines["h1"] and "#00897b" in lines["h1"]
    assert "saved for backward" in lines["__h1_1"]  # the matmul output: kept under `cheap`
    assert "recomputed" not in lines["__h1_1"]
    plain = gtool_cli(capsys, "render", g)[1]
    assert "recomputed" not in plain  # no policy, no marks
    status, out, err = gtool_cli(capsys, "render", g, "--backward", "--remat", "cheap")
    assert status == 0, err
    assert "__remat_h1_1 [label=" in out and "recomputes h1" in out


def test_explain_says_what_the_backward_pass_keeps_and_why(capsys):
    status, out, err = gtool_cli(capsys, "explain", ROOT / "graphs" / "fanout.yaml", "--format", "json")
    assert status == 0, err
    kept = next(s for s in json.loads(out)["steps"] if s["kind"] == "kept")["values"]
    # w = u^2 reads u (dw/du = 2u); z = u * y reads u (dz/dy = u); L = z + w reads nothing
    assert kept == [{"name": "u", "bytes": 8, "read_by": ["w", "z"]}]
    text = gtool_cli(capsys, "explain", ROOT / "graphs" / "fanout.yaml")[1]
    assert "u (8 bytes): read by w's VJP, z's VJP" in text


def test_memory_with_a_loss_expression(capsys):
    status, out, err = gtool_cli(capsys, "memory", ROOT / "graphs" / "mlp.yaml", "--loss", "sum(logits * logits)",
                                 "--format", "json")
    assert status == 0, err
    rows = {r["name"]: r for r in json.loads(out)["nodes"]}
    assert rows["logits"]["stored"]  # d(sum(l * l))/dl = 2 l reads logits, which cross_entropy's VJP did not need


def test_a_budget_for_value_and_grad_is_planned_at_the_inputs_sizes(tmp_path):
    """No `dims:` in the file: the batch comes from the data, as for the run itself."""
    f = tmp_path / "free.yaml"
    f.write_text(mlp_yaml(12, 64, 32).replace("dims:\n  batch: 64\n", ""))
    g = gtool.load(f)
    x = np.random.default_rng(0).normal(size=(512, 32))
    with pytest.raises(UsageError):  # without sizes there is no plan
        api.grad(g, remat="budget=1MiB")
    values = feed(g, {"batch": 512})
    values["x"] = x
    top = memory_report(g, remat="none", dims={"batch": 512}).peak_bytes
    loss, grads = api.value_and_grad(g, values, remat=f"budget={top * 3 // 4}")
    assert loss == api.value_and_grad(g, values)[0]
    assert measured_peak(g, values, f"budget={top * 3 // 4}") <= 1.1 * top * 3 // 4


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.integers(0, 50)), min_size=1, max_size=9), st.integers(1, 60))
def test_the_chain_dynamic_program_is_exact_for_its_model(items, budget):
    """Against every subset: the most FLOPs saved whose modelled peak fits (module docstring of
    gtool/memory/chain.py: segment (p, q) holds P(q) + the bytes strictly between p and q)."""
    from itertools import combinations

    from gtool.memory.chain import best_checkpoints

    sizes, costs = [s for s, _ in items], [c for _, c in items]
    n = len(sizes)

    def fits(picks):
        held, prev = 0, 0
        for q in [p + 1 for p in picks]:
            held += sizes[q - 1]
            if held + sum(sizes[prev:q - 1]) > budget:
                return False
            prev = q
        return True

    best = None
    for k in range(n):
        for rest in combinations(range(n - 1), k):
            picks = [*rest, n - 1]
            if fits(picks):
                saved = sum(costs[i] for i in picks)
                best = saved if best is None else max(best, saved)
    got = best_checkpoints(sizes, costs, budget)
    if best is None:
        assert got is None
    else:
        assert got is not None and got[-1] == n - 1 and fits(got)
        assert sum(costs[i] for i in got) == best
