"""The `gtool` command: a click group whose commands are thin shells over the library.

`main` turns every GraphError into clean located lines and an exit status (1: the graph or
check failed, 2: called wrongly), never a traceback. GTOOL_DEBUG=1 shows tracebacks.
"""

from __future__ import annotations

import os
import sys

import click

from . import __version__
from .commands import common, core, streams
from .errors import EXIT_FAILED, EXIT_USAGE, GraphError, UsageError

COMMAND_MODULES = ("core", "gradcheck", "rewrite", "render", "convert", "memory")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="gtool")
def cli():
    """Write, check, run and differentiate computational graphs stored as YAML/JSON files.

    Exit status: 0 success, 1 the graph or check failed, 2 the command was called wrongly.
    """
    common.load_entry_point_plugins()


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        try:
            module = core if name == "core" else importlib.import_module(f"gtool.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"gtool.commands.{name}":
                raise
            continue  # a command family not built yet
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


JSON_FORMATS = ("json", "sarif")  # formats whose stdout is one JSON document


def _wants_json(argv) -> bool:
    """Whether the command line asks for a JSON document (`--format json` or `sarif`), read before
    click parses it, so that errors found while parsing (a bad flag value, unreadable --input data)
    still give JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" in args:
        args = args[:args.index("--")]
    last = None  # click keeps the last of repeated options
    for a, b in zip(args, args[1:] + [""]):
        if a == "--format" and b:  # a last `--format` without a value is click's error, not a choice
            last = b
        elif a.startswith("--format="):
            last = a.partition("=")[2]
    return last in JSON_FORMATS


def _report_error(e: GraphError) -> None:
    if common.STATE.get("format") in JSON_FORMATS:
        from .report import dumps

        click.echo(dumps({"error": e.diagnostic.to_json(), "errors": [d.to_json() for d in e.diagnostics]}))
    for d in e.diagnostics:
        text = d.format()
        if d.path is None and text.startswith("<graph>: "):
            text = "gtool: " + text[len("<graph>: "):]
        click.echo(text, err=True)


def _usage_error(e: click.ClickException) -> None:
    """click's own errors (an unknown option, a value outside a choice) in gtool's shape: a
    `[usage]` code in text, the error document in JSON mode."""
    message = e.format_message()
    if common.STATE.get("format") in JSON_FORMATS:
        from .report import dumps

        diag = UsageError("usage", message).diagnostic.to_json()
        click.echo(dumps({"error": diag, "errors": [diag]}))
    ctx = getattr(e, "ctx", None)
    if ctx is not None and isinstance(e, click.UsageError):
        click.echo(ctx.get_usage(), err=True)
        if ctx.command.get_help_option(ctx) is not None:
            click.echo(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.", err=True)
    click.echo(f"gtool: error: {message} [usage]", err=True)


def main(argv=None) -> None:
    """Entry point for the console script and `python -m gtool`.

    While the command runs, stdout and stderr are wrapped (see commands/streams.py): text is
    escaped for the terminal, JSON mode holds stdout back to print exactly one document, and a
    failed write of the output is an error (exit 2, `output-failed`), never a silent partial.
    """
    debug = os.environ.get("GTOOL_DEBUG") == "1"
    json_mode = _wants_json(argv)
    common.STATE["format"] = "json" if json_mode else "text"  # main may run more than once per process
    real_out, real_err = sys.stdout, sys.stderr
    out = streams.JsonCapture() if json_mode else streams.TerminalStream(real_out)
    sys.stdout, sys.stderr = out, streams.TerminalStream(real_err, check=False)
    status, failed = EXIT_FAILED, None
    try:
        status = _run(argv, debug)
        if not json_mode:
            out.flush()
    except streams.OutputFailed as e:
        failed = e
    finally:
        sys.stdout, sys.stderr = real_out, real_err
        if not json_mode and failed is None and out.failed is None:
            try:  # what the command printed before an exception that GTOOL_DEBUG lets through
                out.flush()
            except streams.OutputFailed as e:
                failed = e
        if json_mode:
            noise, doc = streams.split_document(out.getvalue())
            if noise:
                real_err.write(noise)
            if doc and failed is None:
                try:
                    streams.write_out(real_out, doc)
                except streams.OutputFailed as e:
                    failed = e
    if failed is None and not json_mode and out.failed is not None:
        failed = out.failed  # a write failed inside code that went on
    if failed is not None:
        if failed.broken_pipe:  # the reader left (`| head`): not gtool's failure to report
            streams.silence_stdout()
            sys.exit(status)
        real_err.write(f"gtool: error: cannot write the output: {failed} [output-failed]\n")
        sys.exit(EXIT_USAGE)
    sys.exit(status)


def _run(argv, debug: bool) -> int:
    """Run the command; the exit status, with every failure turned into located lines."""
    try:
        rv = cli.main(args=argv, prog_name="gtool", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_FAILED)
    except streams.OutputFailed:
        raise
    except GraphError as e:
        if debug:
            raise
        _report_error(e)
        return e.exit_code
    except click.exceptions.Abort as e:
        if isinstance(e.__cause__, EOFError):  # click turns EOFError into Abort too: that is a bug, not Ctrl-C
            if debug:
                raise e.__cause__ from None
            click.echo(f"gtool: internal error: EOFError: {e.__cause__} (set GTOOL_DEBUG=1 for the traceback; "
                       "please report it)", err=True)
            return EXIT_FAILED
        click.echo("Aborted.", err=True)
        return 130  # click turns Ctrl-C into Abort: exit as an interrupted program does
    except click.ClickException as e:
        _usage_error(e)
        return EXIT_USAGE
    except click.exceptions.Exit as e:
        return e.exit_code
    except RecursionError:
        click.echo("gtool: error: the input is nested too deeply to process [too-deep]", err=True)
        return EXIT_FAILED
    except MemoryError:
        _report_error(GraphError("out-of-memory", "out of memory"))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug in gtool: one line, and how to see more
        if debug:
            raise
        click.echo(f"gtool: internal error: {type(e).__name__}: {e} (set GTOOL_DEBUG=1 for the traceback; "
                   "please report it)", err=True)
        return EXIT_FAILED
