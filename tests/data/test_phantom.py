"""Phantom: byte-identical files, per-case seeding, lesion sizes and fractions."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from segbalance.data.phantom import phantom_case, phantom_dataset, write_phantom

FULL = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()
    }


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    a = write_phantom(tmp_path / "a", n_cases=3, shape=(24, 24, 24), seed=11)
    b = write_phantom(tmp_path / "deeper" / "b", n_cases=3, shape=(24, 24, 24), seed=11)
    files_a, files_b = _files(a), _files(b)
    assert sorted(files_a) == sorted(files_b) and len(files_a) == 7
    assert files_a == files_b
    for name, data in files_a.items():
        if name.endswith(".gz"):
            assert data[:2] == b"\x1f\x8b"
            assert data[3] == 0, "no FNAME/FEXTRA flags: the file name is not stored"
            assert data[4:8] == b"\x00\x00\x00\x00", "gzip mtime must be 0"
    assert str(tmp_path) not in files_a["dataset.json"].decode()


def test_case_depends_only_on_seed_and_index(tmp_path: Path) -> None:
    two = _files(write_phantom(tmp_path / "two", n_cases=2, shape=(20, 20, 20), seed=4))
    three = _files(write_phantom(tmp_path / "three", n_cases=3, shape=(20, 20, 20), seed=4))
    for name in ("imagesTr/phantom_000.nii.gz", "labelsTr/phantom_001.nii.gz"):
        assert two[name] == three[name]
    other = _files(write_phantom(tmp_path / "other", n_cases=2, shape=(20, 20, 20), seed=5))
    assert other["imagesTr/phantom_000.nii.gz"] != two["imagesTr/phantom_000.nii.gz"]


def test_written_files_hold_the_generated_arrays(phantom2_dir: Path) -> None:
    meta = json.loads((phantom2_dir / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "lesion_1", "2": "lesion_2"}
    assert len(meta["training"]) == meta["numTraining"] == 4
    image, label = phantom_case(2, shape=(32, 40, 36), fg_fraction=0.006, n_classes=2, seed=5)
    img = nib.load(str(phantom2_dir / "imagesTr" / "phantom_002.nii.gz"))
    lab = nib.load(str(phantom2_dir / "labelsTr" / "phantom_002.nii.gz"))
    assert np.array_equal(np.asanyarray(img.dataobj), image)
    assert np.array_equal(np.asanyarray(lab.dataobj), label)
    assert lab.get_data_dtype() == np.uint8
    assert np.allclose(img.header.get_zooms(), (0.8, 1.0, 1.5))


def test_lesions_are_separate_small_and_varied() -> None:
    sizes, fractions, classes_seen = [], [], set()
    for i in range(10):
        _, label = phantom_case(i, shape=(40, 40, 40), fg_fraction=0.004, n_classes=2, seed=1)
        components, n = ndimage.label(label > 0, structure=FULL)
        for k in range(1, n + 1):
            values = np.unique(label[components == k])
            assert values.size == 1, "each lesion is one class and touches no other lesion"
            classes_seen.add(int(values[0]))
        sizes += np.bincount(components.ravel())[1:].tolist()
        fractions.append(float((label > 0).mean()))
    assert classes_seen == {1, 2}
    assert min(sizes) <= 5, "a few voxels"
    assert max(sizes) >= 100, "up to hundreds of voxels"
    assert len(sizes) >= 30, "many lesions"
    mean = float(np.mean(fractions))
    assert 0.5 * 0.004 < mean < 1.5 * 0.004
    assert len(set(fractions)) == len(fractions), "fractions vary between cases"


def test_lesions_are_visible_in_the_image() -> None:
    image, label = phantom_case(0, shape=(48, 48, 48), fg_fraction=0.005, seed=2)
    lesion = label > 0
    around = ndimage.binary_dilation(
        lesion, structure=FULL, iterations=3
    ) & ~ndimage.binary_dilation(lesion, structure=FULL)
    assert (
        image[lesion].mean()
        > image[around].mean() + 3 * image[around].std() / np.sqrt(around.sum()) + 20.0
    )


def test_zero_fraction_gives_empty_labels() -> None:
    _, label = phantom_case(0, shape=(16, 16, 16), fg_fraction=0.0)
    assert not label.any()


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"shape": (4, 16, 16)}, "shape"),
        ({"fg_fraction": 0.7}, "fg_fraction"),
        ({"n_classes": 0}, "n_classes"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        write_phantom(tmp_path, **kwargs)


def test_phantom_dataset_is_written_once_into_the_cache(isolated_cache: Path) -> None:
    first = phantom_dataset(n_cases=2, shape=(16, 16, 16))
    assert first.is_relative_to(isolated_cache)
    stamp = (first / "dataset.json").stat().st_mtime_ns
    again = phantom_dataset(n_cases=2, shape=(16, 16, 16))
    assert again == first and (first / "dataset.json").stat().st_mtime_ns == stamp
    assert phantom_dataset(n_cases=3, shape=(16, 16, 16)) != first
