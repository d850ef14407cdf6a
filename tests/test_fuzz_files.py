"""Property tests on whole files: random valid graphs validate with the shapes predicted for
them (and run with those shapes); random mutations of valid files always end in a clean
error, from the library and from the command line, never a traceback."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtool import api
from gtool.cli import main
from gtool.dims import Dim, format_shape, parse_dim
from gtool.errors import GraphError, UsageError
from gtool.format import schema as fschema
from gtool.validate import check_file, load

ROOT = Path(__file__).resolve().parent.parent
# derandomized (the same examples on every run and in CI) and bounded; bench/fuzz_campaign.py runs longer
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
DECLARED = {"b": 3}  # a rigid dim
FREE = "n"  # a free dim, bound to BIND by some graphs
BIND = 2
SIZES = {"b": 3, "n": BIND}

# random valid graphs ------------------------------------------------------------------------------


class GraphGen:
    """Builds a random valid graph step by step, predicting every value's shape."""

    def __init__(self, draw) -> None:
        self.draw = draw
        self.inputs: dict[str, list] = {}  # name -> shape as written (ints and dim names)
        self.params: dict[str, list] = {}
        self.nodes: dict[str, object] = {}
        self.shapes: dict[str, tuple[Dim, ...]] = {}  # predicted, before bindings
        self.bound = False
        self.count = 0

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def new(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def tensor(self, shape: list, param: bool = False) -> str:
        name = self.new("W" if param else "x")
        (self.params if param else self.inputs)[name] = shape
        self.shapes[name] = tuple(parse_dim(d) for d in shape)
        return name

    def written(self, shape) -> list:
        return [d.to_json() for d in shape]

    def node(self, expr: str, explicit: dict, shape: tuple[Dim, ...]) -> str:
        name = self.new("h")
        if self.draw(st.booleans()):
            self.nodes[name] = expr
        else:
            if self.draw(st.booleans()):
                explicit = {**explicit, "shape": self.written(shape)}
            self.nodes[name] = explicit
        self.shapes[name] = shape
        return name

    def step(self) -> None:
        values = list(self.shapes)
        a = self.pick(values)
        s = self.shapes[a]
        rank = len(s)
        kind = self.pick(["unary", "binary", "scalar", "reduce", "matmul", "transpose", "reshape", "concat",
                          "softmax", "expand", "where", "bind"])
        if kind == "unary" or (rank == 0 and kind in ("matmul", "transpose", "reshape", "concat", "softmax")):
            op = self.pick(["exp", "tanh", "relu", "neg", "sigmoid", "abs", "square"])
            self.node(f"{op}({a})", {"op": op, "inputs": [a]}, s)
        elif kind == "binary":
            op, sym = self.pick([("add", "+"), ("sub", "-"), ("mul", "*"), ("maximum", None)])
            lead = self.draw(st.integers(0, rank))
            partner = [1 if self.draw(st.booleans()) else d.to_json() for d in s[lead:]]
            extra = self.draw(st.sampled_from([[], [], [2], ["b"]])) if lead == 0 else []  # new leading axes
            other = self.tensor(extra + partner)
            out = tuple(Dim.const(d) if isinstance(d, int) else Dim.sym(d) for d in extra) + s
            left, right = (a, other) if self.draw(st.booleans()) else (other, a)
            expr = f"{left} {sym} {right}" if sym else f"{op}({left}, {right})"
            self.node(expr, {"op": op, "inputs": [left, right]}, out)
        elif kind == "scalar":
            c = self.pick(["2", "0.5", "1e-3", "3"])
            self.node(f"{a} * {c}", {"op": "identity", "inputs": [a]}, s)
        elif kind == "reduce":
            self.reduce(a, s, rank)
        elif kind == "matmul":
            k = self.pick([2, 3, "b"])
            w = self.tensor([s[-1].to_json(), k], param=True)
            out = s[:-1] + (Dim.sym(k) if isinstance(k, str) else Dim.const(k),)
            self.node(f"{a} @ {w}", {"op": "matmul", "inputs": [a, w]}, out)
        elif kind == "transpose":
            perm = self.draw(st.permutations(list(range(rank))))
            written = [p - rank if self.draw(st.booleans()) else p for p in perm]
            out = tuple(s[p] for p in perm)
            self.node(f"transpose({a}, perm={written})", {"op": "transpose", "inputs": [a], "attrs": {"perm": written}},
                      out)
        elif kind == "reshape":
            self.reshape(a, s, rank)
        elif kind == "concat":
            ax = self.draw(st.integers(0, rank - 1))
            d = self.pick([1, 2, "b", "n"])
            other = self.tensor([d if k == ax else x.to_json() for k, x in enumerate(s)])
            out = tuple(x + self.shapes[other][ax] if k == ax else x for k, x in enumerate(s))
            written = ax - rank if self.draw(st.booleans()) else ax
            self.node(f"concat({a}, {other}, axis={written})",
                      {"op": "concat", "inputs": [a, other], "attrs": {"axis": written}}, out)
        elif kind == "softmax":
            ax = self.draw(st.integers(-rank, rank - 1))
            op = self.pick(["softmax", "log_softmax"])
            self.node(f"{op}({a}, axis={ax})", {"op": op, "inputs": [a], "attrs": {"axis": ax}}, s)
        elif kind == "expand":
            ax = self.draw(st.integers(0, rank))
            out = s[:ax] + (Dim.const(1),) + s[ax:]
            self.node(f"expand_dims({a}, axis={ax})", {"op": "expand_dims", "inputs": [a], "attrs": {"axis": ax}}, out)
        elif kind == "where":
            self.node(f"where({a} > 0, {a}, 0.5 * {a})", {"op": "relu", "inputs": [a]}, s)
        elif kind == "bind" and not self.bound and any(FREE in d.symbols() for d in s):
            # meet a tensor whose free dim n is written as BIND: unification binds n = BIND
            other = self.tensor([BIND if d == Dim.sym(FREE) else d.to_json() for d in s])
            if any(d != Dim.sym(FREE) and FREE in d.symbols() for d in s):
                del self.inputs[other], self.shapes[other]
                return  # n inside an expression: it cannot bind a plain size, skip
            self.bound = True
            self.node(f"{a} + {other}", {"op": "add", "inputs": [a, other]}, s)

    def reduce(self, a: str, s: tuple, rank: int) -> None:
        """A reduction over random axes (some written negative), keepdims or not."""
        op = self.pick(["sum", "mean", "max", "logsumexp"])
        keep = self.draw(st.booleans())
        if rank == 0 or self.draw(st.booleans()):
            axes = None
        else:
            axes = sorted(set(self.draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank))))
        out = tuple(Dim.const(1) if (axes is None or k in axes) else d for k, d in enumerate(s) if keep or
                    not (axes is None or k in axes))
        written = None if axes is None else [k - rank if self.draw(st.booleans()) else k for k in axes]
        attr = "" if axes is None else f", axis={json.dumps(written)}"
        attr += ", keepdims=true" if keep else ""
        self.node(f"{op}({a}{attr})", {"op": op, "inputs": [a], "attrs": {"axis": written, "keepdims": keep}}, out)

    def reshape(self, a: str, s: tuple, rank: int) -> None:
        """Flatten, or keep the first dim and flatten the rest (-1)."""
        total = Dim.const(1)
        for d in s:
            total = total * d
        if rank >= 2 and self.draw(st.booleans()):
            rest = Dim.const(1)
            for d in s[1:]:
                rest = rest * d
            target, out = [s[0].to_json(), -1], (s[0], rest)
        else:
            target, out = [-1], (total,)
        self.node(f"reshape({a}, shape={json.dumps(target)})",
                  {"op": "reshape", "inputs": [a], "attrs": {"shape": target}}, out)

    def document(self, fmt: str, shuffle: bool) -> tuple[str, list[str]]:
        used = {i for spec in self.nodes.values()
                for i in (spec["inputs"] if isinstance(spec, dict) else re.findall(r"[A-Za-z_]\w*", spec))}
        outputs = [n for n in self.nodes if n not in used] or list(self.shapes)[-1:]
        names = list(self.nodes)
        if shuffle:
            random.Random(len(names)).shuffle(names)
        doc = {"gtool": 1, "dims": dict(DECLARED),
               "inputs": {k: {"shape": v} for k, v in self.inputs.items()},
               "params": {k: {"shape": v, "init": {"normal": {"std": 0.5}}} for k, v in self.params.items()},
               "nodes": {n: self.nodes[n] for n in names}, "outputs": outputs}
        if not self.params:
            del doc["params"]
        if fmt == "json":
            return json.dumps(doc, indent=1), outputs
        lines = ["gtool: 1", "dims: {b: 3}", "inputs:"]
        lines += [f"  {k}: {json.dumps(v)}" for k, v in doc["inputs"].items()]
        if self.params:
            lines.append("params:")
            lines += [f"  {k}: {json.dumps(v)}" for k, v in doc["params"].items()]
        lines.append("nodes:")
        for n, spec in doc["nodes"].items():
            lines.append(f"  {n}: {spec}" if isinstance(spec, str) else f"  {n}: {json.dumps(spec)}")
        lines.append(f"outputs: {json.dumps(outputs)}")
        return "\n".join(lines) + "\n", outputs


