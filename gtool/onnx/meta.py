"""gtool metadata in an exported ONNX model, and `restore`: reading it back on import.

ONNX has fields for names, dtypes, dims (`dim_param`), the graph's doc and node docs, but not
for ranges, param inits, tensor docs, weak scalars, declared dims' defaults, the loss, or which
gtool op a group of ONNX nodes came from. The exporter stores those as one JSON document under
the `metadata_props` key `gtool.graph`:

    {"format": 1, "name", "doc", "dims", "loss", "outputs", "renamed": {onnx output: gtool name},
     "tensors": {name: {kind, dtype, shape, weak, value (weak scalars), has_value, range, init, doc}},
     "nodes": {name: {op, inputs, attrs, shape, doc, onnx: [ONNX node names], hash}}}

`restore(graph, model)` applies it to the graph the importer built from the ONNX nodes. A gtool
node whose ONNX nodes are still exactly as exported (same names, same sha256 of their protos)
gets its gtool op back (`cross_entropy` rather than its 30-node decomposition); a node that an
ONNX tool changed keeps what the importer read, so editing the ONNX file is never undone by
stale metadata. Tensors keep their ranges, docs and inits; the graph its name, loss and dims.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np

KEY = "gtool.graph"
FORMAT = 1


def _jsonable(v):
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, list | tuple):
        return [_jsonable(a) for a in v]
    if isinstance(v, dict):
        return {k: _jsonable(a) for k, a in v.items()}
    return v


def group_hash(nodes) -> str:
    """sha256 of ONNX node protos, in order: equal iff nothing in them changed."""
    h = hashlib.sha256()
    for n in nodes:
        h.update(n.SerializeToString(deterministic=True))
    return h.hexdigest()


def _tensor_meta(t) -> dict:
    d = {"kind": t.kind, "dtype": t.dtype, "shape": [s.to_json() for s in t.shape], "weak": t.type.weak,
         "has_value": t.value is not None}
    if t.type.weak and t.value is not None:
        d["value"] = _jsonable(t.value)
    for key in ("range", "init", "doc"):
        v = getattr(t, key)
        if v is not None:
            d[key] = _jsonable(list(v) if key == "range" else v)
    return d


def build(graph, exporter, renamed: dict[str, str]) -> dict:
    """The metadata document of an export (see the module docstring)."""
    nodes = {}
    for name, node in graph.nodes.items():
        group = exporter.groups.get(name, [])
        d = {"op": node.op, "inputs": list(node.inputs), "attrs": _jsonable(node.attrs),
             "onnx": [n.name for n in group], "hash": group_hash(group)}
        if node.shape is not None:
            d["shape"] = [s.to_json() for s in node.shape]
        if node.doc:
            d["doc"] = node.doc
        nodes[name] = d
    return {"format": FORMAT, "name": graph.name, "doc": graph.doc, "dims": dict(graph.dims), "loss": graph.loss,
            "outputs": list(graph.outputs), "renamed": renamed,
            "tensors": {n: _tensor_meta(t) for n, t in graph.tensors.items()}, "nodes": nodes}


def write(model, graph, exporter, renamed: dict[str, str]) -> None:
    """Store the metadata document in the model's metadata_props."""
    import onnx

    doc = build(graph, exporter, renamed)
    onnx.helper.set_model_props(model, {KEY: json.dumps(doc, sort_keys=True, separators=(",", ":"))})
    if graph.doc:
        model.doc_string = graph.doc


def read(model) -> dict | None:
    """The metadata document of a model gtool exported, or None (another producer, or a
    format this gtool does not know)."""
    for prop in model.metadata_props:
        if prop.key == KEY:
            try:
                doc = json.loads(prop.value)
            except ValueError:
                return None
            return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None
    return None
