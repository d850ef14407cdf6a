"""Loading and checking graph files: the one path from a file to a checked Graph.

`check_file` never raises for a bad file: it returns a report with every diagnostic.
`load` is the library form: it returns the Graph or raises a GraphError carrying them all.
"""

from __future__ import annotations

import gc
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Diagnostic, GraphError, UsageError
from .format.build import build_graph
from .format.source import load_file
from .ir import Graph
from .shapes import Inference, infer

GRAPH_SUFFIXES = (".yaml", ".yml", ".json")
FOLDER_SUFFIXES = GRAPH_SUFFIXES + (".onnx",)  # what a folder argument picks up
DATA_SUFFIXES = (".inputs.yaml", ".inputs.yml", ".inputs.json")


@dataclass
class FileReport:
    path: str
    graph: Graph | None = None
    inference: Inference | None = None
    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "valid": self.valid,
            "errors": [d.to_json() for d in self.errors],
            "warnings": [d.to_json() for d in self.warnings],
        }


def expand_paths(args) -> list[str]:
    """Files named, and every graph file (YAML, JSON, ONNX) below each directory (hidden folders, *.inputs.* and
    anything that is not a regular file skipped). A file named explicitly is kept whatever it
    is: loading refuses a non-regular one with a clear error."""
    out: list[str] = []
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            found = []
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if f.lower().endswith(FOLDER_SUFFIXES) and not f.endswith(DATA_SUFFIXES) and not f.startswith("."):
                        if _regular_or_broken(Path(root) / f):
                            found.append(str(Path(root) / f))
            if not found:  # checking nothing must not pass a CI job silently
                raise UsageError("usage", f"no graph files (*.yaml, *.yml, *.json, *.onnx) under {arg}")
            out.extend(sorted(found))
        elif p.exists():
            out.append(str(p))
        else:
            raise UsageError("usage", f"no such file or directory: {arg}")
    return out


def _regular_or_broken(path: Path) -> bool:
    """Whether a file found in a folder is checked: a regular file (a FIFO, socket or device
    named *.yaml is skipped: opening a FIFO waits for a writer forever), or a path that cannot
    be examined (a broken link), which loading then reports."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True


def check_graph(graph: Graph, dim_values: dict[str, int] | None = None) -> tuple[Inference, list, list]:
    """Shape inference plus the whole-graph checks (scalar loss, unused nodes)."""
    inference = infer(graph, dim_values)
    errors = list(inference.diagnostics)
    warnings: list[Diagnostic] = []
    if graph.loss is not None and graph.loss in inference.types and inference.types[graph.loss].rank != 0:
        from .dims import format_shape

        line, column = graph.cache.get("marks", {}).get("/loss", (None, None))
        errors.append(Diagnostic("non-scalar-loss",
                                 f"the loss '{graph.loss}' must be a scalar, but its shape is "
                                 f"{format_shape(inference.types[graph.loss].shape)}",
                                 path=graph.path, line=line, column=column, node=graph.loss,
                                 pointer="/loss", hint="reduce it, e.g. sum(...) or mean(...)"))
    live = graph.ancestors(list(graph.outputs) + ([graph.loss] if graph.loss else []))
    reported = set()
    for name in list(graph.tensors) + list(graph.nodes):
        owner = graph.owner(name)
        if name in live or owner in reported or owner in live:
            continue
        if name in graph.tensors and graph.tensors[name].kind == "constant" and name.startswith("__"):
            continue
        reported.add(owner)
        warnings.append(Diagnostic("unused-node", f"'{owner}' is computed but no output depends on it",
                                   node=owner, severity="warning", **graph.loc(owner).where()))
    return inference, errors, warnings


@contextmanager
def _no_gc():
    """Pause the cyclic garbage collector while a file is checked.

    Loading a big graph allocates millions of small acyclic objects (dicts, tuples, Dims),
    which makes CPython run full collections over everything allocated so far, again and
    again: about a third of the time for 100k nodes. Nothing here makes garbage cycles
    worth collecting early; the collector resumes (and catches up) afterwards.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def check_file(path: str, dim_values: dict[str, int] | None = None) -> FileReport:
    """Load, build and infer one file; every problem becomes a diagnostic in the report."""
    with _no_gc():
        return _check_file(path, dim_values)


