"""The drawing model (boxes, arrows, clusters) and its Graphviz DOT text; images via `dot`.

gtool.render builds a Drawing from a graph; this module only knows how a Drawing looks: the
styles (data, documented in docs/render.md), HTML labels, the legend, clusters, and writing
DOT or an image. Output order is the drawing's order, so the DOT text is deterministic.
"""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, field

from .errors import GraphError, UsageError

# styles ------------------------------------------------------------------------------------

FILL = {
    "input": "#d6e6f5", "param": "#d3ecd0", "constant": "#ececec", "op": "#ffffff",
    "output": "#ffeeb0", "loss": "#f7c1b0", "backward": "#f1ebf8", "gradient": "#ffeeb0",
    "accumulate": "#fcd9b0", "seed": "#f7c1b0", "group": "#e6e6e6",
}
ROUNDED = ("input", "param", "constant", "seed")  # tensors are rounded; operations are square
COLOR = {
    "edge": "#444444", "grad": "#2b6cb0", "saved": "#7b3294", "fanout": "#b35900",
    "nonfinite": "#d62728", "changed": "#c2185b", "note": "#555555", "value": "#1a5e20",
}
FONT = "Helvetica"
LEGEND = {  # key -> (swatch attrs, text); only the keys a drawing uses are shown
    "input": ("input", "input (fed at run time)"),
    "param": ("param", "param (trainable)"),
    "constant": ("constant", "constant"),
    "op": ("op", "operation"),
    "output": ("output", "output"),
    "loss": ("loss", "loss (differentiated)"),
    "seed": ("seed", "seed dL/dL = 1"),
    "backward": ("backward", "backward operation"),
    "accumulate": ("accumulate", "Σ fan-out sum of gradient contributions"),
    "gradient": ("gradient", "gradient output dL/dx"),
    "group": ("group", "collapsed group (--max-nodes)"),
    "fanout": ("mark", "double border, orange arrows: fans out, so its gradient is a sum"),
    "saved": ("mark", "purple border: saved for backward (bytes)"),
    "nonfinite": ("mark", "red: NaN or Inf"),
    "value": ("text", "green text: the value (--values; min/mean/max of a tensor)"),
    "grad": ("text", "blue text: the gradient dL/d(value) (--grads)"),
    "grad_edge": ("edge", "blue arrow: gradient flow"),
    "saved_edge": ("edge", "dashed purple arrow: a saved value read by backward"),
    "changed": ("mark", "magenta thick border: changed, added or removed"),
}
RANKDIRS = ("TB", "LR")
IMAGE_FORMATS = ("svg", "png", "pdf")


# the drawing model ---------------------------------------------------------------------------


@dataclass
class Box:
    """One node of the picture: a value of the graph (or a collapsed group of them)."""

    id: str
    title: str
    kind: str  # a FILL key
    tag: str = ""  # small grey text after the title (the kind, or a generated name)
    lines: list[tuple[str, str]] = field(default_factory=list)  # (text, colour)
    marks: list[str] = field(default_factory=list)  # fanout, saved, nonfinite, changed
    cluster: str | None = None
    members: tuple[str, ...] = ()
    op: str = ""  # the op, or the tensor kind (what a collapsed group counts)


@dataclass
class Arrow:
    src: str
    dst: str
    label: str
    kind: str = "edge"  # edge | fanout | grad_edge | saved_edge


@dataclass
class Drawing:
    name: str
    title: str
    boxes: list[Box]
    arrows: list[Arrow]
    clusters: dict[str, str]  # key -> label
    notes: list[tuple[str, str]] = field(default_factory=list)  # (text, colour) under the title

    def legend_keys(self) -> list[str]:
        used = {b.kind for b in self.boxes} | {m for b in self.boxes for m in b.marks} | {a.kind for a in self.arrows}
        return [k for k in LEGEND if k in used]


# DOT output -------------------------------------------------------------------------------------


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _label(box: Box) -> str:
    head = f"<b>{_esc(box.title)}</b>"
    if box.tag:
        head += f' <font point-size="9" color="{COLOR["note"]}">{_esc(box.tag)}</font>'
    rows = [head] + [f'<font point-size="10" color="{c}">{_esc(t)}</font>' for t, c in box.lines]
    return "<" + "<br/>".join(rows) + ">"


