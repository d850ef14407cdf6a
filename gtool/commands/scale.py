"""`gtool run -o out.zarr`: outputs written chunk by chunk to a Zarr group (docs/scale.md).

On --backend dask the outputs stay dask arrays until the store computes them, so an output
bigger than memory is never whole in memory; the table then shows only the small outputs
(no chunked dim) and names where the others went.
"""

from __future__ import annotations

import click

from .. import api, report
from ..format.write import refuse_input


def run_to_zarr(graph, data: dict, run_args: dict, out_path: str, protect: tuple, fmt: str) -> None:
    """Run, store every output under `out_path`, print the small ones."""
    from ..dask.run import store_zarr

    refuse_input(out_path, protect)
    if run_args["backend"] == "dask":
        from ..dask import options

        with options(lazy=True):
            out = api.run(graph, data["inputs"], **run_args)
    else:
        out = api.run(graph, data["inputs"], **run_args)
    written, small = store_zarr(out, out_path)
    stored = {k: {"shape": list(shape), "dtype": dtype, "path": f"{out_path}/{k}"} for k, (shape, dtype) in written.items()
              if k not in small}
    if fmt == "json":
        click.echo(report.dumps({"outputs": {k: report.tensor_json(v) for k, v in small.items()}, "stored": stored}))
        return
    if small:
        click.echo(report.values_table(small))
    for k, info in stored.items():
        click.echo(f"{k} [{', '.join(map(str, info['shape']))}] {info['dtype']}: written to {info['path']}")
    click.echo(f"outputs written to {out_path}", err=True)