def _check_file(path: str, dim_values: dict[str, int] | None) -> FileReport:
    report = FileReport(path)
    if is_onnx_file(path):
        return _check_onnx(report, dim_values)
    try:
        data, marks = load_file(path)
    except UsageError:
        raise
    except GraphError as e:
        report.errors = [_with_node(_with_path(d, path)) for d in e.diagnostics]
        return report
    graph, diags = build_graph(data, marks, path)
    report.errors = [_with_path(d, path) for d in diags if d.severity == "error"]
    if graph is None:
        return report
    inference, errors, warnings = check_graph(graph, dim_values)
    report.graph, report.inference = graph, inference
    report.errors += [_with_path(d, path) for d in errors]
    report.warnings += [_with_path(d, path) for d in warnings]
    return report


def is_onnx_file(path: str) -> bool:
    """An ONNX model, by extension (.onnx) or, for other names, by content: a protobuf
    ModelProto starts with field 1 (ir_version, a varint), the byte 0x08, which no YAML or
    JSON text starts with. Only regular files are opened (never a FIFO)."""
    lower = path.lower()
    if lower.endswith(".onnx"):
        return True
    if lower.endswith(GRAPH_SUFFIXES):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.read(fd, 1) == b"\x08"
    except OSError:
        return False
    finally:
        os.close(fd)


def _check_onnx(report: FileReport, dim_values: dict[str, int] | None) -> FileReport:
    """An .onnx file through the importer (gtool[onnx]), then the same checks as a text graph."""
    from .onnx.importer import load_onnx

    try:
        graph = load_onnx(report.path)
    except UsageError:
        raise
    except GraphError as e:
        report.errors = [_with_path(d, report.path) for d in e.diagnostics]
        return report
    inference, errors, warnings = check_graph(graph, dim_values)
    report.graph, report.inference = graph, inference
    report.errors += [_with_path(d, report.path) for d in errors]
    report.warnings += [_with_path(d, report.path) for d in warnings]
    return report


def _with_node(d: Diagnostic) -> Diagnostic:
    """A loader error inside a node or tensor entry names it, as later errors do."""
    parts = (d.pointer or "").split("/")
    if d.node is None and len(parts) >= 3 and parts[1] in ("inputs", "params", "constants", "nodes"):
        from dataclasses import replace

        return replace(d, node=parts[2].replace("~1", "/").replace("~0", "~"))
    return d


def _with_path(d: Diagnostic, path: str) -> Diagnostic:
    if d.path == path:
        return d
    from dataclasses import replace

    return replace(d, path=path)


def load(path: str | os.PathLike, dim_values: dict[str, int] | None = None) -> Graph:
    """Load and check a graph file. Raises GraphError with every diagnostic if it is invalid."""
    report = check_file(str(path), dim_values)
    if report.errors:
        raise GraphError.many(report.errors)
    graph = report.graph
    free = {k: v for k, v in (dim_values or {}).items() if k not in graph.dims}
    if free:  # the graph was checked with these sizes of free dims: it keeps them (Graph.fixed_dims);
        # a declared dim stays a symbol, overridable by each run (`memory --chunks`, `--dim` again)
        from dataclasses import replace

        graph = replace(graph, fixed_dims=free, cache=graph.cache)
    graph.cache["inference"] = report.inference
    return graph


def inference_of(graph: Graph) -> Inference:
    """The inferred types and dim bindings of a graph (inferred once, memoised on it)."""
    inf = graph.cache.get("inference")
    if inf is None:
        inf = infer(graph)
        if not inf.ok:
            raise GraphError.many(inf.diagnostics)
        graph.cache["inference"] = inf
    return inf


def with_inference(graph: Graph, inference: Inference) -> Graph:
    """`graph`, its types already known (a pass that built it typed every value as it went)."""
    graph.cache["inference"] = inference
    return graph


def types_of(graph: Graph):
    """The inferred types of a graph (cached on it)."""
    return inference_of(graph).types
