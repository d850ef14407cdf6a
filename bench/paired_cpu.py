"""gtool's NumPy backend against the peers harness's hand-written NumPy, in CPU time.

The harness (bench/peers.py) times wall clock, which a loaded shared machine inflates for
whichever side happens to be descheduled. This script runs the same workloads (the harness's
arrays, its hand-written forward + backward, gtool's graphs from its plugin) in one process,
alternating blocks of gtool.value_and_grad and the hand code, timed with time.process_time,
and prints the median ratio of the blocks (< 1: gtool is faster).

    PYTHONPATH=. OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/paired_cpu.py \\
        --workloads softmax_stable,elementwise,linreg,mlp [--blocks 15]

Compare two checkouts by running it with PYTHONPATH set to each. Benchmarks are not tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HARNESS = os.environ.get("GTOOL_PEERS_HARNESS", "/work/shared/bench/peers")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="softmax_stable,elementwise,linreg,mlp")
    ap.add_argument("--blocks", type=int, default=15)
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(HARNESS, "peers.py")):
        sys.exit(f"no peers harness at {HARNESS} (set GTOOL_PEERS_HARNESS)")
    sys.path.insert(0, HARNESS)
    os.environ.setdefault("GTOOL_PEERS_DIR", tempfile.mkdtemp(prefix="gtool-paired-"))
    import gtool_peer
    import peers

    peers._import_numpy()
    gtool_peer.write_graphs()
    for name in args.workloads.split(","):
        print(_row(name, peers.WORKLOADS[name], os.path.join(gtool_peer.GRAPHS, name + ".yaml"), args.blocks))


def _row(name: str, w, path: str, blocks: int) -> str:
    import gtool

    arrays = w.make_arrays(np.random.default_rng(0))
    graph = gtool.load(path)
    wrt, hand_args = list(w.params), [arrays[n] for n in w.names]

    def ours():
        return gtool.value_and_grad(graph, arrays, wrt=wrt)

    def hand():
        return w.np_fwd_bwd(*hand_args)

    _, grads = ours()
    _, want = hand()
    err = max(float(np.max(np.abs(grads[k] - g))) for k, g in zip(wrt, want))
    start = time.process_time()
    hand()
    reps = max(1, int(0.05 / max(time.process_time() - start, 1e-6)))
    ratios, t_ours, t_hand = [], [], []
    for _ in range(blocks):
        t_hand.append(_block(hand, reps))
        t_ours.append(_block(ours, reps))
        ratios.append(t_ours[-1] / t_hand[-1])
    return (f"{name:15s} gtool {statistics.median(t_ours) * 1e6:10.1f} us  hand {statistics.median(t_hand) * 1e6:10.1f} us"
            f"  ratio {statistics.median(ratios):.2f}  (max |grad diff| {err:.1e})")


def _block(fn, reps: int) -> float:
    start = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - start) / reps


if __name__ == "__main__":
    main()
