"""Command-line interface (typer). Thin: parses, validates, calls the library.

Heavy modules (torch, monai) are imported inside the commands that need them so that
``segbalance --help`` and ``segbalance losses`` start fast.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="segbalance",
    help="Fine-tune 3D segmentation networks on tiny foregrounds and compare imbalance remedies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_STATE = {"debug": False}


@app.callback()
def _global(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """segbalance: which remedy for imbalance actually helps on your data?"""
    _STATE["debug"] = debug


@app.command()
def losses() -> None:
    """List every loss with its options and defaults."""
    from rich.console import Console
    from rich.table import Table

    from segbalance.losses.spec import COMMON_OPTIONS, loss_table

    table = Table(title="segbalance losses (combine with '+', weight with 'a*name')")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("what it is")
    table.add_column("options (defaults)")
    for row in loss_table():
        table.add_row(row["name"], row["summary"], row["options"])
    console = Console()
    console.print(table)
    common = ", ".join(f"{k}={v!r}" for k, v in COMMON_OPTIONS.items())
    console.print(f"Every loss also takes: {common}.")


def main() -> None:
    """Entry point: one-line errors (exit 2 for bad input, 1 for failed runs)."""
    from segbalance.errors import InputError

    debug = "--debug" in sys.argv[1:]
    try:
        app(standalone_mode=False)
    except InputError as exc:
        if debug:
            raise
        print(f"error: {exc.line()}", file=sys.stderr)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code if code is not None else 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            print("error: aborted", file=sys.stderr)
            sys.exit(1)
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
