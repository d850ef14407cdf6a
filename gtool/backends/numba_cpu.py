"""--backend numba: the plan as generated Python source, compiled once by numba.njit.

The lowering and fusion in `codegen` give loops; this module writes them as Python functions
(one per *segment*: a run of compiled work between NumPy fallbacks, split when very long so
LLVM's time stays linear), writes the module to the cache folder under the hash of its text,
imports it (numba's `cache=True` needs a real file; nothing is `exec`'d), and runs segments
and fallbacks in order. Any exception inside compiled code (a target out of range, say) makes
the run start again on the NumPy interpreter, which reports the located error.
"""

from __future__ import annotations

import hashlib
import importlib.util
import operator
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import UsageError
from . import Backend
from .codegen import (
    HELPERS,
    TEMPLATES,
    Body,
    CompiledPlan,
    Fallback,
    Group,
    Lowering,
    Single,
    V,
    convert,
    fuse,
    is_one,
    numel,
    reduce_parts,
    to_numpy,
)

PAR_MIN = 1 << 17  # loops with fewer elements stay on one thread (a parallel region costs ~10 us)
BLOCK = 256  # elements per block of a vectorizable loop with sums
MAX_LINES = 150  # lines per compiled function: numba's compile time grows faster than linearly in it
VERSION = "1"  # bump when the generated code changes meaning (part of the cache key)


def require_numba():
    """numba, or a UsageError naming the extra to install."""
    try:
        import numba
    except ImportError:
        raise UsageError("usage", "the numba backend needs numba, which is not installed",
                         hint="pip install 'gtool[numba]'") from None
    return numba


def cache_dir() -> Path:
    """Where generated modules (and numba's caches beside them) live: $GTOOL_CACHE_DIR/numba,
    else $XDG_CACHE_HOME/gtool/numba, else ~/.cache/gtool/numba."""
    if os.environ.get("GTOOL_CACHE_DIR"):
        return Path(os.environ["GTOOL_CACHE_DIR"]) / "numba"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gtool" / "numba"


def blas_available() -> bool:
    """numba's np.dot needs SciPy's BLAS; without it matmul runs beside the compiled code."""
    try:
        from numba.np.linalg import ensure_blas

        ensure_blas()
        return True
    except Exception:  # ImportError, or numba's own "BLAS needs SciPy" error
        return False


_MODULES: dict[str, object] = {}


