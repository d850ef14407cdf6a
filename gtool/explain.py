"""The backward pass as the lesson writes it by hand: forward values in order, then in reverse
order each node's upstream gradient, the local derivative of each input, each contribution,
and at every fan-out the sum of the contributions.

Every number comes from running the emitted gradient graph with each contribution node as an
extra output (`Gradient.contributions`), so what is printed is what `gtool grad`
computes, not a second implementation. Local derivatives of scalar nodes come from the op's own
VJP rule on a one-node graph. For tensors the VJP used is shown as a formula (a small table per
op below). Scalar graphs also get the symbolic closed form when sympy is installed.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from . import api, interp
from .dims import format_shape
from .dtypes import is_float as is_float_dtype
from .ir import Graph, Node, Tensor, TensorType
from .ops import get_op
from .render_text import expression, is_literal, literal_text, num, summary
from .validate import types_of


def _texts(op: str, key: str):
    """The op record's explain texts (`OpDef.explain`): "partial" (d(out)/d(input k) of scalar
    nodes) or "vjp" (the vector-Jacobian product); {a} {b} are the inputs, {out} the output,
    {g} the upstream gradient dL/d(out). The texts live in each op's record (issue 11)."""
    opdef = get_op(op)
    return opdef.explain.get(key) if opdef is not None else None


def _broadcasts(op: str) -> bool:
    opdef = get_op(op)
    return opdef is not None and (opdef.group.startswith("elementwise") or op == "where")


#: A backward pass longer than twice this is summarised: the first and the last DETAIL steps
#: in full, one `omitted` step for the middle (and the same for the forward pass). Nobody
#: reads 20,000 steps, and each step shown in full runs its op's VJP on a one-node graph.
DETAIL = 25
#: Closed forms (sympy) only for graphs up to this many live nodes: simplifying a deep
#: expression is slow and sympy recurses on its depth.
SYMBOLIC_MAX_NODES = 200


def explain(graph: Graph, inputs: dict | None = None, *, wrt=None, of: str | None = None, backend=None,
            random_inputs: bool = False, seed: int = 0, dims: dict | None = None) -> dict:
    """The steps of the backward pass, as data (`to_text` and `to_json` format them).

    Linear in the graph's size: one forward run, one run of the gradient graph, and at most
    2 * DETAIL steps in full per pass (a long chain's middle becomes one `omitted` step).
    """
    first = api.gradient(graph, wrt, of)
    targets = list(first.wrt)
    # every differentiated node also a target, so no contribution is pruned as dead (one that
    # only feeds a stop_gradient); the backward pass itself, and the names in it, stay the same
    extra = [v for v in first.contributions if v in graph.nodes and v not in targets]
    gr = api.gradient(graph, targets + extra, of) if extra else first
    gg, loss, contribs, total, out_of = gr.graph, gr.loss, gr.contributions, gr.total, gr.outputs
    run = dict(backend=backend, random=random_inputs, seed=seed, dim_values=dims)
    values = api.all_values(graph, inputs, backend=backend, random_inputs=random_inputs, seed=seed, dims=dims)
    wanted = [c for parts in contribs.values() for _, c in parts] + list(total.values())
    wanted = [n for n in dict.fromkeys(wanted + list(gg.outputs)) if n in gg]
    grads = interp.execute(gg, inputs, wanted, **run)
    types = types_of(graph)
    live = graph.ancestors([loss])
    forward = [n for n in graph.names() if n in live and not is_literal(graph.tensors.get(n))]
    steps = [_forward_step(graph, n, values, types, loss) if n is not None else _omitted(graph, m, "forward")
             for n, m in _summarised(forward)]
    steps.append({"kind": "seed", "name": loss, "text": f"d{loss}/d{loss}", "value": 1.0})
    steps += _backward_steps(graph, values, grads, (loss, contribs, total), types)
    for w in targets:
        parts = contribs.get(w, [])
        steps.append({"kind": "result", "name": w, "text": f"d{loss}/d{w}", "value": grads[out_of[w]],
                      "parts": [{"via": c, "value": grads[n]} for c, n in parts] if len(parts) > 1 else [],
                      "note": None if parts else f"{loss} does not depend on {w}"})
    steps.append(_kept_step(first, values))
    steps.append(symbolic(graph, loss, targets, values, {w: grads[out_of[w]] for w in targets}))
    return {"graph": graph.name, "path": graph.path, "loss": loss, "wrt": targets, "steps": steps}


