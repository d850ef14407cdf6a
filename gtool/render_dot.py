"""The drawing model (boxes, arrows, clusters) and its Graphviz DOT text (images: render_image).

gtool.render builds a Drawing from a graph; this module only knows how a Drawing looks: the
styles (data, documented in docs/render.md), HTML labels, the legend, clusters, and the DOT
text itself, written here rather than by the `graphviz` package so that every string from a
graph file is escaped one way (see `quote`). Output order is the drawing's order, so the DOT
text is deterministic.
"""

from __future__ import annotations

import html
import re
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field

from .errors import UsageError

# styles ------------------------------------------------------------------------------------

FILL = {
    "input": "#d6e6f5", "param": "#d3ecd0", "constant": "#ececec", "op": "#ffffff",
    "output": "#ffeeb0", "loss": "#f7c1b0", "backward": "#f1ebf8", "gradient": "#ffeeb0",
    "accumulate": "#fcd9b0", "seed": "#f7c1b0", "group": "#e6e6e6",
}
ROUNDED = ("input", "param", "constant", "seed")  # tensors are rounded; operations are square
COLOR = {
    "edge": "#444444", "grad": "#2b6cb0", "saved": "#7b3294", "fanout": "#b35900",
    "nonfinite": "#d62728", "changed": "#c2185b", "note": "#555555", "value": "#1a5e20", "recomputed": "#00897b",
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
    "recomputed": ("mark", "teal dashed border: recomputed in the backward pass instead of kept (--remat)"),
    "nonfinite": ("mark", "red: NaN or Inf"),
    "value": ("text", "green text: the value (--values; min/mean/max of a tensor)"),
    "grad": ("text", "blue text: the gradient dL/d(value) (--grads)"),
    "grad_edge": ("edge", "blue arrow: gradient flow"),
    "saved_edge": ("edge", "dashed purple arrow: a saved value read by backward"),
    "changed": ("mark", "magenta thick border: changed, added or removed"),
}
_MARK_COLOR = {"fanout": COLOR["fanout"], "saved": COLOR["saved"], "nonfinite": "red", "changed": COLOR["changed"],
               "recomputed": COLOR["recomputed"]}
_EDGE_COLOR = {"grad_edge": COLOR["grad"], "saved_edge": COLOR["saved"]}
RANKDIRS = ("TB", "LR")


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
    tooltip: str = ""  # the value's doc from the file (a tooltip in SVG)


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


# safe text -------------------------------------------------------------------------------------
# Every string from a graph file (names, docs, attrs, the graph's name, file paths) reaches the DOT
# text through `clean` and then `quote` or `html_text`, so a file cannot end a string early and
# add attributes of its own (`image="/etc/passwd"`), and control characters, noncharacters and
# lone surrogates become visible escapes that `dot`, XML and terminals all accept.

