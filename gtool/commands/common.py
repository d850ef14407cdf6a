"""Options shared by several commands, and the glue from flags to library calls."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys

import click

from ..errors import GraphError, UsageError

STATE = {"format": "text"}  # read by cli.main to format an error the way the command was asked


def parse_dims(values) -> dict[str, int]:
    out = {}
    for v in values or ():
        name, _, size = v.partition("=")
        if not name or not size.strip().lstrip("-").isdigit() or int(size) <= 0:
            raise UsageError("usage", f"--dim wants NAME=SIZE with a positive size, got {v!r}")
        out[name.strip()] = int(size)
    return out


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
    @click.option("--plugin", "plugins", multiple=True, metavar="FILE.py",
                  help="Load user-defined ops from a Python file (runs that file's code).")
    @functools.wraps(f)
    def wrapper(*args, plugins, **kwargs):
        for p in plugins:
            load_plugin(p)
        return f(*args, **kwargs)

    return wrapper


def data_options(f):
    """--input, --inputs, --random-inputs, --seed, --dim: every way the spec gives data."""

    @click.option("--input", "input_flags", multiple=True, metavar="NAME=VALUE",
                  help="Data for one input: a number, a JSON list, or @file.npy.")
    @click.option("--inputs", "inputs_file", metavar="FILE", help="Data for many inputs: .npz, .json or .yaml.")
    @click.option("--random-inputs", is_flag=True, help="Random data for inputs without data (seeded).")
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed for random inputs and param init.")
    @click.option("--dim", "dim_flags", multiple=True, metavar="NAME=SIZE", help="Bind a dim to a size.")
    @functools.wraps(f)
    def wrapper(*args, input_flags, inputs_file, random_inputs, seed, dim_flags, **kwargs):
        from ..feeds import load_inputs_file, parse_input_flag

        given = load_inputs_file(inputs_file) if inputs_file else {}
        for flag in input_flags:
            name, value = parse_input_flag(flag)
            given[name] = value
        data = {"inputs": given, "random_inputs": random_inputs, "seed": seed, "dims": parse_dims(dim_flags)}
        return f(*args, data=data, **kwargs)

    return wrapper


def backend_option(f):
    return click.option("--backend", type=click.Choice(["numpy", "numba", "cuda"]), default="numpy",
                        show_default=True, help="Where kernels run (numba and cuda need `pip install gtool[numba]`).")(f)


def load_graph(path: str, dims: dict | None = None, dtype: str | None = None):
    """Load a graph for a command (exit 2 for a missing file, 1 for an invalid graph)."""
    if not os.path.exists(path):
        raise UsageError("usage", f"no such file: {path}")
    from ..api import load as api_load

    graph = api_load(path, dims)
    if dtype:
        from ..interp import at_precision

        graph = at_precision(graph, dtype)
    return graph


def load_plugin(path: str) -> list[str]:
    """Import a plugin file; ops it registers are marked with its path (for error messages)."""
    from ..ops.registry import REGISTRY

    if not os.path.exists(path):
        raise UsageError("usage", f"no such plugin file: {path}")
    before = {k: id(v) for k, v in REGISTRY.items()}
    name = "gtool_plugin_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except GraphError:
        raise
    except Exception as e:  # a broken plugin is the user's code: report it, don't crash
        raise UsageError("usage", f"plugin {path} failed to load: {type(e).__name__}: {e}") from None
    added = [k for k, v in REGISTRY.items() if before.get(k) != id(v)]
    for k in added:
        REGISTRY[k].plugin = REGISTRY[k].plugin or path
    return added


def load_entry_point_plugins() -> None:
    """Ops from installed packages that declare the `gtool.ops` entry-point group."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="gtool.ops"):
        try:
            ep.load()
        except Exception as e:
            raise UsageError("usage", f"the gtool.ops entry point {ep.name} ({ep.value}) failed: {e}") from None


