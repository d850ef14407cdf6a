"""Localisation: when a target fails, each node's VJP rule is checked alone on the values that
actually flow into it, projected on the upstream gradient that reaches it, so the report
names the node, op and plugin whose backward is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..builder import GraphBuilder
from ..dtypes import is_float as is_float_dtype
from ..errors import GraphError
from ..interp import program
from ..ir import Graph, Tensor
from ..ops.registry import get_op
from ..validate import types_of
from .compare import FULL_LIMIT, Tolerances, hvp_graph, judge, probe_along, random_directions, steps

if TYPE_CHECKING:
    from . import _Problem


@dataclass
class Culprit:
    """The first node (in topological order) whose VJP rule disagrees with finite differences."""

    node: str
    op: str
    plugin: str | None
    path: str | None
    line: int | None
    input: str | None
    message: str
    index: list[int] | None = None
    analytic: float | None = None
    numeric: float | None = None
    part_of: str | None = None  # for generated nodes: the node they belong to

    def text(self) -> str:
        where = [f"op `{self.op}`"] + ([f"part of {self.part_of}"] if self.part_of else [])
        if self.plugin:
            where.append(f"plugin {self.plugin}")
        if self.path:
            where.append(f"{self.path}:{self.line}" if self.line else self.path)
        return f"the backward of `{self.node}` ({', '.join(where)}) is wrong: {self.message}"

    def to_json(self) -> dict:
        return {"node": self.node, "part_of": self.part_of, "op": self.op, "plugin": self.plugin, "path": self.path,
                "line": self.line,
                "input": self.input, "index": self.index, "analytic": self.analytic, "numeric": self.numeric,
                "message": self.text()}


def find_culprit(prob: _Problem, tol: Tolerances, directions: int = 4, full_limit: int = FULL_LIMIT) -> Culprit | None:
    """The first node, in topological order, whose VJP rule disagrees with finite differences
    of that node alone, on the values that flow into it and projected on the upstream gradient
    ḡ that reaches it: <ḡ, (f(a + h v) - f(a - h v)) / 2h> against <vjp(ḡ), v>."""
    g = prob.graph
    total = {k: v for k, v in prob.gradient.total.items() if v in prob.gg}
    need = g.descendants(prob.wrt) & g.ancestors([prob.loss])
    nodes = [n for n in g.nodes.values() if n.name in total and n.name in need and get_op(n.op).vjp is not None]
    if not nodes:
        return None
    prob.evaluations += 2
    fwd = program(g, tuple(g.nodes), prob.backend).run(prob.values, prob.bindings)
    ups = tuple(dict.fromkeys(total[n.name] for n in nodes))
    gbar = program(prob.gg, ups, prob.backend).run(prob.feed(prob.gg, {}), prob.bindings)
    values = {**prob.values, **fwd}
    types = types_of(g)
    for node in nodes:
        culprit = _check_node(prob, node, values, np.asarray(gbar[total[node.name]], dtype=np.float64), types,
                              need, tol, directions, full_limit)
        if culprit is not None:
            return culprit
    return None


def second_order_culprit(prob: _Problem, x: str, tol: Tolerances, directions: int, full_limit: int) -> Culprit | None:
    """Order 2 fails where a rule of the gradient graph has a wrong VJP: localise in the graph
    whose loss is <grad_x, d> (same data, a random d), so the forward nodes' rules and their
    backward nodes' rules are all checked; a backward node is located at its forward node."""
    inner = hvp_graph(prob.graph, x, prob.loss).inner
    given = {n: v for n, v in prob.values.items() if n in inner.tensors}
    sub = prob.on(inner, [x], given)
    culprit = find_culprit(sub, tol, directions, full_limit)
    prob.evaluations += sub.evaluations
    return culprit


def _blame(g: Graph, node, message: str, inp: str | None = None, **where) -> Culprit:
    op = get_op(node.op)
    part = None
    if g.owner(node.name) != node.name:  # an anonymous node of a shorthand expression
        part = f"`{g.owner(node.name)}`"
    elif node.name.startswith("__bwd_") and node.name[6:].rsplit("_", 1)[0] in g.nodes:  # order 2
        part = f"the backward of `{node.name[6:].rsplit('_', 1)[0]}`"
    return Culprit(node.name, node.op, op.plugin, node.loc.path or g.path, node.loc.line, inp, message, **where,
                   part_of=part)


