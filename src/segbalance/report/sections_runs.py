"""Sections drawn from per-run files and the dataset analysis: curves, imbalance, landscape."""

from __future__ import annotations

import math
from typing import Any

from segbalance.report import figures
from segbalance.report.blocks import FigureBlock, Section, Table, fmt, sam_kind
from segbalance.report.inputs import CompareFolder, Unavailable, read_train_log


def curves_section(folder: CompareFolder) -> Section:
    curves, missing = [], []
    for run in folder.done_runs():
        try:
            log = read_train_log(run.path / "train_log.csv")
        except Unavailable:
            missing.append(run.label)
            continue
        steps, loss = log.get("step", []), log.get("loss", [])
        val = [
            (s, v) for s, v in zip(steps, log.get("val_dice", []), strict=False) if math.isfinite(v)
        ]
        if not steps or not loss:
            missing.append(run.label)
            continue
        curves.append(
            figures.Curve(
                run.cell, run.label, steps, loss, [s for s, _ in val], [v for _, v in val]
            )
        )
    if not curves:
        raise Unavailable("no run folder has a train_log.csv")
    png = figures.curves_figure(curves, {c: folder.color(c) for c in folder.cells})
    caption = "Training loss (left) and validation Dice (right) against the optimiser step; one line per run, one colour per cell."
    section = Section(
        "curves", "Training curves", figures=[FigureBlock(png, "training curves", caption)]
    )
    if missing:
        section.notes.append(f"no training log for: {', '.join(missing)}")
    return section


def imbalance_section(folder: CompareFolder) -> Section:
    data = folder.read_json(folder.root / "imbalance.json")
    cases = data.get("cases")
    if not isinstance(cases, list) or not cases:
        raise Unavailable("imbalance.json has no 'cases'")
    names = {str(k): str(v) for k, v in (data.get("classes") or {}).items()}
    fractions: dict[str, list[float]] = {}
    sizes: dict[str, list[float]] = {}
    for case in cases:
        for cls, entry in (case.get("classes") or {}).items():
            name = names.get(str(cls), str(cls))
            fractions.setdefault(name, []).append(float(entry.get("fraction", math.nan)))
            sizes.setdefault(name, []).extend(
                float(s) for s in entry.get("lesion_sizes_voxels", [])
            )
    png = figures.imbalance_figure(fractions, sizes)
    caption = (
        f"Left: foreground fraction per case ({len(cases)} cases; cases without foreground "
        f"are not on the log axis). Right: lesion sizes (26-connected components) in voxels."
    )
    section = Section(
        "imbalance",
        "Class imbalance of the dataset",
        figures=[FigureBlock(png, "imbalance histograms", caption)],
    )
    summary = data.get("summary") or {}
    branches = (data.get("calf") or {}).get("branch") or {}
    rows = []
    for cls, s in summary.items():
        branch = branches.get(cls, "–") if isinstance(branches, dict) else str(branches)
        rows.append(
            [
                names.get(str(cls), str(cls)),
                fmt(s.get("mean_fraction"), 5),
                fmt(s.get("median_fraction"), 5),
                fmt(s.get("skewness"), 2),
                fmt(s.get("excess_kurtosis"), 2),
                str(s.get("lesions_total", "–")),
                fmt(s.get("lesion_size_median_voxels"), 1),
                str(s.get("empty_cases", "–")),
                str(branch),
            ]
        )
    if rows:
        header = [
            "class",
            "mean fraction",
            "median fraction",
            "skewness",
            "excess kurtosis",
            "lesions",
            "median lesion (voxels)",
            "empty cases",
            "CALF branch",
        ]
        section.tables.append(Table("Per-class summary (segbalance analyze)", header, rows))
    return section


def landscape_section(folder: CompareFolder) -> Section:
    found = []
    for run in folder.done_runs():
        path = run.path / "landscape.json"
        if path.is_file():
            data = folder.read_json(path)
            if data.get("alphas") and data.get("loss_1d"):
                found.append((run, data))
    sharp = []
    for run in folder.done_runs():
        path = run.path / "sharpness.json"
        if path.is_file():
            sharp.append((run, folder.read_json(path)))
    if not found and not sharp:
        raise Unavailable("no run folder has a landscape.json or sharpness.json")
    if not found:
        section = Section("landscape", "Loss landscape")
        section.notes.append("no run folder has a landscape.json (compare landscape: false)")
        section.tables.append(_sharpness_table(folder, sharp))
        return section
    curves = [
        (
            f"{run.label} (sharpness {fmt(data.get('sharpness'), 4)})",
            folder.color(run.cell),
            data["alphas"],
            data["loss_1d"],
        )
        for run, data in found
    ]
    caption_1d = (
        "Loss along one filter-normalised random direction (Li et al., NeurIPS 2018), "
        "evaluated in eval mode on a fixed batch; 0 = trained weights."
    )
    section = Section(
        "landscape",
        "Loss landscape",
        figures=[
            FigureBlock(figures.landscape_1d_figure(curves), "1-D loss landscapes", caption_1d)
        ],
    )
    panels, chosen = [], []
    for kind, wanted in (("plain", False), ("SAM", True)):
        pick = next(
            (
                (run, data)
                for run, data in found
                if data.get("loss_2d") and (sam_kind(folder, run.cell) != "none") == wanted
            ),
            None,
        )
        if pick is None:
            section.notes.append(f"no 2-D landscape of a {kind} run")
            continue
        run, data = pick
        chosen.append(run.label)
        title = f"{kind}: {run.label}, sharpness {fmt(data.get('sharpness'), 4)}"
        panels.append((title, data["alphas"], data.get("betas", data["alphas"]), data["loss_2d"]))
    if panels:
        caption_2d = "Loss over two filter-normalised random directions: " + "; ".join(chosen) + "."
        section.figures.append(
            FigureBlock(figures.landscape_2d_figure(panels), "2-D loss landscapes", caption_2d)
        )
    section.tables.append(
        _sharpness_table(folder, found, "Measured sharpness L(w + ρ g/‖g‖) − L(w)", span=True)
    )
    if sharp:
        section.tables.append(_sharpness_table(folder, sharp))
    return section


def _sharpness_table(
    folder: CompareFolder,
    probes: list[tuple[Any, dict]],
    caption: str = "Sharpness of every run at its best weights (same fixed batch; own training loss)",
    *,
    span: bool = False,
) -> Table:
    """One row per run: cell, seed, SAM variant, sharpness, ρ (and the landscape's span)."""
    rows = [
        [
            run.cell,
            run.seed,
            sam_kind(folder, run.cell),
            fmt(data.get("sharpness"), 5),
            fmt(data.get("rho"), 3),
            *([fmt(data.get("span"), 2)] if span else []),
        ]
        for run, data in probes
    ]
    header = ["cell", "seed", "SAM", "sharpness", "ρ", *(["span"] if span else [])]
    return Table(caption, header, rows)
