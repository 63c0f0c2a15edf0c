"""Plain data of a report section (tables, figures, notes) and the number formatting.

Also the two views of the statistics every section shares: the methods ranked by mean
Dice and the seed-averaged per-case scores.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segbalance.experiments.stats import case_scores
from segbalance.report.inputs import CompareFolder


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class FigureBlock:
    png_base64: str
    alt: str
    caption: str


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    figures: list[FigureBlock] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unavailable: str | None = None


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell; None/NaN as an en dash."""
    if value is None:
        return "–"
    number = float(value)
    return "–" if not math.isfinite(number) else f"{number:.{digits}f}"


def fmt_p(value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    return "<0.0001" if float(value) < 1e-4 else f"{float(value):.4f}"


def fmt_ci(interval: Any, digits: int = 3) -> str:
    if not interval or None in interval:
        return "–"
    return f"[{fmt(interval[0], digits)}, {fmt(interval[1], digits)}]"


def fmt_seconds(value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    seconds = float(value)
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def ranked_methods(folder: CompareFolder) -> list[str]:
    """Cells of the Dice statistics, best mean first (missing means last)."""
    block = folder.dice_stats()
    methods = block.get("methods", {})
    higher = block.get("higher_is_better", True)

    def key(cell: str) -> tuple[int, float]:
        mean = methods[cell].get("mean")
        if mean is None or not math.isfinite(float(mean)):
            return (1, 0.0)
        return (0, -float(mean) if higher else float(mean))

    return sorted(methods, key=key)


def seed_averaged_scores(
    folder: CompareFolder, metric: str = "dice"
) -> dict[str, dict[str, float]]:
    """``{cell: {case: score}}``: class-averaged, then seed-averaged (METHODS §11 unit)."""
    out: dict[str, dict[str, float]] = {}
    for cell, by_seed in case_scores(folder.rows, metric).items():
        cases = sorted({c for scores in by_seed.values() for c in scores})
        table = np.array([[by_seed[s].get(c, math.nan) for s in by_seed] for c in cases])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN case -> NaN
            out[cell] = dict(zip(cases, np.nanmean(table, axis=1).tolist(), strict=True))
    return out


def sam_kind(folder: CompareFolder, cell: str) -> str:
    info = folder.cell_info.get(cell, {})
    sam = info.get("sam")
    if sam is None:
        sam = "sam" if "sam" in str(info.get("optimizer", "")).lower() else "none"
    return str(sam)
