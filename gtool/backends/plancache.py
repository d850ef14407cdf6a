"""The numba CPU backend's built plans on disk, so a warm start skips the Python lowering.

numba's own cache (`cache=True`) saves compiling the generated functions again, but a new
process still lowered, fused and emitted the whole plan in Python before it could ask numba
for them: 0.1-0.2 s of the peers' 2,000-op chain's warm start, for code that depends only on
the graph, its types and gtool's own code. So the result of `numba_cpu.build` is stored here
under a key of everything it depends on:

- the program: each fed value's name, kind and type, each step's node (name, op, inputs,
  attrs) and type, the outputs, the graph's declared and fixed dims, and the value of every constant
  that the code writes as a literal;
- how it was built (BLAS inside or not, parallel loops, every `GTOOL_NUMBA_*` setting);
- gtool's source text (every `.py` file of the package, hashed once per process), numba's,
  NumPy's and Python's versions: editing the lowering without bumping a version number
  cannot bring back stale code.

A plan using a plugin op is not stored (its code is not gtool's). A file that cannot be read
or unpickled is treated as absent and rebuilt; writes go through a temporary file and
`os.replace`, so concurrent processes (pytest-xdist workers sharing one cache folder) never
see half a file.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from pathlib import Path

import numpy as np

from ..ops.registry import get_op

FORMAT = "1"  # bump when what is stored changes shape
_CODE_DIGEST: str | None = None


def code_digest() -> str:
    """sha256 of gtool's source files (once per process: ~4 ms)."""
    global _CODE_DIGEST
    if _CODE_DIGEST is None:
        root = Path(__file__).resolve().parent.parent
        h = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
        _CODE_DIGEST = h.hexdigest()
    return _CODE_DIGEST


def _type_text(t) -> str:
    return f"{t.dtype}{'w' if t.weak else ''}[{','.join(map(str, t.shape))}]"


def plan_key(program, *, blas: bool, parallel: bool) -> str | None:
    """The key of the plan `build` makes for this program, or None when it may not be stored."""
    import numba

    graph, types = program.graph, program.types
    h = hashlib.sha256()
    settings = sorted((k, v) for k, v in os.environ.items() if k.startswith("GTOOL_NUMBA_"))
    h.update(repr((FORMAT, code_digest(), numba.__version__, np.__version__, sys.version, blas, parallel,
                   settings, program.outputs, sorted((k, str(v)) for k, v in graph.dims.items()),
                   sorted(getattr(graph, "fixed_dims", {}).items()))).encode())
    parts = []
    for name in program.tensor_names:
        t = graph.tensors[name]
        value = ""
        if t.kind == "constant" and t.value is not None and np.size(t.value) == 1:
            value = repr(np.asarray(t.value).reshape(()).item())
        parts.append(f"T{name}|{t.kind}|{_type_text(types[name])}|{value}")
    nodes = graph.nodes
    for st in program.steps:
        if get_op(st.op).plugin is not None:
            return None
        node = nodes[st.node]
        parts.append(f"N{node.name}|{node.op}|{','.join(node.inputs)}|{sorted(node.attrs.items())!r}|"
                     f"{_type_text(types[node.name])}")
    h.update("\n".join(parts).encode())
    return h.hexdigest()[:32]


def _path(folder: Path, key: str) -> Path:
    return folder / f"plan_{key}.pkl"


def load(folder: Path, key: str | None):
    """The stored plan under `key`, or None (absent, unreadable, or from another format)."""
    if key is None:
        return None
    try:
        with open(_path(folder, key), "rb") as f:
            data = pickle.load(f)
    except Exception:  # noqa: BLE001 - absent, truncated or foreign: build it again
        return None
    if not (isinstance(data, tuple) and len(data) == 2 and data[0] == (FORMAT, key)):
        return None
    return data[1]


def save(folder: Path, key: str | None, plan) -> None:
    """Store `plan` under `key` (best effort: a read-only cache folder only costs the next start)."""
    if key is None:
        return
    path = _path(folder, key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            pickle.dump(((FORMAT, key), plan), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
