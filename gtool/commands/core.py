"""validate, shapes, schema, run, grad."""

from __future__ import annotations

import sys

import click
import numpy as np

from .. import api, report
from ..dtypes import npz_safe
from ..errors import EXIT_FAILED, EXIT_OK, UsageError
from ..format.write import refuse_input, save_graph, write_atomic
from ..validate import check_file, expand_paths
from .common import (
    apply_loss,
    backend_option,
    check_dim_names,
    data_options,
    format_option,
    load_graph,
    loss_option,
    parse_dims,
    plugin_option,
)


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="FILE_OR_DIR...")
@click.option("--dim", "dim_flags", multiple=True, metavar="NAME=SIZE", help="Bind a dim to a size for the check.")
@format_option("text", "json", "github", "sarif")
@plugin_option
def validate(paths, dim_flags, fmt):
    """Check graph files: structure, names, ops, attrs, cycles and shapes.

    --format sarif prints SARIF 2.1.0 for GitHub code scanning (see docs/ci.md)."""
    dims = parse_dims(dim_flags)
    reports = [check_file(p, dims) for p in expand_paths(paths)]
    if dims:
        check_dim_names([r.graph for r in reports if r.graph is not None], dims)
    if fmt == "json":
        click.echo(report.dumps({"files": [r.to_json() for r in reports]}))
    elif fmt == "sarif":
        from .. import __version__

        items = [(r.path, d, {}) for r in reports for d in r.errors + r.warnings]
        click.echo(report.dumps(report.sarif(items, __version__)))
    elif fmt == "github":
        for r in reports:
            for d in r.errors + r.warnings:
                click.echo(report.github(d))
    else:
        for r in reports:
            if r.valid:
                extra = f" ({len(r.warnings)} warning{'s' * (len(r.warnings) != 1)})" if r.warnings else ""
                n = len(r.graph.nodes)
                click.echo(f"{r.path}: ok, {n} node{'s' * (n != 1)}{extra}")
            for d in r.errors + r.warnings:
                click.echo(d.format(), err=False)
        bad = sum(not r.valid for r in reports)
        click.echo(f"{len(reports) - bad} valid, {bad} invalid", err=True)
    sys.exit(EXIT_OK if all(r.valid for r in reports) else EXIT_FAILED)


@click.command()
@click.argument("path", metavar="FILE")
@click.option("--dim", "dim_flags", multiple=True, metavar="NAME=SIZE", help="Bind a dim to a size.")
@format_option()
@plugin_option
def shapes(path, dim_flags, fmt):
    """Print every value's inferred shape and dtype."""
    dims = parse_dims(dim_flags)
    graph = load_graph(path, dims)
    from ..shapes import infer
    from ..validate import types_of

    types = infer(graph, dims).types if dims else types_of(graph)  # with the sizes --dim binds
    rows = []
    for name, t in graph.tensors.items():
        if name.startswith("__"):
            continue
        rows.append({"name": name, "op": t.kind, "inputs": [], "shape": [d.to_json() for d in types[name].shape],
                     "dtype": t.dtype, "weak": types[name].weak, "line": t.loc.line})
    for name, node in graph.nodes.items():
        tt = types[name]
        rows.append({"name": name, "op": node.op, "inputs": list(node.inputs), "shape": [d.to_json() for d in tt.shape],
                     "dtype": tt.dtype, "weak": tt.weak, "line": node.loc.line})
    if fmt == "json":  # the spec's keys exactly; the dtype of a weak value is the one it has on its own
        click.echo(report.dumps({"path": path, "nodes": [{k: v for k, v in r.items() if k != "weak"} for r in rows]}))
        return
    click.echo(report.table(["name", "op", "inputs", "shape", "dtype", "line"],
                            [[r["name"], r["op"], ", ".join(r["inputs"]), "[" + ", ".join(map(str, r["shape"])) + "]",
                              r["dtype"] + " (weak)" * r["weak"], r["line"] or ""] for r in rows]))


@click.command()
@format_option()
def schema(fmt):
    """Print the JSON Schema of graph files (for editors and other tools); it is JSON in either format."""
    from ..format.build import SCHEMA_PATH

    click.echo(SCHEMA_PATH.read_text().rstrip("\n"))


def _save_npz(path: str, arrays: dict, protect: tuple[str, ...]) -> None:
    import io

    if not path.endswith(".npz"):
        raise UsageError("usage", f"-o wants a .npz file, got {path}")
    refuse_input(path, protect)
    buf = io.BytesIO()
    np.savez(buf, **{k: npz_safe(np.asarray(v)) for k, v in arrays.items()})
    write_atomic(path, buf.getvalue())


