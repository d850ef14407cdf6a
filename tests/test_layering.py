"""The import layering that docs/architecture.md describes, enforced.

Each module's imports are read with `ast` (module level and inside functions, relative
imports resolved), so a forbidden edge fails here instead of waiting for a reviewer. Heavy
optional dependencies are checked in a fresh interpreter: importing gtool and running its
CLI must not import them.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "gtool"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The absolute gtool modules a `from ... import ...` names (a submodule where one exists)."""
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append(sub if sub in MODULES else base)
    return out


def imports_of(module: str) -> set[str]:
    """Every module `module` imports, anywhere in its body (lazy imports count too)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.update(_resolve(module, path.name == "__init__.py", node))
    return found


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(sources: list[str], forbidden: list[str], allowed: tuple[str, ...] = ()) -> list[str]:
    """`a -> b` for each module a under a source prefix importing a b under a forbidden prefix
    (the package `gtool` itself, as a source, means its `__init__` only)."""
    bad = []
    for m in MODULES:
        if not any(m == s if s == "gtool" else _under(m, s) for s in sources):
            continue
        for imp in sorted(imports_of(m)):
            if imp in allowed or imp == m:
                continue
            if any(_under(imp, f) for f in forbidden):
                bad.append(f"{m} -> {imp}")
    return bad


# The op records the backends may read: the registry (OpDef and its lookup). Extend this on
# purpose, when a module of records is added, never to let a backend reach op semantics.
OP_RECORDS = ("gtool.ops.registry",)
# Everything built on top of a module of the core: what "imports nothing of gtool above it" excludes.
ABOVE_IR = ["gtool.ops", "gtool.format", "gtool.shapes", "gtool.validate", "gtool.feeds", "gtool.interp",
            "gtool.builder", "gtool.autodiff", "gtool.backends", "gtool.gradcheck", "gtool.rewrite",
            "gtool.intervals", "gtool.lint", "gtool.render", "gtool.render_dot", "gtool.explain", "gtool.api",
            "gtool.report", "gtool.commands", "gtool.cli", "gtool.loss", "gtool.cotangents", "gtool.memory"]

RULES = {
    "backends know ops only through the records": (["gtool.backends"], ["gtool.ops"], OP_RECORDS),
    "backends sit below execution, autodiff and the tools": (
        ["gtool.backends"], ["gtool.interp", "gtool.autodiff", "gtool.builder", "gtool.api", "gtool.rewrite",
                             "gtool.gradcheck", "gtool.render", "gtool.explain", "gtool.lint", "gtool.commands",
                             "gtool.cli"], ()),
    "errors imports nothing of gtool": (["gtool.errors"], ["gtool"], ()),
    "quiet (NumPy's error state, for fastplan and the ops' fast paths) imports nothing of gtool": (
        ["gtool.quiet"], ["gtool"], ()),
    "dims knows only errors": (["gtool.dims"], ABOVE_IR + ["gtool.ir"], ()),
    "dtypes knows only errors": (["gtool.dtypes"], ABOVE_IR + ["gtool.ir", "gtool.dims"], ()),
    "ir knows no ops": (["gtool.ir"], ABOVE_IR, ()),
    "ops know no files and no executor": (
        ["gtool.ops"], ["gtool.format", "gtool.validate", "gtool.interp", "gtool.backends", "gtool.autodiff",
                        "gtool.builder", "gtool.api", "gtool.cli", "gtool.commands"], ()),
    "the builder knows no autodiff and runs nothing": (
        ["gtool.builder"], ["gtool.autodiff", "gtool.interp", "gtool.backends", "gtool.api"], ()),
    "autodiff executes nothing": (["gtool.autodiff"], ["gtool.interp", "gtool.backends", "gtool.api"], ()),
    "interp knows no autodiff": (["gtool.interp"], ["gtool.autodiff", "gtool.builder", "gtool.api"], ()),
    "lint does not import the rewrite engine": (["gtool.lint"], ["gtool.rewrite.engine"], ()),
    "the memory plan reads the executor's plan, never autodiff": (
        ["gtool.memory.plan"], ["gtool.autodiff", "gtool.builder", "gtool.api", "gtool.memory.remat"], ()),
    "remat is a graph transform: it runs nothing (the budget search simulates plans)": (
        ["gtool.memory.remat"], ["gtool.interp", "gtool.backends", "gtool.api", "gtool.memory.plan"], ()),
    "--loss builds a graph and runs nothing": (
        ["gtool.loss"], ["gtool.interp", "gtool.backends", "gtool.autodiff", "gtool.api", "gtool.onnx"], ()),
    "vjp's cotangent checks run nothing": (["gtool.cotangents"], ["gtool.backends", "gtool.autodiff", "gtool.api"], ()),
    "the library knows no click": (
        [m for m in MODULES if not _under(m, "gtool.commands") and m != "gtool.cli" and m != "gtool.__main__"],
        ["click", "gtool.commands", "gtool.cli"], ()),
}
# The ONNX importer is reached only through the loader's dispatch on a .onnx path (validate), and
# imports the onnx package only inside its functions (the HEAVY probe below checks that at run time).
IMPORT = ["gtool.onnx.importer", "gtool.onnx.registry", "gtool.onnx.fold", "gtool.onnx.dtypes", "gtool.onnx.convert"]
RULES["the core reaches the ONNX importer only through validate's dispatch"] = (
    [m for m in MODULES if not _under(m, "gtool.onnx") and m != "gtool.validate"], IMPORT, ())
RULES["the ONNX importer sits beside the format loaders, below execution"] = (
    IMPORT, ["gtool.interp", "gtool.backends", "gtool.autodiff", "gtool.api", "gtool.commands", "gtool.cli"], ())
EXPORT = ["gtool.onnx.export", "gtool.onnx.export_ops", "gtool.onnx.export_nn", "gtool.onnx.export_windows", "gtool.onnx.meta"]
EXPORT.append("gtool.onnx.export_indexing")
RULES["only convert (and the onnx package) reach the ONNX exporter"] = (
    [m for m in MODULES if not _under(m, "gtool.onnx") and m not in ("gtool.commands", "gtool.commands.convert")],
    EXPORT, ())  # (a package as a source covers its modules: gtool.commands's __init__ is left out)
RULES["the ONNX exporter runs nothing and knows no commands"] = (
    EXPORT, ["gtool.interp", "gtool.backends", "gtool.api", "gtool.autodiff", "gtool.commands", "gtool.cli"], ())
RULES["the conv/pool references share no code with the forwards they check"] = (
    ["gtool.ops.window_refs"], ["gtool.ops.windows", "gtool.ops.conv", "gtool.ops.pool", "gtool.ops.im2col",
                                "gtool.ops.conv_offsets"], ())
RULES["the conv/pool forwards never run their references"] = (
    ["gtool.ops.windows", "gtool.ops.im2col", "gtool.ops.conv_offsets"], ["gtool.ops.window_refs"], ())
RULES["the dask backend knows ops only through the records, and sits below execution and the tools"] = (
    ["gtool.dask", "gtool.backends.dask_backend"],
    ["gtool.ops", "gtool.interp", "gtool.autodiff", "gtool.builder", "gtool.api", "gtool.rewrite", "gtool.gradcheck",
     "gtool.render", "gtool.explain", "gtool.lint", "gtool.commands", "gtool.cli", "gtool.memory", "gtool.feeds"],
    OP_RECORDS)
RULES["the indexing references share no code with the forwards they check"] = (
    ["gtool.ops.indexing_refs"], ["gtool.ops.indexing", "gtool.ops.products"], ())
# The numba backend's vector math loads numba and llvmlite at import: only the generated code
# (and tests, benchmarks) import it; the emitter reads it as a file (the hash in each module).
RULES["no module of gtool imports the vector math"] = (
    [m for m in MODULES if m != "gtool.backends.vecmath"], ["gtool.backends.vecmath"], ())
RULES["the vector math imports nothing of gtool"] = (["gtool.backends.vecmath"], ["gtool"], ())
# Rules a helper is still working towards: listed here with the reason, and xfail(strict), so
# the day the move lands this test says to drop the entry.
PENDING: dict[str, str] = {}
RULES["render does not run graphs"] = ([m for m in MODULES if m.startswith("gtool.render")],  # render, render_dot, ...
                                       ["gtool.interp", "gtool.backends", "gtool.api"], ())


@pytest.mark.parametrize("rule", [
    pytest.param(r, marks=pytest.mark.xfail(strict=True, reason=PENDING[r])) if r in PENDING else r for r in RULES])
def test_no_forbidden_import(rule):
    sources, forbidden, allowed = RULES[rule]
    assert violations(sources, forbidden, allowed) == [], rule


def test_the_checker_sees_lazy_relative_and_aliased_imports(tmp_path):
    """The near miss: an import inside a function, written relative, must still count."""
    code = "def f():\n    from ..ops import shape as s\n    from . import codegen\n    import numba.cuda\n"
    tree = ast.parse(code)
    got: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            got.update(_resolve("gtool.backends.numba_cpu", False, node))
        elif isinstance(node, ast.Import):
            got.update(a.name for a in node.names)
    assert got == {"gtool.ops.shape", "gtool.backends.codegen", "numba.cuda"}
    assert _resolve("gtool.backends", True, ast.parse("from .numba_cpu import X").body[0]) == ["gtool.backends.numba_cpu"]
    assert _resolve("gtool.rewrite.rules", False, ast.parse("from ..ops.registry import get_op").body[0]) \
        == ["gtool.ops.registry"]


def test_every_module_is_seen():
    """The walk finds the package (so an empty MODULES cannot pass every rule vacuously)."""
    assert {"gtool.ir", "gtool.ops.registry", "gtool.backends.numba_cpu", "gtool.lint", "gtool.render", "gtool.render_dot"} \
        <= set(MODULES)
    assert len(RULES["render does not run graphs"][0]) >= 2
    assert "gtool.ops.registry" in imports_of("gtool.backends")


HEAVY = ("numba", "llvmlite", "onnx", "dask", "sympy", "mpmath", "scipy", "torch", "jax", "ml_dtypes")

_PROBE = """
import atexit, json, runpy, sys
HEAVY = {heavy!r}
atexit.register(lambda: sys.__stderr__.write("\\nLOADED " + json.dumps(sorted(m for m in HEAVY if m in sys.modules)) + "\\n"))
import gtool, gtool.cli
sys.argv = ["gtool", *{argv!r}]
runpy.run_module("gtool", run_name="__main__")
"""


@pytest.mark.parametrize("argv", [["--help"], ["validate", "graphs/fanout.yaml"], ["run", "graphs/fanout.yaml"],
                                  ["grad", "graphs/fanout.yaml"], ["lint", "graphs/fanout.yaml"],
                                  ["grad", "graphs/linear_mse.yaml", "--loss", "sum(y * y)"],
                                  ["run", "graphs/fanout.yaml", "--input", "x=2", "--input", "y=3"]],
                         ids=lambda a: a[0])
def test_core_imports_no_heavy_optional_dependency(argv):
    """numba, onnx, dask, sympy, mpmath cost seconds to import (or are absent): the core and
    its common commands must not load them; only the features that need them do, lazily."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = _PROBE.format(heavy=HEAVY, argv=argv)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert r.returncode in (0, 1), r.stderr  # lint may exit 1 on findings; a usage error (2) or crash may not
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("LOADED "))
    assert json.loads(line[len("LOADED "):]) == [], f"gtool {' '.join(argv)} imported heavy modules"
