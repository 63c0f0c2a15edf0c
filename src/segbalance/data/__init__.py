"""NIfTI datasets (MSD + nnU-Net v2), phantom, preprocessing cache, splits, patch loader.

>>> from segbalance.data import imbalance_stats, write_phantom
>>> stats = imbalance_stats(write_phantom("/tmp/phantom"))

Names are imported lazily so that ``import segbalance.data`` (and the CLI) stays light;
only the patch loader imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CaseFiles": "layout",
    "DatasetLayout": "layout",
    "open_dataset": "layout",
    "RawCase": "reader",
    "read_case": "reader",
    "PreprocessSettings": "preprocess",
    "preprocess_case": "preprocess",
    "to_original_space": "preprocess",
    "CachedCase": "cache",
    "PreprocessedDataset": "cache",
    "cache_root": "cache",
    "preprocess_dataset": "cache",
    "imbalance_stats": "imbalance",
    "check_dataset": "imbalance",
    "calf_recommendation": "imbalance",
    "write_phantom": "phantom",
    "phantom_dataset": "phantom",
    "kfold_splits": "splits",
    "explicit_split": "splits",
    "save_splits": "splits",
    "load_splits": "splits",
    "AugmentSettings": "augment",
    "PatchLoader": "loader",
    "patch_weights": "loader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segbalance.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"segbalance.data.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