_PLAIN_ID = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*|-?(\.[0-9]+|[0-9]+(\.[0-9]*)?)")
KEYWORDS = {"node", "edge", "graph", "digraph", "subgraph", "strict"}
_BIDI = {"\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}


def _unsafe(ch: str) -> bool:
    """A character that DOT or XML rejects, or that hides or reorders text: C0/C1 controls, lone
    surrogates, line/paragraph separators, noncharacters (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF), bidi controls."""
    o = ord(ch)
    return (unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or 0xFDD0 <= o <= 0xFDEF or (o & 0xFFFE) == 0xFFFE
            or ch in _BIDI)


def clean(text: str) -> str:
    """`text` with each unsafe character written as a visible escape (\\x01, \\ufffe, \\U0010ffff)."""
    if text.isascii() and text.isprintable():
        return text
    out = []
    for ch in text:
        if _unsafe(ch):
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
        else:
            out.append(ch)
    return "".join(out)


class Html(str):
    """An HTML-like label built here (`<...>` in DOT); its text parts went through `html_text`."""

    __slots__ = ()


def html_text(text: str) -> str:
    """Text for inside an HTML-like label: cleaned, with &, < and > as entities."""
    return html.escape(clean(text), quote=False)


class Esc(str):
    """A plain label built here (an escString: its parts went through `esc_text`, lines end in \\n)."""

    __slots__ = ()


def esc_text(text: str) -> str:
    """Text for inside a quoted DOT string: cleaned, backslashes doubled, quotes escaped, and & as
    &amp; (Graphviz reads `&name;` and `&#N;` in strings as characters, so `&#0;` would be one)."""
    return clean(text).replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"')


def quote(value) -> str:
    """A DOT ID or attribute value: bare when it is a plain identifier or number, else a quoted
    string. In a quoted string DOT knows one escape, \\" for a quote; a backslash is doubled
    (so `\\N`, `\\G`, `\\l` in a name or attr are shown, not expanded), and a string that would end
    in a backslash gets a space so the backslash cannot escape the closing quote."""
    if isinstance(value, Html):
        return f"<{value}>"
    if isinstance(value, Esc):
        text = str(value)
    else:
        text = clean(str(value))
        if _PLAIN_ID.fullmatch(text) and text.lower() not in KEYWORDS:
            return text
        text = esc_text(text)
    return f'"{text} "' if text.endswith("\\") else f'"{text}"'


def _a_list(label=None, attrs: dict | None = None) -> str:
    """`label=... k=v ...`: the label first, the rest sorted by key (as the graphviz package writes them)."""
    items = ([("label", label)] if label is not None else []) + sorted((attrs or {}).items())
    return " ".join(f"{quote(k)}={quote(v)}" for k, v in items if v is not None)


class Dot:
    """A DOT document written statement by statement; `subgraph` nests with one more tab."""

    def __init__(self, name: str, graph_attr: dict, node_attr: dict, edge_attr: dict) -> None:
        self.lines = [f"digraph {quote(name)} {{"]
        self.depth = 1
        for kind, attrs in (("graph", graph_attr), ("node", node_attr), ("edge", edge_attr)):
            self.stmt(f"{kind} [{_a_list(None, attrs)}]")

    def stmt(self, text: str) -> None:
        self.lines.append("\t" * self.depth + text)

    def attr(self, **attrs) -> None:
        self.stmt(_a_list(None, attrs))

    def node(self, id_: str, label, **attrs) -> None:
        self.stmt(f"{quote(id_)} [{_a_list(label, attrs)}]")

    def edge(self, src: str, dst: str, label=None, **attrs) -> None:
        a_list = _a_list(label, attrs)
        self.stmt(f"{quote(src)} -> {quote(dst)}" + (f" [{a_list}]" if a_list else ""))

    @contextmanager
    def subgraph(self, name: str):
        self.stmt(f"subgraph {quote(name)} {{")
        self.depth += 1
        try:
            yield self
        finally:
            self.depth -= 1
            self.stmt("}")

    @property
    def source(self) -> str:
        return "\n".join(self.lines + ["}"]) + "\n"


# DOT output -------------------------------------------------------------------------------------


def _plain(rows: list[str]) -> Esc:
    return Esc("\\n".join(esc_text(r) for r in rows))


def _label(box: Box, html_labels: bool = True) -> Html | Esc:
    """Title (bold), tag (small grey) and one coloured line per annotation; without HTML-like
    labels (graphviz.wasm has none) the same lines as plain text, uncoloured."""
    if not html_labels:
        return _plain([box.title + (f" ({box.tag})" if box.tag else "")] + [t for t, _ in box.lines])
    head = f"<b>{html_text(box.title)}</b>"
    if box.tag:
        head += f' <font point-size="9" color="{COLOR["note"]}">{html_text(box.tag)}</font>'
    rows = [head] + [f'<font point-size="10" color="{c}">{html_text(t)}</font>' for t, c in box.lines]
    return Html("<br/>".join(rows))


def _box_attrs(box: Box) -> dict[str, str]:
    attrs = {"shape": "box", "style": "filled", "fillcolor": FILL[box.kind]}
    if box.tooltip:  # a doc may have several lines: they stay lines (escString \n), other controls are escaped
        attrs["tooltip"] = _plain(box.tooltip.splitlines())
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
    if "recomputed" in box.marks:
        attrs["color"] = COLOR["recomputed"]
        attrs["penwidth"] = "2"
        attrs["style"] = attrs.get("style", "filled") + ",dashed"
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


def _emit_body(g: Dot, drawing: Drawing, prefix: str = "", html_labels: bool = True) -> None:
    """Boxes in drawing order; a cluster is written where its first box comes."""
    done: set[str] = set()
    for box in drawing.boxes:
        if box.cluster and box.cluster in drawing.clusters:
            if box.cluster in done:
                continue
            done.add(box.cluster)
            with g.subgraph(f"cluster_{prefix}{box.cluster}") as c:
                c.attr(label=drawing.clusters[box.cluster], style="rounded,dashed", color="#9a9a9a", labelloc="b", labeljust="l",
                       fontcolor=COLOR["note"], fontsize="10")
                for m in drawing.boxes:
                    if m.cluster == box.cluster:
                        c.node(prefix + m.id, _label(m, html_labels), **_box_attrs(m))
        else:
            g.node(prefix + box.id, _label(box, html_labels), **_box_attrs(box))
    for a in drawing.arrows:
        g.edge(prefix + a.src, prefix + a.dst, label=a.label, **_arrow_attrs(a))


def _legend(keys: list[str]) -> Html:
    """One small table: a swatch and a line of text per style that the drawing uses."""
    rows = ['<tr><td colspan="2" align="left"><font point-size="10"><b>legend</b></font></td></tr>']
    for k in keys:
        kind, text = LEGEND[k]
        if kind == "mark":
            color = _MARK_COLOR[k]
            swatch = f'<td border="2" color="{color}" bgcolor="#ffffff" width="22"> </td>'
        elif kind == "text":
            swatch = f'<td width="22"><font color="{COLOR[k]}" point-size="10">1.5</font></td>'
        elif kind == "edge":
            color = _EDGE_COLOR[k]
            swatch = f'<td width="22"><font color="{color}" point-size="10">⟶</font></td>'
        else:
            swatch = f'<td border="1" color="#888888" bgcolor="{FILL[kind]}" width="22"> </td>'
        rows.append(f'<tr>{swatch}<td align="left"><font point-size="9">{html_text(text)}</font></td></tr>')
    return Html('<table border="1" cellborder="0" cellspacing="2" cellpadding="2" color="#bbbbbb">'
                + "".join(rows) + "</table>")


def _add_legend(g: Dot, keys: list[str], html_labels: bool = True) -> None:
    with g.subgraph("legend") as s:
        s.attr(rank="sink")
        if html_labels:
            s.node("__legend", _legend(keys), shape="plaintext", margin="0")
            return
        for k in keys:  # no tables without HTML-like labels: one small box per style, drawn in that style
            kind, text = LEGEND[k]
            if kind == "text":
                continue  # plain labels have no coloured lines
            attrs = {"shape": "box", "fontsize": "9", "style": "filled", "fillcolor": "#ffffff"}
            if kind in FILL:
                attrs["fillcolor"] = FILL[kind]
            elif kind == "mark":
                attrs.update(color=_MARK_COLOR[k], penwidth="2")
            else:  # coloured arrows
                attrs.update(shape="plaintext", fontcolor=_EDGE_COLOR[k])
            s.node(f"__legend_{k}", _plain([text]), **attrs)


def _title(drawing: Drawing, html_labels: bool = True) -> Html | Esc:
    if not html_labels:
        return _plain([drawing.title] + [t for t, _ in drawing.notes])
    rows = [f"<b>{html_text(drawing.title)}</b>"]
    rows += [f'<font point-size="10" color="{c}">{html_text(t)}</font>' for t, c in drawing.notes]
    return Html("<br/>".join(rows))


def _digraph(name: str, rankdir: str) -> Dot:
    if rankdir not in RANKDIRS:
        raise UsageError("usage", f"--rankdir must be one of {', '.join(RANKDIRS)}, got {rankdir!r}")
    return Dot(
        name,
        graph_attr={"rankdir": rankdir, "fontname": FONT, "labelloc": "t", "nodesep": "0.3", "ranksep": "0.45"},
        node_attr={"fontname": FONT, "fontsize": "11", "margin": "0.12,0.05"},
        edge_attr={"fontname": FONT, "fontsize": "9", "color": COLOR["edge"], "fontcolor": COLOR["note"],
                   "arrowsize": "0.7"},
    )


def emit(drawing: Drawing, *, rankdir: str = "TB", legend: bool = True, html_labels: bool = True) -> str:
    """The DOT text of a drawing (`html_labels=False`: plain-text labels, for graphviz.wasm)."""
    g = _digraph(drawing.name, rankdir)
    g.attr(label=_title(drawing, html_labels))
    _emit_body(g, drawing, html_labels=html_labels)
    keys = drawing.legend_keys()
    if legend and keys:
        _add_legend(g, keys, html_labels)
    return g.source


def emit_diff(a: Drawing, b: Drawing, labels: tuple[str, str], *, rankdir: str = "TB", legend: bool = True,
              summary_line: str = "", html_labels: bool = True) -> str:
    """Two drawings side by side, each in its own cluster."""
    g = _digraph("diff", rankdir)
    g.attr(label=_title(Drawing("diff", f"{labels[0]} → {labels[1]}", [], [], {},
                                [(summary_line, COLOR["changed"])] if summary_line else []), html_labels))
    for prefix, d, label in (("old.", a, labels[0]), ("new.", b, labels[1])):
        with g.subgraph(f"cluster_{prefix[:-1]}") as c:
            c.attr(label=_title(Drawing(d.name, label, [], [], {}, d.notes), html_labels), style="rounded", color="#666666")
            _emit_body(c, d, prefix, html_labels)
    keys = [k for k in LEGEND if k in set(a.legend_keys()) | set(b.legend_keys())]
    if legend and keys:
        _add_legend(g, keys, html_labels)
    return g.source
