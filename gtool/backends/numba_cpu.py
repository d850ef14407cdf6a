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

from ..dtypes import INT_DTYPES
from ..errors import UsageError
from ..quiet import hush, unhush
from . import Backend, plancache
from .codegen import (
    TEMPLATES,
    CompiledPlan,
    Fallback,
    Group,
    Lowering,
    Single,
    V,
    fuse,
    is_one,
    refuse_dtypes,
    to_numpy,
)
from .cpu_emit import BLOCK, PAR_MIN, POOLS, VEC_CALLS, VECTOR_OPS, CpuEmitter, Names, Piece, helper_sources, vkey  # noqa: F401
from .fusion import pair_sin_cos, split_vector_math
from .kernels import CHUNK, Workspace, bind_rows, canonical, named, rename_parallel, share_parallel

MAX_LINES = 150  # lines per compiled function: numba's compile time grows faster than linearly in it
POOL_BYTES = 256 << 20  # workspaces a plan keeps between runs, in all (many batch sizes: not one each)
VEC_CALL_LINES = 5  # what one inlined vector-math call weighs against MAX_LINES (chain: cold 10.4 -> 6.3 s)
VERSION = "2"  # bump when the generated code changes meaning (part of the cache key)
_VECTOR_CALLS = ("_vexp(", "_vtanh(", "_vsin(", "_vcos(", "_vsincos(")


def _weight(lines: list[str]) -> int:
    """A function's size for MAX_LINES: its lines, and VEC_CALL_LINES for each inlined vecmath
    call (LLVM optimizes ~100 instructions for each)."""
    return len(lines) + VEC_CALL_LINES * sum(line.count(c) for line in lines for c in _VECTOR_CALLS)


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
_STARTED = False


def light_start() -> None:
    """Load numba's compiler registries without importing all of SciPy (once per process).

    numba's first compile or cache load imports `numba.np.arraymath`, whose import checks for
    BLAS by `import scipy.linalg.cython_blas`: that runs `scipy.linalg`'s `__init__` (its whole
    API, array-API shims, docstring parsing, numpy.f2py), 0.15-0.6 s of a warm start that needs
    none of it. Here the one extension module the check needs is loaded by its file for the
    check, then taken out of `sys.modules` again: a later `import scipy.linalg` (a plan with a
    matmul, or the user's code) runs the package normally and gets the same module back.
    Anything unexpected leaves numba to do its own import.
    """
    global _STARTED
    if _STARTED:
        return
    _STARTED = True
    name = "scipy.linalg.cython_blas"
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules or name in sys.modules:
        return
    try:
        import importlib.machinery

        import scipy

        folder = Path(scipy.__file__).parent / "linalg"
        path = next(folder / f"cython_blas{s}" for s in importlib.machinery.EXTENSION_SUFFIXES
                    if (folder / f"cython_blas{s}").exists())
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        import numba.np.arraymath  # noqa: F401 - its BLAS check finds the module loaded above
    except Exception:  # noqa: BLE001 - no SciPy, another layout: numba imports as it would have
        pass
    finally:
        sys.modules.pop(name, None)


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


# segments and the module ---------------------------------------------------------------------------


class Call:
    """An array helper called on its own from the plan (a pool's loop nest: inside a segment,
    LLVM inlined it at every call site and the compile took a minute)."""

    def __init__(self, m, helper: str, ints: list[int]) -> None:
        self.m, self.helper, self.ints = m, helper, tuple(ints)


