"""Mutation testing as a measure (a bench, not CI): how many planted bugs do the tests kill?

    .venv/bin/python bench/mutation.py [--sample 80] [--seed 0] [--timeout 180] [--json out.json]
    .venv/bin/python bench/mutation.py --named-only        # just the four named mutants
    .venv/bin/python bench/mutation.py --list              # the mutation sites, no runs
    .venv/bin/python bench/mutation.py --no-named --area gradcheck --json before.json   # one area's draw
    .venv/bin/python bench/mutation.py --no-named --area gradcheck --before-from before.json  # re-measure "after"

A small AST mutator rather than mutmut or cosmic-ray: both install, but both mutate whole
modules and run (after a full-suite coverage pass) through their own runners, while this
measure needs (a) the four bugs an outside review planted, as named fixed mutants at exact
places (two of them in numba code generation, which mutmut cannot reach inside f-strings),
(b) a per-area test subset with a time bound, on a 2-core machine, and (c) "before" and
"after" kill rates over the same mutants. That is ~300 lines here.

Operators, applied one at a time to the functions of the target modules: arithmetic swap
(+ <-> -, * <-> /, ** -> *), comparison flip (< <-> >=, > <-> <=, == <-> !=, in <-> not in,
is <-> is not), constant tweak (int n -> n + 1, float c -> 10 c, 0.0 -> 1.0), drop-negation
(-x -> x, not x -> x) and return-None (not for `return None/False/0`, where it is all but
equivalent). Sites inside docstrings, f-strings, type annotations
and `raise` statements are skipped (they change messages, not results).

Each mutant is run in a scratch copy of the repository (`python -m pytest -x` puts the copy
first on sys.path), with its area's pre-existing tests first ("before"); a survivor is then
run against the checker near-miss tests added for issue 11 ("after"). A run past --timeout
counts as killed (an infinite loop is a detected bug) and is reported separately.

Sites inside functions that build an op record's edge-value table (`*edges`) are drawn like any
other, so a seed keeps its sample, but not run or counted (`test_data_skipped`): such a mutant
changes which inputs the tests try, not what any op computes. `--before-from` reuses the
"before" states of an earlier `--json` run of the same draw and runs only its survivors
against the added tests: the "after" figure of a re-measure without rerunning the old suite.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# area -> (source files, pre-existing tests, tests added for issue 11 (node-id prefixes))
NEW_GRADCHECK = [f"tests/test_gradcheck.py::{t}" for t in (
    "test_a_vjp_five_parts_in_ten_thousand_off_fails", "test_the_tolerance_is_what_the_docs_say",
    "test_rounding_level_differences_pass", "test_truncation_error_of_a_correct_rule_passes",
    "test_rounding_noise_of_a_large_loss_passes", "test_float32_checks_see_five_percent_not_five_hundredths",
    "test_order_two_refines_strong_curvature_and_passes")]
AREAS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "ops": (["gtool/ops/elementwise.py", "gtool/ops/binary.py", "gtool/ops/reduce.py", "gtool/ops/nn.py",
             "gtool/ops/bounds.py", "gtool/ops/templates.py", "gtool/intervals.py"],
            ["tests/test_ops.py", "tests/test_autodiff.py", "tests/test_autodiff_props.py", "tests/test_lint.py",
             "tests/test_records.py", "tests/test_edge_values.py", "tests/test_templates.py"],
            ["tests/test_intervals.py", "tests/test_ops_mutants.py"]),
    "autodiff": (["gtool/autodiff.py", "gtool/builder.py"],
                 ["tests/test_autodiff.py", "tests/test_autodiff_props.py", "tests/test_gradcheck.py"],
                 ["tests/test_autodiff_edges.py", "tests/test_render.py::test_golden_dot"]),
    "gradcheck": (["gtool/gradcheck/compare.py", "gtool/gradcheck/localise.py", "gtool/gradcheck/__init__.py"],
                  ["tests/test_gradcheck.py"], NEW_GRADCHECK + ["tests/test_gradcheck_judge.py"]),
    "rewrite": (["gtool/rewrite/stability.py", "gtool/rewrite/base.py", "gtool/rewrite/simplify.py",
                 "gtool/rewrite/pattern.py"],
                ["tests/test_rewrite.py", "tests/test_lint.py"], ["tests/test_near_misses.py", "tests/test_rewrite_edges.py"]),
}
# Functions that build an op record's edge-value table (`_edges`, `unary_edges`, ...) are test
# data, not logic: a mutant there changes which inputs are tested, not what any op computes.
# Such sites are still drawn (so a seed keeps its sample) but are not run or counted.
TEST_DATA_SUFFIXES = ("edges", "_cases")


@dataclass(frozen=True)
class Named:
    """A fixed mutant: the first (file, old, new) whose `old` text is in the file is applied."""

    name: str
    patches: tuple[tuple[str, str, str], ...]
    tests: tuple[str, ...]  # pytest arguments (for an area: its tests, before and after as for sampled mutants)
    area: str | None = None


NAMED = [
    Named("numba expm1 lowered as exp(x) - 1",
          tuple((f, 'lambda x: f"math.expm1({x})"', 'lambda x: f"(math.exp({x}) - 1.0)"')
                for f in ("gtool/backends/templates.py", "gtool/backends/codegen.py")),
          ("tests/test_edge_values.py", "tests/test_backend_ulps.py", "tests/test_backends.py")),
    Named("numba relu turns NaN into 0",
          tuple((f, "({x} if ({x} >= 0 or {x} != {x}) else 0)", "({x} if {x} >= 0 else 0)")
                for f in ("gtool/backends/templates.py", "gtool/backends/codegen.py")),
          ("tests/test_edge_values.py", "tests/test_backend_ulps.py", "tests/test_backends.py")),
    Named("expm1 rewrite also matches exp(x) + 1",
          (("gtool/rewrite/stability.py", 'op("add", op("exp", X), Const(-1))', 'op("add", op("exp", X), Const(1))'),
           ("gtool/rewrite/rules.py", 'op("add", op("exp", X), Const(-1))', 'op("add", op("exp", X), Const(1))')),
          (), "rewrite"),
    Named("grad-check pass rule loosened 100x",
          (("gtool/gradcheck/compare.py", '"float64": Tolerances(1e-6, 1e-5, 1e-8)',
            '"float64": Tolerances(1e-6, 1e-3, 1e-8)'),),
          (), "gradcheck"),
]


# finding mutation sites --------------------------------------------------------------------------

SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult}
FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
        ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}


@dataclass(frozen=True)
class Site:
    area: str
    path: str
    function: str
    line: int
    kind: str  # arith | compare | const | negation | return
    index: int  # the k-th mutable node of the module, in ast.walk order (stable for one source)
    detail: str

    def label(self) -> str:
        return f"{self.path}:{self.line} {self.function}: {self.kind} {self.detail}"

    def test_data(self) -> bool:
        """In a function that builds test inputs (an edge-value table): an equivalent mutant."""
        return any(part.endswith(TEST_DATA_SUFFIXES) for part in self.function.split("."))


def _skipped_ids(tree: ast.AST) -> set[int]:
    """Nodes inside docstrings, f-strings, annotations and raise statements."""
    skip: set[int] = set()

    def mark(node):
        for sub in ast.walk(node):
            skip.add(id(sub))

    for node in ast.walk(tree):
        if isinstance(node, (ast.JoinedStr, ast.Raise)):
            mark(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                if a.annotation is not None:
                    mark(a.annotation)
            if node.returns is not None:
                mark(node.returns)
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            mark(node)
    return skip


def _kind(node: ast.AST) -> tuple[str, str] | None:
    if isinstance(node, ast.BinOp) and type(node.op) in SWAP:
        return "arith", f"{type(node.op).__name__} -> {SWAP[type(node.op)].__name__}"
    if isinstance(node, ast.Compare) and type(node.ops[0]) in FLIP:
        return "compare", f"{type(node.ops[0]).__name__} -> {FLIP[type(node.ops[0])].__name__}"
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return "const", f"{node.value!r} -> {_tweak(node.value)!r}"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        return "negation", f"drop {type(node.op).__name__}"
    if isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and not node.value.value):  # None, False, 0: ~equivalent
        return "return", "-> return None"
    return None


def _tweak(v):
    if isinstance(v, int):
        return v + 1
    return 1.0 if v == 0 else v * 10


def _functions(tree: ast.AST) -> dict[int, str]:
    """id(node) -> the qualified name of the innermost function holding it."""
    owner: dict[int, str] = {}

    def visit(node, name):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = f"{name}.{child.name}" if name else child.name
                for sub in ast.walk(child):
                    owner[id(sub)] = inner
                visit(child, inner)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{name}.{child.name}" if name else child.name)
            else:
                visit(child, name)

    visit(tree, "")
    return owner


def sites_of(area: str, path: str, root: Path) -> list[Site]:
    tree = ast.parse((root / path).read_text())
    skip, owner = _skipped_ids(tree), _functions(tree)
    out = []
    for index, node in enumerate(ast.walk(tree)):
        found = _kind(node)
        if found is None or id(node) in skip or id(node) not in owner:  # module level: tables, not logic
            continue
        out.append(Site(area, path, owner[id(node)], getattr(node, "lineno", 0), found[0], index, found[1]))
    return out


def mutate(source: str, site: Site) -> str:
    tree = ast.parse(source)
    node = list(ast.walk(tree))[site.index]
    if site.kind == "arith":
        node.op = SWAP[type(node.op)]()
    elif site.kind == "compare":
        node.ops[0] = FLIP[type(node.ops[0])]()
    elif site.kind == "const":
        node.value = _tweak(node.value)
    elif site.kind == "negation":
        _replace(tree, node, node.operand)
    elif site.kind == "return":
        node.value = ast.Constant(None)
    return ast.unparse(ast.fix_missing_locations(tree))


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list) and any(v is old for v in value):
                value[[i for i, v in enumerate(value) if v is old][0]] = new
                return


# running ------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    mutant: str
    area: str
    before: str  # killed | survived | timeout | error
    after: str
    seconds: float


def before_after(scratch: Path, area: str, timeout: float) -> tuple[str, str]:
    """The area's pre-existing tests, then (for a survivor) the tests added for issue 11."""
    _, old_tests, new_tests = AREAS[area]
    deselect = [a for t in new_tests if "::" in t for a in ("--deselect", t)]
    old = [t for t in old_tests if t not in new_tests]
    before = run_tests(scratch, old + deselect, timeout)
    after = before if _dead(before) or not new_tests else run_tests(scratch, new_tests, timeout)
    return before, after


