"""Structured fuzzing (hypothesis) of the shorthand parser, the data loader and the command line,
bounded to a few seconds: whatever the input, gtool ends in a clean error or a result, never a
traceback or `internal error`, exits 0, 1 or 2, prints one JSON document in JSON mode, and never
changes an input file. The strategies live in tests/fuzz_strategies.py; bench/fuzz_campaign.py
runs them for as long as asked."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from fuzz_strategies import (
    check_outcome,
    command_lines,
    expression_graph,
    expressions,
    input_flags,
    inputs_files,
    snapshot,
    workspace,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtool.cli import main
from gtool.errors import GraphError
from gtool.format.expr import parse_expression

# derandomized and bounded: the same examples every run, the whole file in a few seconds
FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SystemExit) as info:
            main(argv)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return workspace(tmp_path_factory.mktemp("fuzz"))


@settings(FAST, max_examples=200)
@given(expressions())
def test_the_expression_parser_never_crashes(expr):
    try:
        parse_expression(expr, "y")
    except GraphError:
        pass


@FAST
@given(expressions())
def test_expressions_in_a_graph_validate_cleanly(tmp_path_factory, capsys, expr):
    path = tmp_path_factory.mktemp("expr") / "g.json"
    path.write_text(expression_graph(expr))
    argv = ["validate", str(path), "--format", "json"]
    status, out, err = run_cli(capsys, argv)
    check_outcome(argv, status, out, err)
    assert status in (0, 1) and "files" in json.loads(out)


@FAST
@given(st.data())
def test_inputs_files_and_flags_fail_cleanly(ws, capsys, data):
    argv = ["run", data.draw(st.sampled_from(ws["graphs"])), "--format", "json"]
    if data.draw(st.booleans()):
        argv += ["--inputs", data.draw(inputs_files(ws["root"]))]
    for flag in data.draw(st.lists(input_flags(ws["npy"]), max_size=2)):
        argv += ["--input", flag]
    if data.draw(st.booleans()):
        argv.append("--random-inputs")
    with np.errstate(all="ignore"):
        status, out, err = run_cli(capsys, argv)
    check_outcome(argv, status, out, err)


@settings(FAST, max_examples=100)
@given(st.data())
def test_random_command_lines_fail_cleanly(ws, capsys, data):
    argv = data.draw(command_lines(ws))
    before = snapshot(ws)
    with np.errstate(all="ignore"):
        status, out, err = run_cli(capsys, argv)
    check_outcome(argv, status, out, err, before, snapshot(ws))
