"""Writing graphs back to files: explicit node form, topological order, deterministic bytes.

Floats are written as the shortest text that reads back exactly (Python's repr), so the
same graph always gives byte-identical files that CI can diff. Writes are atomic.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile

import numpy as np
import yaml

from ..errors import UsageError
from ..ir import Graph, Tensor

SECTIONS = (("inputs", "input"), ("params", "param"), ("constants", "constant"))


def _plain(v):
    """Numbers, lists and strings as a file holds them (non-finite floats as strings in JSON)."""
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return _plain(v.item())
    return v


def _tensor_doc(t: Tensor):
    if t.kind == "constant" and t.type.weak and t.value is not None and t.value.ndim == 0:
        v = _plain(t.value)
        # a weak scalar is written without a dtype (a dtype would make it strong): a bare
        # number, or {value: true} for a bool (the schema has no bare-bool constant)
        return {"value": v} if isinstance(v, bool) else v
    d: dict = {"shape": [x.to_json() for x in t.shape], "dtype": t.dtype}
    if t.value is not None:
        d["value"] = _plain(t.value)
    if t.init is not None:
        d["init"] = t.init
    if t.range is not None:
        d["range"] = list(t.range)
    if t.doc:
        d["doc"] = t.doc
    return d


def graph_to_data(graph: Graph) -> dict:
    """A graph as plain data in the file format (explicit nodes, topological order)."""
    data: dict = {"gtool": 1}
    if graph.name:
        data["name"] = graph.name
    if graph.doc:
        data["doc"] = graph.doc
    if graph.dims:
        data["dims"] = dict(graph.dims)
    for section, kind in SECTIONS:
        items = {n: _tensor_doc(t) for n, t in graph.tensors.items() if t.kind == kind}
        if items:
            data[section] = items
    nodes = {}
    for n, node in graph.nodes.items():
        d: dict = {"op": node.op, "inputs": list(node.inputs)}
        if node.attrs:
            d["attrs"] = {k: _plain(v) for k, v in node.attrs.items()}
        if node.shape is not None:
            d["shape"] = [x.to_json() for x in node.shape]
        if node.doc:
            d["doc"] = node.doc
        nodes[n] = d
    data["nodes"] = nodes
    data["outputs"] = list(graph.outputs)
    if graph.loss:
        data["loss"] = graph.loss
    return data


class _Dumper(yaml.SafeDumper):
    pass


def _float(dumper, value: float):
    if math.isnan(value):
        text = ".nan"
    elif math.isinf(value):
        text = ".inf" if value > 0 else "-.inf"
    else:
        text = repr(value)
    return dumper.represent_scalar("tag:yaml.org,2002:float", text)


def _flow_seq(dumper, value):
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


_Dumper.add_representer(float, _float)
_Dumper.add_representer(list, _flow_seq)


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def dumps(graph: Graph, fmt: str = "yaml") -> str:
    data = graph_to_data(graph)
    if fmt == "json":
        return json.dumps(_jsonable(data), indent=2) + "\n"
    body = {k: v for k, v in data.items() if k != "nodes"}
    head = yaml.dump({k: body[k] for k in body if k in ("gtool", "name", "doc", "dims", "inputs", "params",
                                                        "constants")},
                     Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    lines = [head.rstrip("\n"), "nodes:"]
    for n, d in data["nodes"].items():
        lines.append(f"  {n}: " + yaml.dump(d, Dumper=_Dumper, sort_keys=False, default_flow_style=True,
                                            width=10**6).strip())
    tail = yaml.dump({k: data[k] for k in ("outputs", "loss") if k in data}, Dumper=_Dumper, sort_keys=False)
    return "\n".join(lines) + "\n" + tail


def write_atomic(path: str, text: str | bytes) -> None:
    """Write via a temporary file in the same folder and rename, so a reader never sees half a file.

    The file gets the mode an ordinary write would give (an existing file keeps its own; a new
    one follows the umask), not the 0600 of the temporary file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError("usage", f"cannot write {path}: no such folder {folder}")
    if os.path.isdir(path):
        raise UsageError("usage", f"cannot write {path}: it is a directory")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".gtool-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        raise UsageError("usage", f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def refuse_input(path: str, protect: tuple[str, ...]) -> None:
    """A UsageError if `path` is one of the input files (the same file under any name)."""
    if any(os.path.exists(p) and os.path.exists(path) and os.path.samefile(p, path) for p in protect):
        raise UsageError("usage", f"refusing to overwrite the input file {path}",
                         hint="choose another -o path (or --in-place where the command offers it)")


def save_graph(graph: Graph, path: str, *, protect: tuple[str, ...] = ()) -> None:
    """Write a graph file (format from the extension); refuses to overwrite a protected path."""
    refuse_input(path, protect)
    fmt = "json" if path.endswith(".json") else "yaml"
    if not path.endswith((".json", ".yaml", ".yml")):
        raise UsageError("usage", f"cannot tell the format of {path}: use .yaml, .yml or .json")
    write_atomic(path, dumps(graph, fmt))
