"""Shared fixtures: load a graph from YAML/JSON text (which also exercises the loader)."""

from __future__ import annotations

import itertools

import pytest

import gtool


@pytest.fixture(scope="session")
def load_text(tmp_path_factory):
    """`load_text(text, suffix=".yaml") -> Graph`: write the text to a fresh file and load it."""
    folder = tmp_path_factory.mktemp("graph_text")
    counter = itertools.count()

    def load(text: str, suffix: str = ".yaml") -> gtool.Graph:
        path = folder / f"g{next(counter)}{suffix}"
        path.write_text(text)
        return gtool.load(path)

    return load
