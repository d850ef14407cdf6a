"""Hypothesis strategies for structured fuzzing of gtool, shared by tests/test_fuzz_cli.py (short,
bounded) and bench/fuzz_campaign.py (long): shorthand expressions, inputs files and `--input`
flags, and whole command lines drawn from the real click option set on small graphs.

The one property everything is checked against is `check_outcome`: no traceback, no
`internal error`, an exit status of 0, 1 or 2, one parseable JSON document on stdout in JSON
mode, and no input file changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import click
import numpy as np
import yaml
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
SMALL_GRAPHS = ("fanout.yaml", "sum_times_y.yaml", "relu_layer.yaml", "linear_mse.yaml", "broadcast_affine.json")
NAMES = ("x", "y", "u", "z", "w", "L", "W", "b", "t", "h", "batch", "n")
JUNK_NAMES = ("", "lambda", "__x", "x.y", "１x", "é", "x\x1b[31m", "None", "True", "a" * 80)
OP_NAMES = ("add", "mul", "exp", "log", "sum", "mean", "relu", "tanh", "matmul", "softmax", "reshape", "transpose",
            "broadcast_to", "one_hot", "concat", "maximum", "where", "cast", "logsumexp", "pow", "sqrt", "abs")
HOSTILE_CALLS = ("print", "__import__", "eval", "exec", "open", "getattr", "globals", "breakpoint")

# shorthand expressions --------------------------------------------------------------------------------------

_NUMBERS = ("0", "1", "2.5", "-3", "1e308", "1e400", "-0.0", "0x10", "1_000", "1e-320", "2**63", "9" * 30, "nan",
            "inf", "True", "None", "1j", "'s'", "...")
_ATTR_VALUES = ("0", "-1", "[0, 1]", "[]", "True", "'float32'", "[2, 3]", "'n'", "None", "1.5", "[-1]", "10**12")


def _atoms():
    return st.sampled_from(NAMES + JUNK_NAMES[1:6] + _NUMBERS)


def _extend(children):
    binop = st.sampled_from(("+", "-", "*", "/", "**", "@", "%", "//", "<", "==", "and", "or", "&", "|", "^", ">>",
                             "if"))
    unop = st.sampled_from(("-", "+", "not ", "~"))
    func = st.sampled_from(OP_NAMES + HOSTILE_CALLS + ("frobnicate",))
    kw = st.tuples(st.sampled_from(("axis", "keepdims", "dtype", "shape", "depth", "perm", "alpha", "bogus")),
                   st.sampled_from(_ATTR_VALUES))
    return st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})" if op != "if" else f"({a} if {b} else {a})", children, binop,
                  children),
        st.builds(lambda op, a: f"{op}{a}", unop, children),
        st.builds(lambda f, args, kws: f"{f}({', '.join(args + [f'{k}={v}' for k, v in kws])})", func,
                  st.lists(children, max_size=3), st.lists(kw, max_size=2)),
        st.builds(lambda a, s: f"{a}{s}", children, st.sampled_from(("[0]", "[1:2]", ".T", ".real", "[...]", "()"))),
        st.builds(lambda a: f"lambda q: {a}", children),
        st.builds(lambda a, b: f"[{a}, {b}]", children, children),
        st.builds(lambda a: f"f'{{{a}}}'", children),
        st.builds(lambda a: f"(z := {a})", children),
    )


def expressions():
    """Shorthand expression text: grammatical Python-ish trees over gtool's ops and names, with
    hostile calls and literals mixed in, and raw junk."""
    tree = st.recursive(_atoms(), _extend, max_leaves=8)
    junk = st.text(alphabet="()[]{}+-*/@%<>=!&|^~.,:;'\"#\\ \n\tabcxyz0129_eE\x00\x1b", max_size=30)
    return st.one_of(tree, tree, junk)


def expression_graph(expr: str) -> str:
    """A JSON graph whose node `y` is `expr` (JSON, so the text reaches the expression parser as is)."""
    return json.dumps({"gtool": 1, "dims": {"n": 3},
                       "inputs": {"x": {"shape": [3]}, "W": {"shape": [3, 3]}, "b": {"shape": []},
                                  "t": {"shape": ["n"], "dtype": "int64"}},
                       "nodes": {"y": expr}, "outputs": ["y"]})


# data: inputs files and --input flags ------------------------------------------------------------------------

_SCALARS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70), st.booleans(),
                     st.none(), st.sampled_from(("nan", "inf", "-inf", "1.5", "x", "")))
DATA_VALUES = st.recursive(_SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(NAMES), c,
                                                                                          max_size=2), max_leaves=12)
_DTYPES = ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "uint64", "bool", "complex128", "<U3",
           "datetime64[s]")


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(_DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    raw = draw(st.lists(st.floats(-1e6, 1e6) | st.sampled_from((np.nan, np.inf, 1e300)), min_size=int(np.prod(shape)),
                        max_size=int(np.prod(shape))))
    with np.errstate(all="ignore"):
        base = np.array(raw, dtype=np.float64).reshape(shape)
        if dtype.startswith(("<U", "datetime")):
            return np.zeros(shape, dtype=dtype)
        return base.astype(dtype)


@st.composite
def inputs_files(draw, folder: Path) -> str:
    """A data file for `--inputs`: .json/.yaml of random nested values, or .npz of random arrays."""
    kind = draw(st.sampled_from(("json", "yaml", "npz", "junk")))
    names = draw(st.lists(st.sampled_from(NAMES + JUNK_NAMES[:4]), max_size=3, unique=True))
    path = folder / f"data_{draw(st.integers(0, 10**9))}.{kind if kind != 'junk' else 'json'}"
    if kind == "npz":
        np.savez(path, **{(n or "empty"): draw(arrays()) for n in names})
    elif kind == "junk":
        path.write_bytes(draw(st.binary(max_size=40)))
    else:
        data = {n: draw(DATA_VALUES) for n in names}
        try:
            text = json.dumps(data) if kind == "json" else yaml.safe_dump(data)
        except ValueError:
            text = "{}"
        path.write_text(text)
    return str(path)


def input_flags(npy: str):
    """`--input NAME=VALUE` texts: numbers, JSON lists, files, junk."""
    value = st.one_of(st.builds(json.dumps, DATA_VALUES.filter(lambda v: not isinstance(v, dict))),
                      st.sampled_from(("1", "[1, 2]", "[[1, 2], [3]]", "1e999", "nan", f"@{npy}", "@missing.npy",
                                       "@", "", "[", "2**63", "true")))
    return st.builds(lambda n, v: f"{n}={v}", st.sampled_from(NAMES + ("",)), value) | st.sampled_from(("x", "=", "=1"))


# whole command lines ----------------------------------------------------------------------------------------


def workspace(folder: Path) -> dict:
    """Small graphs, a folder of them, data files and a benign plugin under `folder`: what argv draws from."""
    graphs = folder / "graphs"
    graphs.mkdir(exist_ok=True)
    for g in SMALL_GRAPHS:
        shutil.copy(ROOT / "graphs" / g, graphs / g)
    (folder / "data.json").write_text(json.dumps({"x": 1.5, "y": [1.0, 2.0]}))
    np.savez(folder / "data.npz", x=np.array(1.0), W=np.ones((3, 2)))
    np.save(folder / "x.npy", np.array([1.0, -2.0]))
    (folder / "ok_plugin.py").write_text("X = 1\n")
    (folder / "noisy_plugin.py").write_text("print('plugin noise')\n")
    return {"graphs": sorted(str(p) for p in graphs.iterdir()), "folder": str(graphs), "root": folder,
            "data": [str(folder / "data.json"), str(folder / "data.npz")], "npy": str(folder / "x.npy"),
            "plugins": [str(folder / "ok_plugin.py"), str(folder / "noisy_plugin.py")]}


_OUT_EXTS = (".npz", ".yaml", ".json", ".dot", ".xml", ".txt", ".gv", "")


def _rare(draw, usual, junk):
    """Mostly a usual value, one time in eight junk: a command line with five options then still
    gets past click often enough to reach gtool's own code."""
    return draw(junk) if draw(st.integers(0, 7)) == 0 else draw(usual)


