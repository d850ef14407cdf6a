"""ONNX ops that ONNX itself defines as a function of other ops, expanded before import.

Many ONNX ops (Celu, Mish, HardSwish, Shrink, PRelu, Range, MeanVarianceNormalization, ...)
carry a *function body* in their schema: the op written with simpler ops. When gtool has no
converter for such an op, the node is replaced by that body, so a model using it loads as long
as the body's ops convert; an op with neither a converter nor a body is still refused
(`onnx-unsupported`). A converter, when there is one, always wins: it maps the op onto gtool's
own record (with its stable forward and exact VJP) instead of a chain of primitives.

The body's values are renamed under the node's name (`Celu_3/...`), attributes that refer to
the node's are substituted (the schema's default where the node leaves one out), and a body
written for an older opset is used only if none of its ops changed since in more than the
types they accept. Bodies
that depend on the node's input types ("context-dependent" functions, e.g. for dtype-specific
constants) are built from the types ONNX's shape inference gives; a node whose input types
are unknown is left alone and refused later with the usual message.
"""

from __future__ import annotations

from typing import Any

from .registry import find_converter

#: bodies may use other function ops (Celu -> Elu is a converter, but HardSwish -> HardSigmoid
#: ...): expand again, a bounded number of times
_MAX_ROUNDS = 4


def _opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _schema(onnx, op: str, opset: int):
    try:
        return onnx.defs.get_schema(op, opset, "")
    except onnx.defs.SchemaError:
        return None


def _version(versions, opset: int) -> int | None:
    """The newest function version at or below the model's opset."""
    found = [v for v in versions if v <= opset]
    return max(found) if found else None


def _body(onnx, node, schema, opset: int, types: dict) -> Any | None:
    """The FunctionProto of `node`'s schema function at `opset`, or None."""
    v = _version(schema.function_opset_versions, opset) if schema.has_function else None
    if v is not None:
        blob = schema.get_function_with_opset_version(v)
    else:
        v = (_version(schema.context_dependent_function_opset_versions, opset)
             if schema.has_context_dependent_function else None)
        if v is None:
            return None
        inputs = [types.get(name) for name in node.input]
        if any(name and t is None for name, t in zip(node.input, inputs)):
            return None  # a body built for unknown types could be wrong: leave the node to be refused
        empty = onnx.TypeProto().SerializeToString()
        try:
            blob = schema.get_context_dependent_function_with_opset_version(
                v, node.SerializeToString(), [t.SerializeToString() if t is not None else empty for t in inputs])
        except Exception:  # noqa: BLE001 - ONNX's builder refuses the node: the op stays unsupported
            return None
    if not blob:
        return None
    fn = onnx.FunctionProto()
    fn.ParseFromString(blob)
    return fn if fn.node else None


