"""grad-check: every gradient the tool computes, against finite differences, file by file, for CI."""

from __future__ import annotations

import math
import sys
import time

import click

from .. import report
from ..errors import EXIT_FAILED, EXIT_OK, GraphError, UsageError
from ..format.write import refuse_input, write_atomic
from ..gradcheck import DEFAULTS, FORWARD_RTOL, FULL_LIMIT, Result, failure_details, failure_line, junit_xml
from ..gradcheck import grad_check as check_graph
from ..validate import expand_paths
from .common import (
    apply_loss,
    backend_option,
    check_dim_names,
    data_options,
    format_option,
    load_graph,
    loss_option,
    plugin_option,
)

_D64, _D32 = DEFAULTS["float64"], DEFAULTS["float32"]


@click.command("grad-check")
@click.argument("paths", nargs=-1, required=True, metavar="FILE_OR_DIR...")
@click.option("--wrt", metavar="A,B", help="Targets (default: params, else float inputs).")
@click.option("--of", "of", metavar="NAME", help="The scalar to differentiate (default: the loss).")
@click.option("--mode", type=click.Choice(["auto", "full", "fast"]), default="auto", show_default=True,
              help="full: perturb every element; fast: --directions random directions; auto: full up to "
                   "--full-limit elements per target, else fast.")
@click.option("--directions", type=click.IntRange(min=1), default=4, show_default=True,
              help="Random directions per target in fast mode (and for --order 2).")
@click.option("--full-limit", type=click.IntRange(min=0), default=FULL_LIMIT, show_default=True,
              help="auto mode: the largest target checked element by element.")
@click.option("--against", type=click.Choice(["fd", "forward"]), default="fd", show_default=True,
              help=f"fd: central finite differences; forward: forward mode (dot-product test, rtol {FORWARD_RTOL:g}).")
@click.option("--order", type=click.IntRange(1, 2), default=1, show_default=True,
              help="2: check second derivatives (H v against differences of the gradient).")
@click.option("--rtol", type=float, help=f"Relative tolerance [float64: {_D64.rtol:g}, float32: {_D32.rtol:g}].")
@click.option("--atol", type=float, help=f"Absolute tolerance [float64: {_D64.atol:g}, float32: {_D32.atol:g}].")
@click.option("--eps", type=float, help=f"Relative step, h = eps * max(1, |x|) [float64: {_D64.eps:g}, "
                                        f"float32: {_D32.eps:g}].")
@click.option("--dtype", type=click.Choice(["float64", "float32", "float16"]), default="float64", show_default=True,
              help="Precision of the check; graphs are cast to it (float32 is too coarse to trust).")
@click.option("--strict", is_flag=True, help="Count entries at a kink (relu at 0, max ties) as failures.")
@click.option("--junit", "junit", metavar="FILE.xml", help="Also write a JUnit XML report (one test per target).")
@loss_option
@data_options
@backend_option
@format_option("text", "json")
@plugin_option
def grad_check(paths, wrt, of, mode, directions, full_limit, against, order, rtol, atol, eps, dtype, strict,
               junit, loss_expr, data, backend, fmt):
    """Check reverse-mode gradients against central finite differences, in float64.

    Exit status 0 when every target of every file passes, 1 when any fails (or a file is
    invalid), 2 for a wrong call. Where data is missing, inputs are random (seeded).
    """
    for name, value in (("--rtol", rtol), ("--atol", atol), ("--eps", eps)):
        positive = name in ("--eps", "--rtol")  # rtol 0 would ask finite differences to be exact (and divide by it)
        if value is not None and (not math.isfinite(value) or value < 0 or (positive and value == 0)):
            raise UsageError("usage", f"{name} must be a finite number {'above' if positive else 'at least'} 0, "
                             f"got {value}")
    if dtype in ("float32", "float16"):
        digits = 3 if dtype == "float32" else 2
        click.echo(f"gtool: warning: checking in {dtype}: finite differences keep about {digits} digits there, so the "
                   f"tolerances are loose (rtol {DEFAULTS[dtype].rtol:g}); float64 (the default) is the reliable check",
                   err=True)
    files = expand_paths(paths)
    if junit:
        refuse_input(junit, tuple(files))
    targets = [w.strip() for w in wrt.split(",") if w.strip()] if wrt else None
    loaded: list[tuple[str, object]] = []  # (path, Graph, or the failed Result of an invalid file), in order
    for path in files:
        try:
            loaded.append((path, apply_loss(load_graph(path, data["dims"], check_dims=False), loss_expr, data, of)))
        except UsageError:
            raise
        except GraphError as e:
            loaded.append((path, Result(path, None, False, mode="invalid", message=e.diagnostic.message,
                                        diagnostics=list(e.diagnostics))))
    graphs = [g for _, g in loaded if not isinstance(g, Result)]
    if len(graphs) == len(files):  # with every file loaded, a name that none of them has is a typo
        check_dim_names(graphs, data["dims"])
        if len(files) > 1:  # one file: the run names a wrong data name itself
            _check_data_names(graphs, data["inputs"])
    bar = _Progress(enabled=sys.stderr.isatty())
    results: list[Result] = []
    for path, graph in loaded:
        if isinstance(graph, Result):
            results.append(graph)
            continue
        given = data["inputs"]
        if len(files) > 1:  # data names that a file does not have belong to another file
            given = {k: v for k, v in given.items() if k in graph.tensors}
        bar.start(path)
        try:
            results += check_graph(graph, given, targets, of, mode=mode, directions=directions, against=against,
                                  order=order, rtol=rtol, atol=atol, eps=eps, dtype=dtype, strict=strict,
                                  full_limit=full_limit, seed=data["seed"], dims=data["dims"], backend=backend,
                                  progress=bar)
        except UsageError as e:
            if len(files) == 1 or e.code not in ("non-scalar-loss", "dtype-mismatch"):
                raise
            # in a folder, a graph with nothing to differentiate is that file's failure, not a misuse
            results.append(Result(path, None, False, mode="error", message=e.diagnostic.message,
                                  diagnostics=list(e.diagnostics)))
        except GraphError as e:  # the graph failed to run on the check's data
            results.append(Result(path, None, False, mode="error", message=e.diagnostic.message,
                                  diagnostics=list(e.diagnostics)))
        finally:
            bar.done()
    passed = all(r.passed for r in results)
    if junit:
        write_atomic(junit, junit_xml(results))
    if fmt == "json":
        click.echo(report.dumps({"passed": passed, "results": [r.to_json() for r in results]}))
    else:
        click.echo(_text(results, dtype, against, order))
        n_files = len(dict.fromkeys(r.path for r in results))
        bad = sum(not r.passed for r in results)
        kinks = sum(r.kinks for r in results if r.passed)
        click.echo(f"{n_files} file{'s' * (n_files != 1)}, {len(results)} check{'s' * (len(results) != 1)}: "
                   f"{len(results) - bad} passed, {bad} failed" + (f" ({kinks} entries at a kink accepted)" if kinks else ""),
                   err=True)
    sys.exit(EXIT_OK if passed else EXIT_FAILED)


