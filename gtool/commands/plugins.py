"""Loading user-defined ops (`--plugin FILE.py`, the `gtool.ops` entry-point group) and keeping
them honest.

A plugin is the user's code running inside gtool, so every rule it registers is wrapped once at
load time: an exception (even a `BaseException` such as `SystemExit` or `GeneratorExit`) becomes
an error naming the plugin file, the op and the node (exit 1, the plugin's traceback only under
GTOOL_DEBUG=1); a forward whose result disagrees with the op's own shape rule, or a VJP that
returns a gradient per input in another number, is an error instead of a wrong result (autodiff
checks the shape of each gradient a plugin's VJP gives). Replacing a
built-in op needs the plugin's explicit `GTOOL_REPLACES = ["name", ...]`.
Built-in ops are never wrapped: the checks cost one shape-rule call per plugin kernel call.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import traceback

import numpy as np

from ..errors import GraphError, UsageError


def load_plugin(path: str) -> list[str]:
    """Import a plugin file; ops it registers are marked with its path and guarded."""
    if not os.path.exists(path):
        raise UsageError("usage", f"no such plugin file: {path}")
    if not os.path.isfile(path) or not path.endswith(".py"):
        raise UsageError("usage", f"plugin {path} is not a Python file (.py)",
                         hint="--plugin takes the .py file that registers the ops; the graph file is the argument")
    name = "gtool_plugin_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    return _registering(path, lambda: spec.loader.exec_module(module), lambda: getattr(module, "GTOOL_REPLACES", ()))


def load_entry_point_plugins() -> None:
    """Ops from installed packages that declare the `gtool.ops` entry-point group."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="gtool.ops"):
        loaded: dict = {}
        _registering(f"{ep.name} ({ep.value})", functools.partial(_load_entry_point, ep, loaded),
                     functools.partial(_replaces_of, loaded), what="the gtool.ops entry point")


def _load_entry_point(ep, loaded: dict) -> None:
    loaded["module"] = ep.load()


def _replaces_of(loaded: dict):
    return getattr(loaded.get("module"), "GTOOL_REPLACES", ())


def _registering(path: str, run, replaces, what: str = "plugin") -> list[str]:
    """Run plugin code, then mark and guard what it registered; undo a silent replacement of a built-in."""
    from ..ops.registry import REGISTRY

    before = dict(REGISTRY)
    try:
        run()
    except GraphError:
        raise
    except SystemExit as e:  # sys.exit() in a plugin must not end gtool with the plugin's status
        _restore(before)
        raise UsageError("usage", f"{what} {path} failed to load: it called sys.exit({e.code!r})") from None
    except BaseException as e:  # a broken plugin is the user's code: report it, don't crash
        _restore(before)
        _reraise_interrupt(e)
        _debug_traceback(e)
        raise UsageError("usage", f"{what} {path} failed to load: {type(e).__name__}: {e}") from None
    added = [k for k, v in REGISTRY.items() if before.get(k) is not v]
    allowed = set(replaces() or ())
    silent = [k for k in added if k in before and before[k].plugin is None and k not in allowed]
    if silent:
        _restore(before)
        raise UsageError("plugin-replaces-op", f"{what} {path} replaces the built-in op '{silent[0]}'",
                         hint=f"rename the plugin's op, or declare GTOOL_REPLACES = [{silent[0]!r}] in the plugin to "
                              "replace it on purpose (see docs/api.md)")
    for k in added:
        op = REGISTRY[k]
        op.plugin = op.plugin or path
        if k in before and before[k].plugin is None:
            print(f"gtool: warning: {what} {path} replaces the built-in op '{k}' (GTOOL_REPLACES)", file=sys.stderr)
        guard(op)
    return added


def _restore(before: dict) -> None:
    from ..ops.registry import REGISTRY

    REGISTRY.clear()
    REGISTRY.update(before)


def _reraise_interrupt(e: BaseException) -> None:
    """A real Ctrl-C (exactly KeyboardInterrupt) stays an interrupt; a plugin's own BaseException
    subclasses, KeyboardInterrupt's included, are the plugin's failure."""
    if type(e) is KeyboardInterrupt:
        raise e


def _debug_traceback(e: BaseException) -> None:
    if os.environ.get("GTOOL_DEBUG") == "1":
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)


def _failed(op, rule: str, e: BaseException) -> str:
    _debug_traceback(e)
    text = f"{e}".strip()
    return (f"plugin {op.plugin}: the {rule} of op '{op.name}' raised {type(e).__name__}" + (f": {text}" if text else "")
            + ("" if os.environ.get("GTOOL_DEBUG") == "1" else " (GTOOL_DEBUG=1 shows the plugin's traceback)"))


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# the guards --------------------------------------------------------------------------------------


def guard(op) -> None:
    """Wrap a plugin op's rules (once) so that its failures and wrong results are located errors."""
    if getattr(op, "_gtool_guarded", False):
        return
    raw_infer = op.infer
    op.infer = _guard_infer(op, raw_infer)
    op.forward = _guard_forward(op, op.forward, raw_infer)
    if op.vjp is not None:
        op.vjp = _guard_vjp(op, op.vjp)
    if op.jvp is not None:
        op.jvp = _guard_jvp(op, op.jvp)
    if op.interval is not None:
        op.interval = _guard_interval(op, op.interval)
    op._gtool_guarded = True


