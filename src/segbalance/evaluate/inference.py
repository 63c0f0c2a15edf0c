"""Sliding-window inference on whole preprocessed volumes, and logits -> labels."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from itertools import combinations

import numpy as np
import torch
from torch import Tensor, nn


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    image: np.ndarray | Tensor,
    window: Sequence[int],
    *,
    overlap: float = 0.5,
    mode: str = "gaussian",
    sw_batch_size: int = 4,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    label: np.ndarray | Tensor | None = None,
    mirror_axes: Sequence[int] = (),
) -> Tensor:
    """Logits ``(C_out, *S)`` (float32, CPU) of one volume ``(C_in, *S)``.

    MONAI's ``sliding_window_inference`` (windows of ``window`` voxels, ``overlap``,
    gaussian or constant blending; volumes smaller than a window are padded). A SegVol
    model uses its zoom-out-zoom-in inference instead (METHODS §9.2), with prompts from
    ``label`` ``(*S)`` when it was built with box/point prompts. The model runs in eval
    mode and is put back in its previous mode.

    ``mirror_axes``: test-time mirroring (nnU-Net's): the logits are averaged over every
    combination of flips of these spatial axes (``2**len(mirror_axes)`` passes). Mirror
    only along axes where a flipped anatomy still occurs (hippocampus: axis 0).
    """
    from monai.inferers import sliding_window_inference

    x = image if isinstance(image, Tensor) else torch.from_numpy(np.array(image, dtype=np.float32))
    x = x.to(device=device, dtype=torch.float32).unsqueeze(0)
    was_training = model.training
    model.eval()
    cast = (
        torch.autocast(torch.device(device).type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else nullcontext()
    )
    try:
        with cast:
            if _is_segvol(model):
                if mirror_axes:
                    raise ValueError("mirror_axes: SegVol's zoom-out-zoom-in takes no mirroring")
                from segbalance.models.segvol.inference import zoom_out_zoom_in

                prompt = None
                if getattr(model, "wants_label_prompts", False):
                    if label is None:
                        raise ValueError("SegVol with box/point prompts needs the label")
                    prompt = torch.from_numpy(np.array(label)).to(device)
                return (
                    zoom_out_zoom_in(
                        model, x[0], overlap=overlap, label=prompt, sw_batch_size=sw_batch_size
                    )
                    .float()
                    .cpu()
                )
            axes = sorted({int(a) for a in mirror_axes})
            if any(not 0 <= a < x.ndim - 2 for a in axes):
                raise ValueError(
                    f"mirror_axes: expected spatial axes in [0, {x.ndim - 2}) but got {axes}"
                )
            # every subset of the axes, the unflipped pass first
            flips = [
                [2 + a for a in sub] for k in range(len(axes) + 1) for sub in combinations(axes, k)
            ]
            roi = tuple(int(w) for w in window)
            out = None
            for dims in flips:
                part = sliding_window_inference(
                    x.flip(dims) if dims else x,
                    roi_size=roi,
                    sw_batch_size=sw_batch_size,
                    predictor=model,
                    overlap=overlap,
                    mode=mode,
                )
                part = part.flip(dims) if dims else part
                out = part if out is None else out + part
            out = out / len(flips)
    finally:
        model.train(was_training)
    return out[0].float().cpu()


def _is_segvol(model: nn.Module) -> bool:
    return type(model).__name__ == "SegVol" and hasattr(model, "wants_label_prompts")


def logits_to_labels(logits: Tensor, classes: Sequence[int] | None = None) -> np.ndarray:
    """Label map ``(*S)`` from logits ``(C, *S)`` (METHODS §10 binarisation).

    ``C == 1``: ``z > 0`` gives label ``classes[0]`` (default 1). ``C >= 2``: argmax over
    channels; channel ``j >= 1`` maps to ``classes[j - 1]`` (default ``j``).
    """
    if logits.shape[0] == 1:
        value = 1 if classes is None else int(classes[0])
        return (logits[0] > 0).numpy().astype(np.uint8) * np.uint8(value)
    index = logits.argmax(dim=0).numpy()
    if classes is None:
        return index.astype(np.uint8 if logits.shape[0] < 256 else np.uint16)
    table = np.array([0, *[int(c) for c in classes]])
    return table[index].astype(np.uint8 if table.max() < 256 else np.uint16)