def _value(draw, param: click.Parameter, ws: dict, backends: tuple[str, ...]) -> list[str]:
    """Values for one option from its real type, nudged towards gtool's meaning of it."""
    name = param.name
    t = param.type
    if isinstance(t, click.Choice):
        choices = [c for c in t.choices if name != "backend" or c in backends]
        return [_rare(draw, st.sampled_from(choices), st.sampled_from(("sometimes", "", "JSON")))]
    if isinstance(t, click.types.IntRange):
        low = t.min if t.min is not None else 0
        high = min(t.max if t.max is not None else low + 4, low + 4)
        return [str(_rare(draw, st.integers(low, high), st.sampled_from((low - 1, high + 1, 2**64))))]
    if isinstance(t, click.types.FloatParamType):
        return [_rare(draw, st.sampled_from(("1e-6", "1e-3", "0.5", "1e-2")), st.sampled_from(("0", "-1", "nan", "inf",
                                                                                              "1e308", "x")))]
    if name in ("out_path", "emit_graph", "junit"):
        clobber = draw(st.integers(0, 5)) == 0  # sometimes an input of the command: must be refused
        if clobber:
            return [draw(st.sampled_from(ws["graphs"] + ws["data"] + ws["plugins"] + [ws["npy"]]))]
        ext = {"out_path": ".npz", "emit_graph": ".yaml", "junit": ".xml"}[name]
        ext = _rare(draw, st.just(ext), st.sampled_from(_OUT_EXTS))
        return [str(Path(ws["root"]) / f"out_{draw(st.integers(0, 99))}{ext}")]
    if name == "input_flags":
        return [draw(input_flags(ws["npy"]))]
    if name == "inputs_file":
        return [_rare(draw, st.sampled_from(ws["data"]) | inputs_files(Path(ws["root"])),
                      st.sampled_from(["missing.json", ws["folder"], ws["npy"]]))]
    if name == "dim_flags":
        return [_rare(draw, st.sampled_from(("n=2", "batch=4", "batch=2")),
                      st.sampled_from(("batch=0", "n=-1", "bogus=3", "n", "=3", "n=1e3", "n=2=3")))]
    if name == "plugins":
        return [_rare(draw, st.sampled_from(ws["plugins"]), st.sampled_from(["missing.py", ws["graphs"][0], ws["folder"]]))]
    if name in ("wrt", "of"):
        return [_rare(draw, st.sampled_from(NAMES + ("x,y", "W,b")), st.sampled_from(JUNK_NAMES + (",", "x,x")))]
    if name == "rule_names":
        return [_rare(draw, st.sampled_from(("softmax", "log_softmax", "logsumexp", "expm1")),
                      st.sampled_from(("bogus", "softmax,bogus", "")))]
    return [draw(st.sampled_from(NAMES + JUNK_NAMES))]


