"""The report's sections as GitHub-flavoured Markdown (``report.md``, next to ``report.html``).

Same sections, tables and notes as the HTML page, no figures (each one is named with its
caption and points to ``report.html``): text to paste into a paper, a README or a
results page, and to diff between two runs of a comparison.
"""

from __future__ import annotations

from segbalance.report.blocks import Section, Table

MARKDOWN_NAME = "report.md"


def _cell(text: str) -> str:
    # a "|" would end the cell and a newline the row: both come from names on disk
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def markdown_table(table: Table) -> list[str]:
    """One table as Markdown lines: its caption in bold, then header, rule and rows.

    Rows shorter than the header are padded with empty cells; a longer row is an error
    (a table builder bug, not something to hide).
    """
    width = len(table.header)
    lines = [f"**{_cell(table.caption)}**", ""]
    lines.append("| " + " | ".join(_cell(h) for h in table.header) + " |")
    lines.append("|" + "---|" * width)
    for row in table.rows:
        if len(row) > width:
            raise ValueError(
                f"Expected at most {width} cells in a row of table {table.caption!r} "
                f"but got {len(row)}"
            )
        cells = [_cell(c) for c in row] + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(title: str, meta: list[str], sections: list[Section]) -> str:
    """The Markdown text of a report page (no I/O): title, meta lines, every section."""
    blocks = [f"# {title}", "\n".join(f"- {line}" for line in meta)]
    for section in sections:
        blocks.append(f"## {section.title}")
        if section.unavailable:
            blocks.append(f"*not available: {section.unavailable}*")
            continue
        if section.intro:
            blocks.append(section.intro)
        blocks += [f"*Figure ({f.alt}, in report.html):* {f.caption}" for f in section.figures]
        blocks += ["\n".join(markdown_table(table)) for table in section.tables]
        blocks += [f"Note: {note}" for note in section.notes]
    return "\n\n".join(block for block in blocks if block) + "\n"
