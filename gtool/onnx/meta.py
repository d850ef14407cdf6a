"""gtool metadata in an exported ONNX model, and `restore`: reading it back on import.

ONNX has fields for names, dtypes, dims (`dim_param`), the graph's doc and node docs, but not
for ranges, param inits, tensor docs, weak scalars, declared dims' defaults, the loss, or which
gtool op a group of ONNX nodes came from. The exporter stores those as one JSON document under
the `metadata_props` key `gtool.graph`:

    {"format": 1, "name", "doc", "dims", "loss", "outputs", "renamed": {onnx output: gtool name},
     "tensors": {name: {kind, dtype, shape, weak, value (weak scalars), has_value, range, init, doc}},
     "nodes": {name: {op, inputs, attrs, shape, doc, owner, onnx: [ONNX node names], hash}}}

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
    if v is None or type(v) in (str, int, bool) or (type(v) is dict and not v):
        return v  # the common cases first: a 40k-node graph calls this 80k times
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


def group_hash(nodes, helpers: dict) -> str:
    """sha256 of ONNX node protos, in order, and of the helper initializers they read (`helpers`:
    name -> TensorProto, the constants the exporter added): equal iff nothing in them changed."""
    h = hashlib.sha256()
    for n in nodes:
        h.update(n.SerializeToString(deterministic=True))
        for i in n.input:
            if i in helpers:
                h.update(helpers[i].SerializeToString(deterministic=True))
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
    helpers = {t.name: t for t in exporter.inits if t.name not in graph.tensors}
    for name, node in graph.nodes.items():
        group = exporter.groups.get(name, [])
        d = {"op": node.op, "inputs": list(node.inputs), "attrs": _jsonable(node.attrs),
             "onnx": [n.name for n in group], "hash": group_hash(group, helpers)}
        if node.shape is not None:
            d["shape"] = [s.to_json() for s in node.shape]
        if node.doc:
            d["doc"] = node.doc
        if node.owner:
            d["owner"] = node.owner  # the expression an anonymous node came from (errors point there)
        nodes[name] = d
    return {"format": FORMAT, "name": graph.name, "doc": graph.doc, "dims": dict(graph.dims), "loss": graph.loss,
            "outputs": list(graph.outputs), "renamed": renamed,
            "tensors": {n: _tensor_meta(t) for n, t in graph.tensors.items()}, "nodes": nodes}


def write(model, graph, exporter, renamed: dict[str, str]) -> None:
    """Store the metadata document in the model's metadata_props."""
    import onnx

    doc = build(graph, exporter, renamed)
    onnx.helper.set_model_props(model, {KEY: json.dumps(doc, separators=(",", ":"))})  # keys in the graph's order
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


# the way back -------------------------------------------------------------------------------

DOMAIN = "gtool"  # the domain of the one-node stand-ins `collapse` makes for intact groups