def run_tests(scratch: Path, args: list[str], timeout: float) -> str:
    """'killed' (a test failed), 'survived', 'timeout', or 'error' (pytest could not run)."""
    shutil.rmtree(scratch / ".hypothesis", ignore_errors=True)  # no replay of another mutant's example
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    try:
        p = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    if p.returncode == 0:
        return "survived"
    if p.returncode == 5:  # nothing collected
        return "no-tests"
    return "killed" if p.returncode == 1 else "error"


def _dead(state: str) -> bool:
    return state in ("killed", "timeout", "error")


def run_site(scratch: Path, site: Site, timeout: float, before: str | None = None) -> Outcome:
    """One sampled mutant; `before` given (from an earlier run of the same sample): only the
    tests added for issue 11 run, and only if that earlier run saw the mutant survive."""
    if site.test_data():
        return Outcome(site.label(), site.area, "test-data", "test-data", 0.0)
    target = scratch / site.path
    original = target.read_text()
    start = time.perf_counter()
    try:
        target.write_text(mutate(original, site))
        if before is None:
            before, after = before_after(scratch, site.area, timeout)
        else:
            new_tests = AREAS[site.area][2]
            after = before if _dead(before) or not new_tests else run_tests(scratch, new_tests, timeout)
    finally:
        target.write_text(original)
    return Outcome(site.label(), site.area, before, after, time.perf_counter() - start)


