"""Load a graph document (YAML or JSON) into plain Python data plus a source map.

Every later check (schema, names, shapes) reports the file position of what it complains
about, so the loader returns, next to the data, `marks`: a map from RFC 6901 JSON pointer
to the 1-based (line, column) where that entry starts (the key of a mapping entry, the item
of a sequence).

Why not `yaml.safe_load` / `json.load`: they silently keep the last of two duplicate keys,
expand aliases (an alias bomb eats all memory before anyone can object), resolve YAML 1.1
scalars (`on` -> True, `1e-12` -> a string) and throw positions away. So YAML is read from
PyYAML's event stream by a small iterative composer here, and JSON by a regex-driven
scanner that records positions as it goes; both are iterative (no RecursionError on deep
nesting) and fast enough for 100,000-node graphs.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_left

import yaml

from gtool.errors import GraphError, UsageError

__all__ = ["MAX_DEPTH", "load_document", "load_file"]

#: Containers nested deeper than this are refused: no graph needs it, and later passes
#: (schema checks, JSON output) may recurse.
MAX_DEPTH = 200

#: libyaml when available (about 10x faster); the pure-Python parser otherwise. Tests swap it.
_YAML_LOADER = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader

_EMPTY_MESSAGE = "the file is empty; a graph file is a mapping"


MAX_FILE_BYTES = 512 << 20


def load_file(path: str, *, marks: bool = True) -> tuple[object, dict[str, tuple[int, int]]]:
    """Read `path` (bytes, so the UTF-8 check is ours) and load it as `load_document` does.

    A file that cannot be read is a usage problem (exit status 2), not a graph problem.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # a cap, so /dev/zero or a huge file cannot eat the memory
    except FileNotFoundError:
        raise UsageError("usage", f"no such file: {path}", path=path) from None
    except IsADirectoryError:
        raise UsageError("usage", f"{path} is a directory, not a graph file", path=path) from None
    except OSError as e:
        raise UsageError("usage", f"cannot read {path}: {e.strerror or e}", path=path) from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError("usage", f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB; gtool reads graph and data "
                         "files up to that size (use .npz for big data)", path=path)
    return load_document(data, path, marks=marks)


def load_document(
    text: str | bytes, path: str, fmt: str | None = None, *, marks: bool = True
) -> tuple[object, dict[str, tuple[int, int]]]:
    """Parse YAML or JSON text into plain data and a pointer -> (line, column) source map.

    `fmt` is 'yaml' or 'json'; None takes it from `path` (`.json` is JSON, anything else
    YAML). The data is dicts (insertion ordered), lists, str, int, float, bool and None; the
    top level must be a mapping. Every problem is a `GraphError` with a stable code and a
    1-based line/column, never a parser traceback.

    `marks=False` is for data files (`--inputs`): no source map (an empty one is returned)
    and a lean parse, several times faster for big arrays. It refuses exactly what the full
    parse refuses: on anything suspect it hands over to the full parse for the located error.
    """
    if fmt is None:
        fmt = "json" if path.lower().endswith(".json") else "yaml"
    elif fmt not in ("yaml", "json"):
        raise UsageError("usage", f"unknown format {fmt!r}; use 'yaml' or 'json'", path=path)
    code = "json-syntax" if fmt == "json" else "yaml-syntax"
    text = _decode(text, path, code)
    fast = _REDO
    if not marks:
        fast = _load_json_plain(text) if fmt == "json" else _load_yaml_plain(text, path)
    if fast is not _REDO:
        data, marks, empty = fast
    elif fmt == "json":
        data, marks, empty = _load_json(text, path)
    else:
        data, marks, empty = _load_yaml(text, path)
    if empty:
        raise GraphError("bad-type", _EMPTY_MESSAGE, path=path, line=1, column=1, pointer="")
    if not isinstance(data, dict):
        line, column = marks.get("", (1, 1))
        raise GraphError(
            "bad-type",
            f"the top level is {_describe(data)}; a graph file is a mapping "
            "(gtool, nodes, outputs, ...)",
            path=path,
            line=line,
            column=column,
            pointer="",
        )
    return data, marks


# --------------------------------------------------------------------------------------
# shared helpers

