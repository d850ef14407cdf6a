"""Scalar code for the numba backends: value types, micro-ops, one template per primitive,
and `Body`, the statements computing a fused group's members at one loop index.

A template takes operand code (already converted to the op's compute dtype) and returns an
expression. Primitive templates follow the NumPy forwards in gtool/ops (same branches, same
order of operations). Composite ops have no code here: their record's template
(`gtool/ops/templates.py`, the function the NumPy forward runs too) is traced, a scalar one
through `ScalarCode` into a helper function (`HELPERS`, defined once per generated module
that calls it), a row one by `lowering.py` into micro-ops.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from ..dims import Dim
from ..ir import TensorType
from ..ops.registry import REGISTRY, result_type

if TYPE_CHECKING:  # fusion imports this module
    from .fusion import Group

# static types --------------------------------------------------------------------------


@dataclass(frozen=True)
class V(TensorType):
    """A value's static type (an `ir.TensorType`, dims resolved), with what the emitters ask of it."""

    @cached_property
    def scalar(self) -> bool:
        """Every dim is the constant 1: the value is one number (kept in a scalar variable)."""
        return all(is_one(d) for d in self.shape)


def is_one(d: Dim) -> bool:
    return d.is_const and d.value == 1


@dataclass
class MNode:
    """One micro-op. `inputs` are data inputs (value names); `node` names the graph node."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict
    v: V
    node: str


# scalar templates: op -> code for one element -------------------------------------------

def _fsign(x: str) -> str:
    return f"(1.0 if {x} > 0 else (-1.0 if {x} < 0 else {x}))"


TEMPLATES = {
    "neg": lambda x: f"(-{x})",
    "exp": lambda x: f"math.exp({x})",
    "log": lambda x: f"math.log({x})",
    "log1p": lambda x: f"math.log1p({x})",
    "expm1": lambda x: f"math.expm1({x})",
    "sqrt": lambda x: f"math.sqrt({x})",
    "square": lambda x: f"({x} * {x})",
    "abs": lambda x: f"abs({x})",
    "sin": lambda x: f"math.sin({x})",
    "cos": lambda x: f"math.cos({x})",
    "tanh": lambda x: f"math.tanh({x})",
    "relu": lambda x: f"({x} if ({x} >= 0 or {x} != {x}) else 0)",
    "isfinite": lambda x: f"math.isfinite({x})",
    "add": lambda x, y: f"({x} + {y})",
    "sub": lambda x, y: f"({x} - {y})",
    "mul": lambda x, y: f"({x} * {y})",
    "div": lambda x, y: f"({x} / {y})",
    "pow": lambda x, y: f"({x} ** {y})",
    "maximum": lambda x, y: f"({x} if ({x} >= {y} or {x} != {x}) else {y})",
    "minimum": lambda x, y: f"({x} if ({x} <= {y} or {x} != {x}) else {y})",
    "greater": lambda x, y: f"({x} > {y})",
    "less": lambda x, y: f"({x} < {y})",
    "equal": lambda x, y: f"({x} == {y})",
    "greater_equal": lambda x, y: f"({x} >= {y})",
    "less_equal": lambda x, y: f"({x} <= {y})",
    "where": lambda c, x, y: f"({x} if {c} else {y})",
}
FLOAT_ONLY = {"exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "div", "pow", "isfinite"}
BOOL_OK = {"greater", "less", "equal", "greater_equal", "less_equal", "where", "maximum", "minimum"}
COMPARE = {"greater", "less", "equal", "greater_equal", "less_equal", "isfinite"}

# composite ops: their templates (gtool/ops/templates.py, on the op records) ----------------------

# the elementwise primitives of a template (`P.exp`, `P.ge`, ...) -> the micro-op computing each
PRIMS = {"exp": "exp", "log": "log", "log1p": "log1p", "neg": "neg", "abs": "abs", "add": "add", "sub": "sub",
         "mul": "mul", "div": "div", "maximum": "maximum", "minimum": "minimum", "where": "where", "gt": "greater",
         "ge": "greater_equal", "eq": "equal", "isfinite": "isfinite"}


class ScalarCode:
    """A template's primitive namespace that writes one line of scalar code per call (the
    primitives' own `TEMPLATES`), so a scalar template compiles to one helper function."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __getattr__(self, prim: str):
        if prim not in PRIMS:
            raise AttributeError(f"'{prim}' is not an elementwise template primitive")

        def step(*args) -> str:
            code = TEMPLATES[PRIMS[prim]](*[repr(float(a)) if isinstance(a, int | float) else a for a in args])
            var = f"t{len(self.lines)}"
            self.lines.append(f"    {var} = {code}")
            return var

        return step