@st.composite
def random_graphs(draw):
    gen = GraphGen(draw)
    shape = draw(st.lists(st.sampled_from([1, 2, 3, "b", "n"]), min_size=0, max_size=3))
    gen.tensor(shape)
    for _ in range(draw(st.integers(1, 8))):
        gen.step()
    if not gen.nodes:  # every step was skipped
        gen.node(f"exp({list(gen.shapes)[0]})", {"op": "exp", "inputs": [list(gen.shapes)[0]]}, gen.shapes["x1"])
    fmt = draw(st.sampled_from(["yaml", "json"]))
    text, outputs = gen.document(fmt, shuffle=draw(st.booleans()))
    return gen, fmt, text, outputs


@SETTINGS
@given(random_graphs())
def test_random_valid_graphs_validate_with_the_predicted_shapes(tmp_path_factory, case):
    gen, fmt, text, outputs = case
    path = tmp_path_factory.mktemp("gen") / f"g.{fmt}"
    path.write_text(text)
    report = check_file(str(path))
    assert report.valid, "\n".join(d.format() for d in report.errors) + "\n" + text
    assert report.warnings == [], text
    bindings = {FREE: Dim.const(BIND)} if gen.bound else {}
    for name, predicted in gen.shapes.items():
        want = format_shape(tuple(d.substitute(bindings) for d in predicted))
        got = format_shape(report.inference.types[name].shape)
        assert got == want, f"{name}: inferred {got}, predicted {want}\n{text}"
    # and the executor agrees with the shapes, for sizes b = 3, n = BIND
    graph = load(path)
    out = api.run(graph, random_inputs=True, seed=1, dims={} if gen.bound else {FREE: BIND})
    for name in outputs:
        want = tuple(d.evaluate(SIZES) for d in gen.shapes[name])
        assert np.shape(out[name]) == want, (name, text)