_REDO = object()  # a fast path's answer: "run the full parse, which will say what is wrong"


def _decode(text: str | bytes, path: str, code: str) -> str:
    """Bytes -> str as strict UTF-8, so a bad byte is a located error, not a traceback."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            start = raw.rfind(b"\n", 0, e.start) + 1
            column = len(raw[start : e.start].decode("utf-8", "replace")) + 1
            raise GraphError(
                code,
                f"the file is not valid UTF-8 (byte 0x{raw[e.start]:02x} at line {line}, "
                f"column {column}); save it as UTF-8",
                path=path,
                line=line,
                column=column,
            ) from None
    return text.removeprefix("\ufeff")  # a UTF-8 byte order mark is allowed and skipped


def _escape(key: str) -> str:
    """One RFC 6901 reference token."""
    return key.replace("~", "~0").replace("/", "~1")


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _error_in(text: str, offset: int, code: str, message: str, path: str) -> GraphError:
    """A GraphError at the 1-based line and column of character `offset` (errors only: slow)."""
    line = text.count("\n", 0, offset) + 1
    return GraphError(code, message, path=path, line=line, column=offset - text.rfind("\n", 0, offset))


# --------------------------------------------------------------------------------------
# YAML

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


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _mark(ev) -> tuple[int, int]:
    m = ev.start_mark
    return (m.line + 1, m.column + 1)


def _error_at(ev, code: str, message: str, path: str, pointer: str | None = None) -> GraphError:
    """A GraphError located at the start of event `ev`."""
    line, column = _mark(ev)
    return GraphError(code, message, path=path, line=line, column=column, pointer=pointer)


def _load_yaml(text: str, path: str) -> tuple[object, dict[str, tuple[int, int]], bool]:
    marks: dict[str, tuple[int, int]] = {}
    try:
        root, empty = _compose_yaml(text, path, marks, _YAML_LOADER)
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
        raise _error_in(text, offset, "yaml-syntax", f"unacceptable character{char}: {e.reason}", path) from None
    except yaml.YAMLError as e:
        raise GraphError("yaml-syntax", str(e), path=path) from None
    except UnicodeEncodeError as e:  # a str with lone surrogates
        raise _error_in(text, e.start, "yaml-syntax", "the text is not valid Unicode", path) from None
    return root, marks, empty


def _load_yaml_plain(text: str, path: str):
    """(data, {}, empty) or _REDO: `_compose_yaml` without pointers or marks (data files).

    Same values (YAML 1.2 core scalars). Whatever the composer refuses (anchors, aliases,
    unknown tags, merge and duplicate keys, a second document, deep nesting, a non-scalar
    key, an int too long to convert, a syntax error) sends the caller to the full parse,
    which locates and words it.
    """
    try:
        root, empty = _compose_yaml(text, path, None, _YAML_LOADER)
    except (GraphError, yaml.YAMLError, UnicodeEncodeError):
        return _REDO
    return root, {}, empty


def _compose_yaml(text: str, path: str, marks: dict | None, loader) -> tuple[object, bool]:
    """Build plain data from the event stream, refusing anchors, aliases, merge keys,
    unknown tags and duplicate keys at their own event, before anything is expanded.

    `marks` receives the source map; None skips pointers and marks altogether (the lean
    parse of data files, whose errors the caller locates by parsing again with marks).
    The loop is the hot path (~5 events per graph node): local aliases, one class test per
    event, pointers built only for mapping keys and sequence items, and only when tracked.
    """
    Scalar = yaml.ScalarEvent
    MapStart = yaml.MappingStartEvent
    SeqStart = yaml.SequenceStartEvent
    MapEnd = yaml.MappingEndEvent
    SeqEnd = yaml.SequenceEndEvent
    Alias = yaml.AliasEvent
    DocStart = yaml.DocumentStartEvent
    special = _SPECIAL
    numstart = _NUMSTART
    num_match = _NUM.fullmatch
    number = _number
    stack: list[tuple] = []
    push = stack.append
    pop = stack.pop
    max_depth = MAX_DEPTH
    track = marks is not None

    # the container being filled, its pointer, whether it is a mapping, and (mappings)
    # the key waiting for its value (None: the next scalar is a key) and its pointer;
    # untracked, the pointers stay "" (they only serve error messages and marks)
    cur: dict | list | None = None
    ptr = ""
    is_map = False
    key: str | None = None
    kptr = ""
    root: object = None
    empty = True
    docs = 0

    for ev in yaml.parse(text, Loader=loader):
        c = ev.__class__
        if c is Scalar:
            if ev.anchor is not None:
                raise _anchor_error(ev, path, kptr if is_map and key is not None else ptr)
            v = ev.value
            tag = ev.tag
            if is_map and key is None:  # a mapping key
                if tag is not None and tag not in _SCALAR_TAGS:
                    raise _tag_error(ev, tag, path, ptr)
                if v in cur:
                    kp = f"{ptr}/{_escape(v)}"
                    fl, fc = marks.get(kp, ("?", "?")) if track else ("?", "?")
                    raise _error_at(
                        ev,
                        "duplicate-key",
                        f"duplicate key '{v}' (first defined at line {fl}, column {fc}); "
                        "a key may appear only once in a mapping",
                        path,
                        kp,
                    )
                if v == "<<" and not ev.style:
                    raise _tag_error(ev, _MERGE, path, ptr)
                key = v
                if track:
                    kptr = f"{ptr}/{v}" if "/" not in v and "~" not in v else f"{ptr}/{_escape(v)}"
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
                            v = _int_or_error(nm, ev, path, number)
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
                root = v
                if track:
                    marks[""] = _mark(ev)
                empty = v is None and ev.value == "" and tag is None and not ev.style
        elif c is MapStart or c is SeqStart:
            if ev.anchor is not None:
                raise _anchor_error(ev, path, kptr if is_map and key is not None else ptr)
            tag = ev.tag
            if tag not in (_MAP_TAGS if c is MapStart else _SEQ_TAGS):
                raise _tag_error(ev, tag, path, ptr)
            new: dict | list = {} if c is MapStart else []
            if is_map:
                if key is None:
                    raise _error_at(
                        ev,
                        "yaml-syntax",
                        "mapping keys must be scalars (a name), not a " + ("mapping" if c is MapStart else "list"),
                        path,
                        ptr,
                    )
                cur[key] = new
                child = kptr
            elif cur is not None:
                child = ""
                if track:
                    child = f"{ptr}/{len(cur)}"
                    m = ev.start_mark
                    marks[child] = (m.line + 1, m.column + 1)
                cur.append(new)
            else:
                root = new
                child = ""
                if track:
                    marks[""] = _mark(ev)
                empty = False
            push((cur, ptr, is_map))
            if len(stack) > max_depth:
                raise _error_at(ev, "yaml-syntax", f"nesting deeper than {max_depth} levels", path, child)
            cur = new
            ptr = child
            is_map = c is MapStart
            key = None
        elif c is MapEnd or c is SeqEnd:
            cur, ptr, is_map = pop()
            key = None
        elif c is Alias:
            raise _error_at(
                ev,
                "yaml-alias",
                f"aliases (*{ev.anchor}) are not supported; write the value out",
                path,
                kptr if is_map and key is not None else ptr,
            )
        elif c is DocStart:
            docs += 1
            if docs > 1:
                raise _error_at(
                    ev,
                    "yaml-syntax",
                    "the file holds more than one YAML document (a second '---'); a graph file is one document",
                    path,
                )
        # StreamStart, StreamEnd, DocumentEnd: nothing to do
    return root, empty


def _int_or_error(m: re.Match, ev, path: str, number) -> int | float:
    try:
        return number(m)
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
            return _int_or_error(m, ev, path, _number)
        if tag == _FLOAT:
            return float(_int_or_error(m, ev, path, _number))
    raise _error_at(ev, "yaml-syntax", f"'{v}' is not a valid {_short_tag(tag)}", path, pointer)


def _tag_error(ev, tag: str, path: str, pointer: str) -> GraphError:
    """The error for an unsupported tag; `!!merge` (and a plain `<<` key) is a merge key."""
    if tag == _MERGE:
        return _error_at(ev, "yaml-alias", "merge keys (<<) are not supported; write the entries out", path, pointer)
    return _error_at(
        ev, "yaml-syntax", f"tags are not supported (found {_short_tag(tag)}); write the plain value", path, pointer
    )


def _anchor_error(ev, path: str, pointer: str) -> GraphError:
    return _error_at(ev, "yaml-alias", f"anchors (&{ev.anchor}) are not supported; write the value out in full", path, pointer)


# --------------------------------------------------------------------------------------
# JSON

_WS = "[ \t\n\r]*"
_STRING = r'"((?:[^"\\\x00-\x1f]|\\.)*+)"'
_NUMBER = r"(-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?(?:[eE][-+]?[0-9]++)?)"
_SCALAR = rf"(?:{_STRING}|{_NUMBER}|(true|false|null))"
#: An object entry: key, then a scalar and the delimiter after it, or an opening bracket.
#: Groups: 1 entry start, 2 key, 3 string, 4 number, 5 literal, 6 delimiter, 7 bracket.
_OBJ_ENTRY = re.compile(
    rf"{_WS}(){_STRING}{_WS}:{_WS}(?:{_SCALAR}{_WS}([,\]}}])|([\[{{]))", re.DOTALL
)
#: An array item. Groups: 1 item start, 2 string, 3 number, 4 literal, 5 delimiter, 6 bracket.
_ARR_ITEM = re.compile(rf"{_WS}()(?:{_SCALAR}{_WS}([,\]}}])|([\[{{]))", re.DOTALL)
#: What follows a closed container: a delimiter.
_AFTER = re.compile(rf"{_WS}([,\]}}])")
_SKIP_WS = re.compile(_WS)
_LITERALS = {"true": True, "false": False, "null": None}


class _NonJSONConstant(ValueError):
    pass


def _refuse_constant(name: str) -> object:
    raise _NonJSONConstant(name)


def _load_json(text: str, path: str) -> tuple[object, dict[str, tuple[int, int]], bool]:
    """Strict RFC 8259 JSON with a position for every key and item.

    A regex matches a whole `"key": scalar,` entry (or an item and its delimiter) at once,
    so the Python loop runs once per entry, not once per token. On any mismatch, the
    stdlib's parser is run to name the problem exactly.
    """
    n = len(text)
    pos = _SKIP_WS.match(text).end()
    if pos == n:
        return None, {}, True
    newlines = [m.start() for m in re.finditer("\n", text)]
    marks: dict[str, tuple[int, int]] = {}
    obj_match = _OBJ_ENTRY.match
    arr_match = _ARR_ITEM.match
    after_match = _AFTER.match
    skip_ws = _SKIP_WS.match
    literals = _LITERALS
    bisect = bisect_left
    max_depth = MAX_DEPTH

    def at(offset: int) -> tuple[int, int]:
        line = bisect(newlines, offset)  # newlines before offset
        return (line + 1, offset - newlines[line - 1] if line else offset + 1)

    marks[""] = at(pos)
    first = text[pos]
    if first != "{" and first != "[":
        # a scalar document: parsed only for the message about the top level
        try:
            value = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            _json_fail(text, pos, path)
        return value, marks, False

    root: dict | list = {} if first == "{" else []
    stack: list[tuple] = []
    push = stack.append
    pop = stack.pop
    cur = root
    ptr = ""
    is_obj = first == "{"
    pos += 1
    opened = True  # just after a bracket: the container may be empty

    while True:
        if opened:
            opened = False
            p = skip_ws(text, pos).end()
            if p < n and text[p] == ("}" if is_obj else "]"):
                pos = p + 1
                d = text[p]
                # fall through to the closing cascade below
            else:
                d = None
        else:
            d = None
        if d is None:
            if is_obj:
                m = obj_match(text, pos)
                if m is None:
                    _json_fail(text, pos, path)
                _, k, s, num, lit, d, bracket = m.groups()
                kpos = m.start(1)
                if "\\" in k:
                    k = _unescape(text, kpos, path)
                if k in cur:
                    kp = f"{ptr}/{_escape(k)}"
                    line, column = at(kpos)
                    fl, fc = marks[kp]
                    raise GraphError(
                        "duplicate-key",
                        f"duplicate key '{k}' (first defined at line {fl}, column {fc}); "
                        "a key may appear only once in an object",
                        path=path,
                        line=line,
                        column=column,
                        pointer=kp,
                    )
                child = f"{ptr}/{k}" if "/" not in k and "~" not in k else f"{ptr}/{_escape(k)}"
                marks[child] = at(kpos)
                sg = 3  # the group of the string value; the number's is next
            else:
                m = arr_match(text, pos)
                if m is None:
                    _json_fail(text, pos, path)
                _, s, num, lit, d, bracket = m.groups()
                child = f"{ptr}/{len(cur)}"
                marks[child] = at(m.start(1))
                sg = 2
            if bracket is None:
                if s is not None:
                    v = s if "\\" not in s else _unescape(text, m.start(sg) - 1, path)
                elif num is not None:
                    v = _json_number(num, text, m.start(sg + 1), path)
                else:
                    v = literals[lit]
            else:
                v = new = {} if bracket == "{" else []
            if is_obj:
                cur[k] = v
            else:
                cur.append(v)
            pos = m.end()
            if bracket is not None:
                push((cur, ptr, is_obj))
                if len(stack) >= max_depth:
                    line, column = at(pos - 1)
                    raise GraphError(
                        "json-syntax",
                        f"nesting deeper than {max_depth} levels",
                        path=path,
                        line=line,
                        column=column,
                        pointer=child,
                    )
                cur = new
                ptr = child
                is_obj = bracket == "{"
                opened = True
                continue
        # d is the delimiter after a value of `cur` (or the bracket that closed it empty)
        while True:
            if d == ",":
                break
            if (d == "}") != is_obj:
                _json_fail(text, pos - 1, path)
            if not stack:
                if skip_ws(text, pos).end() != n:
                    _json_fail(text, pos, path)
                return root, marks, False
            cur, ptr, is_obj = pop()
            m = after_match(text, pos)
            if m is None:
                _json_fail(text, pos, path)
            d = m.group(1)
            pos = m.end()


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _DuplicateKey
    return d


def _load_json_plain(text: str):
    """(data, {}, empty) or _REDO: the stdlib's C parser, for data files without a source map.

    Duplicate keys, NaN/Infinity, ints too long to convert, nesting deeper than MAX_DEPTH
    and every syntax error send the caller to the full scanner, which locates the problem.
    """
    try:
        data = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return _REDO
    stack = [(data, 1)] if type(data) is list or type(data) is dict else []
    while stack:  # containers only: cheap next to the parse
        x, depth = stack.pop()
        if depth >= MAX_DEPTH - 2:  # on the safe side of the full scanner's limit: it decides
            return _REDO
        items = x.values() if type(x) is dict else x
        stack.extend((v, depth + 1) for v in items if type(v) is list or type(v) is dict)
    return data, {}, False


def _unescape(text: str, quote: int, path: str) -> str:
    """Decode a string with backslash escapes (the stdlib's C scanner checks them)."""
    try:
        return json.decoder.scanstring(text, quote + 1, True)[0]
    except json.JSONDecodeError as e:
        raise _error_in(text, e.pos, "json-syntax", e.msg, path) from None


def _json_number(raw: str, text: str, offset: int, path: str) -> int | float:
    if "." in raw or "e" in raw or "E" in raw:
        return float(raw)
    try:
        return int(raw)
    except ValueError:  # more digits than int() converts
        raise _error_in(text, offset, "json-syntax", "the integer has too many digits", path) from None


_NON_JSON = re.compile(r"NaN|-?Infinity")


def _json_fail(text: str, pos: int, path: str):
    """Raise the json-syntax error for text that the fast scanner refused near `pos`.

    The stdlib parser finds and names the first problem (its messages are good); NaN and
    Infinity, which it accepts, are refused here.
    """
    try:
        json.loads(text, parse_constant=_refuse_constant)
    except _NonJSONConstant as e:
        m = _NON_JSON.search(text, pos)
        offset = m.start() if m else pos
        raise _error_in(text, offset, "json-syntax", f"{e.args[0]} is not valid JSON; write numbers only", path) from None
    except json.JSONDecodeError as e:
        raise GraphError("json-syntax", e.msg, path=path, line=e.lineno, column=e.colno) from None
    except (ValueError, RecursionError):
        pass
    raise _error_in(text, pos, "json-syntax", "invalid JSON", path)
