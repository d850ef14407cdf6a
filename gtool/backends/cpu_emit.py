"""Emitting numba-ready Python for fused plan items (the CPU backend's code writer).

`CpuEmitter.item` turns a `fusion.Group` into a loop nest (or straight-line code for a group
of one-number values) and a `fusion.Single` into an array operation. Loops whose bodies carry
sums are written in blocks so LLVM can vectorize them; loops over more than PAR_MIN elements
become parallel functions of their own. exp and tanh inside loops are the branch-free
`_vexp` / `_vtanh` below (GTOOL_NUMBA_VECMATH=0 turns that off).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
from pathlib import Path

from .codegen import HELPERS, Body, Group, V, convert, numel, reduce_parts
from .templates import TEMPLATES

PAR_MIN = 1 << 17  # loops with fewer elements stay on one thread (a parallel region costs ~10 us)
WIDE_MIN = 1 << 12  # vectorizable loops over at least this many elements run 8 doubles wide (AVX-512),
# and loops with vector math over a multiple of 8 (no scalar remainder: a 16-element chain of sines)
BLOCK = 256  # elements per block of a vectorizable loop with sums


# vectorizable exp, tanh, sin and cos (gtool/backends/vecmath.py) ------------------------------
# Inside loops, libm's exp, tanh, sin and cos become branch-free functions that LLVM can
# vectorize; the scalar templates of composite ops (sigmoid, softplus: `HELPERS`) call the
# vector exp too. The generated module imports them, with a hash of vecmath.py in a comment:
# the module's cache key is its text, so a change there recompiles (numba's own cache would
# not notice a change in an imported function).

VECMATH = {"_vexp": "vexp", "_vtanh": "vtanh", "_vsin": "vsin", "_vcos": "vcos", "_sexp": "sexp",
           "_vsincos": "vsincos", "_wide": "prefer_wide_vectors"}  # code -> vecmath
_VEC_CALLS = {"math.exp(": "_vexp(", "math.tanh(": "_vtanh(", "math.sin(": "_vsin(", "math.cos(": "_vcos("}
_SCALAR_CALLS = {"math.exp(": "_sexp("}  # in loops LLVM keeps scalar
_TRIG = ("math.sin(", "math.cos(")
TRIG_BAD = 2.0  # vecmath.TRIG_BAD (not imported: that module loads numba; a test holds them equal)
_VECMATH_HASH = hashlib.sha256((Path(__file__).parent / "vecmath.py").read_bytes()).hexdigest()[:16]
VECMATH_PRELUDE = f"# gtool.backends.vecmath {_VECMATH_HASH}"


def _calls_vector_math(template) -> bool:
    """Whether an elementwise op's scalar code calls exp, tanh, sin or cos (directly, or in the
    helper of a composite op such as sigmoid)."""
    args = [p for p in inspect.signature(template).parameters.values() if p.default is inspect.Parameter.empty]
    text = template(*["x"] * len(args))
    helper = text.split("(", 1)[0]
    text = HELPERS.get(helper, text)
    return any(c in text for c in _VEC_CALLS)


def vectorize_calls(lines: list[str], trig: bool, vector: bool = True) -> list[str]:
    """The lines with libm calls replaced by vecmath's (sin and cos only when `trig`: their
    callers must re-run the loop on libm for arguments beyond vecmath.TRIG_MAX; exp only by
    `sexp` when not `vector`)."""
    out = []
    for line in lines:
        for old, new in (_VEC_CALLS if vector else _SCALAR_CALLS).items():
            if trig or old not in _TRIG:
                line = line.replace(old, new)
        out.append(line)
    return out


def helper_sources(helpers: set[str], vecmath: bool) -> list[str]:
    """The module-level lines defining `helpers` (names used by generated code): imports of
    vecmath's functions, then composite ops' scalar helpers (inlined into their callers, so
    LLVM can vectorize and share their work) and array helpers."""
    defs = []
    for h in sorted(helpers):
        if h in HELPERS:
            text = HELPERS[h]
            if vecmath:
                text = "\n".join(vectorize_calls(text.splitlines(), trig=False))
                helpers |= {v for v in VECMATH if v + "(" in text}
            defs += ["", "@njit(cache=True, error_model='numpy', inline='always')", text.rstrip()]
        elif h in ARRAY_HELPERS:
            defs += ["", "@njit(cache=True, error_model='numpy')", ARRAY_HELPERS[h].rstrip()]
    used = sorted(h for h in helpers if h in VECMATH)
    if not used:
        return defs
    imports = ", ".join(f"{VECMATH[h]} as {h}" for h in used)
    return [VECMATH_PRELUDE, f"from gtool.backends.vecmath import {imports}"] + defs


# array helpers: whole-array ops as loop nests (defined once per module that calls them) -------

POOLS = ("max_pool2d", "avg_pool2d")  # micro-ops run by an array helper, called from the plan
ARRAY_HELPERS = {
    "_max_pool2d": """def _max_pool2d(x, oh, ow, kh, kw, sh, sw, dh, dw, ph, pw):
    n, c, h, w = x.shape
    out = np.empty((n, c, oh, ow), x.dtype)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                for j in range(ow):
                    m = -np.inf  # what the NumPy forward pads with; NaN wins below, as in np.maximum
                    for di in range(kh):
                        r = i * sh - ph + di * dh
                        if r < 0 or r >= h:
                            continue
                        for dj in range(kw):
                            q = j * sw - pw + dj * dw
                            if q < 0 or q >= w:
                                continue
                            v = x[a, b, r, q]
                            if v > m or v != v:
                                m = v
                    out[a, b, i, j] = m
    return out
