"""Options shared by several commands, and the glue from flags to library calls."""

from __future__ import annotations

import functools
import os
import re

import click

from ..errors import UsageError
from .plugins import load_entry_point_plugins, load_plugin  # noqa: F401 (re-exported)

STATE = {"format": "text"}  # read by cli.main to format an error the way the command was asked


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_dims(values) -> dict[str, int]:
    """`--dim NAME=SIZE` flags -> {name: size}; the same name twice must give the same size."""
    out: dict[str, int] = {}
    for v in values or ():
        name, _, size = v.partition("=")
        name = name.strip()
        if not name or not size.strip().lstrip("-").isdigit() or int(size) <= 0:
            raise UsageError("usage", f"--dim wants NAME=SIZE with a positive size, got {v!r}")
        if not _NAME.fullmatch(name):
            raise UsageError("usage", f"--dim {v}: {name!r} is not a valid dim name (letters, digits and _, "
                             "not starting with a digit)")
        if name in out and out[name] != int(size):
            raise UsageError("usage", f"--dim {name} is given twice, as {out[name]} and {int(size)}")
        out[name] = int(size)
    return out


def dim_names(graph) -> set[str]:
    """Every dim name a graph uses: declared under `dims`, in shapes, or in dim-valued attrs."""
    from ..dims import parse_dim
    from ..ops.registry import get_op

    names = set(graph.dims)
    for t in graph.tensors.values():
        for d in t.shape:
            names |= d.symbols()
    for node in graph.nodes.values():
        for d in node.shape or ():
            names |= d.symbols()
        op = get_op(node.op)
        for key, spec in (op.attrs.items() if op else ()):
            value = node.attrs.get(key)
            if spec.kind not in ("shape", "dim") or value is None:
                continue
            for v in value if isinstance(value, (list, tuple)) else (value,):
                try:
                    names |= parse_dim(v).symbols()
                except (ValueError, TypeError):
                    pass
    return names


def check_dim_names(graphs, dims: dict[str, int]) -> None:
    """A `--dim` for a name that no graph uses is a typo that would silently do nothing."""
    from ..errors import did_you_mean

    graphs = [graphs] if not isinstance(graphs, (list, tuple)) else graphs
    known = set().union(*(dim_names(g) for g in graphs)) if graphs else set()
    for name in dims:
        if graphs and name not in known:
            near = did_you_mean(name, known)
            hint = f"did you mean '{near}'?" if near else (
                f"its dims are {', '.join(sorted(known))}" if known else "the graph has no named dims")
            raise UsageError("usage", f"--dim {name}: the graph has no dim named '{name}'",
                             path=graphs[0].path if len(graphs) == 1 else None, hint=hint)


def format_option(*choices: str):
    choices = choices or ("text", "json")

    def deco(f):
        @click.option("--format", "fmt", type=click.Choice(choices), default="text", show_default=True,
                      help="Output format; json prints one JSON document on stdout.")
        @functools.wraps(f)
        def wrapper(*args, fmt, **kwargs):
            STATE["format"] = fmt
            return f(*args, fmt=fmt, **kwargs)

        return wrapper

    return deco


def plugin_option(f):
    """--plugin FILE.py; also where every command's output paths are checked against what it reads
    (this wrapper runs last, when the graph paths, data files and plugins are all known)."""

    @click.option("--plugin", "plugins", multiple=True, metavar="FILE.py",
                  help="Load user-defined ops from a Python file (runs that file's code).")
    @functools.wraps(f)
    def wrapper(*args, plugins, **kwargs):
        refuse_clobber(kwargs, plugins)
        for p in plugins:
            load_plugin(p)
        return f(*args, **kwargs)

    return wrapper


OUTPUT_OPTIONS = ("out_path", "emit_graph", "junit", "out")  # the parameters of every command that name a file it writes
_FLAG_TEXT = {"out_path": "-o", "out": "OUT"}  # how the hint names them (else --<name>)


def refuse_clobber(kwargs: dict, plugins=()) -> None:
    """Refuse (exit 2, `overwrites-input`) an output path that is one of the command's inputs:
    a graph file (or a graph file in a folder given), an --inputs or --input @file, a plugin."""
    outputs = [kwargs[k] for k in OUTPUT_OPTIONS if kwargs.get(k)]
    if not outputs:
        return
    graphs = kwargs.get("paths") or ((kwargs["path"],) if kwargs.get("path") else ())
    data = kwargs.get("data") or {}
    inputs = [*graphs, *data.get("files", ()), *plugins]
    for out in outputs:
        if not os.path.exists(out):
            continue  # a new file clobbers nothing
        for src in inputs:
            same = os.path.exists(src) and os.path.samefile(src, out)
            inside = os.path.isdir(src) and not same and _graph_in_folder(out, src)
            if same or inside:
                flag = next(_FLAG_TEXT.get(k, f"--{k.replace('_', '-')}") for k in OUTPUT_OPTIONS if kwargs.get(k) == out)
                raise UsageError("overwrites-input", f"refusing to overwrite the input file {out}: this command reads it"
                                 + (f" (a graph file in {src})" if inside else ""),
                                 hint=f"choose another {flag} path")


def _graph_in_folder(path: str, folder: str) -> bool:
    """Whether `path` is a graph file that reading `folder` (recursively) would load."""
    if not path.endswith((".yaml", ".yml", ".json")):
        return False
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([real, root]) == root


