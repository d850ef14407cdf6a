"""Graphs and a measuring helper for tests/test_memory*.py and bench/memory_bench.py: deep tanh
MLPs (optionally residual, with a long skip) written as gtool YAML, and the peak of a
`value_and_grad` call measured by tracemalloc (NumPy reports its buffers to it)."""

from __future__ import annotations

import tracemalloc

import numpy as np


def mlp_yaml(layers: int, batch: int, width: int, dtype: str = "float64", residual: bool = False,
             skip: bool = False) -> str:
    """h_i = tanh(h_{i-1} @ W_i + b_i) (plus h_{i-1} when residual); L = sum(h_last^2)
    (+ sum(h_0 * h_last) with `skip`, an edge that jumps over every layer)."""
    lines = ["gtool: 1", f"name: mlp{layers}", "dims:", f"  batch: {batch}", "inputs:",
             f"  x: {{shape: [batch, {width}], dtype: {dtype}}}", "params:"]
    for i in range(layers):
        lines.append(f"  W{i}: {{shape: [{width}, {width}], dtype: {dtype}, init: {{glorot: {{}}}}}}")
        lines.append(f"  b{i}: {{shape: [{width}], dtype: {dtype}, init: zeros}}")
    lines.append("nodes:")
    prev = "x"
    for i in range(layers):
        body = f"tanh({prev} @ W{i} + b{i})"
        lines.append(f"  h{i}: {prev} + {body}" if residual and i else f"  h{i}: {body}")
        prev = f"h{i}"
    loss = f"sum({prev} * {prev})" + (f" + sum(h0 * {prev})" if skip else "")
    lines += [f"  L: {loss}", "outputs: [L]", "loss: L"]
    return "\n".join(lines) + "\n"


def feed(graph, dims=None) -> dict:
    """Every input and param of `graph` as arrays (random inputs, params from their init)."""
    from gtool import api, interp
    from gtool.feeds import resolve

    prog = interp.program(api.grad(graph))
    values, _ = resolve(graph, None, types=prog.types, free=interp.free_dims(graph), random=True, seed=0,
                        dim_values=dims)
    return {k: v for k, v in values.items() if graph.tensors[k].kind != "constant"}


def measured_peak(graph, values: dict, remat=None, dims=None) -> int:
    """Bytes at the peak of a steady-state `value_and_grad` (the third call: the first runs the
    careful loop, the second builds the fast loop's step list), counting the inputs and params
    (copied inside the traced region) and the graph's array constants."""
    from gtool import api

    api.value_and_grad(graph, values, remat=remat, dims=dims)
    api.value_and_grad(graph, values, remat=remat, dims=dims)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        inputs = {k: np.array(v, copy=True) for k, v in values.items()}
        api.value_and_grad(graph, inputs, remat=remat, dims=dims)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    consts = sum(t.value.nbytes for t in graph.tensors.values()
                 if t.kind == "constant" and t.value is not None and t.value.ndim > 0)
    return peak + consts