def run_named(scratch: Path, named: Named, timeout: float) -> Outcome:
    start = time.perf_counter()
    for path, old, new in named.patches:
        target = scratch / path
        if target.exists() and old in target.read_text():
            original = target.read_text()
            try:
                target.write_text(original.replace(old, new, 1))
                if named.area:
                    before, after = before_after(scratch, named.area, timeout)
                else:  # the backends' tests (helper h5's): no before/after split; the files that exist
                    tests = [t for t in named.tests if (scratch / t).exists()]
                    before, after = "-", run_tests(scratch, tests, timeout) if tests else "no-tests"
            finally:
                target.write_text(original)
            return Outcome(named.name, "named", before, after, time.perf_counter() - start)
    return Outcome(named.name, "named", "-", "not-applicable (target text not found)", 0.0)


def make_scratch() -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="gtool-mutation-"))
    for item in ("gtool", "tests", "graphs", "docs", "schemas", "pyproject.toml"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, scratch / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, scratch / item)
    return scratch


def all_sites() -> list[Site]:
    return [s for area, (files, _, _) in AREAS.items() for f in files if (ROOT / f).exists()
            for s in sites_of(area, f, ROOT)]


def sample(sites: list[Site], n: int, seed: int) -> list[Site]:
    """n sites, spread evenly over the areas (a seeded draw within each)."""
    rng = random.Random(seed)
    by_area: dict[str, list[Site]] = {}
    for s in sites:
        by_area.setdefault(s.area, []).append(s)
    per = max(1, n // len(by_area))
    picked = []
    for area in sorted(by_area):
        pool = by_area[area]
        picked += rng.sample(pool, min(per, len(pool)))
    return picked


def earlier_befores(path: str) -> dict[str, list[str]]:
    """label -> the 'before' states an earlier --json run recorded (in sample order)."""
    out: dict[str, list[str]] = {}
    for o in json.loads(Path(path).read_text())["outcomes"]:
        if o["area"] != "named":
            out.setdefault(o["mutant"], []).append(o["before"])
    return out


def summarise(outcomes: list[Outcome]) -> dict:
    drawn = [o for o in outcomes if o.area != "named"]
    sampled = [o for o in drawn if o.before != "test-data"]
    out: dict = {"mutants": len(sampled), "test_data_skipped": len(drawn) - len(sampled), "areas": {}}
    for area in sorted({o.area for o in sampled}) + ["all"]:
        rows = [o for o in sampled if area in ("all", o.area)]
        before = sum(_dead(o.before) for o in rows)
        after = sum(_dead(o.after) for o in rows)
        out["areas"][area] = {"mutants": len(rows), "killed_before": before, "killed_after": after,
                              "timeouts": sum(o.after == "timeout" for o in rows),
                              "rate_before": round(before / len(rows), 3) if rows else None,
                              "rate_after": round(after / len(rows), 3) if rows else None}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=80, help="sampled mutants, spread over the areas")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per test run of one mutant")
    ap.add_argument("--named-only", action="store_true", help="run only the four named mutants")
    ap.add_argument("--no-named", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the mutation sites and exit")
    ap.add_argument("--area", choices=sorted(AREAS), help="only this area's sampled mutants (same draw as in a full run)")
    ap.add_argument("--json", help="write every outcome and the summary here")
    ap.add_argument("--before-from", metavar="JSON",
                    help="reuse the 'before' states of an earlier --json run of the same sample (same --sample, "
                         "--seed, sources): only its survivors run, against the tests added for issue 11")
    args = ap.parse_args(argv)
    sites = all_sites()
    if args.list:
        for s in sites:
            print(s.area, s.label(), "[test data: not run]" if s.test_data() else "")
        print(f"{len(sites)} sites", file=sys.stderr)
        return 0
    scratch = make_scratch()
    outcomes: list[Outcome] = []
    try:
        if not args.no_named:
            for named in NAMED:
                o = run_named(scratch, named, max(args.timeout, 600.0))
                outcomes.append(o)
                print(f"named  before={o.before:<9} after={o.after:<9} {o.seconds:6.1f}s  {o.mutant}", flush=True)
        if not args.named_only:
            chosen = [s for s in sample(sites, args.sample, args.seed) if args.area in (None, s.area)]
            for area in sorted({s.area for s in chosen}):  # unmutated, every test must pass: no false kills
                _, old, new = AREAS[area]
                state = run_tests(scratch, list(dict.fromkeys(old + [t.split("::")[0] for t in new])), args.timeout)
                if state != "survived":
                    print(f"baseline: the {area} tests do not pass unmutated ({state}); fix that first", file=sys.stderr)
                    return 2
            earlier = earlier_befores(args.before_from) if args.before_from else None
            for k, site in enumerate(chosen, 1):
                before = None
                if earlier is not None and not site.test_data():
                    if not earlier.get(site.label()):
                        print(f"--before-from: {site.label()} is not in {args.before_from}", file=sys.stderr)
                        return 2
                    before = earlier[site.label()].pop(0)
                o = run_site(scratch, site, args.timeout, before)
                outcomes.append(o)
                print(f"{k:3d}/{len(chosen)} before={o.before:<9} after={o.after:<9} {o.seconds:6.1f}s  {o.mutant}",
                      flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = summarise(outcomes)
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "outcomes": [asdict(o) for o in outcomes]},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
