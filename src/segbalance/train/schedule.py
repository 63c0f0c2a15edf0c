"""Learning-rate schedules: linear warm-up times poly (nnU-Net), cosine or constant decay."""

from __future__ import annotations

import math


def lr_factor(
    name: str,
    step: int,
    progress: float,
    *,
    warmup_steps: int = 0,
    power: float = 0.9,
    min_lr_ratio: float = 0.0,
) -> float:
    """Multiplier of each group's base learning rate at optimiser step ``step`` (0-based).

    ``progress`` in [0, 1] is how much of the budget is used: ``step / total_steps``, or
    for a wall-clock budget ``seconds / budget_seconds`` (the larger one when both are
    set, since the first budget reached ends the run). The factor is
    ``warm(step) * decay(progress)`` with ``warm = min(1, (step + 1) / warmup_steps)`` and,
    with ``m = min_lr_ratio``: poly ``m + (1 - m) (1 - p)^power`` (nnU-Net: power 0.9),
    cosine ``m + (1 - m) (1 + cos(pi p)) / 2``, constant 1.
    """
    if name not in ("poly", "cosine", "constant"):
        raise ValueError(f"schedule: expected poly, cosine or constant but got {name!r}")
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    p = min(max(float(progress), 0.0), 1.0)
    if name == "constant":
        decay = 1.0
    elif name == "poly":
        decay = (1.0 - p) ** power
    else:
        decay = 0.5 * (1.0 + math.cos(math.pi * p))
    return warm * (min_lr_ratio + (1.0 - min_lr_ratio) * decay)