def data_options(f):
    """--input, --inputs, --random-inputs, --seed, --dim: every way the spec gives data."""

    @click.option("--input", "input_flags", multiple=True, metavar="NAME=VALUE",
                  help="Data for one input: a number, a JSON list, or @file.npy.")
    @click.option("--inputs", "inputs_file", metavar="FILE", help="Data for many inputs: .npz, .json or .yaml.")
    @click.option("--random-inputs", is_flag=True, help="Random data for inputs without data (seeded).")
    @click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                  help="Seed for random inputs and param init.")
    @click.option("--dim", "dim_flags", multiple=True, metavar="NAME=SIZE", help="Bind a dim to a size.")
    @click.option("--max-memory", metavar="SIZE", help="Refuse a run whose arrays need more than SIZE (e.g. 2GiB) "
                  "[default: GTOOL_MAX_MEMORY, else the memory available].")
    @click.option("--max-elements", metavar="N", help="Refuse a run with a value of more than N elements "
                  "[default: GTOOL_MAX_ELEMENTS, else 2**34].")
    @functools.wraps(f)
    def wrapper(*args, input_flags, inputs_file, random_inputs, seed, dim_flags, max_memory, max_elements, **kwargs):
        from ..budget import limited, parse_count, parse_size
        from ..feeds import load_inputs_file, parse_input_flag

        limits = {"max_memory": parse_size(max_memory) if max_memory is not None else None,
                  "max_elements": parse_count(max_elements) if max_elements is not None else None}

        given = load_inputs_file(inputs_file) if inputs_file else {}
        files = [inputs_file] if inputs_file else []  # data files read, which outputs must not overwrite
        for flag in input_flags:
            name, value = parse_input_flag(flag)
            given[name] = value
            if flag.partition("=")[2].startswith("@"):
                files.append(flag.partition("=")[2][1:])
        data = {"inputs": given, "random_inputs": random_inputs, "seed": seed, "dims": parse_dims(dim_flags),
                "files": tuple(files)}
        with limited(**limits):
            return f(*args, data=data, **kwargs)

    return wrapper


def backend_option(f):
    """--backend, and for --backend dask its --chunks and --scheduler (docs/scale.md), which the
    command's body then runs under (gtool.dask.options)."""

    @click.option("--backend", type=click.Choice(["numpy", "numba", "cuda", "dask"]), default="numpy",
                  show_default=True, help="Where kernels run (numba and cuda need `pip install gtool[numba]`, "
                  "dask `pip install gtool[dask]`).")
    @click.option("--chunks", "chunk_flags", multiple=True, metavar="DIM=SIZE", help="--backend dask: rows per chunk "
                  "of a dim, e.g. batch=100000 [default: the inputs' first dim, in chunks whose values come to about 128 MiB].")
    @click.option("--scheduler", metavar="ADDRESS", help="--backend dask: run on this dask.distributed scheduler "
                  "[default: GTOOL_DASK_SCHEDULER, else the local threaded scheduler].")
    @functools.wraps(f)
    def wrapper(*args, backend, chunk_flags, scheduler, **kwargs):
        if backend != "dask":
            if chunk_flags or scheduler:
                raise UsageError("usage", f"--{'chunks' if chunk_flags else 'scheduler'} is for --backend dask")
            return f(*args, backend=backend, **kwargs)
        from ..dask import options, parse_chunks, require_dask

        require_dask()
        with options(chunks=parse_chunks(chunk_flags), scheduler=scheduler or None):
            return f(*args, backend=backend, **kwargs)

    return wrapper


def load_graph(path: str, dims: dict | None = None, dtype: str | None = None, check_dims: bool = True):
    """Load a graph for a command (exit 2 for a missing file or an unknown `--dim` name, 1 for an
    invalid graph). `check_dims=False` where several files share the flags (a dim may belong to another)."""
    if not os.path.exists(path):
        raise UsageError("usage", f"no such file: {path}")
    from ..api import load as api_load

    graph = api_load(path, dims)
    if dims and check_dims:
        check_dim_names(graph, dims)
    if dtype:
        from ..interp import at_precision

        graph = at_precision(graph, dtype)
    return graph


def loss_option(f):
    """--loss EXPR: a scalar loss over the model's outputs and extra data (gtool/loss.py);
    commands apply it with `apply_loss` right after loading the graph."""
    return click.option("--loss", "loss_expr", metavar="EXPR",
                        help="Differentiate this scalar, written in the shorthand over the model's values, e.g. "
                             "\"cross_entropy(logits, t)\" or \"sum(y * r)\"; names the model lacks are inputs "
                             "typed from their --input/--inputs data.")(f)


def apply_loss(graph, loss_expr: str | None, data: dict, of: str | None = None, dtype: str | None = None):
    """`graph` with `--loss` as its loss (unchanged without one), then cast to `--dtype` if given."""
    if not loss_expr:
        return graph
    if of:
        raise UsageError("usage", "--loss and --of do not combine: --loss is the scalar to differentiate")
    from ..loss import with_loss

    graph = with_loss(graph, loss_expr, data["inputs"])
    if dtype:
        from ..interp import at_precision

        graph = at_precision(graph, dtype)
    return graph
