"""The node shorthand: `u: x @ W + b` -> operations, parsed with `ast`, never evaluated.

The spec's grammar (cmp/expr/term/unary/power/atom/args/attr) is a subset of Python's
expression grammar with the same precedence and associativity, so `ast.parse(mode='eval')`
does the parsing and this module walks the tree, refusing every Python form the grammar
does not have. Nested operations become anonymous nodes `__<owner>_<n>` and numbers become
constants from the same counter, so every generated name is unique per owner and points
back to it in errors and diagrams.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
import warnings
from dataclasses import dataclass, field

from gtool.errors import GraphError

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "ExprConst", "ExprNode", "parse_expression"]

#: Longer or deeper expressions are refused before Python's parser can run out of stack.
MAX_LENGTH = 10_000
MAX_DEPTH = 100


@dataclass(frozen=True)
class ExprNode:
    """One operation of an expression; `name` is the owner for the root, else `__<owner>_<n>`."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ExprConst:
    """A number written in an expression (a weak scalar), named `__<owner>_<n>`."""

    name: str
    value: int | float | bool


_BINOPS: dict[type, str] = {
    ast.Add: "add",
    ast.Sub: "sub",
    ast.Mult: "mul",
    ast.Div: "div",
    ast.MatMult: "matmul",
    ast.Pow: "pow",
}
_CMPOPS: dict[type, str] = {ast.Gt: "greater", ast.Lt: "less", ast.Eq: "equal"}
_SYMBOLS: dict[type, str] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.MatMult: "@", ast.Pow: "**",
    ast.FloorDiv: "//", ast.Mod: "%", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|",
    ast.BitXor: "^", ast.BitAnd: "&", ast.Gt: ">", ast.Lt: "<", ast.Eq: "==", ast.NotEq: "!=",
    ast.GtE: ">=", ast.LtE: "<=", ast.Is: "is", ast.IsNot: "is not", ast.In: "in",
    ast.NotIn: "not in",
}  # fmt: skip
_OPERATORS_HINT = "the operators are + - * / @ ** and the comparisons > < =="
_DIM_OPS = (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BOOL_NAMES = {"true": True, "false": False}
_ATTR_NAMES = {"true": True, "false": False, "null": None}
#: Python forms that are not in the grammar, with the words to refuse them.
_REFUSED: dict[type, str] = {
    ast.Attribute: "attribute access (a.b) is not supported",
    ast.Subscript: "indexing and slicing (a[i]) are not supported",
    ast.Lambda: "lambda is not supported",
    ast.JoinedStr: "f-strings are not supported",
    ast.BoolOp: "boolean operators (and, or) are not supported; use where(...)",
    ast.IfExp: "conditional expressions (a if c else b) are not supported; use where(c, a, b)",
    ast.Dict: "dicts are not supported",
    ast.Set: "sets are not supported",
    ast.Tuple: "tuples are not supported (a node's string is one expression)",
    ast.NamedExpr: "assignment (:=) is not supported",
    ast.Starred: "unpacking (*a) is not supported",
    ast.ListComp: "comprehensions are not supported",
    ast.SetComp: "comprehensions are not supported",
    ast.DictComp: "comprehensions are not supported",
    ast.GeneratorExp: "comprehensions are not supported",
    ast.Await: "await is not supported",
    ast.Yield: "yield is not supported",
    ast.YieldFrom: "yield is not supported",
    ast.Slice: "slices are not supported",
}


def parse_expression(text: str, owner: str) -> tuple[list[ExprNode], list[ExprConst]]:
    """Parse a node's shorthand string into operations and constants.

    Returns the nodes in dependency order, the owner's own node (named `owner`) last, and
    the constants. The root is always an operation: a bare name `x` becomes `identity(x)`.
    Anything outside the grammar is a `GraphError('bad-expression')` that quotes the text,
    gives the 1-based column, and names the owner node.
    """
    return _Parser(text, owner).parse()


class _Parser:
    def __init__(self, text: str, owner: str) -> None:
        self.text = text
        self.owner = owner
        self.count = 0
        self.nodes: list[ExprNode] = []
        self.consts: list[ExprConst] = []
        self.encoded = b""
        self.lead = 0
        self.renamed: dict[int, str] = {}  # offset -> keyword used as a name (see _parse_names)

    # -- errors ------------------------------------------------------------------------

    def error(self, detail: str, offset: int | None = None) -> GraphError:
        """A bad-expression error; `offset` is a 0-based character offset into the text."""
        text = self.text if isinstance(self.text, str) else repr(self.text)
        quoted = text if len(text) <= 80 else text[:77] + "..."
        where = ""
        if offset is not None:
            offset = max(0, min(offset, len(text)))
            column = offset - text.rfind("\n", 0, offset)
            if "\n" in text:
                where = f" (line {text.count(chr(10), 0, offset) + 1}, column {column})"
            else:
                where = f" (column {column})"
        return GraphError(
            "bad-expression",
            f"cannot parse expression {quoted!r}: {detail}{where}",
            node=self.owner,
        )

    def _offset(self, byte_col: int) -> int:
        """ast columns count UTF-8 bytes of the (one-line) source; messages count characters."""
        return self.lead + len(self.encoded[:byte_col].decode("utf-8", "replace"))

    def at(self, node: ast.AST, detail: str) -> GraphError:
        col = getattr(node, "col_offset", None)
        return self.error(detail, None if col is None else self._offset(col))

    def between(self, a: ast.AST, b: ast.AST, symbol: str, fallback: ast.AST, detail: str):
        """Point at `symbol` written between nodes `a` and `b` (the operator), if found."""
        i = self.encoded.find(symbol.encode(), a.end_col_offset, b.col_offset)
        if i >= 0:
            return self.error(detail, self._offset(i))
        return self.at(fallback, detail)

    # -- parsing -----------------------------------------------------------------------

    def parse(self) -> tuple[list[ExprNode], list[ExprConst]]:
        text = self.text
        if not isinstance(text, str):
            raise self.error(f"expected a string, found {type(text).__name__}")
        if not text.strip():
            raise self.error("the expression is empty")
        if len(text) > MAX_LENGTH:
            raise self.error(f"the expression is longer than {MAX_LENGTH} characters")
        self._check_brackets()
        # A YAML block string may span lines; Python's eval mode wants one logical line.
        # Same length, so character offsets still point into the original text.
        # Leading blanks would be an "unexpected indent"; offsets add them back.
        src = text.replace("\r", " ").replace("\n", " ")
        stripped = src.lstrip()
        self.lead = len(src) - len(stripped)
        src = stripped
        try:
            self.encoded = src.encode("utf-8")
        except UnicodeError:
            raise self.error("the text is not valid Unicode") from None
        try:
            tree = self._parse_names(src)
        except SyntaxError as e:
            msg = e.msg or "invalid syntax"
            if e.lineno not in (None, 1):
                offset = None
            elif e.offset:
                offset = e.offset - 1 + self.lead
            else:  # Python reports the end of the input as offset 0
                offset = len(text.rstrip())
                if msg == "invalid syntax":
                    msg = "the expression ends too early"
            if msg.startswith("Exceeds the limit"):
                msg, offset = "the integer has too many digits", None
            raise self.error(msg, offset) from None
        except (RecursionError, MemoryError):
            raise self.error(
                f"the expression is nested more than {MAX_DEPTH} levels deep"
            ) from None
        except UnicodeError:
            raise self.error("the text is not valid Unicode") from None
        except ValueError as e:  # e.g. null bytes, on some Python versions
            raise self.error(str(e)) from None
        if len(src) > MAX_DEPTH:  # a shorter text cannot nest deeper than MAX_DEPTH
            self._check_depth(tree.body)
        if not src.isascii():
            self._check_normalised(tree)
        if "#" in src:
            self._check_comments(tree)
        root = tree.body
        name = self.value(root, root=True)
        if name is not None:  # a bare name or number: the owner is identity of it
            self.nodes.append(ExprNode(self.owner, "identity", (name,), {}))
        return self.nodes, self.consts

    def _parse_names(self, src: str) -> ast.Expression:
        """`ast.parse`, then (if that fails) again with Python keywords as names.

        A graph may name a tensor `lambda` or `in` (the format allows any identifier), but
        Python's parser reads those as keywords. So when the text does not parse, each keyword
        token is replaced by a placeholder of the same length (columns stay right) that no
        user name can be, and `self.renamed` maps its offset back to the keyword. Text that
        parses as written keeps Python's reading, so `a if c else b` is still refused with
        its own message; if the second parse fails too, the first error is reported.
        """
        try:
            return _ast_parse(src)
        except SyntaxError as first:
            swapped = _swap_keywords(src)
            if swapped is None:
                raise
            text, renamed = swapped
            self.renamed = {col + self.lead: word for col, word in renamed.items()}
            try:
                tree = _ast_parse(text)
            except SyntaxError:
                self.renamed = {}
                raise first from None
            self.encoded = text.encode("utf-8")
            return tree

    def ident(self, node: ast.AST, name: str) -> str:
        """The name as written: a keyword placeholder (see `_parse_names`) maps back."""
        if self.renamed:
            return self.renamed.get(self._offset(node.col_offset), name)
        return name

    def _check_normalised(self, tree: ast.AST) -> None:
        """Python NFKC-normalises identifiers, so `ｘ` (full-width) would silently mean `x`.
        Names are ASCII, so an identifier written otherwise than Python reads it is refused."""
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                raw = self.encoded[node.col_offset : node.end_col_offset].decode("utf-8", "replace")
                name = node.id
            elif isinstance(node, ast.keyword) and node.arg is not None:
                raw = self.encoded[node.col_offset :].split(b"=", 1)[0].decode("utf-8", "replace").strip()
                name = node.arg
            else:
                continue
            if raw != name:
                raise self.at(node, f"'{raw}' is not a valid name: names are ASCII letters, digits and _ "
                              f"(Python would read it as '{name}', which is a different name here)")

    def _check_comments(self, tree: ast.AST) -> None:
        """Python skips `# ...`; the grammar has no comments, so text there would be lost."""
        spans = [
            (n.col_offset, n.end_col_offset)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Constant, ast.JoinedStr)) and isinstance(n.col_offset, int)
        ]
        i = self.encoded.find(b"#")
        while i >= 0:
            if not any(a <= i < b for a, b in spans):
                raise self.error("comments (#) are not part of an expression", self._offset(i))
            i = self.encoded.find(b"#", i + 1)

    def _check_brackets(self) -> None:
        """Refuse deep bracket nesting before Python's parser meets it."""
        depth = 0
        for i, ch in enumerate(self.text):
            if ch in "([{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise self.error(f"brackets are nested more than {MAX_DEPTH} levels deep", i)
            elif ch in ")]}":
                depth -= 1

    def _check_depth(self, root: ast.AST) -> None:
        """Bound the tree depth so the recursive walk below cannot overflow."""
        stack = [(root, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise self.at(node, f"the expression is nested more than {MAX_DEPTH} levels deep")
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.expr, ast.keyword)):
                    stack.append((child, depth + 1))

    def fresh(self) -> str:
        self.count += 1
        return f"__{self.owner}_{self.count}"

    def const(self, value: float | bool) -> str:
        name = self.fresh()
        self.consts.append(ExprConst(name, value))
        return name

    def emit(self, op: str, inputs: list[str], attrs: dict, root: bool) -> str | None:
        name = self.owner if root else self.fresh()
        self.nodes.append(ExprNode(name, op, tuple(inputs), attrs))
        return None if root else name

    def value(self, node: ast.AST, root: bool = False) -> str | None:
        """Walk one tensor-valued expression; return the name holding its value.

        For the root, an operation is named after the owner and None is returned; a leaf
        (name or number) returns its name and the caller wraps it in identity.
        """
        if isinstance(node, ast.Name):
            ident = self.ident(node, node.id)
            if ident in _BOOL_NAMES:
                return self.const(_BOOL_NAMES[ident])
            if ident in ("null", "None"):
                raise self.at(node, "null is only allowed as an attr value (k=null)")
            if not _NAME.match(ident):
                raise self.at(node, f"'{ident}' is not a valid name ([A-Za-z_][A-Za-z0-9_]*)")
            return ident
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or (isinstance(v, (int, float)) and not isinstance(v, complex)):
                return self.const(v)
            if isinstance(v, str):
                raise self.at(node, "strings are only allowed as attr values (k='text')")
            if v is None:
                raise self.at(node, "None is only allowed as an attr value (k=null)")
            raise self.at(node, f"{type(v).__name__} literals are not supported")
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub):
                if isinstance(node.op, ast.Not):
                    detail = "boolean operators (not) are not supported"
                else:
                    sym = "+" if isinstance(node.op, ast.UAdd) else "~"
                    detail = f"unary '{sym}' is not supported; the only unary operator is -"
                raise self.at(node, detail)
            operand = node.operand
            if isinstance(operand, ast.Constant) and _is_number(operand.value):
                return self.const(-operand.value)  # -NUMBER is a literal
            x = self.value(operand)
            return self.emit("neg", [x], {}, root)
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                sym = _SYMBOLS.get(type(node.op), type(node.op).__name__)
                raise self.between(
                    node.left, node.right, sym, node,
                    f"operator '{sym}' is not supported; {_OPERATORS_HINT}",
                )  # fmt: skip
            a = self.value(node.left)
            b = self.value(node.right)
            return self.emit(op, [a, b], {}, root)
        if isinstance(node, ast.Compare):
            if len(node.ops) > 1:
                sym = _SYMBOLS.get(type(node.ops[1]), "?")
                raise self.between(
                    node.comparators[0], node.comparators[1], sym, node,
                    "chained comparisons (a < b < c) are not supported; "
                    "compare two values at a time",
                )  # fmt: skip
            op = _CMPOPS.get(type(node.ops[0]))
            if op is None:
                sym = _SYMBOLS.get(type(node.ops[0]), "?")
                raise self.between(
                    node.left, node.comparators[0], sym, node,
                    f"comparison '{sym}' is not supported; the comparisons are > < ==",
                )  # fmt: skip
            a = self.value(node.left)
            b = self.value(node.comparators[0])
            return self.emit(op, [a, b], {}, root)
        if isinstance(node, ast.Call):
            return self.call(node, root)
        if isinstance(node, ast.List):
            raise self.at(node, "lists are only allowed as attr values (k=[1, 2])")
        detail = _REFUSED.get(type(node), f"{type(node).__name__} is not supported")
        if isinstance(node, ast.Attribute) and node.attr in ("T", "mT"):  # numpy's x.T
            detail += "; write transpose(x) (or transpose(x, perm=[...]))"
        raise self.at(node, detail)

    def call(self, node: ast.Call, root: bool) -> str | None:
        func = node.func
        if not isinstance(func, ast.Name):
            if isinstance(func, ast.Attribute):
                raise self.at(func, "attribute access (a.b) is not supported; call an op by name")
            raise self.at(func, "only an op name can be called: NAME(args)")
        if not _NAME.match(func.id):
            raise self.at(func, f"'{func.id}' is not a valid op name")
        op = self.ident(func, func.id)
        op = ALIASES.get(op, op)
        inputs = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.at(arg, "unpacking (*a) is not supported")
            inputs.append(self.value(arg))
        attrs: dict = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.at(kw, "unpacking (**a) is not supported")
            arg = self.ident(kw, kw.arg)
            if arg in attrs:
                raise self.at(kw, f"keyword '{arg}' is given twice")
            attrs[arg] = self.attr(kw.value, arg)
        return self.emit(op, inputs, attrs, root)

    def attr(self, node: ast.AST, key: str) -> object:
        """An attr value as plain data; bare names and dim expressions become strings."""
        if isinstance(node, ast.Constant):
            v = node.value
            if v is None or isinstance(v, (bool, str)) or _is_number(v):
                return v
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            if isinstance(node.operand, ast.Constant) and _is_number(node.operand.value):
                return -node.operand.value
        elif isinstance(node, ast.Name):
            if node.id in _ATTR_NAMES:
                return _ATTR_NAMES[node.id]
            if _NAME.match(node.id):
                return node.id
            if self.renamed:
                return self.ident(node, node.id)
        elif isinstance(node, ast.List):
            return [self.attr(e, key) for e in node.elts]
        elif isinstance(node, ast.BinOp) and _is_dim_expr(node):
            return ast.unparse(node)
        raise self.at(
            node,
            f"attr '{key}' must be a number, true, false, null, a string, a list, a name "
            "or a dim expression (n + 1, 2 * b)",
        )


