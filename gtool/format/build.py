"""From a loaded document (plain data + source marks) to a Graph, with every problem located.

Order of checks: JSON Schema (structure) -> tensors (dims, dtypes, values, init) -> nodes
(shorthand parsing, ops, arity, attrs) -> names (unknown, duplicate, reserved) -> cycles.
Problems are collected, not raised one at a time, so a user sees all of them at once.
"""

from __future__ import annotations

import math
import re
import unicodedata

import numpy as np

from ..datafit import fitted
from ..dims import Dim, parse_dim
from ..dtypes import INSTALL, have_ml_dtypes, is_float_like, is_storage
from ..errors import Diagnostic, GraphError, did_you_mean
from ..ir import Graph, Loc, Node, Tensor, TensorType, toposort
from ..ops.registry import REGISTRY, AttrError, check_attr, get_op
from .expr import parse_expression
from .schema import SCHEMA_PATH, leaves, schema, schema_errors  # noqa: F401 (re-exported)

# The names gtool generates: shorthand intermediates (__<owner>_<n>) and autodiff/rewrite names.
#: A name, as the schema's pattern says (fullmatch: no final newline; ASCII only, so two names
#: never differ only by Unicode normalisation).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # as jsonschema applies the pattern (re.search)
GENERATED = re.compile(r"__(grad|tan|bwd|c|rw)_\w+|__[A-Za-z_]\w*_\d+")
SECTIONS = ("inputs", "params", "constants")
KIND = {"inputs": "input", "params": "param", "constants": "constant"}
_SCHEMA_CODES = {"additionalProperties": "unknown-key", "required": "missing-key", "type": "bad-type"}
_JSON_TYPES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "null"}