def _kept_step(gr, values) -> dict:
    """Which forward values the backward pass keeps, and why: the VJPs that read them (the
    lesson's store-vs-recompute table; `gtool memory` adds the executor's plan and --remat)."""
    from .memory.remat import backward_readers, vjp_owner

    kept = []
    for name, readers in backward_readers(gr).items():
        owners = list(dict.fromkeys(vjp_owner(gr, r) for r in readers))
        kept.append({"name": name, "bytes": int(np.asarray(values[name]).nbytes) if name in values else None,
                     "read_by": owners})
    return {"kind": "kept", "values": kept}


def _summarised(names: list[str]) -> list[tuple[str | None, list[str]]]:
    """(name, []) for each name shown in full and (None, middle) once for a long list's middle."""
    if len(names) <= 2 * DETAIL + 1:
        return [(n, []) for n in names]
    middle = names[DETAIL:-DETAIL]
    return [(n, []) for n in names[:DETAIL]] + [(None, middle)] + [(n, []) for n in names[-DETAIL:]]


def _omitted(graph: Graph, names: list[str], phase: str, values=None) -> dict:
    ops = Counter(graph.nodes[n].op if n in graph.nodes else graph.tensors[n].kind for n in names)
    step = {"kind": "omitted", "phase": phase, "count": len(names), "first": names[0], "last": names[-1],
            "ops": dict(ops.most_common())}
    if values is not None:
        step["upstream"] = [values[0], values[1]]
    return step


def _backward_steps(graph: Graph, values, grads, gradient: tuple, types) -> list[dict]:
    """Each node's backprop step in reverse order, and the fan-out sums where they complete;
    `gradient` is (loss, contributions, totals) of the gradient graph that `grads` ran."""
    loss, contribs, total = gradient
    by_consumer: dict[str, dict[str, list[str]]] = {}  # node -> its input -> its contribution nodes
    for inp, parts in contribs.items():
        for who, c in parts:
            by_consumer.setdefault(who, {}).setdefault(inp, []).append(c)
    order = [node for node in reversed(list(graph.nodes.values())) if node.name in contribs]
    steps: list[dict] = []
    seen: dict[str, int] = {}
    for name, middle in _summarised([node.name for node in order]):
        if name is None:
            ups = (grads[total[middle[0]]], grads[total[middle[-1]]])
            steps.append(_omitted(graph, middle, "backward", ups))
            hidden = middle
        else:
            node = graph.nodes[name]
            mine = {k: list(v) for k, v in by_consumer.get(name, {}).items()}
            steps.append(_backprop_step(graph, node, values, grads, mine, total, types, loss))
            hidden = [name]
        sums = 0
        for consumer in hidden:
            for inp in dict.fromkeys(graph.nodes[consumer].inputs):
                parts = contribs.get(inp, [])
                seen[inp] = seen.get(inp, 0) + len(by_consumer.get(consumer, {}).get(inp, ()))
                if len(parts) > 1 and seen[inp] == len(parts):
                    sums += 1
                    if name is not None:
                        steps.append(_sum_step(inp, parts, grads, total, graph, loss))
        if name is None:
            steps[-1]["sums"] = sums  # fan-outs completed inside the omitted part
    return steps