class Segment:
    """A run of compiled work: one function. `ws` are the workspace values it reads or writes
    (bound from rows `ix` of its workspace arguments), `reads` the other values it takes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.reads: list[str] = []
        self.defs: list[str] = []
        self.dims: set[str] = set()
        self.rets: list[str] = []
        self.ws: list[str] = []
        self.slots: list[int] = []
        self.ix = None
        self.args: list[str] = []  # dims in the order the function takes them

    def add(self, piece: Piece) -> None:
        for r in piece.reads:
            if r not in self.defs and r not in self.reads:
                self.reads.append(r)
        self.defs += piece.defs
        self.dims |= piece.dims
        self.lines += piece.lines


def build(program, *, blas: bool, parallel: bool):
    """Lower, fuse and emit: (module source, run steps, names, types)."""
    low = Lowering(program, blas, matmul_ok=_matmul_ok(blas), pools=True)
    nodes = low.run()
    types = low.types
    em = CpuEmitter(types, dict(program.graph.dims), parallel)
    calls = VECTOR_OPS if em.vecmath else frozenset()
    if em.vecmath:
        nodes = pair_sin_cos(nodes)
    items = fuse(nodes, types, program.outputs, chunk=CHUNK, calls=calls, max_calls=VEC_CALLS)
    items = split_vector_math(items, calls, em.scalar_loop)
    ws = Workspace.plan(items, types, program.outputs, Group)
    em.workspace = set(ws.rows)
    em.consts = inline_constants(program, types)
    steps: list = []
    seg: Segment | None = None
    extra: list[str] = []
    for item in items:
        if isinstance(item, Single) and item.m.op == "fallback":
            seg = None
            steps.append(Fallback(item.m, program.graph))
            continue
        if isinstance(item, Single) and item.m.op in POOLS:
            seg = None
            steps.append(Call(item.m, *em.pool_call(item.m)))
            continue
        piece = em.item(item)
        extra += piece.extra
        if seg is None or (seg.lines and _weight(seg.lines) + _weight(piece.lines) > MAX_LINES):
            seg = Segment(f"seg{sum(isinstance(s, Segment) for s in steps)}")
            steps.append(seg)
        seg.add(piece)
    # what each segment returns: its values that later steps or the caller read (workspace
    # values stay in the workspace)
    later: set[str] = set(program.outputs)
    for step in reversed(steps):
        if isinstance(step, Segment):
            step.rets = [d for d in step.defs if d in later and d not in ws.rows]
            later |= set(step.reads)
        else:
            later |= set(step.m.inputs)
    for step in steps:
        if isinstance(step, Segment):
            used = step.reads + step.defs
            step.ws = [v for k, v in enumerate(used) if v in ws.rows and v not in used[:k]]
            step.reads = [r for r in step.reads if r not in ws.rows]
    return _source(steps, extra, em, types, ws), steps, em.names, types, em.consts, ws


def _source(steps, extra, em: CpuEmitter, types, ws: Workspace) -> str:
    """The module: helpers, then each distinct parallel loop and segment function once (named by
    the hash of its canonical text, so identical chunks share one compiled function)."""
    out = ["# generated by gtool (numba backend): one fused plan; do not edit", "import math", "",
           "import numpy as np", "from numba import njit, prange", ""]
    out += helper_sources(em.helpers, em.vecmath)
    renamed, par = share_parallel(extra)
    for fn in par:
        out += ["", "", fn]
    done: set[str] = set()
    for step in steps:
        if not isinstance(step, Segment):
            continue
        text, step.args = _segment_text(step, em, types, ws, renamed)
        step.name, text = named(text, "k")
        if step.name not in done:
            done.add(step.name)
            out += ["", "", "@njit(cache=True, error_model='numpy')", text]
    return "\n".join(out) + "\n"


def _segment_text(step: Segment, em: CpuEmitter, types, ws: Workspace, renamed) -> tuple[str, list[str]]:
    """A segment as a function named FN, canonical; and its dims in argument order."""
    var = em.names.var
    pre, step.slots, step.ix = bind_rows(step.ws, ws, var)
    dims = sorted(step.dims, key=vkey)
    wargs = [f"w{k}" for k in range(len(step.slots))] + (["ix"] if step.ws else [])
    args = [var(r) for r in step.reads] + wargs + dims
    body = []
    for r in step.reads:  # scalars arrive as Python numbers: give them their declared dtype
        v = types[r]
        if v.scalar and v.dtype not in ("float64", "int64", "bool"):
            body.append(f"{var(r)} = np.{v.dtype}({var(r)})")
    body += pre + rename_parallel(step.lines, renamed)
    rets = [var(r) for r in step.rets]
    body.append(f"return ({', '.join(rets)}{',' if len(rets) == 1 else ''})")
    text, names = canonical("\n".join([f"def FN({', '.join(args)}):"] + ["    " + line for line in body]))
    return text, dims


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
    if dtype in INT_DTYPES:
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

    def __init__(self, program, backend: NumbaBackend, source: str, steps, names: Names, types, consts,
                 ws: Workspace) -> None:
        super().__init__(program, backend)
        self.source = source
        self.types = types
        self.module = load_module(source)
        self.ws = ws
        self.plan = []
        ws_reads: set[str] = set()  # workspace values NumPy steps read (as row views)
        for step in steps:
            if isinstance(step, Segment):
                self.plan.append(("seg", getattr(self.module, step.name), tuple(step.reads), step.args,
                                  tuple(step.rets), tuple(step.slots), step.ix if step.ws else None))
            elif isinstance(step, Call):
                self.plan.append(("call", getattr(self.module, step.helper), tuple(step.m.inputs), step.ints,
                                  (step.m.name,), None, None))
                ws_reads |= {i for i in step.m.inputs if i in ws.rows}
            else:
                self.plan.append(("np", step, None, None, None, None, None))
                ws_reads |= {i for i in step.m.inputs if i in ws.rows}
        self.ws_views = [(n, *ws.rows[n]) for n in sorted(ws_reads)]
        self.dim_list = sorted(names.dims.items(), key=lambda kv: vkey(kv[1]))
        tensors = program.graph.tensors
        self.const_objs = [(n, tensors[n].value) for n in consts]
        self.const_names = [n for n, _ in self.const_objs]
        self.const_values = [o for _, o in self.const_objs]
        self.const_set = frozenset(self.const_names)
        self.inputs = [(n, tensors[n].value) for n in program.tensor_names if n not in consts]
        self.consts = consts
        self.compiled_fns: set = set()
        self._preps: dict[tuple, tuple] = {}
        self._pooled = 0  # bytes of the workspaces kept in the pools (POOL_BYTES at most)

    @property
    def n_compiled(self) -> int:
        return sum(1 for p in self.plan if p[0] == "seg")

    @property
    def n_fallback(self) -> int:
        return sum(1 for p in self.plan if p[0] == "np")

    @property
    def numpy_steps(self) -> list[tuple[str, str]]:
        """(node, op) of each step that runs its NumPy forward between the compiled segments
        (conv and pooling, batched matmul, plugin ops: docs/backends.md, *What runs where*)."""
        return [(p[1].m.node, p[1].op.name) for p in self.plan if p[0] == "np"]

    def _compile(self, fn, args) -> None:
        """Compile (or load numba's cache) apart from running, so compile time is reported apart."""
        import numba

        t0 = time.perf_counter()
        light_start()
        fn.compile(tuple(numba.typeof(a) for a in args))
        self.compile_seconds += time.perf_counter() - t0
        self.backend.last_compile_seconds = self.compile_seconds
        self.compiled_fns.add(fn)

    def __call__(self, values: dict, bindings: dict) -> dict:
        """As CompiledPlan's, with the cheaper way to silence NumPy's warnings (gtool/quiet.py)."""
        token = hush()
        try:
            return self._run(values, bindings)
        except Exception as e:  # noqa: BLE001 - the NumPy interpreter reports errors with locations
            self.last_error = e
        finally:
            unhush(token)
        self.fallback_runs += 1
        self.backend.fallback_runs += 1
        return self.program.interpret(values, bindings)

    def _prepared(self, bindings: dict) -> tuple:
        """What a run at these bindings needs that does not depend on the data (once per bindings):
        each step with its dims' values, each input's wanted shape and dtype, the workspace
        shapes, and how each output is handed back."""
        key = tuple(bindings.items())
        prep = self._preps.get(key)
        if prep is not None:
            return prep
        types = self.types
        dims = {code: d.evaluate(bindings) for d, code in self.dim_list}
        plan = [(kind, fn, reads, tuple(dims[d] for d in dnames) if kind == "seg" else dnames, rets, slots, ix)
                for kind, fn, reads, dnames, rets, slots, ix in self.plan]
        inputs = []
        for name, default in self.inputs:
            v = types[name]
            number = v.weak or v.scalar  # passed as a Python number
            want = None if number else tuple(d.evaluate(bindings) for d in v.shape)
            inputs.append((name, default, v, want, None if number else np.dtype(v.dtype)))
        work = [((n, *(d.evaluate(bindings) for d in shape)), np.dtype(dtype))
                for (shape, dtype), n in zip(self.ws.slots, self.ws.counts)]
        outs = [(name, None if not (types[name].weak or types[name].scalar) else types[name])
                for name in self.program.outputs]
        if len(self._preps) >= 32:  # many batch sizes: keep the memo small
            self._preps.clear()
        prep = self._preps[key] = (plan, inputs, work, outs, [])  # [] : workspaces with bound steps
        return prep

    def _run(self, values: dict, bindings: dict) -> dict:
        get = values.get
        if not all(map(operator.is_, map(get, self.const_names, self.const_values), self.const_values)):
            # a constant was given other data than the graph's (its value is written into the code)
            for n, o in self.const_objs:
                if not np.array_equal(get(n, o), o):
                    raise ValueError(f"constant '{n}' was given other data than the graph's")
        return dict(zip(self.program.outputs, self._execute(get, get, bindings)))

    def run_given(self, values: dict, given: dict, bindings: dict) -> list:
        """The outputs (in order) of a run on `values` with `given` taking precedence, for
        interp.Runner: `values` holds the data of the run that made the runner (constants the
        graph's own, checked then), so unless `given` names a constant there is no merged dict
        and no constants check."""
        if not self.const_set.isdisjoint(given):
            # data for a constant the code has written in (a [1]-shaped one reaches a runner):
            # the checked path, which hands such a run to the interpreter
            out = self({**values, **given}, bindings)
            return [out[o] for o in self.program.outputs]
        token = hush()
        try:
            return self._execute(given.get, values.get, bindings)
        except Exception as e:  # noqa: BLE001 - as __call__: the interpreter names the error
            self.last_error = e
        finally:
            unhush(token)
        self.fallback_runs += 1
        self.backend.fallback_runs += 1
        out = self.program.interpret({**values, **given}, bindings)
        return [out[o] for o in self.program.outputs]

    def _bound(self, plan, work_shapes) -> tuple:
        """A workspace and the plan's steps with what does not change from run to run bound to
        them: a segment's workspace arrays, row indices and dims are one tuple made once. The
        2,000-op chain's gradient runs 126 segments; building their arguments each run cost
        ~1.2 us a segment in Python, more than the segments' own work."""
        work, block = _workspace(work_shapes)
        steps = []
        for kind, fn, reads, dvals, rets, slots, ix in plan:
            if kind == "seg":
                fixed = (*(work[s] for s in slots), *(() if ix is None else (ix,)), *dvals)
                steps.append((kind, fn, reads, fixed, rets))
            else:
                steps.append((kind, fn, reads, dvals, rets))
        views = [(name, work[slot][row]) for name, slot, row in self.ws_views]
        return block, steps, views

    def _execute(self, first, then, bindings: dict) -> list:
        """Run the plan; each input is `first(name)`, else `then(name)`, else the graph's value.
        A workspace is reused from run to run (taken from a small pool, so two threads running
        the plan at once get one each); an output that is a view of it is copied out."""
        plan, inputs, work_shapes, outs, pool = self._prepared(bindings)
        env: dict = {}
        ndarray = np.ndarray
        for name, default, v, want, dtype in inputs:
            x = first(name)
            if x is None:
                x = then(name)
                if x is None:
                    x = default
            if want is None:
                env[name] = x.item() if hasattr(x, "item") else x
            elif x.__class__ is ndarray and x.shape == want and x.dtype == dtype and x.flags.c_contiguous:
                env[name] = x
            else:
                env[name] = _to_env(x, v, bindings)
        try:
            bound = pool.pop()
            self._pooled -= _nbytes(bound[0])
        except IndexError:
            bound = self._bound(plan, work_shapes)
        block, steps, views = bound
        try:
            for name, view in views:
                env[name] = view
            compiled = self.compiled_fns
            for kind, fn, reads, fixed, rets in steps:
                if kind == "seg":
                    args = (*map(env.__getitem__, reads), *fixed) if reads else fixed
                    if fn not in compiled:
                        self._compile(fn, args)
                    res = fn(*args)
                    if rets:
                        for r, x in zip(rets, res):
                            env[r] = x
                elif kind == "call":
                    args = [env[reads[0]], *fixed]
                    if fn not in compiled:
                        self._compile(fn, args)
                    env[rets[0]] = fn(*args)
                else:
                    m = fn.m
                    types = self.types
                    out = fn.run([to_numpy(env[i], types[i]) for i in m.inputs], bindings)
                    env[m.name] = _to_env(out, m.v, bindings)
            result = [env[name] if v is None and env[name].__class__ is ndarray else np.asarray(to_numpy(env[name], v))
                      if v is not None else np.asarray(env[name]) for name, v in outs]
            if block is not None:
                result = [x.copy() if isinstance(x, ndarray) and np.may_share_memory(x, block) else x for x in result]
            return result
        finally:
            size = _nbytes(block)
            if len(pool) < 4 and self._pooled + size <= POOL_BYTES:  # else freed, as before pooling
                self._pooled += size
                pool.append(bound)


def _nbytes(block) -> int:
    return 0 if block is None else block.nbytes


def _workspace(shapes) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The workspace arrays, as views of one block of memory (64-byte aligned each), and the
    block: whether an output is a view of the workspace is then one bounds check."""
    sizes = [int(np.prod(shape)) * dtype.itemsize for shape, dtype in shapes]
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + -(-size // 64) * 64)
    if not shapes:
        return [], None
    block = np.empty(offsets[-1] + 64, np.uint8)
    start = -block.ctypes.data % 64
    work = [block[start + o:start + o + size].view(dtype).reshape(shape)
            for (shape, dtype), o, size in zip(shapes, offsets, sizes)]
    return work, block


def _numbers_only(program) -> bool:
    """Every value of the plan is one number (rank 0)."""
    types = program.types
    return all(types[n].rank == 0 for n in program.tensor_names) and all(types[st.node].rank == 0
                                                                        for st in program.steps)


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
        self._blas: bool | None = None  # found on the first graph with a matmul (SciPy's import is slow)
        self.parallel = os.environ.get("GTOOL_NUMBA_PARALLEL", "1") != "0"
        self.last_compile_seconds = 0.0
        self.fallback_runs = 0
        # a graph of numbers only runs as the executor's generated plan on NumPy scalars (a few
        # tenths of a microsecond an op; one numba dispatch with its boxing costs more than the
        # whole graph); GTOOL_NUMBA_SCALARS=compile compiles those too
        self.compile_scalar_graphs = os.environ.get("GTOOL_NUMBA_SCALARS", "python") == "compile"

    @property
    def blas(self) -> bool:
        if self._blas is None:
            self._blas = os.environ.get("GTOOL_NUMBA_MATMUL", "inside") == "inside" and blas_available()
        return self._blas

    def compile(self, program) -> Compiled | None:
        refuse_dtypes(program, "numba")
        if not self.compile_scalar_graphs and _numbers_only(program):
            return None
        blas = any(st.op == "matmul" for st in program.steps) and self.blas
        key = plancache.plan_key(program, blas=blas, parallel=self.parallel)
        stored = plancache.load(cache_dir(), key)
        if stored is not None:  # a warm start: the plan as an earlier process built it
            source, steps, dims, types, consts, ws = stored
            steps = [Fallback(s.m, program.graph) if isinstance(s, StoredFallback) else s for s in steps]
            names = Names()
            names.dims = dims
        else:
            source, steps, names, types, consts, ws = build(program, blas=blas, parallel=self.parallel)
            plancache.save(cache_dir(), key, _storable(program, source, steps, names, types, consts, ws))
        return Compiled(program, self, source, steps, names, types, consts, ws)


class StoredFallback:
    """A fallback step as the plan cache holds it: its micro-op (the op is found again by name)."""

    def __init__(self, m) -> None:
        self.m = m


def _storable(program, source, steps, names, types, consts, ws) -> tuple:
    """What `Compiled` needs of a built plan, without the emitted lines or the op records."""
    out = []
    for step in steps:
        if isinstance(step, Segment):
            light = Segment(step.name)
            light.reads, light.args, light.rets = step.reads, step.args, step.rets
            light.ws, light.slots, light.ix = step.ws, step.slots, step.ix
            out.append(light)
        elif isinstance(step, Fallback):
            out.append(StoredFallback(step.m))
        else:
            out.append(step)
    used = {n for n in program.tensor_names if n not in consts} | set(program.outputs)  # what `_run` types
    for step in steps:
        if isinstance(step, Fallback):
            used |= set(step.m.inputs)
    kept = {n: v for n, v in types.items() if n in used}
    return source, out, dict(names.dims), kept, consts, ws


__all__ = ["NumbaBackend", "cache_dir", "require_numba", "TEMPLATES", "is_one"]
