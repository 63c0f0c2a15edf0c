"""Smoke test of benchmarks/train_quality.py on the phantom with a tiny budget.

The benchmark itself is not a test; this checks that one invocation runs both pipelines on
the same split and budget and that the numbers it writes are the ones in the run files.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "train_quality.py"


def _module():
    spec = importlib.util.spec_from_file_location("train_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_minutes_to_reach_reads_the_first_crossing() -> None:
    curve = [
        {"seconds": 30.0, "dice": 0.5},
        {"seconds": 90.0, "dice": 0.8},
        {"seconds": 120, "dice": 0.7},
    ]
    tq = _module()
    assert tq.minutes_to_reach(curve, 0.75) == pytest.approx(1.5)
    assert tq.minutes_to_reach(curve, 0.5) == pytest.approx(0.5)
    assert tq.minutes_to_reach(curve, 0.81) is None


@pytest.mark.slow
def test_benchmark_runs_both_pipelines_on_the_phantom(tmp_path: Path) -> None:
    out = tmp_path / "tq"
    minutes = 0.1
    cmd = [sys.executable, str(SCRIPT), "--config", "configs/phantom.yaml"]
    cmd += ["--minutes", str(minutes), "--out", str(out), "--threads", "1"]
    subprocess.run(cmd, check=True, cwd=ROOT, timeout=600)
    result = json.loads((out / "train_quality.json").read_text())
    assert (out / "train_quality.png").stat().st_size > 1000

    # same split on both sides: the reference validated on segbalance's validation cases
    splits = json.loads((out / "segbalance" / "splits.json").read_text())[0]  # fold 0
    assert sorted(result["reference"]["per_case"]) == sorted(splits["val"])
    assert result["n_val"] == len(splits["val"]) and result["n_train"] == len(splits["train"])

    # same budget: the segbalance run got budget.minutes, both stopped near it
    config = (out / "segbalance" / "config.yaml").read_text()
    assert f"minutes: {minutes}" in config and "threads: 1" in config
    assert result["threads"] == 1
    for side in ("reference", "segbalance"):
        r = result[side]
        assert r["steps"] > 0 and r["peak_rss_mb"] > 50
        assert r["train_seconds"] < minutes * 60 + 30
        assert r["steps_per_second"] == pytest.approx(r["steps"] / r["train_seconds"])
        lo, hi = r["final"]["mean"]["ci95"]
        assert lo <= r["final"]["mean"]["dice"] <= hi or math.isnan(lo)
        assert r["curve"] and all(0 <= p["dice"] <= 1 for p in r["curve"])

    # segbalance's final numbers are those of its per_case.csv (by hand)
    with open(out / "segbalance" / "per_case.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if float(r["ref_voxels"]) > 0]
    expected = float(np.mean([float(r["dice"]) for r in rows]))
    assert result["segbalance"]["final"]["mean"]["dice"] == pytest.approx(expected, abs=1e-9)
    tp = sum(float(r["lesion_tp"]) for r in rows)
    fn = sum(float(r["lesion_fn"]) for r in rows)
    assert result["segbalance"]["final"]["lesion"]["lesions_found"] == f"{tp:g}/{tp + fn:g}"
    # the reference's lesions: found + missed = the 26-connected components of the
    # validation labels, counted here with scipy
    ref_lesions = result["reference"]["lesions"]["1"]
    assert ref_lesions["cases"] == len(splits["val"])
    phantom = Path(json.loads((out / "segbalance" / "imbalance.json").read_text())["dataset"])
    present = sum(
        ndimage.label(
            np.asarray(nib.load(phantom / "labelsTr" / f"{case}.nii.gz").dataobj) == 1,
            structure=np.ones((3, 3, 3)),
        )[1]
        for case in splits["val"]
    )
    assert ref_lesions["tp"] + ref_lesions["fn"] == present == tp + fn
    gain = result["comparison"]["dice_gain"]
    ref_mean = result["reference"]["final"]["mean"]["dice"]
    assert gain == pytest.approx(expected - ref_mean, abs=1e-9)
    # paired per-case differences, by hand: their mean lies in the reported bootstrap CI
    diffs = [
        float(np.nanmean(result["segbalance"]["per_case"][c]))
        - float(np.nanmean(result["reference"]["per_case"][c]))
        for c in splits["val"]
    ]
    lo, hi = result["comparison"]["paired_diff_ci95"]
    assert lo - 1e-12 <= float(np.mean(diffs)) <= hi + 1e-12
    better, worse = result["comparison"]["cases_better_worse"]
    assert (better, worse) == (sum(d > 0 for d in diffs), sum(d < 0 for d in diffs))
