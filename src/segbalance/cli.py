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


def _overrides(pairs: list[str] | None) -> dict:
    """``--set a.b=value`` pairs; values parsed as YAML scalars (``10``, ``true``, ``[1,2]``)."""
    import yaml

    from segbalance.errors import InputError

    out: dict = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError("--set", f"got {pair!r}", "KEY=VALUE like budget.steps=100")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError(
                "--set", f"cannot parse the value of {pair!r}", "a YAML scalar"
            ) from None
    return out


@app.command()
def train(
    config: str = typer.Argument(
        ..., help="Training config (YAML); see configs/ and docs/training.md."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from checkpoint_last.pt."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Only validate the config (exit 0 or 2); write nothing."
    ),
    set_: list[str] = typer.Option(
        None, "--set", help="Override a key, e.g. --set budget.steps=100 (repeatable)."
    ),
    output: str = typer.Option(None, "--output", help="Run folder (overrides 'output')."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train one run. Under torchrun (`torchrun --nproc_per_node=N -m segbalance train C`) DDP."""
    import os

    from segbalance.config import load_config

    overrides = _overrides(set_)
    if output is not None:
        overrides["output"] = output
    cfg = load_config(config, overrides)
    if dry_run:
        print(f"{config}: valid (run folder {cfg.output}, config hash {cfg.hash()})")
        return
    from segbalance.train import train as run_training

    result = run_training(cfg, resume=resume, progress=not quiet and sys.stderr.isatty())
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun rank 0 alone reports
    if result.stopped == "interrupted":
        # DESIGN's exit codes: an interrupted run is a run that did not finish (1)
        print(
            f"error: interrupted at step {result.step}; checkpoint_last.pt written; "
            f"continue with --resume ({result.run_dir})",
            file=sys.stderr,
        )
        sys.exit(1)
    best = "n/a" if result.best_step < 0 else f"{result.best_dice:.4f} at step {result.best_step}"
    print(
        f"done: {result.step} steps, {result.epoch} epochs in {result.seconds / 60:.1f} min "
        f"({result.stopped}); best validation Dice {best}; run folder {result.run_dir}"
    )


@app.command()
def evaluate(
    run_dir: str = typer.Argument(..., help="A run folder written by segbalance train."),
    data: str = typer.Option(
        None,
        "--data",
        help="Evaluate on every case of this dataset instead of the run's validation cases.",
    ),
    checkpoint: str = typer.Option(
        "checkpoint_best.pt", "--checkpoint", help="Checkpoint file inside RUN_DIR."
    ),
) -> None:
    """Sliding-window predictions (NIfTI, source grid) and per-case metrics of a run."""
    from pathlib import Path

    from segbalance.errors import InputError

    if not Path(run_dir).is_dir():
        raise InputError(run_dir, "no such run folder", "a folder written by segbalance train")
    from segbalance.evaluate.run import evaluate_run

    summary = evaluate_run(run_dir, dataset=data, checkpoint=checkpoint)
    out = Path(run_dir) / "eval" / summary["dataset"]
    for cls, means in summary["mean"].items():
        print(
            f"class {cls}: dice {means['dice']:.4f}  hd95 {means['hd95']:.2f} mm  "
            f"nsd {means['nsd']:.4f}  lesion F1 {means['lesion_f1']:.4f}"
        )
    print(f"{summary['n_cases']} cases; per_case.csv and summary.json in {out}")


@app.command()
def compare(
    config: str = typer.Argument(
        ..., help="Comparison config (YAML); see configs/poster_grid.yaml."
    ),
    jobs: int = typer.Option(None, "--jobs", min=1, help="Runs at a time (default: the config's)."),
    output: str = typer.Option(None, "--output", help="Compare folder (overrides 'output')."),
    set_: list[str] = typer.Option(
        None, "--set", help="Override a key, e.g. --set budget.minutes=2."
    ),
    no_report: bool = typer.Option(False, "--no-report", help="Skip report.html and report.md."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
) -> None:
    """Train cells (loss x optimiser) x seeds, then statistics and the HTML report.

    With ``sweep: {key, values}`` in the config: the whole grid once per value, then
    sweep.json, sweep.png and a sweep report (docs/compare.md).
    """
    from segbalance.config import load_compare_config

    overrides = _overrides(set_)
    if output is not None:
        overrides["output"] = output
    cfg = load_compare_config(config, overrides)
    _run_comparison(cfg, config, jobs=jobs, progress=not quiet, report=not no_report)


@app.command()
def demo(
    quick: bool = typer.Option(False, "--quick", help="A tiny grid in about 30 s (used by tests)."),
    output: str = typer.Option("demo_output/demo", "--output", help="Where the demo writes."),
    jobs: int = typer.Option(
        None, "--jobs", min=1, help="Runs at a time (default 2; 3 with --quick)."
    ),
) -> None:
    """The main job on the embedded default: phantom, a small comparison grid, report."""
    from segbalance.experiments.demo import demo_config

    cfg = demo_config(quick=quick, output=output)
    _run_comparison(cfg, "demo", jobs=jobs, progress=True, report=True)


def _run_comparison(cfg, where: str, *, jobs: int | None, progress: bool, report: bool) -> None:
    from pathlib import Path

    from segbalance.errors import TrainingError

    out = Path(cfg.output)
    if cfg.sweep is not None:
        from segbalance.experiments.sweep import SWEEP_FIGURE, SWEEP_JSON, run_sweep
        from segbalance.report import build_report

        def value_report(folder: Path) -> None:
            print(f"report: {build_report(folder)}")

        failed = run_sweep(
            cfg,
            where=where,
            jobs=jobs,
            progress=progress,
            after_each=value_report if report else None,
        )
        if report:
            print(f"sweep report: {build_report(out)}")
        print(f"sweep: {out / SWEEP_JSON}  figure: {out / SWEEP_FIGURE}")
        logs = f"{out}/<value>/logs"
    else:
        from segbalance.experiments.compare import run_compare

        failed = run_compare(cfg, where=where, jobs=jobs, progress=progress)["failed"]
        if report:
            from segbalance.report import build_report

            print(f"report: {build_report(out)}")
        print(f"results: {out / 'results.csv'}  statistics: {out / 'stats.json'}")
        logs = str(out / "logs")
    if failed:
        raise TrainingError(
            f"{len(failed)} run(s) failed: {', '.join(failed)} "
            f"(logs in {logs}); the others are in the tables"
        )


@app.command()
def report(
    directory: str = typer.Argument(
        ..., help="A compare folder (results.csv, stats.json) or a sweep folder (sweep.json)."
    ),
) -> None:
    """(Re)build DIRECTORY/report.html (self-contained, figures embedded) and report.md."""
    from segbalance.report import build_report

    print(build_report(directory))


def main() -> None:
    """Entry point: one-line errors (exit 2 for bad input, 1 for failed runs)."""
    from segbalance.errors import InputError, TrainingError

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
    except TrainingError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code if code is not None else 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        # click usage errors (typer vendors click in recent releases) carry their own exit code
        if callable(getattr(exc, "show", None)) and isinstance(
            getattr(exc, "exit_code", None), int
        ):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            print("error: aborted", file=sys.stderr)
            sys.exit(1)
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
