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


@app.command()
def analyze(
    dataset: str = typer.Argument(..., help="Dataset folder (MSD or nnU-Net v2 raw layout)."),
    json_out: bool = typer.Option(
        False, "--json", help="Print only the JSON statistics on stdout."
    ),
    plot: str = typer.Option(
        None, "--plot", help="Write histograms (fraction, lesion size) to this PNG."
    ),
    check: bool = typer.Option(
        False, "--check", help="Report every problem of the dataset, not just the first."
    ),
    cases: bool = typer.Option(False, "--cases", help="Also print one table row per case."),
) -> None:
    """Imbalance statistics, CALF recommendation, prior and suggested patch sampling."""
    import json

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from segbalance.data.imbalance import check_dataset, imbalance_stats

    err = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    # no bar when stderr is not a terminal: it holds only the error lines then
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("reading cases", total=None)

        def advance(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=f"reading {name}")

        if check:
            problems = check_dataset(dataset, progress=advance)
            if problems:
                bar.stop()
                for problem in problems:
                    print(f"error: {problem.line()}", file=sys.stderr)
                # SystemExit, not typer.Exit: main() runs typer with standalone_mode=False,
                # where typer.Exit's code is returned rather than raised
                sys.exit(2)
            bar.update(task, completed=0, total=None, description="statistics")
        stats = imbalance_stats(dataset, progress=advance)
    if plot:
        from segbalance.data.analysis_view import plot_stats

        plot_stats(stats, plot)
    if json_out:
        print(json.dumps(stats, indent=1))
        return
    from segbalance.data.analysis_view import render_stats

    render_stats(stats, Console(), per_case=cases)
    if plot:
        Console().print(f"figure: {plot}")


@app.command()
def phantom(
    out_dir: str = typer.Argument(..., help="Folder to write the MSD-layout phantom into."),
    seed: int = typer.Option(0, "--seed", help="Case i depends only on (seed, i)."),
    n_cases: int = typer.Option(8, "--cases", min=1, help="Number of cases."),
    shape: str = typer.Option("64,64,64", "--shape", help="Volume shape, e.g. 64,64,64."),
    fg_fraction: float = typer.Option(
        0.002, "--fg-fraction", help="Mean foreground fraction per case."
    ),
    n_classes: int = typer.Option(1, "--classes", min=1, help="Number of foreground classes."),
) -> None:
    """Write the synthetic phantom dataset (byte-identical for the same arguments)."""
    from segbalance.errors import InputError

    try:
        sizes = tuple(int(v) for v in shape.split(","))
    except ValueError:
        raise InputError(
            "--shape", f"cannot parse {shape!r}", "three integers like 64,64,64"
        ) from None
    if len(sizes) != 3 or min(sizes) < 8:
        raise InputError("--shape", f"got {shape!r}", "three sizes >= 8 like 64,64,64")
    if not 0.0 <= fg_fraction < 0.5:
        raise InputError("--fg-fraction", f"got {fg_fraction}", "a fraction in [0, 0.5)")
    if n_classes > 8:
        raise InputError("--classes", f"got {n_classes}", "1 to 8 foreground classes")
    from segbalance.data.phantom import write_phantom

    path = write_phantom(
        out_dir,
        n_cases=n_cases,
        shape=sizes,
        fg_fraction=fg_fraction,
        n_classes=n_classes,
        seed=seed,
    )
    print(path)


def main() -> None:
    """Entry point: one-line errors (exit 2 for bad input, 1 for failed runs)."""
    from segbalance.errors import InputError

    debug = "--debug" in sys.argv[1:]
    try:
        # with standalone_mode=False click returns typer.Exit's code instead of raising
        code = app(standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
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
