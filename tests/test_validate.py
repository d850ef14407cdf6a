"""`gtool validate` and gtool.validate: valid graphs pass, every broken file fails with the
code, line and node it announces, and the reports (text, JSON, GitHub) follow the spec."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import gtool
from gtool.cli import main
from gtool.errors import GraphError, UsageError
from gtool.format import schema as fschema
from gtool.format.build import build_graph
from gtool.format.source import load_document, load_file
from gtool.validate import check_file, expand_paths, load, types_of

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = sorted(p for p in (ROOT / "graphs").iterdir() if p.suffix in (".yaml", ".yml", ".json"))
INVALID = sorted((ROOT / "tests" / "data" / "invalid").iterdir())
EXPECT = re.compile(r"# expect: (?P<code>[a-z-]+) line (?P<line>\d+)(?: node (?P<node>\S+))?\s*$")
DIAG_KEYS = {"code", "message", "line", "column", "node", "pointer"}


def gtool_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the command line in-process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def report_of(text: str, tmp_path: Path, name: str = "g.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return check_file(str(f))


def codes(report) -> list[str]:
    return [d.code for d in report.errors]


# the bundled graphs ------------------------------------------------------------------------------


def test_graphs_folder_is_valid(capsys):
    status, out, err = gtool_cli(capsys, "validate", str(ROOT / "graphs"))
    assert status == 0, out + err
    assert "error" not in out
    assert f"{len(GRAPHS)} valid, 0 invalid" in err


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.name)
def test_each_graph_is_valid_without_warnings(path):
    report = check_file(str(path))
    assert report.valid, [d.format() for d in report.errors]
    assert report.warnings == []
    assert report.graph is not None and report.graph.nodes


# the broken files ------------------------------------------------------------------------------------


def test_invalid_folder_has_the_required_kinds():
    wanted = {"yaml-syntax", "duplicate-key", "unknown-op", "unknown-name", "cycle", "shape-mismatch",
              "matmul-mismatch", "bad-axis", "bad-attr", "missing-key", "non-scalar-loss", "bad-version",
              "yaml-alias", "bad-dim", "bad-init", "bad-value"}
    found = {EXPECT.match(p.read_text().splitlines()[0])["code"] for p in INVALID}
    assert wanted <= found, wanted - found
    assert len(INVALID) >= 12


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_file_fails_as_announced(path):
    first = path.read_text(encoding="utf-8", errors="replace").splitlines()[0]
    m = EXPECT.match(first)
    assert m, f"{path.name}: the first line must be '# expect: CODE line N [node NAME]', got {first!r}"
    report = check_file(str(path))
    assert not report.valid
    assert len(report.errors) == 1, f"one mistake, one error: {[d.format() for d in report.errors]}"
    d = report.errors[0]
    assert (d.code, d.line) == (m["code"], int(m["line"])), d.format()
    assert d.node == m["node"], d.format()
    assert d.path == str(path)
    assert d.message and "\n" not in d.message and "Traceback" not in d.message
    with pytest.raises(GraphError) as info:
        load(path)
    assert info.value.code == m["code"]


def test_invalid_folder_via_the_cli(capsys):
    folder = ROOT / "tests" / "data" / "invalid"
    status, out, _ = gtool_cli(capsys, "validate", str(folder), "--format", "json")
    assert status == 1
    doc = json.loads(out)
    assert len(doc["files"]) == len(INVALID)
    assert all(not f["valid"] and len(f["errors"]) == 1 for f in doc["files"])


# report formats ----------------------------------------------------------------------------------------

TWO_FILES_TEXT = """\
gtool: 1
inputs:
  x: {shape: [3]}
nodes:
  y: x * 2
  spare: x + 1
  z: sum(y)
