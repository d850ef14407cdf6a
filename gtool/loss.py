"""`--loss EXPR`: a scalar loss written in the shorthand over a model's values and extra data.

An exported model (ONNX, or a YAML graph without `loss:`) ends at its outputs: `logits`, `y`.
To differentiate it, grad, grad-check, render, explain and memory take a loss expression such
as `cross_entropy(logits, t)` or `sum(y * r)`. `with_loss` appends that expression to the graph
as ordinary nodes (the same parser and checks as a node written in a file) and makes it the
graph's loss, so everything downstream (autodiff, the executor, the drawings) sees a plain
graph. Names in the expression that the model does not have become new inputs, typed from the
data given for them (`--inputs batch.npz`). A name that is not an identifier (ONNX's `output.1`,
or torch's default output names such as `19`) is written in backquotes. An axis of the data becomes a fresh dim (bound by
the expression's shape rules, e.g. `t`'s axis to `logits`'s batch dim) unless its size is 1,
which stays 1 so that the data can broadcast.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from .dims import Dim, format_shape
from .dtypes import is_float as is_float_dtype
from .errors import GraphError, UsageError, did_you_mean
from .ir import DTYPES, Graph, Loc, Node, Tensor, TensorType
from .validate import inference_of

__all__ = ["with_loss"]

_COLUMN = re.compile(r" \(column (\d+)\)$")
_QUOTED = re.compile(r"`([^`]+)`")
_HINT_INDENT = len("    hint: ")  # where Diagnostic.format starts a hint's text


def with_loss(graph: Graph, expr: str, data: dict | None = None) -> Graph:
    """`graph` with the scalar `expr` appended as its loss (a node named `loss`, or `loss_<k>`
    when the graph has a `loss` already); the model's outputs stay outputs.

    Raises UsageError: `bad-expression` (with a caret under the column), `unknown-op`,
    `unknown-name` (a name that is neither a value of the model nor given as data, with the
    nearest name), `non-scalar-loss`, or the shape rule's code when the expression does not fit
    the model's shapes.
    """
    from .format.expr import parse_expression

    if not isinstance(expr, str):
        raise UsageError("usage", f"the loss expression must be a string, not {type(expr).__name__}")
    owner = _owner(graph)
    text, quoted = _unquote(expr, set(graph.names()) | set(data or {}))
    try:
        parsed, literals = parse_expression(text, owner)
    except GraphError as e:
        raise _syntax_error(expr, e.diagnostic.message) from None
    if quoted:
        parsed = [replace(p, inputs=tuple(quoted.get(i, i) for i in p.inputs)) for p in parsed]
    made = {p.name for p in parsed} | {c.name for c in literals}
    clash = sorted(made & set(graph.names()))
    if clash:  # cannot happen with _owner's choice; a plain error rather than a silently merged graph
        raise UsageError("duplicate-name", f"--loss: the expression would make '{clash[0]}', a name the model has")
    loc = Loc(graph.path, pointer="--loss")
    nodes = [Node(p.name, p.op, tuple(p.inputs), dict(p.attrs), loc=loc, owner=owner if p.name != owner else None)
             for p in parsed]
    _check_nodes(graph, nodes, owner)
    tensors = dict(graph.tensors)
    for c in literals:
        dtype = "bool" if isinstance(c.value, bool) else "int64" if isinstance(c.value, int) else "float64"
        tensors[c.name] = Tensor(c.name, "constant", TensorType((), dtype, True), np.array(c.value, dtype), loc=loc)
    for name in _new_names(graph, nodes, made):
        tensors[name] = _data_input(graph, name, expr, data or {}, set(tensors) | made, loc)
    outputs = tuple(graph.outputs) + ((owner,) if owner not in graph.outputs else ())
    out = graph.evolve(tensors=tensors, nodes={**graph.nodes, **{n.name: n for n in nodes}}, outputs=outputs,
                       loss=owner, doc=(graph.doc or "").rstrip("\n") + f"\nloss: {expr}".lstrip("\n"))
    ctx = _check_types(out, owner, expr)
    # the new inputs' fresh dims, as the expression bound them (t: [t_0] -> [batch]): a run then
    # checks the data of t against the model's batch instead of binding t_0 on its own
    typed = {n: Tensor(n, t.kind, TensorType(ctx.resolve_shape(t.shape), t.dtype), doc=t.doc, loc=t.loc)
             for n, t in tensors.items() if n not in graph.tensors and t.kind == "input"}
    for n, t in typed.items():
        _check_data_shape(n, t.shape, np.shape(data[n]), expr)
    if any(t.shape != tensors[n].shape for n, t in typed.items()):
        out = out.evolve(tensors={**tensors, **typed})
        _check_types(out, owner, expr)
    return out


def _unquote(expr: str, taken: set[str]) -> tuple[str, dict[str, str]]:
    """`expr` with each backquoted name (`` `output.1` ``: ONNX names need not be identifiers)
    replaced by a free identifier of the same length, so columns in errors stay right, and
    {identifier: name}."""
    quoted: dict[str, str] = {}
    parts, last = [], 0
    for k, m in enumerate(_QUOTED.finditer(expr)):
        width = m.end() - m.start()
        for letter in "qQzZ":
            ident = f"{letter}{k}".ljust(width, "_")
            if len(ident) == width and ident not in taken and ident not in expr:
                break
        else:
            raise UsageError("bad-expression", f"--loss: too many backquoted names in {expr!r}")
        quoted[ident] = m.group(1)
        parts += [expr[last:m.start()], ident]
        last = m.end()
    return "".join(parts) + expr[last:], quoted


def _owner(graph: Graph) -> str:
    """`loss`, or the first `loss_<k>` whose node and generated names `__<owner>_<n>` are free."""
    taken = set(graph.names())
    k = 1
    while True:
        name = "loss" if k == 1 else f"loss_{k}"
        if name not in taken and not any(n.startswith(f"__{name}_") for n in taken):
            return name
        k += 1


def _syntax_error(expr: str, message: str) -> UsageError:
    """The parser's message, with the expression and a caret under the column it names."""
    message = message.split(": ", 1)[1] if message.startswith("cannot parse expression") else message
    m = _COLUMN.search(message)
    hint = None
    if m and "\n" not in expr:
        col = int(m.group(1))
        hint = f"{expr}\n{' ' * (_HINT_INDENT + col - 1)}^"
        message = message[:m.start()] + f" (column {col})"
    return UsageError("bad-expression", f"--loss: cannot parse {expr!r}: {message}", hint=hint)


