"""``build_report(directory)``: the self-contained ``report.html`` of a compare folder
(and ``report.md``, its tables and notes as Markdown)."""

from __future__ import annotations

from pathlib import Path

import jinja2

from segbalance.atomic import atomic_write_texts
from segbalance.report.blocks import Section
from segbalance.report.inputs import CompareFolder, load_compare_folder
from segbalance.report.markdown import MARKDOWN_NAME, render_markdown
from segbalance.report.sections import build_sections
from segbalance.report.template import CSS, TEMPLATE

REPORT_NAME = "report.html"


def _environment() -> jinja2.Environment:
    # autoescape=True: cell names, case names and error texts come from files on disk
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def report_meta(folder: CompareFolder) -> list[str]:
    """The header lines of a comparison's report: dataset, grid, folder, budget."""
    cells = len(folder.cells)
    seeds = sorted({r.seed for r in folder.runs}) or sorted({row["seed"] for row in folder.rows})
    meta = [
        f"dataset: {folder.compare.get('dataset_name') or folder.compare.get('dataset') or '–'}",
        f"{cells} cell(s) x {len(seeds)} seed(s); baseline: {folder.baseline or '–'}",
        f"compare folder: {folder.root.name}",
    ]
    budget = folder.compare.get("budget")
    if isinstance(budget, dict) and budget:
        meta.append("budget per run: " + ", ".join(f"{k} {v}" for k, v in budget.items()))
    return meta


def render_report(folder: CompareFolder, sections: list[Section]) -> str:
    """The HTML text of the report (no I/O)."""
    return render_page(
        f"segbalance comparison: {folder.dataset_name}", report_meta(folder), sections
    )


def render_page(title: str, meta: list[str], sections: list[Section]) -> str:
    """One self-contained report page (comparison or sweep): header, sections, footer."""
    from segbalance import __version__

    return (
        _environment()
        .from_string(TEMPLATE)
        .render(
            title=title,
            css=CSS,
            meta=meta,
            sections=sections,
            footer=f"Built by segbalance {__version__} (segbalance report). Self-contained: "
            "figures are embedded, nothing is loaded from the network.",
        )
    )


def write_pages(root: Path, title: str, meta: list[str], sections: list[Section]) -> Path:
    """Write ``root/report.html`` and its Markdown twin ``root/report.md``; the HTML path.

    Both are rendered, then written as one (``atomic_write_texts``): a failing render or
    a failed write of either (ENOSPC) leaves both old files.
    """
    html, markdown = render_page(title, meta, sections), render_markdown(title, meta, sections)
    out = root / REPORT_NAME
    atomic_write_texts({out: html, root / MARKDOWN_NAME: markdown})
    return out


def build_report(directory: str | Path) -> Path:
    """Build ``directory/report.html`` (and ``report.md``, the same tables and notes as
    Markdown) from a compare folder and return the HTML path.

    Sections (HTML ids): ``ranking``, ``dice``, ``detection``, ``curves``, ``imbalance``,
    ``landscape``, ``examples``; one whose inputs are missing shows "not available: <why>".

    Raises:
        InputError: ``directory`` is not a compare folder (``results.csv`` or
            ``stats.json`` missing or invalid).
    """
    if (Path(directory) / "sweep.json").is_file():
        return build_sweep_report(directory)
    folder = load_compare_folder(directory)
    title = f"segbalance comparison: {folder.dataset_name}"
    return write_pages(folder.root, title, report_meta(folder), build_sections(folder))


def build_sweep_report(directory: str | Path) -> Path:
    """``directory/report.html`` of a sweep folder (``sweep.json``): the score-vs-value
    figure, a table of every method at every value with its 95 % CI and difference to the
    baseline, and links to each value's own report."""
    import base64
    import json

    from segbalance.errors import InputError
    from segbalance.experiments.sweep import SWEEP_FIGURE
    from segbalance.report.blocks import FigureBlock, Table, fmt, fmt_ci, fmt_p

    root = Path(directory)
    try:
        summary = json.loads((root / "sweep.json").read_text())
        values, methods = summary["values"], summary["methods"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(
            str(root / "sweep.json"),
            f"unreadable sweep summary ({exc})",
            "sweep.json as segbalance compare writes it",
        ) from None
    figure = root / SWEEP_FIGURE
    figures = []
    if figure.is_file():
        figures.append(
            FigureBlock(
                base64.b64encode(figure.read_bytes()).decode("ascii"),
                f"{summary['metric']} against {summary['key']}",
                f"Mean {summary['metric']} of each method (classes averaged per case, then seeds) "
                f"with its case-bootstrap 95 % CI, at every value of {summary['key']}; "
                f"black: the baseline ({summary['baseline']}).",
            )
        )
    header = ["method", *[f"{summary['key']} = {v}" for v in values]]
    rows = []
    for cell, points in methods.items():
        row = [cell]
        for p in points:
            diff = (
                ""
                if p["mean_diff"] is None
                else f"; Δ {p['mean_diff']:+.3f}, p_Holm {fmt_p(p['p_holm'])}"
            )
            row.append(f"{fmt(p['mean'])} {fmt_ci(p['ci95'])}{diff}")
        rows.append(row)
    links = [f"{v}: {name}/report.html" for v, name in zip(values, summary["folders"], strict=True)]
    section = Section(
        "sweep",
        f"{summary['metric']} against {summary['key']}",
        intro="The same comparison repeated at every value; each value's folder has its full "
        "report (ranking, statistics, curves, landscapes, examples).",
        figures=figures,
        tables=[
            Table(f"mean {summary['metric']} [95 % CI]; Δ vs {summary['baseline']}", header, rows)
        ],
        notes=["Per-value reports: " + "; ".join(links)] if methods else [],
    )
    meta = [f"sweep folder: {root.name}", f"values: {values}", f"baseline: {summary['baseline']}"]
    return write_pages(root, f"segbalance sweep: {summary['key']}", meta, [section])