def _forward_step(graph: Graph, name: str, values, types, loss: str) -> dict:
    t, node = graph.tensors.get(name), graph.nodes.get(name)
    step = {"kind": "forward", "name": name, "op": node.op if node else t.kind, "shape": _shape(types[name]),
            "dtype": types[name].dtype, "value": values[name], "expr": None, "substituted": None}
    if node is not None:
        step["expr"] = expression(graph, name)
        if all(np.ndim(values[i]) == 0 for i in node.inputs) and len(node.inputs) > 0:
            sub = expression(graph, name, rename={i: num(np.asarray(values[i]).item()) for i in node.inputs})
            step["substituted"] = sub if sub != step["expr"] else None
    step["role"] = "loss" if name == loss else (t.kind if t is not None else None)
    return step


def _shape(t: TensorType) -> list:
    return [d.to_json() for d in t.shape]


def _backprop_step(graph: Graph, node: Node, values, grads, mine: dict[str, list[str]], total, types,
                   loss: str) -> dict:
    """One node's step; `mine` maps each input to this node's contribution nodes for it (consumed)."""
    g = grads[total[node.name]]
    scalar = types[node.name].rank == 0 and all(types[i].rank == 0 for i in node.inputs)
    local = _local_partials(graph, node, values) if scalar else None
    ins = []
    for k, inp in enumerate(node.inputs):
        if not mine.get(inp):
            continue
        contrib = mine[inp].pop(0)
        item = {"name": inp, "position": k, "contribution": grads[contrib], "node": contrib,
                "shape": _shape(types[inp]), "local": None, "vjp": None}
        if local is not None and local[k] is not None:
            item["local"] = {"formula": _partial_text(graph, node, k), "value": local[k]}
        else:
            item["vjp"] = _vjp_text(graph, node, k, types)
            used = [i for i in dict.fromkeys(node.inputs) if _mentions(item["vjp"], i)]
            item["operands"] = {"g": _shape(types[node.name]), **{i: _shape(types[i]) for i in used}}
        ins.append(item)
    return {"kind": "backprop", "node": node.name, "op": node.op, "expr": expression(graph, node.name),
            "upstream": g, "shape": _shape(types[node.name]), "inputs": ins, "loss": loss}


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def _sum_step(name: str, parts, grads, total, graph: Graph, loss: str) -> dict:
    return {"kind": "sum", "name": name, "text": f"d{loss}/d{name}", "value": grads[total[name]],
            "parts": [{"via": c, "value": grads[n]} for c, n in parts]}


def _local_partials(graph: Graph, node: Node, values) -> list[float | None]:
    """d(node)/d(input k) of a scalar node, from the op's own VJP rule on a one-node graph
    (each input position gets its own name, so x * x gives x and x, as autodiff sums them)."""
    types = types_of(graph)
    tensors, names = {}, []
    for k, i in enumerate(node.inputs):
        n, t = f"in{k}", types[i]
        kind = "constant" if is_literal(graph.tensors.get(i)) else "input"
        tensors[n] = Tensor(n, kind, TensorType(t.shape, t.dtype, t.weak), value=np.asarray(values[i]))
        names.append(n)
    mini = Graph(tensors, {"out": Node("out", node.op, tuple(names), dict(node.attrs))}, ("out",), loss="out",
                 fixed_dims=dict(graph.fixed_dims))
    if not is_float_dtype(types[node.name].dtype):
        return [None] * len(names)
    targets = [n for n, i in zip(names, node.inputs) if tensors[n].kind == "input" and is_float_dtype(types[i].dtype)]
    if not targets:
        return [None] * len(names)
    gr = api.gradient(mini, targets)
    out = interp.execute(gr.graph, {n: values[i] for n, i in zip(names, node.inputs) if tensors[n].kind == "input"})
    got = {w: float(out[o]) for w, o in gr.outputs.items()}
    return [got.get(n) for n in names]


