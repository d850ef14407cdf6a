"""Pieces the YAML and JSON loaders share: limits, pointer escapes, located errors.

Kept apart from `source.py` (the entry points) so that the two format modules can use them
without importing each other or the facade.
"""

from __future__ import annotations

import re

from gtool.errors import GraphError

#: Containers nested deeper than this are refused: no graph needs it, and later passes
#: (schema checks, JSON output) may recurse.
MAX_DEPTH = 200

#: A fast path's answer: "run the full parse, which will say what is wrong".
REDO = object()

#: A UTF-16 surrogate on its own: not a Unicode character, so no file can hold one and no
#: output can print one. JSON's `\ud800` escape (and a Python str) can make one.
SURROGATE = re.compile("[\ud800-\udfff]")


def escape(key: str) -> str:
    """One RFC 6901 reference token."""
    return key.replace("~", "~0").replace("/", "~1")


def error_in(text: str, offset: int, code: str, message: str, path: str) -> GraphError:
    """A GraphError at the 1-based line and column of character `offset` (errors only: slow)."""
    line = text.count("\n", 0, offset) + 1
    return GraphError(code, message, path=path, line=line, column=offset - text.rfind("\n", 0, offset))


def surrogate_error(text: str, offset: int, code: str, path: str, char: str) -> GraphError:
    """The located error for a lone surrogate (`\\ud800`), which is not a character."""
    return error_in(text, offset, code, f"lone surrogate \\u{ord(char):04x} is not a Unicode character; "
                    "write the character itself (or a valid \\ud83d\\ude00-style pair)", path)