def _guard_infer(op, raw):
    from ..ir import TensorType
    from ..ops.registry import ShapeError

    @functools.wraps(raw)
    def infer(ctx, types, attrs):
        try:
            out = raw(ctx, types, attrs)
        except ShapeError:
            raise
        except BaseException as e:
            _reraise_interrupt(e)
            raise ShapeError("plugin-failed", _failed(op, "shape rule", e)) from None
        if not isinstance(out, TensorType):
            raise ShapeError("plugin-failed", f"plugin {op.plugin}: the shape rule of op '{op.name}' returned "
                             f"{type(out).__name__}, not a TensorType")
        return out

    return infer


def _guard_forward(op, raw, raw_infer):
    from ..ops.registry import KernelError

    @functools.wraps(raw)
    def forward(*args, **kwargs):
        try:
            out = raw(*args, **kwargs)
        except KernelError:
            raise
        except BaseException as e:
            _reraise_interrupt(e)
            raise KernelError("plugin-failed", _failed(op, "forward", e)) from None
        _check_forward(op, raw_infer, args, kwargs, out)
        return out

    return forward


def _concrete(a):
    """The TensorType of a run-time value (Python scalars are weak, as the executor keeps them)."""
    from ..dims import Dim
    from ..ir import TensorType

    if isinstance(a, (np.ndarray, np.generic)):
        return TensorType(tuple(Dim.const(int(s)) for s in a.shape), str(a.dtype))
    kind = "bool" if isinstance(a, bool) else "int64" if isinstance(a, int) else "float64"
    return TensorType((), kind, True)


def _check_forward(op, raw_infer, args, kwargs, out) -> None:
    """The forward's result against the op's own shape rule, applied to the actual inputs."""
    from ..ops.registry import KernelError
    from ..shapes import ShapeCtx

    try:
        attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
        want = raw_infer(ShapeCtx(), [_concrete(a) for a in args], op.full_attrs(attrs))
        shape = tuple(d.value for d in want.shape)
    except Exception:  # the rule does not take concrete values: inference already checked the graph
        return
    if not isinstance(out, (np.ndarray, np.generic, int, float, bool)):
        raise KernelError("plugin-bad-output", f"plugin {op.plugin}: the forward of op '{op.name}' returned "
                          f"{type(out).__name__}, not an array")
    got = tuple(np.shape(out))
    if got != shape:
        raise KernelError("plugin-bad-output", f"plugin {op.plugin}: the forward of op '{op.name}' returned shape "
                          f"{_shape(got)} where its shape rule gives {_shape(shape)}")
    if isinstance(out, (np.ndarray, np.generic)) and not want.weak and str(out.dtype) != want.dtype:
        raise KernelError("plugin-bad-output", f"plugin {op.plugin}: the forward of op '{op.name}' returned dtype "
                          f"{out.dtype} where its shape rule gives {want.dtype}")


def _node_where(node) -> dict:
    where = node.loc.where() if node.loc is not None else {}
    return {"node": getattr(node, "owner", None) or node.name, **where}


def _guard_vjp(op, raw):
    @functools.wraps(raw)
    def vjp(b, node, g):
        try:
            outs = list(raw(b, node, g))
        except GraphError:
            raise
        except BaseException as e:
            _reraise_interrupt(e)
            raise GraphError("plugin-failed", _failed(op, "VJP", e), op=op.name, **_node_where(node)) from None
        if len(outs) != len(node.inputs):
            raise GraphError("plugin-bad-vjp", f"plugin {op.plugin}: the VJP of op '{op.name}' returns {len(outs)} "
                             f"gradients for {len(node.inputs)} inputs", op=op.name, **_node_where(node))
        return outs

    return vjp


def _guard_jvp(op, raw):
    @functools.wraps(raw)
    def jvp(b, node, tangents):
        try:
            out = raw(b, node, tangents)
        except GraphError:
            raise
        except BaseException as e:
            _reraise_interrupt(e)
            raise GraphError("plugin-failed", _failed(op, "JVP", e), op=op.name, **_node_where(node)) from None
        if out is not None and node.name in b.types:
            want, got = b.type(node.name).shape, b.type(out).shape
            if len(want) != len(got) or not all(b.ctx.resolve(x) == b.ctx.resolve(y) for x, y in zip(want, got)):
                raise GraphError("plugin-bad-vjp", f"plugin {op.plugin}: the JVP of op '{op.name}' gives a tangent "
                                 f"of shape {_shape(got)} for an output of shape {_shape(want)}",
                                 op=op.name, **_node_where(node))
        return out

    return jvp


def _guard_interval(op, raw):
    @functools.wraps(raw)
    def interval(*args, **kwargs):
        try:
            return raw(*args, **kwargs)
        except BaseException as e:
            _reraise_interrupt(e)
            raise GraphError("plugin-failed", _failed(op, "interval rule", e), op=op.name) from None

    return interval