def _args(graph: Graph, node: Node, types=None) -> dict[str, str]:
    text = [literal_text(graph.tensors[i]) if is_literal(graph.tensors.get(i)) else i for i in node.inputs]
    out = {"a": text[0] if text else "", "b": text[1] if len(text) > 1 else "", "out": node.name}
    if types is not None and node.inputs:
        out["shape_a"] = format_shape(types[node.inputs[0]].shape)
    return out


def _partial_text(graph: Graph, node: Node, k: int) -> str:
    forms = _texts(node.op, "partial")
    if not forms or k >= len(forms):
        return f"local derivative of {node.op}"
    args = _args(graph, node)
    if node.op == "pow" and k == 0 and is_literal(graph.tensors.get(node.inputs[1])):
        n = float(np.asarray(graph.tensors[node.inputs[1]].value).item())
        return {0.0: "0", 1.0: "1", 2.0: f"2 * {args['a']}"}.get(n, f"{num(n)} * {args['a']} ** {num(n - 1)}")
    return forms[k].format(**args)


def _vjp_text(graph: Graph, node: Node, k: int, types) -> str:
    forms = _texts(node.op, "vjp")
    if not forms or k >= len(forms) or forms[k] is None:
        return f"vjp of {node.op}"
    args = {**_args(graph, node, types), "g": "g"}
    reduction = node.attrs.get("reduction") or "mean"
    args["per"] = " / n" if node.op == "cross_entropy" and reduction == "mean" else ""
    text = forms[k].format(**args)
    if node.op == "pow" and k == 0 and is_literal(graph.tensors.get(node.inputs[1])):
        n = float(np.asarray(graph.tensors[node.inputs[1]].value).item())
        text = f"2 g ⊙ {args['a']}" if n == 2 else f"g ⊙ {num(n)} {args['a']}^{num(n - 1)}"
    inp = node.inputs[k]
    if _broadcasts(node.op) and types[inp].shape != types[node.name].shape:
        text = f"sum_to({text}, {format_shape(types[inp].shape)})"  # undo the broadcast
    return text


# the closed form (sympy, optional) -----------------------------------------------------------------


def _sympy_ops(sp) -> dict:
    sig = lambda a: 1 / (1 + sp.exp(-a))
    same = lambda a: a
    return {
        "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "div": lambda a, b: a / b,
        "pow": lambda a, b: a ** b, "neg": lambda a: -a, "exp": sp.exp, "log": sp.log, "log1p": lambda a: sp.log(1 + a),
        "expm1": lambda a: sp.exp(a) - 1, "sqrt": sp.sqrt, "square": lambda a: a ** 2, "abs": sp.Abs, "sign": sp.sign,
        "sin": sp.sin, "cos": sp.cos, "tanh": sp.tanh, "sigmoid": sig, "relu": lambda a: sp.Max(a, 0),
        "softplus": lambda a: sp.log(1 + sp.exp(a)), "identity": same, "stop_gradient": None,
        "maximum": sp.Max, "minimum": sp.Min, "sum": same, "mean": same, "max": same, "min": same, "logsumexp": same,
    }


