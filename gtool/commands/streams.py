"""stdout and stderr while a command runs: escaped for the terminal, checked, one JSON document.

Why here and not in each command: a guarantee about *all* output (no escape sequence from a
graph file reaches the terminal; a failed write is an error, never a silent partial; JSON mode
prints exactly one document even when a plugin prints) can only be kept where the output goes.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys

from ..report import escape_text


class OutputFailed(Exception):
    """Writing the command's output failed (disk full, file-size limit, closed pipe)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))
        self.error = error

    @property
    def broken_pipe(self) -> bool:
        return isinstance(self.error, BrokenPipeError) or self.error.errno == errno.EPIPE


class TerminalStream(io.TextIOBase):
    """A text stream that escapes control characters and turns write errors into OutputFailed.

    `raw` is the stream underneath, for gtool's own terminal control (the progress bar).
    """

    def __init__(self, raw, check: bool = True) -> None:
        super().__init__()
        self.raw = raw
        self.check = check  # stderr: a failure to report is not worth a second failure
        self.failed: OutputFailed | None = None
        self.fd = _fd_of(raw) if check else None
        self.pending: list[bytes] = []
        self.size = 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        try:
            if self.fd is None:
                self.raw.write(escape_text(text))
            else:
                data = escape_text(text).encode(self.encoding, "backslashreplace")
                self.pending.append(data)
                self.size += len(data)
                if self.size >= 1 << 16 or (b"\n" in data and self.isatty()):
                    self.flush()
        except OSError as e:
            self._fail(e)
        return len(text)

    def flush(self) -> None:
        try:
            if self.fd is not None and self.pending:
                data, self.pending, self.size = b"".join(self.pending), [], 0
                write_fd(self.fd, data)
            self.raw.flush()
        except OSError as e:
            self._fail(e)

    def _fail(self, e: OSError) -> None:
        if self.check:
            self.failed = self.failed or OutputFailed(e)
            raise self.failed from None

    def isatty(self) -> bool:
        return bool(getattr(self.raw, "isatty", lambda: False)())

    def fileno(self) -> int:
        return self.raw.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return getattr(self.raw, "encoding", None) or "utf-8"


class JsonCapture(io.StringIO):
    """stdout in JSON mode: everything is held, and at the end the one document goes to stdout and
    anything else that was printed (a plugin's print calls) goes to stderr."""

    def isatty(self) -> bool:
        return False


def split_document(text: str) -> tuple[str, str]:
    """(noise, document): the last JSON document that ends `text` and starts at a line start.

    Commands print their document last with `report.dumps` (nested objects indented), so the
    candidates are the lines that begin with `{` or `[`. Text holding no such document is
    returned as the document unchanged (--help, --version in a JSON-mode command line).
    """
    decoder = json.JSONDecoder()
    stripped = text.rstrip()
    starts = [0] if text[:1] in "{[" else []
    starts += [k + 1 for k in _line_starts(text) if text[k + 1:k + 2] in ("{", "[")]
    for start in starts:
        try:
            _, end = decoder.raw_decode(stripped, start)
        except ValueError:
            continue
        if end == len(stripped):
            return text[:start], text[start:]
    return "", text


def _line_starts(text: str):
    k = text.find("\n")
    while k >= 0:
        yield k
        k = text.find("\n", k + 1)


def write_out(stream, text: str) -> None:
    """Write and flush the document on the real stdout; OutputFailed when that fails."""
    try:
        fd = _fd_of(stream)
        if fd is None:
            stream.write(text)
            stream.flush()
        else:
            write_fd(fd, text.encode(getattr(stream, "encoding", None) or "utf-8", "backslashreplace"))
    except OSError as e:
        raise OutputFailed(e) from None


def _fd_of(stream) -> int | None:
    """The file descriptor under the process's own stdout, written directly: Python's buffered
    writer drops the rest of a partial write (a file-size limit) without an error."""
    if stream is not sys.__stdout__ or stream is None:
        return None
    try:
        stream.flush()
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None


def write_fd(fd: int, data: bytes) -> None:
    """All of `data` to `fd`, or OSError: a short write is retried, and the retry reports why."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[n:]


def silence_stdout() -> None:
    """After a broken pipe: point fd 1 at /dev/null so the interpreter's last flush is quiet."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.close(fd)
    except OSError:
        pass
