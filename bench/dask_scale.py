"""Issue 16's scale run: loss and parameter gradients of a 2-layer MLP over 2,000,000 rows of
32 float64 features (x.npy: 512 MB), with the NumPy backend and with --backend dask (local
threads, and a LocalCluster of 1 and of 2 worker processes). A benchmark, never a test.

Each configuration is one `python -m gtool grad bench/dask_mlp.yaml --input x=@x.npy ...`
process, as a user would run it. Measured:

- peak RSS: the resident-set high-water mark of the gtool process (VmHWM from /proc, read by a
  poller every 20 ms, which also records the peak of the summed RSS of its process tree), and
  for a cluster the high-water marks of each worker process (the scheduler and workers are
  started by this script beforehand, one process each: `dask scheduler` / `dask worker`);
- time: wall time of the command, cluster start-up excluded (2 cores on the machine that
  produced docs/scale.md, shared with other jobs, so wall times are rough), and CPU time
  (user + system) of the gtool process and of each worker, which sharing inflates less;
- agreement: the loss and each gradient against the NumPy backend's (max relative difference).

    .venv/bin/python bench/dask_scale.py                    # all four configurations, 2,000,000 rows
    .venv/bin/python bench/dask_scale.py --rows 200000 --configs dask,cluster2
    .venv/bin/python bench/dask_scale.py --chunks batch=50000

Data goes to --dir (default /tmp/gtool-dask-bench, reused when the sizes match); results to
bench/results/dask_scale.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GRAPH = ROOT / "bench" / "dask_mlp.yaml"
RESULTS = ROOT / "bench" / "results" / "dask_scale.json"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1", "MALLOC_TRIM_THRESHOLD_": "0"}


def make_data(folder: Path, rows: int) -> tuple[Path, Path]:
    """x.npy [rows, 32] float64 and t.npy [rows] int64 (labels from a random linear map of x)."""
    folder.mkdir(parents=True, exist_ok=True)
    x_path, t_path = folder / "x.npy", folder / "t.npy"
    if x_path.exists() and np.load(x_path, mmap_mode="r").shape == (rows, 32):
        return x_path, t_path
    rng = np.random.default_rng(16)
    proj = rng.standard_normal((32, 10))
    x = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.float64, shape=(rows, 32))
    t = np.empty(rows, np.int64)
    for start in range(0, rows, 250_000):  # written in blocks: this script stays small too
        block = rng.standard_normal((min(250_000, rows - start), 32))
        x[start:start + len(block)] = block
        t[start:start + len(block)] = np.argmax(block @ proj + rng.standard_normal((len(block), 10)), axis=1)
    x.flush()
    del x
    np.save(t_path, t)
    return x_path, t_path


def _hwm(pid: int) -> int:
    """VmHWM of a process in bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree_rss(pid: int) -> int:
    try:
        import psutil
    except ImportError:  # then the gtool process's own VmHWM is the figure
        return 0
    try:
        p = psutil.Process(pid)
        return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)])
    except psutil.Error:
        return 0


