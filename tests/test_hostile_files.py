"""Hostile graph files (issue 10): each must fail cleanly, with a code and a place, or load right.

Lone surrogates, Unicode look-alike names, Python keywords as names, control characters in
names, FIFOs, sockets and devices where a file is expected, and files over the size cap.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gtool
from gtool.errors import GraphError, UsageError
from gtool.format import source
from gtool.format.expr import parse_expression
from gtool.format.source import load_document, load_file
from gtool.validate import check_file, expand_paths

ROOT = Path(__file__).resolve().parent.parent
GOOD = "gtool: 1\ninputs:\n  x: {shape: [3], value: [1.0, 2.0, 3.0]}\nnodes:\n  y: x * 2\noutputs: [y]\n"


def errors_of(tmp_path, text: str, name: str = "g.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    report = check_file(str(path))
    assert not report.valid
    return report.errors


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m gtool ...` in a child process (so a hang is a failed test, not a hung suite)."""
    return subprocess.run([sys.executable, "-m", "gtool", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


# lone surrogates ------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["doc", "name", "key", "value"])
def test_a_lone_surrogate_escape_in_json_is_a_located_error(where):
    doc = {"gtool": 1, "inputs": {"x": [3]}, "nodes": {"y": "x + 1"}, "outputs": ["y"], "doc": "ok"}
    text = json.dumps(doc, indent=1)
    token = "\\ud800"
    if where == "doc":
        text = text.replace('"ok"', f'"a{token}b"')
    elif where == "name":
        text = text.replace('"ok"', '"ok", "name": "g' + token + '"')
    elif where == "key":
        text = text.replace('"x": [', f'"x{token}": [')
    else:
        text = text.replace('"x + 1"', f'"x + {token}"')
    line = next(i for i, row in enumerate(text.splitlines(), 1) if token in row)
    column = text.splitlines()[line - 1].index(token) + 1
    with pytest.raises(GraphError) as info:
        load_document(text, "g.json")
    d = info.value.diagnostic
    assert (d.code, d.line, d.column) == ("json-syntax", line, column)
    assert "surrogate" in d.message


def test_a_lone_surrogate_in_a_data_file_is_refused_too():
    text = '{"x": [1.0, 2.0], "note": "\\udfff"}'
    with pytest.raises(GraphError) as info:
        load_document(text, "d.json", marks=False)  # the lean parse hands over to the located one
    assert info.value.code == "json-syntax" and info.value.diagnostic.column == text.index("\\udfff") + 1


@pytest.mark.parametrize("loader", ["CSafeLoader", "SafeLoader"])
@pytest.mark.parametrize("marks", [True, False])
def test_a_lone_surrogate_escape_in_yaml_is_refused_by_both_parsers(monkeypatch, loader, marks):
    import yaml

    if not hasattr(yaml, loader):
        pytest.skip(f"no {loader}")
    monkeypatch.setattr(source, "_YAML_LOADER", getattr(yaml, loader))
    for text, line in [('a: 1\nb: ["x", "\\ud800"]\n', 2), ('a: 1\n"k\\U0000dc00": 2\n', 2)]:
        with pytest.raises(GraphError) as info:
            load_document(text, "g.yaml", marks=marks)
        assert (info.value.code, info.value.diagnostic.line) == ("yaml-syntax", line)
    assert load_document('a: "\\u00e9"\n', "g.yaml", marks=marks)[0] == {"a": "\u00e9"}  # the near miss


def test_a_surrogate_pair_is_one_character_and_loads():
    data, _ = load_document('{"doc": "\\ud83d\\ude00", "a": 1}', "g.json")
    assert data["doc"] == "\N{GRINNING FACE}"
    data, _ = load_document('{"doc": "\\ud83d\\ude00"}', "d.json", marks=False)
    assert data["doc"] == "\N{GRINNING FACE}"


def test_a_str_holding_a_surrogate_is_refused_for_both_formats():
    for path in ("g.json", "g.yaml"):
        with pytest.raises(GraphError) as info:
            load_document('{"a": "x\ud800"}', path)
        assert info.value.diagnostic.line == 1


def test_validate_reports_a_surrogate_without_an_internal_error(tmp_path):
    path = tmp_path / "g.json"
    path.write_text('{"gtool": 1, "inputs": {"x": [3]}, "nodes": {"y": "x + 1"},\n "outputs": ["y"], '
                    '"doc": "\\ud800"}')
    r = cli("validate", str(path))
    assert r.returncode == 1, r.stderr
    assert "g.json:2:" in r.stdout + r.stderr and "[json-syntax]" in r.stdout + r.stderr
    assert "internal error" not in r.stderr


# names: Unicode look-alikes, keywords, control characters ---------------------------------------------


def test_a_full_width_name_in_an_expression_is_refused_not_read_as_ascii():
    with pytest.raises(GraphError) as info:
        parse_expression("\uff58 + 1", "y")  # full-width x: Python would read it as `x`
    assert info.value.code == "bad-expression"
    assert "'\uff58' is not a valid name" in info.value.diagnostic.message
    with pytest.raises(GraphError, match="'\uff41xis' is not a valid name"):
        parse_expression("sum(x, \uff41xis=0)", "y")
    nodes, _ = parse_expression("x + 1", "y")  # the ASCII spelling, of course, is fine
    assert nodes[-1].inputs[0] == "x"


def test_a_full_width_name_in_a_file_is_one_error(tmp_path):
    errors = errors_of(tmp_path, GOOD.replace("y: x * 2", "y: \uff58 * 2"))
    assert [(e.code, e.line) for e in errors] == [("bad-expression", 5)]
    errors = errors_of(tmp_path, GOOD.replace("outputs: [y]", "outputs: [y, \uff58]"))
    assert [(e.code, e.line) for e in errors] == [("bad-name", 6)]
    assert "names are ASCII" in errors[0].message


def test_python_keywords_are_names_in_expressions(tmp_path):
    path = tmp_path / "kw.yaml"
    path.write_text("gtool: 1\ninputs:\n  lambda: [3]\n  in: [3]\nnodes:\n  if: lambda * 2 + in\n"
                    "  y: sum(if, axis=0) - lambda\noutputs: [y]\n")
    graph = gtool.load(path)
    lam, inp = np.array([1.0, -2.0, 0.5]), np.array([3.0, 4.0, 5.0])
    got = gtool.run(graph, {"lambda": lam, "in": inp})["y"]
    np.testing.assert_allclose(got, np.sum(lam * 2 + inp, axis=0) - lam, rtol=0, atol=1e-15)


def test_keywords_used_as_python_syntax_keep_their_messages():
    for text, words in [("a if c else b", "conditional"), ("a and b", "boolean"), ("lambda: 1", "lambda"),
                        ("x if c else lambda", "ends too early")]:
        with pytest.raises(GraphError, match=words):
            parse_expression(text, "y")


def test_a_name_ending_in_a_newline_is_refused(tmp_path):
    errors = errors_of(tmp_path, GOOD.replace("  x: {", '  "z\\n": [3]\n  x: {'))
    assert [(e.code, e.line) for e in errors] == [("bad-name", 3)]
    assert "\n" not in errors[0].message and "'z\\n'" in errors[0].message


def test_a_graph_name_with_an_ansi_sequence_is_refused_and_shown_escaped(tmp_path):
    errors = errors_of(tmp_path, 'name: "demo\\e[2J"\n' + GOOD)
    assert [(e.code, e.line) for e in errors] == [("bad-name", 1)]
    assert "\x1b" not in errors[0].message and "\\x1b[2J" in errors[0].message


def test_a_doc_may_hold_control_characters(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(GOOD + 'doc: "bell \\a, escape \\e[31m, noncharacter \\uFDD0"\n')
    assert gtool.load(path).doc == "bell \a, escape \x1b[31m, noncharacter \ufdd0"


def test_messages_escape_what_a_terminal_would_act_on(tmp_path):
    bad_op = GOOD.replace("y: x * 2", "y: {op: \"ex\\ep\\e[31m\", inputs: [x]}")
    bad_loss = GOOD.replace("outputs: [y]", "outputs: [y]\nloss: \"y\\e[0m\"")
    bad_input = GOOD.replace("y: x * 2", "y: {op: exp, inputs: [\"x\\e[0m\"]}")
    for text, code in [(bad_op, "unknown-op"), (bad_loss, "bad-name"), (bad_input, "bad-name")]:
        errors = errors_of(tmp_path, text)
        assert [e.code for e in errors] == [code]
        assert "\x1b" not in errors[0].message and "\\x1b" in errors[0].message, errors[0].message


# files that are not regular files ----------------------------------------------------------------------


@pytest.fixture
def fifo_dir(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    (tmp_path / "good.yaml").write_text(GOOD)
    os.mkfifo(tmp_path / "pipe.yaml")
    return tmp_path


def test_a_folder_skips_a_fifo_and_a_socket(fifo_dir):
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(fifo_dir / "sock.json"))
        assert expand_paths([str(fifo_dir)]) == [str(fifo_dir / "good.yaml")]
    finally:
        sock.close()


def test_validate_of_a_folder_holding_a_fifo_does_not_wait(fifo_dir):
    r = cli("validate", str(fifo_dir))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 valid, 0 invalid" in r.stdout + r.stderr


def test_a_fifo_named_explicitly_is_refused_at_once(fifo_dir):
    r = cli("validate", str(fifo_dir / "pipe.yaml"))  # first in a child: before the fix, open() waited
    assert r.returncode == 2 and "not a regular file" in r.stderr
    with pytest.raises(UsageError, match="is a FIFO"):
        load_file(str(fifo_dir / "pipe.yaml"))


def test_a_device_is_refused_before_a_byte_is_read(monkeypatch):
    monkeypatch.setattr(source.os, "read", lambda *a: pytest.fail("read a device"))
    with pytest.raises(UsageError, match="character device"):
        load_file("/dev/zero", marks=False)


# the size cap -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("marks, cap", [(True, "MAX_GRAPH_BYTES"), (False, "MAX_FILE_BYTES")])
def test_a_file_over_the_cap_is_refused_from_its_size_alone(tmp_path, monkeypatch, marks, cap):
    path = tmp_path / "big.json"
    with open(path, "wb") as f:
        f.truncate(getattr(source, cap) + 1)  # sparse: no disk used, nothing worth reading
    monkeypatch.setattr(source.os, "read", lambda *a: pytest.fail("read a file over the cap"))
    with pytest.raises(UsageError, match=f"larger than {getattr(source, cap) >> 20} MiB"):
        load_file(str(path), marks=marks)


def test_a_file_at_the_cap_loads(tmp_path, monkeypatch):
    text = '{"gtool": 1, "doc": "' + "x" * 200 + '"}'
    path = tmp_path / "g.json"
    path.write_text(text)
    monkeypatch.setattr(source, "MAX_GRAPH_BYTES", len(text))
    assert load_file(str(path))[0]["doc"] == "x" * 200
    monkeypatch.setattr(source, "MAX_GRAPH_BYTES", len(text) - 1)  # the near miss: one byte over
    with pytest.raises(UsageError, match="larger than"):
        load_file(str(path))


def test_the_graph_cap_is_documented():
    doc = (ROOT / "docs" / "format.md").read_text()
    assert f"{source.MAX_GRAPH_BYTES >> 20} MiB" in doc and f"{source.MAX_FILE_BYTES >> 20} MiB" in doc
