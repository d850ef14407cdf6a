"""The numba backend's vector math (gtool/backends/vecmath.py) against mpmath, and the loops
that call it.

Each function is compared with the correctly rounded value (mpmath at 60 digits, rounded to
float64: tests/ulps.py) on random arguments over its range and on the edges: ±0, subnormals,
±inf, NaN, exp's overflow and underflow thresholds, sin/cos at multiples of pi/2 (and their
neighbours), where the reduction must keep ~60 more bits than the argument has.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from ulps import ulp_diff

numba = pytest.importorskip("numba")

from gtool import api  # noqa: E402
from gtool.backends import cpu_emit, vecmath  # noqa: E402

mpmath.mp.dps = 60


@numba.njit(error_model="numpy")
def _loop(fn, x, out):
    for i in range(x.size):
        out[i] = fn(x[i])


def run(fn, x):
    """fn over an array, in a loop as the generated code calls it (inlined, vectorized)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    _loop(fn, x, out)
    return out


def exact(f, x) -> np.ndarray:
    """f(x) correctly rounded to float64 (mpmath; inf/NaN arguments as IEEE says)."""
    out = []
    for v in np.asarray(x, dtype=np.float64).tolist():
        if math.isnan(v) or math.isinf(v):
            with np.errstate(all="ignore"):
                out.append({"exp": np.exp, "sin": np.sin, "cos": np.cos, "tanh": np.tanh}[f](v))
            continue
        y = getattr(mpmath, f)(mpmath.mpf(v))
        out.append(float(y) if abs(y) >= mpmath.mpf(2) ** -1022 else float(mpmath.nint(y * mpmath.mpf(2) ** 1074)) * 5e-324)
    return np.array(out)


RNG = np.random.default_rng(1)
SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, -1e-300, 1e-8, -1e-8, 1.0, -1.0,
           np.inf, -np.inf, np.nan]


def test_exp_within_one_ulp_of_the_correctly_rounded_value():
    x = np.concatenate([RNG.uniform(-745.2, 709.8, 1500), RNG.standard_normal(500), -RNG.standard_normal(300) ** 2,
                        RNG.uniform(-745.14, -708.3, 300),  # subnormal results
                        SPECIAL, [709.78, 709.782712893384, 709.7827128933841, 709.79, 710.0, 1e308,
                                  -708.39, -708.4, -745.13, -745.1332191019411, -745.1332191019412, -745.14,
                                  -745.2, -746.0, -800.0, -1e308, 0.34657359027997264, -0.34657359027997264]])
    got = run(vecmath.vexp, x)
    d = ulp_diff(got, exact("exp", x))
    assert d.max() <= 1, {float(a): (float(b), float(c)) for a, b, c in zip(x[d > 1], got[d > 1], exact("exp", x[d > 1]))}
    assert got[x == 709.79][0] == np.inf and got[x == -745.14][0] == 0.0 and np.isnan(got[np.isnan(x)]).all()


def _trig_args() -> np.ndarray:
    k = np.concatenate([np.arange(-40, 41), RNG.integers(-2**20 + 2, 2**20 - 2, 200)]).astype(np.float64)
    near = k * (np.pi / 2)  # the doubles nearest multiples of pi/2, and their neighbours
    return np.concatenate([RNG.uniform(-10, 10, 600), RNG.uniform(-vecmath.TRIG_MAX, vecmath.TRIG_MAX, 600),
                           RNG.standard_normal(300) * 1e-3, near, np.nextafter(near, np.inf),
                           np.nextafter(near, -np.inf), SPECIAL[:-3],
                           [np.pi, 2 * np.pi, 355.0, 103993.0, 1647098.0, -1647098.5, 0.7853981633974483]])


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_sin_cos_within_one_ulp_below_trig_max(name):
    x = _trig_args()
    got = run(getattr(vecmath, "v" + name), x)
    d = ulp_diff(got, exact(name, x))
    assert d.max() <= 1, {float(a): float(b) for a, b in zip(x[d > 1], got[d > 1])}
    if name == "sin":  # odd: the sign of zero and of tiny arguments survives
        assert np.array_equal(np.signbit(got[np.abs(x) < 1e-200]), np.signbit(x[np.abs(x) < 1e-200]))


