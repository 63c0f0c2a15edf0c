"""imbalance_stats equals a plain nibabel + numpy/scipy computation; the JSON schema holds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy import stats as sps

from segbalance.data.imbalance import imbalance_stats

FULL = np.ones((3, 3, 3), dtype=bool)


def reference_stats(root: Path, names: list[str] | None = None) -> dict:
    """Independent computation: nibabel + scipy.ndimage.label (26-conn) + scipy.stats."""
    meta = json.loads((root / "dataset.json").read_text())
    if "training" in meta:
        labels = {int(k): v for k, v in meta["labels"].items()}
        files = {
            Path(e["label"]).name.replace(".nii.gz", ""): root / e["label"]
            for e in meta["training"]
        }
    else:
        labels = {int(v): k for k, v in meta["labels"].items()}
        files = {
            f.name.replace(".nii.gz", ""): f for f in sorted((root / "labelsTr").glob("*.nii.gz"))
        }
    names = names or sorted(files)
    fg = [c for c in labels if c != 0]
    out: dict = {"cases": {}, "counts": dict.fromkeys(labels, 0), "total": 0}
    for name in names:
        img = nib.load(str(files[name]))
        lab = np.round(np.asanyarray(img.dataobj)).astype(np.int64)
        zooms = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
        entry = {"shape": list(lab.shape), "spacing": zooms.tolist(), "classes": {}}
        for c in labels:
            out["counts"][c] += int((lab == c).sum())
        out["total"] += lab.size
        for c in fg:
            comps, n = ndimage.label(lab == c, structure=FULL)
            sizes = sorted(np.bincount(comps.ravel())[1:].tolist(), reverse=True)
            entry["classes"][c] = {
                "fraction": float((lab == c).mean()),
                "lesions": n,
                "sizes": sizes,
                "mm3": [s * float(np.prod(zooms)) for s in sizes],
            }
        out["cases"][name] = entry
    out["fg"] = fg
    return out


def assert_matches_reference(stats: dict, ref: dict) -> None:
    assert stats["n_cases"] == len(ref["cases"])
    for entry in stats["cases"]:
        expected = ref["cases"][entry["case"]]
        assert entry["shape"] == expected["shape"]
        assert entry["spacing"] == pytest.approx(expected["spacing"], abs=1e-6)
        for c in ref["fg"]:
            got, want = entry["classes"][str(c)], expected["classes"][c]
            assert got["fraction"] == pytest.approx(want["fraction"], rel=1e-12, abs=0)
            assert got["lesions"] == want["lesions"]
            assert got["lesion_sizes_voxels"] == want["sizes"]
            assert got["lesion_sizes_mm3"] == pytest.approx(want["mm3"], rel=1e-6)
    for c in ref["fg"]:
        fractions = [ref["cases"][e["case"]]["classes"][c]["fraction"] for e in stats["cases"]]
        summary = stats["summary"][str(c)]
        assert summary["mean_fraction"] == pytest.approx(np.mean(fractions), rel=1e-12)
        if len(set(fractions)) > 1:
            assert summary["skewness"] == pytest.approx(sps.skew(fractions), rel=1e-9)
            assert summary["excess_kurtosis"] == pytest.approx(
                sps.kurtosis(fractions), rel=1e-9, abs=1e-12
            )
        assert stats["calf"]["fractions"][str(c)] == pytest.approx(fractions, rel=1e-12)
    prior = {str(c): n / ref["total"] for c, n in ref["counts"].items()}
    assert stats["prior"] == pytest.approx(prior, rel=1e-12)
    assert math.isclose(sum(stats["prior"].values()), 1.0, abs_tol=1e-12)


def test_phantom_stats_match_scipy(phantom_dir: Path) -> None:
    stats = imbalance_stats(phantom_dir)
    assert_matches_reference(stats, reference_stats(phantom_dir))


def test_two_class_anisotropic_phantom_matches_scipy(phantom2_dir: Path) -> None:
    stats = imbalance_stats(phantom2_dir)
    assert_matches_reference(stats, reference_stats(phantom2_dir))
    assert stats["classes"] == {"1": "lesion_1", "2": "lesion_2"}
    voxel_mm3 = 0.8 * 1.0 * 1.5
    sizes = stats["cases"][0]["classes"]["1"]
    assert sizes["lesion_sizes_mm3"] == pytest.approx(
        [v * voxel_mm3 for v in sizes["lesion_sizes_voxels"]]
    )
    assert set(stats["calf"]["branch"]) == {"1", "2"}
    assert stats["calf"]["loss"]["options"]["branch"] == stats["calf"]["branch"]


def test_schema_keys_and_types(phantom_dir: Path) -> None:
    stats = json.loads(json.dumps(imbalance_stats(phantom_dir)))  # JSON-safe (no NaN objects)
    for key in (
        "dataset",
        "layout",
        "n_cases",
        "classes",
        "cases",
        "summary",
        "prior",
        "calf",
        "suggested",
    ):
        assert key in stats
    assert stats["layout"] == "msd"
    assert stats["dataset"] == str(phantom_dir.resolve())
    case = stats["cases"][0]
    assert set(case) >= {"case", "shape", "spacing", "classes"}
    entry = case["classes"]["1"]
    assert set(entry) >= {"fraction", "lesions", "lesion_sizes_voxels", "lesion_sizes_mm3"}
    assert 0.0 <= entry["fraction"] <= 1.0
    assert entry["lesion_sizes_voxels"] == sorted(entry["lesion_sizes_voxels"], reverse=True)
    assert set(stats["summary"]["1"]) >= {"mean_fraction", "skewness", "excess_kurtosis"}
    assert set(stats["calf"]) >= {"branch", "path"} and set(stats["calf"]["branch"]) == {"1"}
    assert set(stats["prior"]) == {"0", "1"}
    suggested = stats["suggested"]
    assert len(suggested["patch_size"]) == 3 and all(p % 8 == 0 for p in suggested["patch_size"])
    assert 0 < suggested["oversample_foreground"] <= 1


def test_suggestions_follow_the_documented_rule(phantom_dir: Path) -> None:
    stats = imbalance_stats(phantom_dir)
    # 40^3 cases: the median shape rounded up to multiples of 8 is 40^3 (fits the budget)
    assert stats["suggested"]["patch_size"] == [40, 40, 40]
    # 0.4 % foreground < 1 %: half of the patches on foreground
    assert stats["suggested"]["oversample_foreground"] == 0.5


def test_case_subset_and_unknown_case(phantom_dir: Path) -> None:
    names = ["phantom_001", "phantom_004"]
    stats = imbalance_stats(phantom_dir, cases=names)
    assert [c["case"] for c in stats["cases"]] == names
    assert_matches_reference(stats, reference_stats(phantom_dir, names))
    from segbalance.errors import InputError

    with pytest.raises(InputError, match="did you mean 'phantom_001'"):
        imbalance_stats(phantom_dir, cases=["phantom_01"])


def test_analysis_never_writes_into_the_dataset(phantom_dir: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in phantom_dir.rglob("*")}
    imbalance_stats(phantom_dir)
    after = {p: p.stat().st_mtime_ns for p in phantom_dir.rglob("*")}
    assert before == after
