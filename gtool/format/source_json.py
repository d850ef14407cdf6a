"""JSON graph documents: strict RFC 8259 with a position for every key and item.

Why not `json.load`: it keeps the last of two duplicate keys, accepts NaN and Infinity,
throws positions away and recurses. A regex matches a whole `"key": scalar,` entry (or an
item and its delimiter) at once, so the Python loop runs once per entry, not once per token;
on any mismatch the stdlib's parser is run to name the problem exactly. Data files (no
source map wanted) go through the stdlib's C parser first and fall back to the scanner.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left

from gtool.errors import GraphError

from .source_util import MAX_DEPTH, REDO, SURROGATE, error_in, escape, surrogate_error

__all__ = ["load_json", "load_json_plain"]

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
#: An escape that may decode to a lone surrogate (the full scanner then checks the string).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _NonJSONConstant(ValueError):
    pass


def _refuse_constant(name: str) -> object:
    raise _NonJSONConstant(name)


def load_json(text: str, path: str) -> tuple[object, dict[str, tuple[int, int]], bool]:
    """(data, marks, empty) of a JSON document; every problem is a located `json-syntax`
    (or `duplicate-key`) GraphError."""
    n = len(text)
    pos = _SKIP_WS.match(text).end()
    if pos == n:
        return None, {}, True
    newlines = [m.start() for m in re.finditer("\n", text)]

    def at(offset: int, bisect=bisect_left) -> tuple[int, int]:
        line = bisect(newlines, offset)  # newlines before offset
        return (line + 1, offset - newlines[line - 1] if line else offset + 1)

    marks: dict[str, tuple[int, int]] = {"": at(pos)}
    first = text[pos]
    if first != "{" and first != "[":
        # a scalar document: parsed only for the message about the top level
        try:
            value = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            _json_fail(text, pos, path)
        if isinstance(value, str) and SURROGATE.search(value):
            _unescape(text, pos, path)  # raises, located
        return value, marks, False
    return _scan(text, pos, path, marks, at), marks, False


def _scan(text: str, pos: int, path: str, marks: dict, at) -> dict | list:
    """The container document starting at `text[pos]` ('{' or '['), with its marks."""
    n = len(text)
    obj_match, arr_match, skip_ws = _OBJ_ENTRY.match, _ARR_ITEM.match, _SKIP_WS.match
    literals = _LITERALS
    root: dict | list = {} if text[pos] == "{" else []
    stack: list[tuple] = []
    cur, ptr, is_obj = root, "", text[pos] == "{"
    pos += 1
    opened = True  # just after a bracket: the container may be empty
    while True:
        d = None
        if opened:
            opened = False
            p = skip_ws(text, pos).end()
            if p < n and text[p] == ("}" if is_obj else "]"):
                pos, d = p + 1, text[p]  # closed empty: on to the closing cascade below
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
                    raise _duplicate(k, kpos, ptr, marks, at, path)
                child = f"{ptr}/{k}" if "/" not in k and "~" not in k else f"{ptr}/{escape(k)}"
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
                stack.append((cur, ptr, is_obj))
                if len(stack) >= MAX_DEPTH:
                    line, column = at(pos - 1)
                    raise GraphError("json-syntax", f"nesting deeper than {MAX_DEPTH} levels", path=path,
                                     line=line, column=column, pointer=child)
                cur, ptr, is_obj = new, child, bracket == "{"
                opened = True
                continue
        # d is the delimiter after a value of `cur` (or the bracket that closed it empty)
        if d != ",":
            back = _close(text, pos, d, is_obj, stack, path)
            if back is None:
                return root
            cur, ptr, is_obj, pos = back


def _close(text: str, pos: int, d: str, is_obj: bool, stack: list, path: str) -> tuple | None:
    """Close containers from the bracket `d` just read at `pos - 1`: None when the root has
    closed (and nothing but blanks follows), else the (container, pointer, is_obj, position)
    to go on filling, just after its next ','."""
    while True:
        if (d == "}") != is_obj:
            _json_fail(text, pos - 1, path)
        if not stack:
            if _SKIP_WS.match(text, pos).end() != len(text):
                _json_fail(text, pos, path)
            return None
        cur, ptr, is_obj = stack.pop()
        m = _AFTER.match(text, pos)
        if m is None:
            _json_fail(text, pos, path)
        d = m.group(1)
        pos = m.end()
        if d == ",":
            return cur, ptr, is_obj, pos


def _duplicate(k: str, kpos: int, ptr: str, marks: dict, at, path: str) -> GraphError:
    kp = f"{ptr}/{escape(k)}"
    line, column = at(kpos)
    fl, fc = marks[kp]
    return GraphError("duplicate-key", f"duplicate key '{k}' (first defined at line {fl}, column {fc}); "
                      "a key may appear only once in an object", path=path, line=line, column=column, pointer=kp)


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _DuplicateKey
    return d


def load_json_plain(text: str):
    """(data, {}, empty) or REDO: the stdlib's C parser, for data files without a source map.

    Duplicate keys, NaN/Infinity, ints too long to convert, nesting deeper than MAX_DEPTH,
    escapes that may be lone surrogates and every syntax error send the caller to the full
    scanner, which locates the problem.
    """
    if _SURROGATE_ESCAPE.search(text):
        return REDO
    try:
        data = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return REDO
    stack = [(data, 1)] if type(data) is list or type(data) is dict else []
    while stack:  # containers only: cheap next to the parse
        x, depth = stack.pop()
        if depth >= MAX_DEPTH - 2:  # on the safe side of the full scanner's limit: it decides
            return REDO
        items = x.values() if type(x) is dict else x
        stack.extend((v, depth + 1) for v in items if type(v) is list or type(v) is dict)
    return data, {}, False


def _unescape(text: str, quote: int, path: str) -> str:
    """Decode a string with backslash escapes (the stdlib's C scanner checks them); a `\\uXXXX`
    escape that leaves a lone surrogate is refused at that escape."""
    try:
        s, end = json.decoder.scanstring(text, quote + 1, True)
    except json.JSONDecodeError as e:
        raise error_in(text, e.pos, "json-syntax", e.msg, path) from None
    bad = SURROGATE.search(s)
    if bad is not None:
        m = re.compile(rf"\\u{ord(bad.group()):04x}", re.IGNORECASE).search(text, quote, end)
        raise surrogate_error(text, m.start() if m else quote, "json-syntax", path, bad.group())
    return s


def _json_number(raw: str, text: str, offset: int, path: str) -> int | float:
    if "." in raw or "e" in raw or "E" in raw:
        return float(raw)
    try:
        return int(raw)
    except ValueError:  # more digits than int() converts
        raise error_in(text, offset, "json-syntax", "the integer has too many digits", path) from None


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
        raise error_in(text, offset, "json-syntax", f"{e.args[0]} is not valid JSON; write numbers only", path) from None
    except json.JSONDecodeError as e:
        raise GraphError("json-syntax", e.msg, path=path, line=e.lineno, column=e.colno) from None
    except (ValueError, RecursionError):
        pass
    raise error_in(text, pos, "json-syntax", "invalid JSON", path)
