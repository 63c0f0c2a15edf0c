"""Preprocessing cache: reuse, per-case invalidation, memory maps, nothing written in the dataset."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

import segbalance.data.cache as cache_mod
from segbalance.data.cache import preprocess_dataset
from segbalance.data.preprocess import PreprocessSettings

from ._builders import blob_case, save_nifti

FULL = np.ones((3, 3, 3), dtype=bool)


@pytest.fixture
def dataset(tmp_path: Path, phantom_dir: Path) -> Path:
    """A private copy of the phantom (the tests modify files)."""
    return Path(shutil.copytree(phantom_dir, tmp_path / "ph"))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the cases actually read (= preprocessed) by the cache."""
    seen: list[str] = []
    original = cache_mod.read_case

    def counting(layout, case, **kwargs):
        seen.append(case.name)
        return original(layout, case, **kwargs)

    monkeypatch.setattr(cache_mod, "read_case", counting)
    return seen


def test_second_run_preprocesses_nothing(
    dataset: Path, reads: list[str], isolated_cache: Path
) -> None:
    first = preprocess_dataset(dataset)
    assert sorted(reads) == [f"phantom_{i:03d}" for i in range(6)]
    assert first.directory.is_relative_to(isolated_cache)
    reads.clear()
    second = preprocess_dataset(dataset)
    assert reads == []
    assert second.directory == first.directory
    for name in first.names:
        assert np.array_equal(second[name].label, first[name].label)


def test_changed_file_invalidates_only_its_case(dataset: Path, reads: list[str]) -> None:
    preprocess_dataset(dataset)
    reads.clear()
    label_path = dataset / "labelsTr" / "phantom_002.nii.gz"
    label = np.asanyarray(nib.load(str(label_path)).dataobj).copy()
    label[0:3, 0:3, 0:3] = 1  # a new corner lesion
    save_nifti(label_path, label)
    os.utime(label_path, ns=(1, 1))  # a different mtime even on coarse file systems
    data = preprocess_dataset(dataset)
    assert reads == ["phantom_002"]
    assert data["phantom_002"].label[0, 0, 0] == 1
    folders = sorted(p.name.split("@")[0] for p in data.directory.iterdir() if p.is_dir())
    assert folders == [f"phantom_{i:03d}" for i in range(6)], "the stale folder is removed"


def test_other_settings_use_another_folder(dataset: Path, reads: list[str]) -> None:
    a = preprocess_dataset(dataset)
    reads.clear()
    b = preprocess_dataset(dataset, PreprocessSettings(target_spacing=(2.0, 2.0, 2.0)))
    assert len(reads) == 6 and a.directory != b.directory
    assert b["phantom_000"].shape == (20, 20, 20)


def test_nothing_is_written_inside_the_dataset(dataset: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in dataset.rglob("*")}
    preprocess_dataset(dataset)
    assert {p: p.stat().st_mtime_ns for p in dataset.rglob("*")} == before


def test_cached_arrays_are_memory_maps_with_correct_content(dataset: Path) -> None:
    data = preprocess_dataset(dataset, cases=["phantom_001"])
    case = data["phantom_001"]
    assert isinstance(case.image, np.memmap) and isinstance(case.components, np.memmap)
    label = np.asanyarray(nib.load(str(dataset / "labelsTr" / "phantom_001.nii.gz")).dataobj)
    image = nib.load(str(dataset / "imagesTr" / "phantom_001.nii.gz")).get_fdata(dtype=np.float64)
    assert np.array_equal(case.label, label)  # phantom is RAS already: no reorientation
    expected = (image - image.mean()) / image.std()
    assert np.allclose(case.image[0], expected, atol=1e-4)
    # component map = 26-connected components of the union foreground
    ref, n = ndimage.label(label > 0, structure=FULL)
    assert case.meta["n_components"] == n
    comp = np.asarray(case.components)
    assert np.array_equal(comp > 0, label > 0)
    pairs = {(int(a), int(b)) for a, b in zip(comp[label > 0], ref[label > 0], strict=True)}
    assert len(pairs) == n, "one-to-one correspondence of component ids"
    coords, ids = case.locations(1)
    assert {tuple(c) for c in coords} == {tuple(c) for c in np.argwhere(label == 1)}
    assert np.array_equal(ids, comp[tuple(coords.T)]) and np.all(np.diff(ids.astype(int)) >= 0)
    assert case.present_classes() == [1]


def test_lru_closes_old_memory_maps(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "MAX_OPEN_CASES", 2)
    data = preprocess_dataset(dataset)
    for name in data.names:
        data[name].arrays()
    assert sum(case._arrays is not None for case in data.cases.values()) == 2


def test_unknown_case_names(dataset: Path) -> None:
    from segbalance.errors import InputError

    with pytest.raises(InputError, match="did you mean"):
        preprocess_dataset(dataset, cases=["phantom_0001"])
    data = preprocess_dataset(dataset, cases=["phantom_000"])
    with pytest.raises(InputError, match="not in the preprocessed dataset"):
        data["phantom_005"]


def test_bad_case_stops_preprocessing_with_input_error(tmp_path: Path) -> None:
    from segbalance.errors import InputError

    from ._builders import make_msd

    image, label = blob_case(0)
    image[0, 0, 0] = np.nan
    root = make_msd(tmp_path / "ds", {"bad": (image, label)})
    with pytest.raises(InputError, match=r"bad: .*NaN"):
        preprocess_dataset(root)


def test_remove_stale_spares_concurrent_writers(tmp_path) -> None:
    """A fresh temp folder belongs to a live writer (another rank or compare job)."""
    import os
    import time

    from segbalance.data.cache import STALE_TMP_SECONDS, _remove_stale

    keep = tmp_path / "case_1@0123456789abcdef"
    live = tmp_path / "case_1@0123456789abcdef.tmp-42-deadbeef"
    crashed = tmp_path / "case_1@0123456789abcdef.tmp-41-cafebabe"
    old_version = tmp_path / "case_1@fedcba9876543210"
    other_case = tmp_path / "case_10@fedcba9876543210"
    for folder in (keep, live, crashed, old_version, other_case):
        folder.mkdir()
    past = time.time() - STALE_TMP_SECONDS - 10
    os.utime(crashed, (past, past))
    _remove_stale(tmp_path, "case_1", keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [keep.name, live.name, other_case.name]
    )