def symbolic(graph: Graph, loss: str, wrt: list[str], values, grads) -> dict:
    """The closed form of a scalar graph: an expression per node from its op, differentiated and
    simplified by sympy. A note instead when sympy is missing or the graph has tensors."""
    types = types_of(graph)
    live = graph.ancestors([loss])
    if any(types[n].rank != 0 for n in live):
        return {"kind": "symbolic", "note": "none (the graph has tensor values)"}
    if sum(1 for n in live if n in graph.nodes) > SYMBOLIC_MAX_NODES:
        return {"kind": "symbolic", "note": f"skipped (the loss depends on more than {SYMBOLIC_MAX_NODES} nodes)"}
    try:
        import sympy as sp
    except ImportError:
        return {"kind": "symbolic", "note": "skipped (sympy is not installed: pip install 'gtool[explain]')"}
    ops = _sympy_ops(sp)
    expr: dict = {}
    for name in graph.names():
        if name not in live:
            continue
        t = graph.tensors.get(name)
        if t is not None:
            expr[name] = _sympy_number(sp, t) if t.kind == "constant" else sp.Symbol(name, real=True)
            continue
        node = graph.nodes[name]
        fn = ops.get(node.op)
        if fn is None:
            return {"kind": "symbolic", "note": f"none (no symbolic rule for {node.op})"}
        expr[name] = fn(*[expr[i] for i in node.inputs])
    subs = {sp.Symbol(n, real=True): float(np.asarray(values[n]).item()) for n in graph.tensors if n in live}
    out = {"kind": "symbolic", "loss": loss, "expr": str(sp.simplify(expr[loss])), "gradients": []}
    for w in wrt:
        if w not in graph.tensors:
            out["gradients"].append({"name": w, "expr": None, "value": None, "note": "an intermediate: no closed form"})
            continue
        d = sp.simplify(sp.diff(expr[loss], sp.Symbol(w, real=True)))
        value = float(sp.N(d.subs(subs)))
        # a target the loss does not read may be a tensor (its gradient is all zeros): compare elementwise
        agree = bool(np.all(np.isclose(value, np.asarray(grads[w], dtype=float), rtol=1e-6, atol=1e-9, equal_nan=True)))
        out["gradients"].append({"name": w, "expr": str(d), "value": value, "agrees": agree})
    return out


def _sympy_number(sp, t: Tensor):
    v = np.asarray(t.value).item()
    if isinstance(v, (bool, int)):
        return sp.Integer(int(v))
    return sp.Rational(repr(v)) if len(repr(v)) <= 8 and "e" not in repr(v) else sp.Float(v)


# formatting ----------------------------------------------------------------------------------------


def _val(v) -> str:
    """A number, a small array as a nested list of numbers, or min/mean/max of a big one."""
    a = np.asarray(v)
    if a.ndim == 0:
        return num(a.item())
    if a.size <= 6:
        return _nested(a.tolist())
    return summary(a)


def _nested(x) -> str:
    return "[" + ", ".join(_nested(v) for v in x) + "]" if isinstance(x, list) else num(x)


#: A sum of more parts than this is printed with its first and last few parts only.
PARTS_SHOWN = 8


def _parts_text(parts) -> str:
    def one(p) -> str:
        return f"{_val(p['value'])} (via {p['via']})" if np.size(p["value"]) <= 4 else f"(via {p['via']})"

    if len(parts) <= PARTS_SHOWN:
        return " + ".join(map(one, parts))
    half = PARTS_SHOWN // 2
    return " + ".join([*map(one, parts[:half]), f"... ({len(parts) - 2 * half} more)", *map(one, parts[-half:])])


def _omitted_text(s: dict, loss: str) -> list[str]:
    ops = ", ".join(f"{op} x{n}" for op, n in s["ops"].items())
    if s["phase"] == "forward":
        return [f"  ... {s['count']} more values, {s['first']} to {s['last']} ({ops}), not shown"]
    sums = f", {s['sums']} fan-out sums" if s.get("sums") else ""
    up = s["upstream"]
    return ["", f"  ... {s['count']} more nodes, {s['first']} back to {s['last']} ({ops}{sums}), each as above;",
            f"      d{loss}/d{s['first']} = {_val(up[0])} ... d{loss}/d{s['last']} = {_val(up[1])}"]


