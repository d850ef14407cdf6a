"""Each built-in op is one complete record, and its NumPy forward agrees with its reference.

(1) A registry-wide check: every built-in op has every piece (reference, edge table, interval
rule, explain texts, domain, doc), and the checker itself flags a record with a piece missing.
(2) The NumPy backend against each op's mpmath reference, in ULPs of the output dtype, on the
op's edge table and on random inputs, in float64 and float32. (3) Elementwise VJPs and JVPs
against mpmath.diff of the reference: independent of the linear map both rules come from.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from edge_graph import EdgeCase, builtin_ops, cases, random_inputs, reference
from ulps import max_ulp, to_dtype, ulp_diff

from gtool import api
from gtool.ops import REGISTRY, OpDef
from gtool.ops.reference import FLOAT_EDGES
from gtool.validate import types_of

NON_DIFFERENTIABLE = {"greater", "less", "equal", "sign", "one_hot", "size", "stop_gradient", "floor", "ceil", "round",
                      "max_pool_indices", "trunc_div", "argmax", "argmin", "greater_equal", "less_equal"}


def missing_pieces(op: OpDef) -> list[str]:
    """What a built-in op's record lacks (plugins may leave these out)."""
    out = [k for k in ("reference", "interval") if getattr(op, k) is None]
    if not op.edges:
        out.append("edges")
    if not op.doc:
        out.append("doc")
    if op.group.startswith(("elementwise", "comparison")) and not (
            op.domain and len(op.domain) == op.arity and all(lo < hi for lo, hi in op.domain)):
        out.append("domain")
    if op.vjp is not None and op.name != "stop_gradient":
        texts = op.explain.get("vjp") or ()
        if not texts or (op.group.startswith("elementwise") and len(texts) != op.arity):
            out.append("explain vjp texts")
        if op.group.startswith("elementwise") and len(op.explain.get("partial") or ()) != op.arity:
            out.append("explain partial texts")
    if op.name in NON_DIFFERENTIABLE and (op.vjp is not None or op.jvp is not None):
        out.append("no VJP/JVP rules (non-differentiable by design)")
    elif op.name not in NON_DIFFERENTIABLE and (op.vjp is None or op.jvp is None):
        out.append("VJP and JVP rules")
    return out


@pytest.mark.parametrize("name", builtin_ops())
def test_every_builtin_op_is_a_complete_record(name):
    assert missing_pieces(REGISTRY[name]) == [], name


def test_the_record_check_flags_a_missing_piece():
    exp = REGISTRY["exp"]
    near = OpDef(exp.name, 1, exp.infer, exp.forward, vjp=exp.vjp, jvp=exp.jvp, interval=exp.interval,
                 domain=exp.domain, edges=exp.edges, explain={"vjp": ("{g}",)}, group=exp.group, doc="e^x")
    assert missing_pieces(near) == ["reference", "explain partial texts"]


# the NumPy forward against the reference -------------------------------------------------------


def _graph_for(case: EdgeCase, load_text):
    lines = ["gtool: 1", "inputs:"] + [f"  a{j}: {{shape: {list(a.shape)}, dtype: {a.dtype}}}"
                                       for j, a in enumerate(case.inputs)]
    import json

    node = {"op": case.op, "inputs": [f"a{j}" for j in range(len(case.inputs))]}
    if case.attrs:
        node["attrs"] = case.attrs
    return load_text("\n".join(lines + ["nodes:", f"  out: {json.dumps(node)}", "outputs: [out]"]) + "\n")


ALL = {dt: cases(dt) for dt in (np.float64, np.float32, np.float16)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16], ids=["f64", "f32", "f16"])
@pytest.mark.parametrize("name", builtin_ops())
def test_numpy_forward_matches_the_reference(name, dtype, load_text):
    tol = REGISTRY[name].ulps
    for case in [c for c in ALL[dtype] if c.op == name]:
        g = _graph_for(case, load_text)
        with np.errstate(all="ignore"):
            got = api.run(g, {f"a{j}": a for j, a in enumerate(case.inputs)})["out"]
        t = types_of(g)["out"]
        assert str(got.dtype) == t.dtype, case.id
        want = reference(case, got.dtype)
        assert got.shape == want.shape, case.id
        if got.dtype.kind != "f":
            np.testing.assert_array_equal(got, want, err_msg=case.id)
            continue
        d = ulp_diff(got, want)
        bad = np.argwhere(d > tol)
        assert bad.size == 0, f"{case.id}: {len(bad)} values over {tol} ulp, e.g. at {bad[0].tolist()}: " \
            f"got {got[tuple(bad[0])]!r}, reference {want[tuple(bad[0])]!r}, inputs " \
            f"{[np.broadcast_to(a, got.shape)[tuple(bad[0])] if a.shape == got.shape else '...' for a in case.inputs]}"


