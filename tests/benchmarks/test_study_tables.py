"""benchmarks/study_tables.py against the report fixture, whose lesions are known by
construction (tests/report/_fixture.py): the table's numbers are recomputed by hand."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import statistics
from pathlib import Path

from tests.report._fixture import LESION_CASES, SEEDS, write_compare_folder, write_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "study_tables.py"


def _module():
    spec = importlib.util.spec_from_file_location("study_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(text: str, method: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| `{method}` |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_study_table_matches_a_hand_computation(tmp_path: Path) -> None:
    root = write_compare_folder(tmp_path / "cmp", write_dataset(tmp_path / "data"))
    for k, summary in enumerate(sorted(root.glob("runs/*/summary.json"))):
        data = json.loads(summary.read_text())
        summary.write_text(json.dumps({**data, "steps": 100 + 10 * k}))
    text = _module().table(root, lesions=True, small=100)

    rows = list(csv.DictReader((root / "results.csv").open()))
    for cell, found in [("dice_adamw", 9), ("dice_sam", 20)]:
        # case-level Dice: mean over seeds, cases with an empty reference left out
        per_case = [
            statistics.fmean(
                float(r["dice"]) for r in rows if r["cell"] == cell and r["case"] == case
            )
            for case in LESION_CASES
        ]
        cells = _row(text, cell)
        assert cells[1].startswith(f"{statistics.fmean(per_case):.3f} [")
        # small lesions (1 and 27 voxels) of 5 cases x 2 seeds: adamw misses every 1-voxel
        # lesion and, at seed 1, case_1's 27-voxel one; sam finds all
        assert cells[6] == f"{found / 20:.2f} ({found}/20)"
        seconds = statistics.fmean(30.0 + s for s in SEEDS)
        assert cells[-1] == f"{seconds:.0f}"
    assert _row(text, "dice_adamw")[2] == "baseline"
    assert _row(text, "dice_adamw")[-2] == "105"  # steps 100 and 110 (sorted run folders)
    assert "budget 8 steps per run" in text

    # the cached extras give the same table once the run folders are gone
    shutil.rmtree(root / "runs")
    assert _module().table(root, lesions=True, small=100) == text


def _two_folds(tmp_path: Path) -> list[Path]:
    dataset = write_dataset(tmp_path / "data")
    roots = [write_compare_folder(tmp_path / f"fold_{k}", dataset) for k in "ab"]
    for summary in [path for root in roots for path in root.glob("runs/*/summary.json")]:
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "steps": 100}))
    return roots


def test_folds_table_pools_lesions_over_the_folds(tmp_path: Path) -> None:
    # the same fixture as two folds: per fold 13 reference lesions x 2 seeds, of which
    # dice_adamw misses the 5 one-voxel ones per seed and case_1's 27-voxel one at seed 1
    roots = _two_folds(tmp_path)
    text = _module().folds_table(roots, small=100)

    rows = list(csv.DictReader((roots[0] / "results.csv").open()))
    dice = {
        cell: statistics.fmean(
            statistics.fmean(
                float(r["dice"]) for r in rows if r["cell"] == cell and r["case"] == case
            )
            for case in LESION_CASES
        )
        for cell in ("dice_adamw", "dice_sam")
    }
    sam, adamw = _row(text, "dice_sam"), _row(text, "dice_adamw")
    assert sam[1] == f"{dice['dice_sam']:.3f} / {dice['dice_sam']:.3f}"
    assert sam[3] == f"{dice['dice_sam'] - dice['dice_adamw']:+.3f}"
    assert sam[4] == ("2/2" if dice["dice_sam"] > dice["dice_adamw"] else "0/2")
    assert adamw[6] == "0.45 (18/40)" and sam[6] == "1.00 (40/40)"
    assert sam[7] == "22 / 0"  # 11 lesions per fold found by sam only, none by adamw only
    assert 2 * 0.5**22 < 1e-4 and sam[8] == "<0.0001"  # exact McNemar, one method
    fp = sum(float(r["lesion_fp"]) for r in rows if r["cell"] == "dice_sam")
    assert sam[9] == f"{2 * fp:.0f}"


def test_main_reads_each_folders_predictions_once(tmp_path: Path, monkeypatch, capsys) -> None:
    # the per-folder table and the folds table share one detection pass per folder
    roots = _two_folds(tmp_path)
    module = _module()
    calls: list[Path] = []
    detect = module.lesion_detection

    def counted(root: Path, small: float) -> dict:
        calls.append(root)
        return detect(root, small)

    monkeypatch.setattr(module, "lesion_detection", counted)
    monkeypatch.setattr("sys.argv", ["study_tables.py", *map(str, roots), "--folds"])
    module.main()
    assert sorted(calls) == sorted(roots)
    assert "2 folds (" in capsys.readouterr().out

    monkeypatch.setattr("sys.argv", ["study_tables.py", str(roots[0]), "--folds", "--no-lesions"])
    try:
        module.main()
    except SystemExit as stop:
        assert stop.code == 2
    else:
        raise AssertionError("--folds with --no-lesions was accepted")
    assert "drop --no-lesions" in capsys.readouterr().err
