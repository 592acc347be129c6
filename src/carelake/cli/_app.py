"""The Typer application, its global options and its single error handler."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from carelake._version import __version__
from carelake.cli._console import err
from carelake.errors import CarelakeError

app = typer.Typer(
    name="carelake",
    help="Big data for health and social care: FHIR and more into a de-identified, analysis-ready lake.\n\n"
    "Example:  carelake ingest fhir export/ --json",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class State:
    """Options given before the command, shared with every command."""

    lake: Path = Path(os.environ.get("CARELAKE_LAKE", "carelake-lake"))
    verbose: bool = False


state = State()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"carelake {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    lake: Annotated[Path, typer.Option("--lake", envvar="CARELAKE_LAKE", help="The lake folder.")] = Path(
        "carelake-lake"
    ),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    state.lake = lake
    state.verbose = verbose


def _register_commands() -> None:
    # Importing the command modules registers them; heavy libraries load inside the commands.
    from carelake.cli import (  # noqa: F401
        _cohort,
        _deid,
        _demo,
        _export,
        _features,
        _ingest,
        _lake,
        _match,
        _model,
        _quality,
        _synth,
        _view,
        _web,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command; handled errors print one line of cause and hint and exit 1."""
    _register_commands()
    try:
        # Typer handles --help, usage errors (exit 2) and Exit itself; our errors come through here.
        app(args=argv, prog_name="carelake")
    except CarelakeError as exc:
        _report(exc, exc.message, exc.hint)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted; nothing was committed by the interrupted job")
        sys.exit(130)
    except Exception as exc:
        _report(
            exc,
            f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            "rerun with --verbose and report the traceback",
        )
        sys.exit(1)


def _report(exc: BaseException, message: str, hint: str | None) -> None:
    if state.verbose:
        traceback.print_exception(exc, file=sys.stderr)
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if hint:
        err.print(f"[yellow]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)