def measure(cmd: list[str], watch: list[int]) -> dict:
    """Run `cmd`, polling its peak RSS and that of the `watch` pids (cluster workers)."""
    for pid in watch:  # reset the workers' high-water marks (5: VmHWM = VmRSS)
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass
    import tempfile

    cpu0 = [_cpu(pid) for pid in watch]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:  # files: a pipe would fill and block
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=ENV, cwd=ROOT)
        hwm, tree = 0, 0
        while True:
            hwm = max(hwm, _hwm(proc.pid))
            tree = max(tree, _tree_rss(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # reaped here, with its CPU time
            if pid:
                break
            time.sleep(0.02)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
        result = json.loads(out.read())
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "workers_cpu_s": [round(_cpu(pid) - c, 2) for pid, c in zip(watch, cpu0)],
            "peak_rss_bytes": max(hwm, tree), "result": result, "workers_peak_rss_bytes": [_hwm(pid) for pid in watch]}


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


class Cluster:
    """`dask scheduler` and N `dask worker` processes on 127.0.0.1 (one thread each)."""

    def __init__(self, workers: int) -> None:
        bin_dir = Path(sys.executable).parent
        self.port = 18786 + workers
        self.address = f"tcp://127.0.0.1:{self.port}"
        log = open(f"/tmp/gtool-dask-bench-cluster{workers}.log", "w")
        self.procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                                        str(self.port), "--no-dashboard"], stdout=log, stderr=log, env=ENV)]
        time.sleep(3)
        for k in range(workers):
            self.procs.append(subprocess.Popen([str(bin_dir / "dask"), "worker", self.address, "--nthreads", "1",
                                                "--nworkers", "1", "--no-nanny", "--no-dashboard", "--name", f"w{k}",
                                                "--host", "127.0.0.1"], stdout=log, stderr=log, env=ENV))
        self._wait(workers)

    def _wait(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s") as c:
            c.wait_for_workers(n, timeout=60)

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.procs[1:]]

    def close(self) -> None:
        for p in reversed(self.procs):
            p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def _diff(result: dict, ref: dict) -> float:
    worst = abs(result["loss"]["value"] - ref["loss"]["value"]) / abs(ref["loss"]["value"])
    for k, g in ref["gradients"].items():
        a, b = np.array(result["gradients"][k]["value"]), np.array(g["value"])
        worst = max(worst, float(np.max(np.abs(a - b)) / np.max(np.abs(b))))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--dir", default="/tmp/gtool-dask-bench")
    ap.add_argument("--configs", default="numpy,dask,cluster1,cluster2")
    ap.add_argument("--chunks", action="append", default=[], metavar="DIM=SIZE", help="passed to gtool (dask runs)")
    args = ap.parse_args()
    x_path, t_path = make_data(Path(args.dir), args.rows)
    base = [sys.executable, "-m", "gtool", "grad", str(GRAPH), "--input", f"x=@{x_path}", "--input", f"t=@{t_path}",
            "--format", "json", "--max-memory", "64GiB"]
    chunks = [a for c in args.chunks for a in ("--chunks", c)]
    rows, ref = [], None
    for config in args.configs.split(","):
        cluster = None
        cmd = base + (["--backend", "dask", *chunks] if config != "numpy" else [])
        if config.startswith("cluster"):
            cluster = Cluster(int(config[len("cluster"):]))
            cmd += ["--scheduler", cluster.address]
        try:
            sched0 = _cpu(cluster.procs[0].pid) if cluster else 0.0
            m = measure(cmd, cluster.worker_pids if cluster else [])
            m["scheduler_cpu_s"] = round(_cpu(cluster.procs[0].pid) - sched0, 2) if cluster else None
        finally:
            if cluster:
                cluster.close()
        ref = ref or (m["result"] if config == "numpy" else None)
        row = {"config": config, "rows": args.rows, "wall_s": m["wall_s"], "cpu_s": m["cpu_s"],
               "workers_cpu_s": m["workers_cpu_s"], "scheduler_cpu_s": m["scheduler_cpu_s"],
               "peak_rss_mib": round(m["peak_rss_bytes"] / 2**20),
               "workers_peak_rss_mib": [round(b / 2**20) for b in m["workers_peak_rss_bytes"]],
               "loss": m["result"]["loss"]["value"], "max_rel_diff_vs_numpy": _diff(m["result"], ref) if ref else None,
               "chunks": args.chunks}
        rows.append(row)
        print(json.dumps(row), flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"graph": str(GRAPH.relative_to(ROOT)), "runs": rows}, indent=1) + "\n")
    print(f"\n{'config':10} {'rows':>9} {'wall s':>7} {'CPU s':>6} {'workers CPU s':>14} {'peak RSS MiB':>13} "
          f"{'workers MiB':>12} {'vs numpy':>9}")
    for r in rows:
        diff = "-" if r["max_rel_diff_vs_numpy"] is None else f"{r['max_rel_diff_vs_numpy']:.1e}"
        print(f"{r['config']:10} {r['rows']:>9} {r['wall_s']:>7} {r['cpu_s']:>6} "
              f"{'+'.join(map(str, r['workers_cpu_s'])) or '-':>14} {r['peak_rss_mib']:>13} "
              f"{'+'.join(map(str, r['workers_peak_rss_mib'])) or '-':>12} {diff:>9}")


if __name__ == "__main__":
    main()
