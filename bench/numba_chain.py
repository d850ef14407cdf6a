"""Compile time of the numba backend on the peers' 2,000-op chain (issue 15): the first call
(build + compile + run) in a fresh process with an empty cache folder (cold) and again in a
second process (warm: numba's cache), then the steady state against hand-written NumPy.

    .venv/bin/python bench/numba_chain.py [--ops 2000] [--repeat 200]

Times are wall and CPU seconds (CPU time is the steadier figure on a shared machine); the
steady ratio is the median of paired (gtool, hand NumPy) runs, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def chain_text(n: int) -> str:
    """The peers harness's chain (shared/bench/peers/gtool_peer.py): sin, * 1.01, + 0.1, repeated."""
    lines, prev = [], "x"
    for i in range(n):
        lines.append(f"  c{i}: " + ("sin({p})", "{p} * 1.01", "{p} + 0.1")[i % 3].format(p=prev))
        prev = f"c{i}"
    return "gtool: 1\ninputs:\n  x: [16]\nnodes:\n" + "\n".join(lines) + f"\n  L: sum({prev})\noutputs: [L]\nloss: L\n"


def hand(x, n: int):
    import numpy as np

    y, saved = x, []
    for i in range(n):
        if i % 3 == 0:
            saved.append(y)
            y = np.sin(y)
        elif i % 3 == 1:
            y = y * 1.01
        else:
            y = y + 0.1
    d = np.ones_like(x)
    for i in reversed(range(n)):
        if i % 3 == 0:
            d = d * np.cos(saved.pop())
        elif i % 3 == 1:
            d = d * 1.01
    return y.sum(), d


def child(path: str, n: int, repeat: int) -> dict:
    """One process: the first call's times, then (with repeat) the steady state."""
    t0 = time.perf_counter()
    import numpy as np

    import gtool
    from gtool import api, interp

    graph = gtool.load(path)
    x = np.random.default_rng(0).standard_normal(16)
    t1, c1 = time.perf_counter(), time.process_time()
    phases = {}  # CPU seconds of each part of the first call, in the order value_and_grad does them

    def phase(label, fn):
        c = time.process_time()
        r = fn()
        phases[label] = time.process_time() - c
        return r

    bw = phase("gradient", lambda: (api.gradient(graph, ["x"]), api.backward(graph, ["x"]))[1])
    phase("import numba", lambda: interp.get_backend("numba"))
    phase("plan (lowering or plan cache)", lambda: interp.program(bw, backend="numba"))
    loss, grads = phase("first run (numba compile or cache load)",
                        lambda: gtool.value_and_grad(graph, {"x": x}, wrt=["x"], backend="numba"))
    out = {"import_s": t1 - t0, "first_call_s": time.perf_counter() - t1, "first_call_cpu_s": time.process_time() - c1,
           "phases": phases}
    backend = interp.get_backend("numba")
    compiled = interp.program(api.backward(graph), backend="numba").compiled
    out.update(numba_s=backend.last_compile_seconds, segments=compiled.n_compiled,
               functions=compiled.source.count("\ndef k"), fallbacks=backend.fallback_runs)
    want_loss, want_grad = hand(x, n)
    assert abs(loss - want_loss) <= 1e-12 * abs(want_loss) and np.allclose(grads["x"], want_grad, rtol=1e-10)
    if repeat:
        pairs = []
        for _ in range(repeat):
            a = time.perf_counter()
            gtool.value_and_grad(graph, {"x": x}, wrt=["x"], backend="numba")
            b = time.perf_counter()
            hand(x, n)
            pairs.append((b - a, time.perf_counter() - b))
        g, h = (sorted(p[k] for p in pairs)[len(pairs) // 2] for k in (0, 1))
        out.update(steady_ms=g * 1e3, hand_ms=h * 1e3, ratio=float(np.median([p[0] / p[1] for p in pairs])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.ops, int(args.child[1]))))
        return
    folder = Path(tempfile.mkdtemp(prefix="gtool-numba-chain-"))
    path = folder / f"chain{args.ops}.yaml"
    path.write_text(chain_text(args.ops))
    env = {**os.environ, "GTOOL_CACHE_DIR": str(folder / "cache"), "NUMBA_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for label, repeat in (("cold", 0), ("warm", args.repeat)):
        r = subprocess.run([sys.executable, __file__, "--ops", str(args.ops), "--child", str(path), str(repeat)],
                           capture_output=True, text=True, env=env, check=True)
        res = json.loads(r.stdout.strip().splitlines()[-1])
        line = (f"{label}: first call {res['first_call_s']:.2f} s wall, {res['first_call_cpu_s']:.2f} s CPU "
                f"(numba compile/cache load {res['numba_s']:.2f} s); {res['segments']} segments, "
                f"{res['functions']} distinct functions\n  CPU: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in res["phases"].items()))
        if repeat:
            line += (f"\nsteady: {res['steady_ms']:.3f} ms vs hand NumPy {res['hand_ms']:.3f} ms, "
                     f"paired ratio {res['ratio']:.3f}")
        print(line)


if __name__ == "__main__":
    main()
