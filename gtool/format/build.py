"""From a loaded document (plain data + source marks) to a Graph, with every problem located.

Order of checks: JSON Schema (structure) -> tensors (dims, dtypes, values, init) -> nodes
(shorthand parsing, ops, arity, attrs) -> names (unknown, duplicate, reserved) -> cycles.
Problems are collected, not raised one at a time, so a user sees all of them at once.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np

from ..dims import parse_dim
from ..errors import Diagnostic, GraphError, did_you_mean
from ..ir import Graph, Loc, Node, Tensor, TensorType, toposort
from ..ops.registry import REGISTRY, AttrError, check_attr, get_op
from .expr import parse_expression

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "gtool-graph-v1.schema.json"
# The names gtool generates: shorthand intermediates (__<owner>_<n>) and autodiff/rewrite names.
GENERATED = re.compile(r"__(grad|tan|bwd|c|rw)_\w+|__[A-Za-z_]\w*_\d+")
SECTIONS = ("inputs", "params", "constants")
KIND = {"inputs": "input", "params": "param", "constants": "constant"}


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    """The published JSON Schema (shipped inside the package, identical to schemas/)."""
    return json.loads(SCHEMA_PATH.read_text())


@functools.lru_cache(maxsize=1)
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


_SCHEMA_CODES = {"additionalProperties": "unknown-key", "required": "missing-key", "type": "bad-type"}


class Builder:
    """Collects diagnostics while turning one document into a Graph."""

    def __init__(self, data: dict, marks: dict, path: str) -> None:
        self.data = data
        self.marks = marks
        self.path = path
        self.diags: list[Diagnostic] = []

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
        errors = sorted(_validator().iter_errors(self.data), key=lambda e: list(map(str, e.absolute_path)))
        for e in errors:
            e = _most_specific(e)
            pointer = "".join(f"/{p}" for p in e.absolute_path)
            code = _SCHEMA_CODES.get(e.validator, "schema")
            message = e.message
            if e.validator == "additionalProperties":
                extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
                if extra:
                    pointer += f"/{extra[0]}"
                    allowed = ", ".join(e.schema.get("properties", {}))
                    message = f"unknown key '{extra[0]}' (allowed here: {allowed})"
            elif e.validator == "required":
                message = f"missing required key: {e.message.split(' is a required')[0]}"
            elif list(e.absolute_path) == ["gtool"]:
                code, message = "bad-version", f"unsupported format version {e.instance!r}: this gtool reads version 1"
            elif "propertyNames" in e.schema_path:
                code = "bad-name"
                name = e.instance if isinstance(e.instance, str) else None
                if name is not None:
                    pointer += f"/{name}"
                    message = f"'{name}' is not a valid name: use letters, digits and _, not starting with a digit"
            self.error(code, message, pointer)
        return not errors

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
            try:
                shape = tuple(parse_dim(d) for d in spec["shape"])
            except ValueError as e:
                self.error("bad-dim", str(e), ptr + "/shape", name)
                return None
            if value is not None and not _fits(value.shape, shape):
                self.error("bad-value", f"value has shape {list(value.shape)} but the declared shape is "
                           f"[{', '.join(map(str, shape))}]", ptr + "/value", name)
                return None
        elif value is not None:
            shape = tuple(parse_dim(int(d)) for d in value.shape)
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
                    try:
                        shape = tuple(parse_dim(d) for d in spec["shape"])
                    except ValueError as e:
                        self.error("bad-dim", str(e), ptr + "/shape", name)
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
                self.error("bad-attr", str(e), ptr + (f"/attrs/{key}" if not node.owner else ""), owner, op=node.op)
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
        seen: dict[str, str] = {}
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
        all_names = set(tensors) | set(user_nodes)
        for node in nodes.values():
            for k, i in enumerate(node.inputs):
                if i not in known and i not in user_nodes:
                    ptr = f"/nodes/{node.owner or node.name}" + ("" if node.owner else f"/inputs/{k}")
                    self.unknown(i, ptr, node.owner or node.name, all_names)
        outputs = tuple(data.get("outputs") or ())
        for k, o in enumerate(outputs):
            if o not in all_names:
                self.unknown(o, f"/outputs/{k}", None, all_names)
        loss = data.get("loss")
        if loss is not None and loss not in all_names:
            self.unknown(loss, "/loss", None, all_names)
        order, cycle = toposort(nodes, set(tensors))
        if cycle:
            first = cycle[0]
            self.error("cycle", "the nodes form a cycle: " + " -> ".join(cycle), f"/nodes/{nodes[first].owner or first}",
                       nodes[first].owner or first)
        if any(d.severity == "error" for d in self.diags):
            return None
        return Graph(tensors=tensors, nodes={n: nodes[n] for n in order}, outputs=outputs, loss=loss,
                     name=data.get("name"), doc=data.get("doc"), dims=dict(data.get("dims") or {}), path=self.path)

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


def _most_specific(error):
    """For oneOf/anyOf failures, the sub-error of the branch that matches the value's type."""
    from jsonschema.exceptions import best_match

    while error.context:
        typed = [c for c in error.context if c.validator != "type"]
        if not typed:
            break
        error = best_match(typed)
    return error


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