def load_module(source: str, prefix: str = "g"):
    """Write `source` to <cache>/<prefix>_<hash>.py (once: numba's cache keys on the file's
    mtime) and import it; the same text in one process gives the same module."""
    import numba

    key = hashlib.sha256(f"{VERSION}\n{numba.__version__}\n{sys.version}\n{source}".encode()).hexdigest()[:24]
    if key in _MODULES:
        return _MODULES[key]
    name = f"gtool_numba_{prefix}_{key}"
    path = _write(name, source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _MODULES[key] = module
    return module


def _write(name: str, source: str) -> Path:
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / "gtool-numba"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{name}.py"
            if not path.exists() or path.read_text() != source:
                tmp = folder / f".{name}.{os.getpid()}.tmp"
                tmp.write_text(source)
                os.replace(tmp, path)
            return path
        except OSError:
            continue
    raise UsageError("usage", f"cannot write generated code to {cache_dir()}", hint="set GTOOL_CACHE_DIR to a writable folder")


# vectorizable exp and tanh -------------------------------------------------------------------
# exp: Cody-Waite reduction by ln 2, the degree-13 Taylor polynomial on |r| <= ln2/2 (no
# division), 2^n from a table in two factors so subnormal results come out right; tanh: Cephes'
# rational approximation below 0.625, 1 - 2/(e^2|x| + 1) above. No libm calls, no branches, so
# LLVM vectorizes the loops that use them. exp is within 1 ulp of libm, tanh within 2 (the
# tests compare every op with NumPy to 1e-12).

VECMATH_PRELUDE = """
_POW2 = np.array([2.0 ** k for k in range(-560, 561)])
_EC = tuple(1.0 / math.factorial(k) for k in range(14))
_TP = (-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3)
_TQ = (1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3)"""

VECMATH = {
    "_vexp": """def _vexp(x):
    xc = min(max(x, -746.0), 710.0)
    px = math.floor(1.4426950408889634 * xc + 0.5)
    n = int(px)
    r = xc - px * 6.93145751953125e-1
    r = r - px * 1.42860682030941723212e-6
    p = _EC[13]
    for k in range(12, -1, -1):
        p = p * r + _EC[k]
    h = n >> 1
    y = p * _POW2[h + 560] * _POW2[n - h + 560]
    return x if x != x else y
""",
    "_vtanh": """def _vtanh(x):
    z = abs(x)
    s = _vexp(2.0 * (z if z < 40.0 else 40.0))
    big = 1.0 - 2.0 / (s + 1.0)
    big = big if x >= 0 else -big
    g = x * x
    small = x + x * g * ((_TP[0] * g + _TP[1]) * g + _TP[2]) / (((g + _TQ[0]) * g + _TQ[1]) * g + _TQ[2])
    y = small if z < 0.625 else big
    return x if x != x else y
""",
}


# emitting Python source ---------------------------------------------------------------------


class Names:
    """Stable variable names: values v<k>, dims d<k> (the same graph gives the same text)."""

    def __init__(self) -> None:
        self.vars: dict[str, str] = {}
        self.dims: dict = {}

    def var(self, value: str) -> str:
        if value not in self.vars:
            self.vars[value] = f"v{len(self.vars)}"
        return self.vars[value]

    def dim(self, d) -> str:
        if d.is_const:
            return str(d.value)
        if d not in self.dims:
            self.dims[d] = f"d{len(self.dims)}"
        return self.dims[d]


class Piece:
    """The code of one plan item, with the values it reads and defines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.reads: list[str] = []
        self.defs: list[str] = []
        self.dims: set[str] = set()
        self.extra: list[str] = []  # whole functions (parallel loops) to put at module level

    def read(self, value: str) -> None:
        if value not in self.reads:
            self.reads.append(value)


class CpuEmitter:
    """Turns fused plan items into numba-ready Python functions."""

    def __init__(self, types: dict[str, V], defaults: dict[str, int], parallel: bool) -> None:
        self.types = types
        self.defaults = defaults
        self.parallel = parallel
        self.names = Names()
        self.n_par = 0
        self.helpers: set[str] = set()
        self.consts: dict[str, str] = {}  # scalar constants, written into the code as literals
        self.vecmath = os.environ.get("GTOOL_NUMBA_VECMATH", "1") != "0"

    # references -------------------------------------------------------------------------------
    def _dim(self, piece: Piece):
        def dim(d):
            code = self.names.dim(d)
            if not d.is_const:
                piece.dims.add(code)
            return code

        return dim

    def _ref(self, piece: Piece, local: set[str]):
        def ref(value: str, flat: bool = False) -> str:
            if value in self.consts:
                return self.consts[value]
            if value not in local:
                piece.read(value)
            v = self.names.var(value)
            return f"f{v[1:]}" if flat else v

        return ref

    # items --------------------------------------------------------------------------------------
    def item(self, item) -> Piece:
        piece = Piece()
        if isinstance(item, Group):
            (self.scalar_group if item.shape == () else self.loop_group)(item, piece)
        else:
            self.single(item.m, piece)
        return piece

    def _scan_helpers(self, lines: list[str]) -> None:
        """Note the helper functions these lines call; with vector math on, exp and tanh
        become the branch-free `_vexp` / `_vtanh`, which LLVM can vectorize (libm calls it cannot)."""
        if self.vecmath:
            lines[:] = [line.replace("math.exp(", "_vexp(").replace("math.tanh(", "_vtanh(") for line in lines]
        code = "\n".join(lines)
        for h in list(HELPERS) + list(VECMATH):
            if h + "(" in code:
                self.helpers.add(h)
        if "_vtanh" in self.helpers:
            self.helpers.add("_vexp")

    def scalar_group(self, g: Group, piece: Piece) -> None:
        local = {m.name for m in g.members}
        ref = self._ref(piece, local)
        body = Body(g, self.types, [], reg=ref, scalar=ref, array=ref, dim=self._dim(piece))
        for m in g.members:
            if m.op == "reduce":
                expr = convert(body.load(m, 0), self.types[m.inputs[0]].dtype, m.v.dtype)
            else:
                expr = body.emit(m)
            body.lines.append(f"{self.names.var(m.name)} = {expr}")
            piece.defs.append(m.name)
        self._scan_helpers(body.lines)
        piece.lines += body.lines

    def _flat_ok(self, g: Group) -> bool:
        if len(g.shape) < 2:
            return False
        for m in g.members:
            if m.op in ("permute", "slice", "one_hot", "gather"):
                return False
            if m.op == "reduce" and not m.v.scalar:
                return False
            for u in m.inputs:
                v = self.types[u]
                if not v.scalar and v.shape != g.shape:
                    return False
        return True

    def _par_ok(self, g: Group, flat: bool) -> bool:
        if not self.parallel or numel(g.shape, self.defaults) < PAR_MIN:
            return False
        for m in g.members:
            if m.op in ("gather", "one_hot"):
                return False
            if m.op == "reduce":
                if m.attrs["kind"] not in ("sum", "mean"):
                    return False
                if m.v.scalar and not (flat or len(g.shape) == 1):
                    return False
                if not m.v.scalar and (flat or 0 in m.attrs["axes"]):
                    return False
        return True

    def loop_group(self, g: Group, piece: Piece) -> None:
        t = self.types
        names = self.names
        dim = self._dim(piece)
        S = g.shape
        ext = [dim(d) for d in S]
        flat = self._flat_ok(g)
        par = self._par_ok(g, flat)
        local = {m.name for m in g.members}
        ref = self._ref(piece, local)
        regs = {}

        def reg(value: str) -> str:
            return regs[value]

        idx = ["i"] if flat else [f"i{k}" for k in range(len(S))]
        reds = g.reductions
        blocked = bool(reds) and (flat or len(S) == 1) and \
            all(m.v.scalar and m.attrs["kind"] in ("sum", "mean") for m in reds)
        body = Body(g, t, idx, reg=reg, scalar=ref, array=ref, dim=dim, flat=flat)
        pre, post, accs, arrays = [], [], [], []
        size = " * ".join(ext)
        stored = [m for m in g.members if m.name in g.stored and m.op != "reduce"]
        for m in stored:
            v = names.var(m.name)
            pre.append(f"{v} = np.empty({_shape(ext)}, np.{m.v.dtype})")
            arrays.append(v)
            piece.defs.append(m.name)
        for m in g.members:
            body_k = names.var(m.name)[1:]
            if m.op == "reduce":
                acc_dt, init, kind = reduce_parts(m, t)
                acc = f"acc{body_k}"
                if m.v.scalar:
                    pre.append(f"{acc} = {init}")
                    accs.append((acc, True))
                else:
                    kept = [("1" if a in m.attrs["axes"] else e) for a, e in enumerate(ext)]
                    pre.append(f"{acc} = np.full({_shape(kept)}, {init}, np.{acc_dt})")
                    accs.append((acc, False))
                    arrays.append(acc)
                piece.defs.append(m.name)
                count = " * ".join(ext[a] for a in m.attrs["axes"]) or "1"
                out = names.var(m.name)
                if kind == "mean":
                    post.append(f"{acc} = {acc} / ({count})")
                if m.v.scalar:
                    post.append(f"{out} = {convert(acc, acc_dt, m.v.dtype)}")
                else:
                    cast = f".astype(np.{m.v.dtype})" if acc_dt != m.v.dtype else ""
                    post.append(f"{out} = {acc}{cast}.reshape({_shape([dim(d) for d in m.v.shape])})")
            else:
                regs[m.name] = f"r{body_k}"
        body_lines = []
        body.lines = body_lines
        for m in g.members:
            k = names.var(m.name)[1:]
            if m.op == "reduce":
                acc_dt, _, kind = reduce_parts(m, t)
                val = convert(body.load(m, 0), t[m.inputs[0]].dtype, acc_dt)
                target = f"acc{k}" if m.v.scalar else \
                    f"acc{k}[{', '.join('0' if a in m.attrs['axes'] else idx[a] for a in range(len(S)))}]"
                if blocked:
                    body_lines.append(f"buf{k}[{idx[0]} - s0] = {val}")
                elif kind in ("sum", "mean"):
                    body_lines.append(f"{target} += {val}")
                else:
                    body_lines.append(f"x{k} = {val}")
                    body_lines.append(f"if x{k} {'>' if kind == 'max' else '<'} {target} or x{k} != x{k}:")
                    body_lines.append(f"    {target} = x{k}")
                continue
            expr = body.emit(m)
            body_lines.append(f"r{k} = {expr}")
            if m.name in g.stored:
                where = f"f{k}[i]" if flat else f"v{k}[{', '.join(idx)}]"
                body_lines.append(f"{where} = r{k}")
        self._scan_helpers(body_lines)
        loop = []
        if flat:
            views = sorted({names.var(u) for m in g.members for u in m.inputs
                            if u not in local and not t[u].scalar} | set(arrays) - {a for a, _ in accs}, key=_vkey)
            for v in views:
                loop.append(f"f{v[1:]} = {v}.reshape({size})")
        if blocked:
            loop += self._blocked(g, idx[0], size, body_lines, par)
        elif flat:
            loop.append(f"for i in {'prange' if par else 'range'}({size}):")
            loop += ["    " + b for b in body_lines]
        else:
            for k, e in enumerate(ext):
                rng = "prange" if (par and k == 0) else "range"
                loop.append("    " * k + f"for i{k} in {rng}({e}):")
            loop += ["    " * len(ext) + b for b in body_lines]
        if not par:
            piece.lines += pre + loop + post
            return
        # the parallel loop is a function of its own (parallel=True applies to whole functions)
        self.n_par += 1
        fname = f"_par{self.n_par}"
        scalar_accs = [a for a, s in accs if s]
        array_accs = [a for a, s in accs if not s]
        reads = [names.var(u) for u in piece.reads]
        args = sorted(set(reads) | {v for v in arrays if v not in array_accs} | set(array_accs) | piece.dims, key=_vkey)
        fn = ["@njit(cache=True, error_model='numpy', parallel=True)", f"def {fname}({', '.join(args)}):"]
        fn += ["    " + line for line in [f"{a} = {init_of(pre, a)}" for a in scalar_accs] + loop]
        fn.append(f"    return ({', '.join(scalar_accs)}{',' if len(scalar_accs) == 1 else ''})")
        piece.extra.append("\n".join(fn))
        piece.lines += [line for line in pre if not any(line.startswith(a + " =") for a in scalar_accs)]
        lhs = ", ".join(scalar_accs) + ("," if len(scalar_accs) == 1 else "")
        piece.lines.append(f"{lhs + ' = ' if scalar_accs else ''}{fname}({', '.join(args)})")
        piece.lines += post

    def _blocked(self, g: Group, lv: str, size: str, body_lines: list[str], par: bool) -> list[str]:
        """The loop in blocks of BLOCK: the body writes reduction terms to a small buffer and a
        second loop adds them up in order. The body then carries no floating-point reduction,
        so LLVM can vectorize it (a strict `acc += v` chain forbids that)."""
        reds = [(self.names.var(m.name)[1:], reduce_parts(m, self.types)[0]) for m in g.reductions]
        out = [] if par else [f"buf{k} = np.empty({BLOCK}, np.{dt})" for k, dt in reds]
        out += [f"for b in {'prange' if par else 'range'}(({size} + {BLOCK - 1}) // {BLOCK}):",
                f"    s0 = b * {BLOCK}", f"    e0 = min(s0 + {BLOCK}, {size})"]
        if par:
            out += [f"    buf{k} = np.empty({BLOCK}, np.{dt})" for k, dt in reds]
        out.append(f"    for {lv} in range(s0, e0):")
        out += ["        " + b for b in body_lines]
        for k, dt in reds:
            out += [f"    t{k} = {'0.0' if dt == 'float64' else '0'}", "    for jj in range(e0 - s0):",
                    f"        t{k} += buf{k}[jj]", f"    acc{k} += t{k}"]
        return out

    def single(self, m, piece: Piece) -> None:
        t = self.types
        dim = self._dim(piece)
        ref = self._ref(piece, set())
        out = self.names.var(m.name)
        piece.defs.append(m.name)

        def array(u: str) -> str:
            if t[u].scalar:
                piece.read(u)
                return f"np.full({_shape([dim(d) for d in t[u].shape])}, {ref(u)}, np.{t[u].dtype})"
            return ref(u)

        if m.op == "alias":
            piece.lines.append(f"{out} = {ref(m.inputs[0])}")
        elif m.op == "reshape":
            piece.lines.append(f"{out} = {array(m.inputs[0])}.reshape({_shape([dim(d) for d in m.v.shape])})")
        elif m.op == "concat":
            parts = ", ".join(array(u) for u in m.inputs)
            piece.lines.append(f"{out} = np.concatenate(({parts},), axis={m.attrs['axis']})")
        elif m.op == "matmul":
            a, b = array(m.inputs[0]), array(m.inputs[1])
            a = a + ".T" if m.attrs.get("ta") else a
            b = b + ".T" if m.attrs.get("tb") else b
            one_d = t[m.inputs[0]].rank == 1 and t[m.inputs[1]].rank == 1
            tail = ".ravel()[0]" if m.v.scalar and not one_d else ""
            piece.lines.append(f"{out} = np.dot({a}, {b}){tail}")
        else:
            raise NotImplementedError(m.op)


def init_of(pre: list[str], acc: str) -> str:
    for line in pre:
        if line.startswith(acc + " = "):
            return line[len(acc) + 3:]
    raise KeyError(acc)


def _vkey(name: str):
    return (name[0], int(name[1:]) if name[1:].isdigit() else 0, name)


def _shape(parts) -> str:
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


# segments and the module ---------------------------------------------------------------------------


class Segment:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.reads: list[str] = []
        self.defs: list[str] = []
        self.dims: set[str] = set()
        self.rets: list[str] = []

    def add(self, piece: Piece) -> None:
        for r in piece.reads:
            if r not in self.defs and r not in self.reads:
                self.reads.append(r)
        self.defs += piece.defs
        self.dims |= piece.dims
        self.lines += piece.lines


def build(program, *, blas: bool, parallel: bool):
    """Lower, fuse and emit: (module source, run steps, names, types)."""
    low = Lowering(program, blas, matmul_ok=_matmul_ok(blas))
    nodes = low.run()
    types = low.types
    items = fuse(nodes, types, program.outputs)
    em = CpuEmitter(types, dict(program.graph.dims), parallel)
    em.consts = inline_constants(program, types)
    steps: list = []
    seg: Segment | None = None
    extra: list[str] = []
    for item in items:
        if isinstance(item, Single) and item.m.op == "fallback":
            seg = None
            steps.append(Fallback(item.m, program.graph))
            continue
        piece = em.item(item)
        extra += piece.extra
        if seg is None or (seg.lines and len(seg.lines) + len(piece.lines) > MAX_LINES):
            seg = Segment(f"seg{sum(isinstance(s, Segment) for s in steps)}")
            steps.append(seg)
        seg.add(piece)
    # what each segment returns: its values that later steps or the caller read
    later: set[str] = set(program.outputs)
    for step in reversed(steps):
        if isinstance(step, Segment):
            step.rets = [d for d in step.defs if d in later]
            later |= set(step.reads)
        else:
            later |= set(step.m.inputs)
    return _source(steps, extra, em, types), steps, em.names, types, em.consts


def _source(steps, extra, em: CpuEmitter, types) -> str:
    out = ["# generated by gtool (numba backend): one fused plan; do not edit", "import math", "",
           "import numpy as np", "from numba import njit, prange", ""]
    if "_vexp" in em.helpers:
        out += [VECMATH_PRELUDE]
    for h in sorted(em.helpers):
        out += ["", "@njit(cache=True, error_model='numpy')", (HELPERS.get(h) or VECMATH[h]).rstrip()]
    for fn in extra:
        out += ["", "", fn]
    for step in steps:
        if not isinstance(step, Segment):
            continue
        args = [em.names.var(r) for r in step.reads] + sorted(step.dims, key=_vkey)
        out += ["", "", "@njit(cache=True, error_model='numpy')", f"def {step.name}({', '.join(args)}):"]
        for r in step.reads:  # scalars arrive as Python numbers: give them their declared dtype
            v = types[r]
            if v.scalar and v.dtype in ("float32", "int32"):
                var = em.names.var(r)
                out.append(f"    {var} = np.{v.dtype}({var})")
        out += ["    " + line for line in step.lines]
        rets = [em.names.var(r) for r in step.rets]
        out.append(f"    return ({', '.join(rets)}{',' if len(rets) == 1 else ''})")
    return "\n".join(out) + "\n"


def inline_constants(program, types) -> dict[str, str]:
    """Literal code for each one-number constant: a 2,000-node chain has 1,334 of them, which
    as arguments would slow numba's compile tenfold; as literals LLVM folds them (x ** 2 -> x * x)."""
    out = {}
    for name in program.tensor_names:
        t = program.graph.tensors[name]
        v = types[name]
        if t.kind == "constant" and t.value is not None and v.scalar:
            out[name] = literal(np.asarray(t.value).reshape(()).item(), v.dtype)
    return out


def literal(x, dtype: str) -> str:
    if dtype == "bool":
        return repr(bool(x))
    if dtype.startswith("int"):
        code = repr(int(x))
    else:
        x = float(np.dtype(dtype).type(x))
        code = repr(x) if np.isfinite(x) else ("np.nan" if np.isnan(x) else ("np.inf" if x > 0 else "-np.inf"))
    return code if dtype in ("float64", "int64") else f"np.{dtype}({code})"


def _matmul_ok(blas: bool):
    def ok(a: V, b: V, out: V) -> bool:
        return blas and a.rank <= 2 and b.rank <= 2 and a.dtype == b.dtype and a.dtype in ("float32", "float64")

    return ok


# running ---------------------------------------------------------------------------------------------


class Compiled(CompiledPlan):
    """The plan as numba functions (segments) and NumPy fallbacks, run in order."""

    def __init__(self, program, backend: NumbaBackend, source: str, steps, names: Names, types, consts) -> None:
        super().__init__(program, backend)
        self.source = source
        self.types = types
        self.module = load_module(source)
        self.plan = []
        for step in steps:
            if isinstance(step, Segment):
                dims = sorted(step.dims, key=_vkey)
                self.plan.append(("seg", getattr(self.module, step.name), tuple(step.reads), dims, tuple(step.rets)))
            else:
                self.plan.append(("np", step, None, None, None))
        self.dim_list = sorted(names.dims.items(), key=lambda kv: _vkey(kv[1]))
        tensors = program.graph.tensors
        self.const_objs = [(n, tensors[n].value) for n in consts]
        self.const_names = [n for n, _ in self.const_objs]
        self.const_values = [o for _, o in self.const_objs]
        self.inputs = [(n, tensors[n].value) for n in program.tensor_names if n not in consts]
        self.consts = consts
        self.compiled_fns: set = set()

    @property
    def n_compiled(self) -> int:
        return sum(1 for p in self.plan if p[0] == "seg")

    @property
    def n_fallback(self) -> int:
        return sum(1 for p in self.plan if p[0] == "np")

    def _run(self, values: dict, bindings: dict) -> dict:
        import numba

        types = self.types
        dims = {code: d.evaluate(bindings) for d, code in self.dim_list}
        env: dict = {}
        get = values.get
        if not all(map(operator.is_, map(get, self.const_names, self.const_values), self.const_values)):
            # a constant was given other data than the graph's (its value is written into the code)
            for n, o in self.const_objs:
                if not np.array_equal(get(n, o), o):
                    raise ValueError(f"constant '{n}' was given other data than the graph's")
        for name, default in self.inputs:
            v = get(name)
            env[name] = _to_env(default if v is None else v, types[name], bindings)
        for kind, fn, reads, dnames, rets in self.plan:
            if kind == "seg":
                args = [env[r] for r in reads] + [dims[d] for d in dnames]
                if fn not in self.compiled_fns:  # compile (or load numba's cache) apart from running
                    t0 = time.perf_counter()
                    fn.compile(tuple(numba.typeof(a) for a in args))
                    self.compile_seconds += time.perf_counter() - t0
                    self.backend.last_compile_seconds = self.compile_seconds
                    self.compiled_fns.add(fn)
                res = fn(*args)
                for r, v in zip(rets, res):
                    env[r] = v
            else:
                m = fn.m
                out = fn.run([to_numpy(env[i], types[i]) for i in m.inputs], bindings)
                env[m.name] = _to_env(out, m.v, bindings)
        return {name: np.asarray(to_numpy(env[name], types[name])) for name in self.program.outputs}


def _to_env(x, v: V, bindings):
    """A value as compiled code takes it: a Python number for one-element values, else a
    C-contiguous array of the declared shape (anything else goes to the interpreter)."""
    if v.weak or v.scalar:
        return x.item() if hasattr(x, "item") else x
    x = np.ascontiguousarray(x)
    want = tuple(d.evaluate(bindings) for d in v.shape)
    if x.shape != want or x.dtype != np.dtype(v.dtype):
        raise ValueError(f"shape {x.shape} {x.dtype}, expected {want} {v.dtype}")
    return x


class NumbaBackend(Backend):
    """Whole-plan compilation with numba.njit (CPU). One instance per process."""

    name = "numba"

    def __init__(self) -> None:
        require_numba()
        # matmul inside compiled code calls SciPy's BLAS (numba's np.dot); without SciPy, or with
        # GTOOL_NUMBA_MATMUL=beside, NumPy's matmul runs between compiled segments
        self.blas = os.environ.get("GTOOL_NUMBA_MATMUL", "inside") == "inside" and blas_available()
        self.parallel = os.environ.get("GTOOL_NUMBA_PARALLEL", "1") != "0"
        self.last_compile_seconds = 0.0
        self.fallback_runs = 0

    def compile(self, program) -> Compiled:
        source, steps, names, types, consts = build(program, blas=self.blas, parallel=self.parallel)
        return Compiled(program, self, source, steps, names, types, consts)


__all__ = ["NumbaBackend", "cache_dir", "require_numba", "TEMPLATES", "is_one"]
