"""report.md: the report's tables and notes as Markdown, checked against the HTML page and
against hand computations from the fixture's arrays."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest

from segbalance.report.blocks import Section, Table
from segbalance.report.markdown import markdown_table, render_markdown

from ._fixture import CELLS
from ._html import parse_report
from .test_report import SECTION_IDS, hand_dice


def split_row(line: str) -> list[str]:
    """Cells of a Markdown table row, undoing the escapes (an independent small parser)."""
    assert line.startswith("| ") and line.endswith(" |"), line
    cells, current, chars = [], "", iter(line[2:-2])
    for char in chars:
        if char == "\\":
            current += next(chars)
        elif char == "|":
            cells.append(current.strip())
            current = ""
        else:
            current += char
    return [*cells, current.strip()]


def markdown_tables(text: str) -> dict[str, list[list[str]]]:
    """``{caption: [header, *rows]}`` of every table in a Markdown text."""
    lines, tables = text.splitlines(), {}
    for index, line in enumerate(lines):
        if re.fullmatch(r"\|(---\|)+", line):
            caption = lines[index - 3].strip("*")
            rows = [split_row(lines[index - 1])]
            for row in lines[index + 1 :]:
                if not row.startswith("|"):
                    break
                rows.append(split_row(row))
            tables[caption] = rows
    return tables


def test_markdown_table_by_hand() -> None:
    table = Table("Dice | HD95", ["method", "a|b"], [["x|y", "0.5"], ["back\\slash"]])
    assert markdown_table(table) == [
        "**Dice \\| HD95**",
        "",
        "| method | a\\|b |",
        "|---|---|",
        "| x\\|y | 0.5 |",
        "| back\\\\slash |  |",
    ]
    assert split_row("| x\\|y | 0.5 |") == ["x|y", "0.5"]


def test_a_row_longer_than_the_header_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"Expected at most 1 cells .* but got 2"):
        markdown_table(Table("t", ["only"], [["a", "b"]]))


def test_sections_notes_and_unavailable() -> None:
    sections = [
        Section("a", "First", intro="Why.", tables=[Table("T", ["h"], [["1"]])], notes=["n1"]),
        Section("b", "Second", unavailable="no data"),
    ]
    text = render_markdown("Title", ["meta one"], sections)
    assert text.splitlines() == [
        "# Title",
        "",
        "- meta one",
        "",
        "## First",
        "",
        "Why.",
        "",
        "**T**",
        "",
        "| h |",
        "|---|",
        "| 1 |",
        "",
        "Note: n1",
        "",
        "## Second",
        "",
        "*not available: no data*",
    ]


def test_report_md_has_the_html_tables_and_the_hand_numbers(built_report: Path) -> None:
    markdown = (built_report.parent / "report.md").read_text(encoding="utf-8")
    parsed = parse_report(built_report.read_text(encoding="utf-8"))
    titles = re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)
    assert len(titles) == len(SECTION_IDS)
    tables = markdown_tables(markdown)
    html_tables = [t for s in SECTION_IDS for t in parsed.sections[s].tables]
    assert len(tables) == len(html_tables)
    for html_table in html_tables:
        assert html_table in tables.values()
    # figures are named, not embedded
    assert "data:image" not in markdown
    assert markdown.count("in report.html):*") == 7
    header, *rows = next(t for c, t in tables.items() if c.startswith("Methods by mean Dice"))
    for cell in CELLS:
        row = next(r for r in rows if r[header.index("method")] == cell)
        values = list(hand_dice(cell).values())
        expected = f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
        assert row[header.index("Dice mean ± sd")] == expected


def test_paired_detection_table_by_hand(built_report: Path) -> None:
    """Lesion by lesion from the fixture's arrays: a lesion is found when the prediction
    overlaps its box; pairs are (case, seed, lesion); p from scipy's exact binomial test."""
    from scipy.stats import binomtest

    from ._fixture import LESION_CASES, SEEDS, lesion_boxes, prediction

    kinds = {"both": 0, "method only": 0, "baseline only": 0, "neither": 0}
    for index, _ in enumerate(LESION_CASES):
        for seed in SEEDS:
            base, sam = prediction("dice_adamw", seed, index), prediction("dice_sam", seed, index)
            for box in lesion_boxes(index):
                b, m = bool(base[box].any()), bool(sam[box].any())
                kind = (
                    "both"
                    if b and m
                    else "method only"
                    if m
                    else "baseline only"
                    if b
                    else "neither"
                )
                kinds[kind] += 1
    discordant = kinds["method only"] + kinds["baseline only"]
    p = binomtest(kinds["baseline only"], discordant, 0.5).pvalue
    markdown = (built_report.parent / "report.md").read_text(encoding="utf-8")
    header, *rows = next(
        t for c, t in markdown_tables(markdown).items() if c.startswith("Lesion by lesion")
    )
    assert [r[0] for r in rows] == ["dice_sam"]
    row = dict(zip(header, rows[0], strict=True))
    assert {k: int(row[k]) for k in kinds} == kinds == {
        "both": 15, "method only": 11, "baseline only": 0, "neither": 0
    }  # fmt: skip
    assert row["p"] == row["p (Holm)"] == f"{p:.4f}" == "0.0010"
    # one 2x2x2 false positive in each of the 6 cases (5 lesion cases + the empty one), 2 seeds
    assert row["FP"] == "12"
