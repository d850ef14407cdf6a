"""Symbolic dims: integer polynomials over dim names, with exact arithmetic.

A shape entry is a `Dim`: `3`, `batch`, `n + 5`, `2 * b`, `b * n`. Shape inference keeps dims
symbolic (concat of `[b, n]` and `[b, 5]` is `[b, n + 5]`) and a run evaluates them once the
data has bound the names. Floor division by a constant is exact when every coefficient divides,
and otherwise becomes an opaque factor `(expr // k)` that still evaluates at run time.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

Monomial = tuple  # sorted tuple of factors: str (a name) or FloorDiv


@dataclass(frozen=True, order=False)
class FloorDiv:
    """An opaque factor `num // den`, kept when the division is not exact."""

    num: Dim
    den: int

    def __str__(self) -> str:
        num = str(self.num) if len(self.num.terms) == 1 else f"({self.num})"
        return f"({num} // {self.den})"


class Dim:
    """An integer polynomial in dim names. Immutable and hashable; `==` is structural."""

    __slots__ = ("terms", "_hash")

    def __init__(self, terms: dict) -> None:
        items = tuple(sorted(((m, c) for m, c in terms.items() if c != 0), key=_term_key))
        object.__setattr__(self, "terms", items)
        object.__setattr__(self, "_hash", hash(items))

    # construction -------------------------------------------------------------
    @staticmethod
    def const(n: int) -> Dim:
        return Dim({(): int(n)})

    @staticmethod
    def sym(name: str) -> Dim:
        return Dim({(name,): 1})

    # queries -------------------------------------------------------------------
    @property
    def is_const(self) -> bool:
        return all(m == () for m, _ in self.terms)

    @property
    def value(self) -> int:
        """The integer value of a constant dim (0 for the empty polynomial)."""
        if not self.is_const:
            raise ValueError(f"dim {self} is not a constant")
        return self.terms[0][1] if self.terms else 0

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for m, _ in self.terms:
            for f in m:
                if isinstance(f, str):
                    out.add(f)
                else:
                    out |= f.num.symbols()
        return out

    def linear_coeff(self, name: str) -> int | None:
        """The coefficient of `name` if it appears only as a degree-1 term, else None."""
        coeff = None
        for m, c in self.terms:
            if m == (name,):
                coeff = c
            elif any((f == name) if isinstance(f, str) else name in f.num.symbols() for f in m):
                return None
        return coeff

    # arithmetic ----------------------------------------------------------------
    def __add__(self, other: DimLike) -> Dim:
        other = as_dim(other)
        terms = dict(self.terms)
        for m, c in other.terms:
            terms[m] = terms.get(m, 0) + c
        return Dim(terms)

    __radd__ = __add__

    def __neg__(self) -> Dim:
        return Dim({m: -c for m, c in self.terms})

    def __sub__(self, other: DimLike) -> Dim:
        return self + (-as_dim(other))

    def __rsub__(self, other: DimLike) -> Dim:
        return as_dim(other) - self

    def __mul__(self, other: DimLike) -> Dim:
        other = as_dim(other)
        terms: dict = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                m = tuple(sorted(m1 + m2, key=str))
                terms[m] = terms.get(m, 0) + c1 * c2
        return Dim(terms)

    __rmul__ = __mul__

    def __floordiv__(self, other: DimLike) -> Dim:
        other = as_dim(other)
        if not other.is_const or other.value <= 0:
            raise ValueError("a dim can only be floor-divided by a positive integer")
        k = other.value
        if k == 1:
            return self
        if self.is_const:
            return Dim.const(self.value // k)
        if all(c % k == 0 for _, c in self.terms):
            return Dim({m: c // k for m, c in self.terms})
        return Dim({(FloorDiv(self, k),): 1})

    # evaluation ----------------------------------------------------------------
    def evaluate(self, bindings: dict[str, int]) -> int:
        """The integer value with every name bound; KeyError names a missing one."""
        total = 0
        for m, c in self.terms:
            v = c
            for f in m:
                v *= bindings[f] if isinstance(f, str) else f.num.evaluate(bindings) // f.den
            total += v
        return total

    def substitute(self, bindings: dict[str, Dim]) -> Dim:
        """Replace names by dims (names not in `bindings` stay)."""
        if not bindings or not (self.symbols() & bindings.keys()):
            return self
        total = Dim({})
        for m, c in self.terms:
            v = Dim.const(c)
            for f in m:
                if isinstance(f, str):
                    v = v * bindings.get(f, Dim.sym(f))
                else:
                    v = v * (f.num.substitute(bindings) // f.den)
            total = total + v
        return total

    # protocol --------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if isinstance(other, int):
            return self.is_const and self.value == other
        return isinstance(other, Dim) and self.terms == other.terms

    def __hash__(self) -> int:
        return self._hash

    def __setattr__(self, key, value):  # immutable
        raise AttributeError("Dim is immutable")

    def __repr__(self) -> str:
        return f"Dim({str(self)!r})"

    def __str__(self) -> str:
        if not self.terms:
            return "0"
        parts: list[str] = []
        for m, c in self.terms:
            factors = [str(f) for f in m]
            if not factors:
                body = str(abs(c))
            elif abs(c) == 1:
                body = " * ".join(factors)
            else:
                body = " * ".join([str(abs(c))] + factors)
            if not parts:
                parts.append(("-" if c < 0 else "") + body)
            else:
                parts.append(("- " if c < 0 else "+ ") + body)
        return " ".join(parts)

    def to_json(self) -> int | str:
        """An int for a constant, else the expression text (as shapes are written in files)."""
        return self.value if self.is_const else str(self)


DimLike = Dim | int


def _term_key(term):
    m, _ = term
    return (0 if m else 1, -len(m), [str(f) for f in m])


def as_dim(x: DimLike) -> Dim:
    if isinstance(x, Dim):
        return x
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"not a dim: {x!r}")
    return Dim.const(x)


def parse_dim(x: object) -> Dim:
    """A dim from a file: a positive int, a name, or `n + 5`, `2 * b`, `(n + 1) // 2`.

    Parsed with `ast` (never eval). Raises ValueError with a readable reason.
    """
    if isinstance(x, Dim):
        return x
    if isinstance(x, bool):
        raise ValueError(f"a dim must be a positive integer or a name, not {x!r}")
    if isinstance(x, int):
        if x < 0:
            raise ValueError(f"a dim must be positive, got {x}")
        return Dim.const(x)
    if not isinstance(x, str) or not x.strip() or len(x) > 200:
        raise ValueError(f"a dim must be a positive integer, a name or a dim expression, not {x!r}")
    try:
        tree = ast.parse(x.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(f"cannot read the dim expression {x!r}") from None
    return _dim_from_ast(tree, x)


def _dim_from_ast(node: ast.AST, text: str) -> Dim:
    if isinstance(node, ast.Name):
        return Dim.sym(node.id)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Dim.const(node.value)
    if isinstance(node, ast.BinOp):
        a, b = _dim_from_ast(node.left, text), _dim_from_ast(node.right, text)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if isinstance(node.op, ast.FloorDiv):
            try:
                return a // b
            except ValueError as e:
                raise ValueError(f"in dim {text!r}: {e}") from None
    raise ValueError(f"dim {text!r}: only names, integers, +, -, * and // are allowed")


def format_shape(shape) -> str:
    """`[batch, 3]`, as `gtool shapes` prints it."""
    return "[" + ", ".join(str(d) for d in shape) + "]"
