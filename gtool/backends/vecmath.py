"""Vectorizable exp, tanh, sin and cos for the numba CPU backend's generated loops.

libm calls (`math.exp`, `math.sin`) keep LLVM from vectorizing a loop, and PyPI's llvmlite has
no SVML. These functions are branch-free (selects only, no calls, no table reads), so a loop
that calls them vectorizes (AVX2/AVX-512 on x86). The generated modules import them (see
`cpu_emit.VECMATH_PRELUDE`); this module is imported only by numba code.

- `vexp`: Cody-Waite reduction by ln 2, the degree-13 Taylor polynomial on |r| <= ln2/2, and
  2^n built from its bits in two factors (so subnormal results round once, as libm's do).
  Results that underflow to zero are selected, not computed: a multiply into the subnormal
  range costs a microcode assist (~25 ns), which only truly subnormal results now pay.
  Within 1 ulp of libm (tests/test_vecmath.py against mpmath).
- `sexp`: libm's exp with that select, for the loops that stay scalar anyway.
- `vtanh`: Cephes' rational approximation below 0.625, 1 - 2/(e^2|x| + 1) above.
- `vsin` / `vcos`: fdlibm's (FreeBSD's e_rem_pio2 / k_sin / k_cos) medium-range reduction by
  pi/2 in three rounds (always all three: good to 118+ bits, so arguments next to multiples of
  pi/2 keep their digits) and its kernels, quadrant by selects. Within 1 ulp of libm for
  |x| < TRIG_MAX (2^20 pi/2). Beyond it the reduction would need Payne-Hanek: they return
  TRIG_BAD (2.0, no sine's value) and the emitter re-runs that loop with libm when any
  result is TRIG_BAD (cpu_emit.CpuEmitter.loop_group). The choice: exact as libm everywhere,
  fast below 1.6e6, with no vectorized table lookups.
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

TRIG_MAX = 1647099.0  # < 2^20 * pi/2: fdlibm's medium-range reduction is exact below it
TRIG_BAD = 2.0  # what vsin/vcos return beyond TRIG_MAX (finite arguments): the loop re-runs on libm


@intrinsic
def _bits_to_double(typingctx, n):
    """The double whose IEEE bits are the int64 n (an LLVM bitcast: vectorizes, a table does not)."""
    if n != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def prefer_wide_vectors(typingctx):
    """Marks the function it is called in "prefer-vector-width"="512": on a CPU with AVX-512,
    LLVM then vectorizes its loops 8 doubles wide. LLVM's default for those CPUs is 256 bits
    (the `prefer-256-bit` tuning), which halves the throughput of a loop of exps and divisions.
    The mark is the function's own (NUMBA_CPU_FEATURES would change every numba function in
    the process); a CPU without AVX-512 ignores it. Emitted only in loops over many elements:
    a short loop left to its scalar remainder is slower 8 wide than 4 wide."""

    def codegen(context, builder, signature, args):
        # llvmlite's FunctionAttributes checks names against the LLVM enum attributes it knows;
        # a string attribute is written as is (`"key"="value"` is valid in that list)
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


_E = tuple(1.0 / math.factorial(k) for k in range(14))


@njit(error_model="numpy", fastmath={"contract"}, forceinline=True, cache=True)
def vexp(x):
    """e^x; NaN stays NaN, below -745.2 exactly 0, above 709.79 inf."""
    live = x > -745.2  # False for NaN and -inf too
    xc = min(x if live else 0.0, 710.0)
    px = math.floor(1.4426950408889634 * xc + 0.5)
    n = int(px)  # within [-1076, 1024]: safe
    r = xc - px * 6.93145751953125e-1
    r = r - px * 1.42860682030941723212e-6
    p = _E[13]
    for k in range(12, -1, -1):
        p = p * r + _E[k]
    h = n >> 1
    y = p * _bits_to_double((h + 1023) << 52) * _bits_to_double((n - h + 1023) << 52)
    y = y if live else 0.0
    return x if x != x else y


@njit(error_model="numpy", forceinline=True, cache=True)
def sexp(x):
    """libm's e^x for loops LLVM keeps scalar (faster there than vexp's 13-term polynomial),
    with 0 selected below -745.2: libm computes those as a subnormal product, to raise the
    underflow flag, a microcode assist that costs ~20 ns a call (softmax rows of logits ~1000).
    libm's exp is then called on 0 instead: LLVM speculates the call past a branch (it is
    `llvm.exp`, a pure intrinsic), so `0.0 if x < -745.2 else math.exp(x)` still paid."""
    live = not x < -745.2  # NaN too
    y = math.exp(x if live else x * 0.0)  # not a constant: LLVM would fold exp into the select
    return y if live else 0.0


_TP = (-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3)
_TQ = (1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3)


@njit(error_model="numpy", forceinline=True, cache=True)
def vtanh(x):
    """tanh(x), within 2 ulps of libm, with one division and e^-|x| as its exp: a loop that also
    runs sigmoid(x) (which computes the same e^-|x|) computes it once (LLVM merges the two)."""
    z = abs(x)
    u = vexp(-z)
    u = u * u  # e^-2|x|
    g = x * x
    small = z < 0.625
    # below 0.625 Cephes' x + x g P(g) / Q(g); above, 1 - 2u / (1 + u): one division for both
    num = x * g * ((_TP[0] * g + _TP[1]) * g + _TP[2]) if small else -2.0 * u
    den = (((g + _TQ[0]) * g + _TQ[1]) * g + _TQ[2]) if small else 1.0 + u
    y = (x if small else 1.0) + num / den
    y = y if (small or x >= 0) else -y
    return x if (x != x or x == 0.0) else y  # NaN, and -0.0 keeps its sign


# fdlibm's pi/2 in 33-bit pieces (each product with an n below 2^20 is exact) and tails
_PIO2_1 = 1.57079632673412561417e00
_PIO2_2, _PIO2_2T = 6.07710050630396597660e-11, 2.02226624879595063154e-21
_PIO2_3, _PIO2_3T = 2.02226624871116645580e-21, 8.47842766036889956997e-32
_S = (-1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04,
      2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10)
_C = (4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05,
      -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11)


@njit(error_model="numpy", forceinline=True, cache=True)
def _reduce(x):
    """(n, y0, y1): x = n pi/2 + y0 + y1 with |y0| <~ pi/4, for |x| < TRIG_MAX (0 otherwise)."""
    xs = x if abs(x) < TRIG_MAX else 0.0  # also NaN -> 0: int(floor(NaN)) is undefined
    fn = math.floor(xs * 6.36619772367581382433e-01 + 0.5)
    t = xs - fn * _PIO2_1  # exact
    w = fn * _PIO2_2
    r = t - w
    w = fn * _PIO2_2T - ((t - r) - w)
    t = r
    w = fn * _PIO2_3
    r = t - w
    w = fn * _PIO2_3T - ((t - r) - w)
    y0 = r - w
    y1 = (r - y0) - w
    return int(fn), y0, y1


@njit(error_model="numpy", forceinline=True, cache=True)
def _ksin(x, y):
    z = x * x
    w = z * z
    r = _S[1] + z * (_S[2] + z * _S[3]) + z * w * (_S[4] + z * _S[5])
    v = z * x
    return x - ((z * (0.5 * y - v * r) - y) - v * _S[0])


@njit(error_model="numpy", forceinline=True, cache=True)
def _kcos(x, y):
    z = x * x
    w = z * z
    r = z * (_C[0] + z * (_C[1] + z * _C[2])) + w * w * (_C[3] + z * (_C[4] + z * _C[5]))
    hz = 0.5 * z
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + (z * r - x * y))


@njit(error_model="numpy", forceinline=True, cache=True)
def vsincos(x):
    """(sin x, cos x) from one argument reduction: what vsin and vcos each return."""
    n, y0, y1 = _reduce(x)
    s = _ksin(y0, y1)
    c = _kcos(y0, y1)
    sv = c if n & 1 else s
    sv = -sv if n & 2 else sv
    cv = s if n & 1 else c
    cv = -cv if (n + 1) & 2 else cv
    small = abs(x) < TRIG_MAX
    bad = TRIG_BAD if x - x == 0.0 else x - x
    sv = sv if small else bad
    cv = cv if small else bad
    return (x if x != x else sv), (x if x != x else cv)


@njit(error_model="numpy", forceinline=True, cache=True)
def vsin(x):
    """sin(x) for |x| < TRIG_MAX; NaN for NaN and +-inf, TRIG_BAD for other |x| >= TRIG_MAX
    (inlined: LLVM drops the cosine's selects)."""
    return vsincos(x)[0]


@njit(error_model="numpy", forceinline=True, cache=True)
def vcos(x):
    """cos(x), as vsin."""
    return vsincos(x)[1]