""",
    "_avg_pool2d": """def _avg_pool2d(x, oh, ow, kh, kw, sh, sw, dh, dw, ph, pw, eh, ew, inc):
    n, c, h, w = x.shape
    out = np.empty((n, c, oh, ow), x.dtype)
    cnt = np.empty((oh, ow), x.dtype)  # the cells of each window in the input (and its padding)
    for i in range(oh):
        for j in range(ow):
            k = 0.0
            for di in range(kh):
                r = i * sh - ph + di * dh
                for dj in range(kw):
                    q = j * sw - pw + dj * dw
                    if inc:
                        k += 1.0 if (-ph <= r < h + eh and -pw <= q < w + ew) else 0.0
                    else:
                        k += 1.0 if (0 <= r < h and 0 <= q < w) else 0.0
            cnt[i, j] = k
    zero = np.zeros(1, x.dtype)[0]
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                for j in range(ow):
                    s = zero  # summed in x's dtype, in offset order, as the NumPy forward
                    for di in range(kh):
                        r = i * sh - ph + di * dh
                        if 0 <= r < h:
                            for dj in range(kw):
                                q = j * sw - pw + dj * dw
                                if 0 <= q < w:
                                    s += x[a, b, r, q]
                    y = s / cnt[i, j]
                    if np.isinf(y):  # a sum past the dtype's largest value: sum the shares instead
                        t = zero
                        for di in range(kh):
                            r = i * sh - ph + di * dh
                            if 0 <= r < h:
                                for dj in range(kw):
                                    q = j * sw - pw + dj * dw
                                    if 0 <= q < w:
                                        t += x[a, b, r, q] / cnt[i, j]
                        if np.isfinite(t):
                            y = t
                    out[a, b, i, j] = y
    return out
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
        self.workspace: set[str] = set()  # stored values that live in a workspace row (kernels.py)
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

    def _scan_helpers(self, lines: list[str], trig: bool = False, vector: bool = True) -> None:
        """Note the helper functions these lines call; with vector math on, libm calls become
        vecmath's branch-free functions, which LLVM can vectorize (sin and cos when `trig`)."""
        if self.vecmath:
            lines[:] = vectorize_calls(lines, trig, vector)
            if vector and trig:
                lines[:] = merge_sincos(lines)
        code = "\n".join(lines)
        for h in list(HELPERS) + list(VECMATH):
            if h + "(" in code:
                self.helpers.add(h)

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
        self._scan_helpers(body.lines, vector=False)
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

    def reduction_layout(self, g: Group) -> str | None:
        """How loop group g's reductions are written: "blocked" (sums of everything, in blocks:
        `_blocked`), "rowwise" (sums along rows of at least ROW_LONG: a buffer per row, `_loop`),
        "rowreg" (reductions along shorter rows: into a local per row, stored after the row;
        the array element, which numba arrays' possible aliasing kept in memory, was loaded and
        stored at each index), or None (`acc op= v` at each index). Only the first two vectorize."""
        if not g.reductions:
            return None
        sums = all(m.attrs["kind"] in ("sum", "mean") for m in g.reductions)
        if sums and (self._flat_ok(g) or len(g.shape) == 1) and all(m.v.scalar for m in g.reductions):
            return "blocked"
        last = len(g.shape) - 1
        if last < 1 or self._flat_ok(g) or \
                not all(not m.v.scalar and set(m.attrs["axes"]) == {last} for m in g.reductions):
            return None
        return "rowwise" if sums and numel(g.shape[-1:], self.defaults) >= ROW_LONG else "rowreg"

    def scalar_loop(self, g: Group) -> bool:
        """Whether loop group g's reductions keep its loop scalar (fusion.split_vector_math)."""
        return bool(g.reductions) and self.reduction_layout(g) not in ("blocked", "rowwise")

    def loop_group(self, g: Group, piece: Piece) -> None:
        """A group over a shape as a loop nest: arrays and accumulators first, the body at each
        index, the results after; a big enough loop becomes a parallel function of its own."""
        dim = self._dim(piece)
        ext = [dim(d) for d in g.shape]
        flat = self._flat_ok(g)
        par = self._par_ok(g, flat)
        local = {m.name for m in g.members}
        ref = self._ref(piece, local)
        idx = ["i"] if flat else [f"i{k}" for k in range(len(g.shape))]
        layout = self.reduction_layout(g)
        blocked, rowwise, rowreg = layout == "blocked", layout == "rowwise", layout == "rowreg"
        row = numel(g.shape[-1:], self.defaults)
        pre, post, accs, arrays, regs = self._loop_setup(g, piece, ext, dim)
        body = Body(g, self.types, idx, reg=regs.__getitem__, scalar=ref, array=ref, dim=dim, flat=flat)
        body_lines = hoist_loads(self._loop_body(g, body, idx, blocked or rowwise, flat, rowreg), set(arrays))
        row_pre: list[str] = []
        if not flat and len(idx) > 1:
            row_pre, body_lines = hoist_row_loads(body_lines, idx[-1], set(arrays))
        libm_lines = list(body_lines)
        stores, loads = loop_arrays(body_lines, {self.names.vars[n] for n in self.workspace if n in self.names.vars})
        # an `if` (max/min, gather) or an in-order `acc += v` keeps the loop scalar too; past
        # VEC_CALLS inlined calls LLVM's time grows more than the loop gains
        calls = sum(b.count(c) for b in body_lines for c in _VEC_CALLS)
        if vectorizable(stores, loads) and calls <= VEC_CALLS and \
                not any(b.startswith("if ") or " += " in b for b in body_lines):
            n = numel(g.shape, self.defaults)
            inner = n if (flat or len(g.shape) < 2) else row
            if self.vecmath and inner >= 8 and (n >= WIDE_MIN or calls) and (inner >= WIDE_MIN or inner % 8 == 0):
                body_lines.insert(0, "_wide()")  # marks the function that holds the loop
            self._scan_helpers(body_lines, trig=not par)
        else:  # LLVM keeps this loop scalar, where libm is faster than the vector functions
            self._scan_helpers(body_lines, vector=False)
        size = " * ".join(ext)
        loop = []
        if flat:
            views = sorted({self.names.var(u) for m in g.members for u in m.inputs
                            if u not in local and not self.types[u].scalar} | set(arrays) - {a for a, _ in accs},
                           key=vkey)
            loop += [f"f{v[1:]} = {v}.reshape({size})" for v in views]
        checked = trig_checked(body_lines)
        if rowwise and not par:
            pre += [f"buf{k} = np.empty({ext[-1]}, np.{dt})" for k, dt in self._reduction_buffers(g)]
        if rowreg:  # each row's accumulators start before its loop and are stored after it
            row_pre = row_pre + [f"t{k} = {reduce_parts(m, self.types)[1]}" for k, m in self._reduced(g)]
        loop += self._loop(g, ext, idx, size, checked, blocked, flat, par, rowwise, row_pre, rowreg)
        if checked != body_lines:  # sin/cos beyond vecmath.TRIG_MAX: the loop again, on libm
            pre.append("nbig = 0")
            loop.append("if nbig:")
            loop += ["    " + line for line in pre if any(line.startswith(a + " =") for a, _ in accs)]
            loop += ["    " + line for line in self._loop(g, ext, idx, size, libm_lines, blocked, flat, par, rowwise,
                                                         row_pre, rowreg)]
        if par:
            self._parallel(piece, pre, loop, post, accs, arrays)
        else:
            piece.lines += pre + loop + post

    def _loop(self, g: Group, ext, idx, size: str, body_lines: list[str], blocked: bool, flat: bool, par: bool,
              rowwise: bool = False, row_pre: tuple[str, ...] | list[str] = (), rowreg: bool = False):
        """The loop (nest) running `body_lines` at each index. `rowwise`: the group's sums run
        over the last axis only; the body writes each row's terms to a buffer, and the row's sum
        is added up after the innermost loop, in the same order as `acc += v` at each index
        would (the same digits), leaving the innermost loop free of reductions so that LLVM can
        vectorize it (with vector exp: the exps of a softmax over 512 classes, 3.5x faster; rows
        shorter than ROW_LONG were slower so: the vector loop is mostly its scalar remainder).
        `row_pre` (hoist_row_loads) runs before the innermost loop."""
        if blocked:
            return self._blocked(g, idx[0], size, body_lines, par)
        if flat:
            return [f"for i in {'prange' if par else 'range'}({size}):"] + ["    " + b for b in body_lines]
        loop = []
        for k, e in enumerate(ext):
            loop.append("    " * k + f"for i{k} in {'prange' if (par and k == 0) else 'range'}({e}):")
            if rowwise and par and k == 0:  # a buffer per thread
                loop += [f"    buf{r} = np.empty({ext[-1]}, np.{dt})" for r, dt in self._reduction_buffers(g)]
            if k == len(ext) - 2:  # what the innermost loop reads at one index of the outer ones
                loop += ["    " * (k + 1) + line for line in row_pre]
        loop += ["    " * len(ext) + b for b in body_lines]
        if rowreg:
            pad = "    " * (len(ext) - 1)
            loop += [pad + f"acc{r}[{', '.join(idx[:-1])}, 0] = t{r}" for r, _ in self._reduced(g)]
        if rowwise:
            pad = "    " * (len(ext) - 1)
            for r, dt in self._reduction_buffers(g):
                target = f"acc{r}[{', '.join(idx[:-1])}, 0]"
                loop += [pad + line for line in (f"t{r} = {'0.0' if dt.startswith('float') else '0'}",
                                                 f"for jj in range({ext[-1]}):", f"    t{r} += buf{r}[jj]",
                                                 f"{target} += t{r}")]
        return loop

    def _reduced(self, g: Group) -> list[tuple[str, object]]:
        """(number, member) of each reduction."""
        return [(self.names.var(m.name)[1:], m) for m in g.reductions]

    def _reduction_buffers(self, g: Group) -> list[tuple[str, str]]:
        """(number, accumulator dtype) of each reduction's buffer."""
        return [(self.names.var(m.name)[1:], reduce_parts(m, self.types)[0]) for m in g.reductions]

    def _loop_setup(self, g: Group, piece: Piece, ext: list[str], dim):
        """(pre, post, accumulators, arrays, registers): the arrays of stored members, one
        accumulator per reduction (a scalar, or an array with the reduced axes kept), and the
        lines that finish them (mean's division, the cast to the declared dtype)."""
        names, t = self.names, self.types
        pre, post, accs, arrays, regs = [], [], [], [], {}
        for m in g.members:
            if m.name in g.stored and m.op != "reduce":
                v = names.var(m.name)
                if m.name not in self.workspace:  # else bound to its row by the segment
                    pre.append(f"{v} = np.empty({_shape(ext)}, np.{m.v.dtype})")
                arrays.append(v)
                piece.defs.append(m.name)
        for m in g.members:
            k = names.var(m.name)[1:]
            if m.op != "reduce":
                regs[m.name] = f"r{k}"
                continue
            acc_dt, init, kind = reduce_parts(m, t)
            acc = f"acc{k}"
            if m.v.scalar:
                pre.append(f"{acc} = {init}")
            else:
                kept = [("1" if a in m.attrs["axes"] else e) for a, e in enumerate(ext)]
                pre.append(f"{acc} = np.full({_shape(kept)}, {init}, np.{acc_dt})")
                arrays.append(acc)
            accs.append((acc, m.v.scalar))
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
        return pre, post, accs, arrays, regs

    def _loop_body(self, g: Group, body: Body, idx: list[str], blocked: bool, flat: bool,
                   rowreg: bool = False) -> list[str]:
        """The statements at one index: each member into its register (and its array when
        stored); reductions add into their accumulator (or a block buffer), max/min keep NaN."""
        t = self.types
        body.lines = lines = []
        for m in g.members:
            k = self.names.var(m.name)[1:]
            if m.op != "reduce":
                lines.append(f"r{k} = {body.emit(m)}")
                if m.name in g.stored:
                    where = f"f{k}[i]" if flat else f"v{k}[{', '.join(idx)}]"
                    lines.append(f"{where} = r{k}")
                continue
            acc_dt, _, kind = reduce_parts(m, t)
            val = convert(body.load(m, 0), t[m.inputs[0]].dtype, acc_dt)
            target = f"acc{k}" if m.v.scalar else f"t{k}" if rowreg else \
                f"acc{k}[{', '.join('0' if a in m.attrs['axes'] else idx[a] for a in range(len(g.shape)))}]"
            if blocked and len(idx) > 1:  # a row's terms (see `_loop`)
                lines.append(f"buf{k}[{idx[-1]}] = {val}")
            elif blocked:
                lines.append(f"buf{k}[{idx[0]} - s0] = {val}")
            elif kind in ("sum", "mean"):
                lines.append(f"{target} += {val}")
            else:
                lines += [f"x{k} = {val}", f"if x{k} {'>' if kind == 'max' else '<'} {target} or x{k} != x{k}:",
                          f"    {target} = x{k}"]
        return lines

    def _parallel(self, piece: Piece, pre, loop, post, accs, arrays) -> None:
        """The parallel loop as a function of its own (parallel=True applies to whole functions)."""
        names = self.names
        self.n_par += 1
        fname = f"_par{self.n_par}"
        scalar_accs = [a for a, s in accs if s]
        array_accs = [a for a, s in accs if not s]
        reads = [names.var(u) for u in piece.reads]
        args = sorted(set(reads) | {v for v in arrays if v not in array_accs} | set(array_accs) | piece.dims, key=vkey)
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
            lanes = SUM_LANES if numel(g.shape, self.defaults) >= LANES_MIN else 1
            out += ["    " + line for line in block_sum(f"buf{k}", f"t{k}", "e0 - s0", dt, lanes)] + [f"    acc{k} += t{k}"]
        return out

    def pool_call(self, m) -> tuple[str, list[int]]:
        """(helper, its int arguments after x) for a lowered 2-D pool (spatial sizes are constant)."""
        self.helpers.add("_" + m.op)
        at = m.attrs
        ints = [d.value for d in m.v.shape[2:]] + [*at["kernel"], *at["stride"], *at["dilation"], *at["pads"]]
        if m.op == "avg_pool2d":
            ints += [*at["ends"], int(at["include"])]
        return "_" + m.op, ints

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