def _check_nodes(graph: Graph, nodes: list[Node], owner: str) -> None:
    """Op names, arity and attrs, by the same checks as a node written in a graph file."""
    from .format.build import Builder

    b = Builder({}, {}, graph.path or "<--loss>")
    b.shorthand.add(owner)
    for node in nodes:
        if not b.check_node(node, ""):
            d = b.diags[-1]
            raise UsageError(d.code, f"--loss: {d.message}", op=d.op, hint=d.hint)


def _new_names(graph: Graph, nodes: list[Node], made: set[str]) -> list[str]:
    """Names the expression reads that neither the model nor the expression itself defines."""
    out: list[str] = []
    for node in nodes:
        for i in node.inputs:
            if i not in graph and i not in made and i not in out:
                out.append(i)
    return out


def _data_input(graph: Graph, name: str, expr: str, data: dict, taken: set[str], loc: Loc) -> Tensor:
    """A new input for a name the model lacks, typed from its data."""
    if name not in data:
        given = [k for k in data if k not in graph]
        near = did_you_mean(name, [*graph.outputs, *(n for n in graph.names() if not n.startswith("__")), *given])
        hint = f"did you mean '{near}'? " if near else ""
        hint += (f"Data given for names the model lacks: {', '.join(given)}. " if given else "")
        hint += f"Its outputs: {', '.join(graph.outputs)}." if graph.outputs else ""
        raise UsageError("unknown-name", f"--loss reads '{name}', which is not a value of the model and has no data "
                         "(give it with --input or --inputs to make it an input of the loss)", hint=hint.strip() or None)
    try:
        arr = np.asarray(data[name])
    except (TypeError, ValueError) as e:
        raise UsageError("bad-input", f"data for '{name}' is not an array: {e}") from None
    dtype = str(arr.dtype)
    if arr.dtype.kind == "f" and dtype not in DTYPES:
        dtype = "float64"
    if dtype not in DTYPES:
        raise UsageError("bad-input", f"data for '{name}' has dtype {arr.dtype}; the loss's inputs may be "
                         f"{', '.join(DTYPES)}")
    dims = _dim_names(graph) | taken
    shape = []
    for k, n in enumerate(arr.shape):
        if n == 1:
            shape.append(Dim.const(1))  # a size-1 axis is there to broadcast
            continue
        base = f"{name}_{k}"
        fresh, j = base, 1
        while fresh in dims:
            j += 1
            fresh = f"{base}_{j}"
        dims.add(fresh)
        shape.append(Dim.sym(fresh))
    return Tensor(name, "input", TensorType(tuple(shape), dtype), doc=f"data for the loss {expr!r}", loc=loc)


def _check_data_shape(name: str, shape: tuple, data_shape: tuple, expr: str) -> None:
    """Where the expression fixed an axis of a new input to a number, the data must have it."""
    for k, (d, n) in enumerate(zip(shape, data_shape)):
        if d.is_const and d.value != n:
            raise UsageError("shape-mismatch", f"--loss {expr!r}: the data for '{name}' has shape {list(data_shape)}, "
                             f"but the expression needs {format_shape(shape)} (axis {k} is {n}, not {d.value})")


def _dim_names(graph: Graph) -> set[str]:
    names = set(graph.dims)
    for t in graph.tensors.values():
        for d in t.shape:
            names |= d.symbols()
    return names


def _check_types(graph: Graph, owner: str, expr: str):
    """Infer the new graph's types: a shape error, a non-scalar or non-float loss is the call's fault."""
    try:
        types = inference_of(graph).types
    except GraphError as e:
        mine = [d for d in e.diagnostics if d.pointer == "--loss" or d.node in (owner, None)] or e.diagnostics
        d = mine[0]
        raise UsageError(d.code, f"--loss {expr!r}: {d.message}", op=d.op, hint=d.hint) from None
    t = types[owner]
    if t.rank != 0:
        raise UsageError("non-scalar-loss", f"--loss {expr!r} has shape {format_shape(t.shape)}; a loss is a scalar",
                         hint="reduce it, e.g. sum(...) or mean(...)")
    if not is_float_dtype(t.dtype):
        raise UsageError("dtype-mismatch", f"--loss {expr!r} is {t.dtype}; a loss is a float")
    return inference_of(graph).ctx
