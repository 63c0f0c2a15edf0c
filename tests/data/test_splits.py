"""Splits: deterministic k-fold by seed, explicit lists, splits.json round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segbalance.data.splits import explicit_split, kfold_splits, load_splits, save_splits
from segbalance.errors import InputError

NAMES = [f"case_{i:02d}" for i in range(11)]


@settings(max_examples=30, deadline=None)
@given(n_cases=st.integers(2, 30), n_folds=st.integers(2, 8), seed=st.integers(0, 2**31))
def test_folds_partition_the_cases(n_cases: int, n_folds: int, seed: int) -> None:
    names = [f"c{i}" for i in range(n_cases)]
    if n_folds > n_cases:
        with pytest.raises(InputError):
            kfold_splits(names, n_folds, seed)
        return
    folds = kfold_splits(names, n_folds, seed)
    assert len(folds) == n_folds
    vals = [set(f["val"]) for f in folds]
    assert set().union(*vals) == set(names)
    assert sum(len(v) for v in vals) == n_cases, "validation blocks are disjoint"
    sizes = [len(v) for v in vals]
    assert max(sizes) - min(sizes) <= 1
    for fold in folds:
        assert sorted(set(fold["train"]) | set(fold["val"])) == sorted(names)
        assert not set(fold["train"]) & set(fold["val"])
        assert fold["train"] == sorted(fold["train"]) and fold["val"] == sorted(fold["val"])


def test_same_seed_same_folds_whatever_the_input_order() -> None:
    assert kfold_splits(NAMES, 5, seed=3) == kfold_splits(list(reversed(NAMES)), 5, seed=3)
    assert kfold_splits(NAMES, 5, seed=3) != kfold_splits(NAMES, 5, seed=4)


def test_explicit_split() -> None:
    (fold,) = explicit_split(NAMES, val=["case_03", "case_01"])
    assert fold["val"] == ["case_01", "case_03"]
    assert fold["train"] == [n for n in NAMES if n not in ("case_01", "case_03")]
    (fold,) = explicit_split(NAMES, val=["case_00"], train=["case_05", "case_04"])
    assert fold == {"train": ["case_04", "case_05"], "val": ["case_00"]}
    with pytest.raises(InputError, match="did you mean 'case_03'"):
        explicit_split(NAMES, val=["case_3"])
    with pytest.raises(InputError, match="both train and val"):
        explicit_split(NAMES, val=["case_00"], train=["case_00"])


def test_save_and_load(tmp_path: Path) -> None:
    folds = kfold_splits(NAMES, 3, seed=0)
    path = save_splits(folds, tmp_path / "run" / "splits.json")
    assert load_splits(path) == folds
    path.write_text('{"train": []}')
    with pytest.raises(InputError, match=r"splits\.json"):
        load_splits(path)