def _check_data_names(graphs, given: dict) -> None:
    """Data is handed to the files that have its name; a name no file has would be dropped silently."""
    from ..errors import did_you_mean

    known = set().union(*(g.tensors for g in graphs))
    for name in given:
        if name not in known:
            near = did_you_mean(name, known)
            raise UsageError("unknown-name", f"data given for '{name}', which no graph checked has",
                             hint=f"did you mean '{near}'?" if near else None)


def _text(results: list[Result], dtype: str, against: str, order: int) -> str:
    """The table, then one paragraph per failure (what failed, then which node to blame)."""
    method = "forward mode (dot-product test)" if against == "forward" else "central finite differences"
    what = "second derivatives (H v)" if order == 2 else "reverse-mode gradients"
    lines = [f"{what} against {method}, in {dtype} (every graph is cast to {dtype} for the check)"]
    rows = []
    for r in results:
        if r.mode in ("invalid", "error"):
            rows.append([r.path, r.wrt or "-", r.mode, "", "", "", "", "", "", "", "", "FAIL"])
            continue
        worst = "" if r.index is None else "[" + ", ".join(map(str, r.index)) + "]"
        if r.direction is not None:
            worst = (worst + " " if worst else "") + f"dir {r.direction}"
        status = "ok" if r.passed else "FAIL"
        if r.kinks:
            status += f" ({r.kinks} at a kink)"
        rows.append([r.path, r.wrt, r.mode, r.size, _g(r.max_abs_error), _g(r.max_rel_error), worst, _g(r.analytic, 7),
                     _g(r.numeric, 7), r.evaluations, f"{r.seconds:.2f}s", status])
    lines.append(report.table(["path", "wrt", "mode", "size", "max abs err", "max rel err", "worst", "analytic",
                               "numeric", "evals", "time", "result"], rows))
    for r in results:
        if not r.passed:
            lines.append("")
            lines.append(f"FAIL {r.path}" + (f" {r.wrt}" if r.wrt else "") + f": {failure_line(r)}")
            lines.extend("  " + d.replace("\n", "\n  ") for d in failure_details(r))
    return "\n".join(lines)


def _g(x, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}g}"


def _raw_stderr():
    """stderr under the CLI's escaping wrapper (which would print the bar's control characters)."""
    return getattr(sys.stderr, "raw", sys.stderr)


class _Progress:
    """A one-line progress bar on stderr, drawn only on a TTY and once a check runs past 0.5 s."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.path = ""
        self.t0 = self.last = 0.0
        self.drawn = False

    def start(self, path: str) -> None:
        self.path, self.t0, self.last = path, time.monotonic(), 0.0

    def __call__(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.t0 < 0.5 or now - self.last < 0.1 or total <= 0:
            return
        self.last = now
        frac = min(1.0, done / total)
        fill = int(30 * frac)
        path = report.escape_text(self.path)  # the terminal control below is gtool's own, the path is not
        click.echo(f"\r{path} {label} [{'#' * fill}{'.' * (30 - fill)}] {done}/{total}", nl=False, file=_raw_stderr())
        self.drawn = True

    def done(self) -> None:
        if self.drawn:
            click.echo("\r\033[K", nl=False, file=_raw_stderr())
            self.drawn = False


COMMANDS = [grad_check]
