"""Formatting results in one place: text tables, JSON documents, GitHub annotations, SARIF.

JSON follows the spec: non-finite numbers are the strings "nan", "inf", "-inf", and stdout
holds exactly one document. Text meant for a terminal goes through `escape_text`: a graph
file's names and docs are untrusted, and an escape sequence in a name must not drive the
user's terminal (the CLI applies it to everything it prints in text mode).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from .errors import Diagnostic

# C0 controls but tab and newline, DEL, C1 controls (0x9b is CSI on 8-bit terminals), the bidi
# controls that reorder what a line shows, lone surrogates (unencodable) and noncharacters
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                     "\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")


def escape_text(text: str) -> str:
    """`text` with every character that could drive a terminal (or not be encodable) written as a
    visible escape: ESC becomes `\\x1b`, U+202E `\\u202e`; tab and newline stay."""
    return _UNSAFE.sub(_escape_char, text)


def _escape_char(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def jsonable(x):
    """numpy and Python values -> JSON-safe values (non-finite floats as strings)."""
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def dumps(doc) -> str:
    return json.dumps(jsonable(doc), indent=2, allow_nan=False)


def tensor_json(a: np.ndarray) -> dict:
    a = np.asarray(a)
    return {"shape": list(a.shape), "dtype": str(a.dtype), "value": jsonable(a.item() if a.ndim == 0 else a)}


def summarize(a: np.ndarray, limit: int = 12) -> str:
    """A value for a table: the numbers when small, else min/mean/max (and NaN/Inf counts)."""
    a = np.asarray(a)
    if a.size <= limit:
        if a.ndim == 0:
            return _num(a.item())
        return np.array2string(a, precision=6, separator=", ", max_line_width=10**6).replace("\n", "")
    if a.dtype.kind not in "biuf":
        return f"{a.size} values"
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    text = (f"min {_num(finite.min())}  mean {_num(finite.mean())}  max {_num(finite.max())}"
            if finite.size else "no finite values")
    if a.dtype.kind == "f":
        nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        if nan or inf:
            text += f"  ({nan} NaN, {inf} Inf)"
    return text


def _num(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{float(v):.6g}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain aligned table (no box drawing: it pastes into issues and logs)."""
    widths = [max(len(str(h)), *(len(str(r[k])) for r in rows)) if rows else len(h) for k, h in enumerate(headers)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def values_table(values: dict[str, np.ndarray]) -> str:
    rows = [[n, "[" + ", ".join(map(str, np.shape(v))) + "]", str(np.asarray(v).dtype), summarize(v)]
            for n, v in values.items()]
    return table(["name", "shape", "dtype", "value"], rows)


def github(d: Diagnostic) -> str:
    """A GitHub Actions annotation line."""
    kind = "warning" if d.severity == "warning" else "error"
    parts = [f"file={_escape_property(d.path)}"] if d.path else []
    if d.line:
        parts.append(f"line={d.line}")
    if d.column:
        parts.append(f"col={d.column}")
    parts.append(f"title=gtool {d.code}")
    msg = (f"node '{d.node}': " if d.node else "") + d.message + (f" (hint: {d.hint})" if d.hint else "")
    msg = msg.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return f"::{kind} {','.join(parts)}::{msg}"


def _escape_property(value: str) -> str:
    """A workflow-command property value (a path may hold ',' or ':', which end or split it)."""
    return (value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A").replace(":", "%3A")
            .replace(",", "%2C"))


# SARIF 2.1.0 (GitHub code scanning) ------------------------------------------------------------------

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVELS = {"error": "error", "warning": "warning", "note": "note", "info": "note"}


def sarif(items: list[tuple[str, Diagnostic, dict]], version: str, root: str | None = None) -> dict:
    """One SARIF 2.1.0 run: `items` are (file checked, diagnostic, extra properties) in order.

    Each distinct code is a rule of `tool.driver.rules` (results point to it by `ruleId` and
    `ruleIndex`); locations are URIs relative to `root` (the repository: where GitHub resolves
    them) with the 1-based line and column, so code scanning shows each diagnostic on its line.
    A diagnostic without a line is put on line 1 of its file.
    """
    import os

    root = os.path.abspath(root or repo_root())
    rules: dict[str, int] = {}
    rule_list, results = [], []
    for path, d, props in items:
        if d.code not in rules:
            rules[d.code] = len(rule_list)
            rule_list.append({"id": d.code, "name": _rule_name(d.code),
                              "shortDescription": {"text": escape_text(d.code.replace("-", " ").capitalize())},
                              "help": {"text": f"gtool diagnostic `{d.code}`: see docs/errors.md"},
                              "defaultConfiguration": {"level": _LEVELS.get(d.severity, "error")}})
        region = {"startLine": d.line if d.line and d.line > 0 else 1}
        if d.line and d.column and d.column > 0:
            region["startColumn"] = d.column
        text = escape_text((f"node '{d.node}': " if d.node else "") + d.message + (f" (hint: {d.hint})" if d.hint else ""))
        result = {"ruleId": d.code, "ruleIndex": rules[d.code], "level": _LEVELS.get(d.severity, "error"),
                  "message": {"text": text},
                  "locations": [{"physicalLocation": {"artifactLocation": _artifact(d.path or path, root),
                                                      "region": region}}]}
        extra = {k: v for k, v in {"node": d.node, "op": d.op, "pointer": d.pointer, **props}.items() if v is not None}
        if extra:
            result["properties"] = extra
        results.append(result)
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "gtool", "version": version, "semanticVersion": version,
                                          "rules": rule_list}},
                      "originalUriBaseIds": {"%SRCROOT%": {"uri": _file_uri(root, folder=True)}},
                      "columnKind": "unicodeCodePoints", "results": results}]}


def repo_root(start: str | None = None) -> str:
    """The nearest folder at or above `start` (default: the working directory) holding `.git`;
    the working directory when there is none."""
    import os

    here = os.path.abspath(start or os.getcwd())
    folder = here
    while True:
        if os.path.exists(os.path.join(folder, ".git")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return here
        folder = parent


def _artifact(path: str, root: str) -> dict:
    import os
    from urllib.parse import quote

    full = os.path.abspath(path)
    rel = os.path.relpath(full, root)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return {"uri": _file_uri(full)}  # outside the repository: an absolute file URI
    return {"uri": quote(rel.replace(os.sep, "/"), safe="/"), "uriBaseId": "%SRCROOT%"}


def _file_uri(path: str, folder: bool = False) -> str:
    from pathlib import Path
    from urllib.parse import quote

    uri = "file://" + quote(Path(path).as_posix(), safe="/")
    return uri + "/" if folder and not uri.endswith("/") else uri


def _rule_name(code: str) -> str:
    """`unknown-op` -> `UnknownOp` (SARIF's `name` is an identifier-like label)."""
    return "".join(part.capitalize() for part in code.split("-") if part) or "Diagnostic"
