"""`make bench`'s peers run: gtool beside torch, JAX, autograd, PyTensor and onnxruntime.

Runs the shared peers harness (../shared/bench/peers, or $GTOOL_PEERS_HARNESS) with its gtool
plugin, one thread, importing THIS checkout (PYTHONPATH), under the peers' Python
($PEERS_PYTHON, else $PEERS_VENV/bin/python, else ~/.cache/gtool-peers/venv/bin/python, else
this Python). Peers not installed there are skipped by the harness (listed as unavailable);
when the harness itself is missing this says so and exits 0: benchmarks are not tests.

Usage: python bench/peers.py [harness options, e.g. --workloads a1,linreg --quick]
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def harness() -> str | None:
    for folder in (os.environ.get("GTOOL_PEERS_HARNESS"), os.path.join(ROOT, "..", "shared", "bench", "peers"),
                   "/work/shared/bench/peers"):
        if folder and os.path.isfile(os.path.join(folder, "peers.py")):
            return os.path.abspath(folder)
    return None


def peers_python() -> str:
    if os.environ.get("PEERS_PYTHON"):
        return os.environ["PEERS_PYTHON"]
    venv = os.environ.get("PEERS_VENV") or os.path.join(os.path.expanduser("~"), ".cache", "gtool-peers", "venv")
    py = os.path.join(venv, "bin", "python")
    return py if os.path.exists(py) else sys.executable


def main(argv: list[str]) -> int:
    folder = harness()
    if folder is None:
        print("peers harness not found (set GTOOL_PEERS_HARNESS): skipped")
        return 0
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [peers_python(), os.path.join(folder, "peers.py"), "--plugin", os.path.join(folder, "gtool_peer.py"),
           "--threads", "1", *argv]
    print("$", " ".join(cmd), flush=True)
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
