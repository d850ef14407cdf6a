"""Size-0 dims: every built-in op on tensors with an empty axis, as NumPy and ONNX define them.

The cases come from tests/op_cases.py: each case's size values are replaced by 0 one at a
time (in the input shapes and a `shape` attr), and a variant is kept where the independent
reference forward (op_cases.REFERENCE, never gtool's kernel) accepts it. Then:
(a) the loaded graph's inferred type is the forward's, and the forward equals the reference;
(b) the VJP of sum(out * R) has each input's shape and dtype and equals central differences
(an empty array, or zeros for a non-empty input whose output is empty); the JVP has the
output's shape; (c) lint and grad-check run without crashing.
Reductions over an empty axis give their identities (ONNX's ReduceX `*_empty_set` tests):
sum 0, max -inf, min +inf (the dtype's extremes for ints), logsumexp -inf, mean NaN.
"""

from __future__ import annotations

import json
import math
import warnings
import zlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from op_cases import CASES, REFERENCE, Case, central_diff

import gtool
from gtool.errors import GraphError, UsageError
from gtool.lint import lint_graph
from gtool.ops import REGISTRY
from gtool.validate import types_of

_SHAPE_ATTRS = ("shape",)  # attrs holding sizes that follow the inputs (reshape, broadcast_to)


def _axes(attrs: dict, ndim: int) -> tuple[int, ...]:
    ax = attrs.get("axis")
    if ax is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in ([ax] if isinstance(ax, int) else ax))


def _extreme(top: bool):
    """max (top False) / min (top True) by sorting, with ONNX's identity where nothing is reduced."""

    def ref(x, axis=None, keepdims=False):
        axes = _axes({"axis": axis}, x.ndim)
        shape = [1 if k in axes else d for k, d in enumerate(x.shape)]
        if math.prod(x.shape[a] for a in axes) == 0:
            out = np.full(shape, np.inf if top else -np.inf)
        else:
            out = np.moveaxis(x, axes, range(x.ndim - len(axes), x.ndim)).reshape(
                [d for k, d in enumerate(x.shape) if k not in axes] + [-1])
            out = np.sort(out, axis=-1)[..., 0 if top else -1].reshape(shape)
        return out if keepdims else out.reshape([d for k, d in enumerate(x.shape) if k not in axes])

    return ref


_REF = {**REFERENCE, "max": _extreme(False), "min": _extreme(True)}


def _reference(case: Case, arrays: dict):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.asarray(_REF[case.op](*arrays.values(), **case.attrs))


def _variant(case: Case, size: int) -> Case:
    """The case with every dim of `size` (in the inputs and a `shape` attr) made 0."""
    inputs = tuple(replace(i, shape=tuple(0 if d == size else d for d in i.shape)) for i in case.inputs)
    attrs = {k: ([0 if d == size else d for d in v] if k in _SHAPE_ATTRS else v) for k, v in case.attrs.items()}
    return replace(case, inputs=inputs, attrs=attrs)


def _empty_cases() -> list[Case]:
    """One empty variant per case (which size becomes 0 rotates with the case, so that across
    an op's cases the batch, inner and reduced axes all get their turn; all of them would
    double the suite's time for little more)."""
    out, seen = [], set()
    for name in sorted(REGISTRY):
        if REGISTRY[name].plugin is not None or not REGISTRY[name].infer.__module__.startswith("gtool."):
            continue
        for case in CASES.get(name, []):
            valid = []
            for size in sorted({d for i in case.inputs for d in i.shape if d > 1}):
                v = _variant(case, size)
                if v.id in seen:
                    continue
                try:
                    _reference(v, v.arrays())
                except (ValueError, IndexError, TypeError, ArithmeticError):
                    continue  # not a valid case once empty (a reshape of 0 elements to [2, 3], ...)
                valid.append(v)
            if valid:
                v = valid[zlib.crc32(case.id.encode()) % len(valid)]
                seen.add(v.id)
                out.append(v)
    return out


EMPTY_CASES = _empty_cases()
_IDS = [c.id for c in EMPTY_CASES]


