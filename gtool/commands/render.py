"""render and explain: thin shells over gtool.render and gtool.explain."""

from __future__ import annotations

import click

from .. import report
from ..errors import UsageError
from .common import apply_loss, backend_option, data_options, format_option, load_graph, loss_option, plugin_option


def _targets(wrt: str | None) -> list[str] | None:
    return [w.strip() for w in wrt.split(",") if w.strip()] if wrt else None


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="FILE [NEW]")
@click.option("-o", "--output", "out_path", metavar="OUT", help="Write .dot/.gv text or a .svg/.png/.pdf image "
              "(drawn by Graphviz's `dot`; without it, .svg by graphviz.wasm). Default: DOT text on stdout.")
@click.option("--values", "show_values", is_flag=True, help="Run the graph and show every node's value.")
@click.option("--grads", "show_grads", is_flag=True, help="Show dL/d(node) for every node (runs the gradient graph).")
@click.option("--backward", is_flag=True, help="Draw the emitted gradient graph instead of the forward graph.")
@click.option("--diff", is_flag=True, help="Draw two graphs OLD NEW side by side, what changed highlighted.")
@click.option("--wrt", metavar="A,B", help="Gradient targets for --backward and the saved marks (default: params, "
              "else float inputs).")
@click.option("--of", "of", metavar="NAME", help="The scalar to differentiate (default: the loss).")
@click.option("--saved/--no-saved", default=True, show_default=True,
              help="Mark the values the backward pass keeps, with their bytes.")
@click.option("--remat", default="none", show_default=True, metavar="POLICY",
              help="Mark what the backward pass recomputes under this policy (none, sqrt, cheap, budget=SIZE; "
              "docs/memory.md); with --backward, draw its __remat_ nodes.")
@click.option("--legend/--no-legend", default=True, show_default=True, help="Draw a legend of the styles used.")
@click.option("--rankdir", type=click.Choice(["TB", "LR"]), default="TB", show_default=True,
              help="Layout direction: top to bottom or left to right.")
@click.option("--max-nodes", type=click.IntRange(min=1), default=None, metavar="N",
              help="Collapse a bigger graph by name prefix into at most N boxes.")
@loss_option
@data_options
@backend_option
@format_option()
@plugin_option
def render(paths, out_path, show_values, show_grads, backward, diff, wrt, of, saved, remat, legend, rankdir, max_nodes,
           loss_expr, data, backend, fmt):
    """Draw a graph as Graphviz DOT (or an image): shapes on edges, values, gradients, saved tensors.

    `gtool render --diff OLD NEW` draws two graphs side by side. See docs/render.md.
    """
    from .. import api
    from .. import render as r
    from ..format.write import refuse_input

    if out_path:
        refuse_input(out_path, tuple(paths))
    if diff:
        if len(paths) != 2:
            raise UsageError("usage", f"--diff wants two files, OLD and NEW; got {len(paths)}")
        if show_values or show_grads or backward:
            raise UsageError("usage", "--diff does not combine with --values, --grads or --backward")
        old, new = (apply_loss(load_graph(p, data["dims"], check_dims=False), loss_expr, data, of) for p in paths)
        kw = dict(labels=tuple(paths), rankdir=rankdir, legend=legend, max_nodes=max_nodes)
        text = r.diff_to_dot(old, new, **kw)
        plain = lambda: r.diff_to_dot(old, new, **kw, html_labels=False)
    else:
        if len(paths) != 1:
            raise UsageError("usage", f"render draws one FILE (use --diff OLD NEW for two); got {len(paths)}")
        if backward and show_grads:
            raise UsageError("usage", "--grads does not combine with --backward: the gradient graph's nodes are "
                             "the gradients; use --backward --values to see their values")
        graph = apply_loss(load_graph(paths[0], data["dims"]), loss_expr, data, of)
        run = dict(backend=backend, random_inputs=data["random_inputs"], seed=data["seed"], dims=data["dims"])
        targets = _targets(wrt)
        values = grads = None
        if show_values:
            values = api.all_values(api.grad(graph, targets, of, remat=remat, dims=data["dims"]) if backward else graph,
                                    data["inputs"], **run)
        if show_grads:
            grads = api.all_grads(graph, data["inputs"], of=of, **run)
        kw = dict(values=values, grads=grads, saved=saved, backward=backward, wrt=targets, of=of, rankdir=rankdir,
                  legend=legend, max_nodes=max_nodes, dims=data["dims"], remat=None if remat == "none" else remat)
        text = r.to_dot(graph, **kw)
        plain = lambda: r.to_dot(graph, **kw, html_labels=False)  # for graphviz.wasm (no HTML-like labels)
    renderer = r.write(text, out_path, plain) if out_path else None
    if fmt == "json":  # the DOT text when it went to stdout, else the file it went to (and what drew it)
        doc = {"output": out_path, "dot": None if out_path else text}
        click.echo(report.dumps({**doc, "renderer": renderer} if renderer else doc))
    elif out_path:
        click.echo(f"wrote {out_path}" + (f" (drawn by {renderer})" if renderer else ""), err=True)
    else:
        click.echo(text.rstrip("\n"))


@click.command()
@click.argument("path", metavar="FILE")
@click.option("--wrt", metavar="A,B", help="Differentiate with respect to these (default: params, else float inputs).")
@click.option("--of", "of", metavar="NAME", help="The scalar to differentiate (default: the loss).")
@loss_option
@data_options
@format_option()
@plugin_option
def explain(path, wrt, of, loss_expr, data, fmt):
    """Explain the backward pass step by step: forward values, then each node's upstream gradient,
    local derivatives and contributions, and the sums at fan-outs. See docs/explain.md."""
    from .. import explain as ex

    graph = apply_loss(load_graph(path, data["dims"]), loss_expr, data, of)
    steps = ex.explain(graph, data["inputs"], wrt=_targets(wrt), of=of, random_inputs=data["random_inputs"],
                       seed=data["seed"], dims=data["dims"])
    if fmt == "json":
        click.echo(report.dumps(ex.to_json(steps)))
    else:
        click.echo(ex.to_text(steps))


COMMANDS = [render, explain]
