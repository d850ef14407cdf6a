"""From a loaded document (plain data + source marks) to a Graph, with every problem located.

Order of checks: JSON Schema (structure) -> tensors (dims, dtypes, values, init) -> nodes
(shorthand parsing, ops, arity, attrs) -> names (unknown, duplicate, reserved) -> cycles.
Problems are collected, not raised one at a time, so a user sees all of them at once.
"""

from __future__ import annotations

import re

import numpy as np

from ..dims import Dim, parse_dim
from ..errors import Diagnostic, GraphError, did_you_mean
from ..ir import Graph, Loc, Node, Tensor, TensorType, toposort
from ..ops.registry import REGISTRY, AttrError, check_attr, get_op
from .expr import parse_expression
from .schema import SCHEMA_PATH, leaves, schema, schema_errors  # noqa: F401 (re-exported)

# The names gtool generates: shorthand intermediates (__<owner>_<n>) and autodiff/rewrite names.
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
            if prefix == ["gtool"] or (not prefix and list(e.absolute_path) == ["gtool"]):
                continue  # reported once, below
            path = prefix + list(e.absolute_path)
            if e.validator == "anyOf" and len(path) == 2 and path[0] in SECTIONS:
                kind = KIND[path[0]]
                need = "a value, or a shape and an init" if kind == "param" else "a shape (or a value)"
                found.append(self._diag("missing-key", f"{kind} '{path[1]}' needs {need}", _pointer(path), path[1]))
                continue
            for leaf in leaves(e):
                found.append(self.schema_diag(prefix + list(leaf.absolute_path), leaf))
        version = self.data.get("gtool")
        if "gtool" in self.data and (type(version) is not int or version != 1):
            found.append(self._diag("bad-version", f"unsupported format version {version!r}: this gtool reads "
                                    "version 1 (the integer 1)", "/gtool"))
        found.sort(key=lambda d: (d.line or 0, d.column or 0))
        self.diags.extend(found)
        return not found

    def schema_diag(self, path: list, e) -> Diagnostic:
        """One schema violation as a located diagnostic with the most specific code we know."""
        pointer = _pointer(path)
        v = e.validator
        node = path[1] if len(path) >= 2 and path[0] in (*SECTIONS, "nodes") else None
        code, message = _SCHEMA_CODES.get(v, "schema"), e.message
        if v == "additionalProperties":
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            if extra:
                pointer += "/" + _escape(extra[0])
                allowed = ", ".join(e.schema.get("properties", {}))
                message = f"unknown key '{extra[0]}' (allowed here: {allowed})"
        elif v == "required":
            message = f"missing required key: {e.message.split(' is a required')[0]}"
        elif "propertyNames" in e.absolute_schema_path:
            code = "bad-name"
            if isinstance(e.instance, str):
                pointer += "/" + _escape(e.instance)
                node = node or e.instance
                message = f"'{e.instance}' is not a valid name: use letters, digits and _, not starting with a digit"
        elif len(path) == 4 and path[2] == "shape" or len(path) == 2 and path[0] == "dims":
            code = "bad-dim"
            what = f"dim '{path[1]}'" if path[0] == "dims" else "a dim"
            message = f"{what} must be a positive integer" + (", a dim name or a dim expression" if path[0] != "dims"
                                                               else "") + f", not {e.instance!r}"
        elif len(path) >= 3 and path[0] == "params" and path[2] == "init":
            code = "bad-init"
            if len(path) == 3:
                message = (f"unknown init {e.instance!r}: use zeros, ones, {{normal: {{mean, std}}}}, "
                           "{uniform: {low, high}} or {glorot: {}}")
            else:
                message = f"init {'.'.join(map(str, path[3:]))}: {e.message}"
        elif v == "type" and path:
            want = e.schema.get("type")
            want = " or ".join(_JSON_TYPES.get(t, t) for t in ([want] if isinstance(want, str) else want))
            message = f"'{path[-1]}' must be {want}, not {_describe(e.instance)}"
        return self._diag(code, message, pointer, node)

    def _diag(self, code: str, message: str, pointer: str, node: str | None = None) -> Diagnostic:
        return Diagnostic(code, message, node=node, **self.loc(pointer).where())

    # 2. tensors --------------------------------------------------------------------------
    def tensor(self, section: str, name: str, spec) -> Tensor | None:
        ptr = f"/{section}/{name}"
        kind = KIND[section]
        if isinstance(spec, list) and section != "constants":
            spec = {"shape": spec}
        elif not isinstance(spec, dict):
            spec = {"value": spec}
        dtype = spec.get("dtype") or "float64"
        weak = section == "constants" and "dtype" not in spec and np.ndim(spec.get("value")) == 0
        value = None
        if "value" in spec:
            value = self.array(spec["value"], dtype, ptr + "/value", name)
            if value is None:
                return None
        if "shape" in spec:
            shape = self.shape(spec["shape"], ptr, name)
            if shape is None:
                return None
            if value is not None and not _fits(value.shape, shape):
                self.error("bad-value", f"value has shape {list(value.shape)} but the declared shape is "
                           f"[{', '.join(map(str, shape))}]", ptr + "/value", name)
                return None
        elif value is not None:
            if 0 in value.shape:
                self.error("bad-value", f"value has shape {list(value.shape)}: an empty axis (every dim is at least 1)",
                           ptr + "/value", name)
                return None
            shape = tuple(Dim.const(d) for d in value.shape)
        else:
            self.error("missing-key", f"{kind} '{name}' needs a shape (or a value)", ptr, name)
            return None
        rng = spec.get("range")
        if rng is not None and not (len(rng) == 2 and float(rng[0]) <= float(rng[1])):
            self.error("bad-value", f"range must be [lo, hi] with lo <= hi, got {rng}", ptr + "/range", name)
            return None
        init = spec.get("init")
        if init is not None and not _valid_init(init):
            self.error("bad-init", f"unknown init {init!r}: use zeros, ones, {{normal: {{mean, std}}}}, "
                       "{uniform: {low, high}} or {glorot: {}}", ptr + "/init", name)
            return None
        if kind != "input" and value is None and init is None:
            if kind == "constant":
                self.error("missing-key", f"constant '{name}' needs a value", ptr, name)
                return None
        return Tensor(name, kind, TensorType(shape, dtype, weak), value, init,
                      tuple(map(float, rng)) if rng is not None else None, spec.get("doc"), self.loc(ptr))

    def shape(self, dims: list, ptr: str, name: str) -> tuple[Dim, ...] | None:
        """A declared shape, or None after reporting the first bad dim (at that dim)."""
        out = []
        for k, d in enumerate(dims):
            try:
                out.append(parse_dim(d))
            except ValueError as e:
                self.error("bad-dim", str(e), f"{ptr}/shape/{k}", name)
                return None
        return tuple(out)

    def array(self, value, dtype: str, ptr: str, name: str) -> np.ndarray | None:
        try:
            value = _nonfinite(value)
            arr = np.array(value, dtype=np.float64 if dtype.startswith("float") else object)
            if arr.dtype == object:
                flat = arr.ravel()
                if dtype == "bool" and not all(isinstance(v, bool) for v in flat):
                    raise ValueError("expected true/false values")
                if dtype != "bool" and not all(isinstance(v, int) or (isinstance(v, float) and v.is_integer())
                                               for v in flat):
                    raise ValueError(f"expected integers for dtype {dtype}")
            return np.array(arr, dtype=dtype)
        except (ValueError, TypeError) as e:
            self.error("bad-value", f"cannot read the value as a {dtype} array: {e}", ptr, name)
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
                clash = next((n for n in [c.name for c in literals] + [p.name for p in parsed[:-1]]
                              if n in self.seen), None)
                if clash is not None:
                    self.error("duplicate-name", f"the expression makes the node '{clash}', but that name is "
                               f"declared in {self.seen[clash]}", ptr, name, hint=f"rename '{clash}'")
                    continue
                for c in literals:
                    consts[c.name] = Tensor(c.name, "constant", TensorType((), _literal_dtype(c.value), True),
                                            np.array(c.value, dtype=_literal_dtype(c.value)), loc=loc)
                for p in parsed:
                    node = Node(p.name, p.op, tuple(p.inputs), dict(p.attrs), loc=loc,
                                owner=name if p.name != name else None)
                    if self.check_node(node, ptr):
                        out[p.name] = node
            else:
                shape = None
                if spec.get("shape") is not None:
                    shape = self.shape(spec["shape"], ptr, name)
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
        if op is None:
            near = did_you_mean(node.op, REGISTRY)
            hint = f"did you mean '{near}'?" if near else "if it comes from a plugin, load it with --plugin FILE.py"
            self.error("unknown-op", f"unknown op '{node.op}'", ptr + ("/op" if not node.owner else ""), owner,
                       hint=hint + ("" if not near else " (or load the plugin that defines it with --plugin)"))
            return False
        n = len(node.inputs)
        if (op.arity is None and n < 1) or (op.arity is not None and n != op.arity):
            want = "at least 1" if op.arity is None else str(op.arity)
            self.error("arity", f"{node.op} takes {want} input(s), got {n}", ptr, owner, op=node.op)
            return False
        for key, value in node.attrs.items():
            spec = op.attrs.get(key)
            if spec is None:
                near = did_you_mean(key, op.attrs)
                allowed = ", ".join(op.attrs) or "none"
                self.error("bad-attr", f"{node.op} has no attr '{key}' (its attrs: {allowed})",
                           ptr + (f"/attrs/{key}" if not node.owner else ""), owner, op=node.op,
                           hint=f"did you mean '{near}'?" if near else None)
                return False
            try:
                check_attr(node.op, key, spec, value)
            except AttrError as e:
                code = "bad-dim" if spec.kind in ("shape", "dim", "index") and isinstance(value, (list, int, str)) \
                    else "bad-attr"
                self.error(code, str(e), ptr + (f"/attrs/{key}" if not node.owner else ""), owner, op=node.op)
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
                    ptr = f"/nodes/{node.owner or node.name}" + ("" if node.owner else f"/inputs/{k}")
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
            self.error("reserved-name", f"'{name}': names starting with '__' are reserved for names gtool "
                       "generates", ptr, name, hint=f"rename it, e.g. '{name.lstrip('_') or 'x'}'")
            return False
        if name in seen:
            self.error("duplicate-name", f"'{name}' is declared in {seen[name]} and again in {section}", ptr, name)
            return False
        seen[name] = section
        return True

    def unknown(self, name: str, ptr: str, node: str | None, names) -> None:
        near = did_you_mean(name, names)
        self.error("unknown-name", f"unknown name '{name}'", ptr, node,
                   hint=f"did you mean '{near}'?" if near else "declare it under inputs, params, constants or nodes")


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


def _nonfinite(value):
    if isinstance(value, list):
        return [_nonfinite(v) for v in value]
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return value


def _literal_dtype(v) -> str:
    if isinstance(v, bool):
        return "bool"
    return "int64" if isinstance(v, int) else "float64"


def build_graph(data: dict, marks: dict, path: str) -> tuple[Graph | None, list[Diagnostic]]:
    """Build a Graph from loaded data; returns (graph or None, diagnostics)."""
    b = Builder(data, marks, path)
    return b.build(), b.diags

