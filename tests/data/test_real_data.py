"""Real data (../shared/data): reading, preprocessing and statistics against nibabel + scipy.

Skipped with the reason when the shared folder beside the repository is absent.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from segbalance.data.cache import preprocess_dataset
from segbalance.data.imbalance import imbalance_stats
from segbalance.data.layout import open_dataset
from segbalance.data.loader import PatchLoader
from segbalance.data.reader import read_case

from .conftest import shared_dataset
from .test_imbalance import assert_matches_reference, reference_stats

HIPPO_CASES = ["hippocampus_003", "hippocampus_004", "hippocampus_017"]


def test_hippocampus_layout_and_cases_match_nibabel() -> None:
    root = shared_dataset("hippocampus")
    layout = open_dataset(root)
    assert layout.layout == "msd" and len(layout.cases) == 220
    assert layout.classes == {0: "background", 1: "Anterior", 2: "Posterior"}
    assert layout.channels == {0: "MRI"}
    for name in HIPPO_CASES:
        raw = read_case(layout, layout.case(name))
        img = nib.load(str(root / "imagesTr" / f"{name}.nii.gz"))
        lab = nib.load(str(root / "labelsTr" / f"{name}.nii.gz"))
        assert np.array_equal(raw.image[0], img.get_fdata(dtype=np.float32))
        assert np.array_equal(raw.label, np.round(np.asanyarray(lab.dataobj)))
        assert raw.spacing == pytest.approx(img.header.get_zooms()[:3])
        assert set(np.unique(raw.label)) == {0, 1, 2}


def test_hippocampus_stats_on_a_few_cases_match_scipy() -> None:
    root = shared_dataset("hippocampus")
    stats = imbalance_stats(root, cases=HIPPO_CASES)
    assert_matches_reference(stats, reference_stats(root, HIPPO_CASES))
    assert stats["classes"] == {"1": "Anterior", "2": "Posterior"}


def test_hippocampus_dataset_level_numbers_match_the_data_readme() -> None:
    # /work/shared/data/README.md: mean fraction 2.731 % (anterior), 2.527 % (posterior)
    stats = imbalance_stats(shared_dataset("hippocampus"), read_images=False)
    assert stats["n_cases"] == 220
    assert 100 * stats["summary"]["1"]["mean_fraction"] == pytest.approx(2.731, abs=5e-4)
    assert 100 * stats["summary"]["2"]["mean_fraction"] == pytest.approx(2.527, abs=5e-4)
    assert stats["summary"]["1"]["lesions_under_10_voxels"] == 1
    assert stats["suggested"]["patch_size"] == [40, 56, 40]  # nnU-Net's plan for Task04


def test_hippocampus_preprocessing_and_loader() -> None:
    root = shared_dataset("hippocampus")
    data = preprocess_dataset(root, cases=HIPPO_CASES[:2])
    for name in HIPPO_CASES[:2]:
        case = data[name]
        img = nib.load(str(root / "imagesTr" / f"{name}.nii.gz")).get_fdata(dtype=np.float64)
        assert case.shape == img.shape  # already RAS: no reorientation
        assert np.allclose(case.image[0], (img - img.mean()) / img.std(), atol=1e-4)
    loader = PatchLoader(data, patch_size=(40, 56, 40), batch_size=2, with_weights=True)
    inputs, target, weight = loader.batch(0)
    assert inputs.shape == (2, 1, 40, 56, 40) and set(target.unique().tolist()) <= {0, 1, 2}
    assert float(weight.min()) >= 1.0


def test_ms_lesions_nnunet_layout_reorientation_and_stats() -> None:
    root = shared_dataset("ms_lesions")
    layout = open_dataset(root)
    assert layout.layout == "nnunet_v2"
    assert layout.channels == {0: "FLAIR", 1: "T1W", 2: "T2W"}
    assert layout.classes == {0: "background", 1: "lesion"}
    assert [c.name for c in layout.cases] == ["ms_007", "ms_019"]
    raw = read_case(layout, layout.case("ms_007"))
    for c in range(3):
        channel = nib.load(str(root / "imagesTr" / f"ms_007_{c:04d}.nii.gz")).get_fdata(
            dtype=np.float32
        )
        assert np.array_equal(raw.image[c], channel)
    label_img = nib.load(str(root / "labelsTr" / "ms_007.nii.gz"))
    assert nib.aff2axcodes(label_img.affine) == ("L", "A", "S")
    data = preprocess_dataset(root, cases=["ms_007"])
    canonical = nib.as_closest_canonical(label_img)
    assert np.array_equal(data["ms_007"].label, np.asanyarray(canonical.dataobj))
    assert np.array_equal(data["ms_007"].label, np.flip(np.asanyarray(label_img.dataobj), axis=0))
    assert data["ms_007"].image.shape == (3, 135, 168, 134)

    stats = imbalance_stats(root, read_images=False)  # images were checked above
    assert stats["layout"] == "nnunet_v2" and stats["n_cases"] == 2
    assert_matches_reference(stats, reference_stats(root))
    # README: 37 and 98 lesions, 1300 and 49769 lesion voxels
    assert [c["classes"]["1"]["lesions"] for c in stats["cases"]] == [37, 98]
    assert [c["classes"]["1"]["voxels"] for c in stats["cases"]] == [1300, 49769]
    assert stats["calf"]["degenerate"]["1"] is True
