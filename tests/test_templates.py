"""Composite ops are defined once: a template on the op record (gtool/ops/templates.py) that
the NumPy forward runs and the numba lowering traces. These tests fail when a composite gets
numerics of its own in a backend, when a forward stops running its template, or when the
lowering's steps stop matching the NumPy steps one for one. Plus: the rewrite verifier's
mpmath evaluator reads each op's record reference (no kernel table of its own).
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from gtool import interp
from gtool.backends import templates as backend_templates
from gtool.backends.lowering import Lowering
from gtool.ops import REGISTRY
from gtool.ops import templates as T
from gtool.ops.reference import FLOAT_EDGES
from gtool.rewrite.reference import evaluate

BACKENDS = Path(__file__).resolve().parent.parent / "gtool" / "backends"
COMPOSITES = ("sigmoid", "softplus", "softmax", "log_softmax", "logsumexp", "cross_entropy")
ROW_PRIMS = {"max", "sum", "count", "squeeze", "rows", "pick", "total"}


class Recorder(T.NumpyPrims):
    """NumpyPrims that log each primitive call by name, in the order the calls run."""

    log: list[str] = []

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args, **kw):
            out = attr(*args, **kw)
            Recorder.log.append(name)
            return out

        return call


def _inputs(name):
    x = np.array([[1.0, -2.0, 1.0], [1e15, 1e15, -np.inf], [np.nan, 0.0, 3.0]])
    if name == "cross_entropy":
        return (x[:2], np.array([0, 2])), {"reduction": "mean"}
    if name in ("sigmoid", "softplus"):
        return (x,), {}
    return (x,), {"axis": -1}


@pytest.mark.parametrize("name", COMPOSITES)
def test_every_composite_has_a_template_that_its_numpy_forward_runs(name, monkeypatch):
    op = REGISTRY[name]
    assert isinstance(op.template, T.Template), f"{name} has no template"
    Recorder.log = []
    monkeypatch.setattr(T, "NumpyPrims", Recorder)
    args, attrs = _inputs(name)
    op.forward(*args, **attrs)
    assert Recorder.log, f"the NumPy forward of {name} does not run its template"
    allowed = set(backend_templates.PRIMS) | (set() if op.template.scalar else ROW_PRIMS)
    assert set(Recorder.log) <= allowed, set(Recorder.log) - allowed


def _names_in(path: Path) -> tuple[set[str], set[str]]:
    """(string constants, identifiers) of a module's code; docstrings are strings but only
    exact op names count, so prose that mentions an op is fine."""
    tree = ast.parse(path.read_text())
    strings, idents = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.add(node.value)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            idents.add(node.name)
        elif isinstance(node, ast.Name):
            idents.add(node.id)
        elif isinstance(node, ast.Attribute):
            idents.add(node.attr)
    return strings, idents


@pytest.mark.parametrize("path", sorted(BACKENDS.glob("*.py")), ids=lambda p: p.name)
def test_backends_hold_no_numerics_of_a_composite(path):
    """The backends reach composites only through the template dispatch: no module names an
    op that has a template (no `lower_softmax`, no hand-written `_sigmoid`, no "softplus" key)."""
    composites = {n for n, op in REGISTRY.items() if op.template is not None}
    assert set(COMPOSITES) <= composites
    strings, idents = _names_in(path)
    assert not strings & composites, f"{path.name} names {strings & composites}"
    hits = {i for i in idents for c in composites if c in i.lower()}
    assert not hits, f"{path.name} has per-composite code: {hits}"


def test_scalar_helpers_are_traced_from_the_templates():
    """The numba helper of each scalar composite, run as plain Python, is the NumPy forward on
    the float edges (within 1 ulp: NumPy's exp may round differently from libm's)."""
    x = np.array(FLOAT_EDGES, np.float64)
    for name in ("sigmoid", "softplus"):
        src = backend_templates.HELPERS[f"_{name}"]
        space: dict = {"math": math}
        exec(src, space)  # noqa: S102 - generated code, as the emitters compile it
        got = np.array([space[f"_{name}"](float(v)) for v in x])
        want = REGISTRY[name].forward(x)
        assert np.array_equal(np.isnan(got), np.isnan(want)), name
        with np.errstate(invalid="ignore"):
            close = (got == want) | (np.abs(got - want) <= np.spacing(np.abs(want)))
        assert np.all(close | np.isnan(want)), (name, x[~close], got[~close], want[~close])


GRAPH = """gtool: 1
inputs:
  x: [3, 4]
  t: {shape: [3], dtype: int64}
