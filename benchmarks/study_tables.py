"""The docs/RESULTS.md tables of a study (issue 8), from finished compare folders.

For each folder: one Markdown row per method with mean Dice and its 95 % case-bootstrap
CI, the difference to the baseline with its CI and Holm-adjusted Wilcoxon p (all from
``stats.json``), mean HD95 and lesion F1 (``stats.json``'s ``by_metric``), the
small-lesion detection rate (reference components under ``--small`` voxels overlapped by
the prediction, from the saved predictions: ``segbalance.report.cases``), mean training
steps (each run's ``summary.json``) and train time (``stats.json``). Detection counts and
steps are also written to ``<folder>/study_extras.json``, so a committed copy of the
folder (without its run folders and predictions) still gives the same table.

    python benchmarks/study_tables.py runs/study_hippocampus --no-lesions
    python benchmarks/study_tables.py runs/study_ms_lesions_a runs/study_ms_lesions_b --folds

``--folds`` adds one table over the folders taken as cross-validation folds (each
validates on other cases): Dice per fold, lesion counts pooled (:func:`folds_table`).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from segbalance.atomic import atomic_write_text
from segbalance.report.blocks import fmt, fmt_ci, fmt_p


def _signed_ci(interval: list[float]) -> str:
    # a difference's interval keeps its signs, unlike the report's fmt_ci
    return f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"


def lesion_detection(root: Path, small: float) -> dict[str, dict]:
    """From the saved predictions: ``detection`` = ``{cell: [detected, total]}`` over
    reference lesions of fewer than ``small`` voxels; ``paired`` = ``{cell: [both, method
    only, baseline only, neither]}`` over all reference lesions, against the baseline."""
    from segbalance.report.cases import detection_from_predictions
    from segbalance.report.inputs import load_compare_folder
    from segbalance.report.sections import paired_detection_counts

    folder = load_compare_folder(root)
    detection = detection_from_predictions(folder)
    counts = {}
    for cell, lesions in detection.lesions.items():
        smalls = [lesion for lesion in lesions if lesion["size_voxels"] < small]
        counts[cell] = [sum(bool(lesion["detected"]) for lesion in smalls), len(smalls)]
    paired = paired_detection_counts(detection.lesions, folder.baseline, folder.cells)
    return {"detection": counts, "paired": paired}


def mean_steps(root: Path, cell: str) -> float:
    """Mean optimiser steps over the cell's runs, from their ``summary.json``."""
    paths = sorted(root.glob(f"runs/{cell}-seed*/summary.json"))
    if not paths:
        raise SystemExit(f"{root}: no summary.json for cell {cell!r}")
    return statistics.fmean(json.loads(path.read_text())["steps"] for path in paths)


def _budget(budget: dict) -> str:
    return ", ".join(f"{value:g} {key}" for key, value in budget.items()) or "none"


def extras(root: Path, cells: list[str], lesions: bool, small: float) -> dict:
    """Detection counts and mean steps: computed while the run folders exist, else cached."""
    cache = root / "study_extras.json"
    if not (root / "runs").is_dir():
        return json.loads(cache.read_text())
    found = {"small_voxels": small, "steps": {cell: mean_steps(root, cell) for cell in cells}}
    if lesions:
        found.update(lesion_detection(root, small))
    atomic_write_text(cache, json.dumps(found, indent=1))
    return found


def folder_extras(root: Path, lesions: bool, small: float) -> dict:
    """:func:`extras` for every method of the folder's ``stats.json``."""
    methods = json.loads((root / "stats.json").read_text())["methods"]
    return extras(root, list(methods), lesions, small)