def _box_attrs(box: Box) -> dict[str, str]:
    attrs = {"shape": "box", "style": "filled", "fillcolor": FILL[box.kind]}
    if box.kind in ROUNDED:
        attrs["style"] = "rounded,filled" + (",dashed" if box.kind == "constant" else "")
    if box.kind in ("output", "loss", "gradient"):
        attrs["penwidth"] = "2"
    if box.kind == "group":
        attrs["shape"] = "box3d"
    if "fanout" in box.marks:
        attrs["peripheries"] = "2"
        attrs["color"] = COLOR["fanout"]
    if "saved" in box.marks:
        attrs["color"] = COLOR["saved"]
        attrs["penwidth"] = "2"
    if "changed" in box.marks:
        attrs["color"] = COLOR["changed"]
        attrs["penwidth"] = "3"
    if "nonfinite" in box.marks:
        attrs["color"] = "red"
        attrs["fontcolor"] = "red"
        attrs["penwidth"] = "2.5"
    return attrs


def _arrow_attrs(a: Arrow) -> dict[str, str]:
    if a.kind == "grad_edge":
        return {"color": COLOR["grad"], "fontcolor": COLOR["grad"]}
    if a.kind == "saved_edge":
        return {"color": COLOR["saved"], "style": "dashed", "penwidth": "0.8"}
    if a.kind == "fanout":
        return {"color": COLOR["fanout"], "fontcolor": COLOR["fanout"]}
    return {}


def _emit_body(g, drawing: Drawing, prefix: str = "") -> None:
    """Boxes in drawing order; a cluster is written where its first box comes."""
    done: set[str] = set()
    for box in drawing.boxes:
        if box.cluster and box.cluster in drawing.clusters:
            if box.cluster in done:
                continue
            done.add(box.cluster)
            with g.subgraph(name=f"cluster_{prefix}{box.cluster}") as c:
                c.attr(label=drawing.clusters[box.cluster], style="rounded,dashed", color="#9a9a9a", labelloc="b", labeljust="l",
                       fontcolor=COLOR["note"], fontsize="10")
                for m in drawing.boxes:
                    if m.cluster == box.cluster:
                        c.node(prefix + m.id, _label(m), **_box_attrs(m))
        else:
            g.node(prefix + box.id, _label(box), **_box_attrs(box))
    for a in drawing.arrows:
        g.edge(prefix + a.src, prefix + a.dst, label=a.label, **_arrow_attrs(a))


def _legend(keys: list[str]) -> str:
    """One small table: a swatch and a line of text per style that the drawing uses."""
    rows = ['<tr><td colspan="2" align="left"><font point-size="10"><b>legend</b></font></td></tr>']
    for k in keys:
        kind, text = LEGEND[k]
        if kind == "mark":
            color = {"fanout": COLOR["fanout"], "saved": COLOR["saved"], "nonfinite": "red", "changed": COLOR["changed"]}[k]
            swatch = f'<td border="2" color="{color}" bgcolor="#ffffff" width="22"> </td>'
        elif kind == "text":
            swatch = f'<td width="22"><font color="{COLOR[k]}" point-size="10">1.5</font></td>'
        elif kind == "edge":
            color = {"grad_edge": COLOR["grad"], "saved_edge": COLOR["saved"]}[k]
            swatch = f'<td width="22"><font color="{color}" point-size="10">⟶</font></td>'
        else:
            swatch = f'<td border="1" color="#888888" bgcolor="{FILL[kind]}" width="22"> </td>'
        rows.append(f'<tr>{swatch}<td align="left"><font point-size="9">{_esc(text)}</font></td></tr>')
    return ('<<table border="1" cellborder="0" cellspacing="2" cellpadding="2" color="#bbbbbb">'
            + "".join(rows) + "</table>>")


def _add_legend(g, keys: list[str]) -> None:
    with g.subgraph(name="legend") as s:
        s.attr(rank="sink")
        s.node("__legend", _legend(keys), shape="plaintext", margin="0")