def _run_options(f):
    f = click.option("--dtype", type=click.Choice(["float16", "float32", "float64"]), default=None,
                     help="Run the whole graph at this float precision.")(f)
    f = click.option("--check-numerics", is_flag=True, help="Stop at the first node that makes NaN or Inf.")(f)
    f = click.option("-o", "--output", "out_path", metavar="OUT.npz", help="Also save the results to a .npz file "
                     "(run: or a .zarr folder, written chunk by chunk on --backend dask).")(f)
    return f


@click.command()
@click.argument("path", metavar="FILE")
@data_options
@_run_options
@backend_option
@format_option()
@plugin_option
def run(path, data, dtype, check_numerics, out_path, backend, fmt):
    """Run the forward pass and print the outputs."""
    graph = load_graph(path, data["dims"], dtype)
    run_args = dict(backend=backend, random_inputs=data["random_inputs"], seed=data["seed"], dims=data["dims"],
                    check_numerics=check_numerics)
    if out_path and out_path.rstrip("/").endswith(".zarr"):  # outputs bigger than memory (docs/scale.md)
        from .scale import run_to_zarr

        return run_to_zarr(graph, data, run_args, out_path, (path, *data["files"]), fmt)
    out = api.run(graph, data["inputs"], **run_args)
    if out_path:
        _save_npz(out_path, out, (path, *data["files"]))
    if fmt == "json":
        click.echo(report.dumps({"outputs": {k: report.tensor_json(v) for k, v in out.items()}}))
    else:
        click.echo(report.values_table(out))


@click.command()
@click.argument("path", metavar="FILE")
@click.option("--wrt", metavar="A,B", help="Differentiate with respect to these (default: params, else float inputs).")
@click.option("--of", "of", metavar="NAME", help="The scalar to differentiate (default: the loss).")
@click.option("--mode", type=click.Choice(["reverse", "forward"]), default="reverse", show_default=True,
              help="reverse: one backward pass; forward: one JVP per input element (for checking).")
@click.option("--emit-graph", metavar="OUT.yaml", help="Write the gradient graph as a gtool file.")
@click.option("--remat", default="none", show_default=True, metavar="POLICY", help="Recompute forward values in the "
              "backward pass: none, sqrt, cheap or budget=SIZE (docs/memory.md); gradients are bitwise the same.")
@loss_option
@data_options
@_run_options
@backend_option
@format_option()
@plugin_option
def grad(path, wrt, of, mode, emit_graph, remat, loss_expr, data, dtype, check_numerics, out_path, backend, fmt):
    """Compute the loss and its gradients."""
    graph = load_graph(path, data["dims"], None if loss_expr else dtype)
    graph = apply_loss(graph, loss_expr, data, of, dtype)
    targets = [w.strip() for w in wrt.split(",") if w.strip()] if wrt else None
    if remat != "none" and mode == "forward":
        raise UsageError("usage", "--remat is for reverse mode (it changes what the backward pass keeps)")
    gr = api.gradient(graph, targets, of, remat=remat, dims=data["dims"], inputs=data["inputs"])
    info = {"loss": gr.loss, "wrt": list(gr.wrt)}
    if emit_graph:
        runs = gr.graph if remat != "none" else api.backward(graph, targets, of)  # what runs
        save_graph(runs, emit_graph, protect=(path, *data["files"]))
    kwargs = dict(backend=backend, random_inputs=data["random_inputs"], seed=data["seed"], dims=data["dims"])
    if mode == "forward":
        loss, grads = api.forward_mode_grad(graph, data["inputs"], info["wrt"], info["loss"], **kwargs)
    else:
        loss, grads = api.value_and_grad(graph, data["inputs"], info["wrt"], info["loss"],
                                         check_numerics=check_numerics, remat=remat, **kwargs)
    if out_path:
        _save_npz(out_path, {info["loss"]: np.asarray(loss), **{f"grad_{k}": v for k, v in grads.items()}},
                  (path, *data["files"]))
    if fmt == "json":
        click.echo(report.dumps({"loss": {"name": info["loss"], "value": loss},
                                 "gradients": {k: report.tensor_json(v) for k, v in grads.items()}}))
        return
    click.echo(f"loss {info['loss']} = {report.summarize(np.asarray(loss))}")
    click.echo(report.values_table({f"d{info['loss']}/d{k}": v for k, v in grads.items()}))
    if emit_graph:
        click.echo(f"gradient graph written to {emit_graph}", err=True)


COMMANDS = [validate, shapes, schema, run, grad]