def scalar_helper(name: str, template) -> str:
    """The source of `_<name>(x)`: the op's scalar template traced through `ScalarCode`."""
    code = ScalarCode()
    result = template.fn(code, "x")
    return "\n".join([f"def _{name}(x):", *code.lines, f"    return {result}", ""])


# scalar templates become helpers the emitters define once per generated module (when called)
HELPERS = {f"_{op.name}": scalar_helper(op.name, op.template) for op in REGISTRY.values()
           if op.template is not None and op.template.scalar and op.plugin is None}
for _h in HELPERS:
    TEMPLATES[_h[1:]] = lambda x, _h=_h: f"{_h}({x})"
    FLOAT_ONLY.add(_h[1:])

# ops that read their inputs elementwise (with broadcasting) inside a fused loop
FUSED = set(TEMPLATES) | {"sign", "bcast", "cast", "one_hot", "gather", "permute", "slice", "size", "const"}


def sign_template(x: str, dtype: str) -> str:
    if dtype.startswith("float"):
        return _fsign(x)
    return f"(1 if {x} > 0 else (-1 if {x} < 0 else 0))"


def convert(code: str, src: str, dst: str) -> str:
    """Code converting a scalar of dtype `src` to `dst` (as NumPy's astype does)."""
    if src == dst:
        return code
    if dst == "bool":
        return f"({code} != 0)"
    return f"np.{dst}({code})"


def compute_dtype(m: MNode, types: dict[str, V]) -> str:
    """The dtype an elementwise op computes in: its inputs are converted to it first."""
    if m.op in COMPARE:
        return _result([types[i] for i in m.inputs])
    return m.v.dtype


def _result(vs: list[V]) -> str:
    return result_type(vs).dtype


# one loop body: the lines computing a group's members at one index ------------------------------


