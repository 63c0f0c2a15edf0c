"""Inverse lesion-volume voxel weights (neuro-ml/inverse_weighting, METHODS §3)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from segbalance.stats import inverse_weights_from_components, label_components

ArrayT = TypeVar("ArrayT")


def _one_case(labels: np.ndarray, ignore_index: int | None) -> np.ndarray:
    if labels.ndim not in (2, 3):
        raise ValueError(
            f"labels: expected one case of shape (*S) with 2 or 3 spatial dims (use "
            f"batched=True for a batch) but got shape {tuple(labels.shape)}"
        )
    valid = None if ignore_index is None else labels != ignore_index
    lesion = labels > 0 if valid is None else (labels > 0) & valid
    components, _ = label_components(lesion)  # 26-connectivity in 3D, 8 in 2D
    return inverse_weights_from_components(components, valid)


def inverse_lesion_weights(
    labels: ArrayT, *, batched: bool = False, ignore_index: int | None = None
) -> ArrayT:
    """Per-voxel weights ``clip(N / ((K+1) |cc(x)|), 1, 2e5)`` from a label map.

    The lesion mask is the union of all foreground classes; components use full
    connectivity (26 in 3D, 8 in 2D); the background counts as one component; voxels
    equal to ``ignore_index`` are background for labelling and get weight 0. Every lesion
    then carries the same total weight N/(K+1), so missing a 1-voxel lesion costs as much
    as missing a large one.

    Args:
        labels: integer label map ``(*S)`` (or ``(B, *S)`` with ``batched=True``), numpy
            array or torch tensor.
        batched: treat the first axis as the batch (each case weighted on its own).
        ignore_index: label value to give weight 0.

    Returns:
        float32 weights of the same shape and kind (torch in -> torch out, same device).
    """
    is_torch = type(labels).__module__.startswith("torch")
    array = labels.detach().cpu().numpy() if is_torch else np.asarray(labels)  # type: ignore[attr-defined]
    if array.dtype.kind not in "biuf":
        raise ValueError(f"labels: expected an integer label map but got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.all(array == np.round(array)):
        raise ValueError("labels: expected integer labels but got non-integer values")
    if batched:
        if array.ndim not in (3, 4):
            raise ValueError(
                f"labels: expected (B, *S) with 2 or 3 spatial dims but got shape {array.shape}"
            )
        weights = np.stack([_one_case(case, ignore_index) for case in array])
    else:
        weights = _one_case(array, ignore_index)
    if is_torch:
        import torch

        return torch.from_numpy(weights).to(labels.device)  # type: ignore[attr-defined,return-value]
    return weights  # type: ignore[return-value]
