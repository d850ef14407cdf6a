"""ONNX model -> gtool Graph.

Initializers become params (float) or constants (everything else: shape tensors, indices),
graph inputs become inputs (`dim_param` -> a named dim), graph outputs become outputs.
Model-local functions are inlined first, then ops that ONNX defines by a function body and
gtool has no converter for are expanded (expand.py). Each node is then either folded (every input known
at load: ONNX's own reference evaluator computes it, so shape arithmetic such as
Shape -> Gather -> Concat -> Reshape disappears) or handed to its converter, which adds
gtool nodes. Anything gtool cannot represent stops the import with `onnx-unsupported`,
naming the node by index and name: a binary file has no lines.
"""

from __future__ import annotations

import re

import numpy as np

from ..dims import Dim
from ..errors import GraphError
from ..ir import FLOAT_DTYPES, Graph, Loc, Node, Tensor, TensorType, toposort
from . import require_onnx
from .dtypes import gtool_dtype
from .expand import expand_functions
from .fold import fold_node
from .registry import ImportContext, find_converter

#: An .onnx file is read whole into memory; weights make models much larger than text graphs,
#: whose cap is 16 MiB, so the cap here is the one for data files (docs/onnx.md).
MAX_ONNX_BYTES = 512 << 20

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_model(path: str):
    """Read and parse an .onnx file; a missing, huge or malformed file is a clear error."""
    onnx = require_onnx()
    from ..format.source import read_capped

    data = read_capped(path, MAX_ONNX_BYTES, "a model file")
    return parse_model(onnx, data, path)


def parse_model(onnx, data: bytes, path: str):
    """Bytes -> a checked ModelProto, or GraphError onnx-bad-model (truncated, not ONNX, invalid)."""
    from google.protobuf.message import DecodeError

    model = onnx.ModelProto()
    if not data:
        raise GraphError("onnx-bad-model", "the file is empty; an .onnx file holds a protobuf ModelProto", path=path)
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise GraphError("onnx-bad-model", f"not a valid ONNX model: the protobuf cannot be read ({e}); "
                         "the file may be truncated or not ONNX", path=path) from None
    if not model.HasField("graph") or not model.graph.output:
        raise GraphError("onnx-bad-model", "not a valid ONNX model: it has no graph or no graph outputs "
                         "(the file may be truncated or not ONNX)", path=path)
    try:
        onnx.checker.check_model(_with_output_shapes(model))
    except Exception as e:  # onnx raises ValidationError and, for some files, other errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GraphError("onnx-bad-model", f"the ONNX checker refuses the model: {first}", path=path) from None
    return model


def _with_output_shapes(model):
    """The checker wants a shape on every graph output; exporters often leave it out, and
    gtool infers it anyway. A copy with an (unchecked) empty shape there passes the rest."""
    missing = [vi for vi in model.graph.output if vi.type.HasField("tensor_type")
               and not vi.type.tensor_type.HasField("shape")]
    if not missing:
        return model
    copy = type(model)()
    copy.CopyFrom(model)
    for vi in copy.graph.output:
        if vi.type.HasField("tensor_type") and not vi.type.tensor_type.HasField("shape"):
            vi.type.tensor_type.shape.SetInParent()
    return copy


def load_onnx(path: str) -> Graph:
    """The library entry: an .onnx file as a gtool Graph (not yet validated)."""
    return import_model(read_model(path), path)


def import_model(model, path: str) -> Graph:
    """ONNX ModelProto -> Graph: see the module docstring."""
    onnx = require_onnx()
    from .meta import restore  # a model gtool exported: its graph back, metadata applied (docs/onnx.md)

    restored = restore(model, path, import_model)
    if restored is not None:
        return restored
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise GraphError("onnx-bad-model", "the model imports no version of the default ONNX domain", path=path)
    if model.functions:
        import onnx.inliner

        model = onnx.inliner.inline_local_functions(model)
    model, origins = expand_functions(model)
    g = model.graph
    if g.sparse_initializer:
        raise GraphError("onnx-unsupported", "sparse initializers are not supported", path=path)
    ctx = ImportContext(path, opset)
    _initializers(ctx, g)
    _inputs(ctx, g)
    for i, node in enumerate(g.node):
        ctx.begin(origins[i], node)
        _convert(ctx, node)
    outputs = _outputs(ctx, g)
    order, _ = toposort(ctx.nodes, set(ctx.tensors))
    graph = Graph(tensors=ctx.tensors, nodes={n: ctx.nodes[n] for n in order}, outputs=tuple(outputs),
                  name=g.name or None, doc=(g.doc_string or model.doc_string or None), path=path)
    return graph.prune()


def _initializers(ctx: ImportContext, g) -> None:
    from onnx import numpy_helper

    for t in g.initializer:
        if t.data_location == 1:  # EXTERNAL
            raise GraphError("onnx-unsupported", f"initializer '{t.name}' keeps its data in an external file; "
                             "gtool reads self-contained models only", path=ctx.path)
        dtype = gtool_dtype(t.data_type, ctx, f"initializer '{t.name}'")
        value = numpy_helper.to_array(t)
        if dtype in FLOAT_DTYPES and 0 not in value.shape:
            shape = tuple(Dim.const(int(d)) for d in value.shape)
            tensor = Tensor(t.name, "param", TensorType(shape, dtype), value=value, doc=t.doc_string or None,
                            loc=Loc(ctx.path, pointer="/graph/initializer"))
            ctx.tensors[t.name] = tensor
            ctx.types[t.name] = tensor.type
            ctx.alias[t.name] = t.name
        else:
            ctx.values[t.name] = value  # a constant: known at load, materialised where used as data


