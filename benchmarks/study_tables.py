"""The docs/RESULTS.md tables of a study (issue 8), from finished compare folders.

For each folder: one Markdown row per method with mean Dice and its 95 % case-bootstrap
CI, the difference to the baseline with its CI and Holm-adjusted Wilcoxon p (all from
``stats.json``), mean HD95 and lesion F1 (``stats.json``'s ``by_metric``), the
small-lesion detection rate (reference components under ``--small`` voxels overlapped by
the prediction, from the saved predictions: ``segbalance.report.cases``), mean training
steps and train time (each run's ``summary.json``). Detection counts and costs are also
written to ``<folder>/study_extras.json``, so a committed copy of the folder (without its
run folders and predictions) still gives the same table.

    python benchmarks/study_tables.py runs/study_hippocampus --no-lesions
    python benchmarks/study_tables.py runs/study_ms_lesions_a runs/study_ms_lesions_b
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from segbalance.atomic import atomic_write_text


def small_lesion_detection(root: Path, small: float) -> dict[str, list[int]]:
    """``{cell: [detected, total]}`` over reference lesions of fewer than ``small`` voxels."""
    from segbalance.report.cases import detection_from_predictions
    from segbalance.report.inputs import load_compare_folder

    detection = detection_from_predictions(load_compare_folder(root))
    counts = {}
    for cell, lesions in detection.lesions.items():
        smalls = [lesion for lesion in lesions if lesion["size_voxels"] < small]
        counts[cell] = [sum(bool(lesion["detected"]) for lesion in smalls), len(smalls)]
    return counts


def run_costs(root: Path, cell: str) -> tuple[float, float]:
    """Mean (steps, train seconds) over the cell's runs, from their ``summary.json``."""
    summaries = [
        json.loads(path.read_text())
        for path in sorted(root.glob(f"runs/{cell}-seed*/summary.json"))
    ]
    if not summaries:
        raise SystemExit(f"{root}: no summary.json for cell {cell!r}")
    return (
        statistics.fmean(s["steps"] for s in summaries),
        statistics.fmean(s["train_seconds"] for s in summaries),
    )


def _budget(budget: dict) -> str:
    return ", ".join(f"{value:g} {key}" for key, value in budget.items()) or "none"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def extras(root: Path, cells: list[str], lesions: bool, small: float) -> dict:
    """Detection counts and run costs: computed while the run folders exist, else cached."""
    cache = root / "study_extras.json"
    if not (root / "runs").is_dir():
        return json.loads(cache.read_text())
    found = {"small_voxels": small, "costs": {cell: run_costs(root, cell) for cell in cells}}
    if lesions:
        found["detection"] = small_lesion_detection(root, small)
    atomic_write_text(cache, json.dumps(found, indent=1))
    return found


def table(root: Path, lesions: bool, small: float) -> str:
    stats = json.loads((root / "stats.json").read_text())
    compare = json.loads((root / "compare.json").read_text())
    found = extras(root, list(stats["methods"]), lesions, small)
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
        ci = f"{m['mean']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"
        diff = (
            "baseline"
            if m["mean_diff"] is None
            else f"{m['mean_diff']:+.3f} [{m['diff_ci95'][0]:+.3f}, {m['diff_ci95'][1]:+.3f}]"
        )
        steps, seconds = found["costs"][name]
        row = [f"`{name}`", ci, diff, _p(m["p_holm"])]
        row.append(_fmt(by_metric["hd95"]["methods"][name]["mean"], 2))
        row.append(_fmt(by_metric["lesion_f1"]["methods"][name]["mean"]))
        if lesions:
            hits, total = detection.get(name, [0, 0])
            row.append(f"{hits / total:.2f} ({hits}/{total})" if total else "–")
        row += [f"{steps:.0f}", f"{seconds:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="finished compare folders")
    parser.add_argument("--no-lesions", action="store_true", help="skip the detection column")
    parser.add_argument("--small", type=float, default=100.0, help="small lesion: < N voxels")
    args = parser.parse_args()
    for root in args.folders:
        print(table(root, not args.no_lesions, args.small))


if __name__ == "__main__":
    main()
