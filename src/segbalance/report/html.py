"""``build_report(directory)``: the self-contained ``report.html`` of a compare folder."""

from __future__ import annotations

import os  # noqa: F401  (tests patch html.os.replace: the os module segbalance.atomic uses)
from pathlib import Path

import jinja2

from segbalance.atomic import atomic_write_text
from segbalance.report.blocks import Section
from segbalance.report.inputs import CompareFolder, load_compare_folder
from segbalance.report.sections import build_sections
from segbalance.report.template import CSS, TEMPLATE

REPORT_NAME = "report.html"


def _environment() -> jinja2.Environment:
    # autoescape=True: cell names, case names and error texts come from files on disk
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def render_report(folder: CompareFolder, sections: list[Section]) -> str:
    """The HTML text of the report (no I/O)."""
    from segbalance import __version__

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
    template = _environment().from_string(TEMPLATE)
    return template.render(
        title=f"segbalance comparison: {folder.dataset_name}",
        css=CSS,
        meta=meta,
        sections=sections,
        footer=f"Built by segbalance {__version__} (segbalance report). Self-contained: "
        f"figures are embedded, nothing is loaded from the network.",
    )


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file, fsync, rename; see ``segbalance.atomic``).

    One implementation for every file: a failed write (ENOSPC) names ``path`` in its error.
    """
    atomic_write_text(path, text)


def build_report(directory: str | Path) -> Path:
    """Build ``directory/report.html`` from a compare folder and return its path.

    Sections (HTML ids): ``ranking``, ``dice``, ``detection``, ``curves``, ``imbalance``,
    ``landscape``, ``examples``; one whose inputs are missing shows "not available: <why>".

    Raises:
        InputError: ``directory`` is not a compare folder (``results.csv`` or
            ``stats.json`` missing or invalid).
    """
    folder = load_compare_folder(directory)
    html = render_report(folder, build_sections(folder))
    out = folder.root / REPORT_NAME
    write_text_atomic(out, html)
    return out
