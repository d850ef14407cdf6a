"""memory: a thin shell over gtool.memory.report (the store-vs-recompute plan of a gradient run)."""

from __future__ import annotations

import sys

import click

from .. import report
from ..errors import EXIT_FAILED, UsageError
from .common import apply_loss, check_dim_names, format_option, load_graph, loss_option, parse_dims, plugin_option


@click.command()
@click.argument("path", metavar="FILE")
@click.option("--dim", "dim_flags", multiple=True, metavar="NAME=SIZE", help="Bind a dim to a size.")
@click.option("--wrt", metavar="A,B", help="Differentiate with respect to these (default: params, else float inputs).")
@click.option("--of", "of", metavar="NAME", help="The scalar to differentiate (default: the loss).")
@click.option("--remat", default="none", show_default=True, metavar="POLICY",
              help="none, sqrt, cheap or budget=SIZE: what the backward pass recomputes (docs/memory.md).")
@click.option("--budget", metavar="SIZE", help="A memory budget (e.g. 16GiB): say whether the run fits; with "
              "--solve DIM, the largest DIM that fits.")
@click.option("--solve", metavar="DIM", help="With --budget: find the largest size of this dim that fits.")
@click.option("-o", "--output", "out_path", metavar="PLOT.svg", help="Also draw live bytes over the run as SVG.")
@loss_option
@format_option()
@plugin_option
def memory(path, dim_flags, wrt, of, remat, budget, solve, out_path, loss_expr, fmt):
    """The memory plan of forward + backward as the executor runs it: the peak and where it
    occurs, each value the backward pass keeps or recomputes and why, and live bytes over the run.

    Exit 1 when --budget is given and the run does not fit it. See docs/memory.md."""
    from ..budget import human, parse_size
    from ..format.write import refuse_input, write_atomic
    from ..memory.report import format_text, memory_report, solve_dim

    dims = parse_dims(dim_flags)
    graph = apply_loss(load_graph(path, dims), loss_expr, {"inputs": {}}, of)  # (its names: the model's)
    if solve:
        check_dim_names(graph, {solve: 1})
        if not budget:
            raise UsageError("usage", "--solve needs --budget SIZE")
    if out_path:
        if not out_path.endswith(".svg"):
            raise UsageError("usage", f"-o wants a .svg file, got {out_path}")
        refuse_input(out_path, (path,))
    targets = [w.strip() for w in wrt.split(",") if w.strip()] if wrt else None
    limit = parse_size(budget, "--budget") if budget else None
    solved = None
    if solve:
        solved, rep = solve_dim(graph, solve, limit, targets, of, remat, dims)
    else:
        rep = memory_report(graph, targets, of, remat, dims)
    fits = limit is None or rep.peak_bytes <= limit
    if out_path:
        from ..memory.svg import timeline_svg

        write_atomic(out_path, timeline_svg([rep], f"{graph.name or path}: live bytes, --remat {rep.policy}").encode())
    if fmt == "json":
        doc = rep.to_json()
        if limit is not None:
            doc.update(budget_bytes=limit, fits=fits)
        if solved is not None:
            doc["solved"] = {"dim": solve, "size": solved}
        click.echo(report.dumps(doc))
    else:
        click.echo(format_text(rep))
        if solved is not None:
            click.echo(f"\nlargest {solve} that fits in {human(limit)}: {solved}")
        elif limit is not None:
            click.echo(f"\n{'fits' if fits else 'does not fit'} in {human(limit)}")
    if not fits:
        sys.exit(EXIT_FAILED)


COMMANDS = [memory]