MEMORY_CHECKS = 8  # LLVM's -runtime-memory-check-threshold: a loop needing more stays scalar
# the most vector-math calls inlined into one loop: a chain loop of 32 dependent vector sines
# (its stores staged in one array so that it vectorizes) ran no faster than libm (latency-bound:
# 6.2 vs 6.6 us) and compiled 2-4x longer (docs/backends.md, issue 15)
VEC_CALLS = 8
# the ops whose code calls vector math: fusion closes a loop before its (VEC_CALLS + 1)-th, so a
# chain of sines becomes loops of 8 that vectorize (across the elements) instead of one scalar loop
VECTOR_OPS = frozenset(op for op, template in TEMPLATES.items() if _calls_vector_math(template))


ROW_LONG = 32  # sums along rows at least this long go through a buffer (`CpuEmitter._loop`)
SUM_LANES = 8  # independent partial sums per block: one chain of adds waits ~4 cycles an element
LANES_MIN = 1 << 12  # loops with fewer elements sum each block in order (the code is shorter)


def block_sum(buf: str, total: str, count: str, dtype: str, n_lanes: int = SUM_LANES) -> list[str]:
    """Lines adding up buf[:count] into `total` in `n_lanes` interleaved partial sums, joined
    pairwise (NumPy's np.sum does the same in its blocks of 128). One in-order chain of adds is
    bound by the add's latency: it took 2 of the 8 ms of a 1M-element fused loop with a sum.
    One lane is the plain in-order loop (sums of fewer than LANES_MIN: less code to compile)."""
    zero = "0.0" if dtype.startswith("float") else "0"
    if n_lanes == 1:
        return [f"{total} = {zero}", f"for jj in range({count}):", f"    {total} += {buf}[jj]"]
    lanes = [f"{total}_{j}" for j in range(n_lanes)]
    lines = [f"{' = '.join(lanes)} = {zero}", f"for jj in range(0, ({count}) - {n_lanes - 1}, {n_lanes}):"]
    lines += [f"    {lane} += {buf}[jj + {j}]" for j, lane in enumerate(lanes)]
    lines += [f"for jj in range(({count}) // {n_lanes} * {n_lanes}, {count}):", f"    {lanes[0]} += {buf}[jj]"]
    while len(lanes) > 1:
        lanes = [f"({lanes[j]} + {lanes[j + 1]})" for j in range(0, len(lanes), 2)]
    return lines + [f"{total} = {lanes[0]}"]


