"""Errors and diagnostics: one shape for every problem gtool reports.

A `Diagnostic` is a located, coded message (the JSON `DIAG` of the spec). A `GraphError`
carries one or more of them and is what library code raises; the CLI turns it into one
clean line per diagnostic and an exit status, never a traceback.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

EXIT_OK = 0
EXIT_FAILED = 1  # the graph or the check failed
EXIT_USAGE = 2  # the command was called wrongly (bad flag, missing file or data, missing dependency)


@dataclass(frozen=True)
class Diagnostic:
    """One problem, located in a file. `code` is stable and listed in docs/errors.md."""

    code: str
    message: str
    path: str | None = None
    line: int | None = None
    column: int | None = None
    node: str | None = None
    pointer: str | None = None
    op: str | None = None
    hint: str | None = None
    severity: str = "error"

    def to_json(self) -> dict:
        """The spec's DIAG object (plus `op`, `hint`, `severity` when known)."""
        d = asdict(self)
        d.pop("path")
        return {k: v for k, v in d.items() if v is not None or k in _DIAG_KEYS}

    def format(self) -> str:
        """`file:line:col: node 'w' (pow): message [code]` plus a hint line."""
        where = self.path or "<graph>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        subject = ""
        if self.node is not None:
            subject = f"node '{self.node}'" + (f" ({self.op})" if self.op else "") + ": "
        text = f"{where}: {self.severity}: {subject}{self.message} [{self.code}]"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


_DIAG_KEYS = ("code", "message", "line", "column", "node", "pointer")


class GraphError(Exception):
    """A problem with a graph file, a graph, or the data fed to it (exit status 1 by default)."""

    exit_code = EXIT_FAILED

    def __init__(self, code: str, message: str, **where) -> None:
        self.diagnostics: list[Diagnostic] = [Diagnostic(code, message, **where)]
        super().__init__(message)

    @classmethod
    def many(cls, diagnostics: list[Diagnostic]) -> GraphError:
        err = cls(diagnostics[0].code, diagnostics[0].message)
        err.diagnostics = list(diagnostics)
        return err

    @property
    def diagnostic(self) -> Diagnostic:
        return self.diagnostics[0]

    @property
    def code(self) -> str:
        return self.diagnostics[0].code

    def __str__(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


class UsageError(GraphError):
    """The command was called wrongly: missing input data, bad flag value, missing dependency."""

    exit_code = EXIT_USAGE


def did_you_mean(name: str, choices) -> str | None:
    """The closest of `choices` to `name`, for 'did you mean ...?' hints."""
    import difflib

    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return match[0] if match else None
