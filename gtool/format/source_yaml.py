"""YAML graph documents: PyYAML's event stream composed into plain data and a source map.

Why not `yaml.safe_load`: it silently keeps the last of two duplicate keys, expands aliases
(an alias bomb eats all memory before anyone can object), resolves YAML 1.1 scalars (`on` ->
True, `1e-12` -> a string) and throws positions away. So a small iterative composer here
reads the event stream, refuses anchors, aliases, merge keys, unknown tags and duplicate
keys at their own event, and resolves plain scalars by the YAML 1.2 core schema.
"""

from __future__ import annotations

import math
import re

import yaml

from gtool.errors import GraphError

from .source_util import MAX_DEPTH, REDO, SURROGATE, error_in, escape

__all__ = ["load_yaml", "load_yaml_plain"]

_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT = (_TAG + t for t in ("str", "null", "bool", "int", "float"))
_MAP, _SEQ, _MERGE = _TAG + "map", _TAG + "seq", _TAG + "merge"
_SCALAR_TAGS = frozenset(("!", _STR, _NULL, _BOOL, _INT, _FLOAT))
_MAP_TAGS = frozenset((None, "!", _MAP))
_SEQ_TAGS = frozenset((None, "!", _SEQ))

#: YAML 1.2 core schema: the plain scalars that are not strings and not numbers.
_NULLS = ("", "~", "null", "Null", "NULL")
_SPECIAL: dict[str, object] = dict.fromkeys(_NULLS)
_SPECIAL.update({"true": True, "True": True, "TRUE": True})
_SPECIAL.update({"false": False, "False": False, "FALSE": False})
#: A plain scalar can only be a number if it starts with one of these.
_NUMSTART = frozenset("0123456789+-.")
#: Core-schema numbers; groups: 1 decimal int, 2 octal, 3 hex, 4 float, 5 inf sign, 6 nan.
_NUM = re.compile(
    r"([-+]?[0-9]+)|0o([0-7]+)|0x([0-9a-fA-F]+)"
    r"|([-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?)"
    r"|([-+]?)\.(?:inf|Inf|INF)|(\.(?:nan|NaN|NAN))"
)


