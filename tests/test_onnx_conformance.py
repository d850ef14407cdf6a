"""ONNX's own backend node tests, run through gtool.load + gtool.run.

Every node test whose ops (after model-local functions are inlined and ops ONNX defines by a
function body are expanded, gtool/onnx/expand.py) all have a gtool converter is enrolled, so
registering a converter enrolls that op's tests. The model is
written to a file and loaded as a user would load it; the inputs of `data_sets[0]` are fed,
and each output is compared with ONNX's expected one: same dtype and shape, floats within
rtol 1e-5 / atol 1e-6 (float16: 2 ulps; NaN where NaN is expected), integers and bools exactly.

A test is skipped only with a reason: a converter's declared `skips`, a dtype the gtool
core does not have (yet), or an empty tensor (gtool dims are >= 1). Any other failure fails.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx_node_cases import node_tests  # noqa: E402

import gtool  # noqa: E402
from gtool.onnx.dtypes import onnx_type_name, supported  # noqa: E402
from gtool.onnx.expand import expand_functions  # noqa: E402
from gtool.onnx.registry import all_skips, converted_ops, find_converter  # noqa: E402

TESTS = node_tests()


def _model(blob: bytes):
    m = onnx.ModelProto()
    m.ParseFromString(blob)
    return m


def _ops(model) -> set[str]:
    """The op types a model runs (function bodies count, the function's own name does not)."""
    local = {(f.domain, f.name) for f in model.functions}
    ops = set()
    for node in list(model.graph.node) + [n for f in model.functions for n in f.node]:
        if (node.domain, node.op_type) in local:
            continue
        ops.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}")
    return ops


def enrolled() -> list[str]:
    ops = converted_ops()
    return sorted(name for name, (blob, _) in TESTS.items()
                  if (found := _ops(expand_functions(_model(blob))[0])) and found <= ops)


def _types(model) -> set[int]:
    """Every element type the model mentions: values, initializers, Cast targets, constants."""
    g = model.graph
    out = {vi.type.tensor_type.elem_type for vi in list(g.input) + list(g.output) + list(g.value_info)
           if vi.type.HasField("tensor_type")}
    out |= {t.data_type for t in g.initializer}
    for node in list(g.node) + [n for f in model.functions for n in f.node]:
        for a in node.attribute:
            if a.name == "to" and node.op_type == "Cast":
                out.add(a.i)
            if a.type == a.TENSOR:
                out.add(a.t.data_type)
    return out


def skip_reason(name: str) -> str | None:
    blob, data_sets = TESTS[name]
    declared = all_skips().get(name)
    if declared:
        return declared
    model = _model(blob)
    missing = sorted(onnx_type_name(t) for t in _types(model) if t and not supported(t))
    if missing:
        return f"needs dtype {', '.join(missing)}, which gtool's core does not have"
    return None


def _empty(feeds: dict, expected: list) -> bool:
    """A value with a dim of size 0 among the data fed at run time or the expected outputs."""
    arrays = [a for a in list(feeds.values()) + [_array(v) for v in expected] if a is not None]
    return any(0 in a.shape for a in arrays)


def _array(v):
    """A test value as NumPy (some cases store TensorProtos); None for sequences and optionals."""
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, onnx.TensorProto):
        return onnx.numpy_helper.to_array(v)
    return np.asarray(v) if isinstance(v, (np.generic, int, float, bool)) else None


def _same(name: str, got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, ONNX expects {want.dtype}"
    assert got.shape == want.shape, f"{name}: shape {got.shape}, ONNX expects {want.shape}"
    if want.dtype.kind == "f":
        # float16 has 11 bits: two ops rounding in a different order differ by an ulp (~1e-3)
        rtol = 2 * float(np.finfo(np.float16).eps) if want.dtype == np.float16 else 1e-5
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-6, equal_nan=True, err_msg=name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)


def bind_static_inputs(model, feeds: dict) -> list[str]:
    """Make graph inputs that feed a shape-valued input (Reshape's shape, Slice's starts, a
    reduction's axes: the converters' `static` positions) initializers holding the test's data.

    ONNX's node tests feed those as run-time inputs; gtool shapes are static, so such values
    must be known at load, as they are in exported models (Constants or initializers). The
    ops' semantics (0 and -1 in shapes, clamped and negative slice bounds, axes) are still
    checked against ONNX's expected outputs. Returns the names bound."""
    inputs = {vi.name for vi in model.graph.input}
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    bound = []
    expanded = expand_functions(model)[0]  # the nodes gtool converts (CenterCropPad's body: Pad, Slice)
    for node in expanded.graph.node:
        conv = find_converter(node.op_type, node.domain, opset)
        for k in conv.static if conv else ():
            for name in _sources(expanded, node.input[k] if k < len(node.input) else ""):
                if name in inputs and name in feeds and name not in bound:
                    model.graph.initializer.append(onnx.numpy_helper.from_array(feeds[name], name))
                    bound.append(name)
    keep = [vi for vi in model.graph.input if vi.name not in bound]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return bound


def _sources(model, name: str) -> list[str]:
    """`name` and the values it is computed from, back to the graph inputs (a static input may be
    computed from one: CenterCropPad's pads from its `shape` input). Shape and Size stop the
    walk: their value is a shape, known at load, whatever their input holds."""
    producers = {out: node for node in model.graph.node for out in node.output}
    out, todo = [], [name]
    while todo:
        n = todo.pop()
        if not n or n in out:
            continue
        out.append(n)
        node = producers.get(n)
        if node is not None and node.op_type not in ("Shape", "Size"):
            todo.extend(node.input)
    return out


@pytest.mark.parametrize("name", enrolled())
def test_onnx_node(name, tmp_path):
    reason = skip_reason(name)
    if reason:
        pytest.skip(reason)
    blob, data_sets = TESTS[name]
    model = _model(blob)
    inputs, expected = data_sets[0]
    inits = {t.name for t in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in inits]
    feeds = dict(zip(names, map(_array, inputs)))
    for bound in bind_static_inputs(model, feeds):
        del feeds[bound]
    if _empty(feeds, expected):
        pytest.skip("an empty tensor (a dim of size 0): gtool dims are >= 1")
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    graph = gtool.load(path)
    got = gtool.run(graph, feeds)
    for vi, want in zip(model.graph.output, expected):
        _same(vi.name, np.asarray(got[vi.name]), _array(want))


def test_enrolment_follows_the_converters():
    """The near miss: a test of an op without a converter is not enrolled (and Add's are)."""
    names = enrolled()
    assert "test_add" in names and "test_matmul_2d" in names
    assert not any(n.startswith("test_lstm") for n in names)