def collapse(model, doc: dict):
    """A copy of `model` in which the ONNX nodes of each gtool node that are exactly as exported
    are replaced by one node of domain `gtool` (op type: the gtool op; attrs as JSON), which
    `gtool/onnx/convert/gtool_ops.py` turns back into that op. Nodes and initializers that only
    the replaced nodes read are dropped. The metadata itself is left out of the copy."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.metadata_props[:]
    g = out.graph
    by_name = {n.name: n for n in g.node if n.name}
    helpers = {t.name: t for t in g.initializer if t.name not in doc.get("tensors", {})}
    replaced: dict[str, object] = {}  # ONNX node name -> the stand-in (at the group's last node) or None
    for name, entry in doc.get("nodes", {}).items():
        group = [by_name.get(n) for n in entry.get("onnx", [])]
        if not group or any(n is None for n in group) or group_hash(group, helpers) != entry.get("hash"):
            continue  # changed since the export: the importer reads the ONNX nodes
        stand_in = onnx.helper.make_node(entry["op"], entry["inputs"], [name], name=name, domain=DOMAIN,
                                         gtool_attrs=json.dumps(entry.get("attrs", {})))
        for n in group[:-1]:
            replaced[n.name] = None
        replaced[group[-1].name] = stand_in
    nodes = []
    for n in g.node:
        if n.name in replaced:
            if replaced[n.name] is not None:
                nodes.append(replaced[n.name])
        else:
            nodes.append(n)
    keep_tensors = set(doc.get("tensors", {}))
    nodes, inits = _live(nodes, list(g.initializer), {o.name for o in g.output}, keep_tensors)
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    return out


def _live(nodes: list, inits: list, outputs: set[str], keep: set[str]) -> tuple[list, list]:
    """Drop nodes whose outputs nothing reads (repeatedly), then initializers nothing reads
    (the gtool tensors in `keep` stay: they are the graph's interface)."""
    while True:
        read = set(outputs)
        for n in nodes:
            read.update(n.input)
        live = [n for n in nodes if any(o in read for o in n.output)]
        if len(live) == len(nodes):
            break
        nodes = live
    return nodes, [t for t in inits if t.name in read or t.name in keep]


def restore(model, path: str, importer):
    """The graph of a model gtool exported, or None for any other model.

    `importer(model, path)` is the ONNX importer, run on `collapse`'s copy; the result then gets
    back what ONNX has no field for (module docstring)."""
    doc = read(model)
    if doc is None:
        return None
    graph = importer(collapse(model, doc), path)
    return _apply(graph, doc)


def _tensor(name: str, entry: dict, imported, path: str):
    """The gtool tensor `name` from its metadata entry and the imported tensor (whose value,
    the initializer's, wins over the metadata: the ONNX file may hold retrained weights)."""
    from ..dims import parse_dim
    from ..format.build import nonfinite
    from ..ir import Loc, Tensor, TensorType

    shape = tuple(parse_dim(d) for d in entry["shape"])
    value = imported.value if imported is not None else None
    if entry.get("weak") and "value" in entry:
        exact = np.asarray(nonfinite(entry["value"]), dtype=entry["dtype"])
        if value is None or np.array_equal(exact.astype(value.dtype), value, equal_nan=True):
            value = exact  # the file's number, not the copy rounded to the dtype it met
        # else: changed in the ONNX file since the export: the new number
    elif not entry.get("has_value") and entry.get("init") is not None:
        value = None  # drawn from its init, as before the export
    if value is not None:
        value = np.asarray(value, dtype=entry["dtype"])
    rng = entry.get("range")
    return Tensor(name, entry["kind"], TensorType(shape, entry["dtype"], bool(entry.get("weak"))), value=value,
                  init=entry.get("init"), range=tuple(nonfinite(rng)) if rng is not None else None,
                  doc=entry.get("doc"), loc=imported.loc if imported is not None else Loc(path))


def _apply(graph, doc: dict):
    """The imported graph with the metadata's tensors, node docs and shapes, outputs, loss,
    name, doc and dims."""
    from dataclasses import replace

    from ..dims import parse_dim

    tensors = {}
    for name, entry in doc.get("tensors", {}).items():
        if name in graph.tensors or entry.get("has_value") or entry["kind"] == "input" or entry.get("init"):
            tensors[name] = _tensor(name, entry, graph.tensors.get(name), graph.path)
    tensors.update({n: t for n, t in graph.tensors.items() if n not in tensors and n not in graph.nodes})
    nodes = {}
    for name, node in graph.nodes.items():
        entry = doc.get("nodes", {}).get(name)
        if entry is not None and node.op == entry["op"] and list(node.inputs) == entry["inputs"]:
            shape = tuple(parse_dim(d) for d in entry["shape"]) if "shape" in entry else None
            node = replace(node, attrs=dict(entry.get("attrs", node.attrs)), doc=entry.get("doc"), shape=shape,
                           owner=entry.get("owner"))
        nodes[name] = node
    renamed = doc.get("renamed", {})
    outputs = tuple(renamed.get(o, o) for o in graph.outputs)
    loss = doc.get("loss") if doc.get("loss") in tensors or doc.get("loss") in nodes else None
    dims = {k: v for k, v in (doc.get("dims") or {}).items() if isinstance(v, int)}
    out = graph.evolve(tensors=tensors, nodes=nodes, outputs=outputs, loss=loss,
                       name=doc.get("name") if "name" in doc else graph.name,
                       doc=doc.get("doc") if "doc" in doc else graph.doc, dims=dims)
    return out.prune()
