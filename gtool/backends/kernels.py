"""Bounded, shared kernels for the numba CPU backend: compile time that grows with the number
of *different* pieces of work in a plan, not with its length.

numba's (LLVM's) compile time grows faster than linearly with the length of a function: the
peers' 2,000-op chain fused into one loop of 4,000 statements took minutes to compile. So

- fusion closes a loop after `CHUNK` members (`fusion.fuse(..., chunk=CHUNK)`), which bounds
  every function;
- values that cross from one loop to another live in one 2-D *workspace* per (shape, dtype),
  allocated once per run (row k holds one value), rather than in an array each: a segment
  binds `v = w0[ix[j]]` for the j-th workspace value it reads or writes, with `ix` (an int64
  array per call) saying which rows, so its text does not depend on where its values live;
- each segment's text is made canonical (variables renamed in order of first appearance) and
  the function is named by the hash of that text. Structurally identical chunks (the same ops
  in the same order, with the same constants) are then one function, compiled once and called
  with other rows. The 2,000-op chain's ~4,000 statements become a handful of functions.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

CHUNK = 96  # members per fused loop on the CPU (a multiple of small periods: 2, 3, 4, 6, 8, 12, ...)

# the generated code's local names: values v<k>, flat views f<k>, registers r<k>, accumulators,
# block buffers and sums, max/min temporaries, gather indices, dims d<k>, parallel loops
_LOCAL = re.compile(r"\b(v|f|r|acc|buf|t|x|j_|d|w)(\d+)\b")
_PAR = re.compile(r"\b_par\d+\b")


class Workspace:
    """Which values live in a workspace: value -> (slot, row); slots are (shape, dtype)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[int, int]] = {}
        self.slots: list[tuple[tuple, str]] = []
        self.counts: list[int] = []

    @classmethod
    def plan(cls, items, types, outputs, group_cls) -> Workspace:
        """Every array a loop stores for later loops (not an output, not one number) gets a row."""
        ws = cls()
        outs = set(outputs)
        index: dict[tuple, int] = {}
        for item in items:
            if not isinstance(item, group_cls) or item.shape == ():
                continue
            for m in item.members:
                if m.op == "reduce" or m.name not in item.stored or m.name in outs or types[m.name].scalar:
                    continue
                key = (tuple(m.v.shape), m.v.dtype)
                slot = index.setdefault(key, len(ws.slots))
                if slot == len(ws.slots):
                    ws.slots.append(key)
                    ws.counts.append(0)
                ws.rows[m.name] = (slot, ws.counts[slot])
                ws.counts[slot] += 1
        return ws

    def allocate(self, bindings) -> list[np.ndarray]:
        return [np.empty((n, *(d.evaluate(bindings) for d in shape)), np.dtype(dtype))
                for (shape, dtype), n in zip(self.slots, self.counts)]


def bind_rows(values: list[str], ws: Workspace, var) -> tuple[list[str], list[int], np.ndarray]:
    """For a segment using workspace `values` (in order): its preamble lines, the global slots
    of its workspace arguments w0, w1, ... (in order of first use), and its `ix` rows."""
    slots: list[int] = []
    lines, rows = [], []
    for j, name in enumerate(values):
        slot, row = ws.rows[name]
        if slot not in slots:
            slots.append(slot)
        lines.append(f"{var(name)} = w{slots.index(slot)}[ix[{j}]]")
        rows.append(row)
    return lines, slots, np.array(rows, np.int64)


def canonical(text: str) -> tuple[str, dict[str, str]]:
    """The function text with its local names renumbered in order of first appearance (per
    kind), and the renaming; two functions of the same structure give the same text."""
    seen: dict[str, str] = {}
    counts: dict[str, int] = {}

    def rename(m: re.Match) -> str:
        tok = m.group(0)
        if tok not in seen:
            kind = m.group(1)
            seen[tok] = f"{kind}{counts.get(kind, 0)}"
            counts[kind] = counts.get(kind, 0) + 1
        return seen[tok]

    return _LOCAL.sub(rename, text), seen


def named(text: str, prefix: str) -> tuple[str, str]:
    """(name, text) of a function written with the placeholder name `FN`: named by its hash."""
    name = f"{prefix}{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    return name, text.replace("def FN(", f"def {name}(", 1)


def share_parallel(extra: list[str]) -> tuple[dict[str, str], list[str]]:
    """The parallel loop functions, canonical and deduplicated: (old name -> new, sources)."""
    renamed: dict[str, str] = {}
    out: dict[str, str] = {}
    for fn in extra:
        old = _PAR.search(fn).group(0)
        text, _ = canonical(fn.replace(f"def {old}(", "def FN(", 1))
        name, text = named(text, "_p")
        renamed[old] = name
        out.setdefault(name, text)
    return renamed, list(out.values())


def rename_parallel(lines: list[str], renamed: dict[str, str]) -> list[str]:
    if not renamed:
        return lines
    return [_PAR.sub(lambda m: renamed.get(m.group(0), m.group(0)), line) for line in lines]