def vectorizable(stores: int, loads: int) -> bool:
    """Whether LLVM's loop vectorizer can prove a loop's arrays apart with at most MEMORY_CHECKS
    run-time checks (one per pair of arrays where one is written; numba arrays may alias).
    A fused loop storing 32 values (a chain's saved activations) needs 496: it stays scalar, and
    an inlined vector sin there is slower than libm's (a loop of 32 sines: 23.8 vs ~6.6 us)."""
    return stores * (stores - 1) // 2 + stores * loads <= MEMORY_CHECKS


_LOAD = re.compile(r"\b([fv]\d+)\[([i0-9, +()]+)\]")


def _written(name: str, written: set[str]) -> bool:
    return name in written or "f" + name[1:] in written or "v" + name[1:] in written


def hoist_row_loads(lines: list[str], inner: str, written: set[str]) -> tuple[list[str], list[str]]:
    """(lines for before the innermost loop, the body): reads of arrays the loop does not write
    at an index without the innermost loop variable (a row's max, `v3[i0, 0]`) are made once
    per row. In the loop they were accesses LLVM must check against every store (numba arrays
    may alias): a softmax row's loop needed more run-time checks than LLVM makes, and stayed
    scalar."""
    pre: dict[str, str] = {}
    var = re.compile(rf"\b{inner}\b")

    def swap(m: re.Match) -> str:
        if _written(m.group(1), written) or var.search(m.group(2)):
            return m.group(0)
        return pre.setdefault(m.group(0), f"h{len(pre)}")

    body = []
    for line in lines:
        lhs, eq, rhs = line.partition(" = ")
        body.append(lhs + eq + _LOAD.sub(swap, rhs) if eq else line)
    return [f"{name} = {text}" for text, name in pre.items()], body


