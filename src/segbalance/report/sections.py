"""The seven report sections, each built from a :class:`CompareFolder` into plain data.

A builder raises :class:`Unavailable` (or a figure function ``ValueError`` on empty data)
when its inputs are missing; :func:`build_sections` turns that into a one-line
"not available: <why>" note, so one bad file never stops the report. This module holds
the sections drawn from the statistics and the predictions (ranking, dice, detection,
examples); :mod:`segbalance.report.sections_runs` the others.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

from segbalance.report import figures
from segbalance.report.blocks import (
    FigureBlock,
    Section,
    Table,
    fmt,
    fmt_ci,
    fmt_p,
    fmt_seconds,
    ranked_methods,
    sam_kind,
    seed_averaged_scores,
)
from segbalance.report.cases import (
    MAX_DETECTION_CASES,
    detection_from_counts,
    detection_from_predictions,
    example_slice,
)
from segbalance.report.inputs import CompareFolder, Unavailable
from segbalance.report.sections_runs import curves_section, imbalance_section, landscape_section


def ranking_section(folder: CompareFolder) -> Section:
    block = folder.dice_stats()
    methods = block["methods"]
    baseline = block.get("baseline", folder.baseline)
    tests = block.get("tests", [])
    rows = []
    for rank, cell in enumerate(ranked_methods(folder), start=1):
        m = methods[cell]
        info = folder.cell_info.get(cell, {})
        wtl = "–" if m.get("wins") is None else f"{m.get('wins')}/{m.get('ties')}/{m.get('losses')}"
        rows.append(
            [
                str(rank),
                cell,
                str(info.get("loss", "")),
                str(info.get("optimizer", "")),
                sam_kind(folder, cell),
                f"{fmt(m.get('mean'))} ± {fmt(m.get('sd'))}",
                fmt_ci(m.get("ci95")),
                "baseline" if cell == baseline else fmt_ci(m.get("diff_ci95")),
                fmt_p(m.get("p_value")),
                fmt_p(m.get("p_holm")),
                wtl,
                fmt(m.get("seed_sd")),
                fmt_seconds(m.get("train_seconds")),
                fmt(m.get("peak_rss_mb"), 0),
            ]
        )
    header = [
        "#",
        "method",
        "loss",
        "optimizer",
        "SAM",
        "Dice mean ± sd",
        "95% CI",
        "Δ vs baseline, 95% CI",
        "p",
        "p (Holm)",
        "W/T/L",
        "seed sd",
        "train time",
        "peak RSS (MB)",
    ]
    n_cases = max((int(m.get("n_cases") or 0) for m in methods.values()), default=0)
    boot = tests[0] if tests else {}
    intro = (
        f"Unit = case: Dice averaged over the foreground classes of a case, then over seeds "
        f"(cases with an empty reference are left out of Dice). Baseline: {baseline}. "
        f"p: two-sided Wilcoxon signed-rank test of the paired case scores against the "
        f"baseline; Holm-adjusted over the {len(tests)} comparison(s). CIs: percentile "
        f"bootstrap over cases (B = {boot.get('B', '–')}, seed {boot.get('rng_seed', '–')}). "
        f"W/T/L: cases where the method is better / tied / worse than the baseline. "
        f"seed sd: sd over seeds of the dataset-level mean."
    )
    section = Section("ranking", "Ranking", intro=intro)
    section.tables.append(Table(f"Methods by mean Dice ({n_cases} cases)", header, rows))
    if 0 < n_cases < 6:
        section.notes.append(
            f"Only {n_cases} cases: the smallest possible two-sided exact Wilcoxon p is "
            f"above 0.05 below 6 cases, so no difference can be called significant."
        )
    other = {k: v for k, v in folder.by_metric().items() if k != "dice"}
    if other:
        metric_rows = [
            [cell]
            + [
                f"{fmt(v['methods'].get(cell, {}).get('mean'))} "
                f"(p Holm {fmt_p(v['methods'].get(cell, {}).get('p_holm'))})"
                for v in other.values()
            ]
            for cell in ranked_methods(folder)
        ]
        section.tables.append(
            Table(
                "Other metrics: mean over cases (Holm-adjusted p)", ["method", *other], metric_rows
            )
        )
    failed = [r for r in folder.runs if r.status != "done"]
    if failed:
        section.tables.append(
            Table(
                "Runs that did not finish (left out of every statistic)",
                ["cell", "seed", "status", "error"],
                [[r.cell, r.seed, r.status, r.error or ""] for r in failed],
            )
        )
    return section


def dice_section(folder: CompareFolder) -> Section:
    block = folder.dice_stats()
    order = ranked_methods(folder)
    scores = seed_averaged_scores(folder, "dice")
    png = figures.score_figure(
        order,
        [block["methods"][c].get("mean") for c in order],
        [block["methods"][c].get("ci95") for c in order],
        {c: list(scores.get(c, {}).values()) for c in order},
        {c: folder.color(c) for c in order},
    )
    caption = (
        "Bars: mean Dice over cases with its 95 % bootstrap CI; dots: one per case "
        "(mean over seeds of the class-averaged Dice)."
    )
    return Section(
        "dice", "Dice per method", figures=[FigureBlock(png, "Dice per method", caption)]
    )


def _detection_from_counts(folder: CompareFolder, section: Section, why: Unavailable) -> Section:
    # Fallback without predictions: overall rates from results.csv, no size bins.
    try:
        counts = detection_from_counts(folder.rows)
    except Unavailable as why_counts:
        raise Unavailable(f"{why}; {why_counts}") from None
    cells = [c for c in folder.cells if c in counts]
    png = figures.detection_figure(
        ["all sizes"],
        {c: [counts[c]["rate"]] for c in cells},
        {c: folder.color(c) for c in cells},
        xlabel="all reference lesions",
    )
    section.notes.append(f"size bins not available: {why}; overall rates from results.csv")
    caption = (
        "Fraction of reference lesions detected: lesion_tp / (lesion_tp + lesion_fn) summed "
        "over cases, classes and seeds."
    )
    section.figures.append(FigureBlock(png, "lesion detection rate", caption))
    rows = [
        [c, *(str(int(counts[c][k])) for k in ("tp", "fn", "fp")), fmt(counts[c]["rate"])]
        for c in cells
    ]
    header = ["method", "TP", "FN", "FP", "rate"]
    section.tables.append(Table("Lesion counts from results.csv", header, rows))
    return section


def detection_section(folder: CompareFolder) -> Section:
    from segbalance.evaluate import detection_rate_by_size

    section = Section("detection", "Lesion detection by size")
    try:
        found = detection_from_predictions(folder)
    except Unavailable as why:
        return _detection_from_counts(folder, section, why)
    binned = {cell: detection_rate_by_size(lesions) for cell, lesions in found.lesions.items()}
    cells = [c for c in folder.cells if c in binned]
    bins = [b["bin"] for b in next(iter(binned.values()))]
    if not any(b["n_lesions"] for rows in binned.values() for b in rows):
        raise Unavailable(f"the references of the first {found.n_cases} cases have no lesion")
    png = figures.detection_figure(
        bins,
        {c: [b["detection_rate"] for b in binned[c]] for c in cells},
        {c: folder.color(c) for c in cells},
    )
    caption = (
        f"Fraction of reference lesions (26-connected components) overlapped by the "
        f"prediction, per size bin, from the saved predictions of the first {found.n_cases} "
        f"of {found.n_cases_total} cases (sorted by name; at most {MAX_DETECTION_CASES} "
        f"cases), all seeds and foreground classes pooled."
    )
    if found.skipped:
        caption += (
            f" {found.skipped} prediction file(s) unreadable or of the wrong shape were skipped."
        )
    if found.unreadable_cases:
        caption += f" Unreadable reference(s) left out: {', '.join(found.unreadable_cases)}."
    section.figures.append(FigureBlock(png, "lesion detection rate by size", caption))
    rows = [
        [c, str(found.n_predictions.get(c, 0))]
        + [f"{fmt(b['detection_rate'], 2)} ({b['n_detected']}/{b['n_lesions']})" for b in binned[c]]
        for c in cells
    ]
    section.tables.append(
        Table(
            "Detected / reference lesions per size bin (voxels)",
            ["method", "predictions", *bins],
            rows,
        )
    )
    paired = paired_detection_table(folder, found.lesions)
    if paired is not None:
        section.tables.append(paired)
    return section


def paired_detection_table(folder: CompareFolder, lesions: dict[str, list[dict]]) -> Table | None:
    """Each method against the baseline, lesion by lesion (same case, seed, class and
    reference component): found by both / method only / baseline only / neither, the exact
    McNemar p with Holm's adjustment, and the false-positive components from results.csv
    (detection alone rewards over-segmentation). None without a baseline's lesions."""
    from segbalance.experiments.significance import holm, mcnemar_exact

    baseline = folder.baseline
    if baseline not in lesions:
        return None
    try:
        false_positives = {c: v["fp"] for c, v in detection_from_counts(folder.rows).items()}
    except Unavailable:
        false_positives = {}
    counts = paired_detection_counts(lesions, baseline, folder.cells)
    pvalues = {c: mcnemar_exact(n[1], n[2]) for c, n in counts.items()}
    adjusted = dict(zip(pvalues, holm(list(pvalues.values())), strict=True))
    rows = [
        [
            cell,
            *(str(n) for n in counts[cell]),
            fmt_p(pvalues[cell]),
            fmt_p(adjusted[cell]),
            fmt(false_positives.get(cell), 0),
        ]
        for cell in counts
    ]
    header = ["method", "both", "method only", "baseline only", "neither", "p", "p (Holm)"]
    return Table(
        f"Lesion by lesion against the baseline ({baseline}; exact McNemar test of the "
        f"discordant lesions, Holm over {len(rows)} methods); FP: false-positive components "
        f"summed over results.csv (baseline: {fmt(false_positives.get(baseline), 0)})",
        [*header, "FP"],
        rows,
    )