def _known_types(onnx, model) -> dict:
    """Value name -> TypeProto, from the graph's declarations and ONNX's shape inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - a model shape inference cannot follow: declared types only
        inferred = model
    g = inferred.graph
    types = {vi.name: vi.type for vi in list(g.input) + list(g.value_info) + list(g.output)}
    for t in g.initializer:
        types.setdefault(t.name, onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims)))
    return types


#: ops whose meaning changed at some opset with the same inputs and attribute names (Softmax
#: and friends: `axis` coerced to 2-D before 13, one axis from 13 on)
_SAME_SIGNATURE_NEW_MEANING = {"Softmax", "LogSoftmax", "Hardmax"}


def _signature(schema) -> tuple:
    return (tuple(i.name for i in schema.inputs), tuple(o.name for o in schema.outputs),
            tuple(sorted(schema.attributes)))


def _outdated(onnx, fn, opset: int) -> bool:
    """Whether the body uses an op whose definition changed between the body's opset and the
    model's in more than the types it accepts (ReduceSum's axes moved from attribute to input
    at 13, Softmax's axis changed meaning): spliced in as it is, such a node would mean
    something else."""
    body = next((o.version for o in fn.opset_import if o.domain in ("", "ai.onnx")), opset)
    if body == opset:
        return False
    for n in fn.node:
        if n.domain not in ("", "ai.onnx"):
            return True
        a, b = _schema(onnx, n.op_type, body), _schema(onnx, n.op_type, opset)
        if a is None or b is None:
            return True
        if a.since_version != b.since_version and (
                _signature(a) != _signature(b) or n.op_type in _SAME_SIGNATURE_NEW_MEANING):
            return True
    return False


def _attribute(onnx, ref, node, schema):
    """The value of a body attribute that refers to the node's attribute `ref.ref_attr_name`:
    the node's own, else the schema's default (renamed to the body's name), else None."""
    want = ref.ref_attr_name
    src = next((a for a in node.attribute if a.name == want), None)
    if src is None:
        spec = schema.attributes.get(want)
        src = spec.default_value if spec is not None and spec.default_value.type != 0 else None
    if src is None:
        return None
    out = onnx.AttributeProto()
    out.CopyFrom(src)
    out.name = ref.name
    return out


def _splice(onnx, fn, node, schema, prefix: str) -> list | None:
    """The body's nodes wired to `node`'s inputs and outputs, internal values renamed with
    `prefix`; None when the body holds a subgraph attribute (not handled)."""
    names = {formal: actual for formal, actual in zip(fn.input, node.input)}
    names.update({formal: "" for formal in list(fn.input)[len(node.input):]})  # optional inputs left out
    names.update({formal: actual for formal, actual in zip(fn.output, node.output)})
    out = []
    for k, b in enumerate(fn.node):
        n = onnx.NodeProto()
        n.CopyFrom(b)
        n.name = f"{prefix}{b.name or b.op_type + '_' + str(k)}"
        for i, v in enumerate(b.input):
            n.input[i] = names.get(v, f"{prefix}{v}" if v else "")
        for i, v in enumerate(b.output):
            n.output[i] = names.get(v, f"{prefix}{v}" if v else "")
        del n.attribute[:]
        for a in b.attribute:
            if a.type in (a.GRAPH, a.GRAPHS):
                return None
            if a.ref_attr_name:
                a = _attribute(onnx, a, node, schema)
                if a is None:
                    continue
            n.attribute.append(a)
        out.append(n)
    return out


def _round(onnx, model, origins: list[int]) -> list[int] | None:
    """One pass: every expandable node of the main graph replaced by its function body.
    Returns the new nodes' indices in the original file (`origins` maps the current nodes
    there), or None when nothing was expanded."""
    opset = _opset(model)
    types: dict | None = None
    nodes, where, changed = [], [], False
    for i, node in enumerate(model.graph.node):
        spliced = None
        if node.domain in ("", "ai.onnx") and find_converter(node.op_type, "", opset) is None:
            schema = _schema(onnx, node.op_type, opset)
            if schema is not None and (schema.has_function or schema.has_context_dependent_function):
                if schema.has_context_dependent_function and types is None:
                    types = _known_types(onnx, model)
                fn = _body(onnx, node, schema, opset, types or {})
                if fn is not None and not _outdated(onnx, fn, opset):
                    spliced = _splice(onnx, fn, node, schema, f"{node.name or node.op_type + '_' + str(origins[i])}/")
        if spliced is None:
            spliced = [node]
        else:
            changed = True
        nodes.extend(spliced)
        where.extend([origins[i]] * len(spliced))
    if not changed:
        return None
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return where


def expand_functions(model) -> tuple[Any, list[int]]:
    """(`model` with every node that gtool cannot convert but ONNX defines by a function body
    replaced by that body, the index in `model` each resulting node comes from). `model` itself
    is returned, untouched, when nothing needs expanding; otherwise a copy."""
    import onnx

    origins = list(range(len(model.graph.node)))
    if not any(n.domain in ("", "ai.onnx") and find_converter(n.op_type, "", _opset(model)) is None
               for n in model.graph.node):
        return model, origins
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for _ in range(_MAX_ROUNDS):
        where = _round(onnx, out, origins)
        if where is None:
            break
        origins = where
    return out, origins