_STORE = re.compile(r"^(\w+)\[[^\]]*\] \+?= ")


def loop_arrays(lines: list[str], workspace: set[str]) -> tuple[int, int]:
    """(arrays stored to, other arrays read) in a loop body, for `vectorizable`. Rows of one
    workspace count as one array: LLVM checks the rows of a chain's segment as one group
    (a loop storing 8 rows and reading one input vectorizes)."""
    def key(name: str) -> str:
        return "w" if "v" + name[1:] in workspace else name

    stored, read = set(), set()
    for line in lines:
        store = _STORE.match(line)
        if store:
            stored.add(key(store.group(1)))
        for m in _LOAD.finditer(line[store.end():] if store else line.partition(" = ")[2] or line):
            read.add(key(m.group(1)))
    return len(stored), len(read - stored)


def hoist_loads(lines: list[str], written: set[str]) -> list[str]:
    """The body with each input element read more than once read once, at its top. A store
    between two reads of x[i] (a buffer, a stored value) makes LLVM load x[i] again (numba
    arrays may alias), and what was computed from it again: the elementwise backward's
    e^-|x| was computed twice, once in sigmoid and once in its derivative."""
    counts: dict[str, int] = {}
    for line in lines:
        rhs = line.split(" = ", 1)[-1]
        for m in _LOAD.finditer(rhs):
            if m.group(1) not in written and "f" + m.group(1)[1:] not in written and "v" + m.group(1)[1:] not in written:
                counts[m.group(0)] = counts.get(m.group(0), 0) + 1
    shared = {text: f"a{k}" for k, text in enumerate(t for t, c in counts.items() if c > 1)}
    if not shared:
        return lines
    out = [f"{name} = {text}" for text, name in shared.items()]
    for line in lines:
        lhs, eq, rhs = line.partition(" = ")
        if eq:
            line = lhs + eq + _LOAD.sub(lambda m: shared.get(m.group(0), m.group(0)), rhs)
        out.append(line)
    return out


