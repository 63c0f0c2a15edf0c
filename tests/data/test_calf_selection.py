"""CALF dataset-level selection (METHODS §7 table): every boundary, and through imbalance_stats."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from segbalance.data.imbalance import imbalance_stats
from segbalance.stats import calf_branch, calf_select

from ._builders import make_msd

# (S, K, branch) straight from the METHODS §7 table, with every boundary value on both sides
TABLE = [
    (-1.0 - 1e-9, 0.0, "fisher"),
    (-1.0, 5.0, "fisher"),  # S <= -1 includes -1
    (-1.0 + 1e-9, 0.0, "logit"),
    (-0.5, -3.0, "logit"),  # -1 < S <= -0.5 includes -0.5
    (-0.5 + 1e-9, 0.0, "arcsine"),
    (-1e-12, 0.0, "arcsine"),  # -0.5 < S < 0
    (0.0, -1.0, "bce_dice"),  # S = 0: otherwise
    (0.0, 1.0, "bce_dice"),
    (1e-12, -1e-12, "log10_bce"),  # 0 < S < 0.5 and K < 0
    (0.25, 0.0, "bce_dice"),  # 0 < S < 0.5 and K >= 0 (K = 0 boundary)
    (0.5 - 1e-9, -0.1, "log10_bce"),
    (0.5 - 1e-9, 0.1, "bce_dice"),
    (0.5, -5.0, "ln_bce"),  # 0.5 <= S < 1 includes 0.5, whatever K
    (0.5, 5.0, "ln_bce"),
    (1.0 - 1e-9, 0.0, "ln_bce"),
    (1.0, -2.0, "log10_bce"),  # S >= 1 includes 1
    (7.3, 60.0, "log10_bce"),
    (math.nan, 0.0, "bce_dice"),
    (0.3, math.nan, "bce_dice"),  # NaN K fails "K < 0"
]


@pytest.mark.parametrize(("s", "k", "branch"), TABLE)
def test_decision_table_boundaries(s: float, k: float, branch: str) -> None:
    chosen, path = calf_branch(s, k)
    assert chosen == branch
    assert path.endswith(branch)


def test_worked_example_uses_biased_statistics() -> None:
    fractions = [0.0005, 0.001, 0.0012, 0.002, 0.003, 0.004, 0.006, 0.02]
    out = calf_select(fractions)
    assert out["skewness"] == pytest.approx(1.9357, abs=1e-4)
    assert out["excess_kurtosis"] == pytest.approx(2.2634, abs=1e-4)
    assert out["skewness"] == pytest.approx(sps.skew(fractions), rel=1e-12)
    assert out["excess_kurtosis"] == pytest.approx(sps.kurtosis(fractions), rel=1e-12)
    assert out["branch"] == "log10_bce"


@pytest.mark.parametrize("fractions", [[0.01, 0.02], [0.01, 0.01, 0.01, 0.01], [0.5]])
def test_degenerate_statistic_falls_back_to_bce_dice(fractions: list[float]) -> None:
    with pytest.warns(UserWarning, match="degenerate"):
        out = calf_select(fractions)
    assert out["branch"] == "bce_dice"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert calf_select(fractions, warn=False)["branch"] == "bce_dice"


def test_fractions_outside_unit_interval_are_refused() -> None:
    with pytest.raises(ValueError, match="fractions"):
        calf_select([0.1, 1.5, 0.2])


def _dataset_with_voxel_counts(root: Path, counts: list[int], shape=(20, 20, 25)) -> Path:
    cases = {}
    rng = np.random.default_rng(0)
    for i, n in enumerate(counts):
        label = np.zeros(int(np.prod(shape)), dtype=np.uint8)
        label[rng.choice(label.size, n, replace=False)] = 1
        cases[f"c{i}"] = (rng.normal(size=shape).astype(np.float32), label.reshape(shape))
    return make_msd(root, cases)


def test_imbalance_stats_exposes_the_worked_example(tmp_path: Path) -> None:
    # 10,000 voxels per case: the METHODS §7 fractions are whole voxel counts
    root = _dataset_with_voxel_counts(tmp_path / "ds", [5, 10, 12, 20, 30, 40, 60, 200])
    stats = imbalance_stats(root)
    calf = stats["calf"]
    assert calf["branch"] == {"1": "log10_bce"}
    assert calf["skewness"]["1"] == pytest.approx(1.9357, abs=1e-4)
    assert calf["excess_kurtosis"]["1"] == pytest.approx(2.2634, abs=1e-4)
    assert "S=1.9357 >= 1" in calf["path"]["1"]
    assert calf["fractions"]["1"] == pytest.approx(
        [0.0005, 0.001, 0.0012, 0.002, 0.003, 0.004, 0.006, 0.02]
    )
    assert calf["loss"] == {"name": "calf", "options": {"branch": "log10_bce"}}
    assert stats["summary"]["1"]["skewness"] == pytest.approx(1.9357, abs=1e-4)


def test_negative_skew_dataset_selects_fisher(tmp_path: Path) -> None:
    # many large fractions and one tiny one: strongly left-skewed
    counts = [400, 400, 400, 400, 400, 400, 400, 5]
    root = _dataset_with_voxel_counts(tmp_path / "ds", counts)
    stats = imbalance_stats(root)
    expected = sps.skew(np.array(counts) / 10_000)
    assert expected <= -1
    assert stats["calf"]["branch"]["1"] == "fisher"


def test_two_cases_are_degenerate_without_warning_noise(tmp_path: Path) -> None:
    root = _dataset_with_voxel_counts(tmp_path / "ds", [5, 50])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = imbalance_stats(root)
    assert stats["calf"]["branch"]["1"] == "bce_dice"
    assert stats["calf"]["degenerate"]["1"] is True