#: PyTorch-style names of the N-d window ops (the spatial rank comes from the inputs).
ALIASES = {f"{base}{n}d": base for base in ("conv", "conv_transpose", "max_pool", "avg_pool") for n in (1, 2, 3)}


def _ast_parse(src: str) -> ast.Expression:
    with warnings.catch_warnings():  # "invalid escape sequence" in a string attr: not ours to print
        warnings.simplefilter("ignore")
        return ast.parse(src, mode="eval")


#: Python keywords that a graph name may be (True, False and None parse as constants).
_KEYWORDS = frozenset(keyword.kwlist) - {"True", "False", "None"}
#: The placeholder letter: an identifier character that NFKC keeps and no ASCII name holds.
_PLACEHOLDER = "\u03a9"


def _swap_keywords(src: str) -> tuple[str, dict[int, str]] | None:
    """`src` with each keyword token replaced by placeholder letters, and {offset: keyword};
    None when it holds no keyword (or does not even tokenize)."""
    found: list[tuple[int, str]] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.NAME and tok.string in _KEYWORDS:
                found.append((tok.start[1], tok.string))
    except (tokenize.TokenError, SyntaxError, ValueError):
        return None
    if not found:
        return None
    parts, last = [], 0
    for col, word in found:
        parts += [src[last:col], _PLACEHOLDER * len(word)]
        last = col + len(word)
    parts.append(src[last:])
    return "".join(parts), dict(found)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_dim_expr(node: ast.AST) -> bool:
    """`n + 5`, `2 * b`, `(n - 1) // 2`: names and ints with + - * //."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.BinOp):
            if not isinstance(n.op, _DIM_OPS):
                return False
            stack += (n.left, n.right)
        elif isinstance(n, ast.Name):
            if not _NAME.match(n.id) or n.id in _ATTR_NAMES:
                return False
        elif not (isinstance(n, ast.Constant) and type(n.value) is int):
            return False
    return True
