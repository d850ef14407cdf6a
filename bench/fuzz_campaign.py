"""A long structured-fuzzing campaign over gtool: the strategies of tests/fuzz_strategies.py (shorthand
expressions, graph documents, inputs files and `--input` flags, whole command lines from the real
click option set) run with hypothesis for as long as asked, against the one property of the test
suite: no traceback, no `internal error`, exit status 0/1/2, one JSON document in JSON mode, no
input file changed.

    .venv/bin/python bench/fuzz_campaign.py --minutes 30              # all targets, round robin
    .venv/bin/python bench/fuzz_campaign.py --minutes 2 --targets cli --backends numpy,numba
    .venv/bin/python bench/fuzz_campaign.py --replay fuzz-failures/cli-0001

It reports inputs tried, distinct code paths reached (line-to-line arcs inside gtool/, traced with
sys.settrace, and distinct lines), and failures: each distinct failure (by its first message line)
is saved once under --out as a reproducer folder (argv.json with the workspace as `{ws}`, the data
files it names, and what gtool printed) that `--replay` runs again. Hypothesis atheris-style
coverage guidance is not used (atheris needs a libFuzzer toolchain); new arcs are counted per round
so a flat curve shows when the campaign stops finding new paths. An input past --timeout is a
finding ("slow"); the alarm that stops it fires only when control returns to Python, so one long
NumPy call (a sum over a huge broadcast view) overruns the timeout and the campaign's end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
from fuzz_strategies import (  # noqa: E402
    DATA_VALUES,
    check_outcome,
    command_lines,
    expression_graph,
    expressions,
    input_flags,
    inputs_files,
    snapshot,
    workspace,
)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

GTOOL = str(ROOT / "gtool")


class Arcs:
    """Line-to-line arcs executed inside gtool/ (a cheap stand-in for branch coverage)."""

    def __init__(self) -> None:
        self.arcs: set[tuple[str, int, int]] = set()
        self.lines: set[tuple[str, int]] = set()

    def _local(self, frame, event, arg):
        if event == "line":
            code = frame.f_code.co_filename
            prev = self._prev.get(id(frame), -1)
            self.arcs.add((code, prev, frame.f_lineno))
            self.lines.add((code, frame.f_lineno))
            self._prev[id(frame)] = frame.f_lineno
        elif event == "return":
            self._prev.pop(id(frame), None)
        return self._local

    def _global(self, frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(GTOOL):
            return self._local
        return None

    @contextlib.contextmanager
    def tracing(self):
        self._prev: dict[int, int] = {}
        sys.settrace(self._global)
        threading.settrace(self._global)
        try:
            yield
        finally:
            sys.settrace(None)
            threading.settrace(None)


class _Slow(BaseException):
    """Raised by the alarm in an input that runs too long (a BaseException: gtool must not catch it)."""


def _alarm(signum, frame):
    raise _Slow()


TIMEOUT = [10.0]  # seconds one input may run (--timeout)


def run_gtool(argv: list[str]) -> tuple[int, str, str]:
    """gtool's main in-process, its stdout/stderr captured; an input past TIMEOUT is stopped."""
    import signal

    from gtool.cli import main

    out, err = io.StringIO(), io.StringIO()
    status = None
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT[0])
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings(), \
                np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                main(argv)
            except SystemExit as e:
                status = e.code
            except _Slow:
                err.write(f"Traceback (slow): still running after {TIMEOUT[0]:g} s\n")
                status = "slow"
            except BaseException as e:  # noqa: BLE001 - anything escaping main is a finding
                err.write(f"Traceback (escaped main): {type(e).__name__}: {e}\n")
                status = "escaped"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return status, out.getvalue(), err.getvalue()


