"""The suite's own settings (tests/conftest.py): fixed hypothesis examples in CI, no silent
skip for a missing optional dependency in CI, numba's cache kept out of the user's folder."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from hypothesis import settings

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()

INNER = """
import ast
import os
import pytest

def test_needs_a_missing_module():
    pytest.importorskip("gtool_no_such_module")

@pytest.mark.skipif(True, reason="exact references need mpmath")
def test_needs_mpmath():
    pass

@pytest.mark.skipif(True, reason="Graphviz's dot is not installed")
def test_needs_dot():
    pass

def test_hardware():
    pytest.skip("a CUDA GPU is present")  # not a dependency: stays a skip

def test_cache_folder(numba_cache_dir):
    assert os.environ["GTOOL_CACHE_DIR"] == numba_cache_dir
    want = os.environ.get("WANT_CACHE")
    assert numba_cache_dir == want if want else "gtool-cache" in numba_cache_dir
"""


@pytest.fixture
def inner(pytester, monkeypatch):
    monkeypatch.delenv("GTOOL_NUMBA_CACHE", raising=False)
    monkeypatch.delenv("WANT_CACHE", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=INNER)
    return pytester


@pytest.mark.parametrize("ci", ["true", "1"])
def test_ci_fails_a_skip_for_a_missing_dependency(inner, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, errors=2, skipped=1)  # a skipif skips at setup: an error then
    result.stdout.fnmatch_lines(["*missing optional dependency*gtool_no_such_module*"])


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_outside_ci_such_a_skip_is_a_skip(inner, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    inner.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1, skipped=4)


def test_a_module_level_importorskip_fails_in_ci(pytester, monkeypatch):
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_mod='import pytest\npytest.importorskip("gtool_no_such_module")\n\ndef test_x():\n    pass\n')
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*missing optional dependency*"])


def test_a_persistent_numba_cache_is_opt_in(inner, monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    keep = tmp_path / "kept"
    monkeypatch.setenv("GTOOL_NUMBA_CACHE", str(keep))
    monkeypatch.setenv("WANT_CACHE", str(keep))
    inner.runpytest("-p", "no:cacheprovider", "-k", "cache_folder").assert_outcomes(passed=1)


def test_this_session_keeps_numba_out_of_the_users_cache(numba_cache_dir):
    assert os.environ["GTOOL_CACHE_DIR"] == numba_cache_dir
    if not os.environ.get("GTOOL_NUMBA_CACHE"):
        assert not Path(numba_cache_dir).is_relative_to(Path.home() / ".cache")


def test_hypothesis_runs_the_derandomized_profile_unless_asked_for_dev():
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.database is None and ci.deadline is None
    assert not settings.get_profile("dev").derandomize
    current = os.environ.get("HYPOTHESIS_PROFILE") or "ci"
    assert settings().derandomize == settings.get_profile(current).derandomize


# assertions that cannot fail, and clocks ----------------------------------------------------------

CLOCKS = {"perf_counter", "time", "monotonic", "process_time", "perf_counter_ns", "monotonic_ns", "time_ns"}


def _truthy(e: ast.expr) -> bool:
    return isinstance(e, ast.Constant) and bool(e.value)


def _vacuous(e: ast.expr) -> str | None:
    """Why the truth value `e` (an assert's test) holds whatever the code does, if it does."""
    if isinstance(e, ast.BoolOp):
        if isinstance(e.op, ast.Or) and any(_truthy(v) for v in e.values):
            return "`or <true constant>`"
        return next((r for r in map(_vacuous, e.values) if r), None)
    if isinstance(e, ast.IfExp):
        if _truthy(e.body) or _truthy(e.orelse):
            return "a branch that is a true constant"
        return _vacuous(e.body) or _vacuous(e.orelse)
    return None


def weak_asserts(source: str) -> list[str]:
    """Asserts that hold whatever the code does (`x or True`, `a if c else True`) and asserts
    on a clock (a timing limit fails on a busy machine and passes a slow regression)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Assert):
            continue
        why = _vacuous(node.test)
        if why:
            found.append(f"line {node.lineno}: {why}")
        for sub in ast.walk(node.test):
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr in CLOCKS \
                    and isinstance(sub.func.value, ast.Name) and sub.func.value.id == "time":
                found.append(f"line {node.lineno}: a clock")
    return found


def test_the_weak_assert_check_catches_the_near_misses():
    src = ("assert a == b or True\nassert f(x) == x if x >= 0 else True\nassert time.perf_counter() - t0 < 1\n"
           "assert a or b\nassert not a or b in c\nassert x if y else z\nassert n == (2 if c else 1)\n")
    assert weak_asserts(src) == ["line 1: `or <true constant>`", "line 2: a branch that is a true constant", "line 3: a clock"]


@pytest.mark.parametrize("path", sorted(Path(__file__).parent.glob("*.py")), ids=lambda p: p.name)
def test_no_assertion_that_cannot_fail_and_no_clock(path):
    if path.name == "test_hygiene.py":  # holds the near misses above as text only
        return
    assert weak_asserts(path.read_text()) == []