# mutations of valid files ----------------------------------------------------------------------------

SEEDS = [p.read_text() for p in sorted((ROOT / "graphs").iterdir()) if p.suffix == ".yaml"]
JSON_SEEDS = [p.read_text() for p in sorted((ROOT / "graphs").iterdir()) if p.suffix == ".json"]
NAMES = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
NUMBERS = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _delete_key(text: str, r: random.Random, fmt: str) -> str:
    """Parse (plainly), delete one key anywhere, and write the document back."""
    import yaml

    data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    spots = []
    stack = [data]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            spots += [(x, k) for k in x]
            stack += list(x.values())
        elif isinstance(x, list):
            stack += x
    if spots:
        container, key = r.choice(spots)
        del container[key]
    return json.dumps(data) if fmt == "json" else yaml.safe_dump(data, sort_keys=False)


def _swap_names(text: str, r: random.Random, fmt: str) -> str:
    names = sorted(set(NAMES.findall(text)))
    if len(names) < 2:
        return text
    a, b = r.sample(names, 2)
    return re.sub(rf"\b({re.escape(a)}|{re.escape(b)})\b", lambda m: b if m.group(1) == a else a, text)


def _rename_one(text: str, r: random.Random, fmt: str) -> str:
    hits = list(NAMES.finditer(text))
    m = r.choice(hits)
    return text[:m.start()] + r.choice(["zz", "x", "__x", "2bad", "nodes", "L", "é", "a-b", ""]) + text[m.end():]


def _garbage(text: str, r: random.Random, fmt: str) -> str:
    k = r.randrange(len(text) + 1)
    junk = bytes(r.randrange(256) for _ in range(r.randint(1, 8))).decode("latin-1")
    return text[:k] + junk + text[k:]


def _truncate(text: str, r: random.Random, fmt: str) -> str:
    return text[:r.randrange(len(text))]


def _deep(text: str, r: random.Random, fmt: str) -> str:
    depth = r.choice([50, 199, 201, 1000, 5000])
    hits = list(NUMBERS.finditer(text))
    if not hits or r.random() < 0.3:
        # an expression nested deeply
        m = list(re.finditer(r"^  (\w+): ([^{\n].*)$", text, re.M)) if fmt == "yaml" else []
        if m:
            h = r.choice(m)
            inner = r.choice(["(" * depth + "x" + ")" * depth, "-" * depth + "x", "x" + " + x" * depth,
                              "exp(" * depth + "x" + ")" * depth, "x ** " * depth + "2"])
            return text[:h.start(2)] + inner + text[h.end(2):]
        return text
    m = r.choice(hits)
    return text[:m.start()] + "[" * depth + m.group() + "]" * depth + text[m.end():]


def _huge_number(text: str, r: random.Random, fmt: str) -> str:
    hits = list(NUMBERS.finditer(text))
    if not hits:
        return text
    m = r.choice(hits)
    big = r.choice(["1" + "0" * 400, "9" * 5000, "1e999", "-1e999", "1e-400", "99999999999999999999", "0", "-1",
                    "2.5", "1e308", "4294967297"])
    return text[:m.start()] + big + text[m.end():]


