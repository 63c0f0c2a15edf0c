"""Validation during training: sliding-window inference and per-class Dice (preprocessed space)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from segbalance.config import ValidationConfig
from segbalance.evaluate.inference import logits_to_labels, predict_logits
from segbalance.evaluate.metrics import dice


def validate(
    model: nn.Module,
    data: Any,
    info: Any,
    cfg: ValidationConfig,
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> dict[int, float]:
    """Mean Dice per foreground class over the validation cases.

    Cases whose reference is empty for a class are left out of that class's mean
    (METHODS §10 aggregation); a class empty in every case gets NaN.
    """
    cases = info.split["val"][: cfg.max_cases] if cfg.max_cases else info.split["val"]
    classes = sorted(info.classes)
    scores: dict[int, list[float]] = {c: [] for c in classes}
    for name in cases:
        case = data[name]
        logits = predict_logits(
            model,
            np.asarray(case.image),
            info.patch_size,
            overlap=cfg.overlap,
            mode=cfg.mode,
            sw_batch_size=cfg.sw_batch_size,
            device=device,
            autocast_dtype=autocast_dtype,
            label=np.asarray(case.label),
            mirror_axes=cfg.mirror_axes,
        )
        pred = logits_to_labels(logits, classes)
        ref = np.asarray(case.label)
        for c in classes:
            ref_mask = ref == c
            if ref_mask.any():
                scores[c].append(dice(pred == c, ref_mask))
    return {c: float(np.mean(v)) if v else math.nan for c, v in scores.items()}