# elementwise derivatives against mpmath.diff -----------------------------------------------------

SMOOTH_EDGES = [v for v in FLOAT_EDGES if np.isfinite(v) and 1e-300 < abs(v) <= 1e4]
ELEMENTWISE = [n for n in builtin_ops() if REGISTRY[n].group.startswith("elementwise") and REGISTRY[n].vjp is not None]


def _derivative_points(name):
    op = REGISTRY[name]
    rnd = random_inputs(name, n=12)
    if op.arity == 1:
        pts = np.concatenate([rnd[0], np.array(SMOOTH_EDGES)])
        return (pts[np.abs(pts) > 1e-3] if name in ("abs", "relu") else pts,)  # kinks are tested apart
    return rnd


def _mp_partials(name, point):
    """d out / d x_k at `point` by mpmath.diff of the reference (NaN where the value is not real)."""
    scalar = REGISTRY[name].reference.scalar
    m = mpmath
    m.mp.dps = 60
    value = scalar(m, *point)
    if isinstance(value, float) and (value != value or abs(value) == float("inf")):
        return [float("nan")] * len(point)
    out = []
    for k in range(len(point)):
        order = tuple(1 if j == k else 0 for j in range(len(point)))
        d = m.diff(lambda *xs: scalar(m, *xs), tuple(m.mpf(p) for p in point), order)
        out.append(float("nan") if isinstance(d, m.mpc) and d.imag != 0 else float(m.re(d)))
    return out


# Rules written with the output (tanh' = 1 - y^2, as torch and JAX write it) are accurate to an
# ulp of 1 absolutely: where the derivative is below 1e-16 they give 0 or 2^-53. rtol 1e-9 is
# far looser than the rules' error elsewhere (1e-15) and far tighter than a wrong rule (expm1'
# as out + 1 was 4e-8 off at x = -21).
ATOL = 2.3e-16


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_vjp_and_jvp_match_mpmath_derivatives(name, load_text):
    pts = _derivative_points(name)
    n = len(pts[0])
    arity = len(pts)
    lines = ["gtool: 1", "inputs:"] + [f"  a{j}: [{n}]" for j in range(arity)]
    g = load_text("\n".join(lines + ["nodes:", f"  out: {name}({', '.join(f'a{j}' for j in range(arity))})",
                                     "  L: sum(out)", "outputs: [out, L]", "loss: L"]) + "\n")
    data = {f"a{j}": p for j, p in enumerate(pts)}
    want = np.array([_mp_partials(name, [float(p[i]) for p in pts]) for i in range(n)]).T  # [input, point]
    with np.errstate(all="ignore"):
        _, grads = api.value_and_grad(g, data, wrt=list(data))
        tg = api.jvp(g, wrt=list(data), of=["out"])
        for j in range(arity):
            keep = np.isfinite(want[j])
            np.testing.assert_allclose(grads[f"a{j}"][keep], want[j][keep], rtol=1e-9, atol=ATOL,
                                       err_msg=f"VJP of {name}, input {j}")
            tangents = {f"__tan_a{k}": np.full(n, 1.0 if k == j else 0.0) for k in range(arity)}
            jv = api.run(tg, {**data, **tangents})["__tan_out"]
            np.testing.assert_allclose(jv[keep], want[j][keep], rtol=1e-9, atol=ATOL,
                                       err_msg=f"JVP of {name}, input {j}")


def test_to_dtype_rounds_to_nearest():
    """The yardstick itself: mpmath values round to the nearest float (a near miss is 1 ulp)."""
    third = mpmath.mpf(1) / 3
    assert to_dtype([third], np.float64)[0] == 1 / 3
    assert max_ulp(np.array([np.nextafter(1 / 3, 1)]), to_dtype([third], np.float64)) == 1
