"""One validation helper shared by every metric: masks, label maps and spacing.

Torch tensors are accepted without importing torch here (duck typing on
``detach``/``cpu``), so the metrics stay usable from torch-free code paths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def to_numpy(array: Any, name: str) -> np.ndarray:
    """Return ``array`` as a numpy array; torch tensors are detached and moved to the CPU."""
    if hasattr(array, "detach") and hasattr(array, "cpu"):
        array = array.detach().cpu().numpy()
    try:
        return np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"Expected {name} to be a numpy array or torch tensor but got {type(array).__name__}"
        ) from exc


def _check_spatial(array: np.ndarray, name: str) -> None:
    if array.ndim not in (2, 3):
        raise ValueError(
            f"Expected {name} to be a 2D or 3D array but got shape {tuple(array.shape)}"
        )
    if array.size == 0:
        raise ValueError(f"Expected {name} to be non-empty but got shape {tuple(array.shape)}")


def as_mask(array: Any, name: str) -> np.ndarray:
    """Validate one binary mask ``(*S)`` (S 2D or 3D) and return it as a boolean array.

    Accepted: boolean arrays, or numeric arrays whose values are all 0 or 1.
    """
    mask = to_numpy(array, name)
    _check_spatial(mask, name)
    if mask.dtype == np.bool_:
        return mask
    if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise ValueError(f"Expected {name} to be boolean or numeric but got dtype {mask.dtype}")
    is_binary = (mask == 0) | (mask == 1)
    if not is_binary.all():
        bad = mask[~is_binary].ravel()[0]
        raise ValueError(
            f"Expected {name} to be a binary mask (boolean, or values in {{0, 1}}) "
            f"but got the value {bad!r}"
        )
    return mask != 0


def as_spacing(spacing: Any, ndim: int) -> np.ndarray:
    """Spacing in mm per axis as a float64 array of length ``ndim``.

    ``None`` means 1 mm per axis; one number means isotropic spacing.
    """
    if spacing is None:
        return np.ones(ndim, dtype=np.float64)
    if hasattr(spacing, "detach") and hasattr(spacing, "cpu"):
        spacing = spacing.detach().cpu().numpy()
    values = np.asarray(spacing, dtype=np.float64)
    if values.ndim == 0:
        values = np.full(ndim, float(values))
    if values.shape != (ndim,):
        raise ValueError(
            f"Expected spacing to have {ndim} values (mm per axis) but got {np.asarray(spacing).tolist()}"
        )
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"Expected spacing to be finite and > 0 but got {values.tolist()}")
    return values


def mask_pair(pred: Any, ref: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a prediction/reference pair of boolean masks with the same shape."""
    pred_mask = as_mask(pred, "pred")
    ref_mask = as_mask(ref, "ref")
    if pred_mask.shape != ref_mask.shape:
        raise ValueError(
            f"Expected ref to have the shape of pred {tuple(pred_mask.shape)} "
            f"but got {tuple(ref_mask.shape)}"
        )
    return pred_mask, ref_mask


def mask_pair_with_spacing(
    pred: Any, ref: Any, spacing: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`mask_pair` plus the validated spacing (float64, one value per axis)."""
    pred_mask, ref_mask = mask_pair(pred, ref)
    return pred_mask, ref_mask, as_spacing(spacing, pred_mask.ndim)


def label_pair(pred: Any, ref: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate two integer label maps ``(*S)`` of the same shape."""
    arrays = []
    for name, value in (("pred_labels", pred), ("ref_labels", ref)):
        labels = to_numpy(value, name)
        _check_spatial(labels, name)
        if labels.dtype == np.bool_:
            labels = labels.astype(np.uint8)
        elif np.issubdtype(labels.dtype, np.floating):
            if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
                raise ValueError(
                    f"Expected {name} to hold integer labels but got non-integer values"
                )
        elif not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"Expected {name} to be an integer label map but got dtype {labels.dtype}"
            )
        arrays.append(labels)
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(
            f"Expected ref_labels to have the shape of pred_labels {tuple(arrays[0].shape)} "
            f"but got {tuple(arrays[1].shape)}"
        )
    return arrays[0], arrays[1]


def check_nonnegative(value: float, name: str) -> float:
    """A finite float >= 0 (tolerances, penalties, thresholds)."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Expected {name} to be a number but got {value!r}") from exc
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"Expected {name} to be finite and >= 0 but got {value!r}")
    return number


def check_choice(value: str, name: str, choices: Sequence[str]) -> str:
    """One of ``choices`` (typed ``Literal`` options), else a ValueError listing them."""
    if value not in choices:
        from segbalance.errors import did_you_mean

        raise ValueError(
            f"Expected {name} to be one of {list(choices)} but got {value!r}"
            + did_you_mean(str(value), list(choices))
        )
    return value
