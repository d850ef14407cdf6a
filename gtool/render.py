"""Drawing graphs: a Graph (with optional values, gradients, saved tensors) -> Graphviz DOT text.

Rendering draws values it is given and never runs a graph: `gtool.api.all_values` and
`gtool.api.all_grads` compute what `--values` and `--grads` show (it does build the gradient
graph, which is data, for --backward and the saved marks).

One walk over the graph in its topological order builds a drawing (boxes, arrows, clusters;
see render_dot): names, ops and attrs on boxes, shapes and dtypes on arrows, marks for fan-out,
saved-for-backward bytes and NaN/Inf. `--backward` draws the emitted gradient graph with each
backward node titled by its role; `--diff` marks what changed; `max_nodes` collapses a big
drawing by name prefix. Nothing depends on ids, hashing or set order, so the same file gives
byte-identical DOT and CI can diff diagrams.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from .dims import format_shape
from .dtypes import is_float as is_float_dtype
from .dtypes import np_dtype
from .errors import GraphError, UsageError
from .ir import Graph, Node, Tensor
from .render_dot import COLOR, FILL, LEGEND, ROUNDED, Arrow, Box, Drawing, emit, emit_diff
from .render_image import IMAGE_FORMATS, render_image, write
from .render_text import formula, human_bytes, is_literal, nonfinite, num, op_text, summary, type_text
from .validate import types_of

if TYPE_CHECKING:
    from .autodiff import Gradient

__all__ = ["COLOR", "FILL", "IMAGE_FORMATS", "LEGEND", "diff_to_dot", "draw", "draw_backward", "emit", "formula", "save",
           "is_literal", "render_image", "saved_for_backward", "to_dot", "write"]

SHAPE_ONLY = {("sum_to", 1), ("size", 0)}  # (op, input position) read for its shape only: not saved


def saved_for_backward(graph: Graph, gg: Graph, values: dict | None = None, dims: dict | None = None) -> dict[str, str]:
    """Forward values that backward nodes read (what the backward pass must keep), with their bytes.

    Bytes come from the values when given, else from the declared shapes with the file's dims
    (a free dim leaves the size symbolic, e.g. `512 * batch B`).
    """
    types = types_of(graph)
    bindings = {**graph.dims, **(dims or {})}
    read: list[str] = []
    for node in gg.nodes.values():
        if node.name in graph.nodes:
            continue
        for k, i in enumerate(node.inputs):
            if i in graph and i not in read and not is_literal(graph.tensors.get(i)) and (node.op, k) not in SHAPE_ONLY:
                read.append(i)
    out = {}
    for name in graph.names():
        if name not in read:
            continue
        t = types[name]
        itemsize = np_dtype(t.dtype).itemsize
        if values is not None and name in values:
            out[name] = human_bytes(np.asarray(values[name]).nbytes)
            continue
        size = math.prod(t.shape) if t.shape else 1
        try:
            out[name] = human_bytes((size * itemsize).evaluate(bindings) if hasattr(size, "evaluate") else size * itemsize)
        except KeyError:
            out[name] = f"{size * itemsize} B"
    return out


def gradient(graph: Graph, wrt=None, of: str | None = None) -> Gradient:
    """The gradient graph that --backward draws, with what its names mean: built by autodiff (a
    graph, nothing is run; its generated names are deterministic, so values computed on
    api.grad's copy match it)."""
    from . import autodiff

    return autodiff.grad(graph, (wrt,) if isinstance(wrt, str) else wrt, of)


def gradient_graph(graph: Graph, wrt=None, of: str | None = None) -> Graph:
    """The gradient graph alone (see `gradient`)."""
    return gradient(graph, wrt, of).graph


def backward_graph(graph: Graph, wrt=None, of: str | None = None) -> Graph | None:
    """The gradient graph, or None when the graph has nothing to differentiate (no saved marks then)."""
    try:
        return gradient_graph(graph, wrt, of)
    except GraphError:
        return None


# building the drawing ---------------------------------------------------------------------------


def _tensor_box(t: Tensor, kind: str) -> Box:
    box = Box(t.name, t.name, kind, tag=kind, op=t.kind, tooltip=t.doc or "")
    if t.kind == "constant" and t.value is not None and np.asarray(t.value).size <= 4:
        box.lines.append(("= " + ", ".join(num(v) for v in np.asarray(t.value).ravel()), COLOR["note"]))
    return box


def _annotate(box: Box, name: str, *, loss: str | None, values, grads, saved, first_bad) -> None:
    if values is not None and name in values:
        v = values[name]
        box.lines.append((("= " if np.ndim(v) == 0 else f"{list(np.shape(v))} ") + summary(v), COLOR["value"]))
        box.marks.append("value")
        if nonfinite(v):
            box.marks.append("nonfinite")
    if grads is not None and name in grads:
        g = grads[name]
        box.lines.append((f"d{loss}/d{name} " + ("= " if np.ndim(g) == 0 else "") + summary(g), COLOR["grad"]))
        box.marks.append("grad")
        if nonfinite(g) and "nonfinite" not in box.marks:
            box.marks.append("nonfinite")
    if saved and name in saved:
        box.marks.append("saved")
        box.lines.append((f"saved for backward: {saved[name]}", COLOR["saved"]))
    if first_bad and first_bad[0] == name:
        box.lines.append((f"first non-finite: {first_bad[1]}", COLOR["nonfinite"]))


def first_nonfinite(graph: Graph, values=None, grads=None) -> tuple[str, str] | None:
    """Where NaN/Inf first appears: the first value in topological order that is non-finite, else
    the first gradient in backward (reverse topological) order, i.e. where the backward pass made it."""
    names = list(graph.names())
    for n in names:
        bad = nonfinite(values[n]) if values is not None and n in values else None
        if bad:
            node = graph.nodes.get(n)
            return n, f"value is {bad}" + (f" ({node.op})" if node else "")
    for n in reversed(names):
        bad = nonfinite(grads[n]) if grads is not None and n in grads else None
        if bad:
            return n, f"gradient is {bad}"
    return None


def _forward_box(graph: Graph, name: str, *, loss: str | None) -> Box:
    """A value of the forward graph: a tensor, or a node with its op line; styled by its role."""
    t = graph.tensors.get(name)
    kind = t.kind if t is not None else "op"
    if name == loss and (graph.loss is not None or name in graph.outputs):
        kind = "loss"
    elif name in graph.outputs and t is None:
        kind = "output"
    if t is not None:
        box = _tensor_box(t, kind)
        box.tag = t.kind if kind == t.kind else f"{t.kind}, {kind}"
        return box
    node = graph.nodes[name]
    if name.startswith("__"):  # a shorthand intermediate: its op is the title, its generated name the tag
        return Box(name, op_text(graph, node), kind, tag=name, cluster=node.owner, op=node.op)
    lines = [(op_text(graph, node), "#000000")]
    if node.loc.line is None and node.doc:  # a node from a file without lines (an ONNX model): where it came from
        lines.append((node.doc, COLOR["note"]))
    return Box(name, name, kind, tag="" if kind == "op" else kind, lines=lines,
               cluster=node.owner, op=node.op, tooltip=node.doc or "")


def draw(graph: Graph, *, values=None, grads=None, saved=None, fold: bool = True, title: str | None = None) -> Drawing:
    """The forward graph: names, ops, attrs; shapes and dtypes on edges; fan-out, saved and NaN marks."""
    types = types_of(graph)
    users = graph.users()
    loss = graph.loss_name()
    first_bad = first_nonfinite(graph, values, grads)
    owned = {n.owner for n in graph.nodes.values() if n.owner}
    drawn = [n for n in graph.names() if not (fold and is_literal(graph.tensors.get(n)))]
    boxes: list[Box] = []
    for name in drawn:
        box = _forward_box(graph, name, loss=loss)
        if name in owned:
            box.cluster = name
        if not users.get(name):
            box.lines.append((type_text(types[name]), COLOR["note"]))
        fan = len(users.get(name, ()))
        if fan > 1 and is_float_dtype(types[name].dtype):
            box.marks.append("fanout")
            box.lines.append((f"fans out ×{fan}: d{loss}/d{name} is a sum", COLOR["fanout"]))
        _annotate(box, name, loss=loss, values=values, grads=grads, saved=saved, first_bad=first_bad)
        boxes.append(box)
    clusters = {o: formula(graph, o) for o in graph.nodes if o in owned}
    arrows = _arrows(graph, drawn, types, fanout={b.id for b in boxes if "fanout" in b.marks})
    notes = [(f"first non-finite: '{first_bad[0]}' {first_bad[1]}", COLOR["nonfinite"])] if first_bad else []
    return Drawing(graph.name or "graph", title or graph.name or graph.path or "graph", boxes, arrows, clusters, notes)


def _arrows(graph: Graph, drawn: list[str], types, fanout=frozenset(), kind_of=None) -> list[Arrow]:
    """One arrow per use of a value (x * x gives two), labelled with the value's shape and dtype;
    arrows that only show a dependency (saved or shape-only reads) carry no label."""
    keep = set(drawn)
    out = []
    for node in graph.nodes.values():
        if node.name not in keep:
            continue
        for k, i in enumerate(node.inputs):
            if i not in keep:
                continue
            kind = kind_of(i, node, k) if kind_of else "edge"
            if kind is None:
                continue
            if kind == "edge" and i in fanout:
                kind = "fanout"
            out.append(Arrow(i, node.name, "" if kind in ("saved_edge", "shape_edge") else type_text(types[i]), kind))
    return out


_BWD = re.compile(r"^__bwd_(.+)_\d+$")


def _roles(graph: Graph, gr: Gradient) -> tuple[dict[str, list[str]], dict[str, tuple[str, bool]]]:
    """What each backward node means: `dL/dv` (a total) or `dL/dv via c` (one contribution),
    user names first; and the `add` nodes that sum the contributions at a fan-out."""
    loss, order = gr.loss, {n: k for k, n in enumerate(graph.names())}
    totals: dict[str, list[str]] = {}
    for v, n in gr.total.items():
        totals.setdefault(n, []).append(v)
    roles = {n: [f"d{loss}/d{v}" for v in sorted(vs, key=lambda v: (v.startswith("__"), order.get(v, 0)))]
             for n, vs in totals.items()}
    accumulate: dict[str, tuple[str, bool]] = {}  # add node -> (the value, a partial sum?)
    for v, parts in gr.contributions.items():
        for consumer, c in parts:
            if consumer and c not in totals:
                roles.setdefault(c, []).append(f"d{loss}/d{v} via {consumer}")
        if len(parts) > 1:  # walk back the chain of adds that sums the contributions
            n, names = gr.sums[v], {c for _, c in parts}
            for k in range(len(parts) - 1):
                if n in names or n not in gr.graph.nodes:
                    break
                accumulate[n] = (v, k > 0)
                n = gr.graph.nodes[n].inputs[0]
    return roles, accumulate


def draw_backward(graph: Graph, gr: Gradient, *, values=None, saved=None, title: str | None = None) -> Drawing:
    """The emitted gradient graph: the forward part as usual; backward nodes titled by their role
    (dL/dv, a contribution via a consumer, a fan-out sum Σ); gradient edges in another colour."""
    gg, loss = gr.graph, gr.loss
    types = types_of(gg)
    forward = set(graph.names())
    fwd_users = graph.users()
    roles, accumulate = _roles(graph, gr)
    wrt_out = {out: w for w, out in gr.outputs.items()}
    first_bad = first_nonfinite(gg, values, None)
    used = {i for n in gg.nodes.values() for i in n.inputs}
    owned = {n.owner for n in graph.nodes.values() if n.owner}
    boxes: list[Box] = []
    drawn = [n for n in gg.names() if not is_literal(gg.tensors.get(n))]
    for name in drawn:
        t = gg.tensors.get(name)
        role = roles.get(name, [])
        if name in forward:
            box = _forward_box(graph, name, loss=loss)
            if name in owned:
                box.cluster = name
            fan = len(fwd_users.get(name, ()))
            if fan > 1 and is_float_dtype(types[name].dtype) and name in gr.contributions:
                box.marks.append("fanout")
                box.lines.append((f"fans out ×{fan}: d{loss}/d{name} is a sum", COLOR["fanout"]))
        elif t is not None:  # the seed dL/dL
            box = Box(name, f"d{loss}/d{loss}", "seed", tag=name, op="constant",
                      lines=[("= " + num(np.asarray(t.value).item()), COLOR["note"])])
            role = [r for r in role if r != f"d{loss}/d{loss}"]
            if role:
                box.lines.append(("= " + " = ".join(role), COLOR["grad"]))
        else:
            node = gg.nodes[name]
            sigma = "Σ " if name in accumulate else ""
            if name in wrt_out:
                kind, head = "gradient", f"{sigma}d{loss}/d{wrt_out[name]}"
            elif name in accumulate:
                v, partial = accumulate[name]
                kind, head = "accumulate", f"Σ d{loss}/d{v}" + (" (partial)" if partial else "")
            else:
                kind, head = "backward", role[0] if role else op_text(gg, node)
            box = Box(name, head, kind, tag=name, op=node.op)
            op_line = op_text(gg, node)
            if op_line != head:
                box.lines.append((op_line, "#000000"))
            if sigma:
                n_parts = len(gr.contributions[accumulate[name][0]])
                box.lines.append((f"sum of {n_parts} contributions (fan-out)", COLOR["fanout"]))
            bare = head.removeprefix("Σ ")
            rest = [r for r in role if r != bare and not bare.startswith(r + " ")]
            if rest:
                box.lines.append(("= " + " = ".join(rest), COLOR["grad"]))
            m = _BWD.match(name)
            if m and m.group(1) in graph.nodes:
                box.cluster = "bwd." + graph.owner(m.group(1))
        if name not in used:
            box.lines.append((type_text(types[name]), COLOR["note"]))
        _annotate(box, name, loss=loss, values=values, grads=None, saved=saved, first_bad=first_bad)
        boxes.append(box)
    clusters = {o: formula(graph, o) for o in graph.nodes if o in owned}
    for box in boxes:
        if box.cluster and box.cluster.startswith("bwd.") and box.cluster not in clusters:
            clusters[box.cluster] = f"backward of {box.cluster[4:]}"

    def kind_of(src: str, node: Node, k: int) -> str:
        if node.name in forward:
            return "edge"
        if src in forward:
            return None if (node.op, k) in SHAPE_ONLY else "saved_edge"  # a shape-only read is no data flow
        return "grad_edge"

    fan = {b.id for b in boxes if "fanout" in b.marks}
    arrows = _arrows(gg, drawn, types, fanout=fan, kind_of=kind_of)
    notes = [(f"first non-finite: '{first_bad[0]}' {first_bad[1]}", COLOR["nonfinite"])] if first_bad else []
    name = (graph.name or "graph") + "_backward"
    return Drawing(name, title or f"{graph.name or 'graph'}: gradient of {loss} with respect to {', '.join(gr.wrt)}",
                   boxes, arrows, clusters, notes)


# --diff ------------------------------------------------------------------------------------------


def _signature(graph: Graph, name: str):
    t = graph.tensors.get(name)
    if t is not None:
        return ("tensor", t.kind, format_shape(t.shape), t.dtype)
    node = graph.nodes[name]
    return ("node", node.op, node.inputs, tuple(sorted((k, repr(v)) for k, v in node.attrs.items())))


def mark_changes(old: Graph, new: Graph, a: Drawing, b: Drawing) -> tuple[int, int]:
    """Highlight what differs (name + op + inputs): changed/added in `b`, changed/removed in `a`."""

    def differs(name: str) -> bool:
        return _signature(old, name) != _signature(new, name)

    def flag(box: Box, note: str | None = None) -> None:
        box.marks.append("changed")
        if note is not None:
            box.lines.append((note, COLOR["changed"]))

    changed = 0
    for box in b.boxes:
        if box.id not in old:
            flag(box, "added")
        elif differs(box.id):
            was = formula(old, box.id).split(" = ", 1)[1] if box.id in old.nodes else old.tensors[box.id].kind
            flag(box, f"changed; was {was}")
        else:
            continue
        changed += 1
    removed = 0
    for box in a.boxes:
        if box.id not in new:
            flag(box, "removed")
            removed += 1
        elif differs(box.id):
            flag(box)
    return changed, removed


# --max-nodes ------------------------------------------------------------------------------------


def _group_key(name: str, owner: dict[str, str]) -> str:
    m = _BWD.match(name)
    if m:
        return "__bwd_" + owner.get(m.group(1), m.group(1))
    return owner.get(name, name)


def collapse(drawing: Drawing, max_nodes: int, owner: dict[str, str] | None = None) -> Drawing:
    """At most `max_nodes` boxes: merge shorthand parts into their owner, then names by ever
    shorter prefixes (`layer3_W` -> `layer3` -> `layer`), else consecutive runs in order."""
    if len(drawing.boxes) <= max_nodes:
        return drawing
    owner = owner or {}
    base = [_group_key(b.id, owner) for b in drawing.boxes]
    parts = [[p for p in re.split(r"[_.]+", k) if p] or [k] for k in base]
    keys = base
    if len(dict.fromkeys(keys)) > max_nodes:
        for depth in range(max(len(p) for p in parts) - 1, 0, -1):
            keys = ["_".join(p[:depth]) for p in parts]
            if len(dict.fromkeys(keys)) <= max_nodes:
                break
        else:  # consecutive runs in data-flow order; a tensor goes with its first reader
            keys = _runs(drawing, max_nodes)
    groups: dict[str, list[Box]] = {}
    for key, box in zip(keys, drawing.boxes):
        groups.setdefault(key, []).append(box)
    boxes, where = [], {}
    for key, members in groups.items():
        if len(members) == 1:
            box = members[0]
            box.cluster = None
        else:
            ops = Counter(m.op or m.kind for m in members)
            box = Box("group." + key, key + ("" if key.startswith("part ") else "*"), "group",
                      tag=f"{len(members)} values", members=tuple(m.id for m in members))
            box.lines.append((", ".join(f"{c} {op}" for op, c in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
                              "#000000"))
            for mark in ("nonfinite", "changed", "saved", "fanout"):
                if any(mark in m.marks for m in members):
                    box.marks.append(mark)
            for m in members:
                if m.kind in ("loss", "gradient"):
                    box.lines.append((f"holds {m.kind} {m.title}", COLOR["note"]))
        for m in members:
            where[m.id] = box.id
        boxes.append(box)
    arrows: dict[tuple[str, str], list[Arrow]] = {}
    for a in drawing.arrows:
        s, d = where[a.src], where[a.dst]
        if s != d:
            arrows.setdefault((s, d), []).append(a)
    merged = [Arrow(s, d, al[0].label if len(al) == 1 else f"{len(al)} edges", al[0].kind) for (s, d), al in arrows.items()]
    notes = drawing.notes + [(f"{len(drawing.boxes)} values collapsed into {len(boxes)} boxes (--max-nodes {max_nodes})",
                              COLOR["note"])]
    return Drawing(drawing.name, drawing.title, boxes, merged, {}, notes)


def _runs(drawing: Drawing, max_nodes: int) -> list[str]:
    """Group keys for consecutive runs of boxes in drawing order, each tensor moved just before
    its first reader (so `W` joins the layer that uses it)."""
    index = {b.id: k for k, b in enumerate(drawing.boxes)}
    reader: dict[str, int] = {}
    for a in drawing.arrows:
        reader[a.src] = min(reader.get(a.src, len(index)), index[a.dst])
    place = {b.id: reader.get(b.id, index[b.id]) - 0.5 if b.kind in ROUNDED else index[b.id] for b in drawing.boxes}
    order = sorted(index, key=lambda n: (place[n], index[n]))
    size = math.ceil(len(order) / max_nodes)
    rank = {n: k // size for k, n in enumerate(order)}
    return [f"part {rank[b.id] + 1}" for b in drawing.boxes]


def owners(graph: Graph) -> dict[str, str]:
    return {n.name: n.owner for n in graph.nodes.values() if n.owner}


# the library entry point ------------------------------------------------------------------------


def to_dot(graph: Graph, *, values=None, grads=None, saved: bool = True, backward: bool = False, wrt=None,
           of: str | None = None, rankdir: str = "TB", legend: bool = True, max_nodes: int | None = None,
           dims: dict | None = None, html_labels: bool = True, remat=None) -> str:
    """DOT text for a graph (or, with `backward`, for its gradient graph; then `values` are the
    gradient graph's values). `saved` marks what backward keeps, when the graph has a loss;
    with `remat` (a policy, docs/memory.md) it also marks what backward recomputes instead.
    `html_labels=False` writes plain-text labels, for a Graphviz without HTML-like labels (graphviz.wasm)."""
    if max_nodes is not None and max_nodes < 1:
        raise UsageError("usage", f"--max-nodes must be at least 1, got {max_nodes}")
    if backward:
        gr = _rematerialized(graph, gradient(graph, wrt, of), remat, dims)
        keep = saved_for_backward(graph, gr.graph, values, dims) if saved else None
        drawing = draw_backward(graph, gr, values=values, saved=keep)
        own = {**owners(graph)}
    else:
        gr = None
        if saved:
            try:
                gr = _rematerialized(graph, gradient(graph, wrt, of), remat, dims)
            except GraphError:  # nothing to differentiate: no saved marks
                if remat not in (None, "none"):
                    raise
        gg = gr.graph if gr is not None else None
        keep = saved_for_backward(graph, gg, values, dims) if gg is not None else None
        drawing = draw(graph, values=values, grads=grads, saved=keep)
        own = owners(graph)
    if gr is not None and saved:
        _mark_recomputed(drawing, gr)
    if max_nodes is not None:
        drawing = collapse(drawing, max_nodes, own)
    return emit(drawing, rankdir=rankdir, legend=legend, html_labels=html_labels)


def _rematerialized(graph: Graph, gr: Gradient, remat, dims: dict | None) -> Gradient:
    if remat in (None, "none"):
        return gr
    from .memory.remat import rematerialize

    return rematerialize(gr, remat, {**graph.dims, **(dims or {})})


def _mark_recomputed(drawing: Drawing, gr: Gradient) -> None:
    """The lesson's table as a picture: values the backward pass recomputes (and the
    `__remat_` nodes that do it) get a teal mark; what it keeps has the purple `saved` mark."""
    from .memory.remat import REMAT_PREFIX, recomputed

    copies = recomputed(gr)
    owner = {c: v for v, cs in copies.items() for c in cs}
    for box in drawing.boxes:
        if box.id in copies:
            box.marks.append("recomputed")
            box.lines.append(("recomputed in the backward pass, not kept", COLOR["recomputed"]))
        elif box.id.startswith(REMAT_PREFIX) and box.id in owner:
            box.marks.append("recomputed")
            box.lines.append((f"recomputes {owner[box.id]}", COLOR["recomputed"]))


def diff_to_dot(old: Graph, new: Graph, *, labels: tuple[str, str] | None = None, rankdir: str = "TB",
                legend: bool = True, max_nodes: int | None = None, html_labels: bool = True) -> str:
    """DOT text with `old` and `new` side by side, what changed highlighted."""
    a, b = draw(old), draw(new)
    changed, removed = mark_changes(old, new, a, b)
    if max_nodes is not None:
        a, b = collapse(a, max_nodes, owners(old)), collapse(b, max_nodes, owners(new))
    labels = labels or (old.path or "old", new.path or "new")
    line = f"{changed} changed or added, {removed} removed" if changed or removed else "no differences"
    return emit_diff(a, b, labels, rankdir=rankdir, legend=legend, summary_line=line, html_labels=html_labels)


def save(graph: Graph, path: str, **options) -> str | None:
    """Draw a graph into a file (.dot, .gv, .svg, .png, .pdf) with `to_dot`'s options; returns the
    renderer of an image. Unlike `write(to_dot(...))`, graphviz.wasm then gets the plain-label
    form it can draw (it has no HTML-like labels)."""
    return write(to_dot(graph, **options), path, plain=lambda: to_dot(graph, **options, html_labels=False))
