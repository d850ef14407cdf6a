"""The `gtool` command: a click group whose commands are thin shells over the library.

`main` turns every GraphError into clean located lines and an exit status (1: the graph or
check failed, 2: called wrongly), never a traceback. GTOOL_DEBUG=1 shows tracebacks.
"""

from __future__ import annotations

import os
import sys

import click

from . import __version__
from .commands import common, core
from .errors import EXIT_FAILED, EXIT_USAGE, GraphError, UsageError

COMMAND_MODULES = ("core", "gradcheck", "rewrite", "render")


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


def _wants_json(argv) -> bool:
    """Whether the command line asks for `--format json`, read before click parses it, so that
    errors found while parsing (a bad flag value, unreadable --input data) still give JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" in args:
        args = args[:args.index("--")]
    return any(a == "--format=json" or (a == "--format" and b == "json") for a, b in zip(args, args[1:] + [""]))


def _report_error(e: GraphError) -> None:
    if common.STATE.get("format") == "json":
        from .report import dumps

        click.echo(dumps({"error": e.diagnostic.to_json(), "errors": [d.to_json() for d in e.diagnostics]}))
    for d in e.diagnostics:
        text = d.format()
        if d.path is None and text.startswith("<graph>: "):
            text = "gtool: " + text[len("<graph>: "):]
        click.echo(text, err=True)


def main(argv=None) -> None:
    """Entry point for the console script and `python -m gtool`."""
    debug = os.environ.get("GTOOL_DEBUG") == "1"
    common.STATE["format"] = "json" if _wants_json(argv) else "text"  # main may run more than once per process
    try:
        rv = cli.main(args=argv, prog_name="gtool", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except GraphError as e:
        if debug:
            raise
        _report_error(e)
        sys.exit(e.exit_code)
    except click.exceptions.Abort as e:
        if isinstance(e.__cause__, EOFError):  # click turns EOFError into Abort too: that is a bug, not Ctrl-C
            if debug:
                raise e.__cause__ from None
            click.echo(f"gtool: internal error: EOFError: {e.__cause__} (set GTOOL_DEBUG=1 for the traceback; "
                       "please report it)", err=True)
            sys.exit(EXIT_FAILED)
        click.echo("Aborted.", err=True)
        sys.exit(130)  # click turns Ctrl-C into Abort: exit as an interrupted program does
    except click.ClickException as e:
        if common.STATE.get("format") == "json":
            from .report import dumps

            diag = UsageError("usage", e.format_message()).diagnostic.to_json()
            click.echo(dumps({"error": diag, "errors": [diag]}))
        e.show()
        sys.exit(EXIT_USAGE)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except RecursionError:
        click.echo("gtool: error: the input is nested too deeply to process", err=True)
        sys.exit(EXIT_FAILED)
    except MemoryError:
        click.echo("gtool: error: out of memory", err=True)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(EXIT_OK := 0)  # noqa: F841
    except Exception as e:  # a bug in gtool: one line, and how to see more
        if debug:
            raise
        click.echo(f"gtool: internal error: {type(e).__name__}: {e} (set GTOOL_DEBUG=1 for the traceback; "
                   "please report it)", err=True)
        sys.exit(EXIT_FAILED)
