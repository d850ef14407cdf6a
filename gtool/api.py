"""The library API: what the CLI calls, and what a Python user imports from `gtool`."""

from __future__ import annotations

import os

import numpy as np

from . import autodiff, interp
from .dtypes import is_float as is_float_dtype
from .errors import UsageError
from .ir import Graph
from .validate import load as _load
from .validate import types_of


def _names(names):
    """A target list as a tuple; one name may be given as a plain string (`wrt="W"`)."""
    if names is None:
        return None
    return (names,) if isinstance(names, str) else tuple(names)


def _check_call(inputs=None, dims=None, seed: int = 0) -> None:
    """Arguments the CLI checks in its flags, checked here for library callers too."""
    if seed.__class__ is int and seed >= 0 and dims is None and (inputs is None or inputs.__class__ is dict):
        return  # the common call, decided in a few type checks (value_and_grad in a loop)
    if inputs is not None and not hasattr(inputs, "items"):
        raise UsageError("usage", f"inputs must map names to arrays (a dict), not {type(inputs).__name__}")
    for name, size in (dims or {}).items():
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            raise UsageError("usage", f"dim '{name}' must be a non-negative integer, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError("usage", f"seed must be a non-negative integer, got {seed!r}")


def load(path: str | os.PathLike, dims: dict[str, int] | None = None) -> Graph:
    """Load and check a graph file; raises GraphError (with every diagnostic) if invalid.

    `dims` fixes dims for the check; sizes of dims declared in the file become the new
    defaults for runs of the returned graph.
    """
    _check_call(dims=dims)
    graph = _load(path, dims)
    declared = {k: v for k, v in (dims or {}).items() if k in graph.dims}
    return graph.evolve(dims={**graph.dims, **declared}) if declared else graph


def run(graph: Graph, inputs: dict | None = None, outputs=None, *, backend=None, random_inputs: bool = False,
        seed: int = 0, dims: dict[str, int] | None = None, check_numerics: bool = False) -> dict[str, np.ndarray]:
    """Forward pass: a dict output name -> array. Params without data use their value/init."""
    _check_call(inputs, dims, seed)
    return interp.execute(graph, inputs, outputs, backend=backend, random=random_inputs, seed=seed,
                          dim_values=dims, check_numerics=check_numerics)


def gradient(graph: Graph, wrt=None, of: str | None = None, *, remat=None, dims: dict[str, int] | None = None,
             inputs: dict | None = None) -> autodiff.Gradient:
    """The gradient graph with its meaning (cached per (wrt, of)): `.graph`, `.loss`, `.wrt`
    and `.outputs` (target -> the output of `.graph` holding its gradient); see autodiff.Gradient.

    `remat` (`none`, `sqrt`, `cheap`, `budget=SIZE`) recomputes forward values in the backward
    pass instead of keeping them (docs/memory.md); a budget is planned at `dims` / `inputs`' sizes."""
    wrt = _names(wrt)
    key = ("grad", wrt or None, of)
    g = graph.cache.get(key)
    if g is None:
        g = graph.cache[key] = autodiff.grad(graph, wrt, of)
    if remat is not None:
        from .memory.remat import for_graph

        g = for_graph(graph, g, remat, dims, inputs)
    return g


def grad(graph: Graph, wrt=None, of: str | None = None, *, remat=None, dims: dict[str, int] | None = None) -> Graph:
    """The gradient graph (cached per (wrt, of)): outputs are the loss and one gradient per target."""
    return gradient(graph, wrt, of, remat=remat, dims=dims).graph


def backward(graph: Graph, wrt=None, of: str | None = None) -> Graph:
    """The gradient graph as value_and_grad runs it (cached per (wrt, of)): `grad`'s graph with
    reverse mode's leftovers simplified (rewrite/backward.py); same outputs, same values."""
    return _simplified(gradient(graph, wrt, of).graph)


def _simplified(gradient_graph: Graph) -> Graph:
    """A gradient graph (grad's or vjp's) simplified, cached on it."""
    g = gradient_graph.cache.get("backward")
    if g is None:
        from .rewrite.backward import simplify_backward

        g = gradient_graph.cache["backward"] = simplify_backward(gradient_graph)
    return g


def jvp(graph: Graph, wrt=None, of=None) -> Graph:
    """The forward-mode (tangent) graph; see autodiff.jvp."""
    wrt, of = _names(wrt), _names(of)
    key = ("jvp", wrt or None, of or None)
    g = graph.cache.get(key)
    if g is None:
        g = graph.cache[key] = autodiff.jvp(graph, wrt, of)
    return g


def value_and_grad(graph: Graph, inputs: dict | None = None, wrt=None, of: str | None = None, *, backend=None,
                   random_inputs: bool = False, seed: int = 0, dims: dict[str, int] | None = None,
                   check_numerics: bool = False, remat=None) -> tuple[float, dict[str, np.ndarray]]:
    """(loss value, {target name: gradient array}), reusing the compiled gradient plan; `remat`:
    see `gradient` (the gradients are bitwise the same under every policy)."""
    _check_call(inputs, dims, seed)
    remat = None if remat == "none" else remat
    plain = inputs.__class__ is dict and not random_inputs and dims is None and not check_numerics and remat is None
    if plain:  # a repeated call with data of the same signature: one look-up, then the plan
        key = ("value_and_grad", _names(wrt), of, backend, seed)
        fast = graph.cache.get(key)
        if fast is not None:
            out = fast(inputs)
            if out is not None:
                return out
    gr = gradient(graph, wrt, of, remat=remat, dims=dims, inputs=inputs)
    # --check-numerics names the backward step of a forward node (`__bwd_<node>_<k>`): the
    # unsimplified graph has them all, and computes the same values; a rematerialized graph
    # runs as planned
    bw = gr.graph if check_numerics or remat is not None else backward(graph, wrt, of)
    out = interp.execute(bw, inputs, backend=backend, random=random_inputs, seed=seed, dim_values=dims,
                         check_numerics=check_numerics)
    runner = bw.cache.get(("runner", None, backend, seed)) if plain else None
    if runner is not None and runner.prog.outputs == (gr.loss, *gr.outputs.values()):
        graph.cache[key] = runner.value_and_grad(tuple(gr.outputs))
    return float(out[gr.loss]), {w: out[n] for w, n in gr.outputs.items()}


def vjp(graph: Graph, inputs: dict | None = None, cotangents: dict | None = None, wrt=None, *, backend=None,
        random_inputs: bool = False, seed: int = 0, dims: dict[str, int] | None = None,
        check_numerics: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Gradients of a model that has no loss: `(outputs, grads)` with `grads[x] = sum_y J_yx^T c_y`
    for the cotangents `c_y` given per output y (as `jax.vjp`, or `torch.autograd.grad` with
    `grad_outputs`). `outputs` holds the graph's outputs and every value given a cotangent.
    The work is one run of an ordinary gradient graph (autodiff.vjp), cached per (outputs, wrt).
    """
    from .cotangents import check_cotangents

    _check_call(inputs, dims, seed)
    if cotangents is None or not hasattr(cotangents, "items") or not cotangents:
        raise UsageError("usage", "vjp needs cotangents: a dict {output name: array of that output's shape}")
    wrt = _names(wrt)
    seeded = tuple(cotangents)
    key = ("vjp", seeded, wrt or None)
    gr = graph.cache.get(key)
    if gr is None:
        gr = graph.cache[key] = autodiff.vjp(graph, seeded, wrt)
    feed = dict(inputs or {})
    feed.update({gr.cotangents[y]: c for y, c in check_cotangents(graph, inputs, cotangents, dims).items()})
    shown = gr.graph.outputs[:len(gr.graph.outputs) - len(gr.outputs)]
    runs = gr.graph if check_numerics else _simplified(gr.graph)  # --check-numerics names the backward steps
    out = interp.execute(runs, feed, [*shown, *gr.outputs.values()], backend=backend, random=random_inputs,
                         seed=seed, dim_values=dims, check_numerics=check_numerics)
    return {y: out[y] for y in shown}, {w: out[n] for w, n in gr.outputs.items()}


def forward_mode_grad(graph: Graph, inputs: dict | None = None, wrt=None, of: str | None = None, *,
                      backend=None, random_inputs: bool = False, seed: int = 0,
                      dims: dict[str, int] | None = None) -> tuple[float, dict[str, np.ndarray]]:
    """The same gradients as value_and_grad, by forward mode: one JVP run per input element.

    Costs n runs for n elements, so it is meant for checking and small graphs.
    """
    from .feeds import resolve

    _check_call(inputs, dims, seed)
    wrt, loss = autodiff.check_targets(graph, _names(wrt), of)
    tg = jvp(graph, wrt, [loss])
    prog = interp.program(tg, backend=backend)
    values, bindings = resolve(graph, inputs, types=prog.types, free=interp.free_dims(graph),
                               random=random_inputs, seed=seed, dim_values=dims)
    values.update({n: t.value for n, t in tg.tensors.items() if n not in values and t.value is not None})
    grads: dict[str, np.ndarray] = {}
    value = None
    for w in wrt:
        base = values[w]
        g = np.zeros(base.shape, base.dtype)
        for idx in np.ndindex(*base.shape):
            feed = dict(values)
            for v in wrt:
                feed[autodiff.tangent_name(v)] = np.zeros(values[v].shape, values[v].dtype)
            t = np.zeros(base.shape, base.dtype)
            t[idx] = 1
            feed[autodiff.tangent_name(w)] = t
            out = prog.run(feed, bindings)
            g[idx] = out[autodiff.tangent_name(loss)]
            value = out[loss]
        grads[w] = g
    return float(value), grads


# every value and every gradient (what `gtool render --values --grads` and `gtool explain` show) --------


def all_values(graph: Graph, inputs: dict | None = None, *, backend=None, random_inputs: bool = False, seed: int = 0,
               dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Every value of the graph (tensors and nodes), NaN and Inf included: a drawing shows where
    they appear, so no numerics check stops the run."""
    _check_call(inputs, dims, seed)
    return interp.execute(graph, inputs, list(graph.names()), backend=backend, random=random_inputs, seed=seed,
                          dim_values=dims)


def gradient_targets(graph: Graph, of: str | None = None) -> list[str]:
    """Every float input, param and node that the loss depends on (constants are never differentiated)."""
    types = types_of(graph)
    loss = of or graph.loss_name()
    live = graph.ancestors([loss]) if loss in graph else set()
    out = []
    for n in graph.names():
        t = graph.tensors.get(n)
        if n in live and is_float_dtype(types[n].dtype) and (t is None or t.kind != "constant"):
            out.append(n)
    return out


def all_grads(graph: Graph, inputs: dict | None = None, *, of: str | None = None, backend=None,
              random_inputs: bool = False, seed: int = 0, dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """dL/dv for every float value v the loss depends on, intermediates included: one run of the
    gradient graph whose targets are all those values."""
    _check_call(inputs, dims, seed)
    targets = gradient_targets(graph, of) or None
    gr = gradient(graph, targets, of)
    out = interp.execute(backward(graph, targets, of), inputs, list(gr.outputs.values()), backend=backend,
                         random=random_inputs, seed=seed, dim_values=dims)
    return {w: out[n] for w, n in gr.outputs.items()}
