"""Bugs a demanding new user found by driving the command line and the API with good and bad
input: each test is a reproducer that failed before its fix.

Every problem must be one located line (plus a hint), never a traceback, with exit status 1
(the graph or check failed) or 2 (called wrongly); `--format json` must leave exactly one
JSON document on stdout, on errors too.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from gtool.cli import main

ROOT = Path(__file__).resolve().parent.parent
FANOUT = ROOT / "graphs" / "fanout.yaml"
MLP = ROOT / "graphs" / "mlp.yaml"

VECTOR = """\
gtool: 1
inputs:
  x: [2]
nodes:
  y: x * 2
outputs: [y]
"""

NAN_LOSS = """\
gtool: 1
inputs:
  x: {shape: [2], value: [0.0, 1.0]}
nodes:
  l: log(x)
  y: l * 0
  L: sum(y)
outputs: [L]
loss: L
"""


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run the command line in-process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def clean(err: str) -> bool:
    return "Traceback" not in err and "internal error" not in err


def json_error(capsys, *args) -> tuple[int, dict]:
    status, out, err = cli(capsys, *args)
    assert clean(err), err
    doc = json.loads(out)  # exactly one document
    return status, doc


@pytest.fixture
def vector(tmp_path) -> Path:
    f = tmp_path / "v.yaml"
    f.write_text(VECTOR)
    return f


# --format json: one document on stdout, also for errors click and the data options find --------


@pytest.mark.parametrize("args", [
    ("run", FANOUT, "--seed", "abc"),
    ("run", FANOUT, "--bogus"),
    ("grad", FANOUT, "--mode", "sideways"),
    ("run", FANOUT, "--input", "x"),
    ("run", FANOUT, "--inputs", "no_such_file.json"),
    ("explain", FANOUT, "--input", "x=abc"),
    ("grad-check", FANOUT, "--input", "x=abc"),
    ("validate", FANOUT, "--dim", "x"),
])
def test_json_error_document_for_every_usage_error(capsys, args):
    status, doc = json_error(capsys, *args, "--format", "json")
    assert status == 2
    assert doc["error"]["code"] in ("usage", "bad-input")
    assert doc["error"]["message"]


def test_json_error_when_format_comes_first(capsys):
    status, doc = json_error(capsys, "run", "--format=json", FANOUT, "--seed", "abc")
    assert status == 2 and "--seed" in doc["error"]["message"]


def test_text_usage_error_stays_text(capsys):
    status, out, err = cli(capsys, "run", FANOUT, "--seed", "abc")
    assert status == 2 and out == "" and "--seed" in err


@pytest.mark.parametrize("command", ["schema", "render"])
def test_every_command_takes_format_json(capsys, command):
    args = [command] + ([FANOUT] if command == "render" else []) + ["--format", "json"]
    status, out, err = cli(capsys, *args)
    assert status == 0, err
    doc = json.loads(out)
    if command == "render":
        assert doc["output"] is None and doc["dot"].startswith("digraph")
    else:
        assert doc["$schema"].startswith("https://json-schema.org")


def test_render_json_with_output_file(capsys, tmp_path):
    out_path = tmp_path / "f.dot"
    status, out, err = cli(capsys, "render", FANOUT, "-o", out_path, "--format", "json")
    assert status == 0, err
    assert json.loads(out) == {"output": str(out_path), "dot": None}
    assert out_path.read_text().startswith("digraph")


# files gtool writes -------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("run", FANOUT, "-o", "{d}/out.npz"),
    ("grad", FANOUT, "--emit-graph", "{d}/out.yaml"),
    ("grad-check", FANOUT, "--junit", "{d}/out.xml"),
    ("render", FANOUT, "-o", "{d}/out.dot"),
    ("rewrite", FANOUT, "-o", "{d}/out.yaml"),
])
def test_writing_onto_a_directory_is_a_usage_error(capsys, tmp_path, args):
    for name in ("out.npz", "out.yaml", "out.xml", "out.dot"):
        (tmp_path / name).mkdir()
    status, out, err = cli(capsys, *[str(a).format(d=tmp_path) for a in args])
    assert status == 2 and clean(err), err
    assert "is a directory" in err and "[usage]" in err


@pytest.mark.parametrize("args", [
    ("grad-check", "{g}", "--junit", "{g}"),
    ("render", "{g}", "-o", "{g}"),
])
def test_outputs_never_overwrite_the_input_graph(capsys, tmp_path, args):
    g = tmp_path / "graph.dot"  # a graph file may have any name; render -o takes .dot
    g.write_text(FANOUT.read_text())
    before = g.read_text()
    status, out, err = cli(capsys, *[str(a).format(g=g) for a in args])
    assert status == 2 and "refusing to overwrite the input file" in err
    assert g.read_text() == before


def test_written_files_get_ordinary_permissions(capsys, tmp_path):
    """mkstemp makes 0600 files: outputs must follow the umask, and --in-place keep the mode."""
    out = tmp_path / "g.yaml"
    status, _, err = cli(capsys, "grad", FANOUT, "--emit-graph", out)
    assert status == 0, err
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    naive = tmp_path / "naive.yaml"
    naive.write_text((ROOT / "graphs" / "softmax_logprob_naive.yaml").read_text())
    naive.chmod(0o640)
    status, _, err = cli(capsys, "rewrite", naive, "--in-place")
    assert status == 0, err
    assert stat.S_IMODE(naive.stat().st_mode) == 0o640


def test_run_output_never_overwrites_the_data_it_read(capsys, tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, x=np.array(1.0), y=np.array(2.0))
    before = data.read_bytes()
    status, out, err = cli(capsys, "run", FANOUT, "--inputs", data, "-o", data)
    assert status == 2 and "refusing to overwrite the input file" in err
    status, out, err = cli(capsys, "grad", FANOUT, "--inputs", data, "-o", data)
    assert status == 2 and "refusing to overwrite the input file" in err
    assert data.read_bytes() == before


# --plugin and flag values -------------------------------------------------------------------------


@pytest.mark.parametrize("plugin", ["{d}", "{d}/graph.yaml", "{d}/exits.py", "{d}/exits_code.py"])
def test_a_plugin_that_is_no_python_module_or_exits_is_a_usage_error(capsys, tmp_path, plugin):
    (tmp_path / "graph.yaml").write_text(FANOUT.read_text())
    (tmp_path / "exits.py").write_text("import sys\nsys.exit('bye')\n")
    (tmp_path / "exits_code.py").write_text("raise SystemExit(3)\n")
    status, out, err = cli(capsys, "run", "--plugin", plugin.format(d=tmp_path), FANOUT)
    assert status == 2 and clean(err), err
    assert "[usage]" in err and "plugin" in err


@pytest.mark.parametrize("command", ["run", "grad-check", "explain"])
def test_negative_seed_is_refused_by_the_flag(capsys, command):
    status, out, err = cli(capsys, command, MLP, "--random-inputs", "--seed", "-1", "--dim", "batch=2")
    assert status == 2 and clean(err), err
    assert "--seed" in err


def test_negative_rewrite_seed_is_refused_by_the_flag(capsys):
    naive = ROOT / "graphs" / "softmax_logprob_naive.yaml"
    status, out, err = cli(capsys, "rewrite", naive, "--verify", "--samples", "3", "--seed", "-1")
    assert status == 2 and clean(err) and "--seed" in err, err


@pytest.mark.parametrize("flag, message", [
    ("bach=2", "did you mean 'batch'"),
    ("1x=2", "not a valid dim name"),
])
def test_unknown_dim_names_are_reported(capsys, flag, message):
    status, out, err = cli(capsys, "run", MLP, "--random-inputs", "--dim", flag)
    assert status == 2 and clean(err), err
    assert message in err


def test_a_dim_given_twice_with_two_sizes_is_refused(capsys):
    status, out, err = cli(capsys, "run", MLP, "--random-inputs", "--dim", "batch=2", "--dim", "batch=3")
    assert status == 2 and "batch" in err
    status, out, err = cli(capsys, "run", MLP, "--random-inputs", "--dim", "batch=2", "--dim", "batch=2")
    assert status == 0, err


def test_a_free_dim_and_a_dim_used_only_in_an_attr_are_known(capsys, tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text("""\
gtool: 1
inputs:
  x: [n, 3]
  t: {shape: [2], dtype: int64, range: [0, 1]}
