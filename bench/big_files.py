"""Big graph files: load time against size, and the size cap's refusal (issue 10's 200 MB files).

Two shapes of big file, in JSON and YAML: one constant holding many numbers, and many tiny
nodes (`h_k: x * 2`). Each is written at a few sizes under the cap and validated end to end
(`gtool.validate.check_file`); the figures are CPU seconds (steadier than wall time on a
shared machine) and MB per CPU second, which stays flat when loading is linear. Then a
200 MB file (written for real) is handed to `load_file`: it must be refused from its size
before it is read, in milliseconds.
It is a benchmark, not a test: `python bench/big_files.py [--sizes 2,6,15]` (MB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gtool.errors import UsageError  # noqa: E402
from gtool.format.source import MAX_GRAPH_BYTES, load_file  # noqa: E402
from gtool.validate import check_file  # noqa: E402


def numbers_file(mb: float, fmt: str) -> str:
    n = int(mb * 1e6 / 10)  # "0.123456, " is 10 bytes
    vals = ", ".join(f"{(i % 1000) / 1000 + 0.000123:.6f}" for i in range(n))
    if fmt == "json":
        return (f'{{"gtool": 1, "constants": {{"c": {{"dtype": "float64", "value": [{vals}]}}}}, '
                f'"inputs": {{"x": [{n}]}}, "nodes": {{"y": "x * c"}}, "outputs": ["y"]}}')
    return (f"gtool: 1\nconstants:\n  c:\n    dtype: float64\n    value: [{vals}]\ninputs:\n  x: [{n}]\n"
            "nodes:\n  y: x * c\noutputs: [y]\n")


def nodes_file(mb: float, fmt: str) -> str:
    """A chain of tiny nodes (`h_k: h_{k-1} * 2`), the densest graph per byte."""
    n = int(mb * 1e6 / (25 if fmt == "json" else 22))
    prev = ["x"] + [f"h{i}" for i in range(n - 1)]
    if fmt == "json":
        body = ", ".join(f'"h{i}": "{p} * 2"' for i, p in enumerate(prev))
        return f'{{"gtool": 1, "inputs": {{"x": [3]}}, "nodes": {{{body}}}, "outputs": ["h{n - 1}"]}}'
    return ("gtool: 1\ninputs:\n  x: [3]\nnodes:\n" + "".join(f"  h{i}: {p} * 2\n" for i, p in enumerate(prev))
            + f"outputs: [h{n - 1}]\n")


def validate_cpu(path: str) -> float:
    t = time.process_time()
    report = check_file(path)
    cpu = time.process_time() - t
    if not report.valid:
        raise SystemExit(f"{path}: {report.errors[:2]}")
    return cpu


def refusal(tmp: str) -> float:
    path = Path(tmp) / "huge.json"
    chunk = b'{"gtool": 1, "doc": "' + b"x" * (1 << 20)
    with open(path, "wb") as f:
        for _ in range(200):
            f.write(chunk)
    t = time.perf_counter()
    try:
        load_file(str(path))
    except UsageError as e:
        took = time.perf_counter() - t
        print(f"200 MB file: refused in {took * 1e3:.2f} ms: {e.diagnostic.message[:90]}...")
        return took
    raise SystemExit("a 200 MB graph file was not refused")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2,6,15", help="file sizes in MB (the cap is "
                    f"{MAX_GRAPH_BYTES >> 20} MiB)")
    args = ap.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory(prefix="gtool-big-") as tmp:
        print(f"{'kind':8} {'fmt':4} {'MB':>6} {'cpu s':>7} {'MB/cpu s':>9}")
        for kind, make in (("numbers", numbers_file), ("nodes", nodes_file)):
            for fmt in ("json", "yaml"):
                rates = []
                for mb in (float(s) for s in args.sizes.split(",")):
                    path = Path(tmp) / f"{kind}.{fmt}"
                    path.write_text(make(mb, fmt))
                    size = path.stat().st_size / 1e6
                    cpu = validate_cpu(str(path))
                    rates.append(size / cpu)
                    print(f"{kind:8} {fmt:4} {size:>6.1f} {cpu:>7.2f} {size / cpu:>9.2f}", flush=True)
                linear = min(rates) > 0.6 * max(rates)
                ok &= linear
                print(f"{kind} {fmt}: {'linear' if linear else 'NOT linear'} (MB per CPU second within "
                      f"{max(rates) / min(rates):.2f}x)")
        ok &= refusal(tmp) < 0.5
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
