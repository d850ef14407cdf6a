"""Elementwise steps of a generated plan run block by block (loop fusion for the NumPy backend).

A chain of elementwise steps on big arrays (`sum(tanh(x) * sigmoid(x) + exp(-x^2))` and its
backward pass) costs a pass through memory per step: each step reads its inputs and writes
a fresh array of the full size. Run as one loop over blocks of `BLOCK` elements instead,
every intermediate of a block stays in the CPU cache, and only the values read after the
chain (its live-outs) are written out whole. The operations are the same ufunc calls on the
same values, elementwise, so the results are bit for bit those of the plain steps
(tests/test_fuse.py).

A step joins a group when it is elementwise (a ufunc, or a scalar template such as sigmoid),
has no attrs and no dtype fix, made an array of at least `MIN_SIZE` elements in the first
run, and each of its inputs is a number or an array of exactly its output's shape. A group
is a run of two or more such consecutive steps. At run time the blocked loop is taken when
the group's array inputs are C-contiguous ndarrays of one shape; else the plain steps run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .ops.registry import get_op

BLOCK = 1 << 13  # elements: a block's ~20 float64 intermediates stay in a 1-2 MiB L2 cache
MIN_SIZE = 1 << 16  # elements: below this a pass is cheap, and a loop costs more than it saves


@dataclass
class Group:
    """Steps `first .. last` (positions in the plan) run as one blocked loop."""

    first: int
    last: int
    inputs: list[int]  # slots of arrays made before the group (read block by block)
    outs: list[int]  # slots made in the group and read after it (written whole)
    freed: list[int]  # slots from before the group that die in it (deleted after the loop)


def _fusable(k: int, step, kw: dict, program, casts: set[int], sizes: dict[int, int]) -> bool:
    op = get_op(step.op)
    if kw or k in casts or sizes.get(k, 0) < MIN_SIZE or step.dtype is None:
        return False
    if op.ufunc is None and not (op.template is not None and op.template.scalar):
        return False
    types = program.types
    node = program.graph.nodes[step.node]
    shape = types[node.name].shape
    arrays = [i for i in node.inputs if types[i].rank > 0]
    return bool(arrays) and all(types[i].shape == shape for i in arrays)


def groups(program, fast_steps: list, casts: set[int], sizes: dict[int, int]) -> list[Group]:
    """The fusable runs of the plan (two steps or more each)."""
    ok = [_fusable(k, st, kw, program, casts, sizes) for k, (st, kw) in enumerate(fast_steps)]
    out: list[Group] = []
    k = 0
    while k < len(ok):
        end = k
        while ok[k] and end + 1 < len(ok) and ok[end + 1]:
            end += 1
        if end > k:
            out.append(_group(program, fast_steps, k, end))
        k = end + 1
    return out


def _group(program, fast_steps: list, first: int, last: int) -> Group:
    made = {fast_steps[k][0].out for k in range(first, last + 1)}
    inputs: list[int] = []
    freed: list[int] = []
    for k in range(first, last + 1):
        st = fast_steps[k][0]
        node = program.graph.nodes[st.node]
        for i, s in zip(node.inputs, st.ins):
            if s not in made and s not in inputs and program.types[i].rank > 0:
                inputs.append(s)
        freed += [s for s in st.free if s not in made and s not in freed]
    later = {s for st, _ in fast_steps[last + 1:] for s in st.ins} | set(program.out_slots)
    outs = [fast_steps[k][0].out for k in range(first, last + 1) if fast_steps[k][0].out in later]
    return Group(first, last, inputs, outs, freed)


def lines(group: Group, fast_steps: list, exprs: dict[int, str], env: dict, plain: list[str]) -> list[str]:
    """The group's code: the blocked loop when its inputs allow it, else the `plain` lines.
    `exprs[k]` is step k's expression on slot names (`s3 * s5`, `k7(s2)`): in the loop the
    group's inputs are read as blocks `b<slot>`, and `s<slot>` names a block's intermediate."""
    env["_fusable_inputs"] = _fusable_inputs
    env["_empty"] = np.empty
    ref = f"s{group.inputs[0]}"
    out = [f"if _fusable_inputs(({', '.join(f's{s}' for s in group.inputs)},), {ref}.shape):"]
    body = [f"f{s} = s{s}.reshape(-1)" for s in group.inputs]
    for s in group.outs:
        st = next(st for st, _ in fast_steps[group.first: group.last + 1] if st.out == s)
        env[f"dt{s}"] = st.dtype
        body += [f"o{s} = _empty({ref}.shape, dt{s})", f"g{s} = o{s}.reshape(-1)"]
    body.append(f"for _a in range(0, {ref}.size, {BLOCK}):")
    loop = [f"b{s} = f{s}[_a:_a + {BLOCK}]" for s in group.inputs]
    for k in range(group.first, group.last + 1):
        expr = exprs[k]
        for s in group.inputs:
            expr = re.sub(rf"\bs{s}\b", f"b{s}", expr)
        loop.append(f"s{fast_steps[k][0].out} = {expr}")
    loop += [f"g{s}[_a:_a + {BLOCK}] = s{s}" for s in group.outs]
    body += ["    " + line for line in loop]
    body += [f"s{s} = o{s}" for s in group.outs]
    body.append(" = ".join(f"b{s}" for s in group.inputs) + " = None")  # (a size-0 input makes no block)
    views = [f"f{s}" for s in group.inputs] + [f"{p}{s}" for s in group.outs for p in "og"]
    body.append("del " + ", ".join(views + [f"s{s}" for s in group.freed]))
    out += ["    " + line for line in body]
    out.append("else:")
    out += ["    " + line for line in plain]
    return out


def _fusable_inputs(arrays: tuple, shape: tuple) -> bool:
    """The blocked loop's run-time condition: C-contiguous ndarrays of the group's shape."""
    for a in arrays:
        if a.__class__ is not np.ndarray or a.shape != shape or not a.flags.c_contiguous:
            return False
    return True
