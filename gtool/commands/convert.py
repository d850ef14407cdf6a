"""convert: a graph between .yaml, .json and .onnx, the formats chosen by the extensions."""

from __future__ import annotations

import os

import click

from .. import report
from ..errors import UsageError
from .common import format_option, load_graph, parse_dims, plugin_option, refuse_clobber

GRAPH_FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".onnx": "onnx"}


def _format_of(path: str, what: str) -> str:
    fmt = GRAPH_FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise UsageError("usage", f"cannot tell the format of the {what} {path} from its extension",
                         hint="use .yaml, .yml, .json or .onnx")
    return fmt


@click.command()
@click.argument("path", metavar="IN")
@click.argument("out", metavar="OUT")
@click.option("--opset", type=int, default=None, metavar="N",
              help="ONNX opset of an .onnx OUT (13 or later) [default: 18].")
@click.option("--params", "params_file", metavar="FILE",
              help="Values for params that have none in the file (.npz, .json or .yaml), for an .onnx OUT.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the params drawn from their init, for an .onnx OUT (as `gtool run` draws them).")
@click.option("--dim", "dim_flags", multiple=True, metavar="NAME=SIZE",
              help="Size of a dim that a param without a value needs, for an .onnx OUT.")
@format_option()
@plugin_option
def convert(path, out, opset, params_file, seed, dim_flags, fmt):
    """Convert a graph between YAML, JSON and ONNX (by the extensions of IN and OUT).

    An .onnx OUT holds params as initializers (their values; params without one are drawn
    from their init with --seed, or given with --params), named dims as dim_params, and the
    rest of the graph (ranges, docs, inits, loss) as metadata, so converting it back gives
    the same graph. OUT is written atomically and never over IN."""
    _format_of(path, "input")
    out_fmt = _format_of(out, "output")
    if params_file:
        refuse_clobber({"path": params_file, "out": out})
    dims = parse_dims(dim_flags)
    graph = load_graph(path, dims)
    info = {"input": path, "output": out, "format": out_fmt, "nodes": len(graph.nodes)}
    if out_fmt == "onnx":
        from ..onnx.export import DEFAULT_OPSET, export_model, save_model

        params = {}
        if params_file:
            from ..feeds import load_inputs_file

            params = load_inputs_file(params_file)
        model = export_model(graph, opset=opset or DEFAULT_OPSET, params=params, seed=seed, dims=dims)
        save_model(model, out)
        info.update(opset=model.opset_import[0].version, onnx_nodes=len(model.graph.node))
    else:
        if opset is not None or params_file:
            raise UsageError("usage", f"--opset and --params apply to an .onnx output, not {out}")
        from ..format.write import save_graph

        save_graph(graph, out, protect=(path,))
    if fmt == "json":
        click.echo(report.dumps(info))
        return
    detail = f" ({info['onnx_nodes']} ONNX nodes, opset {info['opset']})" if out_fmt == "onnx" else ""
    click.echo(f"{path} -> {out}: {info['nodes']} node{'s' * (info['nodes'] != 1)}{detail}")


COMMANDS = [convert]