def table(root: Path, lesions: bool, small: float, found: dict | None = None) -> str:
    """The folder's table; ``found`` is its :func:`folder_extras` when already computed."""
    stats = json.loads((root / "stats.json").read_text())
    compare = json.loads((root / "compare.json").read_text())
    found = folder_extras(root, lesions, small) if found is None else found
    detection = found.get("detection", {})
    methods = stats["methods"]
    by_metric = stats["by_metric"]
    first = next(iter(methods.values()))
    head = (
        f"`{root}`: {first['n_cases']} validation cases x {first['n_seeds']} seed(s), "
        f"budget {_budget(compare.get('budget', {}))} per run; baseline `{stats['baseline']}`; "
        "p = Wilcoxon signed-rank on paired case scores, Holm over the methods.\n\n"
    )
    columns = ["method", "Dice [95% CI]", "Δ Dice [95% CI]", "p (Holm)", "HD95", "lesion F1"]
    if lesions:
        columns.append(f"lesions < {found['small_voxels']:g} vox found")
    columns += ["steps", "train s"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    order = sorted(methods, key=lambda m: -methods[m]["mean"])
    for name in order:
        m = methods[name]
        diff = (
            "baseline"
            if m["mean_diff"] is None
            else f"{m['mean_diff']:+.3f} {_signed_ci(m['diff_ci95'])}"
        )
        row = [f"`{name}`", f"{fmt(m['mean'])} {fmt_ci(m['ci95'])}", diff, fmt_p(m["p_holm"])]
        row.append(fmt(by_metric["hd95"]["methods"][name]["mean"], 2))
        row.append(fmt(by_metric["lesion_f1"]["methods"][name]["mean"]))
        if lesions:
            hits, total = detection.get(name, [0, 0])
            row.append(f"{hits / total:.2f} ({hits}/{total})" if total else "–")
        row += [f"{found['steps'][name]:.0f}", fmt(m["train_seconds"], 0)]
        lines.append("| " + " | ".join(row) + " |")
    return head + "\n".join(lines) + "\n"


def folds_table(roots: list[Path], small: float, found: dict[Path, dict] | None = None) -> str:
    """One table over cross-validation folds (each folder validates on other cases): Dice
    per fold and its mean, the mean difference to the baseline and in how many folds the
    method beat it, lesion F1 averaged over folds, and lesion counts pooled over the folds
    (small-lesion detection; method-only / baseline-only lesions with the exact McNemar p,
    Holm over the methods; false-positive components from ``results.csv``). ``found`` maps
    a folder to its :func:`folder_extras` (with lesions) when already computed."""
    import csv

    from segbalance.experiments.significance import holm, mcnemar_exact
    from segbalance.report.cases import detection_from_counts

    folds = []
    for root in roots:
        stats = json.loads((root / "stats.json").read_text())
        counts = folder_extras(root, True, small) if found is None else found[root]
        with (root / "results.csv").open(newline="") as handle:
            fp = {
                c: v["fp"] for c, v in detection_from_counts(list(csv.DictReader(handle))).items()
            }
        folds.append((stats, counts, fp))
    baseline = folds[0][0]["baseline"]
    methods = list(folds[0][0]["methods"])

    def pooled(key: str, name: str, width: int) -> list[int]:
        return [sum(f[1][key].get(name, [0] * width)[i] for f in folds) for i in range(width)]

    dice = {m: [f[0]["methods"][m]["mean"] for f in folds] for m in methods}
    paired = {m: pooled("paired", m, 4) for m in methods if m != baseline}
    pvalues = {m: mcnemar_exact(n[1], n[2]) for m, n in paired.items()}
    adjusted = dict(zip(pvalues, holm(list(pvalues.values())), strict=True))
    columns = ["method", "Dice per fold", "mean Dice", "Δ mean", "folds better", "lesion F1"]
    columns += [f"lesions < {small:g} vox found", "lesions: method / baseline only"]
    columns += ["McNemar p (Holm)", "FP components"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name in sorted(methods, key=lambda m: -statistics.fmean(dice[m])):
        mean = statistics.fmean(dice[name])
        gaps = [d - b for d, b in zip(dice[name], dice[baseline], strict=True)]
        hits, total = pooled("detection", name, 2)
        f1 = statistics.fmean(
            f[0]["by_metric"]["lesion_f1"]["methods"][name]["mean"] for f in folds
        )
        row = [f"`{name}`", " / ".join(fmt(d) for d in dice[name]), fmt(mean)]
        if name == baseline:
            row += ["baseline", "–"]
        else:
            row += [f"{statistics.fmean(gaps):+.3f}", f"{sum(g > 0 for g in gaps)}/{len(gaps)}"]
        row += [fmt(f1), f"{hits / total:.2f} ({hits}/{total})" if total else "–"]
        if name == baseline:
            row += ["–", "–"]
        else:
            row += [f"{paired[name][1]} / {paired[name][2]}", fmt_p(adjusted[name])]
        row.append(f"{sum(f[2].get(name, 0) for f in folds):.0f}")
        lines.append("| " + " | ".join(row) + " |")
    head = (
        f"{len(roots)} folds ({', '.join(f'`{r}`' for r in roots)}); baseline `{baseline}`; "
        "lesion counts pooled over the folds.\n\n"
    )
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="finished compare folders")
    parser.add_argument("--no-lesions", action="store_true", help="skip the detection column")
    parser.add_argument("--small", type=float, default=100.0, help="small lesion: < N voxels")
    parser.add_argument(
        "--folds", action="store_true", help="also one table over the folders as CV folds"
    )
    args = parser.parse_args()
    if args.folds and args.no_lesions:
        parser.error("--folds pools the lesion counts over the folds: drop --no-lesions")
    # Detection from the saved predictions is the slow part: once per folder, for both tables.
    found = {root: folder_extras(root, not args.no_lesions, args.small) for root in args.folders}
    for root in args.folders:
        print(table(root, not args.no_lesions, args.small, found[root]))
    if args.folds:
        print(folds_table(args.folders, args.small, found))


if __name__ == "__main__":
    main()
