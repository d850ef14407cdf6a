"""Worst ULP distance of a compiled backend from the NumPy backend, per op, over every edge
case and random input (tests/test_backend_ulps.py asserts on it; bench/ulp_report.py prints it).

Values, VJPs and JVPs: the forward graph holds one node per case; the gradient graph is the
loss sum_k sum(cast(c_k, float64) * R_k) over the differentiable cases, and the tangent graph
its JVP with random tangents. Each is compiled once per backend and dtype.
"""

from __future__ import annotations

import os
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from edge_graph import EdgeCase, cases, differentiable, loss_graph_text, merged, one_graph_text
from ulps import ulp_diff

import gtool
from gtool import api

TIMES: dict[str, float] = {}


def _load(text: str, folder: Path, name: str):
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return gtool.load(path)


def _abs_err(got, want) -> float:
    """The largest |got - want| where they differ (0 where both are NaN or equal infinities)."""
    got, want = np.atleast_1d(np.asarray(got, np.float64)), np.atleast_1d(np.asarray(want, np.float64))
    with np.errstate(invalid="ignore"):
        d = np.abs(got - want)
    d[(got == want) | (np.isnan(got) & np.isnan(want))] = 0.0
    return float(np.max(d, initial=0.0))


def _worst(got, want) -> float:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or got.dtype != want.dtype:
        return float("inf")
    if got.dtype.kind != "f":
        return 0.0 if np.array_equal(got, want) else float("inf")
    d = ulp_diff(got, want)
    return float(d.max()) if d.size else 0.0


def compare(backend: str, dtype, folder: str | os.PathLike | None = None, *, ops=None,
            derivatives: bool = True, first_edge: bool = False, keep=None) -> dict[str, dict[str, float]]:
    """{op: {"value": worst, "vjp": worst, "jvp": worst, "vjp_abs": ..., "jvp_abs": ...}} of
    `backend` against NumPy: worst ULPs, and the worst absolute error of the derivatives
    (rules written with the output, like tanh' = 1 - y^2, are exact only to ulp(1) absolutely,
    which in ULPs of a tiny result is millions)."""
    folder = Path(folder or tempfile.mkdtemp(prefix="gtool-ulps-"))
    tag = np.dtype(dtype).name
    cs = cases(dtype, ops, first_edge=first_edge)
    cs = merged([k for k in map(keep, cs) if k is not None] if keep else cs)  # keep: case -> case or None
    tag += f"_{len(cs)}_{zlib.crc32(','.join(c.id for c in cs).encode())}"
    fwd = _load(one_graph_text(cs)[0], folder, f"fwd_{tag}")
    _, data, _ = one_graph_text(cs)
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        want = api.run(fwd, data)
        got = api.run(fwd, data, backend=backend)
    TIMES["forward"] = time.perf_counter() - t0
    out: dict[str, dict[str, float]] = {}
    for k, c in enumerate(cs):
        row = out.setdefault(c.op, {"value": 0.0})
        row["value"] = max(row["value"], _worst(got[f"c{k}"], want[f"c{k}"]))
    if not derivatives:
        return out
    picked = [k for k, c in enumerate(cs) if differentiable(c)]
    diff = [cs[k] for k in picked]
    shapes = {j: np.shape(want[f"c{k}"]) for j, k in enumerate(picked)}
    t0 = time.perf_counter()
    _derivatives(backend, diff, shapes, folder, tag, out)
    TIMES["derivatives"] = time.perf_counter() - t0
    return out


def _derivatives(backend: str, diff: list[EdgeCase], shapes, folder: Path, tag: str, out) -> None:
    t0 = time.perf_counter()
    text, data, wrt = loss_graph_text(diff, shapes)
    g = _load(text, folder, f"loss_{tag}")
    owner = {f"c{k}_a{j}": c.op for k, c in enumerate(diff) for j in range(len(c.inputs))}
    with np.errstate(all="ignore"):
        _, gw = api.value_and_grad(g, data, wrt=wrt)
        _, gb = api.value_and_grad(g, data, wrt=wrt, backend=backend)
    for name in wrt:
        row = out[owner[name]]
        row["vjp"] = max(row.get("vjp", 0.0), _worst(gb[name], gw[name]))
        row["vjp_abs"] = max(row.get("vjp_abs", 0.0), _abs_err(gb[name], gw[name]))
    TIMES["vjp"] = time.perf_counter() - t0
    tg = api.jvp(g, wrt=wrt, of=[f"c{k}" for k in range(len(diff))])
    rng = np.random.default_rng(3)
    feed = dict(data)
    for name in wrt:
        feed[f"__tan_{name}"] = rng.standard_normal(np.shape(data[name])).astype(data[name].dtype)
    with np.errstate(all="ignore"):
        tw = api.run(tg, feed)
        tb = api.run(tg, feed, backend=backend)
    for k, c in enumerate(diff):
        name = f"__tan_c{k}"
        row = out[c.op]
        row["jvp"] = max(row.get("jvp", 0.0), _worst(tb[name], tw[name]))
        row["jvp_abs"] = max(row.get("jvp_abs", 0.0), _abs_err(tb[name], tw[name]))