class Builder:
    """Collects diagnostics while turning one document into a Graph."""

    def __init__(self, data: dict, marks: dict, path: str) -> None:
        self.data = data
        self.marks = marks
        self.path = path
        self.diags: list[Diagnostic] = []
        self.seen: dict[str, str] = {}  # declared name -> its section
        self.shorthand: set[str] = set()  # nodes written as expressions (they have no `inputs:` to point at)

    # diagnostics ---------------------------------------------------------------------
    def loc(self, pointer: str) -> Loc:
        p = pointer
        while p not in self.marks and p:
            p = p.rsplit("/", 1)[0]
        line, col = self.marks.get(p, (None, None))
        return Loc(self.path, line, col, pointer)

    def error(self, code: str, message: str, pointer: str, node: str | None = None, **extra) -> None:
        self.diags.append(Diagnostic(code, message, node=node, **self.loc(pointer).where(), **extra))

    # 1. structure ----------------------------------------------------------------------
    def check_schema(self) -> bool:
        """The JSON Schema pass (gtool.format.schema), each violation mapped to a stable code."""
        found: list[Diagnostic] = []
        for prefix, e in schema_errors(self.data):
            if not prefix and list(e.absolute_path) == ["gtool"]:
                continue  # the version is checked below (JSON Schema takes 1.0 for an integer)
            path = prefix + list(e.absolute_path)
            if e.validator == "anyOf" and len(path) == 2 and path[0] in SECTIONS:
                kind = KIND[path[0]]
                need = "a value, or a shape and an init" if kind == "param" else "a shape (or a value)"
                found.append(self._diag("missing-key", f"{kind} '{path[1]}' needs {need}", _pointer(path), path[1]))
                continue
            for leaf in leaves(e):
                found.append(self.schema_diag(prefix + list(leaf.absolute_path), leaf))
        found += self.name_diags()
        version = self.data.get("gtool")
        if "gtool" in self.data and (type(version) is not int or version != 1):
            found.append(self._diag("bad-version", f"unsupported format version {version!r}: this gtool reads "
                                    "version 1 (the integer 1)", "/gtool"))
        found.sort(key=lambda d: (d.line or 0, d.column or 0))
        self.diags.extend(found)
        return not found

    def name_diags(self) -> list[Diagnostic]:
        """Names the schema's pattern lets through: `x\\n` (a JSON Schema `$` is the end of the
        text, but the Python regex engine that checks it also lets `$` match before a final
        newline), and a graph `name` holding control characters (an ANSI escape sequence
        would reach the terminal, a newline would break every one-line report)."""
        out = []
        for section in ("dims", *SECTIONS, "nodes"):
            entries = self.data.get(section)
            for name in entries if isinstance(entries, dict) else ():
                if _NAME.fullmatch(name) is None and _SCHEMA_NAME.search(name):  # else the schema said it
                    out.append(self._diag("bad-name", f"'{shown(name)}' is not a valid name: use letters, digits "
                                          "and _, not starting with a digit", f"/{section}/{_escape(name)}", shown(name)))
        title = self.data.get("name")
        if isinstance(title, str) and not all(c.isprintable() or c == " " for c in title):
            out.append(self._diag("bad-name", f"the graph's name '{shown(title)}' holds control or unprintable "
                                  "characters; a name is one line of printable text (put the rest in doc)", "/name"))
        return out

    def schema_diag(self, path: list, e) -> Diagnostic:
        """One schema violation as a located diagnostic with the most specific code we know.

        Where it is decides the code first (a dim, a dims entry, an init), then the kind of
        violation (unknown or missing key, a bad name, a wrong type) words the message.
        """
        pointer = _pointer(path)
        v = e.validator
        node = path[1] if len(path) >= 2 and path[0] in (*SECTIONS, "nodes") else None
        code, message = _SCHEMA_CODES.get(v, "schema"), e.message
        in_shape = (len(path) == 4 and path[2] == "shape") or (
            len(path) == 3 and path[0] == "inputs" and isinstance(path[2], int))  # `x: [3, 0]`, the shape shorthand
        if v == "additionalProperties":
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            if extra:
                pointer += "/" + _escape(extra[0])
                allowed = ", ".join(e.schema.get("properties", {})) or "none"
                message = f"unknown key '{shown(extra[0])}' (allowed here: {allowed})"
        elif v == "required":
            message = f"missing required key: {e.message.split(' is a required')[0]}"
        elif "propertyNames" in e.absolute_schema_path:
            code = "bad-name"
            if isinstance(e.instance, str):
                pointer += "/" + _escape(e.instance)
                node = shown(node or e.instance)
                message = f"'{shown(e.instance)}' is not a valid name: use letters, digits and _, not starting with a digit"
        elif v == "pattern" and isinstance(e.instance, str):  # a name in outputs, loss, inputs: [...]
            code = "bad-name"
            message = f"'{shown(e.instance)}' is not a valid name: use letters, digits and _, not starting with a digit"
            folded = unicodedata.normalize("NFKC", e.instance)
            if folded != e.instance and _NAME.fullmatch(folded):
                message += f" (names are ASCII: this is not '{folded}', it only looks like it)"
        elif in_shape or (len(path) == 2 and path[0] == "dims"):
            code = "bad-dim"
            what = f"dim '{path[1]}'" if path[0] == "dims" else "a dim"
            message = f"{what} must be a non-negative integer" + (", a dim name or a dim expression" if path[0] != "dims"
                                                               else "") + f", not {e.instance!r}"
        elif v in ("anyOf", "oneOf") and len(path) == 2 and path[0] == "nodes":  # `k: 2`, `k:` (null), `k: [x]`
            message = (f"a node is an expression string ('x * 2') or a mapping {{op, inputs, attrs}}, not "
                       f"{_describe(e.instance)}") + (" (quote it, or declare it under constants)"
                                                       if isinstance(e.instance, (int, float)) else "")
        elif v in ("anyOf", "oneOf") and path and (path[0] == "constants" or "value" in path[2:]):
            message = f"a value holds numbers (or \"nan\", \"inf\", \"-inf\"), not {_describe(e.instance)}"
        elif v == "minimum":
            message = f"'{path[-1]}' must be at least {e.validator_value}, got {e.instance!r}"
        elif v == "enum":
            message = f"{e.instance!r} is not one of {', '.join(map(str, e.validator_value))}"
        elif v == "type" and path:
            want = e.schema.get("type")
            want = " or ".join(_JSON_TYPES.get(t, t) for t in ([want] if isinstance(want, str) else want))
            message = f"'{path[-1]}' must be {want}, not {_describe(e.instance)}"
        if len(path) >= 3 and path[0] == "params" and path[2] == "init":
            code = "bad-init"
            if len(path) == 3 and v not in ("additionalProperties", "required"):
                message = (f"unknown init {e.instance!r}: use zeros, ones, {{normal: {{mean, std}}}}, "
                           "{uniform: {low, high}} or {glorot: {}}")
            else:
                message = f"init: {message}"
        return self._diag(code, message, pointer, node)

    def _diag(self, code: str, message: str, pointer: str, node: str | None = None) -> Diagnostic:
        return Diagnostic(code, message, node=node, **self.loc(pointer).where())

    # 2. tensors --------------------------------------------------------------------------
    def tensor(self, section: str, name: str, spec) -> Tensor | None:
        ptr = f"/{section}/{name}"
        kind = KIND[section]
        shape_ptr = ptr + "/shape"
        if isinstance(spec, list) and section != "constants":
            spec, shape_ptr = {"shape": spec}, ptr  # the shape shorthand `x: [3, n]`
        elif not isinstance(spec, dict):
            spec = {"value": spec}
        weak = section == "constants" and "dtype" not in spec and not isinstance(spec.get("value"), list)
        # a weak scalar keeps the kind of number written, as a literal in an expression does
        # (`k: 2` is the `2` of `x * 2`), so written-out graphs read back the same
        dtype = spec.get("dtype") or (_literal_dtype(spec.get("value")) if weak else "float64")
        if is_storage(dtype) and not have_ml_dtypes():
            self.error("missing-extra", f"{kind} '{name}' has the storage-only dtype {dtype}, which needs the "
                       f"ml_dtypes package: {INSTALL}", ptr + "/dtype", name)
            return None
        value = None
        if "value" in spec:
            value = self.array(spec["value"], dtype, ptr + "/value", name)
            if value is None:
                return None
        if "shape" in spec:
            shape = self.shape(spec["shape"], shape_ptr, name)
            if shape is None:
                return None
            if value is not None and not _fits(value.shape, shape):
                self.error("bad-value", f"value has shape {list(value.shape)} but the declared shape is "
                           f"[{', '.join(map(str, shape))}]", ptr + "/value", name)
                return None
        elif value is not None:
            shape = tuple(Dim.const(d) for d in value.shape)
        else:
            self.error("missing-key", f"{kind} '{name}' needs a shape (or a value)", ptr, name)
            return None
        rng = spec.get("range")
        if rng is not None:
            try:
                rng = (float(rng[0]), float(rng[1]))
                if math.isnan(rng[0]) or math.isnan(rng[1]) or rng[0] > rng[1]:
                    raise ValueError
            except (ValueError, TypeError, OverflowError, IndexError):
                self.error("bad-value", f"range must be [lo, hi] with lo <= hi, got {spec['range']}", ptr + "/range",
                           name)
                return None
        init = spec.get("init")
        if init is not None and not _valid_init(init):
            self.error("bad-init", f"unknown init {init!r}: use zeros, ones, {{normal: {{mean, std}}}}, "
                       "{uniform: {low, high}} or {glorot: {}}", ptr + "/init", name)
            return None
        if kind != "input" and value is None and init is None:  # the schema says so too
            need = "a value" if kind == "constant" else "a value, or a shape and an init"
            self.error("missing-key", f"{kind} '{name}' needs {need}", ptr, name)
            return None
        return Tensor(name, kind, TensorType(shape, dtype, weak), value, init, rng, spec.get("doc"), self.loc(ptr))

    def shape(self, dims: list, ptr: str, name: str) -> tuple[Dim, ...] | None:
        """A declared shape (the list at `ptr`), or None after reporting the first bad dim, at it."""
        out = []
        for k, d in enumerate(dims):
            try:
                out.append(parse_dim(d))
            except ValueError as e:
                self.error("bad-dim", str(e), f"{ptr}/{k}", name)
                return None
        return tuple(out)

    def array(self, value, dtype: str, ptr: str, name: str) -> np.ndarray | None:
        try:
            value = nonfinite(value)
            arr = np.array(value, dtype=np.float64 if is_float_like(dtype) else object)
            if arr.dtype == object:
                flat = arr.ravel()
                if dtype == "bool" and not all(isinstance(v, bool) for v in flat):
                    raise ValueError("expected true/false values")
                if dtype != "bool" and not all(isinstance(v, int) or (isinstance(v, float) and v.is_integer())
                                               for v in flat):
                    raise ValueError(f"expected integers for dtype {dtype}")
            out, why = fitted(name, arr, dtype)  # no silent wrap-around or overflow to inf (gtool/datafit.py)
            if why is not None:
                raise ValueError(why)
            return out
        except (ValueError, TypeError, OverflowError) as e:
            why = str(e)
            if isinstance(e, OverflowError):
                why = f"a number does not fit in {dtype}"
            elif "inhomogeneous" in why or "sequence" in why:
                why = "the rows have different lengths (or mix numbers and lists)"
            self.error("bad-value", f"cannot read the value as a {dtype} array: {why}", ptr, name)
            return None

    # 3. nodes ----------------------------------------------------------------------------------
    def nodes(self, nodes: dict, consts: dict) -> dict[str, Node]:
        out: dict[str, Node] = {}
        for name, spec in nodes.items():
            ptr = f"/nodes/{name}"
            loc = self.loc(ptr)
            if isinstance(spec, (int, float)) and not isinstance(spec, bool):
                spec = repr(spec)
            if isinstance(spec, str):
                try:
                    parsed, literals = parse_expression(spec, name)
                except GraphError as e:
                    d = e.diagnostic
                    self.error(d.code, d.message, ptr, name)
                    continue
                huge = next((c.value for c in literals if _literal_dtype(c.value) == "int64"
                             and not -2**63 <= c.value < 2**63), None)
                if huge is not None:
                    self.error("bad-expression", f"the integer {str(huge)[:20]}{'...' * (len(str(huge)) > 20)} is too "
                               "large for int64; write it as a float (e.g. 1e20)", ptr, name)
                    continue
                clash = next((n for n in [c.name for c in literals] + [p.name for p in parsed[:-1]]
                              if n in self.seen), None)
                if clash is not None:
                    self.error("duplicate-name", f"the expression makes the node '{clash}', but that name is "
                               f"declared in {self.seen[clash]}", ptr, name, hint=f"rename '{clash}'")
                    continue
                for c in literals:  # unused when the expression fails: harmless, never reported
                    consts[c.name] = Tensor(c.name, "constant", TensorType((), _literal_dtype(c.value), True),
                                            np.array(c.value, dtype=_literal_dtype(c.value)), loc=loc)
                self.shorthand.add(name)
                made = [Node(p.name, p.op, tuple(p.inputs), dict(p.attrs), loc=loc, owner=name if p.name != name else None)
                        for p in parsed]
                # the first bad part is reported; the rest of the expression is dropped with
                # it, so its anonymous intermediates do not also show up as unknown names
                if all(self.check_node(node, ptr) for node in made):
                    out.update((node.name, node) for node in made)
            else:
                shape = None
                if spec.get("shape") is not None:
                    shape = self.shape(spec["shape"], ptr + "/shape", name)
                    if shape is None:
                        continue
                node = Node(name, spec["op"], tuple(spec.get("inputs") or ()), dict(spec.get("attrs") or {}),
                            shape, spec.get("doc"), loc)
                if self.check_node(node, ptr):
                    out[name] = node
        return out

    def check_node(self, node: Node, ptr: str) -> bool:
        op = get_op(node.op)
        owner = node.owner or node.name
        explicit = owner not in self.shorthand  # only the explicit form has `op:` and `attrs:` entries to point at
        if op is None:
            near = did_you_mean(node.op, REGISTRY)
            hint = f"did you mean '{near}'?" if near else "if it comes from a plugin, load it with --plugin FILE.py"
            self.error("unknown-op", f"unknown op '{shown(node.op)}'", ptr + ("/op" if explicit else ""), owner,
                       hint=hint + ("" if not near else " (or load the plugin that defines it with --plugin)"))
            return False
        n = len(node.inputs)
        if (op.arity is None and n < 1) or (op.arity is not None and n != op.arity):
            want = "at least 1" if op.arity is None else str(op.arity)
            hint = None
            if node.op in ("max", "min") and n == 2:  # numpy's max(a, b) habit
                hint = f"{node.op} reduces one input; the elementwise {node.op} of two is {node.op}imum(a, b)"
            elif op.arity is not None and n > op.arity and op.attrs:
                hint = f"attrs are passed by name: {node.op}(x, {next(iter(op.attrs))}=...)"
            self.error("arity", f"{node.op} takes {want} input(s), got {n}", ptr, owner, op=node.op, hint=hint)
            return False
        for key, value in node.attrs.items():
            spec = op.attrs.get(key)
            if spec is None:
                near = _ATTR_ALIASES.get(key) if _ATTR_ALIASES.get(key) in op.attrs else did_you_mean(key, op.attrs)
                allowed = ", ".join(op.attrs) or "none"
                self.error("bad-attr", f"{node.op} has no attr '{shown(key)}' (its attrs: {allowed})",
                           ptr + (f"/attrs/{key}" if explicit else ""), owner, op=node.op,
                           hint=f"did you mean '{near}'?" if near else None)
                return False
            try:
                check_attr(node.op, key, spec, value)
            except AttrError as e:
                code = "bad-dim" if spec.kind in ("shape", "dim", "index") and isinstance(value, (list, int, str)) \
                    else "bad-attr"
                self.error(code, str(e), ptr + (f"/attrs/{key}" if explicit else ""), owner, op=node.op)
                return False
        for key, spec in op.attrs.items():
            if spec.required and node.attrs.get(key) is None:
                self.error("bad-attr", f"{node.op} needs the attr '{key}' ({spec.doc})", ptr, owner, op=node.op)
                return False
        return True

    # 4. the whole graph ------------------------------------------------------------------
    def build(self) -> Graph | None:
        data = self.data
        if not self.check_schema():
            return None
        tensors: dict[str, Tensor] = {}
        seen: dict[str, str] = self.seen
        for section in SECTIONS:
            for name, spec in (data.get(section) or {}).items():
                if self.name_ok(name, f"/{section}/{name}", seen, section):
                    t = self.tensor(section, name, spec)
                    if t is not None:
                        tensors[name] = t
        user_nodes = data.get("nodes") or {}
        for name in user_nodes:
            self.name_ok(name, f"/nodes/{name}", seen, "nodes")
        consts: dict[str, Tensor] = {}
        nodes = self.nodes({k: v for k, v in user_nodes.items() if seen.get(k) == "nodes"}, consts)
        tensors.update(consts)
        known = set(tensors) | set(nodes)
        # every declared name, including those whose entry failed (already reported): a
        # reference to a broken tensor is not also an unknown name
        all_names = set(seen) | set(user_nodes)
        for node in nodes.values():
            for k, i in enumerate(node.inputs):
                if i not in known and i not in all_names:
                    owner = node.owner or node.name
                    ptr = f"/nodes/{owner}" + ("" if owner in self.shorthand else f"/inputs/{k}")
                    self.unknown(i, ptr, node.owner or node.name, all_names)
        outputs = tuple(data.get("outputs") or ())
        for k, o in enumerate(outputs):
            if o not in all_names:
                self.unknown(o, f"/outputs/{k}", None, all_names)
        loss = data.get("loss")
        if loss is not None and loss not in all_names:
            self.unknown(loss, "/loss", None, all_names)
        order, cycle = (list(nodes), None) if _in_order(nodes, tensors) else toposort(nodes, set(tensors))
        if cycle:
            first = cycle[0]
            self.error("cycle", "the nodes form a cycle: " + " -> ".join(cycle), f"/nodes/{nodes[first].owner or first}",
                       nodes[first].owner or first)
        if any(d.severity == "error" for d in self.diags):
            return None
        graph = Graph(tensors=tensors, nodes={n: nodes[n] for n in order}, outputs=outputs, loss=loss,
                      name=data.get("name"), doc=data.get("doc"), dims=dict(data.get("dims") or {}), path=self.path)
        # where the top-level keys are (for whole-graph checks such as the scalar loss)
        graph.cache["marks"] = {p: self.marks[p] for p in (f"/{k}" for k in data) if p in self.marks}
        return graph

    def name_ok(self, name: str, ptr: str, seen: dict, section: str) -> bool:
        if name.startswith("__") and not GENERATED.fullmatch(name):
            self.error("reserved-name", f"'{shown(name)}': names starting with '__' are reserved for names gtool "
                       "generates", ptr, name, hint=f"rename it, e.g. '{name.lstrip('_') or 'x'}'")
            return False
        if name in seen:
            self.error("duplicate-name", f"'{shown(name)}' is declared in {seen[name]} and again in {section}", ptr,
                       name)
            return False
        seen[name] = section
        return True

    def unknown(self, name, ptr: str, node: str | None, names) -> None:
        if not isinstance(name, str):  # e.g. `outputs: [[x]]`, past a schema that allows it
            name = str(name)
        folded = unicodedata.normalize("NFKC", name)
        if folded != name and folded in names:  # `ｘ` for `x`: refused, never the same name
            hint = f"'{shown(name)}' is written with other characters than '{folded}'; names are ASCII"
        else:
            near = did_you_mean(name, names)
            hint = f"did you mean '{near}'?" if near else "declare it under inputs, params, constants or nodes"
        self.error("unknown-name", f"unknown name '{shown(name)}'", ptr, node, hint=hint)