nodes:
  y: reshape(x, shape=[m, -1])
  z: one_hot(t, depth=k)
  s: sum(y)
outputs: [s, z]
""")
    status, out, err = cli(capsys, "run", g, "--random-inputs", "--dim", "n=2", "--dim", "m=3", "--dim", "k=4")
    assert status == 0, err


def test_shapes_shows_the_sizes_that_dim_binds(capsys, tmp_path):
    status, out, err = cli(capsys, "shapes", MLP, "--dim", "batch=7", "--format", "json")
    assert status == 0, err
    rows = {r["name"]: r["shape"] for r in json.loads(out)["nodes"]}
    assert rows["x"] == [7, 784] and rows["logits"] == [7, 10] and rows["t"] == [7]
    g = tmp_path / "free.yaml"
    g.write_text("gtool: 1\ninputs:\n  x: [n, 3]\nnodes:\n  y: sum(x, axis=1)\noutputs: [y]\n")
    status, out, err = cli(capsys, "shapes", g, "--dim", "n=4", "--format", "json")
    rows = {r["name"]: r["shape"] for r in json.loads(out)["nodes"]}
    assert rows == {"x": [4, 3], "y": [4]}


# data for a run ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, suffix, message", [
    ("[1, 2]\n", ".json", "must map input names to arrays"),
    ("", ".json", "must map input names to arrays"),
    ('{"x": [1,', ".json", "[json-syntax]"),
    ("x: 1\nx: 2\n", ".yaml", "[duplicate-key]"),
])
def test_inputs_file_errors_are_one_clean_located_line(capsys, tmp_path, text, suffix, message):
    data = tmp_path / f"data{suffix}"
    data.write_text(text)
    status, out, err = cli(capsys, "run", FANOUT, "--inputs", data)
    assert status == 2 and clean(err), err
    first = err.splitlines()[0]
    assert message in first and first.startswith(str(data))
    assert "graph file" not in err and first.count("error:") == 1 and "] [" not in first


def test_inputs_file_that_is_no_npz_archive(capsys, tmp_path):
    data = tmp_path / "junk.npz"
    data.write_bytes(bytes(range(256)) * 4)
    status, out, err = cli(capsys, "run", FANOUT, "--inputs", data)
    assert status == 2 and clean(err)
    assert "not a .npz" in err and "pickle" not in err


@pytest.mark.parametrize("flag, message", [
    ("=1", "--input wants NAME=VALUE"),
    ("x=null", "data for 'x' is null"),
    ('x="abc"', "data for 'x' is text, not numbers"),
    ('x=[1, "a"]', "data for 'x' is text, not numbers"),
    ("x=[1, [2]]", "data for 'x' is ragged"),
])
def test_bad_input_values_are_named_plainly(capsys, flag, message):
    status, out, err = cli(capsys, "run", FANOUT, "--input", flag)
    assert status == 2 and clean(err)
    assert message in err, err


def test_shape_mismatch_message_does_not_repeat_a_concrete_shape(capsys, vector):
    status, out, err = cli(capsys, "run", vector, "--input", "x=[1,2,3]")
    assert status == 2
    assert "'x' has shape [3] but is declared [2]: axis 0 is 3, expected 2" in err


def test_symbolic_shape_mismatch_still_shows_the_sizes(capsys, tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text("gtool: 1\ninputs:\n  x: [n]\n  y: [n + 1]\nnodes:\n  s: sum(x) + sum(y)\noutputs: [s]\n")
    status, out, err = cli(capsys, "run", g, "--input", "x=[1, 2]", "--input", "y=[1, 2]")
    assert status == 2
    assert "declared [n + 1] = [3]" in err


@pytest.mark.parametrize("size", ["99999999999999999999999999", "{big}"])
def test_a_dim_too_large_for_an_array_is_reported_not_crashed(capsys, tmp_path, size):
    g = tmp_path / "big.yaml"
    g.write_text(VECTOR.replace("x: [2]", f"x: [{size.format(big=2**62)}]"))
    status, out, err = cli(capsys, "run", g, "--random-inputs")
    assert status == 2 and clean(err), err
    assert "node 'x'" in err and "[too-many-elements]" in err  # refused before any allocation (gtool/budget.py)


# grad-check -------------------------------------------------------------------------------------------


def test_grad_check_of_a_nan_loss_blames_no_node(capsys, tmp_path):
    """NaN = NaN is no evidence against log's VJP: the report must say the loss is NaN and stop,
    without NumPy warnings on stderr."""
    import warnings

    g = tmp_path / "nan.yaml"
    g.write_text(NAN_LOSS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy RuntimeWarning would be an internal error
        status, out, err = cli(capsys, "grad-check", g, "--format", "json")
    assert status == 1 and clean(err), err
    (result,) = json.loads(out)["results"]
    assert not result["passed"] and result["culprit"] is None
    assert "the loss is nan" in result["message"] and "backward" not in result["message"]


@pytest.mark.parametrize("command", ["validate", "grad-check", "lint"])
def test_a_directory_without_graph_files_is_not_a_pass(capsys, tmp_path, command):
    (tmp_path / "notes.txt").write_text("no graphs here")
    status, out, err = cli(capsys, command, tmp_path)
    assert status == 2 and "no graph files" in err


def test_validate_counts_one_node_in_the_singular(capsys, vector):
    status, out, err = cli(capsys, "validate", vector)
    assert status == 0 and out.strip().endswith(": ok, 1 node")


# validate: messages a newcomer can act on ------------------------------------------------------------


@pytest.mark.parametrize("node, message", [
    ("2", "a node is an expression string ('x * 2') or a mapping {op, inputs, attrs}, not the number 2"),
    ("", "a node is an expression string ('x * 2') or a mapping {op, inputs, attrs}, not null"),
    ("[x]", "not a list"),
])
def test_a_node_that_is_no_expression_or_mapping_says_what_a_node_is(capsys, tmp_path, node, message):
    g = tmp_path / "g.yaml"
    g.write_text(f"gtool: 1\ninputs:\n  x: []\nnodes:\n  k: {node}\noutputs: [k]\n")
    status, out, err = cli(capsys, "validate", g)
    assert status == 1 and message in out, out
    assert "valid under any of the given schemas" not in out


def test_a_string_in_a_value_is_named(capsys, tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text('gtool: 1\ninputs:\n  x: {shape: [2], value: ["a", 1]}\nnodes:\n  k: x * 2\noutputs: [k]\n')
    status, out, err = cli(capsys, "validate", g)
    assert status == 1 and "a value holds numbers" in out and "the string 'a'" in out, out


def test_shapes_marks_weak_values_as_format_md_says(capsys, tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text("gtool: 1\ninputs:\n  f: {shape: [3], dtype: float32}\nconstants:\n  half: 0.5\n"
                 "nodes:\n  y: f * half\noutputs: [y]\n")
    status, out, err = cli(capsys, "shapes", g)
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert "float64 (weak)" in lines["half"] and "(weak)" not in lines["y"] and "float32" in lines["y"]


# the Python API ---------------------------------------------------------------------------------------


def test_api_takes_one_target_name_as_a_string():
    import gtool

    g = gtool.load(MLP, dims={"batch": 2})
    loss, grads = gtool.value_and_grad(g, wrt="b2", random_inputs=True)
    assert list(grads) == ["b2"]
    assert gtool.grad(g, "W2").outputs == gtool.grad(g, ["W2"]).outputs
    assert list(gtool.forward_mode_grad(g, wrt="b2", random_inputs=True)[1]) == ["b2"]
    assert gtool.jvp(g, "b1").outputs == gtool.jvp(g, ["b1"]).outputs


@pytest.mark.parametrize("call", [
    lambda gtool, g, mlp: gtool.run(mlp, random_inputs=True, seed=-1, dims={"batch": 2}),
    lambda gtool, g, mlp: gtool.run(mlp, random_inputs=True, dims={"batch": -1}),  # 0 is a size (an empty batch), -1 is not
    lambda gtool, g, mlp: gtool.run(mlp, random_inputs=True, dims={"batch": "x"}),
    lambda gtool, g, mlp: gtool.load(MLP, dims={"batch": "x"}),
    lambda gtool, g, mlp: gtool.load(MLP, dims={"batch": -3}),
    lambda gtool, g, mlp: gtool.value_and_grad(g, [1.0, 2.0]),
    lambda gtool, g, mlp: gtool.run(g, "x=1"),
])
def test_api_bad_arguments_raise_usage_errors(call):
    import gtool

    g, mlp = gtool.load(FANOUT), gtool.load(MLP)
    with pytest.raises(gtool.UsageError):
        call(gtool, g, mlp)


def test_github_annotations_escape_commas_and_colons_in_paths(capsys, tmp_path):
    folder = tmp_path / "a,b:c"
    folder.mkdir()
    g = folder / "g.yaml"
    g.write_text("gtool: 1\ninputs:\n  x: []\nnodes:\n  y: expp(x)\noutputs: [y]\n")
    status, out, err = cli(capsys, "validate", g, "--format", "github")
    assert status == 1
    line = out.strip()
    props = line.split("::")[1].split(" ", 1)[1]
    assert props.split(",")[0] == "file=" + str(g).replace(":", "%3A").replace(",", "%2C")
    assert "line=5" in props.split(",") and "col=3" in props.split(",")


def test_a_deeply_nested_input_flag_is_bad_input(capsys):
    status, out, err = cli(capsys, "run", FANOUT, "--input", "x=" + "[" * 5000 + "1" + "]" * 5000)
    assert status == 2 and "[bad-input]" in err and "nested too deeply" in err


def test_validate_reports_a_dim_no_checked_graph_uses(capsys):
    status, out, err = cli(capsys, "validate", MLP, FANOUT, "--dim", "bach=4")
    assert status == 2 and "did you mean 'batch'" in err
    status, out, err = cli(capsys, "validate", MLP, FANOUT, "--dim", "batch=4")
    assert status == 0, out + err


def test_rewrite_in_place_leaves_a_file_alone_when_no_rule_fires(capsys, tmp_path):
    g = tmp_path / "fanout.yaml"
    g.write_text(FANOUT.read_text())
    status, out, err = cli(capsys, "rewrite", g, "--in-place", "--format", "json")
    assert status == 0 and json.loads(out) == {"output": None, "applied": [], "verify": []}
    assert g.read_text() == FANOUT.read_text()  # comments and shorthand kept


@pytest.mark.parametrize("content", [b"", b"x: 1\n", b"\x93NUMPY\x01\x00"])
def test_input_flag_file_that_is_no_npy_array(capsys, tmp_path, content):
    """An empty file made numpy raise EOFError, which click turned into 'Aborted.' (exit 1)."""
    f = tmp_path / "x.npy"
    f.write_bytes(content)
    status, out, err = cli(capsys, "run", FANOUT, "--input", f"x=@{f}")
    assert status == 2 and clean(err) and "Aborted" not in err and "[bad-input]" in err, err
    assert "pickle" not in err


def test_an_eof_error_inside_a_command_is_not_reported_as_ctrl_c(capsys, monkeypatch):
    from gtool import api

    def boom(*args, **kwargs):
        raise EOFError("unexpected end")

    monkeypatch.setattr(api, "run", boom)
    status, out, err = cli(capsys, "run", FANOUT)
    assert status == 1 and "internal error: EOFError" in err and "Aborted" not in err


def test_grad_check_reports_data_and_dims_that_no_file_uses(capsys):
    sum_times_y = ROOT / "graphs" / "sum_times_y.yaml"
    status, out, err = cli(capsys, "grad-check", FANOUT, sum_times_y, "--input", "xx=1")
    assert status == 2 and "'xx'" in err and "did you mean 'x'" in err
    status, out, err = cli(capsys, "grad-check", FANOUT, MLP, "--dim", "bach=2")
    assert status == 2 and "did you mean 'batch'" in err
    status, out, err = cli(capsys, "grad-check", FANOUT, sum_times_y, "--input", "x=2")
    assert status == 0, out + err


@pytest.mark.parametrize("expr, hint", [
    ("sum(x, dim=0)", "did you mean 'axis'?"),
    ("softmax(x, dim=-1)", "did you mean 'axis'?"),
    ("mean(x, axis=0, keepdim=true)", "did you mean 'keepdims'?"),
    ("max(x, 0)", "the elementwise max of two is maximum(a, b)"),
    ("sum(x, 1)", "attrs are passed by name: sum(x, axis=...)"),
    ("x @ x.T", "write transpose(x)"),
])
def test_habits_from_numpy_and_pytorch_get_a_useful_hint(capsys, tmp_path, expr, hint):
    g = tmp_path / "g.yaml"
    g.write_text(f"gtool: 1\ninputs:\n  x: [2, 3]\nnodes:\n  y: {expr}\noutputs: [y]\n")
    status, out, err = cli(capsys, "validate", g)
    assert status == 1 and hint in out, out


def test_grad_check_on_a_folder_records_a_forward_only_graph_as_a_failed_file(tmp_path):
    """In a folder, a graph with nothing to differentiate fails that file (exit 1), not the run (exit 2)."""
    import shutil
    import subprocess
    import sys

    shutil.copy(ROOT / "graphs" / "fanout.yaml", tmp_path / "fanout.yaml")
    (tmp_path / "fwd.yaml").write_text(
        "gtool: 1\ninputs:\n  x: {shape: [3], value: [1.0, 2.0, 3.0]}\nnodes:\n  y: x * 2\noutputs: [y]\n")
    r = subprocess.run([sys.executable, "-m", "gtool", "grad-check", str(tmp_path), "--format", "json"],
                       capture_output=True, text=True, cwd=ROOT)  # this checkout's gtool, from any directory
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    by_path = {}
    for res in doc["results"]:
        by_path.setdefault(res["path"].rsplit("/", 1)[-1], []).append(res["passed"])
    assert by_path["fanout.yaml"] == [True, True]
    assert by_path["fwd.yaml"] == [False]


def test_a_huge_or_endless_file_is_refused_not_read_forever(monkeypatch):
    from gtool.errors import UsageError
    from gtool.format import source

    monkeypatch.setattr(source, "MAX_FILE_BYTES", 4096)
    with pytest.raises(UsageError, match="not a regular file"):  # refused before a byte is read
        source.load_file("/dev/zero")


def test_check_numerics_in_the_backward_pass_names_the_forward_node(capsys, tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text("gtool: 1\ninputs:\n  x: {shape: [2], value: [0.0, 1.0]}\nnodes:\n  r: sqrt(x)\n  L: sum(r)\n"
                 "outputs: [L]\nloss: L\n")
    status, out, err = cli(capsys, "grad", g, "--check-numerics")
    assert status == 1
    assert "node 'r'" in err and "the backward of 'r'" in err and ":5:" in err, err
