"""Emitting numba-ready Python for fused plan items (the CPU backend's code writer).

`CpuEmitter.item` turns a `fusion.Group` into a loop nest (or straight-line code for a group
of one-number values) and a `fusion.Single` into an array operation. Loops whose bodies carry
sums are written in blocks so LLVM can vectorize them; loops over more than PAR_MIN elements
become parallel functions of their own. exp and tanh inside loops are the branch-free
`_vexp` / `_vtanh` below (GTOOL_NUMBA_VECMATH=0 turns that off).
"""

from __future__ import annotations

import os

from .codegen import HELPERS, Body, Group, V, convert, numel, reduce_parts

PAR_MIN = 1 << 17  # loops with fewer elements stay on one thread (a parallel region costs ~10 us)
BLOCK = 256  # elements per block of a vectorizable loop with sums


# vectorizable exp and tanh -------------------------------------------------------------------
# exp: Cody-Waite reduction by ln 2, the degree-13 Taylor polynomial on |r| <= ln2/2 (no
# division), 2^n from a table in two factors so subnormal results come out right; tanh: Cephes'
# rational approximation below 0.625, 1 - 2/(e^2|x| + 1) above. No libm calls, no branches, so
# LLVM vectorizes the loops that use them. exp is within 1 ulp of libm, tanh within 2
# (tests/test_backend_ulps.py holds every elementwise op to 2 ULPs of NumPy). NaN is replaced by
# 0 before the reduction: int(floor(NaN)) is undefined (INT_MIN on x86) and indexed _POW2 far out
# of bounds, a read past the JIT's constant data that segfaulted depending on what had been
# compiled before in the process (tests/test_backend_bounds.py).

VECMATH_PRELUDE = """
_POW2 = np.array([2.0 ** k for k in range(-560, 561)])
_EC = tuple(1.0 / math.factorial(k) for k in range(14))
_TP = (-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3)
_TQ = (1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3)"""

VECMATH = {
    "_vexp": """def _vexp(x):
    xc = min(max(x if x == x else 0.0, -746.0), 710.0)
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
        """A group over a shape as a loop nest: arrays and accumulators first, the body at each
        index, the results after; a big enough loop becomes a parallel function of its own."""
        dim = self._dim(piece)
        ext = [dim(d) for d in g.shape]
        flat = self._flat_ok(g)
        par = self._par_ok(g, flat)
        local = {m.name for m in g.members}
        ref = self._ref(piece, local)
        idx = ["i"] if flat else [f"i{k}" for k in range(len(g.shape))]
        blocked = bool(g.reductions) and (flat or len(g.shape) == 1) and \
            all(m.v.scalar and m.attrs["kind"] in ("sum", "mean") for m in g.reductions)
        pre, post, accs, arrays, regs = self._loop_setup(g, piece, ext, dim)
        body = Body(g, self.types, idx, reg=regs.__getitem__, scalar=ref, array=ref, dim=dim, flat=flat)
        body_lines = self._loop_body(g, body, idx, blocked, flat)
        self._scan_helpers(body_lines)
        size = " * ".join(ext)
        loop = []
        if flat:
            views = sorted({self.names.var(u) for m in g.members for u in m.inputs
                            if u not in local and not self.types[u].scalar} | set(arrays) - {a for a, _ in accs},
                           key=vkey)
            loop += [f"f{v[1:]} = {v}.reshape({size})" for v in views]
        if blocked:
            loop += self._blocked(g, idx[0], size, body_lines, par)
        elif flat:
            loop.append(f"for i in {'prange' if par else 'range'}({size}):")
            loop += ["    " + b for b in body_lines]
        else:
            for k, e in enumerate(ext):
                loop.append("    " * k + f"for i{k} in {'prange' if (par and k == 0) else 'range'}({e}):")
            loop += ["    " * len(ext) + b for b in body_lines]
        if par:
            self._parallel(piece, pre, loop, post, accs, arrays)
        else:
            piece.lines += pre + loop + post

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

    def _loop_body(self, g: Group, body: Body, idx: list[str], blocked: bool, flat: bool) -> list[str]:
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
            target = f"acc{k}" if m.v.scalar else \
                f"acc{k}[{', '.join('0' if a in m.attrs['axes'] else idx[a] for a in range(len(g.shape)))}]"
            if blocked:
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
            out += [f"    t{k} = {'0.0' if dt == 'float64' else '0'}", "    for jj in range(e0 - s0):",
                    f"        t{k} += buf{k}[jj]", f"    acc{k} += t{k}"]
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


def init_of(pre: list[str], acc: str) -> str:
    for line in pre:
        if line.startswith(acc + " = "):
            return line[len(acc) + 3:]
    raise KeyError(acc)


def vkey(name: str):
    return (name[0], int(name[1:]) if name[1:].isdigit() else 0, name)


def _shape(parts) -> str:
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


