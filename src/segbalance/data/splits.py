"""Train/validation splits: deterministic k-fold by seed, or an explicit list.

``splits.json`` uses nnU-Net's ``splits_final.json`` format: a list with one
``{"train": [...], "val": [...]}`` object per fold, case names sorted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from segbalance.atomic import atomic_write_text
from segbalance.errors import InputError, did_you_mean

Split = dict[str, list[str]]


def kfold_splits(cases: Iterable[str], n_folds: int = 5, seed: int = 0) -> list[Split]:
    """Deterministic k-fold splits.

    Cases are sorted, shuffled with ``numpy.random.default_rng(seed)`` and cut into
    ``n_folds`` nearly equal validation blocks (sizes differ by at most one); fold ``k``
    trains on every other block. The result depends only on the set of names and the seed.

    Returns:
        ``n_folds`` dicts ``{"train": sorted names, "val": sorted names}``.
    """
    names = sorted(set(cases))
    if n_folds < 2:
        raise ValueError(f"n_folds: expected at least 2 folds but got {n_folds}")
    if len(names) < n_folds:
        raise InputError(
            "splits",
            f"{len(names)} case(s) cannot make {n_folds} folds",
            f"at least {n_folds} cases",
        )
    order = np.random.default_rng(seed).permutation(len(names))
    blocks = np.array_split(order, n_folds)
    splits = []
    for block in blocks:
        val = {names[i] for i in block}
        splits.append({"train": [n for n in names if n not in val], "val": sorted(val)})
    return splits


def explicit_split(
    cases: Iterable[str], val: Sequence[str], train: Sequence[str] | None = None
) -> list[Split]:
    """One fold from explicit validation names (train = the rest unless given)."""
    names = sorted(set(cases))
    known = set(names)
    for name in [*val, *(train or [])]:
        if name not in known:
            raise InputError(
                name,
                "case not in the dataset" + did_you_mean(name, names),
                "a case name of the dataset",
            )
    val_set = set(val)
    train_list = sorted(set(train)) if train is not None else [n for n in names if n not in val_set]
    overlap = val_set & set(train_list)
    if overlap:
        raise InputError(
            sorted(overlap)[0], "case is in both train and val", "disjoint train and val lists"
        )
    return [{"train": train_list, "val": sorted(val_set)}]


def save_splits(splits: list[Split], path: str | Path) -> Path:
    """Write ``splits.json`` (list of folds)."""
    # atomic like every run file: a crash or a full disk never leaves half a splits.json
    return atomic_write_text(path, json.dumps(splits, indent=1) + "\n")


def load_splits(path: str | Path) -> list[Split]:
    """Read and validate a ``splits.json``."""
    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(
            str(file), f"cannot read splits ({exc})", "a JSON list of {train, val}"
        ) from None
    if not isinstance(data, list) or not all(
        isinstance(f, dict) and isinstance(f.get("train"), list) and isinstance(f.get("val"), list)
        for f in data
    ):
        raise InputError(
            str(file), "not a list of {train, val} objects", '[{"train": [...], "val": [...]}, ...]'
        )
    return [
        {"train": [str(n) for n in f["train"]], "val": [str(n) for n in f["val"]]} for f in data
    ]