_SIN = re.compile(r"^(r\d+) = _vsin\((.*)\)$")
_COS = re.compile(r"^(r\d+) = _vcos\((.*)\)$")


def merge_sincos(lines: list[str]) -> list[str]:
    """The body with `rA = _vsin(e)` ... `rB = _vcos(e)` (either order) as one `rA, rB =
    _vsincos(e)` at the first: one argument reduction for both (registers are assigned once,
    so `e` means the same at both lines)."""
    sines = {m.group(2): (k, m.group(1)) for k, m in ((k, _SIN.match(x)) for k, x in enumerate(lines)) if m}
    cosines = {m.group(2): (k, m.group(1)) for k, m in ((k, _COS.match(x)) for k, x in enumerate(lines)) if m}
    out = list(lines)
    drop = set()
    for arg in sines.keys() & cosines.keys():
        (ks, rs), (kc, rc) = sines[arg], cosines[arg]
        out[min(ks, kc)] = f"{rs}, {rc} = _vsincos({arg})"
        drop.add(max(ks, kc))
    return [x for k, x in enumerate(out) if k not in drop]


def trig_checked(lines: list[str]) -> list[str]:
    """The loop body counting, in `nbig`, the vecmath sines and cosines that came back as
    TRIG_BAD (finite arguments beyond TRIG_MAX, which need libm's exact reduction)."""
    out = []
    for line in lines:
        out.append(line)
        if "_vsin(" in line or "_vcos(" in line or "_vsincos(" in line:
            reg = line.split(" = ", 1)[0].split(",")[0]  # a sincos pair: both or neither are TRIG_BAD
            out.append(f"nbig += {reg} == {TRIG_BAD!r}")
    return out


def init_of(pre: list[str], acc: str) -> str:
    for line in pre:
        if line.startswith(acc + " = "):
            return line[len(acc) + 3:]
    raise KeyError(acc)


def vkey(name: str):
    return (name[0], int(name[1:]) if name[1:].isdigit() else 0, name)


def _shape(parts) -> str:
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