def _unicode(text: str, r: random.Random, fmt: str) -> str:
    k = r.randrange(len(text) + 1)
    chars = r.choice(["\u200b", "\u202e", "é", "日本", "😀", "\ufeff", "\x00", "\t", "\u2028", "ｎ", "\x85", "\udc80"])
    return text[:k] + chars + text[k:]


def _duplicate_line(text: str, r: random.Random, fmt: str) -> str:
    lines = text.splitlines(keepends=True)
    k = r.randrange(len(lines))
    return "".join(lines[:k + 1] + [lines[k]] + lines[k + 1:])


def _indent(text: str, r: random.Random, fmt: str) -> str:
    lines = text.splitlines(keepends=True)
    k = r.randrange(len(lines))
    lines[k] = r.choice([" ", "  ", "\t", ""]) + lines[k].lstrip(" ") if r.random() < 0.5 else lines[k][1:]
    return "".join(lines)


def _shape_edit(text: str, r: random.Random, fmt: str) -> str:
    spots = list(re.finditer(r"shape: \[([^\]]*)\]" if fmt == "yaml" else r'"shape": \[([^\]]*)\]', text))
    if not spots:
        return text
    m = r.choice(spots)
    new = r.choice(["", "0", "-1", "n, n", "'n + ', 2", "1.5", "'2 - 3'", "batch", "true", "null", "'x' * 3",
                    "1e9, 1e9", "'a * b * c * d'", "[1]"])
    return text[:m.start(1)] + new + text[m.end(1):]


MUTATIONS = [_delete_key, _swap_names, _rename_one, _garbage, _truncate, _deep, _huge_number, _unicode,
             _duplicate_line, _indent, _shape_edit]


def _clean_cli(args: list[str], capsys) -> int:
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text, text
    assert "internal error" not in text, text
    return info.value.code


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, 10**6), n_mutations=st.integers(1, 3))
def test_mutated_files_fail_cleanly(tmp_path_factory, capsys, seed, which, n_mutations):
    r = random.Random(seed)
    fmt = "json" if which % 5 == 0 else "yaml"
    pool = JSON_SEEDS if fmt == "json" else SEEDS
    text = pool[which % len(pool)]
    applied = []
    for _ in range(n_mutations):
        mutate = r.choice(MUTATIONS)
        try:
            text = mutate(text, r, fmt)
        except Exception:  # the mutation itself could not parse an already broken text: keep it
            continue
        applied.append(mutate.__name__)
    path = tmp_path_factory.mktemp("mut") / f"m.{fmt}"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    # the library: a report, or a clean GraphError from load
    report = check_file(str(path))
    for d in report.errors:
        assert d.code and d.message, (applied, d)
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", d.code), d.code
    try:
        load(path)
        valid = True
    except UsageError:
        raise AssertionError(f"a graph file gave a usage error: {applied}") from None
    except GraphError as e:
        valid = False
        assert e.diagnostics
    assert valid == report.valid
    # the command line: exit 0 only for a valid file, 1 for an invalid one; never a traceback
    status = _clean_cli(["validate", str(path)], capsys)
    assert status == (0 if valid else 1), applied
    status = _clean_cli(["validate", "--format", "json", str(path)], capsys)
    assert status in (0, 1)
    status = _clean_cli(["shapes", str(path)], capsys)
    assert status == (0 if valid else 1), applied


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from(["yaml", "json"]))
def test_arbitrary_bytes_fail_cleanly(tmp_path_factory, capsys, data, fmt):
    path = tmp_path_factory.mktemp("bytes") / f"b.{fmt}"
    path.write_bytes(data)
    report = check_file(str(path))
    assert not report.valid
    assert _clean_cli(["validate", str(path)], capsys) == 1


def _schema_norm(errors) -> list:
    return sorted((tuple(map(str, prefix + list(e.absolute_path))), e.validator, e.message) for prefix, e in errors)


@SETTINGS
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=20),
       st.sampled_from(["gtool", "inputs", "params", "constants", "nodes", "outputs", "loss", "dims"]))
def test_any_json_value_in_any_section_fails_cleanly(tmp_path_factory, capsys, value, section):
    doc = {"gtool": 1, "inputs": {"x": [3]}, "nodes": {"y": "x * 2"}, "outputs": ["y"]}
    doc[section] = value
    path = tmp_path_factory.mktemp("sec") / "s.json"
    path.write_text(json.dumps(doc))
    # the grouped schema pass finds exactly what one plain jsonschema pass finds
    data = json.loads(path.read_text())
    assert _schema_norm(fschema.schema_errors(data)) == _schema_norm(fschema.full_schema_errors(data))
    report = check_file(str(path))
    status = _clean_cli(["validate", str(path)], capsys)
    assert status == (0 if report.valid else 1)
