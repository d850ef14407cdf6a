"""Structural validation with the published JSON Schema, fast enough for 100k-node files.

Every part of a document is checked by the `jsonschema` library against the schema that
editors use; nothing structural is checked by hand. A naive pass costs ~70 us per node
(~10 s for 100k nodes), so the entries of the name-keyed sections (`dims`, `inputs`,
`params`, `constants`, `nodes`) are grouped by their *abstract shape* and each shape is
validated once, through a representative.

The abstract shape keeps everything this schema can tell apart and forgets the rest:
mapping keys, JSON types, strings that the schema names (`float64`, `zeros`, `inf`, ...),
whether any other string is empty, a valid name or neither, the class of a number with
respect to the only bounds the schema has (minimum 0 and 1) and to `integer`, and list
lengths up to the largest minItems/maxItems (a longer list keeps one item of each kind, so
an inline 784 x 128 weight matrix is checked as a few rows of a few numbers).
Two entries with one shape are valid or invalid together, so when a representative passes,
its whole group passes; when it fails, each entry of the group is validated on its own, for
exact messages and positions. `tests/test_validate.py` checks that the schema still uses
only the keywords this abstraction accounts for.
"""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "gtool-graph-v1.schema.json"
#: The name-keyed sections whose entries are grouped by shape.
KEYED_SECTIONS = ("dims", "inputs", "params", "constants", "nodes")
#: The schema keywords the abstraction accounts for (anything else must be added consciously).
HANDLED_KEYWORDS = frozenset((
    "$schema", "$id", "$defs", "$ref", "title", "description", "type", "properties", "required",
    "additionalProperties", "propertyNames", "items", "minItems", "maxItems", "oneOf", "anyOf",
    "enum", "const", "pattern", "minLength", "minimum",
))


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    """The published JSON Schema (shipped inside the package, identical to schemas/)."""
    return json.loads(SCHEMA_PATH.read_text())


@functools.lru_cache(maxsize=1)
def validator():
    """The whole-document validator."""
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


@functools.cache
def section_validator(section: str):
    """A validator for one top-level section on its own (it keeps the shared $defs)."""
    import jsonschema

    s = schema()
    return jsonschema.Draft202012Validator({"$defs": s["$defs"], **s["properties"][section]})


@functools.lru_cache(maxsize=1)
def _name_re() -> re.Pattern:
    return re.compile(schema()["$defs"]["name"]["pattern"])


@functools.lru_cache(maxsize=1)
def _named_strings() -> frozenset:
    """Every string the schema mentions in an enum or const: these keep their identity."""
    out: set[str] = set()
    stack: list = [schema()]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "enum":
                    out.update(e for e in v if isinstance(e, str))
                elif k == "const" and isinstance(v, str):
                    out.add(v)
                else:
                    stack.append(v)
        elif isinstance(x, list):
            stack.extend(x)
    return frozenset(out)


@functools.lru_cache(maxsize=1)
def _long_list() -> int:
    """A length above every minItems/maxItems of the schema: lists longer than it differ, to
    the schema, only in the kinds of items they hold (there is no uniqueItems or contains)."""
    out = 0
    stack: list = [schema()]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            out = max([out] + [v for k, v in x.items() if k in ("minItems", "maxItems") and isinstance(v, int)])
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return out + 1


# abstract shapes -----------------------------------------------------------------------
# A shape is a code: a str for a scalar class, or a tuple ("[", item...) / ("{", key, code, ...).
# Scalar codes map to a representative value; "=" + s stands for the named string s.
_NAN = float("nan")
_REPS: dict[str, object] = {
    "N": None, "T": True, "F": False,
    "s": "", "sa": "a", "s-": "-",
    "i-": -1, "i0": 0, "i+": 1,
    "f-": -1.0, "f0": 0.0, "f+": 1.0,  # integral floats (JSON Schema counts them as integers)
    "g-": -0.5, "g<": 0.5, "g>": 1.5,  # non-integral: below 0, between 0 and 1, above 1
    "fN": _NAN, "fI": math.inf, "fJ": -math.inf,
}


