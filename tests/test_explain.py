"""gtool explain: the lesson's backward pass, with numbers from the gradient graph.

The fan-out example must read "dL/dy = 3 (via z) + 8 (via u) = 11" and "dL/dx = 8"; the other
lesson graphs must match the closed forms written in their `doc` (checked here at the file's
values and at other values, so the test is not just the doc's numbers).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import gtool
from gtool import explain as ex
from gtool.cli import main

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = ROOT / "graphs"


def doc_of(name: str, **kw) -> dict:
    return ex.explain(gtool.load(GRAPHS / name), kw.pop("inputs", None), **kw)


def results(doc: dict) -> dict[str, np.ndarray]:
    return {s["name"]: np.asarray(s["value"]) for s in doc["steps"] if s["kind"] == "result"}


def step(doc: dict, kind: str, **match) -> dict:
    found = [s for s in doc["steps"] if s["kind"] == kind and all(s.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (kind, match, found)
    return found[0]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


# the fan-out example -----------------------------------------------------------------------------


def test_fanout_text_reads_like_the_lesson(capsys):
    code, text, _ = run_cli(capsys, "explain", str(GRAPHS / "fanout.yaml"))
    assert code == 0
    assert "dL/dy = 3 (via z) + 8 (via u) = 11" in text
    assert "\n  dL/dx = 8\n" in text
    assert "fan-out at u (used by w, z): dL/du = 6 (via w) + 2 (via z) = 8" in text
    assert "u = x + y = 1 + 2 = 3" in text  # forward values in order
    assert text.index("Forward pass") < text.index("Backward pass") < text.index("Gradients:")
    # reverse order: L, then w and z, then u
    back = text[text.index("Backward pass"):]
    assert back.index("  L = z + w   (add)") < back.index("  w = u ** 2   (pow)") < back.index("  z = u * y   (mul)") \
        < back.index("  u = x + y   (add)")
    assert "dz/du = y = 2" in text and "dL/du via z = g · dz/du = 1 · 2 = 2" in text


def test_fanout_numbers_in_json(capsys):
    code, out, _ = run_cli(capsys, "explain", str(GRAPHS / "fanout.yaml"), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    y = step(doc, "result", name="y")
    assert y["value"] == 11
    assert [(p["via"], p["value"]) for p in y["parts"]] == [("z", 3), ("u", 8)]
    assert step(doc, "result", name="x")["value"] == 8
    z = step(doc, "backprop", node="z")
    assert z["upstream"] == 1
    assert [(i["name"], i["local"]["value"], i["contribution"]) for i in z["inputs"]] == [("u", 2, 2), ("y", 3, 3)]
    assert [s["value"] for s in doc["steps"] if s["kind"] == "forward"] == [1, 2, 3, 6, 9, 15]


def test_other_inputs_change_the_numbers():
    doc = doc_of("fanout.yaml", inputs={"x": 2.0, "y": -1.0})
    r = results(doc)
    assert r["x"] == pytest.approx(2 * 2 + 3 * -1)  # dL/dx = 2x + 3y
    assert r["y"] == pytest.approx(3 * 2 + 4 * -1)  # dL/dy = 3x + 4y


def test_wrt_an_intermediate():
    r = results(doc_of("fanout.yaml", wrt=["u"]))
    assert r == {"u": pytest.approx(8.0)}  # dL/du = y + 2u


# the lesson graphs against their closed forms ------------------------------------------------------

SCALAR = {  # file -> (inputs, {name: closed form})
    "exercise_ab.yaml": [{"x": 1.5, "y": -0.5}, {"x": -0.3, "y": 2.0}],
    "exercise_vw.yaml": [{"u": 1.5}, {"u": -0.7}],
    "sum_times_y.yaml": [{"x": 1.0, "y": 2.0}, {"x": 0.25, "y": -3.0}],
    "sin_chain.yaml": [{"x": 0.5, "y": 2.0}, {"x": -1.2, "y": 0.3}],
    "fanout.yaml": [{"x": 1.0, "y": 2.0}, {"x": 0.5, "y": 0.5}],
}
CLOSED = {
    "exercise_ab.yaml": lambda x, y: {"x": 2 * y ** 2 * (x + 1), "y": 2 * y * (x + 1) ** 2},
    "exercise_vw.yaml": lambda u: {"u": 9 * u ** 2},
    "sum_times_y.yaml": lambda x, y: {"x": y, "y": x + 2 * y},
    "sin_chain.yaml": lambda x, y: {"x": y * math.cos(x * y), "y": x * math.cos(x * y) + 1},
    "fanout.yaml": lambda x, y: {"x": 2 * x + 3 * y, "y": 3 * x + 4 * y},
}


@pytest.mark.parametrize("name", sorted(SCALAR))
def test_scalar_lesson_graphs_match_their_closed_forms(name):
    for inputs in SCALAR[name]:
        doc = doc_of(name, inputs=inputs)
        want = CLOSED[name](**inputs)
        got = results(doc)
        assert set(got) == set(want)
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-12), (name, inputs, k)
            s = [x for x in doc["steps"] if x["kind"] == "result" and x["name"] == k][0]
            if s["parts"]:  # the parts of a fan-out add up to the total
                assert sum(p["value"] for p in s["parts"]) == pytest.approx(got[k])


def test_exercise_vw_shows_both_branches(capsys):
    _, text, _ = run_cli(capsys, "explain", str(GRAPHS / "exercise_vw.yaml"))
    assert "dL/du = 6.75 (via w) + 13.5 (via v) = 20.25" in text  # v * 3 via w, w * 2u via v


def test_tensor_lesson_graphs_match_their_closed_forms():
    W, x, b, t = np.array([[1.0, 2, 0], [0, -1, 3]]), np.array([1.0, 0.5, -1]), np.array([0.5, -0.5]), np.array([1.0, -2])
    e = W @ x + b - t
    r = results(doc_of("linear_mse.yaml"))
    np.testing.assert_allclose(r["W"], np.outer(e, x))  # dL/dW = e x^T
    np.testing.assert_allclose(r["b"], e)
    np.testing.assert_allclose(results(doc_of("linear_mse.yaml", wrt=["x"]))["x"], W.T @ e)  # [1.5, 5, -6]

    W, x, b = np.array([[1.0, 0.5], [-1, 1], [0.5, -0.25]]), np.array([1.0, -2]), np.array([0.25, 1, -0.5])
    m = (W @ x + b > 0).astype(float)
    r = results(doc_of("relu_layer.yaml"))
    np.testing.assert_allclose(r["W"], np.outer(m, x))  # dL/dW = m x^T
    np.testing.assert_allclose(r["b"], m)
    np.testing.assert_allclose(results(doc_of("relu_layer.yaml", wrt=["x"]))["x"], W.T @ m)

    s = np.array([1.0, 2, 0.5, -1])
    p = np.exp(s) / np.exp(s).sum()
    for name in ("softmax_logprob_naive.yaml", "softmax_logprob_stable.yaml"):
        np.testing.assert_allclose(results(doc_of(name))["s"], p - [0, 1, 0, 0], atol=1e-12)

    r = results(doc_of("broadcast_affine.json"))  # numbers written in its doc
    np.testing.assert_allclose(r["b"], [0.3699600444828687, 0.3340763392203225], rtol=1e-12)
    np.testing.assert_allclose(r["W"], [[0.12566235591277394, 0.15326999063418476], [0.3360592327011779, 0.24758957294778056],
                                        [0.13182806745278633, 0.02061701286650215]], rtol=1e-12)


def test_tensor_ops_show_the_vjp_with_shapes(capsys):
    _, text, _ = run_cli(capsys, "explain", str(GRAPHS / "linear_mse.yaml"))
    assert "dL/dW via u = g xᵀ = [[1.5, 0.75, -1.5], [-2, -1, 2]]   (g [2], x [3] -> [2, 3])" in text
    _, text, _ = run_cli(capsys, "explain", str(GRAPHS / "mlp.yaml"), "--random-inputs", "--dim", "batch=4")
    assert "dL/dW2 via __logits_1 = h1ᵀ g" in text and "(g [batch, 10], h1 [batch, 128] -> [128, 10])" in text
    assert "dL/db1 via __h1_2 = sum_to(g, [128])" in text
    assert "(softmax(logits) - one_hot(t)) ⊙ g / n" in text


def test_a_value_used_twice_by_one_node(load_text):
    graph = load_text("gtool: 1\ninputs: {x: {shape: [], value: 3.0}}\nnodes:\n  L: x * x\noutputs: [L]\n")
    doc = ex.explain(graph)
    s = step(doc, "backprop", node="L")
    assert [(i["name"], i["local"]["value"]) for i in s["inputs"]] == [("x", 3.0), ("x", 3.0)]
    assert step(doc, "sum", name="x")["value"] == 6.0
    assert "dL/dx = 3 (via L) + 3 (via L) = 6" in ex.to_text(doc)


# the closed form -------------------------------------------------------------------------------------


def test_symbolic_closed_form():
    pytest.importorskip("sympy")
    s = step(doc_of("fanout.yaml"), "symbolic")
    assert {g["name"]: g["expr"] for g in s["gradients"]} == {"x": "2*x + 3*y", "y": "3*x + 4*y"}
    assert all(g["agrees"] for g in s["gradients"])
    s = step(doc_of("exercise_vw.yaml"), "symbolic")
    assert s["gradients"][0]["expr"] == "9*u**2" and s["gradients"][0]["value"] == pytest.approx(20.25)
    assert "none (the graph has tensor values)" in step(doc_of("linear_mse.yaml"), "symbolic")["note"]


def test_without_sympy_a_note(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sympy", None)  # import sympy now raises ImportError
    code, text, _ = run_cli(capsys, "explain", str(GRAPHS / "fanout.yaml"))
    assert code == 0 and "dL/dy = 3 (via z) + 8 (via u) = 11" in text
    assert "Closed form: skipped (sympy is not installed" in text


def test_errors_exit_2(capsys, load_text, tmp_path):
    code, _, err = run_cli(capsys, "explain", str(GRAPHS / "fanout.yaml"), "--wrt", "q")
    assert code == 2 and "no value named 'q'" in err
    p = tmp_path / "vec.yaml"
    p.write_text("gtool: 1\ninputs: {x: [3]}\nnodes:\n  y: x * 2\noutputs: [y]\n")
    code, _, err = run_cli(capsys, "explain", str(p), "--input", "x=[1,2,3]")
    assert code == 2 and "scalar" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "explain", str(GRAPHS / "mlp.yaml"))
    assert code == 2 and "'x'" in err


def test_a_contribution_that_only_feeds_stop_gradient(load_text):
    """dL/ds exists but flows nowhere: explain still shows it (it is not pruned as dead)."""
    graph = load_text("gtool: 1\ninputs: {x: {shape: [], value: 2.0}, y: {shape: [], value: 3.0}}\n"
                      "nodes:\n  a: x * y\n  s: stop_gradient(a)\n  L: s * x + a\noutputs: [L]\n")
    doc = ex.explain(graph)
    assert step(doc, "backprop", node="s")["inputs"] == []
    assert step(doc, "backprop", node="s")["upstream"] == 2.0  # dL/ds = x
    r = results(doc)
    assert r["x"] == pytest.approx(3 * 2 + 3)  # s (held fixed) + y
    assert r["y"] == pytest.approx(2.0)
    assert "no gradient flows through stop_gradient" in ex.to_text(doc)


# long chains (issue 10: explain on a 20,000-node chain ran past a minute) --------------------------


def _chain(tmp_path, n: int, factor: float = 0.99) -> Path:
    lines = ["gtool: 1", "inputs:", "  x: {shape: [], value: 1.5}", "nodes:"]
    prev = "x"
    for i in range(n):
        lines.append(f"  h{i}: {prev} * {factor}")
        prev = f"h{i}"
    lines += [f"  L: {prev} * 1.0", "outputs: [L]", "loss: L"]
    path = tmp_path / f"chain{n}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _counted(monkeypatch) -> dict[str, int]:
    """Count the runs explain makes: one-node VJPs (`_local_partials`) and graph executions."""
    calls = {"local": 0, "execute": 0}
    local, execute = ex._local_partials, ex.interp.execute

    def counting_local(*a, **k):
        calls["local"] += 1
        return local(*a, **k)

    def counting_execute(*a, **k):
        calls["execute"] += 1
        return execute(*a, **k)

    monkeypatch.setattr(ex, "_local_partials", counting_local)
    monkeypatch.setattr(ex.interp, "execute", counting_execute)
    return calls


@pytest.mark.parametrize("n", [120, 400])
def test_a_long_chain_is_summarised_with_a_bounded_number_of_runs(tmp_path, monkeypatch, n):
    calls = _counted(monkeypatch)
    doc = ex.explain(gtool.load(_chain(tmp_path, n)), None)
    # the same work for 120 and 400 nodes: 2 * DETAIL steps in full, whatever the length
    assert calls["local"] == 2 * ex.DETAIL
    assert calls["execute"] == 2 * ex.DETAIL + 2  # plus the forward run and the gradient graph's
    kinds = [s["kind"] for s in doc["steps"]]
    assert kinds.count("backprop") == 2 * ex.DETAIL and kinds.count("forward") == 2 * ex.DETAIL
    back = step(doc, "omitted", phase="backward")
    assert back["count"] == n + 1 - 2 * ex.DETAIL and back["ops"] == {"mul": back["count"]}
    # the numbers are still the gradient graph's: dL/dx = 0.99^n, and dL/dh_k = 0.99^(n-1-k)
    np.testing.assert_allclose(results(doc)["x"], 0.99 ** n, rtol=1e-12)
    k = int(back["first"][1:])
    np.testing.assert_allclose(back["upstream"][0], 0.99 ** (n - 1 - k), rtol=1e-12)
    text = ex.to_text(doc)
    assert f"... {back['count']} more nodes, {back['first']} back to {back['last']} (mul x{back['count']})" in text
    assert ("Closed form: skipped" in text) == (n > ex.SYMBOLIC_MAX_NODES)


def test_a_chain_just_short_enough_is_shown_in_full(tmp_path, monkeypatch):
    calls = _counted(monkeypatch)
    n = 2 * ex.DETAIL  # n + 1 backprop steps (L too): the longest backward pass shown whole
    doc = ex.explain(gtool.load(_chain(tmp_path, n)), None)
    assert not [s for s in doc["steps"] if s["kind"] == "omitted" and s["phase"] == "backward"]
    assert calls["local"] == n + 1
    n += 1  # the near miss: one more node, and the middle is summarised
    doc = ex.explain(gtool.load(_chain(tmp_path, n)), None)
    assert step(doc, "omitted", phase="backward")["count"] == n + 1 - 2 * ex.DETAIL


def test_a_wide_fan_out_sum_is_printed_short(tmp_path):
    terms = " + ".join(f"w * {k}" for k in range(1, 21))  # dL/dw = 1 + 2 + ... + 20 = 210
    path = tmp_path / "fan.yaml"
    path.write_text(f"gtool: 1\ninputs:\n  w: {{shape: [], value: 2.0}}\nnodes:\n  L: {terms}\noutputs: [L]\nloss: L\n")
    doc = ex.explain(gtool.load(path), None)
    assert float(results(doc)["w"]) == 210.0
    text = ex.to_text(doc)
    line = next(t for t in text.splitlines() if t.startswith("  dL/dw = "))
    assert "... (12 more) + " in line and line.endswith("= 210")