# (baseline detected, method detected) for: both, method only, baseline only, neither
_PAIR_KINDS = ((True, True), (False, True), (True, False), (False, False))


def paired_detection_counts(
    lesions: dict[str, list[dict]], baseline: str, cells: Sequence[str]
) -> dict[str, list[int]]:
    """``{cell: [both, method only, baseline only, neither]}``: each cell's reference lesions
    paired with the baseline's by their ``key`` (case, seed, class, component)."""
    base = {lesion["key"]: bool(lesion["detected"]) for lesion in lesions[baseline]}
    counts = {}
    for cell in [c for c in cells if c in lesions and c != baseline]:
        pairs = [
            (base[lesion["key"]], bool(lesion["detected"]))
            for lesion in lesions[cell]
            if lesion["key"] in base
        ]
        counts[cell] = [sum(1 for pair in pairs if pair == want) for want in _PAIR_KINDS]
    return counts


def examples_section(folder: CompareFolder) -> Section:
    order = [
        c
        for c in ranked_methods(folder)
        if folder.dice_stats()["methods"][c].get("mean") is not None
    ]
    if not order:
        raise Unavailable("no method has a mean Dice")
    folder.dataset_path()  # no dataset: one reason for the section, not one per case
    best = order[0]
    scores = {
        c: s
        for c, s in seed_averaged_scores(folder, "dice").get(best, {}).items()
        if math.isfinite(s)
    }
    if not scores:
        raise Unavailable(f"{best} has no finite per-case Dice")
    ranked = sorted(scores, key=lambda c: (-scores[c], c))
    picks = [("best", ranked[0])] + ([("worst", ranked[-1])] if len(ranked) > 1 else [])
    panels, notes = [], []
    for kind, case in picks:
        try:
            ex = example_slice(folder, best, case)
        except Unavailable as why:
            notes.append(f"{kind} case: {why}")
            continue
        title = f"{kind}: {case} (Dice {fmt(scores[case])}), {ex.run.label}, slice {ex.z}"
        panels.append(figures.SlicePanel(title, ex.image, ex.reference, ex.prediction, ex.aspect))
        notes.append(f"{title}: {ex.note}")
    if not panels:
        raise Unavailable("; ".join(notes))
    caption = (
        f"Best method by mean Dice: {best}; its best and worst case (seed-averaged Dice). "
        f"Axial slice (third array axis) through the largest reference lesion; image in grey, "
        f"reference outline green (solid), prediction red (dashed). "
        + " ".join(n + "." for n in notes)
    )
    return Section(
        "examples",
        f"Examples: {best}",
        figures=[FigureBlock(figures.slices_figure(panels), "example slices", caption)],
    )


SECTIONS: tuple[tuple[str, str, Callable[[CompareFolder], Section]], ...] = (
    ("ranking", "Ranking", ranking_section),
    ("dice", "Dice per method", dice_section),
    ("detection", "Lesion detection by size", detection_section),
    ("curves", "Training curves", curves_section),
    ("imbalance", "Class imbalance of the dataset", imbalance_section),
    ("landscape", "Loss landscape", landscape_section),
    ("examples", "Examples", examples_section),
)


def build_sections(folder: CompareFolder) -> list[Section]:
    """Every section in report order; a failing one becomes a "not available" note."""
    built = []
    for section_id, title, builder in SECTIONS:
        try:
            built.append(builder(folder))
        except Unavailable as why:
            built.append(Section(section_id, title, unavailable=str(why)))
        except Exception as exc:  # one broken input must not cost the whole report
            warnings.warn(
                f"report section {section_id!r} failed: {exc!r}", RuntimeWarning, stacklevel=2
            )
            built.append(
                Section(
                    section_id, title, unavailable=f"failed to build ({type(exc).__name__}: {exc})"
                )
            )
    return built