@pytest.mark.parametrize("name", ["vsin", "vcos"])
def test_sin_cos_beyond_trig_max_say_so_and_nan_stays_nan(name):
    """Finite arguments at or past TRIG_MAX return TRIG_BAD (the generated loop then runs again on
    libm); inf and NaN give NaN, as libm does."""
    x = np.array([vecmath.TRIG_MAX, -vecmath.TRIG_MAX, 1e22, -1e22, 1.7976931348623157e308, np.inf, -np.inf, np.nan])
    got = run(getattr(vecmath, name), x)
    assert (got[:5] == vecmath.TRIG_BAD).all() and np.isnan(got[5:]).all()
    assert vecmath.TRIG_BAD == cpu_emit.TRIG_BAD and not -1.0 <= vecmath.TRIG_BAD <= 1.0


def test_tanh_keeps_the_sign_of_zero():
    """tanh(-0.0) = -0.0 (the vector tanh returned +0.0: x + x*g*P/Q adds +0.0 to -0.0)."""
    got = run(vecmath.vtanh, np.array([-0.0, 0.0, -1e-310]))
    assert np.signbit(got).tolist() == [True, False, True] and got[2] == -1e-310


def test_tanh_within_two_ulps():
    x = np.concatenate([RNG.uniform(-20, 20, 800), RNG.uniform(-0.7, 0.7, 400), SPECIAL,
                        [0.625, -0.625, 0.6249999999999999, 19.1, 40.0, -40.0, 1e300]])
    d = ulp_diff(run(vecmath.vtanh, x), exact("tanh", x))
    assert d.max() <= 2


def test_the_loop_that_calls_them_is_vectorized():
    """No libm calls and no table: LLVM turns the loop into packed (SIMD) double arithmetic."""
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the packed-instruction check reads x86 assembly")
    x = np.linspace(-3, 3, 64)
    out = np.empty_like(x)
    for fn in (vecmath.vexp, vecmath.vsin, vecmath.vcos):
        _loop(fn, x, out)
    for sig in _loop.signatures:
        asm = _loop.inspect_asm(sig)
        assert any(op in asm for op in ("mulpd\t", "vmulpd\t", "vfmadd231pd\t", "vfmadd213pd\t")), "scalar loop"


# the generated code ------------------------------------------------------------------------------

SIN = "gtool: 1\ninputs:\n  x: [{n}]\nnodes:\n  y: sin(x) * cos(2 * x)\n  L: sum(y)\noutputs: [y, L]\nloss: L\n"


def test_sin_beyond_trig_max_runs_the_loop_again_on_libm(load_text):
    """A loop over 1e22 and friends: vector sin/cos in the loop, the libm loop run as well, the
    result NumPy's (libm's) own digits, and no fallback to the interpreter."""
    from gtool import interp

    graph = load_text(SIN.format(n=8))
    x = np.array([1e22, 0.5, -3.0, 1647099.0, 1e6, np.pi / 2, -0.0, 2.0])
    with np.errstate(all="ignore"):
        want = api.run(graph, {"x": x})
        got = api.run(graph, {"x": x}, backend="numba")
    c = interp.program(graph, backend="numba").compiled
    assert "_vsin(" in c.source and "_vcos(" in c.source and "if nbig:" in c.source
    assert c.fallback_runs == 0
    assert ulp_diff(got["y"], want["y"]).max() == 0  # the libm loop's digits, exactly
    y = np.sin(x[1:3]) * np.cos(2 * x[1:3])
    got_small = api.run(graph, {"x": np.array([0.5, -3.0, 0.5, -3.0, 0.5, -3.0, 0.5, -3.0])}, backend="numba")
    assert ulp_diff(got_small["y"][:2], y).max() <= 2


def test_composite_helpers_call_the_vector_exp(load_text):
    """sigmoid's and softplus' scalar helpers use `_vexp` (they called libm's exp, which kept the
    loops around them scalar), and are inlined."""
    from gtool import interp

    graph = load_text("gtool: 1\ninputs:\n  x: [64]\nnodes:\n  L: sum(sigmoid(x) + softplus(x))\noutputs: [L]\n")
    x = np.linspace(-50, 50, 64)
    got = api.run(graph, {"x": x}, backend="numba")["L"]
    src = interp.program(graph, backend="numba").compiled.source
    helper = src.split("def _sigmoid(x):")[1].split("\n\n")[0]
    assert "_vexp(" in helper and "math.exp(" not in helper
    assert "inline='always'" in src.split("def _sigmoid(x):")[0].splitlines()[-1]
    want = sum(mpmath.mpf(1) / (1 + mpmath.exp(-mpmath.mpf(v))) + mpmath.log1p(mpmath.exp(mpmath.mpf(v))) for v in x)
    assert got == pytest.approx(float(want), rel=1e-14)


def test_loops_llvm_cannot_vectorize_keep_libm():
    """Many stored arrays (a chain's saved activations) need more run-time alias checks than LLVM
    makes: that loop stays scalar, where libm's sin beats an inlined vector sin."""
    assert cpu_emit.vectorizable(2, 1) and cpu_emit.vectorizable(1, 3)
    assert not cpu_emit.vectorizable(32, 1) and not cpu_emit.vectorizable(4, 1)


