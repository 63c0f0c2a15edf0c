"""Box and point prompts derived from a label, deterministic (no randomness).

Coordinates are voxel indices in the axis order of the volume ``(D, H, W)``, as
upstream's ``generate_box`` / ``select_points`` produce them. Foreground is ``label == 1``
and background ``label == 0``; any other value (an ``ignore_index``) is neither.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _squeeze(label: Tensor) -> Tensor:
    """``(B, 1, *S)`` or ``(B, *S)`` -> ``(B, *S)``."""
    if label.ndim == 5:
        if label.shape[1] != 1:
            raise ValueError(f"Expected a label (B, 1, D, H, W) but got shape {tuple(label.shape)}")
        label = label[:, 0]
    if label.ndim != 4:
        raise ValueError(
            f"Expected a label (B, 1, D, H, W) or (B, D, H, W) but got shape {tuple(label.shape)}"
        )
    return label


def boxes_from_label(label: Tensor) -> Tensor:
    """Bounding box of the foreground per sample, ``(B, 6)`` float =
    ``(min0, min1, min2, max0, max1, max2)`` with inclusive maxima (upstream ``generate_box``).

    A sample without foreground gets the whole volume ``(0, 0, 0, S0-1, S1-1, S2-1)``
    (**Assumed**: upstream emits -1s there and skips such classes in training).
    """
    fg = _squeeze(label) == 1
    size = fg.shape[1:]
    boxes = []
    for sample in fg:
        coords = sample.nonzero()
        if coords.numel() == 0:
            boxes.append([0, 0, 0, size[0] - 1, size[1] - 1, size[2] - 1])
        else:
            boxes.append([*coords.min(0).values.tolist(), *coords.max(0).values.tolist()])
    return torch.tensor(boxes, dtype=torch.float32, device=label.device)


def _nearest(coords: Tensor, target: Tensor) -> Tensor:
    """The row of ``coords`` (N, 3) closest to ``target`` (3,); ties -> the first row
    (row-major order of ``nonzero``, i.e. the lowest flat index)."""
    distance = ((coords.float() - target) ** 2).sum(1)
    return coords[torch.argmin(distance)]  # argmin returns the first minimum


def points_from_label(label: Tensor) -> tuple[Tensor, Tensor]:
    """One positive and one negative point per sample: ``(coords (B, 2, 3), labels (B, 2))``.

    Positive: the foreground voxel nearest to the foreground centroid. Negative: the
    background voxel nearest to that centroid (a "click" just outside the object). Ties go
    to the lowest flat index. A sample without foreground gets a padding positive slot
    (label -1, coordinates 0, as upstream's ``select_points``) and the background voxel
    nearest to the volume centre; without background the negative slot is padding.
    """
    label = _squeeze(label)
    fg, bg = label == 1, label == 0
    coords_out = torch.zeros(fg.shape[0], 2, 3, dtype=torch.float32, device=label.device)
    labels_out = torch.full((fg.shape[0], 2), -1.0, device=label.device)
    for i, (sample, background) in enumerate(zip(fg, bg, strict=True)):
        positive = sample.nonzero()
        negative = background.nonzero()
        if positive.numel() == 0:
            if negative.numel():  # no object: keep a background click at the volume centre
                centre = (torch.tensor(sample.shape, device=label.device) - 1) / 2
                coords_out[i, 1] = _nearest(negative, centre).float()
                labels_out[i, 1] = 0
            continue
        centroid = positive.float().mean(0)
        coords_out[i, 0] = _nearest(positive, centroid).float()
        labels_out[i, 0] = 1
        if negative.numel():
            coords_out[i, 1] = _nearest(negative, centroid).float()
            labels_out[i, 1] = 0
    return coords_out, labels_out