def _dim_name(text: str) -> str:
    """A dim_param as a gtool dim name (an identifier; other characters become '_')."""
    if _IDENT.fullmatch(text):
        return text
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return name if _IDENT.fullmatch(name) else f"d_{name}"


def _inputs(ctx: ImportContext, g) -> None:
    for k, vi in enumerate(g.input):
        if vi.name in ctx.alias or vi.name in ctx.values:
            continue  # an initializer listed as an input (IR < 4): its value is the default
        tt = vi.type
        if not tt.HasField("tensor_type"):
            raise GraphError("onnx-unsupported", f"graph input '{vi.name}' has type {tt.WhichOneof('value')}, "
                             "not a tensor; gtool handles tensors only", path=ctx.path, node=vi.name)
        dtype = gtool_dtype(tt.tensor_type.elem_type, ctx, f"graph input '{vi.name}'")
        if not tt.tensor_type.HasField("shape"):
            raise GraphError("onnx-unsupported", f"graph input '{vi.name}' has no shape (not even a rank)",
                             path=ctx.path, node=vi.name)
        dims = []
        for j, d in enumerate(tt.tensor_type.shape.dim):
            if d.HasField("dim_value"):
                if d.dim_value < 1:
                    raise GraphError("onnx-unsupported", f"graph input '{vi.name}' has a dim of size {d.dim_value} "
                                     "(gtool dims are >= 1)", path=ctx.path, node=vi.name)
                dims.append(Dim.const(d.dim_value))
            elif d.dim_param:
                dims.append(Dim.sym(_dim_name(d.dim_param)))
            else:
                dims.append(Dim.sym(_dim_name(f"{vi.name}_dim{j}")))
        tensor = Tensor(vi.name, "input", TensorType(tuple(dims), dtype), doc=vi.doc_string or None,
                        loc=Loc(ctx.path, pointer=f"/graph/input/{k}"))
        ctx.tensors[vi.name] = tensor
        ctx.types[vi.name] = tensor.type
        ctx.alias[vi.name] = vi.name


def _foldable(ctx: ImportContext, node) -> bool:
    present = [i for i in node.input if i]
    return all(i in ctx.values for i in present) if present else node.op_type == "Constant"


def _convert(ctx: ImportContext, node) -> None:
    """Fold or convert one ONNX node; record the gtool name (or known value) of each output."""
    if node.domain in ("", "ai.onnx") and _foldable(ctx, node):
        values = fold_node(ctx, node)
        if values is not None:
            for out, v in zip(node.output, values):
                if out:
                    ctx.values[out] = v
            return
    conv = find_converter(node.op_type, node.domain, ctx.opset)
    if conv is None:
        domain = f" of domain '{node.domain}'" if node.domain not in ("", "ai.onnx") else ""
        ctx.unsupported(node, f"op {node.op_type}{domain} (opset {ctx.opset}) has no gtool converter")
    try:
        results = conv.fn(ctx, node)
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError) as e:  # a malformed node, e.g. an
        # attribute of the wrong type: refused with the node named, never a traceback
        raise ctx.error("onnx-unsupported", f"cannot convert this node ({type(e).__name__}: {e})", node) from None
    if conv.strict:
        ctx.check_attributes(node)
    if len(results) < len([o for o in node.output if o]):
        raise ctx.error("onnx-unsupported", f"the converter gives {len(results)} outputs; the node has "
                        f"{len(node.output)}", node)
    final = node.output[0] if node.output else None
    for out, r in zip(node.output, results):
        if not out or r is None:
            continue
        if isinstance(r, np.ndarray):
            ctx.values[out] = r
            continue
        if r in ctx.created and out not in ctx.types and r != out:
            ctx.rename(r, out)
            r = out
        ctx.alias[out] = r
    owner = ctx.alias.get(final, final) if final else None
    for n in ctx.created:
        node_ = ctx.nodes.get(n)
        if node_ is not None and n.startswith("__") and owner and owner in ctx.nodes:
            ctx.nodes[n] = Node(node_.name, node_.op, node_.inputs, node_.attrs, doc=node_.doc, loc=node_.loc,
                                owner=owner)


def _outputs(ctx: ImportContext, g) -> list[str]:
    """Graph outputs keep their ONNX names (an identity node where the value has another name)."""
    outs = []
    for vi in g.output:
        name = ctx.name(vi.name) if (vi.name in ctx.alias or vi.name in ctx.values) else None
        if name is None:
            raise GraphError("onnx-bad-model", f"graph output '{vi.name}' is not produced by any node", path=ctx.path)
        if name != vi.name and vi.name not in ctx.types:
            ctx.index, ctx.onnx_node, ctx.created = -1, None, []
            new = ctx.add("identity", [name])
            ctx.rename(new, vi.name)
            name = vi.name
        outs.append(name)
    return outs


__all__ = ["MAX_ONNX_BYTES", "import_model", "load_onnx", "parse_model", "read_model"]