def test_every_op_has_an_empty_case():
    """The near miss: an op left out of the variants would go untested on empty tensors."""
    covered = {c.op for c in EMPTY_CASES}
    missing = sorted(n for n, op in REGISTRY.items() if op.plugin is None and op.infer.__module__.startswith("gtool.")
                     and n not in covered)
    assert not missing, missing


def _load(case: Case, load_text, **kw):
    return load_text(case.graph_text(**kw))


_WINDOWED = ("convolution", "pooling")


def _load_or_refused(case: Case, load_text):
    """The graph, or None where a window op refuses an empty spatial axis or kernel at load (the
    mpmath references are more lenient than ONNX and torch there): a located shape-mismatch."""
    try:
        return _load(case, load_text)
    except GraphError as e:
        d = e.diagnostics[0]
        if REGISTRY[case.op].group not in _WINDOWED or d.code != "shape-mismatch" or d.line is None:
            raise
        return None


@pytest.mark.parametrize("case", EMPTY_CASES, ids=_IDS)
def test_empty_tensors(case, load_text):
    g = _load_or_refused(case, load_text)
    if g is None:
        return
    _forward(case, g)
    if case.differentiable:
        _gradients(case, g, load_text)


def _forward(case: Case, g) -> None:
    x = case.arrays()
    out = gtool.run(g, x)["out"]
    t = types_of(g)["out"]
    assert out.shape == tuple(d.evaluate({}) for d in t.shape) and str(out.dtype) == t.dtype
    want = _reference(case, x)
    assert out.shape == want.shape
    if out.dtype.kind == "f":
        np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12, equal_nan=True)
    else:
        np.testing.assert_array_equal(out, want)
    report = lint_graph(g)  # interval rules see empty constants and shapes: no crash
    assert report is not None


DIFF = [c for c in EMPTY_CASES if c.differentiable]


def _gradients(case: Case, g, load_text) -> None:
    x = case.arrays()
    out = gtool.run(g, x)["out"]
    R = np.random.default_rng(3).standard_normal(out.shape)
    lossg = _load(case, load_text, extra_inputs={"R": out.shape}, loss="sum(out * R)")
    wrt = case.float_names()
    loss, grads = gtool.value_and_grad(lossg, {**x, "R": R}, wrt=wrt)

    def phi(values):
        with np.errstate(all="ignore"):
            return float(np.sum(np.asarray(gtool.run(g, values)["out"], np.float64) * R))

    np.testing.assert_allclose(loss, phi(x), rtol=1e-9, atol=1e-12, equal_nan=True)  # inf, NaN: max, mean of nothing
    fd = central_diff(phi, x, wrt, case.eps)
    for n in wrt:
        assert grads[n].shape == x[n].shape and grads[n].dtype == x[n].dtype, n
        np.testing.assert_allclose(grads[n], fd[n], rtol=case.tol, atol=case.tol, err_msg=n)
    tg = gtool.jvp(g, wrt=wrt, of=["out"])
    tan = gtool.run(tg, {**x, **{f"__tan_{n}": np.ones_like(x[n]) for n in wrt}})["__tan_out"]
    assert tan.shape == out.shape


_CHECKED = [c for c in DIFF if c.op in ("matmul", "sum", "max", "softmax", "broadcast_to", "concat", "layer_norm")]


@pytest.mark.parametrize("case", _CHECKED[:12], ids=[c.id for c in _CHECKED[:12]])
def test_grad_check_runs_on_empty_tensors(case, load_text):
    out_shape = tuple(d.evaluate({}) for d in types_of(_load(case, load_text))["out"].shape)
    lossg = _load(case, load_text, extra_inputs={"R": out_shape}, loss="sum(out * R)")
    x = case.arrays()
    x["R"] = np.ones(out_shape)
    results = gtool.grad_check(lossg, x, wrt=case.float_names())
    assert results and all(r.passed for r in results), results


# reductions over an empty axis: the identities ----------------------------------------------------


@pytest.mark.parametrize("dtype, top, bottom", [("float64", np.inf, -np.inf), ("float32", np.inf, -np.inf),
                                                ("int32", 2**31 - 1, -2**31), ("int64", 2**63 - 1, -2**63),
                                                ("uint8", 255, 0), ("bool", True, False)])
