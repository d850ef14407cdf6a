"""Every built-in op's edge table (and random inputs for elementwise ops) as data, and as one
graph per dtype: the NumPy-vs-reference tests run the cases one by one, the backend tests
and bench/ulp_report.py run the one combined graph (numba compiles once per dtype).

A case is one op applied to one `Edge` (from `OpDef.edges`) or to random inputs drawn from
the op's `domain` (and log-uniformly over [1e-3, 1e3] in both signs for unary ops), cast to
the dtype under test where the input is float.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

import numpy as np
from ulps import to_dtype

from gtool.ops import REGISTRY
from gtool.ops.reference import Edge, to_objects


def builtin_ops() -> list[str]:
    """Ops of gtool itself (not plugins, nor test ops other test modules may register)."""
    return sorted(n for n, op in REGISTRY.items() if op.plugin is None and op.infer.__module__.startswith("gtool."))


@dataclass
class EdgeCase:
    op: str
    inputs: tuple[np.ndarray, ...]
    attrs: dict
    label: str

    @property
    def id(self) -> str:
        return f"{self.op}[{self.label}]"


def _cast(a: np.ndarray, dtype) -> np.ndarray:
    with np.errstate(over="ignore"):
        return a.astype(dtype) if a.dtype.kind == "f" else a


def random_inputs(op: str, n: int = 48) -> tuple[np.ndarray, ...] | None:
    """Smooth random inputs of an elementwise op: its domain, plus a log-uniform spread."""
    opdef = REGISTRY[op]
    if not opdef.group.startswith("elementwise") or opdef.domain is None:
        return None
    rng = np.random.default_rng(zlib.crc32(op.encode()))
    out = []
    for lo, hi in opdef.domain:
        x = rng.uniform(lo, hi, n)
        if opdef.arity == 1 and lo < 0 < hi:
            spread = np.exp(rng.uniform(np.log(1e-3), np.log(1e3), n)) * rng.choice([-1.0, 1.0], n)
            x = np.concatenate([x, spread])
        out.append(x)
    size = min(len(x) for x in out)
    return tuple(x[:size] for x in out)


def _overflows_f16(edge: Edge) -> bool:
    """Finite values past float16's range (1e8, 1e15) become inf there: the edge would test
    a different case (two +inf logits in a row, inf cast to an int) than it was written for."""
    for a in edge.inputs:
        if a.dtype.kind == "f" and np.any(np.isfinite(a) & (np.abs(a) > float(np.finfo(np.float16).max))):
            return True
    return False


def _without_f16_overflow(edge: Edge):
    """An elementwise edge (1-D inputs of one length) without the positions that overflow
    float16; None for other edges (rows, matrices), which are then left out."""
    ins = edge.inputs
    if not all(a.ndim == 1 and len(a) == len(ins[0]) for a in ins):
        return None
    big = float(np.finfo(np.float16).max)
    keep = np.ones(len(ins[0]), bool)
    for a in ins:
        if a.dtype.kind == "f":
            keep &= ~(np.isfinite(a) & (np.abs(a) > big))
    return tuple(a[keep] for a in ins) if keep.any() else None


def cases(dtype, ops=None, *, with_random: bool = True, first_edge: bool = False) -> list[EdgeCase]:
    """The cases for `dtype` (np.float64, np.float32 or np.float16). A float32 (or float16) run leaves out edges with
    no float input (the float64 run has them) and edges marked float32=False; `first_edge`
    keeps only each op's first edge row (a cheaper compile)."""
    out = []
    for op in ops or builtin_ops():
        edges = REGISTRY[op].edges[:1] if first_edge else REGISTRY[op].edges
        for k, edge in enumerate(edges):
            has_float = any(a.dtype.kind == "f" for a in edge.inputs)
            if dtype != np.float64 and (not has_float or not edge.float32):
                continue
            inputs = edge.inputs
            if dtype == np.float16 and _overflows_f16(edge):
                inputs = _without_f16_overflow(edge)
                if inputs is None:
                    continue
            out.append(EdgeCase(op, tuple(_cast(a, dtype) for a in inputs), dict(edge.attrs),
                                f"edge{k}{'-' + edge.note if edge.note else ''}"))
        rnd = random_inputs(op) if with_random else None
        if rnd is not None:
            out.append(EdgeCase(op, tuple(_cast(a, dtype) for a in rnd), {}, "random"))
    return out