nodes:
  y: {op: OP, inputs: [INPUTS], attrs: ATTRS}
outputs: [y]
"""

_MICRO = {"max": ["reduce:max"], "sum": ["reduce:sum"], "count": ["where", "reduce:sum"], "squeeze": ["reshape"],
          "rows": ["reshape"], "pick": ["gather"]}


@pytest.mark.parametrize("name,attrs", [("softmax", {"axis": 0}), ("log_softmax", {"axis": -1}),
                                        ("logsumexp", {"axis": 1}), ("logsumexp", {"keepdims": True}),
                                        ("cross_entropy", {"reduction": "sum"})])
def test_row_templates_lower_step_for_step(name, attrs, load_text, monkeypatch):
    """The lowering's micro-ops for a composite are the NumPy forward's primitive calls, in
    the same order (constants aside)."""
    inputs = "x, t" if name == "cross_entropy" else "x"
    graph = load_text(GRAPH.replace("OP", name).replace("INPUTS", inputs).replace("ATTRS", repr(attrs)))
    lowered = Lowering(interp.program(graph, backend="numpy"), blas=False).run()
    got = [f"reduce:{m.attrs['kind']}" if m.op == "reduce" else m.op for m in lowered if m.op != "const"]
    Recorder.log = []
    monkeypatch.setattr(T, "NumpyPrims", Recorder)
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    template_forward = T.numpy_forward(REGISTRY[name].template)  # the template itself, without a fast path
    template_forward(*((x, np.array([0, 3, 1])) if name == "cross_entropy" else (x,)), **attrs)
    want = []
    for call in Recorder.log:
        if call == "total":
            want.append(f"reduce:{attrs['reduction']}")
        else:
            want += _MICRO.get(call, [backend_templates.PRIMS.get(call, call)])
    assert got == want


LOG_GRAPH = """gtool: 1
inputs:
  x: [3]
nodes:
  y: exp(x)
outputs: [y]
"""


def test_rewrite_reference_evaluates_the_op_record(load_text, monkeypatch):
    """Plant a wrong reference on the exp record: the mpmath evaluator must follow it (so the
    record is the one reference per op), and be right again with the true one."""
    pytest.importorskip("mpmath")
    graph = load_text(LOG_GRAPH)
    x = np.array([0.0, 1.0, -2.0])
    right = evaluate(graph, {"x": x}, ["y"], "mpmath")["y"]
    np.testing.assert_allclose(np.asarray(right, np.float64), np.exp(x), rtol=1e-15)
    true_ref = REGISTRY["exp"].reference
    monkeypatch.setattr(REGISTRY["exp"], "reference", lambda a: true_ref(a) + 1)
    planted = evaluate(graph, {"x": x}, ["y"], "mpmath")["y"]
    np.testing.assert_allclose(np.asarray(planted, np.float64), np.exp(x) + 1, rtol=1e-15)


SIGMOID_GRAPH = """gtool: 1
inputs:
  x: [2]
nodes:
  y: 1 - sigmoid(x)
outputs: [y]
"""


def test_rewrite_reference_keeps_its_digits(load_text):
    """1 - sigmoid(180) = e^-180 / (1 + e^-180) needs ~80 digits: the record references run at
    the evaluator's 160, not their own default of 60 (which gives 0 here)."""
    mp = pytest.importorskip("mpmath")
    graph = load_text(SIGMOID_GRAPH)
    got = evaluate(graph, {"x": np.array([180.0, 2.0])}, ["y"], "mpmath", digits=160)["y"]
    with mp.workdps(100):
        want = [float(mp.exp(-180) / (1 + mp.exp(-180))), float(1 - 1 / (1 + mp.exp(-2)))]
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-15)