def test_sexp_is_libm_above_the_underflow_threshold_and_zero_below():
    """The scalar loops' exp: libm's own digits where the result is not 0, exactly 0 below -745.2
    (where libm rounds a subnormal product to 0), NaN for NaN."""
    x = np.concatenate([RNG.uniform(-745.2, 709.7, 2000), SPECIAL, [-745.13, -745.2, -745.3, -800.0, -1e308, 709.79]])
    got = run(vecmath.sexp, x)
    with np.errstate(all="ignore"):
        want = np.array([math.exp(v) if np.isfinite(v) and v < 709.7 else np.exp(v) for v in x.tolist()])
    assert ulp_diff(got, want).max() == 0


def test_a_loop_closes_before_its_ninth_vector_call(load_text):
    """Past cpu_emit.VEC_CALLS inlined calls LLVM's time on the polynomials grows faster than
    the loop gains, and a loop with more stayed scalar on libm. Fusion now closes a loop before
    its (VEC_CALLS + 1)-th call: two loops, both vectorized, and the values NumPy's."""
    from gtool import interp

    def source(k: int) -> str:
        terms = " + ".join(f"exp(x * {j + 1}.0)" for j in range(k))
        graph = load_text(f"gtool: 1\ninputs:\n  x: [32]\nnodes:\n  y: {terms}\noutputs: [y]\n")
        x = np.linspace(-2, 2, 32)
        got = api.run(graph, {"x": x}, backend="numba")["y"]
        want = sum(np.exp(x * (j + 1.0)) for j in range(k))
        np.testing.assert_allclose(got, want, rtol=1e-14)
        return interp.program(graph, backend="numba").compiled.source

    few, many = source(cpu_emit.VEC_CALLS), source(cpu_emit.VEC_CALLS + 1)
    assert few.count("for i0 in range(32)") == 1 and few.count("_vexp(") == cpu_emit.VEC_CALLS
    assert many.count("for i0 in range(32)") == 2 and many.count("_vexp(") == cpu_emit.VEC_CALLS + 1
    assert "_sexp(" not in few + many
    assert cpu_emit.VECTOR_OPS == {"exp", "sin", "cos", "tanh", "sigmoid", "softplus"}


def test_an_input_element_read_twice_is_read_once():
    """A store between two reads of v1[i0] made LLVM read it again and recompute what came from
    it (the elementwise backward computed e^-|x| twice). Written arrays and gathered indices
    (j_k, defined in the body) stay where they are."""
    lines = ["r0 = _vtanh(v1[i0])", "buf0[i0 - s0] = r0", "r1 = (v1[i0] * v2[i0, 0])", "v3[i0] = r1",
             "r2 = (v3[i0] + v1[i0])", "j_4 = v5[i0]", "r3 = v6[j_4]", "r4 = v6[j_4]"]
    got = cpu_emit.hoist_loads(lines, {"v3"})
    assert got == ["a0 = v1[i0]", "r0 = _vtanh(a0)", "buf0[i0 - s0] = r0", "r1 = (a0 * v2[i0, 0])", "v3[i0] = r1",
                   "r2 = (v3[i0] + a0)", "j_4 = v5[i0]", "r3 = v6[j_4]", "r4 = v6[j_4]"]
    assert cpu_emit.hoist_loads(["r0 = v1[i0]", "v2[i0] = r0"], set()) == ["r0 = v1[i0]", "v2[i0] = r0"]


def _host_has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


def test_prefer_wide_vectors_makes_the_loop_512_bits_wide():
    """LLVM's tuning for AVX-512 CPUs keeps loops 256 bits wide; the mark asks for 512 in the one
    function it is called in (a loop of exps and divisions runs ~1.5x faster there)."""
    import platform

    if platform.machine() not in ("x86_64", "AMD64") or not _host_has_avx512():
        pytest.skip("needs an x86 CPU with AVX-512")

    @numba.njit(error_model="numpy")
    def wide(x, out):
        for i in range(x.size):
            vecmath.prefer_wide_vectors()
            out[i] = vecmath.vexp(x[i]) / (1.0 + x[i])

    x = np.linspace(0, 3, 1000)
    out = np.empty_like(x)
    wide(x, out)
    np.testing.assert_allclose(out, np.exp(x) / (1 + x), rtol=1e-15)
    asm = "\n".join(wide.inspect_asm().values())
    assert "zmm" in asm