def shape_code(v, named: frozenset, name_match) -> object:
    """The abstract shape of a plain-data value (see the module doc)."""
    t = type(v)
    if t is str:
        if v in named:
            return "=" + v
        if not v:
            return "s"
        return "sa" if name_match(v) is not None else "s-"
    if t is dict:
        code: list = ["{"]
        for k, x in v.items():
            code.append(k)
            code.append(shape_code(x, named, name_match))
        return tuple(code)
    if t is list:
        codes = [shape_code(x, named, name_match) for x in v]
        long = _long_list()
        if len(codes) > long:  # every length above `long` is alike: keep each kind of item once
            codes = list(dict.fromkeys(codes))
            codes += codes[:1] * (long + 1 - len(codes))
        return ("[", *codes)
    if t is int:
        return "i+" if v > 0 else ("i0" if v == 0 else "i-")
    if t is float:
        if v != v:
            return "fN"
        if v in (math.inf, -math.inf):
            return "fI" if v > 0 else "fJ"
        if v.is_integer():
            return "f+" if v > 0 else ("f0" if v == 0 else "f-")
        return "g>" if v > 1 else ("g<" if v > 0 else "g-")
    if t is bool:
        return "T" if v else "F"
    if v is None:
        return "N"
    raise TypeError(f"not plain data: {t.__name__}")


def representative(code) -> object:
    """A value with the given abstract shape."""
    if type(code) is tuple:
        if code[0] == "[":
            return [representative(c) for c in code[1:]]
        return {code[i]: representative(code[i + 1]) for i in range(1, len(code), 2)}
    if code[0] == "=":
        return code[1:]
    return _REPS[code]


# validation --------------------------------------------------------------------------------


def schema_errors(data: dict) -> list[tuple[list, object]]:
    """Every schema violation in `data`, as (prefix, ValidationError): the error's path in the
    document is `prefix + list(error.absolute_path)` (the prefix is the section name for
    entries validated one by one).

    Same errors as validating the whole document at once (tests compare them), at a small
    fraction of the cost for large graphs.
    """
    skeleton = dict(data)
    keyed = [s for s in KEYED_SECTIONS if isinstance(data.get(s), dict)]
    for s in keyed:
        skeleton[s] = {}
    out: list[tuple[list, object]] = [([], e) for e in validator().iter_errors(skeleton)]
    named = _named_strings()
    name_match = _name_re().fullmatch
    for s in keyed:
        entries = data[s]
        groups: dict[tuple, list[str]] = {}
        for name, spec in entries.items():
            key = ("n" if name_match(name) is not None else name, shape_code(spec, named, name_match))
            group = groups.get(key)
            if group is None:
                groups[key] = [name]
            else:
                group.append(name)
        check = section_validator(s)
        for (rep_name, code), names in groups.items():
            if check.is_valid({rep_name: representative(code)}):
                continue
            for name in names:
                out.extend(([s], e) for e in check.iter_errors({name: entries[name]}))
    return out


def full_schema_errors(data: dict) -> list[tuple[list, object]]:
    """The reference: the whole document through one jsonschema pass (slow; for tests)."""
    return [([], e) for e in validator().iter_errors(data)]


def leaves(error) -> list:
    """The errors worth showing for a oneOf/anyOf failure: those of the branch meant.

    A branch that fails only because the value has another type (or is not one of its enum
    values) was not meant; among the others, the one whose errors reach deepest into the
    value wins. Without such a branch the combined error itself is shown.
    """
    if not error.context:
        return [error]
    branches: dict = {}
    for c in error.context:
        branches.setdefault(c.relative_schema_path[0], []).append(c)
    meant = [errs for errs in branches.values()
             if not all(c.validator in ("type", "enum", "const") and not c.relative_path for c in errs)]
    if not meant:
        return [error]
    best = max(meant, key=lambda errs: (max(len(c.relative_path) for c in errs), -len(errs)))
    out = []
    for c in best:
        out.extend(leaves(c))
    return out
