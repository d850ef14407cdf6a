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
@click.option("--backend", type=click.Choice(["numpy", "dask"]), default="numpy", show_default=True,
              help="dask: the plan of one task, which holds one chunk of the chunked dim (docs/scale.md).")
@click.option("--chunks", "chunk_flags", multiple=True, metavar="DIM=SIZE",
              help="--backend dask: rows per chunk [default: as `gtool run --backend dask` chooses].")
@loss_option
@format_option()
@plugin_option
def memory(path, dim_flags, wrt, of, remat, budget, solve, out_path, backend, chunk_flags, loss_expr, fmt):
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
    chunked = _dask_chunks(graph, targets, of, dims, backend, chunk_flags)
    if chunked:
        if solve in chunked:
            raise UsageError("usage", f"--solve {solve} with --backend dask: the chunked dim's task size is --chunks")
        dims = {**dims, **{d: rows for d, (rows, _) in chunked.items()}}
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
        if backend == "dask":
            doc["dask"] = {"per_task": True, "chunks": {d: {"rows": r, "of": n} for d, (r, n) in chunked.items()}}
        click.echo(report.dumps(doc))
    else:
        if backend == "dask":
            parts = [f"{d}={r} of {n} ({-(-n // r)} chunks)" for d, (r, n) in chunked.items()] or ["nothing chunked"]
            click.echo(f"--backend dask: the plan of one task, {', '.join(parts)}; each worker thread runs one task "
                       "at a time, and the params' gradients are summed over the chunks\n")
        click.echo(format_text(rep))
        if solved is not None:
            click.echo(f"\nlargest {solve} that fits in {human(limit)}: {solved}")
        elif limit is not None:
            click.echo(f"\n{'fits' if fits else 'does not fit'} in {human(limit)}")
    if not fits:
        sys.exit(EXIT_FAILED)


def _dask_chunks(graph, targets, of, dims: dict, backend: str, chunk_flags) -> dict[str, tuple[int, int]]:
    """dim -> (rows per chunk, full size) for --backend dask (empty for numpy)."""
    if backend != "dask":
        if chunk_flags:
            raise UsageError("usage", "--chunks is for --backend dask")
        return {}
    from .. import api
    from ..dask import Options, parse_chunks
    from ..dask.data import batch_dims
    from ..interp import program
    from ..memory.plan import bind_dims

    bindings = bind_dims(graph, dims)
    chunks = parse_chunks(chunk_flags)
    check_dim_names(graph, chunks)
    prog = program(api.gradient(graph, targets, of).graph)
    return {d: (rows, bindings[d]) for d, rows in batch_dims(prog, bindings, Options(chunks=chunks)).items()}


COMMANDS = [memory]
