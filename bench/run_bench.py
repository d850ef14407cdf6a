"""gtool (NumPy backend, library API) against hand-written NumPy, forward + backward.

Usage: python bench/run_bench.py [--repeat N] [--threads 1,2] [--only NAME,...]

For each thread count the measurements run in a fresh subprocess with the BLAS thread
variables set before NumPy loads (OPENBLAS_CORETYPE/L2_SIZE are unset there, as the env notes
advise for benchmarking). Reports median wall time of gtool.value_and_grad and of the
hand-written version, their ratio, and tracemalloc peak memory of one backward pass each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from timing import peak_bytes, time_median  # noqa: E402


def measure_one(name: str, text: str, make_data, by_hand, repeat: int) -> dict:
    import numpy as np
    from workloads import prepare

    import gtool

    graph, data, wrt = prepare(text, make_data)
    loss, grads = gtool.value_and_grad(graph, data, wrt=wrt)
    ref_loss, ref_grads = by_hand(**data)
    err = max(float(np.max(np.abs(grads[k] - ref_grads[k])) / (np.max(np.abs(ref_grads[k])) + 1e-30)) for k in wrt)

    def ours():
        return gtool.value_and_grad(graph, data, wrt=wrt)

    def theirs():
        return by_hand(**data)

    t_g, t_n = time_median(ours, repeat), time_median(theirs, repeat)
    m_g, m_n = peak_bytes(ours), peak_bytes(theirs)
    return {"workload": name, "gtool_ms": t_g * 1e3, "numpy_ms": t_n * 1e3, "ratio": t_g / t_n,
            "gtool_peak_mb": m_g / 2**20, "numpy_peak_mb": m_n / 2**20, "mem_ratio": m_g / max(m_n, 1),
            "max_rel_grad_diff": err, "loss_diff": abs(float(loss) - float(ref_loss))}


def measure(only, repeat: int) -> list[dict]:
    from workloads import WORKLOADS

    return [measure_one(name, *spec, repeat) for name, spec in WORKLOADS.items() if not only or name in only]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--only", default="")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    if args.child:
        print(json.dumps(measure(only, args.repeat)))
        return
    print(f"{'workload':<16}{'threads':>8}{'gtool ms':>11}{'numpy ms':>11}{'ratio':>8}"
          f"{'gtool MB':>10}{'numpy MB':>10}{'mem x':>7}{'grad diff':>11}")
    for threads in args.threads.split(","):
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        env.update({"OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
        out = subprocess.run([sys.executable, __file__, "--child", "--repeat", str(args.repeat), "--only", args.only],
                             env=env, capture_output=True, text=True, check=True).stdout
        for r in json.loads(out):
            print(f"{r['workload']:<16}{threads:>8}{r['gtool_ms']:>11.3f}{r['numpy_ms']:>11.3f}{r['ratio']:>8.2f}"
                  f"{r['gtool_peak_mb']:>10.1f}{r['numpy_peak_mb']:>10.1f}{r['mem_ratio']:>7.2f}"
                  f"{r['max_rel_grad_diff']:>11.1e}")


if __name__ == "__main__":
    main()