@st.composite
def command_lines(draw, ws: dict, backends: tuple[str, ...] = ("numpy",)) -> list[str]:
    """argv for a random command: its arguments (graphs, a folder, missing paths) and a random
    subset of its real options, in random order."""
    from gtool.cli import cli

    name = draw(st.sampled_from(sorted(cli.commands)))
    command = cli.commands[name]
    units: list[list[str]] = []  # an argument, a flag, or a flag with its value: shuffled as wholes
    for param in command.params:
        if isinstance(param, click.Argument):
            pool = st.sampled_from(ws["graphs"] + [ws["folder"]])
            odd = st.sampled_from(["missing.yaml", ws["data"][0], ws["plugins"][0]])
            k = 1 if param.nargs == 1 else draw(st.integers(1, 2))
            if param.required or draw(st.booleans()):
                units += [[_rare(draw, pool, odd)] for _ in range(k)]
    options = [p for p in command.params if isinstance(p, click.Option)]
    for param in draw(st.lists(st.sampled_from(options), max_size=5)) if options else []:
        flag = param.opts[-1] if not param.secondary_opts or draw(st.booleans()) else param.secondary_opts[0]
        units.append([flag] if param.is_flag else [flag, *_value(draw, param, ws, backends)])
    if draw(st.booleans()) and len(units) <= 8:  # options before arguments as often as after
        units = list(draw(st.permutations(units)))
    return [name] + [a for u in units for a in u]


def snapshot(ws: dict) -> dict[str, str]:
    """Digest of every input file of the workspace (outputs may be written; inputs never change)."""
    files = ws["graphs"] + ws["data"] + ws["plugins"] + [ws["npy"]]
    return {f: hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files if Path(f).exists()}


def wants_json(argv: list[str]) -> bool:
    """`--format json` (or sarif) as click reads it: the last of repeated options counts."""
    formats = [b for a, b in zip(argv, argv[1:]) if a == "--format" and b]
    return bool(formats) and formats[-1] in ("json", "sarif")


OUTPUT_FLAGS = ("-o", "--output", "--emit-graph", "--junit")


def _may_change(argv: list[str], path: str) -> bool:
    """Whether `path` is a file this command line writes and does not read (so it may change)."""
    import os

    def same(a: str) -> bool:
        return os.path.realpath(a) == os.path.realpath(path)

    written = any(a in OUTPUT_FLAGS and same(b) for a, b in zip(argv, argv[1:]))
    read = False
    for k, a in enumerate(argv):
        if k > 0 and argv[k - 1] in OUTPUT_FLAGS:
            continue
        a = a.partition("=@")[2] or a
        if same(a) or (os.path.isdir(a) and os.path.realpath(path).startswith(os.path.realpath(a) + os.sep)):
            read = True
    return written and not read


def check_outcome(argv: list[str], status, out: str, err: str, before: dict | None = None,
                  after: dict | None = None) -> None:
    """The fuzzing property: a clean failure or success, never a crash, a partial document or a
    clobbered input."""
    text = out + err
    assert "Traceback" not in text, (argv, text[-2000:])
    assert "internal error" not in text, (argv, text[-2000:])
    assert status in (0, 1, 2), (argv, status, text[-2000:])
    if wants_json(argv):
        try:
            json.loads(out)
        except ValueError as e:
            raise AssertionError((argv, "stdout is not one JSON document", out[:500], err[-500:])) from e
    if before is not None and after is not None and "--in-place" not in argv:
        changed = [f for f in before if after.get(f) != before[f] and not _may_change(argv, f)]
        assert not changed, (argv, "input files changed", changed)