def _title(drawing: Drawing) -> str:
    rows = [f"<b>{_esc(drawing.title)}</b>"]
    rows += [f'<font point-size="10" color="{c}">{_esc(t)}</font>' for t, c in drawing.notes]
    return "<" + "<br/>".join(rows) + ">"


def _digraph(name: str, rankdir: str):
    graphviz = _graphviz()

    if rankdir not in RANKDIRS:
        raise UsageError("usage", f"--rankdir must be one of {', '.join(RANKDIRS)}, got {rankdir!r}")
    return graphviz.Digraph(
        name=name,
        graph_attr={"rankdir": rankdir, "fontname": FONT, "labelloc": "t", "nodesep": "0.3", "ranksep": "0.45"},
        node_attr={"fontname": FONT, "fontsize": "11", "margin": "0.12,0.05"},
        edge_attr={"fontname": FONT, "fontsize": "9", "color": COLOR["edge"], "fontcolor": COLOR["note"],
                   "arrowsize": "0.7"},
    )


def emit(drawing: Drawing, *, rankdir: str = "TB", legend: bool = True) -> str:
    """The DOT text of a drawing."""
    g = _digraph(drawing.name, rankdir)
    g.attr(label=_title(drawing))
    _emit_body(g, drawing)
    keys = drawing.legend_keys()
    if legend and keys:
        _add_legend(g, keys)
    return g.source


def emit_diff(a: Drawing, b: Drawing, labels: tuple[str, str], *, rankdir: str = "TB", legend: bool = True,
              summary_line: str = "") -> str:
    """Two drawings side by side, each in its own cluster."""
    g = _digraph("diff", rankdir)
    g.attr(label=_title(Drawing("diff", f"{labels[0]} → {labels[1]}", [], [], {},
                                [(summary_line, COLOR["changed"])] if summary_line else [])))
    for prefix, d, label in (("old.", a, labels[0]), ("new.", b, labels[1])):
        with g.subgraph(name=f"cluster_{prefix[:-1]}") as c:
            c.attr(label=_title(Drawing(d.name, label, [], [], {}, d.notes)), style="rounded", color="#666666")
            _emit_body(c, d, prefix)
    keys = [k for k in LEGEND if k in set(a.legend_keys()) | set(b.legend_keys())]
    if legend and keys:
        _add_legend(g, keys)
    return g.source


def _graphviz():
    """The `graphviz` package (a core dependency), imported when first drawing."""
    try:
        import graphviz
    except ImportError:
        raise UsageError("usage", "drawing needs the Python package `graphviz`",
                         hint="pip install graphviz (it is a dependency of gtool: reinstall gtool)") from None
    return graphviz


def write(dot_text: str, path: str) -> None:
    """Write DOT text, or an image rendered by the `dot` program, choosing by the extension."""
    from .format.write import write_atomic

    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if ext in ("dot", "gv"):
        write_atomic(path, dot_text if dot_text.endswith("\n") else dot_text + "\n")
        return
    if ext not in IMAGE_FORMATS:
        raise UsageError("usage", f"-o {path}: the extension must be .dot, .gv, .svg, .png or .pdf")
    write_atomic(path, render_image(dot_text, ext))


def render_image(dot_text: str, fmt: str) -> bytes:
    """Run Graphviz's `dot`; a clear usage error (exit 2) when it is not installed."""
    graphviz = _graphviz()

    if shutil.which("dot") is None:
        raise UsageError("usage", f"drawing a .{fmt} needs Graphviz's `dot` program, which is not installed",
                         hint="install it: `apt-get install graphviz` (Debian/Ubuntu) or `brew install graphviz` "
                              "(macOS); or write DOT text with -o FILE.dot")
    try:
        return graphviz.Source(dot_text).pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        raise UsageError("usage", "Graphviz's `dot` program could not be run",
                         hint="install it: `apt-get install graphviz` or `brew install graphviz`") from None
    except graphviz.CalledProcessError as e:
        raise GraphError("internal", f"dot failed: {e.stderr.decode(errors='replace').strip()}") from None
