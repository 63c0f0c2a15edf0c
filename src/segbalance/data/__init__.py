"""NIfTI datasets (MSD + nnU-Net v2), phantom, preprocessing cache, splits, patch loader.

>>> from segbalance.data import imbalance_stats, write_phantom
>>> stats = imbalance_stats(write_phantom("/tmp/phantom"))

Names are imported lazily so that ``import segbalance.data`` (and the CLI) stays light;
only the patch loader imports torch.
"""

from __future__ import annotations

from segbalance._lazy import lazy_exports

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

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
