"""``build_report(directory)``: the self-contained ``report.html`` of a compare folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jinja2

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
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


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
