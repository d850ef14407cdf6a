"""The steady state of a run: the plan as one generated straight-line Python function.

After its first (checked) run, a Program's steps for one set of dim bindings are written as
the source of a Python function, one line per step (`s7 = s3 * s5`, `s8 = k8(s7)`, `del s3`),
compiled once with `compile` and kept. A run is then a single call: no loop over steps, no
slot list, no tuple unpacking, no dict look-ups. What the first run learnt is baked in:
which results need a dtype fix, which elementwise steps write into a dying input's buffer
(big arrays only), the resolved attrs. On NumPy scalars the four arithmetic ufuncs become
Python operators (`a * b` is `np.multiply(a, b)`, but skips the ufunc call machinery: 0.07
instead of 1.2 microseconds on a float64 scalar).

Errors are not handled here: any exception makes the caller run the careful loop again,
which names the node (kernels are pure, so the rerun is the same computation).

`quiet()` (gtool/quiet.py) is `np.errstate(all="ignore")` at a fifth of its cost.
"""

from __future__ import annotations

import functools

import numpy as np

from .ops.registry import get_op
from .quiet import hush, quiet, unhush  # noqa: F401 - re-exported: interp imports them from here

# ufunc -> the Python operator that calls it (ndarray.__mul__ is np.multiply); `**` is left out:
# ndarray.__pow__ turns x ** 2 into square and x ** 0.5 into sqrt, which can differ in the last bit
OPERATORS = {np.add: "+", np.subtract: "-", np.multiply: "*", np.true_divide: "/"}


def _float_typed(types, names) -> bool:
    """Every input a float, or a weak number (a Python int or bool at run time, which the
    float operand's dtype absorbs as the wrapper's float(x) would: `L / 128`), and at least
    one a float that is not weak."""
    floats = [types[n].dtype.startswith("float") for n in names]
    return all(f or types[n].weak for f, n in zip(floats, names)) and \
        any(f and not types[n].weak for f, n in zip(floats, names))


def _direct(op, kernel, types, inputs):
    """The callable a step can use in place of its kernel: the unwrapped ufunc of a float op
    fed floats (its `_on_floats` wrapper only converts ints and bools), else the kernel."""
    inner = getattr(kernel, "__wrapped__", None)
    if inner is not None and kernel is op.forward and _float_typed(types, inputs):
        return inner
    return kernel


def generate(program, fast_steps: list, casts: set[int], sizes: dict[int, int], in_place_min: int):
    """The plan as a compiled Python function `plan(*fed)` returning the outputs' values.

    `fast_steps` are (step, kwargs) pairs of the program for one binding of dims; `fed` are
    the program's tensors other than scalar constants, in `program.fed_slots` order.
    """
    types = program.types
    env: dict = {"_np": np, "_asarray": np.asarray}
    lines: list[str] = []
    for slot in program.template_slots:
        env[f"s{slot}"] = program.template_value(slot)
    for k, (step, kw) in enumerate(fast_steps):
        lines += _step_lines(k, step, kw, program, env, types, casts, sizes, in_place_min)
    args = ", ".join(f"s{s}" for s in program.fed_slots)
    rets = ", ".join(f"s{s}" for s in program.out_slots)
    body = "\n".join("    " + line for line in lines) or "    pass"
    source = f"def plan({args}):\n{body}\n    return ({rets}{',' if len(program.out_slots) == 1 else ''})\n"
    code = compile(source, f"<gtool plan {program.graph.name or 'graph'}>", "exec")
    exec(code, env)  # noqa: S102 - our own generated text: names are slot numbers, values are bound in env
    fn = env["plan"]
    fn.source = source
    return fn


def _squares(program, step, node, types) -> bool:
    """`x ** 2` with x a float value and 2 a weak constant: the same bits as `x * x` (the
    rewrite rule pow_two's identity; tests/test_backward.py checks it on the edge values),
    without pow's edge handling, which costs more than the power on a number."""
    x, y = node.inputs
    tx, ty = types[x], types[y]
    if not tx.dtype.startswith("float") or tx.weak or not ty.weak or step.ins[1] not in program.template_slots:
        return False
    two = program.template_value(step.ins[1])
    return type(two) in (int, float) and two == 2


def _new_axes(axis, rank: int) -> str:
    """The index that inserts size-1 axes at `axis` (positions in the result, as np.expand_dims
    takes them): `x[:, None]` is the view np.expand_dims makes, at a tenth of its cost."""
    axes = {a % rank for a in (axis if isinstance(axis, list | tuple) else [axis])}
    return ", ".join("None" if k in axes else ":" for k in range(rank))