# graphs from the hostile review (issue 10): the cli target draws them with the bundled ones
HOSTILE_GRAPHS = {
    "keyword_name.yaml": "gtool: 1\ninputs:\n  lambda: {shape: [2], value: [1.0, 2.0]}\nnodes:\n"
                         "  y: lambda * 2\n  L: sum(y)\noutputs: [L]\nloss: L\n",
    "nfkc_names.yaml": "gtool: 1\ninputs:\n  x: {shape: [2], value: [1.0, 2.0]}\n  \uff58: {shape: [2], value: [3.0, 4.0]}\n"
                       "nodes:\n  L: sum(x * \uff58)\noutputs: [L]\nloss: L\n",
    "int_overflow.yaml": "gtool: 1\ninputs:\n  k: {shape: [2], dtype: int32, value: [2147483647, 1]}\nnodes:\n"
                         "  y: k + 1\n  z: k * 3000000000\noutputs: [y, z]\n",
    "huge_range.yaml": "gtool: 1\ninputs:\n  x: {shape: [3], range: [-inf, inf]}\n  i: {shape: [2], dtype: int64, "
                       "range: [-1e30, 1e30]}\nnodes:\n  L: sum(exp(x))\noutputs: [L]\nloss: L\n",
    "bombs.yaml": "gtool: 1\ninputs:\n  x: {shape: [2], value: [1.0, 2.0]}\n  t: {shape: [2], dtype: int64, "
                  "value: [0, 1]}\nnodes:\n  h: {op: one_hot, inputs: [t], attrs: {depth: 100000000000}}\n"
                  "  b: {op: broadcast_to, inputs: [x], attrs: {shape: [100000, 100000, 2]}}\n  L: sum(b)\n"
                  "outputs: [L]\nloss: L\n",
    "escapes.yaml": "gtool: 1\nname: \"evil\\e[31m\\x07\"\ndoc: \"\\u202e\\x01\"\ninputs:\n"
                    "  x: {shape: [2], value: [1.0, 2.0], doc: \"\\e]0;title\\x07\"}\nnodes:\n  L: sum(x)\n"
                    "outputs: [L]\nloss: L\n",
}