outputs: [z]
"""


def test_json_output_follows_the_spec(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(TWO_FILES_TEXT)
    bad = tmp_path / "bad.yaml"
    bad.write_text(TWO_FILES_TEXT.replace("x * 2", "xx * 2"))
    status, out, err = gtool_cli(capsys, "validate", str(good), str(bad), "--format", "json")
    assert status == 1
    assert err == ""
    doc = json.loads(out)  # stdout holds one JSON document and nothing else
    assert list(doc) == ["files"]
    g, b = doc["files"]
    for f in (g, b):
        assert set(f) == {"path", "valid", "errors", "warnings"}
        for diag in f["errors"] + f["warnings"]:
            assert DIAG_KEYS <= set(diag)
            assert isinstance(diag["line"], int) and isinstance(diag["column"], int)
            assert diag["pointer"].startswith("/")
    assert g["path"] == str(good) and g["valid"] is True and g["errors"] == []
    assert [w["code"] for w in g["warnings"]] == ["unused-node"]
    assert g["warnings"][0]["node"] == "spare" and g["warnings"][0]["line"] == 6
    assert b["valid"] is False
    diag = {k: b["errors"][0][k] for k in DIAG_KEYS}
    assert diag == {"code": "unknown-name", "message": "unknown name 'xx'", "line": 5, "column": 3, "node": "y",
                    "pointer": "/nodes/y"}
    assert b["errors"][0]["hint"] == "did you mean 'x'?"


def test_github_annotations(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TWO_FILES_TEXT.replace("x * 2", "xx * 2"))
    good = tmp_path / "good.yaml"
    good.write_text(TWO_FILES_TEXT)
    status, out, _ = gtool_cli(capsys, "validate", str(bad), str(good), "--format", "github")
    assert status == 1
    lines = out.splitlines()
    assert re.fullmatch(rf"::error file={re.escape(str(bad))},line=5,col=3,title=gtool unknown-name::"
                        r"node 'y': unknown name 'xx' \(hint: did you mean 'x'\?\)", lines[0]), lines[0]
    assert lines[1].startswith(f"::warning file={good},line=6,col=3,") and "unused-node" in lines[1]
    assert len(lines) == 2


def test_text_output_is_one_located_line_per_problem(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TWO_FILES_TEXT.replace("x * 2", "xx * 2").replace("sum(y)", "summ(y)"))
    status, out, err = gtool_cli(capsys, "validate", str(bad))
    assert status == 1
    assert f"{bad}:5:3: error: node 'y': unknown name 'xx' [unknown-name]" in out
    assert f"{bad}:7:3: error: node 'z': unknown op 'summ' [unknown-op]" in out
    assert "hint: did you mean 'sum'?" in out
    assert "Traceback" not in out + err
    assert "0 valid, 1 invalid" in err


def test_unused_nodes_are_warnings_not_errors(tmp_path, capsys):
    f = tmp_path / "g.yaml"
    f.write_text(TWO_FILES_TEXT)
    report = check_file(str(f))
    assert report.valid
    assert [(w.code, w.node, w.severity) for w in report.warnings] == [("unused-node", "spare", "warning")]
    status, out, _ = gtool_cli(capsys, "validate", str(f))
    assert status == 0
    assert "ok, 3 nodes (1 warning)" in out
    assert "warning: node 'spare'" in out


def test_unused_anonymous_parts_warn_once_under_their_owner(tmp_path):
    text = TWO_FILES_TEXT.replace("spare: x + 1", "spare: exp(x + 1) * 2")
    report = report_of(text, tmp_path)
    assert [(w.code, w.node) for w in report.warnings] == [("unused-node", "spare")]


# directories ---------------------------------------------------------------------------------------------


def test_directories_expand_as_the_spec_says(tmp_path, capsys):
    for rel in ["a.yaml", "b.yml", "c.json", "sub/d.yaml", "sub/deeper/e.json", "data.inputs.yaml",
                "sub/x.inputs.json", "sub/y.inputs.yml", ".hidden/f.yaml", "sub/.git/g.yaml", "notes.txt",
                "README.md"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(TWO_FILES_TEXT if p.suffix in (".yaml", ".yml") else "{}")
    found = [str(Path(p).relative_to(tmp_path)) for p in expand_paths([str(tmp_path)])]
    assert found == ["a.yaml", "b.yml", "c.json", "sub/d.yaml", "sub/deeper/e.json"]
    # a file named on the command line is taken as given, whatever its name
    assert expand_paths([str(tmp_path / "data.inputs.yaml")]) == [str(tmp_path / "data.inputs.yaml")]
    with pytest.raises(UsageError):
        expand_paths([str(tmp_path / "missing.yaml")])
    status, out, err = gtool_cli(capsys, "validate", str(tmp_path / "missing.yaml"))
    assert status == 2 and "no such file or directory" in err


# specific diagnostics ----------------------------------------------------------------------------------------


def test_cycle_message_prints_the_cycle(tmp_path):
    text = ("gtool: 1\ninputs:\n  x: []\nnodes:\n  out: c * 2\n  a: c + x\n  b: exp(a)\n  c: b * a\n"
            "outputs: [out]\n")
    report = report_of(text, tmp_path)
    assert codes(report) == ["cycle"]
    d = report.errors[0]
    assert d.message == "the nodes form a cycle: a -> b -> c -> a"
    assert (d.node, d.line) == ("a", 6)


def test_self_loop(tmp_path):
    report = report_of("gtool: 1\ninputs:\n  x: []\nnodes:\n  a: a + x\noutputs: [a]\n", tmp_path)
    assert codes(report) == ["cycle"]
    assert report.errors[0].message.endswith("a -> a")


def test_nodes_in_any_order(tmp_path):
    text = "gtool: 1\ninputs:\n  x: []\nnodes:\n  L: w + 1\n  w: u * 2\n  u: x + 1\noutputs: [L]\n"
    report = report_of(text, tmp_path)
    assert report.valid
    assert list(report.graph.nodes) == ["u", "w", "L"]


def test_unknown_op_suggests_the_nearest_name(tmp_path):
    text = "gtool: 1\ninputs:\n  x: [3]\nnodes:\n  y: {op: softmaxx, inputs: [x]}\noutputs: [y]\n"
    d = report_of(text, tmp_path).errors[0]
    assert (d.code, d.node, d.pointer, d.line, d.column) == ("unknown-op", "y", "/nodes/y/op", 5, 7)
    assert "did you mean 'softmax'?" in d.hint
    text = text.replace("softmaxx", "frobnicate")
    d = report_of(text, tmp_path).errors[0]
    assert "--plugin" in d.hint
    # in the shorthand there is no `op:` entry: the pointer is the node's
    text = "gtool: 1\ninputs:\n  x: [3]\nnodes:\n  y: sum(softmaxx(x), axis=0)\noutputs: [y]\n"
    report = report_of(text, tmp_path)
    assert [(d.code, d.node, d.pointer, d.line, d.column) for d in report.errors] == [
        ("unknown-op", "y", "/nodes/y", 5, 3)]


def test_unknown_name_suggests_the_nearest_name(tmp_path):
    text = ("gtool: 1\ninputs:\n  weights: [3]\n  x: [3]\nnodes:\n  y: {op: mul, inputs: [x, weight]}\n"
            "outputs: [y, yy]\nloss: why\n")
    report = report_of(text, tmp_path)
    by_pointer = {d.pointer: d for d in report.errors}
    assert by_pointer["/nodes/y/inputs/1"].hint == "did you mean 'weights'?"
    assert by_pointer["/nodes/y/inputs/1"].line == 6
    assert by_pointer["/outputs/1"].message == "unknown name 'yy'"
    assert by_pointer["/outputs/1"].hint == "did you mean 'y'?"
    assert "/loss" in by_pointer


def test_every_problem_is_reported_at_once(tmp_path):
    text = ("gtool: 1\ninputs:\n  x: [3]\n  x2: {shape: [3], dtype: float32}\nnodes:\n  a: x + nope\n"
            "  b: {op: relu, inputs: [x, x]}\n  c: {op: sum, inputs: [x], attrs: {axes: 1}}\n  __d: x\n"
            "outputs: [a, b, c]\n")
    report = report_of(text, tmp_path)
    assert sorted(codes(report)) == ["arity", "bad-attr", "reserved-name", "unknown-name"]
    assert {d.code: d.line for d in report.errors} == {"unknown-name": 6, "arity": 7, "bad-attr": 8, "reserved-name": 9}
    bad_attr = next(d for d in report.errors if d.code == "bad-attr")
    assert "did you mean 'axis'?" in bad_attr.hint


def test_one_broken_tensor_gives_one_error(tmp_path):
    text = ("gtool: 1\ninputs:\n  x: {shape: [n, '2 - 3']}\n  y: {shape: [2], value: [1, 2, 3]}\nnodes:\n  a: x + 1\n"
            "  b: y * a\noutputs: [b, y]\nloss: y\n")
    report = report_of(text, tmp_path)
    assert [(d.code, d.node) for d in report.errors] == [("bad-dim", "x"), ("bad-value", "y")]


def test_duplicate_names_across_sections(tmp_path):
    text = "gtool: 1\ninputs:\n  x: [3]\nconstants:\n  x: 1.0\nnodes:\n  y: x * 2\noutputs: [y]\n"
    report = report_of(text, tmp_path)
    assert codes(report) == ["duplicate-name"]
    assert report.errors[0].line == 5


def test_json_graph_errors_are_located(tmp_path):
    doc = {"gtool": 1, "inputs": {"x": {"shape": [3]}}, "nodes": {"y": {"op": "mul", "inputs": ["x", "z"]}},
           "outputs": ["y"]}
    text = json.dumps(doc, indent=2)
    report = report_of(text, tmp_path, "g.json")
    d = report.errors[0]
    line = next(k for k, t in enumerate(text.splitlines(), 1) if t.strip() == '"z"')
    assert (d.code, d.line, d.column, d.pointer) == ("unknown-name", line, 9, "/nodes/y/inputs/1")
    report = report_of('{"gtool": 1, "nodes": {}, "outputs": ["x"],}', tmp_path, "g.json")
    assert codes(report) == ["json-syntax"]


# the schema pass ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,code,pointer", [
    ("gtool: 1.0", "bad-version", "/gtool"),
    ("gtool: '1'", "bad-version", "/gtool"),
    ("gtool: 2", "bad-version", "/gtool"),
    ("gtool: true", "bad-version", "/gtool"),
    ("dims: {b: -1}", "bad-dim", "/dims/b"),  # 0 is a size (an empty axis), -1 is not
    ("dims: {b: 2.5}", "bad-dim", "/dims/b"),
    ("dims: {b: n}", "bad-dim", "/dims/b"),
    ("dims: [b]", "bad-type", "/dims"),
    ("inputs: {q: {shape: [-1]}}", "bad-dim", "/inputs/q/shape/0"),
    ("inputs: {q: {shape: [-2]}}", "bad-dim", "/inputs/q/shape/0"),
    ("inputs: {q: {shape: [1.5]}}", "bad-dim", "/inputs/q/shape/0"),
    ("inputs: {q: {shape: ['']}}", "bad-dim", "/inputs/q/shape/0"),
    ("inputs: {q: {shape: ['2 - 3']}}", "bad-dim", "/inputs/q/shape/0"),
    ("inputs: {q: {shape: ['n +']}}", "bad-dim", "/inputs/q/shape/0"),
    ("inputs: {q: [3, -2]}", "bad-dim", "/inputs/q/1"),
    ("inputs: {q: {shape: 3}}", "bad-type", "/inputs/q/shape"),
    ("inputs: {q: {dtype: float32}}", "missing-key", "/inputs/q"),
    ("inputs: {q: {shape: [2], dtyp: float32}}", "unknown-key", "/inputs/q/dtyp"),
    ("inputs: {q: {shape: [2], dtype: complex64}}", "schema", "/inputs/q/dtype"),
    ("inputs: {q: {shape: [2], range: [0]}}", "schema", "/inputs/q/range"),
    ("params: {p: {shape: [2]}}", "missing-key", "/params/p"),
    ("params: {p: {shape: [2], init: random}}", "bad-init", "/params/p/init"),
    ("params: {p: {shape: [2], init: {normal: {std: -1}}}}", "bad-init", "/params/p/init/normal/std"),
    ("params: {p: {shape: [2], init: {normal: {sd: 1}}}}", "bad-init", "/params/p/init/normal/sd"),
    ("params: {p: {shape: [2], init: {glorot: {gain: 2}}}}", "bad-init", "/params/p/init/glorot/gain"),
    ("params: {p: {shape: [2], init: {uniform: {low: a}}}}", "bad-init", "/params/p/init/uniform/low"),
    ("constants: {k: {dtype: float64}}", "missing-key", "/constants/k"),
    ("constants: {k: abc}", "schema", "/constants/k"),
    ("constants: {k: [1, 2]}\nextra: 1", "unknown-key", "/extra"),
    ("inputs: {2x: [3]}", "bad-name", "/inputs/2x"),
    ("nodes2: {}", "unknown-key", "/nodes2"),
])
def test_schema_violations_get_specific_codes(tmp_path, text, code, pointer):
    base = {"gtool": "gtool: 1", "nodes": "nodes: {out: x * 2}", "outputs": "outputs: [out]",
            "inputs": "inputs: {x: []}"}
    key = text.split(":")[0]
    if key in base:
        base[key] = text
        lines = list(base.values())
    else:
        lines = list(base.values()) + [text]
    if key in ("params", "constants", "dims"):
        lines[1] = "nodes: {out: x * 2}"
    report = report_of("\n".join(lines) + "\n", tmp_path)
    assert report.errors, "expected an error"
    d = report.errors[0]
    assert (d.code, d.pointer) == (code, pointer), d.format()
    assert d.line is not None and d.column is not None


def test_bad_init_message(tmp_path):
    text = "gtool: 1\nparams:\n  p: {shape: [2], init: random}\nnodes:\n  out: p * 2\noutputs: [out]\n"
    d = report_of(text, tmp_path).errors[0]
    assert d.message.startswith("unknown init 'random': use zeros, ones")
    assert d.node == "p"


def _doc(path: Path) -> dict:
    data, _ = load_file(str(path))
    return data


def _norm(errors) -> list:
    return sorted((tuple(map(str, prefix + list(e.absolute_path))), e.validator, e.message) for prefix, e in errors)


@pytest.mark.parametrize("path", GRAPHS + [p for p in INVALID if p.name != "alias_bomb.yaml"], ids=lambda p: p.name)
def test_grouped_schema_pass_equals_the_plain_one(path):
    try:
        data = _doc(path)
    except GraphError:
        return  # a load error: the schema never runs
    assert _norm(fschema.schema_errors(data)) == _norm(fschema.full_schema_errors(data))


def test_grouped_schema_pass_on_many_broken_entries():
    nodes = {f"n{k}": v for k, v in enumerate([
        "x + 1", "", {"op": "add"}, {"op": ""}, {"op": "add", "inputs": ["x", "2y"]}, {"op": "add", "inputs": "x"},
        {"op": "add", "attrs": []}, {"op": "add", "shape": [0, "n", 1.0, 1.5, -1, True, None, ""]}, 3, None, [],
        {"op": "sum", "attrs": {"axis": 1.0}, "doc": 5}, {"oops": 1}, {"op": "add", "inputs": ["x"], "shape": "n"},
    ])}
    nodes["bad-name"] = "x"
    data = {"gtool": 1, "dims": {"a": 1, "b": 0, "c": 1.0, "d": 1.5, "e": True, "f": "x", "2g": 3},
            "inputs": {"x": [], "y": [0, "", 2.0], "z": {"shape": [1], "value": [1, "nan", "x", [True]],
                                                          "range": [0, "inf"]}},
            "params": {"p": {"shape": [2]}, "q": {"value": 1, "init": {"normal": {"std": -0.0}}},
                       "r": {"shape": [2], "init": {"uniform": {"low": 1, "high": "2"}}}},
            "constants": {"k": 1, "l": [1, [2]], "m": {"value": ".5"}, "n": "str",
                          "long": {"value": [1.0] * 10 + ["x"]}, "rows": {"value": [[1, 2, 3]] * 5 + [[1, [2], "nan"]]},
                          "ok": {"value": [[0.5, -1, 2, 3e9]] * 20}, "r3": {"value": 1, "range": [0, 1, 2]},
                          "r5": {"value": 1, "range": [0, 1, 2, 3, "inf"]}, "r1": {"value": 1, "range": ["inf"]}},
            "nodes": nodes, "outputs": ["n0"]}
    assert _norm(fschema.schema_errors(data)) == _norm(fschema.full_schema_errors(data))


def test_the_schema_uses_only_keywords_the_grouping_accounts_for():
    """The grouped pass is exact only for the keywords it knows (see gtool/format/schema.py)."""
    used = set()
    stack = [fschema.schema()]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            for k, v in x.items():
                if k in ("properties", "$defs"):
                    stack.extend(v.values())
                    continue
                used.add(k)
                stack.append(v)
        elif isinstance(x, list):
            stack.extend(x)
    assert used <= fschema.HANDLED_KEYWORDS, used - fschema.HANDLED_KEYWORDS
    assert {m for m in _minimums(fschema.schema())} <= {0, 1}
    patterns = _patterns(fschema.schema())
    assert patterns == {fschema.schema()["$defs"]["name"]["pattern"]}


def _minimums(s):
    if isinstance(s, dict):
        if "minimum" in s:
            yield s["minimum"]
        for k, v in s.items():
            if k != "minimum":
                yield from _minimums(v)
    elif isinstance(s, list):
        for v in s:
            yield from _minimums(v)


def _patterns(s) -> set:
    out = set()
    if isinstance(s, dict):
        if isinstance(s.get("pattern"), str):
            out.add(s["pattern"])
        for v in s.values():
            out |= _patterns(v)
    elif isinstance(s, list):
        for v in s:
            out |= _patterns(v)
    return out


# the library entry points -------------------------------------------------------------------------------------


def test_load_and_types_of():
    graph = load(ROOT / "graphs" / "mlp.yaml")
    types = types_of(graph)
    assert [str(d) for d in types["logits"].shape] == ["batch", "10"]
    assert types["L"].shape == ()
    assert gtool.load(ROOT / "graphs" / "fanout.yaml").loss == "L"


def test_load_raises_with_every_diagnostic(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("gtool: 1\ninputs:\n  x: []\nnodes:\n  a: xx + 1\n  b: x + yy\noutputs: [a, b]\n")
    with pytest.raises(GraphError) as info:
        load(f)
    assert [d.code for d in info.value.diagnostics] == ["unknown-name", "unknown-name"]
    assert "g.yaml:5:3" in str(info.value)


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError):
        check_file(str(tmp_path / "nope.yaml"))


def test_build_graph_without_a_file():
    data, marks = load_document("gtool: 1\ninputs: {x: [2]}\nnodes: {y: x * 3}\noutputs: [y]\n", "mem.yaml")
    graph, diags = build_graph(data, marks, "mem.yaml")
    assert diags == [] and list(graph.nodes) == ["y"]
    assert graph.tensors["__y_1"].type.weak