def to_text(doc: dict) -> str:
    """The lesson's layout: forward pass, backward pass, gradients, closed form."""
    loss = doc["loss"]
    lines = [f"{doc['graph'] or doc['path']}: gradients of {loss} with respect to {', '.join(doc['wrt'])}", "",
             "Forward pass, in dependency order:"]
    results = False
    for s in doc["steps"]:
        k = s["kind"]
        if k == "omitted":
            lines += _omitted_text(s, loss)
        if k == "forward":
            shape = "" if not s["shape"] else f"  {format_shape(s['shape'])}"
            body = s["name"] + (f" = {s['expr']}" if s["expr"] else "")
            if s["substituted"]:
                body += f" = {s['substituted']}"
            role = f"   ({s['role']})" if s["role"] else ""
            lines.append(f"  {body} = {_val(s['value'])}{shape}{role}")
        elif k == "seed":
            lines += ["", "Backward pass, in reverse order:", f"  start at the loss: {s['text']} = 1"]
        elif k == "backprop":
            lines += _backprop_text(s)
        elif k == "sum":
            uses = ", ".join(p["via"] for p in s["parts"])
            lines += ["", f"  fan-out at {s['name']} (used by {uses}): {s['text']} = {_parts_text(s['parts'])} = "
                      f"{_val(s['value'])}"]
        elif k == "result":
            if not results:
                lines += ["", "Gradients:"]
                results = True
            parts = f"{_parts_text(s['parts'])} = " if s["parts"] else ""
            note = f"   ({s['note']})" if s["note"] else ""
            lines.append(f"  {s['text']} = {parts}{_val(s['value'])}{note}")
        elif k == "kept" and s["values"]:
            lines += ["", "Kept from the forward pass for the backward pass (gtool memory: the plan, --remat):"]
            for v in s["values"]:
                why = ", ".join(f"{o}'s VJP" if o != v["name"] else "its own VJP" for o in v["read_by"])
                size = f" ({v['bytes']} bytes)" if v["bytes"] is not None else ""
                lines.append(f"  {v['name']}{size}: read by {why}")
        elif k == "symbolic":
            lines += _symbolic_text(s)
    return "\n".join(lines)


def _row(label: str, text: str) -> str:
    return f"    {label:<14} {text}"


def _backprop_text(s: dict) -> list[str]:
    loss, node = s["loss"], s["node"]
    shape = f"  {format_shape(s['shape'])}" if s["shape"] else ""
    out = ["", f"  {node} = {s['expr']}   ({s['op']})", _row("upstream", f"g = d{loss}/d{node} = {_val(s['upstream'])}{shape}")]
    if not s["inputs"]:
        out.append(_row("", f"no gradient flows through {s['op']} to its inputs"))
    label = "contribution" if len(s["inputs"]) == 1 else "contributions"
    first = True
    for i in s["inputs"]:
        if i["local"]:
            value = num(i["local"]["value"])
            formula = i["local"]["formula"]
            text = f"d{node}/d{i['name']} = {formula}" + ("" if formula == value else f" = {value}")
            out.append(_row("local" if first else "", text))
            first = False
    for n, i in enumerate(s["inputs"]):
        if i["local"]:
            how = f"g · d{node}/d{i['name']} = {_val(s['upstream'])} · {num(i['local']['value'])}"
            shape = f"  {format_shape(i['shape'])}" if i["shape"] else ""
        else:
            how = i["vjp"]
            ops = ", ".join(f"{k} {format_shape(v)}" for k, v in i["operands"].items())
            shape = f"   ({ops} -> {format_shape(i['shape'])})"
        out.append(_row(label if n == 0 else "", f"d{loss}/d{i['name']} via {node} = {how} = {_val(i['contribution'])}{shape}"))
    return out


def _symbolic_text(s: dict) -> list[str]:
    if "note" in s:
        return ["", f"Closed form: {s['note']}"]
    out = ["", "Closed form (sympy):", f"  {s['loss']} = {s['expr']}"]
    for g in s["gradients"]:
        if g["expr"] is None:
            out.append(f"  d{s['loss']}/d{g['name']}: {g['note']}")
            continue
        flag = "" if g["agrees"] else "   (disagrees with autodiff!)"
        out.append(f"  d{s['loss']}/d{g['name']} = {g['expr']} = {num(g['value'])}{flag}")
    return out


def to_json(doc: dict) -> dict:
    """The steps as one JSON document (arrays as nested lists, non-finite numbers as strings)."""
    return doc