class Campaign:
    def __init__(self, out: Path, backends: tuple[str, ...], hostile: bool = True) -> None:
        self.out = out
        self.backends = backends
        self.folder = Path(tempfile.mkdtemp(prefix="gtool-fuzz-"))
        self.ws = workspace(self.folder)
        if hostile:
            for name, text in HOSTILE_GRAPHS.items():
                (self.folder / "graphs" / name).write_text(text, encoding="utf-8")
                self.ws["graphs"].append(str(self.folder / "graphs" / name))
        self.pristine = {f: Path(f).read_bytes() for f in snapshot(self.ws)}
        self.tried = 0
        self.failures: dict[str, Path] = {}
        self.arcs = Arcs()
        self.deadline = float("inf")

    def check(self, target: str, argv: list[str], inputs: bool = False) -> None:
        """Run one input; a failure is recorded (once per distinct message) and the campaign goes on."""
        if time.monotonic() > self.deadline:
            return  # the rest of this round is drawn but not run
        self.tried += 1
        before = snapshot(self.ws) if inputs else None
        with self.arcs.tracing():
            status, out, err = run_gtool(argv)
        after = snapshot(self.ws) if inputs else None
        try:
            check_outcome(argv, status, out, err, before, after)
        except AssertionError as e:
            self.record(target, argv, status, out, err, e)
        if inputs and before != after:  # a deliberate write (--in-place, -o onto a file it does not read): undo it
            for f, data in self.pristine.items():
                Path(f).write_bytes(data)

    def record(self, target: str, argv, status, out: str, err: str, e: AssertionError) -> None:
        detail = str(e.args[0][1] if isinstance(e.args[0], tuple) and len(e.args[0]) > 1 else e)
        key = target + ":" + (argv[0] + " " if status == "slow" else "") + (_first_line(err) or detail)[:160]
        if key in self.failures:
            return
        where = self.out / f"{target}-{len(self.failures) + 1:04d}"
        where.mkdir(parents=True, exist_ok=True)
        ws = str(self.folder)
        for a in argv:  # data files made for this input travel with the reproducer
            if a.startswith(ws) and Path(a).is_file() and Path(a).name.startswith(("data_", "g.")):
                shutil.copy(a, where / Path(a).name)
        (where / "argv.json").write_text(json.dumps([a.replace(ws, "{ws}") for a in argv], indent=1))
        (where / "result.txt").write_text(f"status: {status}\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}\n")
        self.failures[key] = where
        print(f"  FAILURE {where.name}: {key}", flush=True)

    # targets ------------------------------------------------------------------------------------------------

    def target_expr(self, data) -> None:
        path = self.folder / "g.json"
        path.write_text(expression_graph(data.draw(expressions())))
        self.check("expr", ["validate", str(path), "--format", "json"])

    def target_document(self, data) -> None:
        keys = st.sampled_from(("gtool", "name", "dims", "inputs", "params", "constants", "nodes", "outputs", "loss",
                                "doc", "x"))
        doc = data.draw(st.dictionaries(keys, DATA_VALUES, max_size=6))
        doc.setdefault("gtool", 1)
        fmt = data.draw(st.sampled_from(("json", "yaml")))
        path = self.folder / f"g.{fmt}"
        try:
            import yaml

            path.write_text(json.dumps(doc) if fmt == "json" else yaml.safe_dump(doc))
        except ValueError:
            return
        command = data.draw(st.sampled_from(("validate", "lint", "shapes", "run", "grad-check")))
        extra = ["--random-inputs"] if command in ("run", "grad-check") else []
        self.check("document", [command, str(path), *extra, "--format", "json"])

    def target_mutate(self, data) -> None:
        """The mutations of tests/test_fuzz_files.py (deleted keys, swapped names, garbage, deep
        nesting, huge numbers, odd Unicode, ...) on the bundled graphs, through several commands."""
        import random

        import test_fuzz_files as tf

        r = random.Random(data.draw(st.integers(0, 2**32 - 1)))
        fmt = data.draw(st.sampled_from(("yaml", "yaml", "json")))
        text = r.choice(tf.JSON_SEEDS if fmt == "json" else tf.SEEDS)
        for _ in range(data.draw(st.integers(1, 3))):
            with contextlib.suppress(Exception):
                text = r.choice(tf.MUTATIONS)(text, r, fmt)
        path = self.folder / f"g.{fmt}"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        command = data.draw(st.sampled_from(("validate", "lint", "shapes", "run", "grad", "grad-check", "explain",
                                             "render", "rewrite")))
        extra = ["--random-inputs"] if command in ("run", "grad", "grad-check", "explain") else []
        fmt_flag = ["--format", data.draw(st.sampled_from(("json", "text")))]
        self.check("mutate", [command, str(path), *extra, *fmt_flag])

    def target_graphs(self, data) -> None:
        """Random valid graphs (tests/test_fuzz_files.py's generator: predicted shapes, free and rigid
        dims, many ops) through random command lines in place of the bundled graphs."""
        import test_fuzz_files as tf

        from gtool.cli import cli

        _, fmt, text, _ = data.draw(tf.random_graphs())
        path = self.folder / f"g.{fmt}"
        path.write_text(text)
        argv = data.draw(command_lines(self.ws, self.backends))
        argv = [str(path) if a in self.ws["graphs"] else a for a in argv]
        if any(p.name == "dim_flags" for p in cli.commands[argv[0]].params) and data.draw(st.booleans()):
            argv += ["--dim", "n=2"]
        if argv[0] in ("run", "grad", "render", "explain", "grad-check") and data.draw(st.booleans()):
            argv.append("--random-inputs")
        self.check("graphs", argv, inputs=True)

    def target_data(self, data) -> None:
        argv = ["run", data.draw(st.sampled_from(self.ws["graphs"])), "--format", "json"]
        if data.draw(st.booleans()):
            argv += ["--inputs", data.draw(inputs_files(self.folder))]
        for flag in data.draw(st.lists(input_flags(self.ws["npy"]), max_size=3)):
            argv += ["--input", flag]
        if data.draw(st.booleans()):
            argv.append("--random-inputs")
        self.check("data", argv, inputs=True)

    def target_cli(self, data) -> None:
        self.check("cli", data.draw(command_lines(self.ws, self.backends)), inputs=True)

    def round(self, target: str, examples: int, seed: int) -> None:
        fn = getattr(self, f"target_{target}")

        @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(st.data())
        def run(data):
            fn(data)

        run = __import__("hypothesis").seed(seed)(run)
        run()


