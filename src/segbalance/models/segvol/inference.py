"""SegVol's zoom-out-zoom-in inference on a whole volume (METHODS §9.2 steps 5-6).

1. Zoom-out: resize the volume to the window (``nearest-exact``), predict, resize the
   logits back to the volume with ``nearest``: the coarse logits.
2. Zoom-in: the bounding box of the coarse mask (sigmoid > 0.5), grown to at least one
   window per axis (kept inside the volume), is predicted again by sliding-window
   inference (MONAI, constant blending) and replaces the coarse logits there. An empty
   coarse mask keeps the zoom-out result.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def roi_from_mask(mask: Tensor, window: Sequence[int]) -> tuple[slice, ...] | None:
    """Region of interest for the zoom-in: one slice per axis, or ``None`` for no foreground.

    Per axis: the foreground's extent ``[lo, hi]`` (inclusive), grown symmetrically to
    ``min(window, size)`` voxels when shorter (the extra voxel of an odd growth goes after
    it) and shifted back inside ``[0, size)`` when it sticks out.

    Upstream (``logits2roi_coor``) grows by ``(window - extent) // 2`` on each side and
    clips without shifting, so its ROI can end up one voxel short of a window or smaller
    near the border; here it always spans ``min(window, size)`` voxels at least.

    Args:
        mask: boolean ``(*S)``.
        window: the model's input size, same length as ``S``.
    """
    if mask.ndim != len(window):
        raise ValueError(f"Expected a {len(window)}D mask but got shape {tuple(mask.shape)}")
    coords = mask.nonzero()
    if coords.numel() == 0:
        return None
    lows, highs = coords.min(0).values.tolist(), coords.max(0).values.tolist()
    roi = []
    for lo, hi, win, size in zip(lows, highs, window, mask.shape, strict=True):
        extent = hi - lo + 1
        target = max(extent, min(int(win), size))
        start = lo - (target - extent) // 2
        start = min(max(start, 0), size - target)
        roi.append(slice(start, start + target))
    return tuple(roi)


def _resize(volume: Tensor, size: Sequence[int], mode: str) -> Tensor:
    """``(C, *S)`` -> ``(C, *size)``."""
    return F.interpolate(volume[None].float(), size=tuple(size), mode=mode)[0]


@torch.no_grad()
def zoom_out_zoom_in(
    model: nn.Module,
    image: Tensor,
    *,
    window: Sequence[int] | None = None,
    overlap: float = 0.5,
    label: Tensor | None = None,
    sw_batch_size: int = 1,
) -> Tensor:
    """Logits ``(1, *S)`` for a whole preprocessed volume ``image`` ``(C, *S)``.

    Args:
        model: maps ``(B, C, *window)`` to ``(B, 1, *window)`` logits (a SegVol, or any
            binary network taking that window). Put it in ``eval()`` mode first.
        window: input size of the model; default ``model.img_size``.
        overlap: sliding-window overlap inside the ROI (SegVol: 0.5).
        label: ``(1, *S)`` or ``(*S)``, needed when ``model.wants_label_prompts``: box or
            point prompts are then derived from the label resized to the window (zoom-out)
            and from the label inside each window (zoom-in).
        sw_batch_size: windows per forward pass in the zoom-in.
    """
    from monai.inferers import sliding_window_inference

    if window is None:
        window = getattr(model, "img_size", None)
        if window is None:
            raise ValueError(
                "Expected window= (the model's input size) for a model without img_size"
            )
    window = tuple(int(w) for w in window)
    if image.ndim != len(window) + 1:
        raise ValueError(
            f"Expected image (C, {', '.join('?' * len(window))}) but got shape {tuple(image.shape)}"
        )
    spatial = tuple(image.shape[1:])
    wants_label = bool(getattr(model, "wants_label_prompts", False))
    if wants_label:
        if label is None:
            raise ValueError("Expected label= for a model that derives its prompts from labels")
        label = label.reshape(1, *spatial).float()

    def predict(batch: Tensor, batch_label: Tensor | None) -> Tensor:
        return model(batch, label=batch_label) if wants_label else model(batch)

    zoomed = _resize(image, window, "nearest-exact")[None]
    zoomed_label = _resize(label, window, "nearest-exact")[None] if wants_label else None
    coarse = _resize(predict(zoomed, zoomed_label)[0], spatial, "nearest")
    roi = roi_from_mask(coarse[0] > 0, window)  # sigmoid(x) > 0.5  <=>  x > 0
    if roi is None:
        return coarse
    crop = image[(slice(None), *roi)].float()
    if wants_label:
        # The label travels as an extra channel so every window gets its own crop of it.
        crop = torch.cat([crop, label[(slice(None), *roi)]], dim=0)

        def window_predictor(x: Tensor) -> Tensor:
            return predict(x[:, :-1], x[:, -1:])
    else:

        def window_predictor(x: Tensor) -> Tensor:
            return predict(x, None)

    refined = sliding_window_inference(
        crop[None], window, sw_batch_size, window_predictor, overlap=overlap, mode="constant"
    )
    coarse[(slice(None), *roi)] = refined[0].to(coarse.dtype)
    return coarse
