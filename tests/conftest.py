"""Shared fixtures and the suite's settings.

- `load_text`: load a graph from YAML/JSON text (which also exercises the loader).
- Hypothesis profiles: `ci` (the default, and what CI and `make test` run) draws the same
  examples on every run, so a property test cannot fail one CI run and pass the next; `dev`
  (`HYPOTHESIS_PROFILE=dev`) draws fresh random examples and keeps failures in the local
  example database, to look for new bugs. A failure found that way gets pinned with
  `@example(...)` on the test.
- With `CI` set, a test skipped because an optional dependency is missing (numba, mpmath,
  sympy, Graphviz's dot, ...) fails instead: the `dev` extra installs them all, so such a
  skip means CI silently tested less.
- Compiled numba code goes to a fresh folder per session, shared by its pytest-xdist workers
  (the user's cache stays untouched), or, with `GTOOL_NUMBA_CACHE=DIR`, to DIR, kept between
  runs so local reruns skip numba's compile. CI never sets it.
"""

from __future__ import annotations

import itertools
import os
import re

import pytest
from hypothesis import settings

import gtool

pytest_plugins = ["pytester"]  # tests/test_hygiene.py runs pytest on small suites with this conftest

_BASE = settings.get_profile("default")  # not the current one: this file may run twice (pytester)
settings.register_profile("ci", parent=_BASE, derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("dev", parent=_BASE, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")

# What a skip for a missing optional dependency says: pytest.importorskip's message, and the
# reasons the suite's skipif marks give.
MISSING_DEPENDENCY = re.compile(
    r"could not import|no module named|not installed|\bneeds? (numba|mpmath|sympy|scipy|onnx|dask|graphviz|dot)\b",
    re.IGNORECASE)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2])
    return str(longrepr)


def _fail_missing_dependency(report) -> None:
    """In CI, turn a skip for a missing optional dependency into a failure (in place)."""
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if MISSING_DEPENDENCY.search(reason):
            report.outcome = "failed"
            report.longrepr = (f"skipped in CI for a missing optional dependency ({reason}); "
                               "install every extra (make install) and Graphviz, as .ci/run does")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_missing_dependency(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # a module-level importorskip skips the whole file at collection
    _fail_missing_dependency(outcome.get_result())


@pytest.fixture(scope="session", autouse=True)
def numba_cache_dir(tmp_path_factory):
    """Where the numba backend writes generated modules and numba's caches (GTOOL_CACHE_DIR)."""
    old = os.environ.get("GTOOL_CACHE_DIR")
    keep = os.environ.get("GTOOL_NUMBA_CACHE")
    if keep:
        path = os.path.abspath(keep)
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        # one folder for all of this session's workers (the parent of a worker's base temp is
        # the session's): a plan or function one worker compiled, another loads. numba's cache
        # and gtool's writes are atomic (temporary file + os.replace), so workers may race
        path = tmp_path_factory.getbasetemp().parent / "gtool-cache"
        path.mkdir(exist_ok=True)
        path = str(path)
    else:
        path = str(tmp_path_factory.mktemp("gtool-cache"))
    os.environ["GTOOL_CACHE_DIR"] = path
    yield path
    if old is None:
        os.environ.pop("GTOOL_CACHE_DIR", None)
    else:
        os.environ["GTOOL_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def load_text(tmp_path_factory):
    """`load_text(text, suffix=".yaml") -> Graph`: write the text to a fresh file and load it."""
    folder = tmp_path_factory.mktemp("graph_text")
    counter = itertools.count()

    def load(text: str, suffix: str = ".yaml") -> gtool.Graph:
        path = folder / f"g{next(counter)}{suffix}"
        path.write_text(text)
        return gtool.load(path)

    return load