def shown(text: str) -> str:
    """`text` for a message: control, format and unprintable characters (ANSI escapes, a
    newline, a noncharacter) written as Python escapes, so a hostile name cannot act on the
    terminal or break a one-line report; printable text, Unicode included, unchanged."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _in_order(nodes: dict[str, Node], tensors: dict) -> bool:
    """Whether file order is already topological (the usual case), which is then exactly the
    order `toposort` would give (it keeps file order where it can): one pass, no heap."""
    done = set(tensors)
    for name, node in nodes.items():
        for i in node.inputs:
            if i not in done and i in nodes:
                return False
        done.add(name)
    return True


def _escape(key) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _pointer(path) -> str:
    return "".join("/" + _escape(p) for p in path)


_ATTR_ALIASES = {"dim": "axis", "axes": "axis", "keepdim": "keepdims"}  # the PyTorch and ONNX spellings


def _describe(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    return "a list" if isinstance(value, list) else "a mapping"


def _fits(actual: tuple, declared: tuple) -> bool:
    if len(actual) != len(declared):
        return False
    return all(not d.is_const or d.value == a for a, d in zip(actual, declared))


def _valid_init(init) -> bool:
    if init in ("zeros", "ones"):
        return True
    if isinstance(init, dict) and len(init) == 1:
        (k, v), = init.items()
        keys = {"normal": {"mean", "std"}, "uniform": {"low", "high"}, "glorot": set()}.get(k)
        return keys is not None and isinstance(v, dict) and set(v) <= keys and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v.values())
    return False


def nonfinite(value):
    """Numbers as files write them: the strings "nan", "inf", "-inf" (JSON has no NaN) -> floats."""
    if isinstance(value, list):
        return [nonfinite(v) for v in value]
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return value


def _literal_dtype(v) -> str:
    if isinstance(v, bool):
        return "bool"
    return "int64" if isinstance(v, int) else "float64"  # floats, and "nan"/"inf" strings in JSON


def build_graph(data: dict, marks: dict, path: str) -> tuple[Graph | None, list[Diagnostic]]:
    """Build a Graph from loaded data; returns (graph or None, diagnostics)."""
    b = Builder(data, marks, path)
    return b.build(), b.diags