def _first_line(err: str) -> str:
    if "Traceback (slow)" in err:
        return "slow: " + err.split("Traceback (slow):")[1].splitlines()[0].strip()
    for line in err.splitlines():
        if "internal error" in line or "Traceback" in line or "Error" in line:
            return line.strip()
    return ""


def replay(folder: Path) -> int:
    """Run a saved reproducer again (its data files are found next to argv.json)."""
    ws_folder = Path(tempfile.mkdtemp(prefix="gtool-replay-"))
    workspace(ws_folder)
    for f in folder.iterdir():
        if f.name not in ("argv.json", "result.txt"):
            shutil.copy(f, ws_folder / f.name)
    argv = [a.replace("{ws}", str(ws_folder)) for a in json.loads((folder / "argv.json").read_text())]
    print("gtool " + " ".join(argv))
    status, out, err = run_gtool(argv)
    print(f"status {status}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}")
    try:
        check_outcome(argv, status, out, err)
    except AssertionError as e:
        print(f"STILL FAILS: {str(e)[:300]}")
        return 1
    print("passes now")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="how long to run (default 5)")
    ap.add_argument("--targets", default="expr,document,mutate,graphs,data,cli",
                    help="comma-separated: expr,document,mutate,graphs,data,cli")
    ap.add_argument("--backends", default="numpy", help="backends the cli target may pick (numpy,numba,cuda)")
    ap.add_argument("--examples", type=int, default=200, help="examples per hypothesis round")
    ap.add_argument("--out", default="fuzz-failures", help="folder for reproducers")
    ap.add_argument("--seed", type=int, default=0, help="first round's seed (each round adds 1)")
    ap.add_argument("--replay", metavar="DIR", help="run one saved reproducer again and exit")
    ap.add_argument("--no-hostile", action="store_true", help="leave out the hostile-review graphs")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds one input may run before it counts as a "
                    "hang (default 5)")
    ap.add_argument("--max-memory-gb", type=float, default=8.0, help="address-space limit of the campaign, so a "
                    "memory bomb is a MemoryError rather than the OOM killer (default 8; 0: none)")
    args = ap.parse_args()
    if args.replay:
        return replay(Path(args.replay))
    os.environ.pop("GTOOL_DEBUG", None)
    TIMEOUT[0] = args.timeout
    if args.max_memory_gb > 0:
        import resource

        limit = int(args.max_memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    campaign = Campaign(Path(args.out), tuple(args.backends.split(",")), hostile=not args.no_hostile)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    start = time.monotonic()
    deadline = campaign.deadline = start + 60 * args.minutes
    seed, rounds = args.seed, 0
    print(f"fuzzing {', '.join(targets)} for {args.minutes:g} min; reproducers under {args.out}/", flush=True)
    while time.monotonic() < deadline:
        target = targets[rounds % len(targets)]
        arcs0, tried0 = len(campaign.arcs.arcs), campaign.tried
        examples = args.examples
        t0 = time.monotonic()
        campaign.round(target, examples, seed)
        rounds += 1
        seed += 1
        print(f"[{(time.monotonic() - start) / 60:5.1f} min] {target:8s} +{campaign.tried - tried0} inputs "
              f"({(campaign.tried - tried0) / max(time.monotonic() - t0, 1e-9):.0f}/s), "
              f"+{len(campaign.arcs.arcs) - arcs0} new arcs; total {campaign.tried} inputs, "
              f"{len(campaign.arcs.arcs)} arcs, {len(campaign.arcs.lines)} lines, "
              f"{len(campaign.failures)} distinct failures", flush=True)
    minutes = (time.monotonic() - start) / 60
    print(f"\n{campaign.tried} inputs in {minutes:.1f} min ({rounds} rounds); distinct code paths: "
          f"{len(campaign.arcs.arcs)} arcs, {len(campaign.arcs.lines)} lines in gtool/; "
          f"distinct failures: {len(campaign.failures)}")
    for key, where in campaign.failures.items():
        print(f"  {where}: {key}")
    shutil.rmtree(campaign.folder, ignore_errors=True)
    return 1 if campaign.failures else 0


if __name__ == "__main__":
    sys.exit(main())
