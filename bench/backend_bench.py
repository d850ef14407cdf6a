"""The numba backend against the NumPy backend and hand-written NumPy, forward + backward.

Usage: python bench/backend_bench.py [--repeat N] [--threads 1,2] [--only NAME,...] [--backends numba,cuda]

Workloads are bench/workloads.py's (the same graphs and hand-written baselines as
bench/run_bench.py). For each thread count two fresh processes run with one new, empty cache
folder (GTOOL_CACHE_DIR): the first compiles cold, the second finds numba's on-disk cache
(warm). Each reports its first-call cost split into code generation, numba compile (or cache
load) and the first run, then medians (time.perf_counter) of value_and_grad on each backend and
of the hand-written version. BLAS and numba threads are set before NumPy loads.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from timing import time_median  # noqa: E402


def measure_one(name, text, make_data, by_hand, repeat: int, backends) -> dict:
    import numpy as np
    from workloads import prepare

    import gtool
    from gtool import api, interp
    from gtool.backends import get_backend

    graph, data, wrt = prepare(text, make_data)
    ref_loss, ref_grads = by_hand(**data)
    row = {"workload": name}
    gg = api.grad(graph, wrt)
    for be in backends:
        t0 = time.perf_counter()
        backend = get_backend(be)  # imports numba
        t1 = time.perf_counter()
        prog = interp.program(gg, backend=be)  # lowering, fusion, code generation, import
        t2 = time.perf_counter()
        loss, grads = gtool.value_and_grad(graph, data, wrt=wrt, backend=be)  # numba compiles (or loads) here
        t3 = time.perf_counter()
        compiled = prog.compiled
        row[be] = {"import_s": t1 - t0, "codegen_s": t2 - t1, "compile_s": compiled.compile_seconds,
                   "first_call_s": t3 - t1, "fallback_runs": compiled.fallback_runs,
                   "segments": compiled.n_compiled, "numpy_steps": compiled.n_fallback,
                   "max_rel_grad_diff": max(float(np.max(np.abs(grads[k] - ref_grads[k])) /
                                                  (np.max(np.abs(ref_grads[k])) + 1e-30)) for k in wrt),
                   "loss_diff": abs(float(loss) - float(ref_loss)),
                   "ms": time_median(lambda be=be: gtool.value_and_grad(graph, data, wrt=wrt, backend=be), repeat) * 1e3}
        del backend
    row["numpy_backend_ms"] = time_median(lambda: gtool.value_and_grad(graph, data, wrt=wrt), repeat) * 1e3
    row["hand_ms"] = time_median(lambda: by_hand(**data), repeat) * 1e3
    return row


def child(only, repeat: int, backends) -> list[dict]:
    from workloads import WORKLOADS

    return [measure_one(name, *spec, repeat, backends) for name, spec in WORKLOADS.items() if not only or name in only]


def _run_child(args, threads: str, cache: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update({"OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                "NUMBA_NUM_THREADS": threads, "GTOOL_CACHE_DIR": cache})
    cmd = [sys.executable, __file__, "--child", "--repeat", str(args.repeat), "--only", args.only,
           "--backends", args.backends]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"benchmark child failed:\n{res.stderr}")
    return json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--only", default="")
    ap.add_argument("--backends", default="numba")
    ap.add_argument("--json", action="store_true", help="print the raw measurements as JSON")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    backends = [b for b in args.backends.split(",") if b]
    if args.child:
        print(json.dumps(child(only, args.repeat, backends)))
        return
    results = []
    for threads in args.threads.split(","):
        cache = tempfile.mkdtemp(prefix="gtool-bench-cache-")
        try:
            cold = _run_child(args, threads, cache)
            warm = _run_child(args, threads, cache)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        for c, w in zip(cold, warm):
            results.append({"threads": threads, "cold": c, "warm": w})
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"{'workload':<16}{'thr':>4}{'backend':>8}{'ms':>10}{'numpy-be':>10}{'hand':>10}{'x hand':>8}"
          f"{'x np-be':>8}{'cold s':>8}{'warm s':>8}{'codegen':>8}{'grad diff':>11}")
    for r in results:
        w, c = r["warm"], r["cold"]
        for be in backends:
            m = w[be]
            print(f"{w['workload']:<16}{r['threads']:>4}{be:>8}{m['ms']:>10.3f}{w['numpy_backend_ms']:>10.3f}"
                  f"{w['hand_ms']:>10.3f}{m['ms'] / w['hand_ms']:>8.2f}{m['ms'] / w['numpy_backend_ms']:>8.2f}"
                  f"{c[be]['first_call_s']:>8.2f}{m['first_call_s']:>8.2f}{c[be]['codegen_s']:>8.2f}"
                  f"{m['max_rel_grad_diff']:>11.1e}" + ("  (fell back to NumPy!)" if m["fallback_runs"] else ""))
    print("\nms: median of value_and_grad (forward + backward); x hand / x np-be: ratio to hand-written NumPy / to")
    print("the NumPy backend; cold s / warm s: first call (code generation + numba compile or cache load + first run)")
    print("in a process with an empty / a filled cache folder; codegen: lowering, fusion and writing the module.")


if __name__ == "__main__":
    main()