def _check_node(prob: _Problem, node, values: dict, gbar: np.ndarray, types, need, tol: Tolerances,
                directions: int, full_limit: int) -> Culprit | None:
    g = prob.graph
    op = get_op(node.op)
    ins = list(dict.fromkeys(node.inputs))
    targets = [i for i in ins if i in need and is_float_dtype(types[i].dtype) and not types[i].weak]
    if not targets:
        return None
    mini = Graph({i: Tensor(i, "input", types[i]) for i in ins}, {node.name: replace(node, shape=None)},
                 (node.name,), dims=dict(g.dims), fixed_dims=dict(g.fixed_dims), path=g.path)
    b = GraphBuilder(mini)
    gin = b.add_input(b.fresh("__gbar"), node.name)
    b.context(f"__bwd_{node.name}", node.loc)
    try:
        outs = list(op.vjp(b, node, gin))
    except GraphError as e:
        return _blame(g, node, f"its VJP rule builds an ill-typed graph: {e.diagnostic.message}")
    except Exception as e:  # the rule is user code (a plugin): its exception is the finding
        return _blame(g, node, f"its VJP rule raised {type(e).__name__}: {e}")
    if len(outs) != len(node.inputs):
        return _blame(g, node, f"its VJP rule returns {len(outs)} gradients for {len(node.inputs)} inputs")
    parts = {t: [o for o, i in zip(outs, node.inputs) if i == t and o is not None] for t in targets}
    wanted = list(dict.fromkeys(o for ps in parts.values() for o in ps))
    feed = {i: values[i] for i in ins}
    feed[gin] = gbar
    got = {}
    if wanted:
        vg = b.graph_with(wanted, None, f"VJP of {node.name}")
        feed.update({n: t.value for n, t in vg.tensors.items() if n not in feed and t.value is not None})
        prob.evaluations += 1
        got = program(vg, tuple(wanted), prob.backend).run(feed, prob.bindings)
    fprog = program(mini, (node.name,), prob.backend)

    prob.evaluations += 1
    out0 = np.asarray(fprog.run(feed, prob.bindings)[node.name], dtype=np.float64)
    for t in targets:
        x0 = np.asarray(feed[t], dtype=np.float64)
        a = np.zeros(x0.shape)
        for p in parts[t]:
            c = np.asarray(got[p], dtype=np.float64)
            if c.shape != x0.shape:
                return _blame(g, node, f"its VJP gives a gradient of shape {list(c.shape)} for input `{t}` of shape "
                              f"{list(x0.shape)} (a broadcast not summed back to the input: sum_to missing?)", t)
            a = a + c
        proj = _Projected(prob, fprog, node.name, feed, t, gbar, out0)
        culprit = _compare_node(lambda msg, t=t, **kw: _blame(g, node, msg, t, **kw), proj, a, x0, tol, directions,
                                full_limit, prob.rng(f"{node.name}:{t}"))
        if culprit is not None:
            return culprit
    return None


class _Projected:
    """One node's forward as a scalar function of one input: <ḡ, f(..., t = value, ...)>."""

    def __init__(self, prob: _Problem, prog, name: str, feed: dict, t: str, gbar: np.ndarray, out0: np.ndarray):
        self.prob, self.prog, self.name, self.feed, self.t, self.gbar = prob, prog, name, feed, t, gbar
        self.f0 = float(np.sum(self._weighted(out0)))
        self.magnitude = float(np.sum(np.abs(self._weighted(out0))))  # the size of the terms, for the rounding noise

    def _weighted(self, out: np.ndarray) -> np.ndarray:
        """ḡ * out, with 0 where ḡ is 0: an entry no gradient reaches does not count, even when
        it is ±inf (a -inf attention mask: 0 * -inf would make every difference NaN)."""
        with np.errstate(invalid="ignore"):
            return np.where(self.gbar == 0, 0.0, self.gbar * out)

    def __call__(self, value: np.ndarray) -> float:
        self.prob.evaluations += 1
        return float(np.sum(self._weighted(self.prog.run({**self.feed, self.t: value}, self.prob.bindings)[self.name])))


