"""graphs/transformer_block.yaml against a NumPy transcription of its formulas, grad-checked in
both modes and lint-clean; ONNX's losses lowered onto cross_entropy stay finite at logits of
1000 where the textbook log(softmax) is -inf (the near miss), with weights and ignore_index
against the hand-written definition."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import gtool
from gtool.gradcheck import grad_check
from gtool.lint import lint_graph

ROOT = Path(__file__).resolve().parent.parent
BLOCK = ROOT / "graphs" / "transformer_block.yaml"


def _layer_norm(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def _block(p, x):
    """The doc string's formulas, written out: masked logits as -1e30 (exp underflows to 0)."""
    h = _layer_norm(x, p["ln1_g"], p["ln1_b"])
    q, k, v = h @ p["Wq"], h @ p["Wk"], h @ p["Wv"]
    s = q @ k.transpose(0, 2, 1) / math.sqrt(8)
    s = np.where(np.tril(np.ones((4, 4), bool)), s, -1e30)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    r = x + (a @ v) @ p["Wo"]
    u = _layer_norm(r, p["ln2_g"], p["ln2_b"]) @ p["W1"] + p["b1"]
    gelu = u * 0.5 * (1 + np.vectorize(math.erf)(u / math.sqrt(2)))
    return r + gelu @ p["W2"] + p["b2"]


def _data(graph):
    rng = np.random.default_rng(3)
    params = {n: rng.normal(0, 0.4, tuple(d.value for d in t.type.shape)) for n, t in graph.tensors.items()
              if t.kind == "param"}
    return params, {"x": rng.normal(size=(2, 4, 8)), "target": rng.normal(size=(2, 4, 8))}


def test_transformer_block_matches_its_formulas_and_grad_checks():
    g = gtool.load(BLOCK)
    params, inputs = _data(g)
    out = gtool.run(g, {**inputs, **params})
    np.testing.assert_allclose(out["y"], _block(params, inputs["x"]), rtol=1e-12, atol=1e-12)
    for kw in ({"mode": "full"}, {"mode": "fast", "against": "forward"}):
        results = grad_check(g, {**inputs, **params}, **kw)
        assert len(results) == 12 and all(r.passed for r in results), [(r.target, r.passed) for r in results]
    assert lint_graph(g).findings == []


def test_transformer_block_forward_mode_agrees_with_reverse():
    g = gtool.load(BLOCK)
    params, inputs = _data(g)
    data = {**inputs, **params}
    _, grads = gtool.value_and_grad(g, data, wrt=["x", "Wq", "ln2_g"])
    _, fwd = gtool.forward_mode_grad(g, data, wrt=["x", "Wq", "ln2_g"])
    for name in ("x", "Wq", "ln2_g"):
        np.testing.assert_allclose(fwd[name], grads[name], rtol=1e-10, atol=1e-13)


# ONNX losses ---------------------------------------------------------------------------------

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _loss_model(tmp_path, op: str, n_cls: int, rows: int, **attrs) -> Path:
    weights = attrs.pop("weights", None)
    inputs = [helper.make_tensor_value_info("s", TensorProto.DOUBLE, [rows, n_cls]),
              helper.make_tensor_value_info("t", TensorProto.INT64, [rows])]
    names = ["s", "t"]
    inits = []
    if weights is not None:
        inits.append(helper.make_tensor("w", TensorProto.DOUBLE, [n_cls], weights))
        names.append("w")
    node = helper.make_node(op, names, ["loss"], **attrs)
    graph = helper.make_graph([node], "loss", inputs, [helper.make_tensor_value_info("loss", TensorProto.DOUBLE, [])],
                              initializer=inits)
    path = tmp_path / f"{op}.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


def test_softmax_cross_entropy_is_finite_at_logits_of_1000(tmp_path):
    g = gtool.load(_loss_model(tmp_path, "SoftmaxCrossEntropyLoss", 3, 2))
    s = np.array([[1000.0, -1000.0, 0.0], [0.0, 1000.0, 1000.0]])
    t = np.array([1, 0])
    value, grads = gtool.value_and_grad(g, {"s": s, "t": t}, wrt=["s"], of="loss")
    assert value == pytest.approx((2000.0 + 1000.0 + math.log(2)) / 2, rel=1e-15)
    want = np.array([[1.0, -1.0, 0.0], [-1.0, 0.5, 0.5]]) / 2  # (softmax - one_hot) / rows
    np.testing.assert_allclose(grads["s"], want, atol=1e-300)
    with np.errstate(all="ignore"):  # the near miss: log of the softmax underflows to log(0)
        naive = -np.log(np.exp(s) / np.exp(s).sum(-1, keepdims=True))[np.arange(2), t]
    assert not np.all(np.isfinite(naive))


@pytest.mark.parametrize("op", ["SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_weights_and_ignore_index_against_the_definition(tmp_path, op, reduction):
    w = [0.5, 2.0, 1.0, 3.0]
    path = _loss_model(tmp_path, op, 4, 5, weights=w, ignore_index=-1, reduction=reduction)
    rng = np.random.default_rng(1)
    s = rng.normal(size=(5, 4))
    t = np.array([2, -1, 0, 3, -1])
    logp = s - np.log(np.exp(s).sum(-1, keepdims=True)) if op.startswith("Softmax") else s
    keep = t != -1
    wt = np.where(keep, np.asarray(w)[np.where(keep, t, 0)], 0.0)
    per = -logp[np.arange(5), np.where(keep, t, 0)] * wt
    want = {"none": per, "sum": per.sum(), "mean": per.sum() / wt.sum()}[reduction]
    got = gtool.run(gtool.load(path), {"s": s, "t": t})["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-13)
