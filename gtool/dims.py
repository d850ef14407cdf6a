"""Symbolic dims: integer polynomials over dim names, with exact arithmetic.

A shape entry is a `Dim`: `3`, `batch`, `n + 5`, `2 * b`, `b * n`. Shape inference keeps dims
symbolic (concat of `[b, n]` and `[b, 5]` is `[b, n + 5]`) and a run evaluates them once the
data has bound the names. Floor division by a constant is exact when every coefficient divides,
and otherwise becomes an opaque factor `(expr // k)` that still evaluates at run time.
"""

from __future__ import annotations

import ast
import re
import warnings
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

    __slots__ = ("terms", "_hash", "_const")

    def __init__(self, terms: dict) -> None:
        items = tuple(sorted(((m, c) for m, c in terms.items() if c != 0), key=_term_key))
        _set(self, "terms", items)
        _set(self, "_hash", hash(items))
        # the value of a constant dim (0 for the empty polynomial), else None: constants are
        # most dims, so `==`, `is_const` and `value` answer without walking the terms
        const = None
        if not items:
            const = 0
        elif len(items) == 1 and items[0][0] == ():
            const = items[0][1]
        _set(self, "_const", const)

    # construction -------------------------------------------------------------
    @staticmethod
    def const(n: int) -> Dim:
        n = int(n)
        d = _CONSTS.get(n)
        if d is None:
            d = Dim({(): n})
            if -64 <= n <= 4096:
                _CONSTS[n] = d
        return d

    @staticmethod
    def sym(name: str) -> Dim:
        return Dim({(name,): 1})

    # queries -------------------------------------------------------------------
    @property
    def is_const(self) -> bool:
        return self._const is not None

    @property
    def value(self) -> int:
        """The integer value of a constant dim (0 for the empty polynomial)."""
        if self._const is None:
            raise ValueError(f"dim {self} is not a constant")
        return self._const

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
        if self._const is not None and other._const is not None:
            return Dim.const(self._const + other._const)
        terms = dict(self.terms)
        for m, c in other.terms:
            terms[m] = terms.get(m, 0) + c
        return Dim(terms)

    __radd__ = __add__

    def __neg__(self) -> Dim:
        if self._const is not None:
            return Dim.const(-self._const)
        return Dim({m: -c for m, c in self.terms})

    def __sub__(self, other: DimLike) -> Dim:
        return self + (-as_dim(other))

    def __rsub__(self, other: DimLike) -> Dim:
        return as_dim(other) - self

    def __mul__(self, other: DimLike) -> Dim:
        other = as_dim(other)
        if self._const is not None and other._const is not None:
            return Dim.const(self._const * other._const)
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

    def exact_div(self, other: DimLike) -> Dim | None:
        """The q with q * other == self for every binding (polynomial division), or None.

        reshape's -1 needs it: [b + 1, 1] reshaped to [b + 1, -1] leaves (b + 1) / (b + 1) = 1.
        Division by leading terms in a monomial order (degree, then factor names), so it
        finds q whenever one exists with integer coefficients.
        """
        other = as_dim(other)
        if not other.terms:
            return None
        if other._const is not None and self._const is not None:
            return Dim.const(self._const // other._const) if self._const % other._const == 0 else None
        lead_m, lead_c = max(other.terms, key=_lead_key)
        q, r = Dim({}), self
        for _ in range(4 * _MAX_TERMS):
            if not r.terms:
                return q
            m, c = max(r.terms, key=_lead_key)
            rest = list(m)
            for f in lead_m:
                if f not in rest:
                    return None
                rest.remove(f)
            if c % lead_c:
                return None
            t = Dim({tuple(rest): c // lead_c})
            q, r = q + t, r - t * other
        return None

    # evaluation ----------------------------------------------------------------
    def evaluate(self, bindings: dict[str, int]) -> int:
        """The integer value with every name bound; KeyError names a missing one."""
        if self._const is not None:
            return self._const
        total = 0
        for m, c in self.terms:
            v = c
            for f in m:
                v *= bindings[f] if isinstance(f, str) else f.num.evaluate(bindings) // f.den
            total += v
        return total

    def substitute(self, bindings: dict[str, Dim]) -> Dim:
        """Replace names by dims (names not in `bindings` stay)."""
        if not bindings or self._const is not None or not (self.symbols() & bindings.keys()):
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
        if other.__class__ is Dim:
            return self is other or (self._hash == other._hash and self.terms == other.terms)
        if isinstance(other, int) and not isinstance(other, bool):
            return self._const is not None and self._const == other
        return False

    def __hash__(self) -> int:
        return self._hash

    def __setattr__(self, key, value):  # immutable
        raise AttributeError("Dim is immutable")

    def __reduce__(self):  # pickled by its terms: the hash is recomputed (str hashes differ per process)
        return (Dim, (dict(self.terms),))

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
_set = object.__setattr__
_CONSTS: dict[int, Dim] = {}  # small constants, shared (Dims are immutable)


def _term_key(term):
    m, _ = term
    return (0 if m else 1, -len(m), [str(f) for f in m])


def _lead_key(term):
    """A monomial order (degree, then the sorted factor names): compatible with products."""
    m, _ = term
    return (len(m), [str(f) for f in m])


def as_dim(x: DimLike) -> Dim:
    if x.__class__ is Dim:
        return x
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"not a dim: {x!r}")
    return Dim.const(x)


def parse_dim(x: object) -> Dim:
    """A dim from a file: a non-negative int, a name, or `n + 5`, `2 * b`, `(n + 1) // 2`.

    Parsed with `ast` (never eval). A dim is a size, so a constant must be at least 0: `0` is
    an empty axis (as NumPy and ONNX have them), `-2` and `'2 - 3'` are refused (`n - 5` can
    only be checked once n is known). Raises ValueError with a readable reason.
    """
    d = _parse(x, "a dim must be a non-negative integer, a name or a dim expression")
    if d.is_const and d.value < 0:
        raise ValueError(f"a dim must be a non-negative integer, got {x!r}" + ("" if isinstance(x, int) else f" (= {d.value})"))
    return d


def parse_index(x: object) -> Dim:
    """A position along an axis (`slice` start/stop): like a dim, but 0 is allowed."""
    d = _parse(x, "an index must be a non-negative integer, a name or a dim expression")
    if d.is_const and d.value < 0:
        raise ValueError(f"an index must be a non-negative integer, got {x!r}")
    return d


def _parse(x: object, what: str) -> Dim:
    if isinstance(x, Dim):
        return x
    if isinstance(x, bool):
        raise ValueError(f"{what}, not {x!r}")
    if isinstance(x, int):
        return Dim.const(x)
    if not isinstance(x, str) or not x.strip() or len(x) > 200 or not x.isascii():
        raise ValueError(f"{what}, not {x!r}")
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence" in a quoted string: refused below anyway
            warnings.simplefilter("ignore")
            tree = ast.parse(x.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        raise ValueError(f"cannot read the dim expression {x!r}") from None
    return _dim_from_ast(tree, x)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_TERMS = 64


def _dim_from_ast(node: ast.AST, text: str) -> Dim:
    if isinstance(node, ast.Name) and _NAME.fullmatch(node.id):
        return Dim.sym(node.id)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Dim.const(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):  # str() writes `-n + 3`
        return -_dim_from_ast(node.operand, text)
    if isinstance(node, ast.BinOp):
        a, b = _dim_from_ast(node.left, text), _dim_from_ast(node.right, text)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            if len(a.terms) * len(b.terms) > _MAX_TERMS:
                raise ValueError(f"dim {text!r} is too complex (more than {_MAX_TERMS} terms)")
            return a * b
        if isinstance(node.op, ast.FloorDiv):
            try:
                return a // b
            except ValueError as e:
                raise ValueError(f"in dim {text!r}: {e}") from None
    raise ValueError(f"dim {text!r}: only names, integers, +, -, * and // (and parentheses) are allowed")


def format_shape(shape) -> str:
    """`[batch, 3]`, as `gtool shapes` prints it."""
    return "[" + ", ".join(str(d) for d in shape) + "]"