def merged(cases_: list[EdgeCase]) -> list[EdgeCase]:
    """Cases of one elementwise op with 1-D inputs of the same dtypes and attrs joined into
    one (fewer nodes: numba's compile time grows with the graph, not with the data)."""
    out: list[EdgeCase] = []
    groups: dict[tuple, EdgeCase] = {}
    for c in cases_:
        if not REGISTRY[c.op].group.startswith(("elementwise", "comparison", "selection")) or \
                any(a.ndim != 1 for a in c.inputs):
            out.append(c)
            continue
        key = (c.op, tuple(str(a.dtype) for a in c.inputs), json.dumps(c.attrs, sort_keys=True))
        if key not in groups:
            groups[key] = EdgeCase(c.op, c.inputs, c.attrs, c.label)
            out.append(groups[key])
            continue
        g = groups[key]
        g.inputs = tuple(np.concatenate([a, b]) for a, b in zip(g.inputs, c.inputs))
        g.label += "+" + c.label
    return out


def reference(case: EdgeCase, out_dtype) -> np.ndarray:
    """The op's mpmath reference on the case's exact inputs, rounded into `out_dtype`."""
    opdef = REGISTRY[case.op]
    attrs = opdef.prepare(case.attrs, {})
    want = opdef.reference(*[to_objects(a) for a in case.inputs], **attrs)
    want = np.asarray(want, dtype=object)
    if np.dtype(out_dtype).kind == "f":
        return to_dtype(want, out_dtype, want.shape)
    return want.astype(out_dtype)


def _add_case(k: int, c: EdgeCase, lines: list, nodes: list, data: dict, wrt: list) -> None:
    """Case k as node c<k> with inputs c<k>_a<j>: its input lines, node line, data and float inputs."""
    names = []
    for j, a in enumerate(c.inputs):
        name = f"c{k}_a{j}"
        lines.append(f"  {name}: {{shape: {list(a.shape)}, dtype: {a.dtype}}}")
        data[name] = a
        names.append(name)
        if a.dtype.kind == "f":
            wrt.append(name)
    node = {"op": c.op, "inputs": names}
    if c.attrs:
        node["attrs"] = c.attrs
    nodes.append(f"  c{k}: {json.dumps(node)}")


def one_graph_text(cases_: list[EdgeCase]) -> tuple[str, dict, list[str]]:
    """One graph holding every case as node c<k> (inputs c<k>_a<j>), its data, and the float inputs."""
    lines, nodes, data, wrt = ["gtool: 1", "inputs:"], [], {}, []
    for k, c in enumerate(cases_):
        _add_case(k, c, lines, nodes, data, wrt)
    outputs = [f"c{k}" for k in range(len(cases_))]
    return "\n".join(lines + ["nodes:"] + nodes + [f"outputs: [{', '.join(outputs)}]"]) + "\n", data, wrt


def loss_graph_text(cases_: list[EdgeCase], out_shapes: dict[int, tuple]) -> tuple[str, dict, list[str]]:
    """The differentiable cases with L = sum_k sum(cast(c<k>, float64) * R<k>) (R<k> random)."""
    lines, nodes, data, wrt, terms = ["gtool: 1", "inputs:"], [], {}, [], []
    rng = np.random.default_rng(11)
    for k, c in enumerate(cases_):
        _add_case(k, c, lines, nodes, data, wrt)
        lines.append(f"  R{k}: {{shape: {list(out_shapes[k])}}}")
        data[f"R{k}"] = rng.standard_normal(out_shapes[k])
        nodes.append(f"  l{k}: sum(cast(c{k}, dtype=float64) * R{k})")
        terms.append(f"l{k}")
    acc = terms[0]
    for k, t in enumerate(terms[1:]):
        nodes.append(f"  s{k}: {acc} + {t}")
        acc = f"s{k}"
    nodes.append(f"  L: {acc}")
    text = "\n".join(lines + ["nodes:"] + nodes + ["outputs: [L]", "loss: L"]) + "\n"
    return text, data, wrt


def differentiable(c: EdgeCase) -> bool:
    op = REGISTRY[c.op]
    if op.vjp is None or not any(a.dtype.kind == "f" for a in c.inputs):
        return False
    return not (c.op == "cast" and not c.attrs.get("dtype", "").startswith("float"))


__all__ = ["Edge", "EdgeCase", "builtin_ops", "cases", "differentiable", "loss_graph_text", "one_graph_text",
           "random_inputs", "reference"]