@pytest.mark.parametrize("n, wide", [(60, False), (12, False), (64, True), (16, True), (cpu_emit.WIDE_MIN + 4, True)])
def test_only_long_vector_loops_are_marked_wide(load_text, n, wide):
    """A short loop left to its scalar remainder is slower 8 wide than 4 wide: the mark goes only
    into loops over WIDE_MIN elements or more, or over a multiple of 8 (no remainder)."""
    from gtool import interp

    graph = load_text(f"gtool: 1\ninputs:\n  x: [{n}]\nnodes:\n  y: tanh(x) * exp(-x)\noutputs: [y]\n")
    x = np.linspace(-5, 5, n)
    got = api.run(graph, {"x": x}, backend="numba")["y"]
    assert ulp_diff(got, np.tanh(x) * np.exp(-x)).max() <= 4
    assert ("_wide()" in interp.program(graph, backend="numba").compiled.source) == wide


@pytest.mark.parametrize("n", [1, 7, 8, 9, 255, 256, 263, 4100])
def test_block_sums_add_every_element_once(load_text, n):
    """The fused loops add each block in SUM_LANES partial sums and a remainder: every count
    around those sizes, float (against math.fsum) and int64 (exact; each term is distinct, so
    a skipped or doubled element shows)."""
    graph = load_text(f"gtool: 1\ninputs:\n  x: [{n}]\n  k: {{shape: [{n}], dtype: int64}}\n"
                      "nodes:\n  s: sum(x * 2.0)\n  t: sum(k * 3)\noutputs: [s, t]\n")
    x = RNG.standard_normal(n)
    k = (np.arange(n, dtype=np.int64) + 1) ** 2
    got = api.run(graph, {"x": x, "k": k}, backend="numba")
    assert got["s"] == pytest.approx(math.fsum(2.0 * x), rel=1e-13, abs=1e-13)
    assert int(got["t"]) == 3 * sum(int(v) for v in k)


def test_sin_and_cos_of_one_value_share_one_reduction(load_text):
    """A gradient's cos(x) beside the forward's sin(x): both in one loop, as one `_vsincos`
    (one argument reduction), with libm's digits beyond TRIG_MAX; checked against mpmath."""
    from gtool import interp

    text = ("gtool: 1\ninputs:\n  x: [16]\nnodes:\n  a: sin(x) * 1.5\n  b: sin(a) + 0.25\n"
            "  L: sum(sin(b))\noutputs: [L]\nloss: L\n")
    graph = load_text(text)
    x = np.concatenate([np.linspace(-7, 7, 12), [np.pi / 2, -0.0, 1e-300, 3.0]])
    _, g = api.value_and_grad(graph, {"x": x}, wrt=["x"], backend="numba")
    src = next(text for text in _generated_sources() if "_vsincos(" in text)
    assert "_vcos(" not in src  # every cos found its sin
    mp = mpmath.mpf
    for v, got in zip(x.tolist(), g["x"].tolist()):
        a = mpmath.sin(mp(v)) * mp(1.5)
        b = mpmath.sin(a) + mp(0.25)
        want = mpmath.cos(b) * mpmath.cos(a) * mp(1.5) * mpmath.cos(mp(v))
        assert got == pytest.approx(float(want), rel=1e-13, abs=1e-300)
    x_big = np.array([1e22, 2e6, -3e7, 0.5] * 4)
    _, g_big = api.value_and_grad(graph, {"x": x_big}, wrt=["x"], backend="numba")
    _, g_np = api.value_and_grad(graph, {"x": x_big}, wrt=["x"], backend="numpy")
    np.testing.assert_allclose(g_big["x"], g_np["x"], rtol=1e-13)
    assert interp.program(graph, backend="numba").compiled.fallback_runs == 0


def _generated_sources() -> list[str]:
    """The text of every module the numba backend has generated in this process."""
    from pathlib import Path

    from gtool.backends import numba_cpu

    return [Path(m.__file__).read_text() for m in numba_cpu._MODULES.values()]


def test_merge_sincos_pairs_lines_by_argument():
    lines = ["r1 = _vsin(a0)", "r2 = (r1 * 2.0)", "r3 = _vcos(r2)", "r4 = _vcos(a0)", "r5 = _vsin(r2)"]
    assert cpu_emit.merge_sincos(lines) == ["r1, r4 = _vsincos(a0)", "r2 = (r1 * 2.0)", "r5, r3 = _vsincos(r2)"]  # (sin, cos)
    assert cpu_emit.merge_sincos(["r1 = _vsin(a0)", "r2 = _vcos(a1)"]) == ["r1 = _vsin(a0)", "r2 = _vcos(a1)"]