def load_yaml(text: str, path: str, loader) -> tuple[object, dict[str, tuple[int, int]], bool]:
    """(data, marks, empty) of a YAML document; every parser complaint becomes a located
    `yaml-syntax` GraphError. `loader` is libyaml's CSafeLoader or the pure-Python one."""
    marks: dict[str, tuple[int, int]] = {}
    try:
        root, empty = _compose(text, path, marks, loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        if e.context and e.problem:
            problem = f"{problem} ({e.context})"
        where = {} if mark is None else {"line": mark.line + 1, "column": mark.column + 1}
        raise GraphError("yaml-syntax", problem, path=path, **where) from None
    except yaml.reader.ReaderError as e:
        char = f" #x{e.character:04x}" if isinstance(e.character, int) else ""
        offset = min(e.position, len(text))
        raise error_in(text, offset, "yaml-syntax", f"unacceptable character{char}: {e.reason}", path) from None
    except yaml.YAMLError as e:
        raise GraphError("yaml-syntax", str(e), path=path) from None
    except UnicodeEncodeError as e:  # a str with lone surrogates
        raise error_in(text, e.start, "yaml-syntax", "the text is not valid Unicode", path) from None
    if _SURROGATE_ESCAPE.search(text):
        _refuse_surrogates(root, marks, path)
    return root, marks, empty


#: An escape that may decode to a lone surrogate: libyaml refuses those, the pure-Python
#: parser lets them through (`"\ud800"`), so then the strings are checked.
_SURROGATE_ESCAPE = re.compile(r"\\(?:u|U0000)[dD][89a-fA-F]")


def _refuse_surrogates(root: object, marks: dict, path: str) -> None:
    """Raise at the first key or string holding a lone surrogate (rare: only after an escape)."""
    stack = [(root, "")]
    while stack:
        value, ptr = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for k, v in items:
            child = f"{ptr}/{escape(str(k))}"
            bad = SURROGATE.search(k) if isinstance(k, str) else None
            bad = bad or (SURROGATE.search(v) if isinstance(v, str) else None)
            if bad is not None:
                line, column = marks.get(child, (None, None))
                raise GraphError("yaml-syntax", f"lone surrogate \\u{ord(bad.group()):04x} is not a Unicode "
                                 "character; write the character itself", path=path, line=line, column=column,
                                 pointer=child)
            stack.append((v, child))


def load_yaml_plain(text: str, path: str, loader):
    """(data, {}, empty) or REDO: the composer without pointers or marks (data files).

    Same values (YAML 1.2 core scalars). Whatever the composer refuses (anchors, aliases,
    unknown tags, merge and duplicate keys, a second document, deep nesting, a non-scalar
    key, an int too long to convert, a syntax error) sends the caller to the full parse,
    which locates and words it.
    """
    if _SURROGATE_ESCAPE.search(text):
        return REDO
    try:
        root, empty = _compose(text, path, None, loader)
    except (GraphError, yaml.YAMLError, UnicodeEncodeError):
        return REDO
    return root, {}, empty


def _compose(text: str, path: str, marks: dict | None, loader) -> tuple[object, bool]:
    """Build plain data from the event stream, refusing what `_refuse_event` and the tag
    checks name at their own event, before anything is expanded.

    `marks` receives the source map; None skips pointers and marks altogether (the lean
    parse of data files, whose errors the caller locates by parsing again with marks).
    The loop is the hot path (~5 events per graph node): local aliases, one class test per
    event, pointers built only for mapping keys and sequence items, and only when tracked.
    Containers (one per node at most) and rare events are handled by helpers.
    """
    Scalar, MapStart, SeqStart = yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent
    MapEnd, SeqEnd = yaml.MappingEndEvent, yaml.SequenceEndEvent
    special, numstart, num_match = _SPECIAL, _NUMSTART, _NUM.fullmatch
    stack: list[tuple] = []
    track = marks is not None
    # the container being filled, its pointer, whether it is a mapping, and (mappings) the
    # key waiting for its value (None: the next scalar is a key) and its pointer; untracked,
    # the pointers stay "" (they only serve error messages and marks)
    cur: dict | list | None = None
    ptr, kptr = "", ""
    is_map = False
    key: str | None = None
    top = [None, True, 0]  # the root value, whether the document is empty, documents seen

    for ev in yaml.parse(text, Loader=loader):
        c = ev.__class__
        if c is Scalar:
            if ev.anchor is not None:
                raise _anchor_error(ev, path, kptr if is_map and key is not None else ptr)
            v = ev.value
            tag = ev.tag
            if is_map and key is None:  # a mapping key
                if (tag is not None and tag not in _SCALAR_TAGS) or v in cur or (v == "<<" and not ev.style):
                    raise _key_error(ev, cur, ptr, marks, path)
                key = v
                if track:
                    kptr = f"{ptr}/{v}" if "/" not in v and "~" not in v else f"{ptr}/{escape(v)}"
                    m = ev.start_mark
                    marks[kptr] = (m.line + 1, m.column + 1)
                continue
            if tag is None:
                if not ev.style:  # plain: YAML 1.2 core schema
                    if v in special:
                        v = special[v]
                    elif v[0] in numstart:
                        nm = num_match(v)
                        if nm is not None:
                            v = _int_or_error(nm, ev, path)
            else:
                v = _tagged(ev, tag, path, kptr if is_map else ptr)
            if is_map:
                cur[key] = v
                key = None
            elif cur is not None:
                if track:
                    m = ev.start_mark
                    marks[f"{ptr}/{len(cur)}"] = (m.line + 1, m.column + 1)
                cur.append(v)
            else:  # a scalar document
                top[0], top[1] = v, v is None and ev.value == "" and tag is None and not ev.style
                if track:
                    marks[""] = _mark(ev)
        elif c is MapStart or c is SeqStart:
            stack.append((cur, ptr, is_map))
            cur, ptr = _open(ev, c is MapStart, cur, ptr, key, kptr, len(stack), marks, path, top)
            is_map = c is MapStart
            key = None
        elif c is MapEnd or c is SeqEnd:
            cur, ptr, is_map = stack.pop()
            key = None
        else:  # StreamStart, StreamEnd, DocumentStart/End, Alias
            _refuse_event(ev, top, path, kptr if is_map and key is not None else ptr)
    return top[0], top[1]


def _open(ev, is_mapping: bool, cur, ptr: str, key, kptr: str, depth: int, marks, path: str, top: list):
    """Start a mapping or sequence inside `cur` (or as the root); returns (new, its pointer)."""
    if ev.anchor is not None:
        raise _anchor_error(ev, path, kptr if type(cur) is dict and key is not None else ptr)
    tag = ev.tag
    if tag not in (_MAP_TAGS if is_mapping else _SEQ_TAGS):
        raise _tag_error(ev, tag, path, ptr)
    new: dict | list = {} if is_mapping else []
    track = marks is not None
    if type(cur) is dict:
        if key is None:
            what = "mapping" if is_mapping else "list"
            raise _error_at(ev, "yaml-syntax", f"mapping keys must be scalars (a name), not a {what}", path, ptr)
        cur[key] = new
        child = kptr
    elif cur is not None:
        child = ""
        if track:
            child = f"{ptr}/{len(cur)}"
            marks[child] = _mark(ev)
        cur.append(new)
    else:
        top[0], top[1] = new, False
        child = ""
        if track:
            marks[""] = _mark(ev)
    if depth > MAX_DEPTH:
        raise _error_at(ev, "yaml-syntax", f"nesting deeper than {MAX_DEPTH} levels", path, child)
    return new, child


def _refuse_event(ev, top: list, path: str, pointer: str) -> None:
    """Aliases and a second document are refused; other structural events need nothing."""
    if isinstance(ev, yaml.AliasEvent):
        raise _error_at(ev, "yaml-alias", f"aliases (*{ev.anchor}) are not supported; write the value out",
                        path, pointer)
    if isinstance(ev, yaml.DocumentStartEvent):
        top[2] += 1
        if top[2] > 1:
            raise _error_at(ev, "yaml-syntax", "the file holds more than one YAML document (a second '---'); "
                            "a graph file is one document", path)


def _key_error(ev, cur: dict, ptr: str, marks, path: str) -> GraphError:
    """The error for a mapping key that is tagged, a duplicate, or a merge key (`<<`)."""
    v, tag = ev.value, ev.tag
    if tag is not None and tag not in _SCALAR_TAGS:
        return _tag_error(ev, tag, path, ptr)
    if v in cur:
        kp = f"{ptr}/{escape(v)}"
        fl, fc = marks.get(kp, ("?", "?")) if marks is not None else ("?", "?")
        return _error_at(ev, "duplicate-key", f"duplicate key '{v}' (first defined at line {fl}, column {fc}); "
                         "a key may appear only once in a mapping", path, kp)
    return _tag_error(ev, _MERGE, path, ptr)


def _number(m: re.Match) -> int | float:
    """The value of a `_NUM` match (ValueError for an int too long to convert)."""
    dec, octal, hexa, flt, inf_sign, _nan = m.groups()
    if dec is not None:
        return int(dec)
    if octal is not None:
        return int(octal, 8)
    if hexa is not None:
        return int(hexa, 16)
    if flt is not None:
        return float(flt)
    if inf_sign is not None:
        return -math.inf if inf_sign == "-" else math.inf
    return math.nan


def _int_or_error(m: re.Match, ev, path: str) -> int | float:
    try:
        return _number(m)
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        raise _error_at(ev, "yaml-syntax", "the integer has too many digits", path) from None


def _tagged(ev, tag: str, path: str, pointer: str) -> object:
    """A scalar with an explicit core tag (`!!str 1`, `!!float 3`); any other tag is refused."""
    v = ev.value
    if tag == "!" or tag == _STR:
        return v
    if tag not in _SCALAR_TAGS:
        raise _tag_error(ev, tag, path, pointer)
    if tag == _NULL and v in _NULLS:
        return None
    if tag == _BOOL and v in _SPECIAL and v not in _NULLS:
        return _SPECIAL[v]
    m = _NUM.fullmatch(v)
    if m is not None:
        if tag == _INT and m.lastindex in (1, 2, 3):
            return _int_or_error(m, ev, path)
        if tag == _FLOAT:
            return float(_int_or_error(m, ev, path))
    raise _error_at(ev, "yaml-syntax", f"'{v}' is not a valid {_short_tag(tag)}", path, pointer)


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _mark(ev) -> tuple[int, int]:
    m = ev.start_mark
    return (m.line + 1, m.column + 1)


def _error_at(ev, code: str, message: str, path: str, pointer: str | None = None) -> GraphError:
    """A GraphError located at the start of event `ev`."""
    line, column = _mark(ev)
    return GraphError(code, message, path=path, line=line, column=column, pointer=pointer)


def _tag_error(ev, tag: str, path: str, pointer: str) -> GraphError:
    """The error for an unsupported tag; `!!merge` (and a plain `<<` key) is a merge key."""
    if tag == _MERGE:
        return _error_at(ev, "yaml-alias", "merge keys (<<) are not supported; write the entries out", path, pointer)
    return _error_at(
        ev, "yaml-syntax", f"tags are not supported (found {_short_tag(tag)}); write the plain value", path, pointer
    )


def _anchor_error(ev, path: str, pointer: str) -> GraphError:
    return _error_at(ev, "yaml-alias", f"anchors (&{ev.anchor}) are not supported; write the value out in full",
                     path, pointer)