def test_max_and_min_of_nothing_are_onnx_identities(dtype, top, bottom, load_text):
    g = load_text(f"gtool: 1\ninputs:\n  x: {{shape: [2, 0], dtype: {dtype}}}\n"
                  "nodes:\n  hi: {op: max, inputs: [x], attrs: {axis: 1}}\n"
                  "  lo: {op: min, inputs: [x], attrs: {axis: 1, keepdims: true}}\noutputs: [hi, lo]\n")
    out = gtool.run(g, {"x": np.zeros((2, 0), dtype)})
    assert out["hi"].dtype == dtype and out["hi"].shape == (2,)
    assert out["lo"].dtype == dtype and out["lo"].shape == (2, 1)
    assert (out["hi"] == bottom).all() and (out["lo"] == top).all()


def test_sums_of_nothing(load_text):
    g = load_text("gtool: 1\ninputs:\n  x: {shape: [3, 0]}\n  k: {shape: [0], dtype: int32}\n"
                  "nodes:\n  s: sum(x, axis=1)\n  m: mean(x, axis=1)\n  l: logsumexp(x, axis=1)\n"
                  "  c: sum(k)\n  all: sum(x)\noutputs: [s, m, l, c, all]\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice" from a run
        out = gtool.run(g, {"x": np.zeros((3, 0)), "k": np.zeros(0, np.int32)})
    np.testing.assert_array_equal(out["s"], [0.0, 0.0, 0.0])
    assert np.isnan(out["m"]).all() and out["m"].shape == (3,)  # 0 / 0, as NumPy and onnx.reference
    np.testing.assert_array_equal(out["l"], [-np.inf] * 3)
    assert out["c"] == 0 and out["c"].dtype == np.int32 and out["all"] == 0.0


def test_matmul_with_an_empty_inner_dim_is_zeros(load_text):
    g = load_text("gtool: 1\ninputs:\n  a: {shape: [2, 0]}\n  b: {shape: [0, 3]}\nnodes:\n  y: a @ b\n"
                  "  L: sum(y)\noutputs: [y, L]\nloss: L\n")
    a, b = np.zeros((2, 0)), np.zeros((0, 3))
    y = gtool.run(g, {"a": a, "b": b})["y"]
    np.testing.assert_array_equal(y, np.zeros((2, 3)))
    _, grads = gtool.value_and_grad(g, {"a": a, "b": b}, wrt=["a", "b"])
    assert grads["a"].shape == (2, 0) and grads["b"].shape == (0, 3)


# files, --dim and data ----------------------------------------------------------------------------


GRAPH = """gtool: 1
dims: {n: 4}
inputs:
  x: {shape: [n, 3]}
params:
  w: {shape: [3, 2], init: {normal: {std: 0.1}}}
nodes:
  h: x @ w
  p: softmax(h, axis=1)
  L: sum(p * p)
outputs: [L]
loss: L
"""


def _cli(capsys, *args) -> tuple[int, str, str]:
    from gtool.cli import main

    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_a_dim_bound_to_zero_from_the_command_line(tmp_path, capsys):
    path = tmp_path / "g.yaml"
    path.write_text(GRAPH)
    code, out, _ = _cli(capsys, "run", path, "--dim", "n=0", "--random-inputs", "--format", "json")
    assert code == 0 and json.loads(out)["outputs"]["L"]["value"] == 0.0
    code, out, _ = _cli(capsys, "grad", path, "--dim", "n=0", "--random-inputs", "--format", "json")
    assert code == 0, out
    code, _, err = _cli(capsys, "run", path, "--dim", "n=-1", "--random-inputs")
    assert code == 2 and "non-negative" in err  # the near miss: -1 is not a size


def test_a_zero_dim_in_a_file_and_in_data(load_text):
    g = load_text(GRAPH.replace("{n: 4}", "{n: 0}"))
    x = np.zeros((0, 3))
    assert gtool.run(g, {"x": x})["L"] == 0.0 and [str(d) for d in types_of(g)["h"].shape] == ["n", "2"]
    loss, grads = gtool.value_and_grad(g, {"x": x}, wrt=["w"])
    assert loss == 0.0 and grads["w"].shape == (3, 2) and not grads["w"].any()
    g2 = load_text(GRAPH.replace("dims: {n: 4}\n", ""))  # n free: bound by the data
    loss, grads = gtool.value_and_grad(g2, {"x": np.zeros((0, 3))}, wrt=["w", "x"])
    assert loss == 0.0 and grads["x"].shape == (0, 3)
    with pytest.raises(UsageError, match="non-negative"):
        gtool.run(g, {"x": x}, dims={"n": -2})


def test_constants_with_an_empty_axis(load_text):
    g = load_text("gtool: 1\ninputs:\n  x: {shape: [2]}\nconstants:\n  e: {value: [[], []]}\n"
                  "nodes:\n  y: concat(reshape(e, shape=[0]), x)\n  s: sum(e, axis=1)\noutputs: [y, s]\n")
    out = gtool.run(g, {"x": np.array([1.0, 2.0])})
    np.testing.assert_array_equal(out["y"], [1.0, 2.0])
    np.testing.assert_array_equal(out["s"], [0.0, 0.0])


@pytest.mark.parametrize("text, code", [
    ("x: {shape: [-1]}", "bad-dim"),            # a negative size
    ("x: {shape: ['2 - 3']}", "bad-dim"),       # an expression that is a negative constant
])
def test_negative_dims_are_still_refused(text, code, load_text):
    with pytest.raises(GraphError) as e:
        load_text(f"gtool: 1\ninputs:\n  {text}\nnodes:\n  y: x * 2\noutputs: [y]\n")
    assert e.value.diagnostics[0].code == code


def test_broadcasting_zero_with_one_and_with_five(load_text):
    g = load_text("gtool: 1\ninputs:\n  a: {shape: [0, 3]}\n  b: {shape: [1, 3]}\nnodes:\n  y: a + b\noutputs: [y]\n")
    assert types_of(g)["y"].shape == (0, 3)
    with pytest.raises(GraphError) as e:  # 0 with 5: a mismatch, as in NumPy
        load_text("gtool: 1\ninputs:\n  a: {shape: [0, 3]}\n  b: {shape: [5, 3]}\nnodes:\n  y: a + b\noutputs: [y]\n")
    assert e.value.diagnostics[0].code == "shape-mismatch"



# convolution and pooling: empty batches and channels run, empty windows are refused -------------------


def _conv_graph(x, w, extra=""):
    return (f"gtool: 1\ninputs:\n  x: {{shape: {x}}}\n  w: {{shape: {w}}}\n  b: {{shape: [{w[0]}]}}\n"
            f"nodes:\n  y: {{op: conv, inputs: [x, w, b]{extra}}}\n"
            "  p: {op: max_pool, inputs: [y], attrs: {kernel: 2}}\n"
            "  a: {op: avg_pool, inputs: [y], attrs: {kernel: 2, padding: 1, count_include_pad: true}}\n"
            "  L: sum(p) + sum(a)\noutputs: [y, p, a, L]\nloss: L\n")


@pytest.mark.parametrize("x, w", [([0, 2, 5, 5], [3, 2, 2, 2]),   # no images
                                  ([2, 0, 5, 5], [3, 0, 2, 2]),   # no input channels: the bias alone
                                  ([2, 2, 5, 5], [0, 2, 2, 2])])  # no filters
def test_conv_and_pools_on_empty_batches_and_channels(x, w, load_text):
    g = load_text(_conv_graph(x, w))
    rng = np.random.default_rng(0)
    feed = {"x": rng.standard_normal(x), "w": rng.standard_normal(w), "b": rng.standard_normal(w[0])}
    out = gtool.run(g, feed)
    want = np.broadcast_to(feed["b"][:, None, None], (x[0], w[0], 4, 4))  # a sum of nothing, plus the bias
    np.testing.assert_array_equal(out["y"], want)
    assert out["p"].shape == (x[0], w[0], 2, 2) and out["a"].shape == (x[0], w[0], 3, 3)
    _, grads = gtool.value_and_grad(g, feed, wrt=["x", "w", "b"])
    for n in ("x", "w", "b"):
        assert grads[n].shape == feed[n].shape
    assert not grads["w"].any() and not grads["x"].any()
    results = gtool.grad_check(g, feed, wrt=["x", "w", "b"])
    assert results and all(r.passed for r in results), results
    # d/db: each image's 4 max-pool windows pick one cell each, and its 16 cells are each in one
    # average window (divided by 4)
    np.testing.assert_allclose(grads["b"], np.full(w[0], x[0] * (4 + 16 / 4)))


@pytest.mark.parametrize("x, w, what", [([1, 2, 0, 5], [3, 2, 2, 2], "is empty (size 0)"),
                                        ([1, 2, 5, 5], [3, 2, 0, 2], "at least 1")])
def test_empty_windows_are_refused(x, w, what, load_text):
    with pytest.raises(GraphError) as e:
        load_text(_conv_graph(x, w))
    d = e.value.diagnostics[0]
    assert d.code == "shape-mismatch" and what in d.message and d.node == "y"


def test_numba_runs_empty_tensors_as_numpy_does(load_text):
    """The fused loops and row kernels of the numba backend on an empty axis: the reductions'
    identities and an empty softmax, from compiled code (no fallback to NumPy); the same graph
    with n = 3 is the near miss that a skipped loop would get wrong. (A script over every case
    of the forward test above found numba equal to NumPy on all of them.)"""
    pytest.importorskip("numba")
    from gtool import interp

    g = load_text("gtool: 1\ninputs:\n  x: {shape: [n, 4]}\nnodes:\n  y: exp(x) * 2 + 1\n  m: max(y, axis=0)\n"
                  "  s: min(x, axis=0)\n  l: logsumexp(x, axis=0)\n  p: softmax(x, axis=0)\n"
                  "  L: sum(p * y)\noutputs: [m, s, l, p, L]\nloss: L\n")
    for n in (0, 3):
        x = np.random.default_rng(n).standard_normal((n, 4))
        want = gtool.run(g, {"x": x})
        got = gtool.run(g, {"x": x}, backend="numba")
        for k in ("m", "s", "l", "p", "L"):
            assert got[k].shape == want[k].shape, k
            np.testing.assert_allclose(got[k], want[k], rtol=1e-14, atol=0, err_msg=k)
        c = interp.program(g, backend="numba").compiled
        assert c.fallback_runs == 0, f"compiled code failed: {c.last_error!r}"
    np.testing.assert_array_equal(gtool.run(g, {"x": np.zeros((0, 4))}, backend="numba")["m"], [-np.inf] * 4)


def test_rewrites_and_their_verification_on_an_empty_axis(load_text):
    """The stable rewrites apply to empty tensors, and `verify` runs both sides (and the mpmath
    references of softmax, logsumexp, max and mean rows) on them: before, an empty row crashed it."""
    from gtool.rewrite import rewrite
    from gtool.rewrite.checks import verify

    g = load_text("gtool: 1\ninputs:\n  x: {shape: [0, 3]}\nnodes:\n  p: log(softmax(x, axis=0))\n"
                  "  q: log(sum(exp(x), axis=0))\n  L: sum(p) + sum(q) + sum(mean(x, axis=0))\noutputs: [L]\nloss: L\n")
    result = rewrite(g, record=True)
    assert sorted(a.rule for a in result.applied) == ["log_softmax", "logsumexp"]
    checks = verify(result.applied, samples=4, extreme_samples=4)
    assert len(checks) == 2 and all(c.passed for c in checks), [c.message for c in checks]
    out = gtool.run(result.graph, {"x": np.zeros((0, 3))})
    assert np.isnan(out["L"])  # the mean of nothing, as before the rewrite


def test_export_to_onnx_runs_empty_tensors_as_gtool_does(load_text):
    """Exported models agree with gtool in onnxruntime on empty axes, known at export (a 0 in a
    shape) or bound at run time (a dim name that is 0): Reshape needs allowzero (ONNX's 0 would
    copy the input's dim), and ReduceMean of nothing is 0 in onnxruntime but NaN in gtool (and
    onnx.reference). The same model with n = 2 is the near miss."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from gtool.onnx.export import export_model

    graph = load_text("gtool: 1\ndims: {n: 0}\ninputs:\n  x: {shape: [n, 3]}\n  k: {shape: [n, 2], dtype: int32}\n"
                      "constants:\n  e: {value: [[], [], []]}\nnodes:\n  a: max(x, axis=0)\n  b: min(x, axis=0)\n"
                      "  c: sum(x, axis=0)\n  d: mean(x, axis=0)\n  f: logsumexp(x, axis=0)\n  g: softmax(x, axis=0)\n"
                      "  h: {op: reshape, inputs: [x], attrs: {shape: [3, n]}}\n  i: max(k, axis=0)\n"
                      "  j: x @ reshape(e, shape=[3, 0])\n  m: mean(x)\noutputs: [a, b, c, d, f, g, h, i, j, m]\n")
    model = export_model(graph)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for n in (0, 2):
        feeds = {"x": np.random.default_rng(n).standard_normal((n, 3)), "k": np.arange(2 * n, dtype=np.int32).reshape(n, 2)}
        want = gtool.run(graph, feeds, dims={"n": n})
        for name, got in zip(graph.outputs, session.run(None, feeds)):
            assert got.shape == want[name].shape and got.dtype == want[name].dtype, (name, n)
            np.testing.assert_allclose(got, want[name], rtol=1e-12, atol=0, equal_nan=True, err_msg=f"{name} n={n}")
        assert np.isnan(want["m"]) == (n == 0)  # the mean of nothing, in both


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_exported_windows_run_an_empty_batch(dtype, load_text):
    """conv and pools (im2col and Gather/Scatter for float64, ONNX Conv for float32) and their
    gradient graph in onnxruntime with a batch of 0, as with a batch of 2: a Reshape to
    [0, C, -1] (0 copying N = 0) leaves ONNX no way to solve the -1, so sizes are written out."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from gtool.onnx.export import export_model

    g = load_text(f"gtool: 1\ninputs:\n  x: {{shape: [n, 2, 5, 5], dtype: {dtype}}}\n  w: {{shape: [3, 2, 2, 2], "
                  f"dtype: {dtype}}}\nnodes:\n  y: {{op: conv, inputs: [x, w], attrs: {{stride: 2}}}}\n"
                  "  p: {op: max_pool, inputs: [y], attrs: {kernel: 2}}\n"
                  "  a: {op: avg_pool, inputs: [x], attrs: {kernel: 2, padding: 1}}\n"
                  "  L: sum(p) + sum(a)\noutputs: [y, p, a, L]\nloss: L\n")
    tol = 1e-12 if dtype == "float64" else 1e-5
    for graph in (g, gtool.grad(g, ["x", "w"])):
        session = ort.InferenceSession(export_model(graph).SerializeToString(), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        for n in (0, 2):
            rng = np.random.default_rng(n)
            feeds = {"x": rng.standard_normal((n, 2, 5, 5)).astype(dtype), "w": rng.standard_normal((3, 2, 2, 2)).astype(dtype)}
            want = gtool.run(graph, feeds, dims={"n": n})
            for name, got in zip(graph.outputs, session.run(None, {k: v for k, v in feeds.items() if k in names})):
                assert got.shape == want[name].shape, (name, n)
                np.testing.assert_allclose(got, want[name], rtol=tol, atol=tol, err_msg=f"{name} n={n}")


def test_every_empty_case_exports_and_runs_in_onnxruntime(load_text):
    """The cases above in one exported model (one onnxruntime session): the same outputs as gtool.
    Found by it: the mean of no rows (cross_entropy), max_pool_indices' batch reshape, and the
    window ops over no channels, which are now written as their empty (or bias-only) result."""
    export_tests = pytest.importorskip("test_onnx_export")
    items = []
    for case in EMPTY_CASES:
        if _load_or_refused(case, load_text) is not None:
            items.append((case.id, case.op, case.attrs, case.arrays()))
    assert len(items) > 150
    export_tests.check_combined(items, load_text)


@pytest.mark.parametrize("shape, codes", [("[2, 0]", ["exp-overflow", "log-domain"]),  # max of nothing: -inf
                                          ("[2, 3]", [])])                             # the near miss: safe
def test_lint_knows_what_a_reduction_of_nothing_gives(shape, codes, load_text):
    """An interval rule that took max over an empty axis to stay within x's range would prove
    exp(0 - m) and log(m + 2) safe; they are inf and NaN."""
    g = load_text(f"gtool: 1\ninputs:\n  x: {{shape: {shape}, range: [-1, 1]}}\nnodes:\n  m: max(x, axis=1)\n"
                  "  y: exp(0 - m)\n  z: log(m + 2)\noutputs: [y, z]\n")
    assert sorted(f.diag.code for f in lint_graph(g).findings) == codes
    out = gtool.run(g, {"x": np.zeros(tuple(json.loads(shape)))})
    assert (np.isposinf(out["y"]).all() and np.isnan(out["z"]).all()) == bool(codes)  # log(-inf + 2)


_SHAPES = st.lists(st.integers(0, 3), max_size=3).map(tuple)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=_SHAPES, b=_SHAPES)
def test_broadcasting_with_zeros_is_numpys(a, b, load_text):
    """Shape inference against np.broadcast_shapes on shapes of 0s to 3s: 0 with 1 gives 0, 0 with
    2 is a mismatch; the run gives the inferred shape and NumPy's values."""
    text = f"gtool: 1\ninputs:\n  a: {{shape: {list(a)}}}\n  b: {{shape: {list(b)}}}\nnodes:\n  y: a * b + a\noutputs: [y]\n"
    try:
        want = np.broadcast_shapes(a, b)
    except ValueError:
        with pytest.raises(GraphError) as e:
            load_text(text)
        assert e.value.diagnostics[0].code == "shape-mismatch"
        return
    g = load_text(text)
    assert tuple(d.evaluate({}) for d in types_of(g)["y"].shape) == want
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(a), rng.standard_normal(b)
    np.testing.assert_array_equal(gtool.run(g, {"a": x, "b": y})["y"], x * y + x)


def test_the_indexing_ops_on_empty_axes(load_text):
    """tile by 0 copies, pad of an empty axis (constant: a border of the value; reflect: nothing
    to copy, refused), cumsum along an empty axis, prod of nothing (1), and argmax of nothing
    (refused: no index), against NumPy."""
    g = load_text("gtool: 1\ninputs:\n  x: {shape: [2, 3]}\n  e: {shape: [2, 0]}\nnodes:\n"
                  "  t: {op: tile, inputs: [x], attrs: {reps: [0, 2]}}\n"
                  "  p: {op: pad, inputs: [e], attrs: {pads: [0, 1, 0, 2], value: 7}}\n"
                  "  c: {op: cumsum, inputs: [e], attrs: {axis: 1, exclusive: true}}\n"
                  "  q: prod(e, axis=1)\n  a: argmax(e, axis=0)\noutputs: [t, p, c, q, a]\n")
    x, e = np.arange(6.0).reshape(2, 3), np.zeros((2, 0))
    out = gtool.run(g, {"x": x, "e": e})
    np.testing.assert_array_equal(out["t"], np.tile(x, (0, 2)))
    np.testing.assert_array_equal(out["p"], np.pad(e, ((0, 0), (1, 2)), constant_values=7))
    assert out["c"].shape == (2, 0) and out["a"].shape == (0,)
    np.testing.assert_array_equal(out["q"], [1.0, 1.0])
    for bad, code in (("argmax(e, axis=1)", "bad-axis"), ('pad(e, pads=[0, 1, 0, 1], mode="reflect")', "bad-attr")):
        with pytest.raises(GraphError) as info:
            load_text(f"gtool: 1\ninputs:\n  e: {{shape: [2, 0]}}\nnodes:\n  y: {bad}\noutputs: [y]\n")
        assert info.value.diagnostics[0].code == code, bad
