"""Load a graph document (YAML or JSON) into plain Python data plus a source map.

Every later check (schema, names, shapes) reports the file position of what it complains
about, so the loader returns, next to the data, `marks`: a map from RFC 6901 JSON pointer
to the 1-based (line, column) where that entry starts (the key of a mapping entry, the item
of a sequence).

This module is the entry point: it reads files (regular files only, under a size cap,
checked before a byte is read), decodes strict UTF-8 and hands the text to the YAML
composer (`source_yaml`) or the JSON scanner (`source_json`). Both are iterative (no
RecursionError on deep nesting) and linear in the size of the file.
"""

from __future__ import annotations

import os
import stat

import yaml

from gtool.errors import GraphError, UsageError

from .source_json import load_json, load_json_plain
from .source_util import MAX_DEPTH, REDO, SURROGATE, surrogate_error
from .source_yaml import load_yaml, load_yaml_plain

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_GRAPH_BYTES", "load_document", "load_file"]

#: libyaml when available (about 10x faster); the pure-Python parser otherwise. Tests swap it.
_YAML_LOADER = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader

_EMPTY_MESSAGE = "the file is empty; a graph file is a mapping"

#: Data files (`--inputs`, read without a source map) up to this size: big arrays belong in .npz.
MAX_FILE_BYTES = 512 << 20
#: Graph files up to this size. A graph file is read with a source map and every entry is
#: checked, at microseconds per value: 16 MiB (about 200,000 typical nodes, or 2 million
#: inline numbers) validates in under a minute on a slow machine (bench/big_files.py); a
#: bigger file is refused before it is read, instead of running for minutes (docs/format.md).
MAX_GRAPH_BYTES = 16 << 20

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def read_capped(path: str, cap: int, what: str) -> bytes:
    """The bytes of the regular file `path`, refused (UsageError, exit 2) when it is missing, a
    directory (`what` says what was expected), not a regular file, or over `cap` bytes."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise UsageError("usage", f"no such file: {path}", path=path) from None
    except IsADirectoryError:
        raise UsageError("usage", f"{path} is a directory, not {what}", path=path) from None
    except OSError as e:
        raise UsageError("usage", f"cannot read {path}: {e.strerror or e}", path=path) from None
    try:
        data = _read_regular(fd, path, cap)
    finally:
        os.close(fd)
    if len(data) > cap:
        raise _too_big(path, len(data), cap)
    return data


def load_file(path: str, *, marks: bool = True) -> tuple[object, dict[str, tuple[int, int]]]:
    """Read `path` (bytes, so the UTF-8 check is ours) and load it as `load_document` does.

    A file that cannot be read is a usage problem (exit status 2), not a graph problem: a
    missing file, anything but a regular file (a FIFO would block forever, a device never
    end), and a file over the size cap (MAX_GRAPH_BYTES, or MAX_FILE_BYTES for data files
    read with `marks=False`), which is refused from its size before anything is read.
    """
    data = read_capped(path, MAX_GRAPH_BYTES if marks else MAX_FILE_BYTES, "a graph file")
    return load_document(data, path, marks=marks)


def _read_regular(fd: int, path: str, cap: int) -> bytes:
    """At most cap + 1 bytes of `fd`, after refusing a non-regular file or one over the cap."""
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise UsageError("usage", f"{path} is a directory, not a graph file", path=path)
    if not stat.S_ISREG(info.st_mode):
        kind = next((what for test, what in _KINDS if test(info.st_mode)), "not a regular file")
        raise UsageError("usage", f"{path} is {kind}, not a regular file; gtool reads graph and data files "
                         "from regular files only (save it to a file first)", path=path)
    if info.st_size > cap:
        raise _too_big(path, info.st_size, cap)
    chunks, size = [], 0
    try:
        while size <= cap:  # the file may have grown since fstat
            chunk = os.read(fd, min(cap + 1 - size, 1 << 24) or 1)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise UsageError("usage", f"cannot read {path}: {e.strerror or e}", path=path) from None
    return b"".join(chunks)


def _too_big(path: str, size: int, cap: int) -> UsageError:
    what = "graph" if cap == MAX_GRAPH_BYTES else "data"
    big = f"{size / (1 << 20):.0f} MiB" if size >= cap else "larger"
    return UsageError("usage", f"{path} is {big}, larger than {cap >> 20} MiB, the most gtool reads in a {what} "
                      "file (put big arrays in .npy/.npz files and pass them with --input NAME=@FILE)", path=path)


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
    fast = REDO
    if not marks:
        fast = load_json_plain(text) if fmt == "json" else load_yaml_plain(text, path, _YAML_LOADER)
    if fast is not REDO:
        data, marks, empty = fast
    elif fmt == "json":
        data, marks, empty = load_json(text, path)
    else:
        data, marks, empty = load_yaml(text, path, _YAML_LOADER)
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


def _decode(text: str | bytes, path: str, code: str) -> str:
    """Bytes -> str as strict UTF-8, so a bad byte is a located error, not a traceback; a str
    (from a library caller) must hold characters only, not lone surrogates."""
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
    elif not text.isascii():
        bad = SURROGATE.search(text)
        if bad is not None:
            raise surrogate_error(text, bad.start(), code, path, bad.group())
    return text.removeprefix("\ufeff")  # a UTF-8 byte order mark is allowed and skipped


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