def _step_lines(k, step, kw, program, env, types, casts, sizes, in_place_min) -> list[str]:
    op = get_op(step.op)
    node = program.graph.nodes[step.node]
    ins = [f"s{i}" for i in step.ins]
    out = f"s{step.out}"
    big = step.donor >= 0 and sizes.get(k, 0) >= in_place_min
    ufunc = op.ufunc
    fn = _direct(op, step.kernel, types, node.inputs)
    if step.op == "identity":  # a copy of a value under another name: the same object
        expr = ins[0]
    elif step.op == "pow" and _squares(program, step, node, types):  # x ** 2: pow is correctly rounded there
        expr = f"{ins[0]} * {ins[0]}"
    elif step.op == "sum" and types[node.inputs[0]].rank > 0 and set(kw) == {"axis", "keepdims"}:
        env["_add_reduce"] = np.add.reduce  # what the kernel calls on an array (every value of rank > 0 is one)
        expr = f"_add_reduce({ins[0]}, axis={kw['axis']!r}, keepdims={kw['keepdims']!r})"
    elif step.op == "expand_dims" and not types[node.inputs[0]].weak:  # the same view, by indexing
        expr = f"{ins[0]}[{_new_axes(kw['axis'], types[step.node].rank)}]"
    elif big:  # write into the dying input's buffer
        env[f"u{k}"] = ufunc
        expr = f"u{k}({', '.join(ins)}, out={ins[step.donor]})"
    elif not kw and fn in OPERATORS and len(ins) == 2 and not all(types[i].weak for i in node.inputs):
        expr = f"{ins[0]} {OPERATORS[fn]} {ins[1]}"  # one typed operand: NumPy's rule, not Python's
    elif not kw and fn is np.negative and not types[node.inputs[0]].weak:
        expr = f"-{ins[0]}"
    else:
        env[f"k{k}"] = functools.partial(fn, **kw) if kw else fn
        expr = f"k{k}({', '.join(ins)})"
    lines = [f"{out} = {expr}"]
    if k in casts:
        if step.dtype is None:  # a weak scalar stays a Python number
            lines.append(f"{out} = {out}.item() if hasattr({out}, 'item') else {out}")
        else:
            env[f"d{k}"] = step.dtype
            lines.append(f"{out} = _asarray({out}).astype(d{k})")
    if step.free:
        lines.append("del " + ", ".join(f"s{s}" for s in step.free))
    return lines


def caller(spec: tuple, base: list, fn, limits: tuple, limits_key, slow, grads: tuple[str, ...] | None = None):
    """A runner's steady state as one generated function `call(inputs)`: the data signature
    checks unrolled (one line per given name: class, shape, dtype, all compared by identity or
    tuple equality), the plan's arguments passed directly, NumPy's error state hushed around it.

    Returns the plan's outputs (a tuple), or with `grads` (value_and_grad's target names, the
    plan's outputs after the loss) `(float(loss), {target: gradient})`; None when the data or
    the limits differ from the signature (the caller then takes the checked path). An error
    inside the plan goes to `slow(inputs)` (the careful rerun that names the node).

    `spec`: (name, position in the plan's arguments or -1, shape, dtype) per given name;
    `base`: the plan's arguments with the file values and param inits (given data replaced).
    """
    env: dict = {"_nd": np.ndarray, "_fn": fn, "_limits": limits_key, "_lim": limits, "_slow": slow,
                 "_hush": hush, "_unhush": unhush, "_asarray": np.asarray}
    lines = [f"if len(inputs) != {len(spec)} or _limits() != _lim:", "    return None"]
    args = []
    for k, value in enumerate(base):
        env[f"_b{k}"] = value
        args.append(f"_b{k}")
    for j, (name, pos, shape, dtype) in enumerate(spec):
        env[f"_s{j}"], env[f"_d{j}"] = shape, dtype
        lines += [f"v{j} = inputs.get({name!r})",
                  f"if v{j}.__class__ is not _nd or v{j}.shape != _s{j} or v{j}.dtype is not _d{j}:",
                  "    return None"]
        if pos >= 0:
            args[pos] = f"v{j}"
    lines += ["token = _hush()", "try:", f"    o = _fn({', '.join(args)})", "except Exception:  # noqa: BLE001",
              "    o = _slow(inputs)", "finally:", "    _unhush(token)"]
    if grads is None:
        lines.append("return o")
    else:
        pairs = ", ".join(f"{g!r}: _asarray(o[{k}])" for k, g in enumerate(grads, 1))
        lines.append(f"return float(o[0]), {{{pairs}}}")
    source = "def call(inputs):\n" + "\n".join("    " + line for line in lines) + "\n"
    exec(compile(source, "<gtool runner>", "exec"), env)  # noqa: S102 - names quoted by repr, values bound in env
    call = env["call"]
    call.source = source
    return call