class Body:
    """The statements for one point of a group's loop, shared by the CPU and CUDA emitters.

    `idx` holds the loop index variables (one per axis of the group's shape, or ["i"] for a
    flat loop over contiguous arrays); the callbacks name a value's register, scalar or array
    variable. Reduction members produce `(acc, value)` updates that the emitter applies.
    """

    def __init__(self, g: Group, types: dict[str, V], idx: list[str], *, reg, scalar, array, dim, flat=False,
                 raise_stmt="raise IndexError('gtool: index out of range')") -> None:
        self.g, self.types, self.idx, self.flat = g, types, idx, flat
        self.reg, self.scalar, self.array, self.dim = reg, scalar, array, dim
        self.raise_stmt = raise_stmt
        self.regs = {m.name for m in g.members if m.op != "reduce"}
        self.lines: list[str] = []

    def at(self, k: int) -> str:
        return self.idx[k] if k < len(self.idx) else "0"

    def bcast_index(self, shape, loop=None) -> list[str]:
        """Index of an operand of `shape` broadcast against the loop shape (right-aligned)."""
        loop = self.g.shape if loop is None else loop
        lead = len(loop) - len(shape)
        return ["0" if (not loop or is_one(d) or lead + j < 0) else self.at(lead + j) for j, d in enumerate(shape)]

    def load(self, m: MNode, pos: int, index: list[str] | None = None) -> str:
        u = m.inputs[pos]
        if u in self.regs:
            return self.reg(u)
        v = self.types[u]
        if v.scalar:
            return self.scalar(u)
        if self.flat and index is None:
            return f"{self.array(u, flat=True)}[{self.idx[0]}]"
        index = index if index is not None else self.bcast_index(v.shape)
        return f"{self.array(u)}[{', '.join(index)}]"

    def emit(self, m: MNode) -> str:
        """Append the lines for member m; returns the expression of its value (converted to its dtype)."""
        t = self.types
        out = m.v.dtype
        op = m.op
        if op in TEMPLATES:
            cdt = compute_dtype(m, t)
            args = [self.load(m, k) for k in range(len(m.inputs))]
            conv = [a if (op == "where" and k == 0) else convert(a, t[u].dtype, cdt)
                    for k, (a, u) in enumerate(zip(args, m.inputs))]
            expr = TEMPLATES[op](*conv)
            return expr if out in ("float64", "int64", "bool") else f"np.{out}({expr})"
        if op == "sign":
            a = convert(self.load(m, 0), t[m.inputs[0]].dtype, out)
            expr = sign_template(a, out)
            return expr if out in ("float64", "int64") else f"np.{out}({expr})"
        if op in ("bcast", "reshape") or (op in ("permute", "slice") and t[m.inputs[0]].scalar):
            return convert(self.load(m, 0), t[m.inputs[0]].dtype, out)
        if op == "cast":
            return convert(self.load(m, 0), t[m.inputs[0]].dtype, out)
        if op == "permute":
            perm = m.attrs["perm"]
            inv = [perm.index(a) for a in range(len(perm))]
            return self.load(m, 0, [self.at(k) for k in inv])
        if op == "slice":
            ax, start = m.attrs["axis"], self.dim(m.attrs["start"])
            index = [self.at(k) if k != ax else f"({self.at(k)} + {start})" for k in range(m.v.rank)]
            return self.load(m, 0, index)
        if op == "one_hot":
            tcode = self.load(m, 0, self.bcast_index(t[m.inputs[0]].shape, self.g.shape[:-1]))
            last = self.at(len(self.g.shape) - 1) if self.g.shape else "0"
            return convert(f"(1.0 if {tcode} == {last} else 0.0)", "float64", out)
        if op == "gather":
            return self.gather(m)
        if op == "const":
            return convert(repr(float(m.attrs["value"])), "float64", out)
        if op == "size":
            dims = " * ".join(self.dim(d) for d in m.attrs["dims"]) or "1"
            return f"float({dims})"
        raise NotImplementedError(op)

    def gather(self, m: MNode) -> str:
        """x[..., j, ...] with j read from the index operand; out-of-range raises (the NumPy
        forward then reports the located error)."""
        xv, iv = self.types[m.inputs[0]], self.types[m.inputs[1]]
        ax, drop = m.attrs["axis"], m.attrs["drop"]
        j = f"j_{len(self.lines)}"
        icode = self.load(m, 1, self.bcast_index(iv.shape))
        n = self.dim(xv.shape[ax])
        self.lines.append(f"{j} = {icode}")
        if m.attrs["negative"]:
            self.lines.append(f"if {j} < 0:")
            self.lines.append(f"    {j} = {j} + {n}")
        self.lines.append(f"if {j} < 0 or {j} >= {n}:")
        self.lines.append("    " + self.raise_stmt.replace("{j}", j))
        index = []
        for a, d in enumerate(xv.shape):
            if a == ax:
                index.append(j)
                continue
            k = (a if a < ax else a - 1) if drop else a
            index.append("0" if (is_one(d) or not self.g.shape) else self.at(k))
        return f"{self.array(m.inputs[0])}[{', '.join(index)}]"


def reduce_parts(m: MNode, types: dict[str, V]) -> tuple[str, str, str]:
    """(accumulator dtype, initial value code, kind) for a reduction member."""
    kind = m.attrs["kind"]
    src = types[m.inputs[0]].dtype
    is_float = src.startswith("float")
    if kind in ("sum", "mean"):
        acc = "float64" if is_float or kind == "mean" else "int64"
        return acc, ("0.0" if acc == "float64" else "0"), kind
    acc = "float64" if is_float else "int64"
    if kind == "max":
        return acc, ("-np.inf" if is_float else "-9223372036854775807 - 1"), kind
    return acc, ("np.inf" if is_float else "9223372036854775807"), kind


def shape_code(shape, dim) -> str:
    parts = [dim(d) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
