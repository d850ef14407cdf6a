"""--backend cuda: the plan as numba.cuda kernels; tensors stay on the GPU between nodes.

The same lowering and fusion as the CPU backend (`codegen`), with reductions as kernels of
their own: each fused group is one grid-stride kernel, each reduction one block per output
element (a shared-memory tree), matmul a tiled shared-memory kernel. Inputs go to the device
once per run and outputs come back once; one-number values live on the device as 1-element
arrays. Ops without a kernel run their NumPy forward on the host (a transfer each way; the
docs list them). Under NUMBA_ENABLE_CUDASIM=1 everything runs on numba's simulator.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from . import Backend
from .codegen import (
    HELPERS,
    Body,
    CompiledPlan,
    Fallback,
    Group,
    Lowering,
    Single,
    V,
    convert,
    fuse,
    reduce_parts,
    refuse_dtypes,
    to_numpy,
)
from .numba_cpu import Names, inline_constants, load_module, require_numba

TILE_GPU, TILE_SIM = 16, 2  # matmul tile edge
TPB_GPU, TPB_SIM = 128, 2  # threads per block (the simulator runs a Python thread per GPU thread)


def require_cuda():
    """numba.cuda with a GPU or the simulator, else a UsageError saying what to do."""
    require_numba()
    from numba import config, cuda

    if not config.ENABLE_CUDASIM and not cuda.is_available():
        raise UsageError("usage", "no CUDA GPU found; use --backend numpy",
                         hint="or set NUMBA_ENABLE_CUDASIM=1 to run the CUDA kernels on numba's simulator (slow)")
    return cuda, bool(config.ENABLE_CUDASIM)


class Launch:
    """One step of a run: a kernel launch or a host-side operation, with its value names."""

    def __init__(self, kind: str, name: str, ins: list[str], outs: list[str], **info) -> None:
        self.kind, self.name, self.ins, self.outs, self.info = kind, name, ins, outs, info


class CudaEmitter:
    def __init__(self, types: dict[str, V], consts: dict[str, str], host_scalars: set[str], sim: bool) -> None:
        self.types = types
        self.consts = consts
        self.host = host_scalars  # one-number values held on the host (inputs, fallback outputs)
        self.names = Names()
        self.tpb = TPB_SIM if sim else TPB_GPU
        self.tile = TILE_SIM if sim else TILE_GPU
        self.src: list[str] = []
        self.steps: list[Launch] = []
        self.helpers: set[str] = set()
        self.n = 0

    def _kname(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def item(self, item) -> None:
        if isinstance(item, Group):
            self.group(item)
        elif item.m.op == "fallback":
            self.steps.append(Launch("host", item.m.name, list(item.m.inputs), [item.m.name]))
        elif item.m.op == "reduce":
            self.reduce(item.m)
        elif item.m.op == "matmul":
            self.steps.append(Launch("matmul", item.m.name, list(item.m.inputs), [item.m.name], **item.m.attrs))
        elif item.m.op in ("reshape", "alias"):
            self.steps.append(Launch("reshape", item.m.name, list(item.m.inputs), [item.m.name]))
        elif item.m.op == "concat":
            self.concat(item.m)
        else:
            raise NotImplementedError(item.m.op)

    def _refs(self, args: list[str], dims: list[str]):
        t = self.types

        def ref(value: str, flat: bool = False) -> str:
            if value in self.consts:
                return self.consts[value]
            v = self.names.var(value)
            if value not in args:
                args.append(value)
            if t[value].scalar and value not in self.host:
                return f"{v}[0]"
            return v

        def dim(d) -> str:
            code = self.names.dim(d)
            if not d.is_const and code not in dims:
                dims.append(code)
            return code

        return ref, dim

    def group(self, g: Group) -> None:
        t = self.types
        args: list[str] = []
        dims: list[str] = []
        ref, dim = self._refs(args, dims)
        regs = {m.name: f"r{self.names.var(m.name)[1:]}" for m in g.members}
        idx = [f"i{k}" for k in range(len(g.shape))]
        body = Body(g, t, idx, reg=lambda u: regs[u], scalar=ref, array=ref, dim=dim,
                    raise_stmt="err[0] = 1; {j} = 0")
        for m in g.members:
            k = self.names.var(m.name)[1:]
            if m.op == "reduce":  # of one number: that number
                expr = convert(body.load(m, 0), t[m.inputs[0]].dtype, m.v.dtype)
            else:
                expr = body.emit(m)
            body.lines.append(f"r{k} = {expr}")
            if m.name in g.stored:
                where = f"v{k}[{', '.join(idx)}]" if g.shape else f"v{k}[0]"
                body.lines.append(f"{where} = r{k}")
        outs = [m.name for m in g.members if m.name in g.stored]
        ext = [dim(d) for d in g.shape]
        ins = [a for a in args if a not in outs]
        name = self._kname("k")
        params = [self.names.var(a) for a in ins] + [self.names.var(o) for o in outs] + dims + ["err"]
        lines = ["@cuda.jit", f"def {name}({', '.join(params)}):"]
        if g.shape:
            total = " * ".join(ext)
            lines += ["    for p in range(cuda.grid(1), " + total + ", cuda.gridsize(1)):", "        q = p"]
            for k in range(len(ext) - 1, 0, -1):
                lines += [f"        i{k} = q % {ext[k]}", f"        q = q // {ext[k]}"]
            lines.append("        i0 = q")
            lines += ["        " + b for b in body.lines]
        else:
            lines += ["    if cuda.grid(1) == 0:"] + ["        " + b for b in body.lines]
        self._helpers("\n".join(body.lines))
        self.src.append("\n".join(lines))
        self.steps.append(Launch("kernel", name, ins, outs, dims=dims, shape=g.shape))

    def _helpers(self, code: str) -> None:
        for h in HELPERS:
            if h + "(" in code:
                self.helpers.add(h)

    def reduce(self, m) -> None:
        """One block per output element: threads stride over the reduced elements, then a
        shared-memory tree combines them (NaN-propagating for max/min)."""
        t = self.types
        xv = t[m.inputs[0]]
        axes = m.attrs["axes"]
        args: list[str] = []
        dims: list[str] = []
        ref, dim = self._refs(args, dims)
        x = ref(m.inputs[0])
        ext = [dim(d) for d in xv.shape]
        kept = [a for a in range(xv.rank) if a not in axes]
        acc_dt, init, kind = reduce_parts(m, t)
        n_out = " * ".join(ext[a] for a in kept) or "1"
        n_red = " * ".join(ext[a] for a in axes) or "1"
        name = self._kname("red")
        tpb = self.tpb
        lines = ["@cuda.jit", f"def {name}({x}, out, {''.join(d + ', ' for d in dims)}err):",
                 f"    sm = cuda.shared.array({tpb}, numba.{acc_dt})", "    tid = cuda.threadIdx.x",
                 f"    for o in range(cuda.blockIdx.x, {n_out}, cuda.gridDim.x):", "        q = o"]
        idx = {}
        for a in reversed(kept):
            lines += [f"        k{a} = q % {ext[a]}", f"        q = q // {ext[a]}"]
            idx[a] = f"k{a}"
        lines += [f"        acc = {init}", f"        for s in range(tid, {n_red}, {tpb}):", "            q = s"]
        for a in reversed(axes):
            lines += [f"            k{a} = q % {ext[a]}", f"            q = q // {ext[a]}"]
            idx[a] = f"k{a}"
        read = f"{x}[{', '.join(idx[a] for a in range(xv.rank))}]"
        if kind in ("sum", "mean"):
            lines.append(f"            acc += {read}")
        else:
            op = ">" if kind == "max" else "<"
            lines += [f"            v = {read}", f"            if v {op} acc or v != v:", "                acc = v"]
        lines += ["        sm[tid] = acc", "        cuda.syncthreads()", f"        h = {tpb // 2}", "        while h > 0:",
                  "            if tid < h:"]
        if kind in ("sum", "mean"):
            lines.append("                sm[tid] += sm[tid + h]")
        else:
            op = ">" if kind == "max" else "<"
            lines += ["                b = sm[tid + h]", f"                if b {op} sm[tid] or b != b:",
                      "                    sm[tid] = b"]
        lines += ["            cuda.syncthreads()", "            h = h // 2", "        if tid == 0:"]
        final = f"sm[0] / ({n_red})" if kind == "mean" else "sm[0]"
        lines += [f"            out[o] = {final}", "        cuda.syncthreads()"]
        self.src.append("\n".join(lines))
        self.steps.append(Launch("reduce", name, [m.inputs[0]], [m.name], dims=dims, n_out=n_out))

    def concat(self, m) -> None:
        """Copy each input into its place along the axis (one grid-stride kernel per input)."""
        t = self.types
        ax = m.attrs["axis"]
        offset = None
        for pos, u in enumerate(m.inputs):
            args: list[str] = []
            dims: list[str] = []
            ref, dim = self._refs(args, dims)
            uv = t[u]
            x = ref(u)
            ext = [dim(d) for d in uv.shape]
            off = dim(offset) if offset is not None else "0"
            name = self._kname("cat")
            idx = [f"i{k}" for k in range(uv.rank)]
            dst = [f"(i{k} + {off})" if k == ax else f"i{k}" for k in range(uv.rank)]
            src = x if uv.scalar else f"{x}[{', '.join(idx)}]"
            lines = ["@cuda.jit", f"def {name}({x.split('[')[0]}, out, {''.join(d + ', ' for d in dims)}err):",
                     f"    for p in range(cuda.grid(1), {' * '.join(ext)}, cuda.gridsize(1)):", "        q = p"]
            for k in range(len(ext) - 1, 0, -1):
                lines += [f"        i{k} = q % {ext[k]}", f"        q = q // {ext[k]}"]
            lines += ["        i0 = q", f"        out[{', '.join(dst)}] = {src}"]
            self.src.append("\n".join(lines))
            self.steps.append(Launch("concat", name, [u], [m.name], dims=dims, first=pos == 0, shape=uv.shape))
            offset = uv.shape[ax] if offset is None else offset + uv.shape[ax]

    def source(self) -> str:
        out = ["# generated by gtool (cuda backend); do not edit", "import math", "", "import numba",
               "import numpy as np", "from numba import cuda", ""]
        for h in sorted(self.helpers):
            out += ["", "@cuda.jit(device=True)", HELPERS[h].rstrip()]
        out += ["", "", MATMUL.format(tile=self.tile)]
        for s in self.src:
            out += ["", "", s]
        return "\n".join(out) + "\n"


MATMUL = '''@cuda.jit
def matmul(A, B, C, M, N, K, ta, tb):
    """C = op(A) @ op(B) with op a transpose when ta / tb; tiles of {tile}x{tile} in shared memory."""
    sA = cuda.shared.array(({tile}, {tile}), numba.float64)
    sB = cuda.shared.array(({tile}, {tile}), numba.float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.y * {tile} + ty
    col = cuda.blockIdx.x * {tile} + tx
    acc = 0.0
    for t in range((K + {tile} - 1) // {tile}):
        k = t * {tile} + tx
        sA[ty, tx] = (A[k, row] if ta else A[row, k]) if (row < M and k < K) else 0.0
        k = t * {tile} + ty
        sB[ty, tx] = (B[col, k] if tb else B[k, col]) if (col < N and k < K) else 0.0
        cuda.syncthreads()
        for kk in range({tile}):
            acc += sA[ty, kk] * sB[kk, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = acc'''


# running --------------------------------------------------------------------------------------------


class CudaCompiled(CompiledPlan):
    """The plan as CUDA kernel launches and host fallbacks, run in order on the GPU."""

    def __init__(self, program, backend: CudaBackend) -> None:
        super().__init__(program, backend)
        self.cuda, self.sim = backend.cuda, backend.sim
        low = Lowering(program, blas=True, matmul_ok=_matmul_ok)
        nodes = low.run()
        self.types = types = low.types
        items = fuse(nodes, types, program.outputs, reductions_in_loops=False)
        consts = inline_constants(program, types)
        host = {n for n in program.tensor_names if types[n].scalar} | \
            {it.m.name for it in items if isinstance(it, Single) and it.m.op == "fallback" and types[it.m.name].scalar}
        em = CudaEmitter(types, consts, host, self.sim)
        for it in items:
            em.item(it)
        self.source = em.source()
        self.module = load_module(self.source, prefix="cuda")
        self.steps = em.steps
        self.names = em.names
        self.consts = consts
        self.host = host
        self.dim_list = list(em.names.dims.items())
        self.fallbacks = {it.m.name: Fallback(it.m, program.graph)
                          for it in items if isinstance(it, Single) and it.m.op == "fallback"}
        tensors = program.graph.tensors
        self.inputs = [(n, tensors[n].value) for n in program.tensor_names if n not in consts]
        self.const_objs = [(n, tensors[n].value) for n in consts]
        self.tpb = em.tpb
        self.tile = em.tile

    @property
    def n_compiled(self) -> int:
        return sum(1 for s in self.steps if s.kind != "host")

    @property
    def n_fallback(self) -> int:
        return sum(1 for s in self.steps if s.kind == "host")

    def _blocks(self, n: int) -> int:
        return 1 if self.sim else max(1, min((n + self.tpb - 1) // self.tpb, 4096))

    def _run(self, values: dict, bindings: dict) -> dict:
        cuda, types = self.cuda, self.types
        dims = {code: d.evaluate(bindings) for d, code in self.dim_list}
        get = values.get
        for n, o in self.const_objs:
            if get(n, o) is not o and not np.array_equal(get(n, o), o):
                raise ValueError(f"constant '{n}' was given other data than the graph's")
        env: dict = {}
        for name, default in self.inputs:  # host -> device, once per run
            x = get(name)
            x = default if x is None else x
            v = types[name]
            if v.scalar or v.weak:
                env[name] = x.item() if hasattr(x, "item") else x
            else:
                want = tuple(d.evaluate(bindings) for d in v.shape)
                x = np.ascontiguousarray(x)
                if x.shape != want or x.dtype != np.dtype(v.dtype):
                    raise ValueError(f"'{name}' has shape {x.shape}, expected {want}")
                env[name] = cuda.to_device(x)
        err = cuda.to_device(np.zeros(1, np.int32))

        def shape_of(value: str) -> tuple:
            v = types[value]
            return (1,) if v.scalar else tuple(d.evaluate(bindings) for d in v.shape)

        def alloc(value: str):
            return cuda.device_array(shape_of(value), np.dtype(types[value].dtype))

        mod = self.module
        for s in self.steps:
            if s.kind == "kernel":
                for o in s.outs:
                    env[o] = alloc(o)
                n = int(np.prod([d.evaluate(bindings) for d in s.info["shape"]])) if s.info["shape"] else 1
                args = [env[a] for a in s.ins] + [env[o] for o in s.outs] + [dims[d] for d in s.info["dims"]]
                getattr(mod, s.name)[self._blocks(n), 1 if not s.info["shape"] else self.tpb](*args, err)
            elif s.kind == "reduce":
                out = alloc(s.outs[0])
                env[s.outs[0]] = out
                n_out = int(np.prod(shape_of(s.outs[0])))
                flat = out.reshape(n_out)
                blocks = 1 if self.sim else max(1, min(n_out, 65535))
                getattr(mod, s.name)[blocks, self.tpb](env[s.ins[0]], flat, *[dims[d] for d in s.info["dims"]], err)
            elif s.kind == "matmul":
                env[s.outs[0]] = self._matmul(s, env, shape_of, alloc)
            elif s.kind == "reshape":
                src = env[s.ins[0]]
                env[s.outs[0]] = src.reshape(shape_of(s.outs[0])) if hasattr(src, "reshape") else src
            elif s.kind == "concat":
                if s.info["first"]:
                    env[s.outs[0]] = alloc(s.outs[0])
                n = int(np.prod([d.evaluate(bindings) for d in s.info["shape"]]))
                getattr(mod, s.name)[self._blocks(n), self.tpb](env[s.ins[0]], env[s.outs[0]],
                                                                 *[dims[d] for d in s.info["dims"]], err)
            else:
                self._host_step(s, env, bindings)
        if err.copy_to_host()[0]:
            raise IndexError("an index was out of range")
        out = {}
        for name in self.program.outputs:  # device -> host, once per run
            x = env[name]
            v = types[name]
            if hasattr(x, "copy_to_host"):
                x = x.copy_to_host()
                x = x.reshape(()).item() if v.weak else (x[0] if v.scalar else x)
            out[name] = np.asarray(to_numpy(x, v))
        return out

    def _matmul(self, s: Launch, env, shape_of, alloc):
        a, b = env[s.ins[0]], env[s.ins[1]]
        ta, tb = s.info.get("ta", False), s.info.get("tb", False)
        if a.ndim == 1:
            a = a.reshape((1, a.shape[0]))
        if b.ndim == 1:
            b = b.reshape((b.shape[0], 1))
        m_, k_ = (a.shape[1], a.shape[0]) if ta else a.shape
        n_ = b.shape[0] if tb else b.shape[1]
        c = self.cuda.device_array((m_, n_), a.dtype)
        tile = self.tile
        grid = ((n_ + tile - 1) // tile, (m_ + tile - 1) // tile)
        self.module.matmul[grid, (tile, tile)](a, b, c, m_, n_, k_, ta, tb)
        return c.reshape(shape_of(s.outs[0]))

    def _host_step(self, s: Launch, env, bindings) -> None:
        """An op without a kernel: its NumPy forward on the host (inputs down, result up)."""
        step = self.fallbacks[s.name]
        m, types = step.m, self.types
        args = []
        for i in m.inputs:
            x = env[i]
            if hasattr(x, "copy_to_host"):
                x = x.copy_to_host()
                x = x[0] if types[i].scalar else x
            args.append(to_numpy(x, types[i]))
        out = step.run(args, bindings)
        if m.v.scalar or m.v.weak:
            env[m.name] = out.item() if hasattr(out, "item") else out
        else:
            env[m.name] = self.cuda.to_device(np.ascontiguousarray(out))


def _matmul_ok(a: V, b: V, out: V) -> bool:
    return a.rank <= 2 and b.rank <= 2 and a.dtype == b.dtype and a.dtype in ("float32", "float64")


class CudaBackend(Backend):
    """numba.cuda kernels; one instance per process."""

    name = "cuda"

    def __init__(self) -> None:
        self.cuda, self.sim = require_cuda()
        self.fallback_runs = 0
        self.last_compile_seconds = 0.0

    def compile(self, program) -> CudaCompiled:
        refuse_dtypes(program, "cuda")
        return CudaCompiled(program, self)


__all__ = ["CudaBackend", "require_cuda"]
