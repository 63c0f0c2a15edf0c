"""Sliding-window inference on whole preprocessed volumes, and logits -> labels."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

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
) -> Tensor:
    """Logits ``(C_out, *S)`` (float32, CPU) of one volume ``(C_in, *S)``.

    MONAI's ``sliding_window_inference`` (windows of ``window`` voxels, ``overlap``,
    gaussian or constant blending; volumes smaller than a window are padded). The model
    runs in eval mode and is put back in its previous mode.
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
            out = sliding_window_inference(
                x,
                roi_size=tuple(int(w) for w in window),
                sw_batch_size=sw_batch_size,
                predictor=model,
                overlap=overlap,
                mode=mode,
            )
    finally:
        model.train(was_training)
    return out[0].float().cpu()


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