def _compare_node(blame, project: _Projected, a, x0, tol, directions, full_limit, rng) -> Culprit | None:
    """Culprit (via `blame`) when the VJP's gradient `a` of one input disagrees with differences."""
    t, f0 = project.t, project.f0
    h = steps(x0, tol.eps)
    if x0.size <= full_limit:  # every element: the worst one, and a pattern, name the mistake
        def probe(s, mask):
            fp, fm = np.full(x0.shape, np.nan), np.full(x0.shape, np.nan)
            for i in np.ndindex(*x0.shape):
                if not mask[i]:
                    continue
                e = np.zeros(x0.shape)
                e[i] = s * h[i]
                fp[i], fm[i] = project(x0 + e), project(x0 - e)
            return fp, fm

        fp, fm = probe(1.0, np.ones(x0.shape, bool))
        v = judge(a, f0, fp, fm, h, tol, False, lambda m: probe(0.25, m), project.magnitude)
        ok = v.ok | _singular(a, v.numeric, h) | ~np.isfinite(x0)  # no difference can step off ±inf
        if ok.all():
            return None
        worst = np.unravel_index(int(np.argmax(np.where(ok, -np.inf, np.nan_to_num(v.badness, nan=np.inf)))), x0.shape)
        an, nu = float(a[worst]), float(v.numeric[worst])
        idx = [int(i) for i in worst]
        msg = (f"for input `{t}`, element {idx} is {an:.6g} by its VJP rule but {nu:.6g} by finite differences "
               f"of the node (projected on the actual upstream gradient)" + _pattern(a, v.numeric, tol))
        return blame(msg, index=idx, analytic=an, numeric=nu)
    ds = random_directions(rng, x0, directions)
    an = np.array([float(np.sum(a * d)) for d in ds])

    def probe_dir(s, mask):
        return probe_along(project, x0, ds, s * tol.eps, mask)

    fp, fm = probe_dir(1.0, np.ones(len(ds), bool))
    v = judge(an, f0, fp, fm, np.full(len(ds), tol.eps), tol, False, lambda m: probe_dir(0.25, m), project.magnitude)
    if v.ok.all():
        return None
    j = int(np.argmax(v.badness))
    msg = (f"for input `{t}` along a random direction, its VJP rule gives {an[j]:.6g} but finite differences of "
           f"the node give {float(v.numeric[j]):.6g} (projected on the actual upstream gradient)")
    return blame(msg, analytic=float(an[j]), numeric=float(v.numeric[j]))


def _singular(a: np.ndarray, numeric: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Where the rule's derivative is infinite (sqrt at 0) and differences blow up too: a
    singular point of the function, not a wrong rule."""
    with np.errstate(all="ignore"):
        return ~np.isfinite(a) & (~np.isfinite(numeric) | (np.abs(numeric) > 0.1 / np.maximum(h, 1e-300)))


def _pattern(a: np.ndarray, n: np.ndarray, tol: Tolerances) -> str:
    """A hint at the kind of mistake: a constant factor, or a transposed matrix."""
    with np.errstate(all="ignore"):
        if a.ndim == 2 and a.shape[0] == a.shape[1] and a.shape[0] > 1 and np.allclose(a, n.T, tol.rtol, tol.atol) \
                and not np.allclose(a, n, tol.rtol, tol.atol):
            return "; it is the transpose of the right gradient (a transposed matrix in the rule?)"
        big = np.abs(n) > 100 * tol.atol
        if big.any():
            k = float(np.median(a[big] / n[big]))
            if np.isfinite(k) and abs(k - 1) > 1e-3 and np.allclose(a, k * n, 10 * tol.rtol, 10 * tol.atol):
                return f"; it is {k:.4g} times the right gradient everywhere (a wrong factor in the rule?)"
    if a.shape and np.allclose(a, 0) and not np.allclose(n, 0):
        return "; the rule gives zero where the gradient is not"
    return ""
